#include "segment_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <utility>

#include "fork_guard.h"
#include "thread_annotations.h"

namespace kvcache {
namespace {

// Every segment file this process has open, by inode, with how many handles use it.
// The count is kept here, under the mutex, rather than in a shared_ptr's control block,
// so that closing the last handle and opening the file again cannot interleave: a close
// would drop the record locks the new handle took.
struct Entry {
  SegmentFile* file;
  uint64_t users;
};
// mu is a leaf lock: no other lock is taken while it is held (a pool's lock never is:
// SegmentFile::Open runs before a segment is mapped, the deleter after it is unmapped).
struct Registry {
  Mutex mu;
  std::map<std::pair<dev_t, ino_t>, Entry> files GUARDED_BY(mu);
  ForkGuard mu_across_fork{&mu, ForkRank::kLeaf};
};

Registry& TheRegistry() {
  static Registry* registry = new Registry;  // never destroyed: used from destructors
  return *registry;
}
// Made as the library loads, under no lock (registering with ForkGuard needs that).
[[maybe_unused]] Registry& registry_at_load = TheRegistry();

flock ByteLock(short type, uint64_t offset) {
  flock fl{};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(offset);
  fl.l_len = 1;
  return fl;
}

}  // namespace

std::shared_ptr<SegmentFile> SegmentFile::Share(SegmentFile* file) {
  // REQUIRES: the registry mutex, with file's count already raised for this handle.
  return std::shared_ptr<SegmentFile>(file, [](SegmentFile* f) {
    Registry& r = TheRegistry();
    MutexLock lock(&r.mu);
    auto it = r.files.find({f->dev_, f->ino_});
    if (it != r.files.end() && it->second.file == f && --it->second.users > 0) return;
    if (it != r.files.end() && it->second.file == f) r.files.erase(it);
    delete f;  // closes: drops every record lock this process has on the file
  });
}

Result<std::shared_ptr<SegmentFile>> SegmentFile::Open(const std::string& path,
                                                       const Check& check) {
  Registry& r = TheRegistry();
  struct stat st {};
  bool named = lstat(path.c_str(), &st) == 0;
  if (named && S_ISREG(st.st_mode)) {
    MutexLock lock(&r.mu);
    auto it = r.files.find({st.st_dev, st.st_ino});
    if (it != r.files.end()) {
      KVC_RETURN_IF_ERROR(check(st));
      ++it->second.users;
      return Share(it->second.file);
    }
  }
  // O_NOFOLLOW: a symlink planted under the name never leads to another file;
  // O_NONBLOCK: a FIFO planted there cannot block the open. `check` refuses both.
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int err = errno;
    if (err != ENOENT && named) KVC_RETURN_IF_ERROR(check(st));  // say whose file it is
    return ErrnoToStatus(err, "open " + path);
  }
  return Register(fd, path, check);
}

Result<std::shared_ptr<SegmentFile>> SegmentFile::Adopt(int fd) {
  return Register(fd, "segment", [](const struct stat&) { return Status::Ok(); });
}

Result<std::shared_ptr<SegmentFile>> SegmentFile::Register(int fd, const std::string& what,
                                                           const Check& check) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);  // a file we cannot stat is not one we hold locks on
    return ErrnoToStatus(err, "stat " + what);
  }
  Registry& r = TheRegistry();
  MutexLock lock(&r.mu);
  auto it = r.files.find({st.st_dev, st.st_ino});
  if (it != r.files.end()) {
    // The path named another file when we looked, then this one, which this process
    // has open already. Closing `fd` would drop our locks on it: keep it with the first.
    SegmentFile* open = it->second.file;
    if (open->spare_fd_ < 0) {
      open->spare_fd_ = fd;
    }  // else: three opens racing renames; leaking one fd until exit is the safe choice
    KVC_RETURN_IF_ERROR(check(st));
    ++it->second.users;
    return Share(open);
  }
  if (Status s = check(st); !s.ok()) {
    close(fd);  // not a file this process had open: it holds no locks on it
    return s;
  }
  auto* file = new SegmentFile(fd, st.st_dev, st.st_ino, static_cast<uint64_t>(st.st_size));
  r.files.emplace(std::make_pair(st.st_dev, st.st_ino), Entry{file, 1});
  return Share(file);
}

SegmentFile::~SegmentFile() {
  if (spare_fd_ >= 0) close(spare_fd_);
  close(fd_);
}

bool SegmentFile::TryLockByte(uint64_t offset) const {
  flock fl = ByteLock(F_WRLCK, offset);
  return fcntl(fd_, F_SETLK, &fl) == 0;
}

void SegmentFile::UnlockByte(uint64_t offset) const {
  flock fl = ByteLock(F_UNLCK, offset);
  fcntl(fd_, F_SETLK, &fl);
}

bool SegmentFile::LockedByOther(uint64_t offset) const {
  flock fl = ByteLock(F_WRLCK, offset);
  if (fcntl(fd_, F_GETLK, &fl) != 0) return true;  // cannot tell: never judge it dead
  return fl.l_type != F_UNLCK;
}

}  // namespace kvcache
