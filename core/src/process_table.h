// The table of processes that use a pool, in the segment. Two kinds of rows
// (seg::RowKind): a process using the pool through the library claims its own row,
// which names it as the owner of its pins and reservations; `attach` records another
// process by pid. Each claim gives the row a new generation, so an owner recorded
// before a row was reaped and reused never matches the row's next process.
//
// Whether the process of an own row is alive is decided by a POSIX record lock that
// it holds on the row's first byte in the segment file, never by its pid: the kernel
// drops the lock when the process dies, the lock is not inherited by a fork()ed child
// (which claims a row of its own), and it means the same in every PID namespace that
// shares the file (containers with --ipc=host, sidecars). /proc/<pid> would not: a pid
// is only meaningful in its own namespace. The alternatives and why not:
//  - a robust mutex per row: owned by a thread, so it would need a thread living as
//    long as the process, and its unmapping while locked leaves the kernel's robust
//    list pointing into freed memory;
//  - an OFD lock (F_OFD_SETLK): inherited across fork() with the descriptor, so a
//    child would keep a dead parent's row alive;
//  - a heartbeat: needs a thread and a timeout, so a stopped process (SIGSTOP, a
//    debugger) would be reaped while it holds pins.
// The one trap of record locks, that closing ANY descriptor of the file drops all of
// the process's locks on it, is handled by SegmentFile (one descriptor per inode).
//
// Not synchronized: the caller holds the pool lock.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "segment_format.h"
#include "segment_file.h"

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
  // `file` is the segment file, `offset` where the table starts in it.
  ProcessTable(seg::ProcessSlot* slots, uint32_t capacity, SegmentFile* file, uint64_t offset)
      : slots_(slots), capacity_(capacity), file_(file), offset_(offset) {}

  // Claims a free row for the calling process with `generation`, locking it; kNil
  // when the table is full.
  uint32_t ClaimOwn(ProcessId self, uint64_t generation);
  // The calling process's own row, kNil if it has none (or lost it).
  uint32_t MyRow() const;
  // MyRow() without reading the table, for lock-free callers: the row this process
  // claimed (in this ForkEpoch), kNil if none. Only a hint: it may have been reaped.
  uint32_t MyRowUnlocked() const;
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
  uint64_t LockOffset(uint32_t i) const { return offset_ + uint64_t{i} * sizeof(seg::ProcessSlot); }

  seg::ProcessSlot* slots_;
  uint32_t capacity_;
  SegmentFile* file_;
  uint64_t offset_;
};

}  // namespace kvcache
