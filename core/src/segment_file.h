// SegmentFile: this process's one open file description of a segment file, shared by
// every mapping of that file in the process, and the POSIX record locks on it.
//
// Why one: a process's record locks (fcntl F_SETLK) on a file are all dropped when the
// process closes ANY descriptor of that file. The pool judges whether a process is
// alive by such a lock (process_table.h), so the library must never close a descriptor
// of a segment it has locks on: every descriptor of a segment file this process opens
// comes from here, one per inode, closed only when the last mapping of it goes.
// Record locks are not inherited across fork(), survive exec() only with the fd (ours
// are O_CLOEXEC), are released by the kernel when the process dies, and work between
// processes in different PID namespaces.
//
// Thread-safe.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kvcache/status.h"
#include "segment_format.h"

namespace kvcache {

class SegmentFile {
 public:
  // Judges a file before it is used (e.g. its owner and mode); its error is returned.
  using Check = std::function<Status(const struct stat&)>;
  // The open file of `path` (O_RDWR, never through a symlink, never blocking on a
  // FIFO), reused if this process has it open already; `check` passes it first.
  static Result<std::shared_ptr<SegmentFile>> Open(const std::string& path, const Check& check);
  // Takes over `fd`, a file this process just created (and has no other fd of).
  static Result<std::shared_ptr<SegmentFile>> Adopt(int fd);
  ~SegmentFile();
  SegmentFile(const SegmentFile&) = delete;
  SegmentFile& operator=(const SegmentFile&) = delete;

  int fd() const { return fd_; }
  dev_t dev() const { return dev_; }
  ino_t ino() const { return ino_; }
  uint64_t size() const { return size_; }

  // Takes a write lock on the byte at `offset` for this process, without waiting.
  // False when another process holds it.
  bool TryLockByte(uint64_t offset) const;
  void UnlockByte(uint64_t offset) const;
  // True when another process holds a lock on the byte (this process's own locks
  // never count).
  bool LockedByOther(uint64_t offset) const;

  // This process's row in the segment's process table and its generation, with the
  // ForkEpoch() it was claimed in. Written under the pool lock.
  std::atomic<uint64_t> row_epoch{0};
  std::atomic<uint32_t> row{seg::kNil};
  std::atomic<uint64_t> row_generation{0};

 private:
  SegmentFile(int fd, dev_t dev, ino_t ino, uint64_t size)
      : fd_(fd), dev_(dev), ino_(ino), size_(size) {}
  static Result<std::shared_ptr<SegmentFile>> Register(int fd, const std::string& what,
                                                       const Check& check);
  static std::shared_ptr<SegmentFile> Share(SegmentFile* file);

  int fd_;
  int spare_fd_ = -1;  // a second descriptor opened in a race; closed with fd_
  dev_t dev_;
  ino_t ino_;
  uint64_t size_;
};

}  // namespace kvcache
