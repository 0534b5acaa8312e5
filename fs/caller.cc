#include "caller.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvcache::fs {

namespace {

// The flags of the open(2)/openat(2)/creat(2) thread `tid` is blocked in, from
// /proc/<tid>/syscall; -1 when it is in no such call or it cannot be told.
long long OpenFlagsOf(pid_t tid) {
  if (tid <= 0) return -1;
  std::string path = "/proc/" + std::to_string(tid) + "/syscall";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
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
