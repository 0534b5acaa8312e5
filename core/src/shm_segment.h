// A pool segment as a mapped file: /dev/shm/<name> for cpu pools (POSIX shared
// memory), or a regular file for disk pools. Either way its memory is reserved at
// creation, so a later write never dies of SIGBUS.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kvcache/status.h"

namespace kvcache {

class SegmentFile;

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
  // and only if it succeeds makes it visible under `path` (a rename that never
  // replaces), so no process ever maps a half-initialized segment; a failed init's
  // status is returned and nothing is left behind. AlreadyExists if `path` exists;
  // NoSpace (naming the pool and sizes) when the filesystem cannot hold it.
  //
  // The file is made as <dir>/.kvc-creating-<pid>-<random>, with a record lock on its
  // first byte held until it is published. Creating first sweeps such files of
  // creators that are gone (SweepStaleCreatingFiles).
  static Result<MappedSegment> Create(const std::string& path, uint64_t size, mode_t mode,
                                      const std::function<Status(std::byte*)>& init);
  // Maps an existing segment after checking it is `owner`'s (CheckSegmentFile), opened
  // without following a symlink or blocking on a FIFO. NotFound if `path` does not
  // exist; PermissionDenied naming the owner when it is not ours.
  static Result<MappedSegment> Open(const std::string& path, const SegmentOwner& owner);

  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }
  // This process's descriptor of the mapped file (read-write), if `path` still names
  // it (not a file created over the name since); NotFound otherwise. The descriptor
  // belongs to the segment: never close it (segment_file.h says why).
  Result<int> WriteFd(const std::string& path) const;
  // The open file: its descriptor and this process's record locks on it.
  SegmentFile& file() const { return *file_; }
  // True when `path` still names the file this segment maps (it was not removed, nor
  // replaced by another file since). One lstat().
  bool IsFileAt(const std::string& path) const { return IsFileAt(path, nullptr); }
  // The same, filling *seen (when not null) with what lstat() found at `path`.
  bool IsFileAt(const std::string& path, struct stat* seen) const;

 private:
  MappedSegment(std::byte* base, uint64_t size, std::shared_ptr<SegmentFile> file)
      : base_(base), size_(size), file_(std::move(file)) {}
  std::byte* base_ = nullptr;
  uint64_t size_ = 0;
  std::shared_ptr<SegmentFile> file_;
};

// Removes the files <dir>/.kvc-creating-* of creators that are gone: files of this
// user, at least 2 s old, whose creator no longer holds the lock on their first byte
// (the kernel drops it when the creator dies). A concurrent creator's file is never
// touched. Returns how many were removed.
uint64_t SweepStaleCreatingFiles(const std::string& dir);

}  // namespace kvcache
