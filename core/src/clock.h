// Wall-clock time and process identity helpers.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace kvcache {

// Unix time in seconds, with sub-second precision.
double NowSeconds();

// Unix time in seconds as the kernel stamps files (CLOCK_REALTIME_COARSE: as precise as
// the scheduler tick, 1-10 ms, and several times cheaper to read): the creation, access
// and modification times of entries, chunks and pools, read on every put and get. It may
// be behind NowSeconds() by up to a tick.
double StampSeconds();

// CLOCK_MONOTONIC in nanoseconds: one order of events for every process on the machine.
uint64_t MonotonicNs();

// The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), 0 if it is gone.
// Together with the pid it names one process for its whole life, even after the pid
// is reused.
uint64_t ProcessStartTime(pid_t pid);

// True while the process that had `start_time` still runs (and is not a zombie): one
// process for its whole life, in this PID namespace.
bool ProcessAlive(pid_t pid, uint64_t start_time);

// Whether some process has `pid` in this PID namespace, zombies included: kill(pid, 0)
// says there is none (ESRCH), not whether we may signal it. False for pid <= 0. A bare
// pid may have been reused; ProcessAlive names one process, and the process table
// judges rows across namespaces by locks, not pids.
bool PidExists(pid_t pid);

// PidExists, and not a zombie (an exited process its parent has not reaped yet): the
// process still runs. One whose /proc entry cannot be read counts as running.
bool PidRunning(pid_t pid);

}  // namespace kvcache
