#include "control_files.h"

#include <cerrno>
#include <vector>

#include "errno_map.h"
#include "kvcache/report.h"
#include "kvcache/snapshot.h"

namespace kvcache::fs {
namespace {

std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

std::string WithNewline(std::string s) {
  if (s.empty() || s.back() != '\n') s.push_back('\n');
  return s;
}

std::string Usage(PoolFile file) {
  switch (file) {
    case PoolFile::kEvict:
      return "write a percent of entries to evict, e.g. `echo 25 > evict` or `echo 25% > evict`\n";
    case PoolFile::kPersist:
      return "write an empty line to persist to the default path, or a path: "
             "`echo > persist`, `echo /path/x.cache > persist`\n";
    case PoolFile::kRestore:
      return "write an empty line to restore from the default path, or a path: "
             "`echo > restore`, `echo /path/x.cache > restore`\n";
    default:
      return "";
  }
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
      return FormatEntries(entries);
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
                                          std::string_view request) {
  std::string_view text = Trim(request);
  switch (file) {
    case PoolFile::kEvict: {
      if (text.empty()) {
        return Status::InvalidArgument("empty request: write a percent such as 25 or 25%");
      }
      return ApplyEvictRequest(manager_, pool, text);
    }
    case PoolFile::kPersist: {
      PersistOptions options;
      options.path = std::string(text);
      KVC_ASSIGN_OR_RETURN(PersistResult result, PersistPool(manager_, pool, options));
      return PersistedMessage(pool, result.entries, result.path);
    }
    case PoolFile::kRestore: {
      RestoreOptions options;
      options.path = std::string(text);
      KVC_ASSIGN_OR_RETURN(RestoreResult result, RestorePool(manager_, pool, options));
      return RestoreReport(pool, result);
    }
    default:
      return Status::InvalidArgument("not a control file");
  }
}

int ControlFiles::Run(const std::string& pool, PoolFile file, std::string_view request) {
  Result<std::string> outcome = Execute(pool, file, request);
  std::string text = outcome.ok() ? WithNewline(*outcome)
                                  : WithNewline("error: " + outcome.status().message());
  {
    std::lock_guard lock(mu_);
    results_[{pool, file}] = std::move(text);
  }
  return ToErrno(outcome.status());
}

std::string ControlFiles::LastResult(const std::string& pool, PoolFile file) const {
  std::lock_guard lock(mu_);
  auto it = results_.find({pool, file});
  return it != results_.end() ? it->second : Usage(file);
}

}  // namespace kvcache::fs
