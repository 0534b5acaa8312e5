#include "caller.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvcache::fs {

bool IsOpenForRead(pid_t tid) {
  if (tid <= 0) return false;
  std::string path = "/proc/" + std::to_string(tid) + "/syscall";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // "<nr> <arg0> <arg1> ... <sp> <pc>", arguments in hex; "running" or "-1 ..." when
  // the thread is not in a system call.
  char* p = buf;
  char* end = nullptr;
  long nr = std::strtol(p, &end, 10);
  if (end == p) return false;
  unsigned long long args[6] = {};
  p = end;
  for (unsigned long long& a : args) {
    a = std::strtoull(p, &end, 16);
    if (end == p) return false;
    p = end;
  }
  unsigned long long flags;
  if (nr == SYS_openat) {
    flags = args[2];
#ifdef SYS_open
  } else if (nr == SYS_open) {
    flags = args[1];
#endif
  } else {
    return false;
  }
  return (flags & O_CREAT) == 0 && (flags & O_ACCMODE) != O_WRONLY;
}

}  // namespace kvcache::fs
