// Plain value types shared by the core API, kvcachefs and the cortex CLI.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/export.h"
#include "kvcache/remote.h"
#include "kvcache/status.h"

namespace kvcache {

// Numeric values are the header's policy byte (offset 80); never renumber.
enum class Policy : uint8_t { kLru = 0, kLfu = 1, kFifo = 2, kPriority = 3 };

// "lru", "lfu", "fifo", "priority" (case-insensitive) -> Policy.
KVCACHE_EXPORT Result<Policy> ParsePolicy(std::string_view text);
KVCACHE_EXPORT std::string_view PolicyName(Policy policy);

enum class Tier : uint8_t { kCpu = 0, kGpu = 1, kDisk = 2 };
KVCACHE_EXPORT Result<Tier> ParseTier(std::string_view text);
KVCACHE_EXPORT std::string_view TierName(Tier tier);

inline constexpr uint32_t kDefaultBlockSize = 4096;
inline constexpr uint32_t kDefaultMaxSequences = 10000;
// Tokens per block of the chained prefix hashes used by longest-prefix match.
inline constexpr uint32_t kDefaultPrefixBlockTokens = 16;
inline constexpr size_t kMaxPoolNameLength = 128;

// What a pool is made of. Stored as JSON in the catalog and in snapshots.
struct KVCACHE_EXPORT PoolConfig {
  std::string name;
  uint64_t size_bytes = 0;  // data region bytes, as given to --size
  Policy policy = Policy::kLru;
  Tier tier = Tier::kCpu;
  uint32_t max_sequences = kDefaultMaxSequences;
  uint32_t block_size = kDefaultBlockSize;
  uint32_t prefix_block_tokens = kDefaultPrefixBlockTokens;
  uint32_t mode = 0600;  // permission bits of the segment

  // {"name":..., "size_bytes":..., "policy":"lru", "tier":"cpu", "max_sequences":...,
  //  "block_size":..., "prefix_block_tokens":..., "mode":384}
  std::string ToJson() const;
  static Result<PoolConfig> FromJson(std::string_view json);
  // Checks every field; the message names the bad one.
  Status Validate() const;
};

// A pool name is 1..128 bytes of [A-Za-z0-9._:@-], not starting with '.' or '-' (so
// never "." or ".."): it is a file name in /dev/shm, on the mount and in snapshot paths.
KVCACHE_EXPORT Status ValidatePoolName(std::string_view name);

// Optional attributes of a put.
struct KVCACHE_EXPORT PutOptions {
  std::vector<uint32_t> prefix_tokens;  // empty: no prefix
  int32_t priority = 0;
  std::string metadata;  // JSON text; empty means none
};

// Limits of a put's attributes.
inline constexpr size_t kMaxPutMetadataBytes = 64 * 1024;
inline constexpr size_t kMaxPutPrefixTokens = size_t{1} << 24;

// Every rule a put applies to its attributes: metadata is valid JSON of at most
// kMaxPutMetadataBytes, the prefix at most kMaxPutPrefixTokens. InvalidArgument naming
// the rule otherwise. (Whether the entry fits is the pool's to say.)
KVCACHE_EXPORT Status ValidatePutOptions(const PutOptions& options);

// A change to one entry's attributes, leaving its bytes where they are. Fields left
// empty keep their value.
struct KVCACHE_EXPORT EntryUpdate {
  std::optional<uint64_t> token_count;
  std::optional<int32_t> priority;
  std::optional<std::vector<uint32_t>> prefix_tokens;  // empty vector: no prefix
  std::optional<std::string> metadata;
};

// A snapshot of one entry's metadata (not its bytes).
struct KVCACHE_EXPORT EntryInfo {
  uint64_t sequence_id = 0;
  uint64_t size_bytes = 0;
  uint64_t token_count = 0;
  std::string prefix_hash;  // 16 hex chars, empty when the entry has no prefix
  uint32_t prefix_length = 0;  // number of prefix tokens
  int32_t priority = 0;
  double created = 0;  // unix seconds
  double last_accessed = 0;
  uint64_t access_count = 0;
  uint64_t generation = 0;  // changes whenever the id is bound to new bytes
  uint64_t offset = 0;      // byte offset of the payload in the data region
  std::string metadata;
};

// An entry with its bytes copied out.
struct KVCACHE_EXPORT EntryData {
  EntryInfo info;
  std::vector<uint32_t> prefix_tokens;
  std::vector<std::byte> data;
};

struct KVCACHE_EXPORT PoolStats {
  PoolConfig config;
  std::string shm_name;     // "cortex_kv_<name>"
  bool loaded = false;      // false: in the catalog but no live segment (e.g. after a reboot)
  uint64_t size = 0;        // data region bytes
  uint64_t used = 0;
  uint64_t free = 0;
  uint64_t pinned = 0;      // bytes of entries pinned by a reader: never evictable
  uint64_t block_count = 0;
  uint64_t entry_count = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t puts = 0;
  double created = 0;
  double modified = 0;
  uint32_t attached = 0;
  uint64_t segment_bytes = 0;  // whole mapping: header + bitmap + index + data
  // Token chunks (Manager::StoreChunks, Match). entry_count above counts entries only.
  uint64_t chunk_count = 0;
  uint64_t chunk_bytes = 0;           // bytes of the data region the chunks hold
  uint64_t chunk_tokens_asked = 0;    // tokens of the prompts given to Match
  uint64_t chunk_tokens_matched = 0;  // of those, tokens served from cached chunks
  // The pool's remote tier (remote.configured == false when it has none).
  RemoteStatus remote;
  // Set (by Manager::StatsAll) when this pool could not be read: why. The other fields
  // then hold only what the catalog records.
  std::string error;

  double hit_rate() const {
    uint64_t total = hits + misses;
    return total == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(total);
  }
  // Tokens served from cached chunks / tokens asked; 0 before any match.
  double chunk_token_hit_rate() const {
    return chunk_tokens_asked == 0 ? 0.0
                                   : static_cast<double>(chunk_tokens_matched) /
                                         static_cast<double>(chunk_tokens_asked);
  }
  double used_fraction() const {
    return size == 0 ? 0.0 : static_cast<double>(used) / static_cast<double>(size);
  }
};

struct KVCACHE_EXPORT AttachedProcess {
  int32_t pid = 0;
  double attached_at = 0;
};

struct KVCACHE_EXPORT HealthReport {
  PoolStats stats;
  bool healthy = false;
  std::vector<std::string> problems;  // empty when healthy
  std::vector<AttachedProcess> processes;
  uint64_t pinned_entries = 0;
  uint64_t recovered_processes = 0;  // dead processes cleaned up by this check
};

// What Manager::StoreChunks did with the whole chunks of a token sequence.
struct KVCACHE_EXPORT ChunkStoreResult {
  uint64_t chunks = 0;   // whole chunks in the sequence
  uint64_t stored = 0;   // copied into the pool by this call
  uint64_t present = 0;  // already cached (not copied again)
};

// The most bytes of namespace a chunk records (Manager::StoreChunks).
inline constexpr size_t kMaxChunkNamespaceBytes = 4096;

// A snapshot of one token chunk's metadata (not its bytes or tokens).
struct KVCACHE_EXPORT ChunkInfo {
  uint64_t hash = 0;         // H_i, its chained hash: the chunk's name
  uint64_t parent_hash = 0;  // H_{i-1}; for the first chunk of a chain, the namespace seed
  uint32_t position = 0;     // i: 1 for the first chunk of a chain
  uint32_t token_count = 0;  // the pool's chunk size
  uint64_t size_bytes = 0;   // KV bytes
  double created = 0;        // unix seconds
  double last_accessed = 0;
  uint64_t access_count = 0;
  uint64_t generation = 0;   // changes whenever the hash is stored anew
  std::string name_space;    // the namespace it was stored under
};

struct KVCACHE_EXPORT PrefixMatch {
  EntryInfo entry;
  uint64_t matched_tokens = 0;  // length of the common prefix of the query and the entry's prefix
};

}  // namespace kvcache
