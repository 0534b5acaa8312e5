#include "process_table.h"

#include "clock.h"

namespace kvcache {

uint32_t ProcessTable::Find(pid_t pid) const {
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].pid == pid) return i;
  }
  return seg::kNil;
}

uint32_t ProcessTable::FindOrAdd(pid_t pid, uint64_t start_time) {
  uint32_t free_slot = seg::kNil;
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].pid == pid && slots_[i].start_time == start_time) return i;
    if (slots_[i].pid == 0 && free_slot == seg::kNil) free_slot = i;
  }
  if (free_slot == seg::kNil) return seg::kNil;
  slots_[free_slot] = seg::ProcessSlot{pid, 0, start_time, 0.0, 0};
  return free_slot;
}

std::vector<uint32_t> ProcessTable::ReapDead(uint64_t* hits) {
  std::vector<uint32_t> dead;
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].pid != 0 && !ProcessAlive(slots_[i].pid, slots_[i].start_time)) {
      *hits += seg::Atomic(slots_[i].hits).exchange(0);
      slots_[i] = seg::ProcessSlot{};
      dead.push_back(i);
    }
  }
  return dead;
}

uint64_t ProcessTable::TakeHits() {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].pid != 0) sum += seg::Atomic(slots_[i].hits).exchange(0);
  }
  return sum;
}

uint32_t ProcessTable::CountAttached() const {
  uint32_t n = 0;
  for (uint32_t i = 0; i < capacity_; ++i) n += slots_[i].pid != 0 && slots_[i].attach_refs > 0;
  return n;
}

}  // namespace kvcache
