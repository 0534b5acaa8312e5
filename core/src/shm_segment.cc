#include "shm_segment.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <utility>

#include "file_util.h"
#include "kvcache/size.h"

namespace kvcache {

MappedSegment::MappedSegment(MappedSegment&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      dev_(other.dev_),
      ino_(other.ino_) {}

MappedSegment& MappedSegment::operator=(MappedSegment&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) munmap(base_, size_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    dev_ = other.dev_;
    ino_ = other.ino_;
  }
  return *this;
}

Result<int> MappedSegment::OpenForWrite(const std::string& path) const {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return ErrnoToStatus(errno, "open " + path);
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) {
    close(fd);
    return Status::NotFound(path + " is no longer the mapped segment");
  }
  return fd;
}

MappedSegment::~MappedSegment() {
  if (base_ != nullptr) munmap(base_, size_);
}

namespace {

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

Status NoRoom(const std::string& path, uint64_t size) {
  struct statvfs vfs {};
  uint64_t avail = 0;
  if (statvfs(DirOf(path).c_str(), &vfs) == 0) avail = uint64_t{vfs.f_bavail} * vfs.f_frsize;
  return Status::NoSpace("cannot reserve " + FormatSizeLong(size) + " for " + path + ": only " +
                         FormatSizeLong(avail) + " available in " + DirOf(path));
}

}  // namespace

Result<MappedSegment> MappedSegment::Create(const std::string& path, uint64_t size, mode_t mode,
                                            const std::function<void(std::byte*)>& init) {
  if (access(path.c_str(), F_OK) == 0) return Status::AlreadyExists(path + " already exists");
  std::random_device rd;
  std::string tmp = DirOf(path) + "/.kvc-creating-" + std::to_string(getpid()) + "-" +
                    std::to_string(rd());
  int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoToStatus(errno, "create " + tmp);
  auto fail = [&](Status s) {
    close(fd);
    unlink(tmp.c_str());
    return s;
  };
  if (fchmod(fd, mode) != 0) return fail(ErrnoToStatus(errno, "chmod " + tmp));
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    return fail(err == ENOSPC ? NoRoom(path, size) : ErrnoToStatus(err, "reserve " + path));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) return fail(ErrnoToStatus(errno, "stat " + tmp));
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail(ErrnoToStatus(errno, "mmap " + path));
  MappedSegment seg(static_cast<std::byte*>(base), size, st.st_dev, st.st_ino);
  init(seg.base_);
  if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    Status s = err == EEXIST ? Status::AlreadyExists(path + " already exists")
                             : ErrnoToStatus(err, "publish " + path);
    return fail(s);
  }
  close(fd);
  return seg;
}

namespace {

const char* KindOf(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0%03o", static_cast<unsigned>(mode & 0777));
  return buf;
}

}  // namespace

Status CheckSegmentFile(const struct stat& st, const std::string& path,
                        const SegmentOwner& owner) {
  std::string whose = "owned by " + DescribeUid(st.st_uid);
  if (!S_ISREG(st.st_mode)) {
    return Status::PermissionDenied("refusing segment " + path + ": it is " +
                                    KindOf(st.st_mode) + ", " + whose);
  }
  if (st.st_uid != owner.uid) {
    return Status::PermissionDenied("refusing segment " + path + ": it is " + whose +
                                    ", not by the pool's owner " + DescribeUid(owner.uid) +
                                    " (remove it if it is not a pool of yours)");
  }
  mode_t extra = st.st_mode & 022 & ~owner.allowed_write_bits;
  if (extra != 0) {
    return Status::PermissionDenied(
        "refusing segment " + path + " (" + whose + "): mode " + Octal(st.st_mode) +
        " lets " + ((extra & 002) != 0 ? "every user" : "its group") +
        " write it, but the pool was not created so");
  }
  return Status::Ok();
}

Status CheckSegmentPath(const std::string& path, const SegmentOwner& owner) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat " + path);
  return CheckSegmentFile(st, path, owner);
}

Result<MappedSegment> MappedSegment::Open(const std::string& path, const SegmentOwner& owner) {
  // O_NOFOLLOW: a symlink planted under the name never leads to another file;
  // O_NONBLOCK: a FIFO planted there cannot block the open. Both are refused below.
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err != ENOENT) {
      // Say whose file it is when it is not ours (a symlink, or a file we may not open).
      if (Status s = CheckSegmentPath(path, owner); !s.ok() && s.code() != Code::kNotFound) {
        return s;
      }
    }
    return ErrnoToStatus(err, "open " + path);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoToStatus(err, "stat " + path);
  }
  if (Status s = CheckSegmentFile(st, path, owner); !s.ok()) {
    close(fd);
    return s;
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    close(fd);
    return Status::Corruption(path + " is empty");
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (base == MAP_FAILED) return ErrnoToStatus(err, "mmap " + path);
  return MappedSegment(static_cast<std::byte*>(base), size, st.st_dev, st.st_ino);
}

}  // namespace kvcache
