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

struct KvcacheFs::DirEntry {
  std::string name;
  Node node;
  EntryInfo info;  // kSeqFile only
  off_t cookie = 0;
  Ino self = 0;    // "." and "..": no lookup is counted for them
};

// A directory handle lists a snapshot taken at opendir (and again at rewinddir), so a
// cookie is the position in that snapshot plus one: every u64 id lists, whatever its
// value (an off_t cannot hold an id plus a base), and offsets handed out stay valid
// for the handle whatever is added or removed meanwhile.
struct KvcacheFs::DirHandle {
  std::vector<DirEntry> entries;  // cookie == index + 1
  bool fresh = true;              // listed by opendir, not yet read
};

}  // namespace kvcache::fs
