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
std::atomic<uint64_t> g_fork_epoch{1};

void RegisterForkHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(nullptr, nullptr, [] {
      g_pid.store(0, std::memory_order_relaxed);
      g_fork_epoch.fetch_add(1, std::memory_order_relaxed);
    });
  });
}
}  // namespace

ProcessId CurrentProcess() {
  RegisterForkHandler();
  pid_t pid = g_pid.load(std::memory_order_acquire);
  if (pid == 0) {
    pid = getpid();
    g_start_time.store(ProcessStartTime(pid), std::memory_order_relaxed);
    g_pid.store(pid, std::memory_order_release);
  }
  return {pid, g_start_time.load(std::memory_order_relaxed)};
}

uint64_t ForkEpoch() {
  RegisterForkHandler();
  return g_fork_epoch.load(std::memory_order_relaxed);
}

uint32_t ProcessTable::ClaimOwn(ProcessId self, uint64_t generation) {
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].kind != seg::kFreeRow) continue;
    // A free row whose byte is locked belongs to a process whose row was cleared
    // while it lived (damaged table): leave it to that process.
    if (!file_->TryLockByte(LockOffset(i))) continue;
    slots_[i] = seg::ProcessSlot{};
    slots_[i].pid = self.pid;
    slots_[i].start_time = self.start_time;
    slots_[i].generation = generation;
    slots_[i].kind = seg::kOwnRow;
    file_->row.store(i, std::memory_order_relaxed);
    file_->row_generation.store(generation, std::memory_order_relaxed);
    file_->row_epoch.store(ForkEpoch(), std::memory_order_release);
    return i;
  }
  return seg::kNil;
}

uint32_t ProcessTable::MyRowUnlocked() const {
  if (file_->row_epoch.load(std::memory_order_acquire) != ForkEpoch()) return seg::kNil;
  uint32_t row = file_->row.load(std::memory_order_relaxed);
  return row < capacity_ ? row : seg::kNil;
}

uint32_t ProcessTable::MyRow() const {
  uint32_t row = MyRowUnlocked();
  if (row == seg::kNil ||
      !IsOwnRow(row, file_->row_generation.load(std::memory_order_relaxed))) {
    return seg::kNil;  // none, or reaped and reused since
  }
  return row;
}

bool ProcessTable::IsOwnRow(uint32_t i, uint64_t generation) const {
  return i < capacity_ && slots_[i].kind == seg::kOwnRow && slots_[i].generation == generation;
}

uint32_t ProcessTable::FindAttach(pid_t pid) const {
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].kind == seg::kAttachRow && slots_[i].pid == pid) return i;
  }
  return seg::kNil;
}

uint32_t ProcessTable::FindOrAddAttach(pid_t pid, uint64_t start_time, uint64_t generation) {
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].kind == seg::kAttachRow && slots_[i].pid == pid &&
        slots_[i].start_time == start_time) {
      return i;
    }
  }
  uint32_t i = 0;
  while (i < capacity_ && slots_[i].kind != seg::kFreeRow) ++i;
  if (i == capacity_) return seg::kNil;
  slots_[i] = seg::ProcessSlot{};
  slots_[i].pid = pid;
  slots_[i].start_time = start_time;
  slots_[i].generation = generation;
  slots_[i].kind = seg::kAttachRow;
  return i;
}

bool ProcessTable::Alive(uint32_t i) const {
  const seg::ProcessSlot& row = slots_[i];
  switch (row.kind) {
    case seg::kOwnRow:
      // This process's own locks never show to itself (F_GETLK): it knows its row.
      return i == MyRow() || file_->LockedByOther(LockOffset(i));
    case seg::kAttachRow:
      // Named by pid on purpose (`attach --pid`), in the attaching caller's namespace;
      // such a row holds no pins or reservations.
      return ProcessAlive(row.pid, row.start_time);
    default:
      return false;
  }
}

uint32_t ProcessTable::ReapDead(uint64_t* hits) {
  uint32_t dead = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].kind == seg::kFreeRow) continue;
    if (slots_[i].kind > seg::kAttachRow || !Alive(i)) {
      *hits += seg::Atomic(slots_[i].hits).exchange(0);
      slots_[i] = seg::ProcessSlot{};
      ++dead;
    }
  }
  return dead;
}

uint64_t ProcessTable::TakeHits() {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    if (slots_[i].kind != seg::kFreeRow) sum += seg::Atomic(slots_[i].hits).exchange(0);
  }
  return sum;
}

uint32_t ProcessTable::CountAttached() const {
  uint32_t n = 0;
  for (uint32_t i = 0; i < capacity_; ++i) {
    n += slots_[i].kind != seg::kFreeRow && slots_[i].attach_refs > 0;
  }
  return n;
}

}  // namespace kvcache
