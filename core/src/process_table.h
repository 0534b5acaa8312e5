// The table of processes that use a pool, in the segment. A process is named by its
// pid and start time, so a reused pid is never mistaken for the process that died.
//
// Not synchronized: the caller holds the pool lock.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "segment_format.h"

namespace kvcache {

// This process's pid and start time, cached (a forked child recomputes its own).
struct ProcessId {
  pid_t pid;
  uint64_t start_time;
};
ProcessId CurrentProcess();

class ProcessTable {
 public:
  ProcessTable(seg::ProcessSlot* slots, uint32_t capacity) : slots_(slots), capacity_(capacity) {}

  // Index of the live process's slot, registering it if needed; kNil when the table
  // is full of live processes.
  uint32_t FindOrAdd(pid_t pid, uint64_t start_time);
  // Index of the slot of `pid`, kNil if it has none.
  uint32_t Find(pid_t pid) const;
  // Clears the slots of processes that are gone; returns their indexes and adds their
  // lock-free hit counts to *hits.
  std::vector<uint32_t> ReapDead(uint64_t* hits);
  // Moves every process's lock-free hit count into the returned sum.
  uint64_t TakeHits();
  // Processes with attach_refs > 0.
  uint32_t CountAttached() const;
  seg::ProcessSlot& at(uint32_t i) { return slots_[i]; }
  const seg::ProcessSlot& at(uint32_t i) const { return slots_[i]; }
  uint32_t capacity() const { return capacity_; }

 private:
  seg::ProcessSlot* slots_;
  uint32_t capacity_;
};

}  // namespace kvcache
