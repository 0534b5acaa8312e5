// Pieces kvcachefs.cc and kvcachefs_dirs.cc share: node attributes' building blocks
// and the directory listing types.
#pragma once

#include <chrono>
#include <cmath>
#include <ctime>
#include <string>
#include <vector>

#include "kvcachefs.h"

namespace kvcache::fs {

constexpr uint32_t kBlockSize = 1 << 20;  // st_blksize: tools then do 1 MiB I/O

inline struct timespec ToTimespec(double seconds) {
  struct timespec ts{};
  if (seconds <= 0) return ts;
  double whole = std::floor(seconds);
  ts.tv_sec = static_cast<time_t>(whole);
  ts.tv_nsec = static_cast<long>((seconds - whole) * 1e9);
  return ts;
}

// Times of the nodes that are not entries: when the daemon started.
inline struct timespec MountTime(uint64_t boot_ns) {
  struct timespec ts{};
  ts.tv_sec = static_cast<time_t>(boot_ns / 1000000000);
  ts.tv_nsec = static_cast<long>(boot_ns % 1000000000);
  return ts;
}

inline uint64_t NowGeneration() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

inline Node PoolNode(NodeKind kind, const std::string& pool) {
  Node n;
  n.kind = kind;
  n.pool = pool;
  return n;
}

inline SeqAttrs AttrsOf(const EntryInfo& info) {
  return {info.size_bytes, info.created, info.last_accessed};
}

// The thread group (process) of thread `tid`, from /proc; `tid` itself when unknown.
pid_t ThreadGroupOf(pid_t tid);
// True when thread `tid` is exiting because a signal killed it (its descriptors are
// being closed by its death, not by the program).
bool DyingBySignal(pid_t tid);

// A fixed name of a listing (dots, pool files, pools, by-prefix hashes and links).
struct KvcacheFs::DirEntry {
  std::string name;
  Node node;
  ChunkInfo chunk;  // kChunkFile only
  Ino self = 0;    // "." and "..": no lookup is counted for them
};

// An entry of a pool listed by id: all a listing needs to name it and give its
// attributes, kept small (a pool lists up to millions of them; the name is made when
// it is sent).
struct KvcacheFs::SeqRow {
  uint64_t seq = 0;
  uint64_t generation = 0;
  SeqAttrs attrs;
};

// A directory handle lists a snapshot taken at opendir (and again at rewinddir), so a
// cookie is the position in that snapshot plus one: every u64 id lists, whatever its
// value (an off_t cannot hold an id plus a base), and offsets handed out stay valid
// for the handle whatever is added or removed meanwhile. The fixed names come first,
// then the ids.
struct KvcacheFs::DirHandle {
  std::vector<DirEntry> entries;  // cookie == index + 1
  std::vector<SeqRow> seqs;       // cookie == entries.size() + index + 1
  std::string pool;               // of seqs
  PoolOwner owner;                // of seqs, when listed
  bool fresh = true;              // listed by opendir, not yet read
};

}  // namespace kvcache::fs
