// The text files of the mounted tree: read-only renderings (status, metrics, health,
// entries, config) and the control files (evict, persist, restore) that take a request
// and keep its result for readers, the same messages the CLI prints.
//
// Thread-safe: results are guarded by one mutex, never held across a Manager call.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "kvcache/manager.h"
#include "names.h"
#include "thread_annotations.h"

namespace kvcache::fs {

// The content of MOUNT/status or MOUNT/metrics, rendered now.
Result<std::string> RenderRootFile(Manager& manager, RootFile file);
// The content of a read-only pool file, rendered now. REQUIRES: !IsControlFile(file).
Result<std::string> RenderPoolFile(Manager& manager, const std::string& pool, PoolFile file);

class ControlFiles {
 public:
  explicit ControlFiles(Manager& manager) : manager_(manager) {}

  // Runs one request written to <pool>/<file> ("25", "25%", "" or a path). Returns 0,
  // or the errno for the writer (EINVAL for a malformed request, which changes
  // nothing). Either way the file then reads as the outcome, with the reason on error.
  // Only a `trusted` writer (root or the daemon's own user) may name a snapshot path:
  // the daemon reads and writes it with its own rights, and another user could name
  // someone else's snapshot. Others persist and restore at the pool's default path.
  // REQUIRES: IsControlFile(file).
  int Run(const std::string& pool, PoolFile file, std::string_view request, bool trusted);

  // What reading <pool>/<file> shows: the last outcome, or how to use the file.
  std::string LastResult(const std::string& pool, PoolFile file) const;

 private:
  Result<std::string> Execute(const std::string& pool, PoolFile file, std::string_view request,
                              bool trusted);

  Manager& manager_;
  // A leaf lock, held only to store or copy a result (never while a request runs).
  mutable Mutex mu_;
  std::map<std::pair<std::string, PoolFile>, std::string> results_ GUARDED_BY(mu_);
};

}  // namespace kvcache::fs
