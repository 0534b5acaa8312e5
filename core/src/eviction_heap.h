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
#pragma once

#include <cstdint>

#include "kvcache/types.h"
#include "segment_format.h"

namespace kvcache {

class EvictionHeap {
 public:
  EvictionHeap(Policy policy, uint32_t* heap, uint32_t* size, seg::Slot* slots)
      : policy_(policy), heap_(heap), size_(size), slots_(slots) {}

  uint32_t size() const { return *size_; }
  bool empty() const { return *size_ == 0; }
  uint32_t at(uint32_t pos) const { return heap_[pos]; }
  // REQUIRES: !empty()
  uint32_t Top() const { return heap_[0]; }

  void Push(uint32_t slot);
  void Remove(uint32_t slot);
  // Restores the order after the slot's key changed in either direction.
  void Update(uint32_t slot);
  // Refreshes the top while its placed key is stale. Afterwards the top, if any, is
  // the true minimum.
  void SettleTop();
  // True when a's key orders before b's (a is evicted first).
  bool Before(uint32_t a, uint32_t b) const;
  // Checks the heap property and positions (and that every index is below
  // `capacity`); false on the first violation.
  bool Verify(uint32_t capacity) const;

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

  Policy policy_;
  uint32_t* heap_;
  uint32_t* size_;
  seg::Slot* slots_;
};

}  // namespace kvcache
