#include "eviction_heap.h"

#include <tuple>

namespace kvcache {

bool EvictionHeap::Before(uint32_t a, uint32_t b) const {
  const seg::Slot& x = slots_[a];
  const seg::Slot& y = slots_[b];
  switch (policy_) {
    case Policy::kLru:
      return x.key_tick < y.key_tick;
    case Policy::kLfu:
      return std::tie(x.key_count, x.key_tick) < std::tie(y.key_count, y.key_tick);
    case Policy::kFifo:
      return x.create_tick < y.create_tick;
    case Policy::kPriority:
      return std::tie(x.priority, x.key_tick) < std::tie(y.priority, y.key_tick);
  }
  return false;
}

void EvictionHeap::SiftUp(uint32_t pos) {
  uint32_t slot = heap_[pos];
  while (pos > 0) {
    uint32_t parent = (pos - 1) / 2;
    if (!Before(slot, heap_[parent])) break;
    Place(pos, heap_[parent]);
    pos = parent;
  }
  Place(pos, slot);
}

void EvictionHeap::SiftDown(uint32_t pos) {
  uint32_t n = *size_;
  uint32_t slot = heap_[pos];
  for (;;) {
    uint32_t child = 2 * pos + 1;
    if (child >= n) break;
    if (child + 1 < n && Before(heap_[child + 1], heap_[child])) ++child;
    if (!Before(heap_[child], slot)) break;
    Place(pos, heap_[child]);
    pos = child;
  }
  Place(pos, slot);
}

void EvictionHeap::Push(uint32_t slot) {
  Snapshot(slot);
  uint32_t pos = (*size_)++;
  Place(pos, slot);
  SiftUp(pos);
}

void EvictionHeap::Remove(uint32_t slot) {
  uint32_t pos = slots_[slot].heap_pos;
  slots_[slot].heap_pos = seg::kNil;
  uint32_t last = --(*size_);
  if (pos == last) return;
  Place(pos, heap_[last]);
  Update(heap_[pos]);
}

void EvictionHeap::SettleTop() {
  while (*size_ > 0 && Stale(heap_[0])) {
    Snapshot(heap_[0]);
    SiftDown(0);
  }
}

void EvictionHeap::Update(uint32_t slot) {
  Snapshot(slot);
  uint32_t pos = slots_[slot].heap_pos;
  if (pos > 0 && Before(slot, heap_[(pos - 1) / 2])) {
    SiftUp(pos);
  } else {
    SiftDown(pos);
  }
}

bool EvictionHeap::Verify(uint32_t capacity) const {
  uint32_t n = *size_;
  for (uint32_t pos = 0; pos < n; ++pos) {
    uint32_t slot = heap_[pos];
    if (slot >= capacity || slots_[slot].heap_pos != pos) return false;
    if (pos > 0 && Before(slot, heap_[(pos - 1) / 2])) return false;
  }
  return true;
}

}  // namespace kvcache
