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

// A sift that meets a bad index stops with every slot it moved placed (the one being
// sifted stays where it was taken from): the heap holds the same indexes as before.
void EvictionHeap::SiftUp(uint32_t pos) {
  uint32_t slot;
  if (!SlotAt(pos, &slot)) return;
  while (pos > 0) {
    uint32_t parent = (pos - 1) / 2;
    uint32_t above;
    if (!SlotAt(parent, &above)) break;
    if (!Before(slot, above)) break;
    Place(pos, above);
    pos = parent;
  }
  Place(pos, slot);
}

void EvictionHeap::SiftDown(uint32_t pos) {
  uint32_t n = *size_;
  uint32_t slot;
  if (!SlotAt(pos, &slot)) return;
  for (;;) {
    uint32_t child = 2 * pos + 1;
    if (child >= n) break;
    uint32_t below;
    if (!SlotAt(child, &below)) break;
    if (child + 1 < n) {
      uint32_t right;
      if (!SlotAt(child + 1, &right)) break;
      if (Before(right, below)) {
        ++child;
        below = right;
      }
    }
    if (!Before(below, slot)) break;
    Place(pos, below);
    pos = child;
  }
  Place(pos, slot);
}

void EvictionHeap::Push(uint32_t slot) {
  if (*size_ >= capacity_) {  // more entries than slots: the size is garbage
    damaged_ = true;
    return;
  }
  Snapshot(slot);
  uint32_t pos = (*size_)++;
  Place(pos, slot);
  SiftUp(pos);
}

void EvictionHeap::Remove(uint32_t slot) {
  uint32_t pos = slots_[slot].heap_pos;
  uint32_t at;
  if (!SlotAt(pos, &at) || at != slot) {
    damaged_ = true;
    return;
  }
  uint32_t last = *size_ - 1;
  uint32_t moved = slot;
  if (pos != last && !SlotAt(last, &moved)) return;
  slots_[slot].heap_pos = seg::kNil;
  *size_ = last;
  if (pos == last) return;
  Place(pos, moved);
  Update(moved);
}

bool EvictionHeap::Replace(uint32_t old, uint32_t successor) {
  uint32_t pos = slots_[old].heap_pos;
  uint32_t at;
  if (successor >= capacity_ || !SlotAt(pos, &at) || at != old) {
    damaged_ = true;
    return false;
  }
  slots_[successor].key_count = slots_[old].key_count;
  slots_[successor].key_tick = slots_[old].key_tick;
  slots_[old].heap_pos = seg::kNil;
  Place(pos, successor);
  return true;
}

void EvictionHeap::SettleTop() {
  uint32_t top;
  while (*size_ > 0 && SlotAt(0, &top) && Stale(top)) {
    Snapshot(top);
    SiftDown(0);
  }
}

void EvictionHeap::Update(uint32_t slot) {
  uint32_t pos = slots_[slot].heap_pos;
  uint32_t at;
  if (!SlotAt(pos, &at) || at != slot) {
    damaged_ = true;
    return;
  }
  Snapshot(slot);
  uint32_t parent;
  if (pos > 0 && SlotAt((pos - 1) / 2, &parent) && Before(slot, parent)) {
    SiftUp(pos);
  } else if (!damaged_) {
    SiftDown(pos);
  }
}

bool EvictionHeap::Verify() const {
  uint32_t n = *size_;
  if (n > capacity_) return false;
  for (uint32_t pos = 0; pos < n; ++pos) {
    uint32_t slot = heap_[pos];
    if (slot >= capacity_ || slots_[slot].heap_pos != pos) return false;
    if (pos > 0 && Before(slot, heap_[(pos - 1) / 2])) return false;
  }
  return true;
}

}  // namespace kvcache
