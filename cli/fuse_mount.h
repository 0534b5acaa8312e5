// Starting, finding and stopping the kvcachefs daemon behind `cortex cache mount`.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "kvcache/status.h"
#include "mount_info.h"

namespace kvcache::cli {

// The kvcachefs binary: beside this executable, then ../fs/kvcachefs relative to it (the
// build tree), then the first kvcachefs in PATH. NotFound naming the places tried.
Result<std::string> FindDaemon();

using kvcache::MountInfo;

// The mount at `dir` (an absolute, canonical path), if any; the topmost one wins.
bool FindMount(const std::string& dir, MountInfo* out);
// A FUSE mount served by kvcachefs.
bool IsKvcachefs(const MountInfo& mount);

// Starts `daemon dir -f -o home=<home>` in its own session, its stderr appended to
// `log_path`, and waits until the mount is live (listed as kvcachefs and
// <dir>/status answers a stat). On failure the daemon is stopped and the error names
// the cause (the daemon's exit status and last log line, or the timeout).
Result<pid_t> StartDaemon(const std::string& daemon, const std::string& dir,
                          const std::string& home, const std::string& log_path,
                          std::chrono::milliseconds timeout);

// Unmounts `dir` with fusermount3 -u (umount2 as a fallback), waits until the mount is
// gone and the daemon serving it has exited (within `timeout`).
Status StopDaemon(const std::string& dir, std::chrono::milliseconds timeout);

}  // namespace kvcache::cli
