// `cortex cache status | list | entries | health`: looking at pools, as text or JSON.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace kvcache::cli {

struct StatusOptions {
  std::string name;  // empty: every pool
  bool json = false;
};

struct EntriesOptions {
  std::string name;
  bool json = false;
};

struct HealthOptions {
  std::string name;
  bool json = false;
};

void SetupStatusCommands(CLI::App& cache);

int RunStatus(const StatusOptions& opts);
int RunEntries(const EntriesOptions& opts);
// Exits 1 (with the report on stdout) when the pool is unhealthy, so scripts can act.
int RunHealth(const HealthOptions& opts);

}  // namespace kvcache::cli
