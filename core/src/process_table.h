// The table of processes that use a pool, in the segment. Two kinds of rows
// (seg::RowKind): a process using the pool through the library claims its own row,
// which names it as the owner of its pins and reservations; `attach` records another
// process by pid. Each claim gives the row a new generation, so an owner recorded
// before a row was reaped and reused never matches the row's next process.
//
// Not synchronized: the caller holds the pool lock.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "segment_format.h"

namespace kvcache {

// This process's pid and start time, cached (a forked child recomputes its own).
struct ProcessId {
  pid_t pid;
  uint64_t start_time;
};
ProcessId CurrentProcess();

// Changes in a child at every fork(): a handle made under another epoch was made by
// another process (an ancestor) and must do nothing in this one.
uint64_t ForkEpoch();

class ProcessTable {
 public:
  ProcessTable(seg::ProcessSlot* slots, uint32_t capacity) : slots_(slots), capacity_(capacity) {}

  // Claims a free row for the calling process with `generation`; kNil when the table
  // is full.
  uint32_t ClaimOwn(ProcessId self, uint64_t generation);
  // True when row i is an own row claimed with `generation` and its process lives.
  bool IsOwnRow(uint32_t i, uint64_t generation) const;
  // The attach row of the live process (pid, start_time), added if needed; kNil when
  // the table is full.
  uint32_t FindOrAddAttach(pid_t pid, uint64_t start_time, uint64_t generation);
  // The attach row of `pid`, kNil if it has none.
  uint32_t FindAttach(pid_t pid) const;
  // True while the process of a used row runs.
  bool Alive(uint32_t i) const;
  // Clears the rows of processes that are gone, adding their lock-free hit counts to
  // *hits; returns how many. Allocates nothing (it runs while recovering the lock).
  uint32_t ReapDead(uint64_t* hits);
  // Moves every process's lock-free hit count into the returned sum.
  uint64_t TakeHits();
  // Rows with attach_refs > 0.
  uint32_t CountAttached() const;
  seg::ProcessSlot& at(uint32_t i) { return slots_[i]; }
  const seg::ProcessSlot& at(uint32_t i) const { return slots_[i]; }
  uint32_t capacity() const { return capacity_; }

 private:
  uint32_t FreeRow() const;

  seg::ProcessSlot* slots_;
  uint32_t capacity_;
};

}  // namespace kvcache
