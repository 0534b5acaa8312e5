// Persist and restore: versioned binary snapshots of a pool (docs/formats.md).
// A snapshot is written streaming to a temp file in the target directory, fsynced and
// renamed, so a crash never leaves a half snapshot in place of a good one. Restore
// validates the whole file before it changes anything.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/export.h"
#include "kvcache/manager.h"
#include "kvcache/status.h"

namespace kvcache {

// Called now and then with bytes done and bytes in all (for a progress bar).
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct KVCACHE_EXPORT PersistOptions {
  std::string path;  // empty: Manager::DefaultSnapshotPath(pool)
  ProgressFn progress;
};

struct KVCACHE_EXPORT PersistResult {
  std::string path;
  uint64_t entries = 0;
  uint64_t chunks = 0;  // token chunks, with their namespaces and chains
  uint64_t bytes = 0;   // payload bytes written (entries and chunks)
};

// Writes a consistent snapshot of the live pool (puts and gets go on meanwhile) and
// records its manifest in the catalog's entries table. The file is created 0600.
KVCACHE_EXPORT Result<PersistResult> PersistPool(Manager& manager, std::string_view pool,
                                                 const PersistOptions& options = {});

struct KVCACHE_EXPORT RestoreOptions {
  std::string path;    // empty: Manager::DefaultSnapshotPath(pool)
  bool merge = false;  // keep the live pool's other entries instead of replacing them
  // Permission bits of a pool restore creates. Unset: the mode the catalog recorded for
  // the pool, else PoolConfig's default (0600). Never the snapshot's: a file decides
  // nothing about who may read the pool it fills.
  std::optional<uint32_t> mode;
  ProgressFn progress;
};

struct KVCACHE_EXPORT RestoreResult {
  std::string path;
  uint64_t entries = 0;
  uint64_t chunks = 0;  // token chunks restored (or found cached already, when merging)
  uint64_t bytes = 0;
  bool created_pool = false;  // the pool did not exist (or had no segment) and was made
  bool replaced = false;      // a live pool's previous entries were dropped
};

// Validates the file, then restores it into `pool`: creates the pool from the
// snapshot's config when it has no segment; otherwise replaces its entries and chunks
// (or merges). Chunks go back only into a pool of their chunk size (InvalidArgument
// otherwise, before anything changes).
KVCACHE_EXPORT Result<RestoreResult> RestorePool(Manager& manager, std::string_view pool,
                                                 const RestoreOptions& options = {});

// Restores every catalog pool whose segment is gone and which has a snapshot at its
// default path (kvcachefs -o restore). Pools that fail are reported in the statuses.
KVCACHE_EXPORT std::vector<std::pair<std::string, Result<RestoreResult>>> RestoreMissingPools(
    Manager& manager);

}  // namespace kvcache
