// The eviction order of a pool: a binary min-heap of slot indexes, in the segment,
// keyed by the pool's policy. The top is the next victim. O(log n) per push, remove,
// update and pop; each slot records its heap position.
//
//   LRU       oldest access first                 (access_tick)
//   LFU       fewest accesses, ties oldest access (access_count, access_tick)
//   FIFO      oldest creation first               (create_tick)
//   PRIORITY  lowest priority, ties oldest access (priority, access_tick)
//
// A get only raises its slot's key, so it does not touch the heap: the heap orders
// slots by the key they had when placed (key_count, key_tick). Every placed key is at
// most the slot's true key, so a top whose key is current is the true minimum; a stale
// top is refreshed and sifted down (PopStaleTop) before it is taken as a victim. Gets
// cost O(1), victims amortized O(log n), and the order is exact.
//
// Not synchronized: the caller holds the pool lock.
//
// The heap lives in shared memory that anyone who can write the segment can garble:
// every slot index read from it is checked against the slot capacity, every position
// against the size, and every slot's recorded position against where it was found. An
// operation that meets a bad one stops there, changes nothing more, and marks the heap
// damaged() (until ClearDamage) for the caller to report. The checks are comparisons
// on values already loaded: the cost stays O(log n).
#pragma once

#include <cstdint>

#include "kvcache/types.h"
#include "segment_format.h"

namespace kvcache {

class EvictionHeap {
 public:
  // `heap` has room for `capacity` slot indexes; slots are below `capacity`.
  EvictionHeap(Policy policy, uint32_t* heap, uint32_t* size, seg::Slot* slots,
               uint32_t capacity)
      : policy_(policy), heap_(heap), size_(size), slots_(slots), capacity_(capacity) {}

  uint32_t size() const { return *size_; }
  bool empty() const { return *size_ == 0; }
  // REQUIRES: !empty() && !damaged() (SettleTop checked the top).
  uint32_t Top() const { return heap_[0]; }

  // True once an operation met an index out of range or out of place.
  bool damaged() const { return damaged_; }
  void MarkDamaged() { damaged_ = true; }
  void ClearDamage() { damaged_ = false; }

  // REQUIRES: slot < capacity and not in the heap.
  void Push(uint32_t slot);
  // REQUIRES: slot < capacity. Damage when the slot is not where it says it is.
  void Remove(uint32_t slot);
  // Puts `successor` (not in the heap) where `old` is, with old's placed key, and takes
  // old out: O(1), where Remove + Push sift through the heap. Only for a policy whose
  // placed keys are snapshots of access statistics (LRU), and only when successor's
  // access_tick is at least old's placed key_tick: then the heap holds successor
  // merely stale, which SettleTop repairs. False (and damaged) when old is not where
  // it says it is, or successor is out of range.
  bool Replace(uint32_t old, uint32_t successor);
  // Restores the order after the slot's key changed in either direction.
  void Update(uint32_t slot);
  // Refreshes the top while its placed key is stale. Afterwards the top, if any and
  // unless damaged(), is the true minimum.
  void SettleTop();
  // True when a's key orders before b's (a is evicted first).
  bool Before(uint32_t a, uint32_t b) const;
  // Checks the size, every index, every position and the heap property; false on
  // the first violation.
  bool Verify() const;

 private:
  void SiftUp(uint32_t pos);
  void SiftDown(uint32_t pos);
  // Copies the slot's current access statistics into its placed key.
  // (Lock-free gets raise access_count and access_tick concurrently: load atomically.)
  static uint64_t Count(seg::Slot& s) {
    return seg::Atomic(s.access_count).load(std::memory_order_relaxed);
  }
  static uint64_t Tick(seg::Slot& s) {
    return seg::Atomic(s.access_tick).load(std::memory_order_relaxed);
  }
  void Snapshot(uint32_t slot) {
    slots_[slot].key_count = Count(slots_[slot]);
    slots_[slot].key_tick = Tick(slots_[slot]);
  }
  bool Stale(uint32_t slot) const {
    return slots_[slot].key_count != Count(slots_[slot]) ||
           slots_[slot].key_tick != Tick(slots_[slot]);
  }
  void Place(uint32_t pos, uint32_t slot) {
    heap_[pos] = slot;
    slots_[slot].heap_pos = pos;
  }
  // The slot at `pos` into *slot, or false (and damaged) when the size or the index
  // there is out of range.
  bool SlotAt(uint32_t pos, uint32_t* slot) {
    uint32_t n = *size_;
    if (n > capacity_ || pos >= n || heap_[pos] >= capacity_) {
      damaged_ = true;
      return false;
    }
    *slot = heap_[pos];
    return true;
  }

  Policy policy_;
  uint32_t* heap_;
  uint32_t* size_;
  seg::Slot* slots_;
  uint32_t capacity_;
  bool damaged_ = false;
};

}  // namespace kvcache
