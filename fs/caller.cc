#include "caller.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>

#include "thread_annotations.h"

namespace kvcache::fs {

namespace {

// The open descriptors of /proc/<tid>/syscall of the threads that asked last, so that a
// lookup costs one pread instead of a path walk, an open, a read and a close. A
// descriptor stays bound to the thread it was opened for: once that thread has exited,
// its reads fail (even when the number went to a new thread), and the number is opened
// afresh. Bounded: when full, all are closed and the cache starts over.
class SyscallFiles {
 public:
  // Reads thread `tid`'s /proc/<tid>/syscall into buf (NUL-terminated); the length
  // read, or -1.
  ssize_t Read(pid_t tid, char* buf, size_t size) {
    std::shared_ptr<Fd> fd = Find(tid);
    if (fd != nullptr) {
      ssize_t n = pread(fd->fd, buf, size - 1, 0);
      if (n > 0) return Terminate(buf, n);
      Drop(tid, fd);
    }
    std::string path = "/proc/" + std::to_string(tid) + "/syscall";
    auto fresh = std::make_shared<Fd>(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fresh->fd < 0) return -1;
    ssize_t n = pread(fresh->fd, buf, size - 1, 0);
    if (n <= 0) return -1;
    Keep(tid, std::move(fresh));
    return Terminate(buf, n);
  }

 private:
  // Closed when the last reader lets go, so no read ever meets a reused number.
  struct Fd {
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
      if (fd >= 0) close(fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int fd;
  };
  static constexpr size_t kMaxFiles = 64;

  static ssize_t Terminate(char* buf, ssize_t n) {
    buf[n] = '\0';
    return n;
  }
  std::shared_ptr<Fd> Find(pid_t tid) {
    MutexLock lock(&mu_);
    auto it = files_.find(tid);
    return it == files_.end() ? nullptr : it->second;
  }
  void Drop(pid_t tid, const std::shared_ptr<Fd>& fd) {
    MutexLock lock(&mu_);
    auto it = files_.find(tid);
    if (it != files_.end() && it->second == fd) files_.erase(it);
  }
  void Keep(pid_t tid, std::shared_ptr<Fd> fd) {
    MutexLock lock(&mu_);
    if (files_.size() >= kMaxFiles) files_.clear();
    files_[tid] = std::move(fd);
  }

  Mutex mu_;
  std::unordered_map<pid_t, std::shared_ptr<Fd>> files_ GUARDED_BY(mu_);
};

// The flags of the open(2)/openat(2)/creat(2) thread `tid` is blocked in, from
// /proc/<tid>/syscall; -1 when it is in no such call or it cannot be told.
long long OpenFlagsOf(pid_t tid) {
  if (tid <= 0) return -1;
  static SyscallFiles* files = new SyscallFiles;  // never destroyed: no exit-order race
  char buf[256];
  if (files->Read(tid, buf, sizeof(buf)) <= 0) return -1;
  // "<nr> <arg0> <arg1> ... <sp> <pc>", arguments in hex; "running" or "-1 ..." when
  // the thread is not in a system call.
  char* p = buf;
  char* end = nullptr;
  long nr = std::strtol(p, &end, 10);
  if (end == p) return -1;
  unsigned long long args[6] = {};
  p = end;
  for (unsigned long long& a : args) {
    a = std::strtoull(p, &end, 16);
    if (end == p) return -1;
    p = end;
  }
  if (nr == SYS_openat) return static_cast<long long>(args[2] & 0xffffffffu);
#ifdef SYS_open
  if (nr == SYS_open) return static_cast<long long>(args[1] & 0xffffffffu);
#endif
#ifdef SYS_creat
  if (nr == SYS_creat) return O_CREAT | O_WRONLY | O_TRUNC;
#endif
  return -1;
}

}  // namespace

OpenIntent OpenIntentOf(pid_t tid) {
  long long flags = OpenFlagsOf(tid);
  if (flags < 0) return OpenIntent::kNone;
  if ((flags & O_CREAT) == 0 && (flags & O_ACCMODE) != O_WRONLY) return OpenIntent::kRead;
  if ((flags & O_CREAT) != 0 && (flags & O_TRUNC) != 0 && (flags & O_ACCMODE) != O_RDONLY) {
    return OpenIntent::kReplace;
  }
  return OpenIntent::kOtherOpen;
}

}  // namespace kvcache::fs
