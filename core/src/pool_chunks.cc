// PoolHandle's token chunks: storing a token sequence as chained chunks, matching a
// prompt's longest cached prefix, and the parent/child bookkeeping that keeps eviction
// leaves first (segment_format.h, SlotKind).
#include <algorithm>
#include <cstring>
#include <optional>

#include "clock.h"
#include "kvcache/prefix.h"
#include "kvcache/size.h"
#include "pool_handle.h"
#include "process_table.h"

namespace kvcache {

using seg::kNil;

// ---------------------------------------------------------------- chain bookkeeping

uint32_t PoolHandle::FindChunkLocked(uint64_t hash) const {
  uint32_t found = kNil;
  seg::ForEachInChain<&seg::Slot::chain_next>(
      slots_, layout_.slot_capacity, ChainHead(hash), [&](uint32_t i) {
        const seg::Slot& s = slots_[i];
        if (s.chain_hash == hash && s.kind == seg::kChunkSlot && s.state == seg::kLive) found = i;
        return found == kNil;
      });
  return found;
}

void PoolHandle::AdoptChunkLocked(uint32_t i) {
  if (slots_[i].chain_blocks <= 1) return;  // starts its chain
  uint32_t parent = FindChunkLocked(slots_[i].parent_hash);
  if (parent == kNil) return;
  seg::Slot& p = slots_[parent];
  if (p.children++ == 0 && p.heap_pos != kNil) heap_->Remove(parent);
}

void PoolHandle::OrphanChunkLocked(uint32_t i) {
  if (slots_[i].chain_blocks <= 1) return;
  uint32_t parent = FindChunkLocked(slots_[i].parent_hash);
  if (parent == kNil) return;  // already gone (Clear unlinks in slot order)
  seg::Slot& p = slots_[parent];
  if (p.children > 0 && --p.children == 0 && p.heap_pos == kNil) heap_->Push(parent);
}

bool PoolHandle::ChunkIsLocked(uint32_t i, uint64_t parent, uint32_t position,
                               std::span<const uint32_t> block) const {
  const seg::Slot& s = slots_[i];
  if (s.parent_hash != parent || s.chain_blocks != position || s.prefix_len != block.size() ||
      !seg::SlotFits(s, layout_.block_count, layout_.block_size)) {
    return false;
  }
  // A chunk's tokens (prefix_len <= 256 of them) never change while it is live.
  return std::memcmp(Extent(s) + s.size_bytes, block.data(), block.size_bytes()) == 0;
}

// ---------------------------------------------------------------- store

Result<PoolHandle::PlacedChunk> PoolHandle::PlaceChunk(const ChunkSpec& spec,
                                                       uint32_t parent_slot,
                                                       uint64_t parent_generation) {
  const uint64_t bs = layout_.block_size;
  const uint64_t total = spec.size + 4 * uint64_t{spec.tokens.size()} + spec.name_space.size();
  const uint64_t blocks = total / bs + (total % bs != 0);
  const std::string which = "chunk " + PrefixHashToHex(spec.hash);
  auto present = [&](uint32_t existing) -> Result<PlacedChunk> {
    if (!ChunkIsLocked(existing, spec.parent, spec.position, spec.tokens)) {
      return Status::AlreadyExists(which + " hashes like another chunk of pool '" + name_ +
                                   "' (a hash collision)");
    }
    KVC_ASSIGN_OR_RETURN(LeaseTable::Ticket lease, AcquireLeaseLocked(existing));
    return PlacedChunk{existing, slots_[existing].generation, lease, false};
  };
  uint32_t slot = kNil;
  uint64_t gen = 0;
  std::byte* extent = nullptr;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    if (uint32_t existing = FindChunkLocked(spec.hash); existing != kNil) return present(existing);
    LeaseTable::Owner me = MyProcessLocked();
    if (me.row == kNil) return Status::Busy("process table of pool '" + name_ + "' is full");
    slot = AllocSlotLocked();
    if (slot == kNil && RecoverDeadLocked() > 0) slot = AllocSlotLocked();
    if (slot == kNil) return Status::Busy("pool '" + name_ + "' has too many puts in flight");
    seg::Slot& s = slots_[slot];
    ClaimForWriteLocked(slot, me);
    uint64_t first = AllocateExtentLocked(blocks);
    if (first == BitmapAllocator::kNone) {
      FreeSlotLocked(slot);
      KVC_RETURN_IF_ERROR(HeapStatusLocked());  // eviction stopped at damage
      return Status::NoSpace("pool '" + name_ + "' is full: " + which + " needs " +
                             FormatSizeLong(blocks * bs) + ", " + FormatSizeLong(header_->free) +
                             " are free and nothing more can be evicted");
    }
    double now = NowSeconds();
    seg::StoreRelaxed(s.sequence_id, spec.hash);
    seg::StoreRelaxed(s.first_block, first);
    seg::StoreRelaxed(s.extent_blocks, blocks);
    seg::StoreRelaxed(s.size_bytes, spec.size);
    s.token_count = spec.tokens.size();
    s.prefix_hash = 0;
    s.prefix_len = static_cast<uint32_t>(spec.tokens.size());
    s.chain_hash = spec.hash;
    s.chain_blocks = spec.position;
    s.parent_hash = spec.parent;
    s.kind = seg::kChunkSlot;
    s.children = 0;
    s.metadata_len = static_cast<uint32_t>(spec.name_space.size());
    s.priority = 0;
    s.created = spec.stats ? spec.stats->created : now;
    seg::StoreRelaxed(s.last_accessed, spec.stats ? spec.stats->last_accessed : now);
    seg::StoreRelaxed(s.access_count, spec.stats ? spec.stats->access_count : uint64_t{0});
    s.pins = 0;
    s.heap_pos = s.prefix_next = s.prefix_prev = s.chain_next = s.chain_prev = kNil;
    gen = NextGenerationLocked();
    AtomicGeneration(s).store(gen, std::memory_order_release);
    extent = Extent(s);
  }
  // The slot is this process's until linked: fill it without the lock. On failure it
  // is freed below (or, if this process dies first, by recovery).
  std::byte* tail = extent + spec.size;
  std::memcpy(tail, spec.tokens.data(), spec.tokens.size_bytes());
  if (!spec.name_space.empty()) {
    std::memcpy(tail + spec.tokens.size_bytes(), spec.name_space.data(), spec.name_space.size());
  }
  Status filled = spec.fill(std::span<std::byte>(extent, spec.size));
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  if (!IsMyReservationLocked(slot, gen)) {
    return Status::Busy("reservation in pool '" + name_ + "' was lost");
  }
  if (!filled.ok()) {
    FreeSlotLocked(slot);
    return filled;
  }
  if (uint32_t existing = FindChunkLocked(spec.hash); existing != kNil) {
    FreeSlotLocked(slot);  // another process stored the same chunk meanwhile
    return present(existing);
  }
  if (spec.position > 1 && (slots_[parent_slot].state != seg::kLive ||
                            slots_[parent_slot].generation != parent_generation)) {
    // Removed (a clear) while pinned: its children would be unreachable.
    FreeSlotLocked(slot);
    return Status::Busy("the parent of " + which + " was removed from pool '" + name_ +
                        "' while its child was stored");
  }
  if (header_->entry_count >= max_sequences_ && !EvictOneLocked()) {
    FreeSlotLocked(slot);
    return Status::NoSpace("pool '" + name_ + "' holds its maximum of " +
                           std::to_string(max_sequences_) +
                           " entries and chunks and none can be evicted");
  }
  seg::Slot& s = slots_[slot];
  s.create_tick = NextTickLocked();
  seg::Atomic(s.access_tick).store(MonotonicNs(), std::memory_order_relaxed);
  s.owner = kNil;
  LinkLocked(slot);
  AdoptChunkLocked(slot);
  header_->puts++;
  header_->modified = NowSeconds();
  KVC_ASSIGN_OR_RETURN(LeaseTable::Ticket lease, AcquireLeaseLocked(slot));
  return PlacedChunk{slot, gen, lease, true};
}

Result<ChunkStoreResult> PoolHandle::StoreChunks(
    std::string_view name_space, std::span<const uint32_t> tokens,
    std::span<const std::span<const std::byte>> chunks) {
  const uint32_t bt = prefix_block_tokens_;  // fixed at creation
  const uint64_t seed = ChunkChainSeed(name_space);
  // Each chunk's extent ends with its namespace, so that any chunk tells whose it is.
  const uint64_t tail = 4 * uint64_t{bt} + name_space.size();
  ChunkStoreResult result;
  result.chunks = tokens.size() / bt;
  if (chunks.size() != result.chunks) {
    return Status::InvalidArgument(
        std::to_string(tokens.size()) + " tokens make " + std::to_string(result.chunks) +
        " whole chunks of " + std::to_string(bt) + " tokens in pool '" + name_ + "', but " +
        std::to_string(chunks.size()) + " chunks of bytes were given");
  }
  const uint64_t pool_bytes = layout_.block_count * layout_.block_size;
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (chunks[c].size() > pool_bytes || tail > pool_bytes - chunks[c].size()) {
      return Status::NoSpace("chunk " + std::to_string(c) + " of " +
                             FormatSizeLong(chunks[c].size()) + " is larger than pool '" +
                             name_ + "' (" + FormatSizeLong(pool_bytes) + ")");
    }
  }
  // The parent of the chunk being stored stays pinned, so making room for its child
  // can never evict it; every earlier chunk of the chain has a child and is not a
  // victim either. So each chunk is linked under a live parent: chains stay whole.
  std::optional<LeaseTable::Ticket> parent_pin;
  uint32_t parent_slot = kNil;
  uint64_t parent_generation = 0;
  // Releases the pin on the way out, whatever the way.
  struct Release {
    PoolHandle* pool;
    std::optional<LeaseTable::Ticket>* pin;
    ~Release() {
      if (!*pin) return;
      Locked lk(*pool);
      if (lk.status().ok()) pool->ReleaseLeaseLocked(**pin).IgnoreError();
    }
  } release{this, &parent_pin};

  uint64_t parent = seed;
  for (uint32_t c = 0; c < result.chunks; ++c) {
    std::span<const uint32_t> block = tokens.subspan(uint64_t{c} * bt, bt);
    std::span<const std::byte> bytes = chunks[c];
    auto copy = [bytes](std::span<std::byte> out) {
      if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
      return Status::Ok();
    };
    ChunkSpec spec{parent, ChainHash(parent, block), c + 1, block, name_space, bytes.size(),
                   copy, nullptr};
    KVC_ASSIGN_OR_RETURN(PlacedChunk placed, PlaceChunk(spec, parent_slot, parent_generation));
    {
      Locked lk(*this);
      KVC_RETURN_IF_ERROR(lk.status());
      if (parent_pin) ReleaseLeaseLocked(*parent_pin).IgnoreError();
    }
    parent_pin = placed.lease;
    parent_slot = placed.slot;
    parent_generation = placed.generation;
    (placed.stored ? result.stored : result.present)++;
    parent = spec.hash;
  }
  return result;
}

// ---------------------------------------------------------------- match

Result<ChunkMatch> PoolHandle::MatchChunks(uint64_t seed, std::span<const uint32_t> tokens) {
  const uint32_t bt = prefix_block_tokens_;
  const size_t n = tokens.size() / bt;
  // Every chained hash first, without the lock: hashing is most of a match's work.
  std::vector<uint64_t> chain(n);
  uint64_t h = seed;
  for (size_t c = 0; c < n; ++c) chain[c] = h = ChainHash(h, tokens.subspan(c * bt, bt));

  struct Found {
    uint32_t slot;
    LeaseTable::Ticket lease;
    const std::byte* extent;
    uint64_t size;
    uint64_t generation;
    double created;
    uint64_t access_count;
  };
  std::vector<Found> found;
  found.reserve(n);
  double now_s = 0;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    // The walk ahead of itself: bucket heads kAhead chunks on, the slots they name half
    // as far, so the cache misses of many lookups overlap instead of adding up.
    constexpr size_t kAhead = 8;
    auto prefetch_bucket = [&](size_t c) {
      if (c < n) __builtin_prefetch(&ChainHead(chain[c]));
    };
    auto prefetch_slot = [&](size_t c) {
      if (c >= n) return;
      uint32_t head = ChainHead(chain[c]);
      if (head < layout_.slot_capacity) __builtin_prefetch(&slots_[head]);
    };
    for (size_t c = 0; c < kAhead; ++c) prefetch_bucket(c);
    for (size_t c = 0; c < kAhead / 2; ++c) prefetch_slot(c);
    // Chains are prefix-closed, so the first miss ends the match.
    for (size_t c = 0; c < n; ++c) {
      prefetch_bucket(c + kAhead);
      prefetch_slot(c + kAhead / 2);
      uint32_t i = FindChunkLocked(chain[c]);
      if (i == kNil) break;
      const seg::Slot& s = slots_[i];
      if (s.parent_hash != (c == 0 ? seed : chain[c - 1]) || s.chain_blocks != c + 1 ||
          s.prefix_len != bt || !seg::SlotFits(s, layout_.block_count, layout_.block_size)) {
        break;
      }
      Result<LeaseTable::Ticket> lease = AcquireLeaseLocked(i);
      if (!lease.ok()) {
        for (const Found& f : found) ReleaseLeaseLocked(f.lease).IgnoreError();
        return lease.status();
      }
      found.push_back({i, *lease, Extent(s), s.size_bytes, s.generation, s.created, 0});
    }
    // One clock read for the whole match. Leaves first get the older tick, so under
    // LRU an ancestor is never older than its descendants. Plain loads and stores, not
    // Touch's read-modify-writes: only lock-free gets touch without the lock, and they
    // find entries by id, never chunks.
    now_s = NowSeconds();
    const uint64_t now_ns = MonotonicNs();
    for (size_t j = found.size(); j-- > 0;) {
      seg::Slot& s = slots_[found[j].slot];
      uint64_t count = seg::LoadRelaxed(s.access_count) + 1;
      seg::StoreRelaxed(s.access_count, count);
      seg::StoreRelaxed(s.last_accessed, now_s);
      uint64_t tick = now_ns + (found.size() - 1 - j);
      if (seg::LoadRelaxed(s.access_tick) < tick) seg::StoreRelaxed(s.access_tick, tick);
      found[j].access_count = count;
    }
    header_->chunk_tokens_asked += tokens.size();
    header_->chunk_tokens_matched += uint64_t{found.size()} * bt;
  }
  // Confirm token by token without the lock: pinned chunks cannot change.
  size_t confirmed = 0;
  for (; confirmed < found.size(); ++confirmed) {
    if (confirmed + 4 < found.size()) {
      const Found& ahead = found[confirmed + 4];
      __builtin_prefetch(ahead.extent + ahead.size);
    }
    const Found& f = found[confirmed];
    if (std::memcmp(f.extent + f.size, &tokens[confirmed * bt], 4 * uint64_t{bt}) != 0) break;
  }
  if (confirmed < found.size()) {
    // A hash collision (or tokens stored under a forged hash): keep what was confirmed.
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    for (size_t j = confirmed; j < found.size(); ++j) {
      ReleaseLeaseLocked(found[j].lease).IgnoreError();
    }
    header_->chunk_tokens_matched -= uint64_t{found.size() - confirmed} * bt;
    found.resize(confirmed);
  }
  ChunkMatch match;
  match.chunk_tokens = bt;
  match.matched_tokens = uint64_t{confirmed} * bt;
  auto self = shared_from_this();
  uint64_t epoch = ForkEpoch();
  match.chunks.resize(found.size());
  for (size_t k = 0; k < found.size(); ++k) {
    const Found& f = found[k];
    EntryView& v = match.chunks[k];
    v.pool_ = self;
    v.epoch_ = epoch;
    v.lease_ = f.lease.index;
    v.lease_generation_ = f.lease.generation;
    // What a chunk's view tells (no strings: a match may return thousands of views).
    v.info_.sequence_id = chain[k];
    v.info_.size_bytes = f.size;
    v.info_.token_count = bt;
    v.info_.prefix_length = bt;
    v.info_.generation = f.generation;
    v.info_.created = f.created;
    v.info_.last_accessed = now_s;
    v.info_.access_count = f.access_count;
    v.info_.offset = static_cast<uint64_t>(f.extent - data_);
    v.extent_ = f.extent;
  }
  return match;
}

// ---------------------------------------------------------------- listing

Result<ChunkInfo> PoolHandle::ChunkInfoLocked(uint32_t i) const {
  KVC_RETURN_IF_ERROR(CheckSlotLocked(i));
  const seg::Slot& s = slots_[i];
  ChunkInfo c;
  c.hash = s.chain_hash;
  c.parent_hash = s.parent_hash;
  c.position = s.chain_blocks;
  c.token_count = s.prefix_len;
  c.size_bytes = s.size_bytes;
  c.created = s.created;
  c.last_accessed = seg::LoadRelaxed(s.last_accessed);
  c.access_count = seg::LoadRelaxed(s.access_count);
  c.generation = s.generation;
  if (s.metadata_len > 0) {
    const char* ns =
        reinterpret_cast<const char*>(Extent(s) + s.size_bytes + 4 * uint64_t{s.prefix_len});
    c.name_space.assign(ns, s.metadata_len);
  }
  return c;
}

Result<std::vector<ChunkInfo>> PoolHandle::Chunks() {
  std::vector<ChunkInfo> out;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    out.reserve(header_->chunk_count);  // at most the slot capacity (CheckHeaderLocked)
    for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
      if (slots_[i].state != seg::kLive || slots_[i].kind != seg::kChunkSlot) continue;
      KVC_ASSIGN_OR_RETURN(ChunkInfo info, ChunkInfoLocked(i));
      out.push_back(std::move(info));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const ChunkInfo& a, const ChunkInfo& b) { return a.hash < b.hash; });
  return out;
}

Result<ChunkInfo> PoolHandle::StatChunk(uint64_t hash) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  uint32_t i = FindChunkLocked(hash);
  if (i == kNil) {
    return Status::NotFound("chunk " + PrefixHashToHex(hash) + " not found in pool '" + name_ +
                            "'");
  }
  return ChunkInfoLocked(i);
}

Result<PinnedChunk> PoolHandle::PinChunk(uint64_t hash) {
  PinnedChunk out;
  std::vector<PinnedEntry> pinned;
  pinned.reserve(1);
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    uint32_t i = FindChunkLocked(hash);
    if (i == kNil) {
      return Status::NotFound("chunk " + PrefixHashToHex(hash) + " not found in pool '" +
                              name_ + "'");
    }
    // Before the pin: nothing may throw once it is taken.
    KVC_ASSIGN_OR_RETURN(out.info, ChunkInfoLocked(i));
    KVC_RETURN_IF_ERROR(PinLocked(i, pinned));
  }
  EntryView& v = out.view;
  v.pool_ = shared_from_this();
  v.epoch_ = ForkEpoch();
  v.lease_ = pinned[0].lease.index;
  v.lease_generation_ = pinned[0].lease.generation;
  v.info_ = std::move(pinned[0].info);
  v.extent_ = pinned[0].extent;
  return out;
}

Result<std::vector<PinnedChunk>> PoolHandle::PinAllChunks() {
  std::vector<ChunkInfo> infos;
  std::vector<PinnedEntry> pinned;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    infos.reserve(header_->chunk_count);  // at most the slot capacity (CheckHeaderLocked)
    pinned.reserve(header_->chunk_count);
    for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
      if (slots_[i].state != seg::kLive || slots_[i].kind != seg::kChunkSlot) continue;
      Result<ChunkInfo> info = ChunkInfoLocked(i);
      if (!info.ok()) {
        for (const PinnedEntry& p : pinned) ReleaseLeaseLocked(p.lease).IgnoreError();
        return info.status();
      }
      infos.push_back(std::move(info).value());
      KVC_RETURN_IF_ERROR(PinLocked(i, pinned));
    }
  }
  std::vector<PinnedChunk> out(pinned.size());
  auto self = shared_from_this();
  uint64_t epoch = ForkEpoch();
  for (size_t k = 0; k < pinned.size(); ++k) {
    out[k].info = std::move(infos[k]);
    EntryView& v = out[k].view;
    v.pool_ = self;
    v.epoch_ = epoch;
    v.lease_ = pinned[k].lease.index;
    v.lease_generation_ = pinned[k].lease.generation;
    v.info_ = std::move(pinned[k].info);
    v.extent_ = pinned[k].extent;
  }
  // Parents before their children: the order a restore must link them in.
  std::sort(out.begin(), out.end(), [](const PinnedChunk& a, const PinnedChunk& b) {
    return a.info.position != b.info.position ? a.info.position < b.info.position
                                              : a.info.hash < b.info.hash;
  });
  return out;
}

Result<bool> PoolHandle::RestoreChunk(const ChunkInfo& info, std::span<const uint32_t> tokens,
                                      const std::function<Status(std::span<std::byte>)>& fill) {
  if (tokens.size() != prefix_block_tokens_) {
    return Status::InvalidArgument("chunk " + PrefixHashToHex(info.hash) + " holds " +
                                   std::to_string(tokens.size()) + " tokens; pool '" + name_ +
                                   "' holds chunks of " + std::to_string(prefix_block_tokens_));
  }
  std::optional<LeaseTable::Ticket> parent_pin;
  uint32_t parent_slot = kNil;
  uint64_t parent_generation = 0;
  if (info.position > 1) {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    parent_slot = FindChunkLocked(info.parent_hash);
    if (parent_slot == kNil) {
      return Status::NotFound("the parent of chunk " + PrefixHashToHex(info.hash) +
                              " is not in pool '" + name_ + "'");
    }
    parent_generation = slots_[parent_slot].generation;
    KVC_ASSIGN_OR_RETURN(LeaseTable::Ticket lease, AcquireLeaseLocked(parent_slot));
    parent_pin = lease;
  }
  ChunkSpec spec{info.parent_hash, info.hash, info.position, tokens, info.name_space,
                 info.size_bytes,  fill,      &info};
  Result<PlacedChunk> placed = PlaceChunk(spec, parent_slot, parent_generation);
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  if (parent_pin) ReleaseLeaseLocked(*parent_pin).IgnoreError();
  if (!placed.ok()) return placed.status();
  ReleaseLeaseLocked(placed->lease).IgnoreError();
  return placed->stored;
}

}  // namespace kvcache
