#include "shm_segment.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <ctime>
#include <set>
#include <random>
#include <utility>

#include "file_util.h"
#include "fork_guard.h"
#include "segment_file.h"
#include "test_hooks.h"
#include "thread_annotations.h"
#include "kvcache/size.h"

namespace kvcache {

MappedSegment::MappedSegment(MappedSegment&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      file_(std::move(other.file_)) {}

MappedSegment& MappedSegment::operator=(MappedSegment&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) munmap(base_, size_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    file_ = std::move(other.file_);
  }
  return *this;
}

Result<int> MappedSegment::WriteFd(const std::string& path) const {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || st.st_dev != file_->dev() || st.st_ino != file_->ino()) {
    return Status::NotFound(path + " is no longer the mapped segment");
  }
  return file_->fd();
}

bool MappedSegment::IsFileAt(const std::string& path, struct stat* seen) const {
  struct stat st {};
  bool same = lstat(path.c_str(), &st) == 0 && st.st_dev == file_->dev() &&
              st.st_ino == file_->ino();
  if (seen != nullptr) *seen = st;
  return same;
}

MappedSegment::~MappedSegment() {
  if (base_ != nullptr) munmap(base_, size_);
}

namespace {

Status NoRoom(const std::string& path, uint64_t size) {
  struct statvfs vfs {};
  uint64_t avail = 0;
  if (statvfs(DirName(path).c_str(), &vfs) == 0) avail = uint64_t{vfs.f_bavail} * vfs.f_frsize;
  return Status::NoSpace("cannot reserve " + FormatSizeLong(size) + " for " + path + ": only " +
                         FormatSizeLong(avail) + " available in " + DirName(path));
}

}  // namespace

namespace {

constexpr char kCreatingPrefix[] = ".kvc-creating-";
// A creating file younger than this is never swept, whatever its lock says: creators of
// format version 2 took no lock.
constexpr double kCreatingGraceSeconds = 2.0;

// The creating files of this process, which its own sweeps must not open: closing a
// descriptor of one would drop the lock that says its creator lives.
struct Creating {
  Mutex mu;  // a leaf lock: held only to look a name up, add or remove it
  std::set<std::string> names GUARDED_BY(mu);
  ForkGuard mu_across_fork{&mu, ForkRank::kLeaf};
};
Creating& OwnCreating() {
  static Creating* c = new Creating;
  return *c;
}
// Made as the library loads, under no lock (registering with ForkGuard needs that).
[[maybe_unused]] Creating& creating_at_load = OwnCreating();

flock Byte0(short type) {
  flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  return fl;
}

}  // namespace

uint64_t SweepStaleCreatingFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  uint64_t swept = 0;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(kCreatingPrefix, 0) != 0) continue;
    std::string path = dir + "/" + name;
    {
      MutexLock lock(&OwnCreating().mu);
      if (OwnCreating().names.count(path) > 0) continue;
    }
    struct stat st {};
    if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) continue;
    double age = static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) +
                 static_cast<double>(now.tv_nsec - st.st_mtim.tv_nsec) * 1e-9;
    if (age < kCreatingGraceSeconds) continue;
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) continue;
    // The creator holds a write lock on byte 0 until it publishes or gives up; taking
    // it means the creator is gone (the kernel dropped its lock when it died).
    flock fl = Byte0(F_WRLCK);
    struct stat fst {};
    if (fcntl(fd, F_SETLK, &fl) == 0 && fstat(fd, &fst) == 0 && fst.st_ino == st.st_ino &&
        fst.st_dev == st.st_dev && fst.st_nlink > 0) {
      if (unlink(path.c_str()) == 0) ++swept;
    }
    close(fd);
  }
  closedir(d);
  return swept;
}

Result<MappedSegment> MappedSegment::Create(const std::string& path, uint64_t size, mode_t mode,
                                            const std::function<Status(std::byte*)>& init) {
  if (access(path.c_str(), F_OK) == 0) return Status::AlreadyExists(path + " already exists");
  SweepStaleCreatingFiles(DirName(path));
  std::random_device rd;
  std::string tmp;
  int fd = -1;
  // Create the file and lock it; a sweep that took it in between (nlink 0) means
  // another name.
  for (int attempt = 0; fd < 0; ++attempt) {
    tmp = DirName(path) + "/" + kCreatingPrefix + std::to_string(getpid()) + "-" +
          std::to_string(rd());
    {
      MutexLock lock(&OwnCreating().mu);
      OwnCreating().names.insert(tmp);
    }
    fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
      int err = errno;
      MutexLock lock(&OwnCreating().mu);
      OwnCreating().names.erase(tmp);
      return ErrnoToStatus(err, "create " + tmp);
    }
    flock fl = Byte0(F_WRLCK);
    struct stat st {};
    if (fcntl(fd, F_SETLKW, &fl) != 0 || fstat(fd, &st) != 0 || st.st_nlink == 0) {
      close(fd);
      fd = -1;
      MutexLock lock(&OwnCreating().mu);
      OwnCreating().names.erase(tmp);
      if (attempt == 3) {
        return Status::IOError("cannot create a temporary file in " + DirName(path));
      }
    }
  }
  auto forget = [&] {
    MutexLock lock(&OwnCreating().mu);
    OwnCreating().names.erase(tmp);
  };
  auto fail = [&](Status s) {
    unlink(tmp.c_str());
    close(fd);
    forget();
    return s;
  };
  if (fchmod(fd, mode) != 0) return fail(ErrnoToStatus(errno, "chmod " + tmp));
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    return fail(err == ENOSPC ? NoRoom(path, size) : ErrnoToStatus(err, "reserve " + path));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail(ErrnoToStatus(errno, "mmap " + path));
  // Never published unless initialized: a segment with an uninitialized lock would
  // wedge or crash whoever maps it.
  if (Status s = init(static_cast<std::byte*>(base)); !s.ok()) {
    munmap(base, size);
    return fail(s);
  }
  CrashPoint("create-unpublished");
  if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) != 0) {
    int err = errno;
    munmap(base, size);
    Status s = err == EEXIST ? Status::AlreadyExists(path + " already exists")
                             : ErrnoToStatus(err, "publish " + path);
    return fail(s);
  }
  forget();
  flock unlock = Byte0(F_UNLCK);
  fcntl(fd, F_SETLK, &unlock);
  // The descriptor stays open: it is this process's one descriptor of the segment
  // (segment_file.h), on which its process-table row is locked.
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<SegmentFile> file, SegmentFile::Adopt(fd));
  MappedSegment seg(static_cast<std::byte*>(base), size, std::move(file));
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
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<SegmentFile> file,
                       SegmentFile::Open(path, [&](const struct stat& st) {
                         return CheckSegmentFile(st, path, owner);
                       }));
  uint64_t size = file->size();
  if (size == 0) return Status::Corruption(path + " is empty");
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, file->fd(), 0);
  if (base == MAP_FAILED) return ErrnoToStatus(errno, "mmap " + path);
  return MappedSegment(static_cast<std::byte*>(base), size, std::move(file));
}

}  // namespace kvcache
