#include "process_table.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "clock.h"

namespace kvcache {

namespace {
std::atomic<pid_t> g_pid{0};
std::atomic<uint64_t> g_start_time{0};
}  // namespace

ProcessId CurrentProcess() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, [] { g_pid = 0; }); });
  pid_t pid = g_pid.load(std::memory_order_acquire);
  if (pid == 0) {
    pid = getpid();
    g_start_time.store(ProcessStartTime(pid), std::memory_order_relaxed);
    g_pid.store(pid, std::memory_order_release);
  }
  return {pid, g_start_time.load(std::memory_order_relaxed)};
}

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
