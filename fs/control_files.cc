#include "control_files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "errno_map.h"
#include "file_util.h"
#include "kvcache/report.h"
#include "kvcache/requests.h"
#include "kvcache/snapshot.h"
#include "text.h"

namespace kvcache::fs {
namespace {

std::string WithNewline(std::string s) {
  if (s.empty() || s.back() != '\n') s.push_back('\n');
  return s;
}

std::string Usage(PoolFile file) {
  switch (file) {
    case PoolFile::kEvict:
      return "write a percent of entries to evict, e.g. `echo 25 > evict` or `echo 25% > evict`\n";
    case PoolFile::kPersist:
      return "write an empty line to persist to the default path, or a path (a relative "
             "one is inside the snapshot directory): `echo > persist`, "
             "`echo /path/x.cache > persist`\n";
    case PoolFile::kRestore:
      return "write an empty line to restore from the default path, or a path (a relative "
             "one is inside the snapshot directory): `echo > restore`, "
             "`echo /path/x.cache > restore`\n";
    default:
      return "";
  }
}

// The snapshot file a persist or restore request names. The daemon's working
// directory means nothing to the writer (it is / once daemonized), so a relative path
// is taken inside the pool's snapshot directory, and may not climb out of it.
Result<std::string> SnapshotPath(Manager& manager, const std::string& pool,
                                 std::string_view text) {
  if (text.empty() || text.front() == '/') return std::string(text);
  std::string_view rest = text;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    std::string_view part = rest.substr(0, slash);
    if (part == "..") {
      return Status::InvalidArgument("relative path '" + std::string(text) +
                                     "' leaves the snapshot directory; give an absolute path");
    }
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  std::string dir = DirName(manager.DefaultSnapshotPath(pool));
  // As for the default path, the snapshot directory is made on first use.
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IOError("cannot make the snapshot directory " + dir + ": " +
                           std::strerror(errno));
  }
  return dir + "/" + std::string(text);
}

}  // namespace

Result<std::string> RenderRootFile(Manager& manager, RootFile file) {
  KVC_ASSIGN_OR_RETURN(std::vector<PoolStats> pools, manager.StatsAll());
  return file == RootFile::kStatus ? FormatStatusTable(pools) : FormatMetrics(pools);
}

Result<std::string> RenderPoolFile(Manager& manager, const std::string& pool, PoolFile file) {
  switch (file) {
    case PoolFile::kStatus: {
      KVC_ASSIGN_OR_RETURN(PoolStats stats, manager.Stats(pool));
      return FormatStatusTable({stats});
    }
    case PoolFile::kHealth: {
      KVC_ASSIGN_OR_RETURN(HealthReport report, manager.Health(pool));
      return FormatHealth(report);
    }
    case PoolFile::kEntries: {
      KVC_ASSIGN_OR_RETURN(std::vector<EntryInfo> entries, manager.Entries(pool));
      return FormatEntries(pool, entries);
    }
    case PoolFile::kConfig: {
      KVC_ASSIGN_OR_RETURN(PoolConfig config, manager.GetConfig(pool));
      return FormatConfig(config);
    }
    default:
      return Status::InvalidArgument("not a read-only file");
  }
}

Result<std::string> ControlFiles::Execute(const std::string& pool, PoolFile file,
                                          std::string_view request, bool trusted) {
  std::string_view text = TrimSpace(request, kLineBlankChars);
  if (!trusted && !text.empty() && (file == PoolFile::kPersist || file == PoolFile::kRestore)) {
    return Status::InvalidArgument(
        "only the mount's owner may name a snapshot path; write an empty line to use the "
        "pool's own snapshot");
  }
  switch (file) {
    case PoolFile::kEvict: {
      if (text.empty()) {
        return Status::InvalidArgument("empty request: write a percent such as 25 or 25%");
      }
      return ApplyEvictRequest(manager_, pool, text);
    }
    case PoolFile::kPersist: {
      PersistOptions options;
      KVC_ASSIGN_OR_RETURN(options.path, SnapshotPath(manager_, pool, text));
      KVC_ASSIGN_OR_RETURN(PersistResult result, PersistPool(manager_, pool, options));
      return PersistReport(pool, result);
    }
    case PoolFile::kRestore: {
      RestoreOptions options;
      KVC_ASSIGN_OR_RETURN(options.path, SnapshotPath(manager_, pool, text));
      KVC_ASSIGN_OR_RETURN(RestoreResult result, RestorePool(manager_, pool, options));
      return RestoreReport(pool, result);
    }
    default:
      return Status::InvalidArgument("not a control file");
  }
}

int ControlFiles::Run(const std::string& pool, PoolFile file, std::string_view request,
                      bool trusted) {
  Result<std::string> outcome = Execute(pool, file, request, trusted);
  std::string text = outcome.ok() ? WithNewline(*outcome)
                                  : WithNewline("error: " + outcome.status().message());
  {
    MutexLock lock(&mu_);
    results_[{pool, file}] = std::move(text);
  }
  return ToErrno(outcome.status());
}

std::string ControlFiles::LastResult(const std::string& pool, PoolFile file) const {
  MutexLock lock(&mu_);
  auto it = results_.find({pool, file});
  return it != results_.end() ? it->second : Usage(file);
}

}  // namespace kvcache::fs
