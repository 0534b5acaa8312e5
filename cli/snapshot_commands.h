// `cortex cache persist | restore`: snapshots of a pool on disk, for fast restarts.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

namespace kvcache::cli {

struct PersistCommandOptions {
  std::string name;
  std::string path;  // empty: $CORTEX_HOME/kv_persist/<name>.cache
};

struct RestoreCommandOptions {
  std::string name;
  std::string path;  // empty: $CORTEX_HOME/kv_persist/<name>.cache
  bool merge = false;
  std::optional<uint32_t> mode;  // of a pool restore creates; unset: the default
};

void SetupSnapshotCommands(CLI::App& cache);

int RunPersist(const PersistCommandOptions& opts);
int RunRestore(const RestoreCommandOptions& opts);

}  // namespace kvcache::cli
