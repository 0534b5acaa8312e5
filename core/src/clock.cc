#include "clock.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace kvcache {

namespace {

double SecondsOf(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

double NowSeconds() { return SecondsOf(CLOCK_REALTIME); }

double StampSeconds() { return SecondsOf(CLOCK_REALTIME_COARSE); }

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

// Reads /proc/<pid>/stat; returns false when the process is gone.
bool ReadStat(pid_t pid, char& state, uint64_t& start_time) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] == '\0') return false;
  p += 2;
  state = *p;
  // Field 3 is the state; starttime is field 22, i.e. 19 fields after the state.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  start_time = std::strtoull(p, nullptr, 10);
  return true;
}

}  // namespace

uint64_t ProcessStartTime(pid_t pid) {
  char state = 0;
  uint64_t start = 0;
  return ReadStat(pid, state, start) ? start : 0;
}

bool ProcessAlive(pid_t pid, uint64_t start_time) {
  char state = 0;
  uint64_t start = 0;
  if (pid <= 0 || !ReadStat(pid, state, start)) return false;
  if (state == 'Z' || state == 'X') return false;
  return start == start_time;
}

bool PidExists(pid_t pid) {
  if (pid <= 0) return false;  // kill() would name a process group
  return kill(pid, 0) == 0 || errno != ESRCH;
}

bool PidRunning(pid_t pid) {
  if (!PidExists(pid)) return false;
  char state = 0;
  uint64_t start = 0;
  if (!ReadStat(pid, state, start)) return true;
  return state != 'Z' && state != 'X';
}

}  // namespace kvcache
