// kvcache::Manager: the API an inference engine links to store and find KV-cache
// bytes in pools of shared memory that many processes use at once.
//
// Thread-safe: one Manager may be shared by any number of threads, and any number of
// processes may each have their own Manager on the same pools. A pool's whole state
// (bytes, allocation bitmap, entry index, counters, lock) lives in its shared-memory
// segment; the SQLite catalog only records which pools exist and their history.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kvcache/entry_view.h"
#include "kvcache/export.h"
#include "kvcache/remote.h"
#include "kvcache/status.h"
#include "kvcache/types.h"

namespace kvcache {

class PoolHandle;  // a mapped segment; private to core
class Catalog;

// Where a Manager keeps its files and names its segments.
struct KVCACHE_EXPORT ManagerOptions {
  // Catalog and snapshots live here. Empty: $CORTEX_HOME, else ~/.cortex.
  std::string home;
  // Segment names are <shm_prefix><pool>. Empty: $CORTEX_SHM_PREFIX, else "cortex_kv_".
  std::string shm_prefix;
  // The SQLite catalog file. Empty: <home>/kv_cache.db. (The original Python API takes
  // the catalog's path, KVCacheManager(db_path); snapshots stay below home.)
  std::string catalog_path;
  // Remote tiers (kvcache/remote.h): the timeout of every call to a remote, how long
  // this Manager's destruction waits at most to send what it queued, the size of the
  // pieces a large entry is cut into (0: 4 MiB), and the most entries queued for
  // sending (0: 65,536).
  uint32_t remote_timeout_ms = 100;
  uint32_t remote_flush_ms = 3000;
  uint64_t remote_piece_bytes = 0;
  uint32_t remote_queue_entries = 0;
};

// Resolves the defaults above from the environment.
KVCACHE_EXPORT ManagerOptions ResolveOptions(ManagerOptions options);

inline constexpr size_t kMaxShmPrefixLength = 64;

// A segment name prefix is 1..64 bytes of [A-Za-z0-9._-], starting with a letter, a
// digit or '_', without "..": so <prefix><pool> is always one file in /dev/shm.
KVCACHE_EXPORT Status ValidateShmPrefix(std::string_view prefix);

// Who a pool belongs to: the owner, group and permission bits of its segment file,
// which decide who may map it (and what the mount shows on the pool's directory).
struct KVCACHE_EXPORT PoolOwner {
  uid_t uid = 0;
  gid_t gid = 0;
  uint32_t mode = 0;  // permission bits, e.g. 0600
};

// A pool's size and its free bytes: those no entry holds, so no pin can keep a put from
// them. `free` is a lower bound of the room a put finds (it may also evict unpinned
// entries), read from the segment's header without looking at its slots.
struct KVCACHE_EXPORT PoolSpace {
  uint64_t size = 0;
  uint64_t free = 0;
};

// Statistics to give an entry instead of fresh ones (used by restore).
struct KVCACHE_EXPORT EntryStats {
  double created = 0;
  double last_accessed = 0;
  uint64_t access_count = 0;
};

// ChunkMatch, the answer of Manager::Match, is in kvcache/entry_view.h with the other
// handles that hold pins.

// One token chunk with its bytes pinned (Manager::PinChunk): view.data() is the KV
// bytes, view.prefix_tokens() the chunk's tokens.
struct KVCACHE_EXPORT PinnedChunk {
  ChunkInfo info;
  EntryView view;
};

class KVCACHE_EXPORT Manager {
 public:
  explicit Manager(ManagerOptions options = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  const ManagerOptions& options() const { return options_; }
  std::string ShmName(std::string_view pool) const;
  // $home/kv_persist/<pool>.cache
  std::string DefaultSnapshotPath(std::string_view pool) const;

  // Creates the home directory (0700) if missing and checks that nobody else can write
  // in it: it must be owned by the effective uid and not writable by group or others.
  // PermissionDenied naming its owner and mode otherwise. The catalog, snapshots and
  // disk pools are only ever used below a home that passes.
  Status CheckHome();

  // ---- pool lifecycle ----
  // Creates the segment (memory reserved up front) and the catalog record.
  // AlreadyExists if either exists; the existing pool is left alone.
  Status CreatePool(const PoolConfig& config);
  // Creates the segment of a pool whose segment is gone (after a reboot, or never made
  // on this machine), and records `config` in the catalog (replacing its record).
  // AlreadyExists if the segment exists. Used by restore.
  Status LoadPool(const PoolConfig& config);
  // Removes the segment and the catalog record. NotFound if neither exists.
  Status DestroyPool(std::string_view pool);
  // Records `pid` as attached until it detaches or exits.
  Status Attach(std::string_view pool, pid_t pid);
  Status Detach(std::string_view pool, pid_t pid);
  // Names of the pools in the catalog, sorted.
  Result<std::vector<std::string>> ListPools();
  Result<PoolConfig> GetConfig(std::string_view pool);

  // ---- entries ----
  // Stores `data` under `seq`, replacing any entry with that id. Evicts by policy when
  // the pool is full; NoSpace when nothing evictable frees enough or the entry is larger
  // than the pool.
  Status Put(std::string_view pool, uint64_t seq, std::span<const std::byte> data,
             uint64_t token_count, const PutOptions& options = {});
  Result<PutReservation> Reserve(std::string_view pool, uint64_t seq, size_t size,
                                 uint64_t token_count, const PutOptions& options = {},
                                 const std::optional<EntryStats>& stats = std::nullopt);
  // Get, GetInto and View of an id the pool does not hold ask the pool's remote, if it
  // has one: an entry found there is checked, stored in the pool (evicting by policy,
  // as any put) and served. The remote's failures and refusals never fail the call:
  // it is then a miss (NotFound), after at most the remote timeout.
  //
  // Copies the bytes out. Counts a hit, or a miss (NotFound).
  Result<std::vector<std::byte>> Get(std::string_view pool, uint64_t seq);
  // Copies the bytes into `out` (resized). Counts a hit or a miss.
  Status GetInto(std::string_view pool, uint64_t seq, std::vector<std::byte>& out);
  // Zero copy: pins the entry. Counts a hit or a miss.
  Result<EntryView> View(std::string_view pool, uint64_t seq);
  // Like View, but counts nothing and leaves the access statistics alone: for reading
  // an entry's own prefix tokens, or putting its bytes again with new attributes.
  Result<EntryView> Pin(std::string_view pool, uint64_t seq);
  // Metadata only; counts nothing and pins nothing.
  Result<EntryInfo> Stat(std::string_view pool, uint64_t seq);
  // Entries whose prefix hash equals PrefixHash(tokens), with their bytes pinned.
  Result<std::vector<EntryView>> GetByPrefix(std::string_view pool,
                                              std::span<const uint32_t> tokens);
  // Entries whose prefix hash is `hash` (16 hex chars); metadata only.
  Result<std::vector<EntryInfo>> FindByPrefixHash(std::string_view pool, std::string_view hash);
  // The entry to reuse for a prompt `tokens`: among the entries whose prefix, cut to
  // whole blocks of config.prefix_block_tokens, is a prefix of `tokens`, the one with
  // the most blocks (hashed per block, then confirmed token by token). matched_tokens
  // also counts the entry's tokens past its last whole block that still match.
  // O(query length). NotFound when no entry qualifies (entries with a prefix shorter
  // than one block are found by GetByPrefix only).
  Result<PrefixMatch> LongestPrefix(std::string_view pool, std::span<const uint32_t> tokens);
  // ---- token chunks ----
  // A pool also caches KV in chunks of config.prefix_block_tokens tokens (the chunk
  // size), keyed by the chained hash H_i = ChainHash(H_{i-1}, tokens of chunk i) with
  // H_0 = ChunkChainSeed(name_space). Stores chunk i of `tokens` with the bytes
  // chunks[i], for every i < tokens.size() / chunk size (a partial last chunk of tokens
  // is not stored; chunks.size() must equal the number of whole chunks). Chunks already
  // cached are confirmed and not copied again. Each chunk is linked only while its
  // parent is cached, so stored chains are always prefix-closed. When the pool cannot
  // make room for a chunk: NoSpace, and the chunks before it stay stored. Each chunk
  // records `name_space` (at most kMaxChunkNamespaceBytes; InvalidArgument otherwise).
  Result<ChunkStoreResult> StoreChunks(std::string_view pool, std::string_view name_space,
                                       std::span<const uint32_t> tokens,
                                       std::span<const std::span<const std::byte>> chunks);
  // How many leading tokens of `tokens` are cached as chunks under `name_space`, with
  // those chunks pinned (see ChunkMatch). A partial last chunk never matches. Chunks
  // are found by hash, then confirmed token by token. Counts the asked and matched
  // tokens in the pool's statistics (chunks served by the remote are counted as the
  // remote's hits, not as matched here). O(query length). When the pool's pins run out
  // (every lease held), the answer is the chunks that could be pinned: a shorter prefix.
  //
  // When the pool has a remote and the local chain stops short of the prompt's whole
  // chunks, the remote is asked for the next chunks (in pipelined batches, all within
  // the remote timeout); each one it has is checked (intact, and this chunk: hash,
  // parent, position, tokens and namespace), stored locally (evicting by policy, as
  // any store) and added to the answer, until the first it lacks or refuses. The
  // remote's failures never fail the match: it then answers what is local.
  Result<ChunkMatch> Match(std::string_view pool, std::string_view name_space,
                           std::span<const uint32_t> tokens);
  // Metadata of every live chunk, in hash order. Counts nothing.
  Result<std::vector<ChunkInfo>> Chunks(std::string_view pool);
  // Metadata of the live chunk `hash`; NotFound if none. Counts nothing.
  Result<ChunkInfo> StatChunk(std::string_view pool, uint64_t hash);
  // The live chunk `hash`, pinned until its view is released. NotFound if none.
  // Counts nothing and leaves the access statistics alone.
  Result<PinnedChunk> PinChunk(std::string_view pool, uint64_t hash);

  Status Remove(std::string_view pool, uint64_t seq);
  // Changes the attributes of entry `seq` in place, only while it is still
  // `generation`: the payload is neither copied nor moved, the generation, creation
  // time and access statistics stay. NotFound when the id has no entry of that
  // generation (replaced or removed meanwhile); NoSpace when the new prefix tokens and
  // metadata do not fit beside the payload (its extent cannot grow into free blocks
  // right after it); InvalidArgument for a prefix or metadata over the put limits.
  // A view pinned before the update may read the new prefix tokens.
  Result<EntryInfo> UpdateEntry(std::string_view pool, uint64_t seq, uint64_t generation,
                                const EntryUpdate& update);
  // Removes every entry (pinned ones are freed when released). Returns how many.
  Result<uint64_t> Clear(std::string_view pool);
  // Evicts max(1, floor(n * percent / 100)) of the n > 0 entries by policy.
  // Returns how many were evicted. percent must be in (0, 100].
  Result<uint64_t> Evict(std::string_view pool, double percent);
  // Metadata of every entry, in id order.
  Result<std::vector<EntryInfo>> Entries(std::string_view pool);
  // Pins every entry at one instant: a consistent view while puts go on.
  Result<std::vector<EntryView>> PinAll(std::string_view pool);

  // ---- remote tier (kvcache/remote.h) ----
  // Gives the pool a remote, replaces it, or (nullopt) removes it. The URL is checked
  // and stored in canonical form; an empty namespace means the pool's name. Every
  // process using the pool follows within about a second. NotFound when the pool is
  // not in the catalog; InvalidArgument for a bad URL or namespace.
  Status SetRemote(std::string_view pool, const std::optional<RemoteConfig>& remote);
  // The pool's remote and the counters of every process (those this Manager has not
  // recorded yet included). Stats and Health include it too.
  Result<RemoteStatus> GetRemoteStatus(std::string_view pool);
  // Waits (at most `timeout_ms`) until what this Manager queued for the pool's remote is
  // sent, or the remote fails (what is left stays queued and is sent once the remote is
  // back). The destructor does this for every pool, then drops what is left.
  Status FlushRemote(std::string_view pool, uint32_t timeout_ms);

  // ---- observation ----
  Result<PoolStats> Stats(std::string_view pool);
  // Size and free bytes only: no slot scan and no catalog query, unlike Stats.
  Result<PoolSpace> Space(std::string_view pool);
  // Every pool in the catalog; pools without a live segment have loaded == false. A
  // pool that cannot be read (a corrupt or foreign segment) is listed with its error
  // set; it never hides the others.
  Result<std::vector<PoolStats>> StatsAll();
  // Adds the hits, misses and evictions counted since the last call to the catalog's
  // cumulative stats (which outlive segments, e.g. across a reboot). Persist calls it.
  Status RecordStats(std::string_view pool);
  // Recovers dead processes, then verifies every invariant of the segment.
  Result<HealthReport> Health(std::string_view pool);

  // Forgets this Manager's mapping of `pool` when its segment was destroyed, removed or
  // replaced since it was mapped (`rm` of the segment, e.g. by systemd's RemoveIPC,
  // then a create or restore), so that the next call maps whatever is there now instead
  // of serving an unlinked file. Views and reservations of the old mapping stay valid
  // until released. Returns true when a mapping was forgotten. Costs one lstat(): for
  // long-lived processes at points of their choosing, not for every get.
  bool ForgetIfReplaced(std::string_view pool);
  // ForgetIfReplaced, and when this Manager keeps its mapping of `pool` (the segment is
  // still the one it mapped: neither destroyed nor removed nor replaced), the segment's
  // owner, from the same lstat(). nullopt when `pool` is not mapped, or its mapping was
  // just forgotten. A pool known to exist and still mapped is known to still exist
  // without asking the catalog.
  std::optional<PoolOwner> CheckMapping(std::string_view pool);
  // The owner of the pool's segment file. NotFound when the pool is not loaded.
  Result<PoolOwner> Owner(std::string_view pool);


 private:
  friend class ManagerInternals;  // core's snapshot code (manager_internals.h)
  struct Impl;
  // The catalog (opened on first use).
  Result<Catalog*> catalog();
  // Opens (maps) the pool's segment, cached per Manager.
  Result<std::shared_ptr<PoolHandle>> Open(std::string_view pool);
  // After a local miss of `seq`: the entry from the pool's remote, read straight into a
  // reservation in the pool and stored there once checked (best effort: with no room,
  // into *out only), and its bytes copied to *out unless `out` is null; `miss` when
  // there is none or the remote fails or is refused (nothing is stored then).
  Status ReadThrough(std::string_view pool, PoolHandle& handle, uint64_t seq,
                     const Status& miss, std::vector<std::byte>* out);
  // After a local match of `tokens` that ended short: continues `match` with the chunks
  // the pool's remote has (see Match).
  void MatchThrough(std::string_view pool, PoolHandle& handle, std::string_view name_space,
                    std::span<const uint32_t> tokens, ChunkMatch& match);
  // Ok, or why options_ cannot be used (a bad shm prefix): every operation returns it.
  Status CheckOptions() const;
  ManagerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvcache
