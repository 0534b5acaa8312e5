// The SQLite catalog at $CORTEX_HOME/kv_cache.db: which pools exist (so a pool whose
// segment is gone after a reboot is still known), cumulative statistics, attachment
// history and the manifests of snapshots. Never on the per-entry hot path.
//
// Thread-safe (one connection, serialized by a mutex). Several processes may open the
// same catalog: WAL mode and a busy timeout make concurrent writers wait, not fail.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/export.h"
#include "kvcache/remote.h"
#include "kvcache/status.h"

namespace kvcache {

// Row of the seed's `pools` table.
struct KVCACHE_EXPORT PoolRecord {
  std::string name;
  std::string config_json;  // PoolConfig::ToJson()
  std::string shm_name;
  double created_at = 0;
  double last_modified = 0;
  // Identity of the pool's segment: the header's pool_id as 32 hex digits, and the
  // effective uid that created it. Empty / -1 for pools recorded before schema 2.
  std::string pool_id;
  int64_t owner_uid = -1;
};

// Row of the seed's `entries` table: the manifest of the last snapshot of a pool.
struct KVCACHE_EXPORT EntryRecord {
  std::string pool_name;
  int64_t sequence_id = 0;
  std::string prefix_hash;
  double created_at = 0;
  double last_accessed = 0;
  int64_t access_count = 0;
  int64_t token_count = 0;
  int64_t size_bytes = 0;
  int64_t offset = 0;
  int32_t priority = 0;
  std::string metadata;  // JSON text
};

// Row of the `stats` table: cumulative counters, added to over the pool's life.
struct KVCACHE_EXPORT StatsRecord {
  std::string pool_name;
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;
  double updated_at = 0;
};

// Row of the `attachments` table: one per attach; detached_at == 0 while attached.
struct KVCACHE_EXPORT AttachmentRecord {
  std::string pool_name;
  int32_t pid = 0;
  double attached_at = 0;
  double detached_at = 0;
};

class KVCACHE_EXPORT Catalog {
 public:
  // Opens or creates the database at `path` (parent directories created 0700, file
  // 0600), WAL mode, 5 s busy timeout, schema migrated to kSchemaVersion. The directory
  // must be the caller's alone and the files (database, -wal, -shm, -journal) regular
  // files of the caller (PermissionDenied otherwise). When it cannot be opened for
  // writing (a full or read-only filesystem) it is opened read-only: reads work, and
  // writes fail saying why.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path);
  ~Catalog();

  static constexpr int kSchemaVersion = 3;
  int schema_version() const;
  const std::string& path() const { return path_; }

  // AlreadyExists when a pool of that name is recorded.
  Status InsertPool(const PoolRecord& record);
  // NotFound when absent.
  Status UpdatePool(const PoolRecord& record);
  Result<PoolRecord> GetPool(std::string_view name);
  // Sorted by name.
  Result<std::vector<PoolRecord>> ListPools();
  // Deletes the pool and its entries, stats and attachments. NotFound when absent.
  Status DeletePool(std::string_view name);

  // Replaces the pool's manifest with `entries` in one transaction.
  Status ReplaceEntries(std::string_view pool, const std::vector<EntryRecord>& entries);
  // Sorted by sequence id.
  Result<std::vector<EntryRecord>> GetEntries(std::string_view pool);

  // Adds the deltas to the pool's cumulative counters (creating the row).
  Status AddStats(std::string_view pool, int64_t hits, int64_t misses, int64_t evictions);
  // Zeroes when the pool has no row yet.
  Result<StatsRecord> GetStats(std::string_view pool);

  // The pool's remote (schema 3): set, replaced or (nullopt) removed. The counters
  // are kept when the remote changes. NotFound when the pool is not recorded.
  Status SetRemote(std::string_view pool, const std::optional<RemoteConfig>& remote);
  // nullopt when the pool has no remote. NotFound when the pool is not recorded.
  Result<std::optional<RemoteConfig>> GetRemote(std::string_view pool);
  // Adds the deltas to the pool's remote counters; a non-empty `last_error` replaces
  // the recorded one.
  Status AddRemoteStats(std::string_view pool, const RemoteCounters& delta,
                        const std::string& last_error, double last_error_at);
  // The remote, its counters and the last failure recorded (configured == false and
  // zeroes when it has none).
  Result<RemoteStatus> GetRemoteStatus(std::string_view pool);

  Status RecordAttach(std::string_view pool, int32_t pid, double when);
  // Marks the latest open attachment of pid as detached; NotFound if none is open.
  Status RecordDetach(std::string_view pool, int32_t pid, double when);
  // Attachments of the pool, newest first.
  Result<std::vector<AttachmentRecord>> ListAttachments(std::string_view pool);

  struct Impl;  // defined in catalog.cc only

 private:
  explicit Catalog(std::string path, std::unique_ptr<Impl> impl);
  static Result<std::unique_ptr<Catalog>> OpenReadOnly(const std::string& path,
                                                       const std::string& reason);
  std::string path_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvcache
