// Text and JSON renderings shared by the cortex CLI and kvcachefs, so a command and
// the matching file print the same thing.
#pragma once

#include <string>
#include <vector>

#include "kvcache/export.h"
#include "kvcache/manager.h"
#include "kvcache/snapshot.h"
#include "kvcache/types.h"

namespace kvcache {

// The seed's table:
// POOL                 SIZE         USED         ENTRIES    HIT RATE   POLICY
// llama-cache          16.0G        0.0%         0          0.0%       lru
// Pools that are not loaded show "-" for USED/ENTRIES/HIT RATE and "(not loaded)".
KVCACHE_EXPORT std::string FormatStatusTable(const std::vector<PoolStats>& pools);
// The seed's health report ("Health check for 'x':", "  Status: HEALTHY", ...).
KVCACHE_EXPORT std::string FormatHealth(const HealthReport& report);
// SEQ ID  TOKENS  SIZE  ACCESSES  PRIORITY  LAST ACCESS
KVCACHE_EXPORT std::string FormatEntries(std::string_view pool,
                                         const std::vector<EntryInfo>& entries);
// "Remote of 'x': redis://h:6379 (write-through, namespace x)" and its counters, or
// "Pool 'x' has no remote".
KVCACHE_EXPORT std::string FormatRemote(std::string_view pool, const RemoteStatus& remote);
// "Pool 'x' uses remote redis://h:6379 (write-through, namespace x)"
KVCACHE_EXPORT std::string RemoteSetMessage(std::string_view pool, const RemoteConfig& config);
// The pool's config, one "key: value" per line.
KVCACHE_EXPORT std::string FormatConfig(const PoolConfig& config);

KVCACHE_EXPORT std::string StatsToJson(const PoolStats& stats);
KVCACHE_EXPORT std::string StatsListToJson(const std::vector<PoolStats>& pools);
KVCACHE_EXPORT std::string HealthToJson(const HealthReport& report);
KVCACHE_EXPORT std::string EntriesToJson(const std::vector<EntryInfo>& entries);

// Prometheus text exposition of every pool: kvcache_bytes_used{pool="x"} ...
KVCACHE_EXPORT std::string FormatMetrics(const std::vector<PoolStats>& pools);

// Result messages, identical on the CLI and in control files.
KVCACHE_EXPORT std::string CreatedMessage(
    const PoolConfig& config);  // Created cache pool 'x' (16.00 GB, policy=lru)
KVCACHE_EXPORT std::string EvictedMessage(std::string_view pool,
                                          uint64_t count);  // Evicted N entries from 'x'
KVCACHE_EXPORT std::string RestoredMessage(std::string_view pool,
                                           uint64_t count);  // Restored N entries to 'x'
KVCACHE_EXPORT std::string PersistedMessage(std::string_view pool, uint64_t count,
                                            std::string_view path);

// RestoredMessage, then "(created the pool from the snapshot)" or "(replaced the
// pool's previous entries)" on a line of its own when that happened, and
// "(and N token chunks)" when there were any.
KVCACHE_EXPORT std::string RestoreReport(std::string_view pool, const RestoreResult& result);
// PersistedMessage, then "(and N token chunks)" on a line of its own when there were any.
KVCACHE_EXPORT std::string PersistReport(std::string_view pool, const PersistResult& result);

}  // namespace kvcache
