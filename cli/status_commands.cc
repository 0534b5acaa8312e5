#include "status_commands.h"

#include <fmt/format.h>

#include <memory>

#include "common.h"
#include "kvcache/manager.h"
#include "kvcache/report.h"

namespace kvcache::cli {

void SetupStatusCommands(CLI::App& cache) {
  auto status = std::make_shared<StatusOptions>();
  CLI::App* sub = cache.add_subcommand("status", "Show pools: size, use, entries, hit rate");
  sub->alias("list");
  sub->add_option("name", status->name, "Pool name (default: every pool)");
  sub->add_flag("--json", status->json, "Print JSON for scripts");
  sub->callback([status] { Finish(RunStatus(*status)); });

  auto entries = std::make_shared<EntriesOptions>();
  sub = cache.add_subcommand("entries", "List a pool's entries");
  sub->add_option("name", entries->name, "Pool name")->required();
  sub->add_flag("--json", entries->json, "Print JSON for scripts");
  sub->callback([entries] { Finish(RunEntries(*entries)); });

  auto health = std::make_shared<HealthOptions>();
  sub = cache.add_subcommand(
      "health", "Check a pool's invariants and attached processes (exit 1 when unhealthy)");
  sub->add_option("name", health->name, "Pool name")->required();
  sub->add_flag("--json", health->json, "Print JSON for scripts");
  sub->callback([health] { Finish(RunHealth(*health)); });
}

int RunStatus(const StatusOptions& opts) {
  Manager manager;
  if (!opts.name.empty()) {
    Result<PoolStats> stats = manager.Stats(opts.name);
    if (!stats.ok()) return Fail(stats.status());
    PrintText(opts.json ? StatsToJson(*stats) : FormatStatusTable({*stats}));
    return kExitOk;
  }
  Result<std::vector<PoolStats>> all = manager.StatsAll();
  if (!all.ok()) return Fail(all.status());
  PrintText(opts.json ? StatsListToJson(*all) : FormatStatusTable(*all));
  // Every pool is shown; one that could not be read also makes the exit status say so.
  for (const PoolStats& s : *all) {
    if (!s.error.empty()) {
      std::fflush(stdout);
      return Fail(fmt::format("pool '{}': {}", s.config.name, s.error));
    }
  }
  return kExitOk;
}

int RunEntries(const EntriesOptions& opts) {
  Manager manager;
  Result<std::vector<EntryInfo>> entries = manager.Entries(opts.name);
  if (!entries.ok()) return Fail(entries.status());
  PrintText(opts.json ? EntriesToJson(*entries) : FormatEntries(opts.name, *entries));
  return kExitOk;
}

int RunHealth(const HealthOptions& opts) {
  Manager manager;
  Result<HealthReport> report = manager.Health(opts.name);
  if (!report.ok()) return Fail(report.status());
  PrintText(opts.json ? HealthToJson(*report) : FormatHealth(*report));
  if (report->healthy) return kExitOk;
  std::fflush(stdout);
  return Fail(fmt::format("pool '{}' is unhealthy ({} problem{})", opts.name,
                          report->problems.size(), report->problems.size() == 1 ? "" : "s"));
}

}  // namespace kvcache::cli
