// Wall-clock time and process identity helpers.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace kvcache {

// Unix time in seconds, with sub-second precision.
double NowSeconds();

// CLOCK_MONOTONIC in nanoseconds: one order of events for every process on the machine.
uint64_t MonotonicNs();

// The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), 0 if it is gone.
// Together with the pid it names one process for its whole life, even after the pid
// is reused.
uint64_t ProcessStartTime(pid_t pid);

// True while the process that had `start_time` still runs (and is not a zombie).
bool ProcessAlive(pid_t pid, uint64_t start_time);

}  // namespace kvcache
