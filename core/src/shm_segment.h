// A pool segment as a mapped file: /dev/shm/<name> for cpu pools (POSIX shared
// memory), or a regular file for disk pools. Either way its memory is reserved at
// creation, so a later write never dies of SIGBUS.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "kvcache/status.h"

namespace kvcache {

// Whose a segment file must be: opening refuses any other file, before mapping it.
struct SegmentOwner {
  uid_t uid = 0;
  // The group/other write bits (of 022) the pool was created with on purpose; any
  // other write bit on the file means someone else may have changed it.
  mode_t allowed_write_bits = 0;
};

// PermissionDenied, naming the file's owner, unless `st` (of the file at `path`) is a
// regular file owned by owner.uid without write bits beyond owner.allowed_write_bits.
Status CheckSegmentFile(const struct stat& st, const std::string& path, const SegmentOwner& owner);

// CheckSegmentFile on the file at `path` itself, never following a symlink. NotFound
// when there is nothing there.
Status CheckSegmentPath(const std::string& path, const SegmentOwner& owner);

class MappedSegment {
 public:
  MappedSegment() = default;
  MappedSegment(MappedSegment&& other) noexcept;
  MappedSegment& operator=(MappedSegment&& other) noexcept;
  MappedSegment(const MappedSegment&) = delete;
  MappedSegment& operator=(const MappedSegment&) = delete;
  ~MappedSegment();

  // Creates `path` with `size` bytes reserved and mapped, runs `init` on the mapping,
  // and only then makes it visible under `path` (a rename that never replaces), so
  // no process ever maps a half-initialized segment. AlreadyExists if `path` exists;
  // NoSpace (naming the pool and sizes) when the filesystem cannot hold it.
  static Result<MappedSegment> Create(const std::string& path, uint64_t size, mode_t mode,
                                      const std::function<void(std::byte*)>& init);
  // Maps an existing segment after checking it is `owner`'s (CheckSegmentFile), opened
  // without following a symlink or blocking on a FIFO. NotFound if `path` does not
  // exist; PermissionDenied naming the owner when it is not ours.
  static Result<MappedSegment> Open(const std::string& path, const SegmentOwner& owner);

  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }
  // Opens `path` for writing if it still names the file this segment maps (not one
  // created over the name since); the caller closes the fd. NotFound otherwise.
  Result<int> OpenForWrite(const std::string& path) const;

 private:
  MappedSegment(std::byte* base, uint64_t size, dev_t dev, ino_t ino)
      : base_(base), size_(size), dev_(dev), ino_(ino) {}
  std::byte* base_ = nullptr;
  uint64_t size_ = 0;
  dev_t dev_ = 0;  // identity of the mapped file
  ino_t ino_ = 0;
};

}  // namespace kvcache
