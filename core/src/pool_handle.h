// PoolHandle: one process's mapping of a pool segment and every operation on it.
//
// Concurrency contract (DESIGN section 4):
// - The robust process-shared mutex in the header guards all metadata. It is held
//   for O(1)/O(log n) work only, never across a payload copy or a blocking syscall.
// - Payload bytes are copied outside the lock. A copy-out read is validated by the
//   slot's generation afterwards and retried if the entry changed meanwhile; a view
//   pins its slot with a lease, so the bytes cannot be freed or reused under it.
// - A put reserves a slot and extent (WRITING), fills them outside the lock, then
//   publishes under the lock: readers see the old entry or the whole new one.
// - A process that dies at any instruction is recovered: its lock by EOWNERDEAD and a
//   rebuild of the derived metadata from the slot table; its leases and unpublished
//   slots when anyone notices it is gone (allocation failure, health, attach, stats).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bitmap_allocator.h"
#include "eviction_heap.h"
#include "kvcache/entry_view.h"
#include "kvcache/manager.h"
#include "lease_table.h"
#include "pool_listener.h"
#include "process_table.h"
#include "published_entry.h"
#include "segment_format.h"
#include "shm_segment.h"
#include "slot_index.h"

namespace kvcache {

// Every operation that takes the pool lock returns a Status or Result: a lock that
// cannot be taken (timed out, unrecoverable, garbage) is an error naming the pool,
// never an empty or default answer.
class PoolHandle : public std::enable_shared_from_this<PoolHandle> {
 public:
  using PoolId = std::array<uint8_t, seg::kPoolIdBytes>;

  // Creates the segment at `path` for `config`, stamped with `pool_id`. AlreadyExists
  // if it exists (an existing file is never adopted).
  static Result<std::shared_ptr<PoolHandle>> Create(const std::string& path,
                                                    const PoolConfig& config,
                                                    const PoolId& pool_id);
  // Maps and validates an existing segment: PermissionDenied when the file is not
  // `owner`'s (MappedSegment::Open); Corruption for a bad magic, version, size or layout.
  static Result<std::shared_ptr<PoolHandle>> Open(const std::string& path,
                                                  const SegmentOwner& owner);
  // 16 random bytes from the kernel.
  static PoolId NewPoolId();
  // The id stamped in the header at creation.
  PoolId pool_id() const;

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  Policy policy() const { return policy_; }
  // True once the pool was destroyed (by any process): reopen by name.
  bool destroyed() const;
  // Marks the segment destroyed for every process mapping it.
  void MarkDestroyed();
  // False once the pool was destroyed, or its path removed or given to another file.
  bool IsCurrent() const { return !destroyed() && segment_.IsFileAt(path_); }
  // The same, filling *seen (when not null) with what lstat() found at the path.
  bool IsCurrent(struct stat* seen) const {
    return !destroyed() && segment_.IsFileAt(path_, seen);
  }

  // Who hears of this process's commits and evictions (Manager's remote tiers). Set
  // before the handle is shared; held weakly.
  void set_listener(std::weak_ptr<PoolListener> listener) { listener_ = std::move(listener); }

  // `notify`: whether the commit tells the listener (false: the caller found, as it
  // reserved, that no remote tier takes copies of commits).
  Result<PutReservation> Reserve(uint64_t seq, size_t size, uint64_t token_count,
                                 const PutOptions& options,
                                 const std::optional<EntryStats>& stats, bool notify = true);
  Status Commit(uint32_t slot, uint64_t generation, bool notify = true);
  // See PutReservation::OpenFileRange; `at` points into this pool's mapping.
  Result<std::pair<int, uint64_t>> OpenFileRange(const std::byte* at) const;
  // Frees the reservation if this process made it; does nothing otherwise.
  Status Abort(uint32_t slot, uint64_t generation);

  Status GetInto(uint64_t seq, std::vector<std::byte>& out);
  // Pins the entry; counts a hit or miss and an access unless !count_access.
  Result<EntryView> View(uint64_t seq, bool count_access = true);
  // Releases the lease if this process holds it; does nothing otherwise.
  Status ReleaseLease(uint32_t lease, uint64_t generation);
  // Pins each entry of `seqs` that is cached, in one hold of the lock, counting no
  // access: views[k] pins seqs[k], or is not valid() when that id is not cached (or no
  // lease was left for it). For a reader of many entries at once (the remote sender).
  Result<std::vector<EntryView>> PinEach(std::span<const uint64_t> seqs);
  // Releases, in one hold of the lock, the pins of `views` on this pool that this
  // process holds, and empties those views (see EntryView::ReleaseAll).
  Status ReleaseViews(std::span<EntryView> views);
  // Reads each entry refs[k] (if it is published with that generation) without the
  // lock, pinning nothing and counting no access, and sets outcomes[k] (see
  // PublishedReader and ReadOutcome). For a reader that must never make a put wait
  // (the remote sender): it falls back to PinEach for the kUnsure ones.
  void ReadEach(std::span<const EntryRef> refs, const PublishedReader& read,
                std::span<ReadOutcome> outcomes) const;
  Result<EntryInfo> Stat(uint64_t seq);
  Result<std::vector<EntryView>> ViewByPrefix(uint64_t prefix_hash);
  Result<std::vector<EntryInfo>> InfoByPrefix(uint64_t prefix_hash);
  // See Manager::LongestPrefix.
  Result<PrefixMatch> LongestPrefix(std::span<const uint32_t> tokens);
  Status Remove(uint64_t seq);
  // See Manager::StoreChunks and Manager::Match (pool_chunks.cc).
  // Each chunk newly stored (not one cached already) is added to `stored`, when given,
  // as its hash and generation: the chunks a write-through remote is to send.
  Result<ChunkStoreResult> StoreChunks(
      std::string_view name_space, std::span<const uint32_t> tokens,
      std::span<const std::span<const std::byte>> chunks,
      std::vector<std::pair<uint64_t, uint64_t>>* stored = nullptr);
  Result<ChunkMatch> MatchChunks(uint64_t seed, std::span<const uint32_t> tokens);
  // Continues `match` (made by MatchChunks with `seed`) with chunks served from
  // elsewhere: stores chunk j of `chunks`, holding tokens [j * chunk size, (j + 1) *
  // chunk size) of `tokens`, as the next chunk of the matched chain (one cached
  // meanwhile is confirmed, not copied), pins it and adds it to the match, until all
  // are in or one cannot be stored. Returns how many were added. Counts nothing.
  Result<size_t> ExtendMatch(ChunkMatch& match, std::string_view name_space,
                             std::span<const uint32_t> tokens,
                             std::span<const std::span<const std::byte>> chunks);
  // Releases every pin of `match` this process holds, in one hold of the lock.
  Status ReleaseMatch(const ChunkMatch& match);
  // One view per chunk of `match`, each taking over that chunk's pin.
  std::vector<EntryView> ViewsOfMatch(const ChunkMatch& match);
  Result<std::vector<ChunkInfo>> Chunks();
  Result<ChunkInfo> StatChunk(uint64_t hash);
  Result<PinnedChunk> PinChunk(uint64_t hash);
  // Every live chunk pinned at one instant (a prefix-closed set), parents before their
  // children (by position, then hash). For persist.
  Result<std::vector<PinnedChunk>> PinAllChunks();
  // Stores a chunk as a snapshot recorded it: `info` gives its hash, parent, position,
  // namespace, size and statistics; `fill` writes its payload. The parent (unless
  // position 1) must be live: NotFound otherwise. Returns false when the chunk was
  // cached already (nothing is copied). InvalidArgument when the pool's chunk size
  // differs from tokens.size().
  Result<bool> RestoreChunk(const ChunkInfo& info, std::span<const uint32_t> tokens,
                            const std::function<Status(std::span<std::byte>)>& fill);
  // See Manager::UpdateEntry (pool_update.cc).
  Result<EntryInfo> Update(uint64_t seq, uint64_t generation, const EntryUpdate& update);
  Result<uint64_t> Clear();
  // Ok when entries taking `extent_blocks` blocks each would all be placed, in this
  // order and without evicting any of them, once Clear() had run: pinned entries keep
  // their space. NoSpace saying how much is pinned otherwise. Changes nothing.
  Status CheckRoomAfterClear(std::span<const uint64_t> extent_blocks);
  Result<uint64_t> Evict(double percent);
  Result<std::vector<EntryInfo>> Entries();
  Result<std::vector<EntryView>> PinAll();

  Result<PoolStats> Stats();
  // Size and free bytes from the header alone (Manager::Space).
  Result<PoolSpace> Space();
  // Counters gathered since the last call; marks them recorded. GiveBack undoes a take
  // whose recording failed.
  struct CounterDelta {
    uint64_t hits = 0, misses = 0, evictions = 0;
  };
  Result<CounterDelta> TakeUnrecorded();
  Status GiveBack(const CounterDelta& delta);
  // Every problem found is in the report; an error only when the pool cannot be locked.
  Result<HealthReport> Health();
  Status Attach(pid_t pid);
  Status Detach(pid_t pid);

 private:
  friend class PoolHealthChecker;
  PoolHandle(MappedSegment segment, std::string path);
  // Commit's work under the lock; *published once the entry `*seq` is readable.
  Status CommitLocked(uint32_t slot, uint64_t generation, uint64_t* seq, bool* published);
  Status ValidateAndBind();
  // "sequence N not found in pool 'x'"
  Status SeqNotFound(uint64_t seq) const;

  // RAII holder of the pool lock; repairs the pool if the last holder died. Unless
  // `inspect`, a header whose fields are out of range (CheckHeaderLocked) is refused:
  // status() is Corruption and the lock is not held.
  class Locked {
   public:
    explicit Locked(PoolHandle& pool, bool inspect = false);
    ~Locked();
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;
    const Status& status() const { return status_; }

   private:
    PoolHandle& pool_;
    Status status_;
  };

  struct PinnedEntry {
    LeaseTable::Ticket lease;
    EntryInfo info;
    const std::byte* extent;
  };
  // Wraps entries pinned under the lock in views (sorted by id), without the lock.
  std::vector<EntryView> MakeViews(std::vector<PinnedEntry> pinned);

  // ---- everything below REQUIRES the pool lock ----
  // Every walk of shared state is checked against the geometry cached when the segment
  // was mapped (layout_), never against header fields anyone can overwrite later:
  // indexes are range-checked, chains bounded, extents and sizes overflow-checked.
  //
  // Corruption naming the first header field that is out of range: the geometry
  // differs from the one validated at mapping, or a count, list head or byte counter
  // is beyond what the geometry allows. O(1); Locked runs it at every acquisition.
  Status CheckHeaderLocked() const;
  // Corruption unless slot i's extent lies in the data region and holds its payload,
  // prefix tokens and metadata (seg::SlotFits).
  Status CheckSlotLocked(uint32_t i) const;
  // Corruption when an operation since the lock was taken met a damaged eviction
  // order (it stopped there, changing nothing more).
  Status HeapStatusLocked() const;
  // "pool 'x' is corrupt: <what>"
  Status Corrupt(const std::string& what) const;
  // The header's figures, as they are (Stats reaps and folds in hits first).
  void StatsLocked(PoolStats& st) const;
  // Pins slot i into `pinned`; on failure releases every pin in `pinned`.
  Status PinLocked(uint32_t i, std::vector<PinnedEntry>& pinned);
  // The LIVE entry `seq` / the LIVE chunk `hash`; kNil if none. A damaged chain ends the
  // lookup like its end: not found (health reports the damage).
  uint32_t FindLocked(uint64_t seq) const;
  uint32_t FindChunkLocked(uint64_t hash) const;
  // MatchChunks' locked part: looks up the chunks chain[begin, end) name, in order,
  // and pins into `match` each that continues the chain (its parent is chain[c - 1],
  // `seed` for the first), stopping at the first that does not. Returns where it
  // stopped (`end` when it pinned them all), which is also where it stops when every
  // lease of the table is held. An error when a pin could not be taken otherwise (a
  // damaged lease table); the pins already in `match` are the caller's to release.
  Result<size_t> PinChainLocked(uint64_t seed, std::span<const uint64_t> chain, size_t begin,
                                size_t end, LeaseTable::Owner me, double now_s, uint64_t now_ns,
                                ChunkMatch& match);
  // True when slot i is a reservation of this process with `generation`.
  bool IsMyReservationLocked(uint32_t i, uint64_t generation) const;
  // Counts an access. Needs no lock (lock-free gets call it too).
  void Touch(uint32_t slot);
  // Touch with the clock already read (unix seconds, CLOCK_MONOTONIC ns): for touching
  // many slots at once.
  void TouchAt(uint32_t slot, double now_s, uint64_t now_ns);
  // Corruption (CheckSlotLocked) when the slot's sizes do not fit its extent.
  Result<EntryInfo> InfoLocked(uint32_t slot) const;
  // This process's row in the process table, claimed on first use (a forked child
  // claims its own); row kNil when the table is full.
  LeaseTable::Owner MyProcessLocked();
  // This process's row if it has claimed one, without claiming; row kNil otherwise.
  LeaseTable::Owner MyRowLocked() const;
  Result<LeaseTable::Ticket> AcquireLeaseLocked(uint32_t slot);
  // Releases a lease this process holds; drops the slot's pin.
  Status ReleaseLeaseLocked(LeaseTable::Ticket lease);
  // ReleaseLeaseLocked for a caller that already read its owner (MyRowLocked).
  Status ReleaseLeaseAsLocked(LeaseTable::Ticket lease, LeaseTable::Owner me);
  // Makes free slot i a reservation of `me`, WRITING with an empty extent, before
  // anything (an eviction reaping dead processes) can rebuild the pool.
  void ClaimForWriteLocked(uint32_t i, LeaseTable::Owner me);
  // Unindexes a LIVE slot; frees it now, or retires it until its last pin goes. `now`
  // (unix seconds) stamps the pool's modification time.
  void UnpublishLocked(uint32_t slot);
  void UnpublishLocked(uint32_t slot, double now);
  void FreeSlotLocked(uint32_t slot);
  // Indexes slot i (SlotIndex::Link) and makes it LIVE. `in_heap`: the slot has its
  // place in the eviction order already (EvictionHeap::Replace).
  void LinkLocked(uint32_t slot, bool in_heap = false);
  // Chunk `slot` was linked: its parent gains a child and leaves the eviction heap.
  void AdoptChunkLocked(uint32_t slot);
  // Chunk `slot` is being unlinked: its parent loses a child, and becomes evictable
  // again once it has none.
  void OrphanChunkLocked(uint32_t slot);
  // One chunk to store: H_i = `hash` under `parent` = H_{i-1} at `position` i, its
  // payload of `size` bytes written by `fill` (outside the lock), with the statistics
  // of `stats` (a restore) or fresh ones.
  struct ChunkSpec {
    uint64_t parent;
    uint64_t hash;
    uint32_t position;
    std::span<const uint32_t> tokens;
    std::string_view name_space;
    uint64_t size;
    std::function<Status(std::span<std::byte>)> fill;
    const ChunkInfo* stats;
  };
  struct PlacedChunk {
    uint32_t slot;
    uint64_t generation;
    LeaseTable::Ticket lease;  // a pin on the chunk, the caller's to release
    bool stored;               // false: it was cached already, nothing was copied
  };
  // Stores the chunk of `spec` unless it is cached already, and pins it either way.
  // REQUIRES: not the lock; unless spec.position == 1, the parent is slot
  // `parent_slot` at `parent_generation`, pinned by the caller (so it stays live).
  Result<PlacedChunk> PlaceChunk(const ChunkSpec& spec, uint32_t parent_slot,
                                 uint64_t parent_generation);
  // Chunk `slot`'s metadata; Corruption (CheckSlotLocked) when it does not fit.
  Result<ChunkInfo> ChunkInfoLocked(uint32_t slot) const;
  // True when chunk `slot` is the chunk `hash` of the chain: its parent hash, position
  // and stored tokens are the ones given.
  bool ChunkIsLocked(uint32_t slot, uint64_t parent, uint32_t position,
                     std::span<const uint32_t> block) const;
  // Evicts the policy's next unpinned victim; false when there is none, or when the
  // eviction order is damaged (HeapStatusLocked says so).
  bool EvictOneLocked();
  uint64_t AllocateExtentLocked(uint64_t blocks);
  // Reaps dead processes; when any died, rebuilds. Returns how many were reaped.
  uint64_t RecoverDeadLocked();
  // Rebuilds every derived structure from the slot and lease tables.
  void RebuildLocked();
  void SetAttachedLocked(uint32_t n);
  uint64_t NextTickLocked() { return ++header_->tick; }
  uint64_t NextGenerationLocked() { return ++header_->generation; }

  // REQUIRES: the slot's extent is in bounds (CheckSlotLocked).
  std::byte* Extent(const seg::Slot& s) const {
    return data_ + s.first_block * layout_.block_size;
  }

  MappedSegment segment_;
  std::string path_;
  std::weak_ptr<PoolListener> listener_;
  std::string name_;
  Policy policy_ = Policy::kLru;
  // The geometry validated when the segment was mapped; immutable for its life.
  seg::Layout layout_;
  uint32_t max_sequences_ = 0;
  uint32_t prefix_block_tokens_ = 0;
  seg::Header* header_ = nullptr;
  seg::Slot* slots_ = nullptr;
  std::byte* data_ = nullptr;
  std::optional<ProcessTable> processes_;
  std::optional<LeaseTable> leases_;
  // The id, prefix-hash and block-prefix chains and the free-slot list.
  std::optional<SlotIndex> index_;
  // EvictOneLocked's list of pinned slots it set aside; capacity slot_capacity,
  // reserved outside the lock. Used only under the pool lock.
  std::vector<uint32_t> evict_scratch_;
  std::optional<BitmapAllocator> bitmap_;
  std::optional<EvictionHeap> heap_;

  // What a lock-free lookup saw; valid only while the slot keeps `generation`.
  struct UnlockedRead {
    uint32_t slot;
    uint64_t generation;
    const std::byte* bytes;
    uint64_t size;
  };
  bool FindUnlocked(uint64_t seq, UnlockedRead* read) const;
};

}  // namespace kvcache
