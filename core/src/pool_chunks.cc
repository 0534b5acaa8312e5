// PoolHandle's token chunks: storing a token sequence as chained chunks, matching a
// prompt's longest cached prefix, and the parent/child bookkeeping that keeps eviction
// leaves first (segment_format.h, SlotKind).
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <optional>

#include "clock.h"
#include "kvcache/prefix.h"
#include "kvcache/size.h"
#include "pool_handle.h"
#include "process_table.h"

namespace kvcache {

using seg::kNil;

namespace {

// Starts loading the cache line at `p` (never faults, whatever `p` is). Inline assembly
// rather than __builtin_prefetch, which GCC 12's dead-code elimination drops from
// MatchChunks' walk.
inline void Prefetch(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 (%0)" : : "r"(p));
#elif defined(__aarch64__)
  asm volatile("prfm pldl1keep, [%0]" : : "r"(p));
#else
  __builtin_prefetch(p);
#endif
}

}  // namespace

// ---------------------------------------------------------------- chain bookkeeping

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
    slot = index_->PopFree();
    if (slot == kNil && RecoverDeadLocked() > 0) slot = index_->PopFree();
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
    double now = StampSeconds();
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
  header_->modified = StampSeconds();
  KVC_ASSIGN_OR_RETURN(LeaseTable::Ticket lease, AcquireLeaseLocked(slot));
  return PlacedChunk{slot, gen, lease, true};
}

Result<ChunkStoreResult> PoolHandle::StoreChunks(
    std::string_view name_space, std::span<const uint32_t> tokens,
    std::span<const std::span<const std::byte>> chunks,
    std::vector<std::pair<uint64_t, uint64_t>>* stored) {
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
    if (placed.stored && stored != nullptr) stored->emplace_back(spec.hash, placed.generation);
    parent = spec.hash;
  }
  return result;
}

Result<size_t> PoolHandle::ExtendMatch(ChunkMatch& match, std::string_view name_space,
                                       std::span<const uint32_t> tokens,
                                       std::span<const std::span<const std::byte>> chunks) {
  const uint32_t bt = prefix_block_tokens_;
  if (match.pool_.get() != this || match.pins_.size() != match.chunks.size() ||
      tokens.size() != uint64_t{chunks.size()} * bt) {
    return Status::InvalidArgument("chunks do not continue this match of pool '" + name_ + "'");
  }
  const uint64_t pool_bytes = layout_.block_count * layout_.block_size;
  const uint64_t tail = 4 * uint64_t{bt} + name_space.size();
  uint64_t parent = ChunkChainSeed(name_space);
  uint32_t parent_slot = kNil;
  uint64_t parent_generation = 0;
  if (!match.chunks.empty()) {
    // Pinned by the match: live, and the same chunk as when it was matched.
    const MatchedChunk& last = match.chunks.back();
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    parent_slot = FindChunkLocked(last.hash);
    if (parent_slot == kNil || slots_[parent_slot].generation != last.generation) {
      return Status::Busy("the last matched chunk of pool '" + name_ + "' is gone");
    }
    parent = last.hash;
    parent_generation = last.generation;
  }
  // Nothing may throw while a new pin is not in the match yet.
  match.chunks.reserve(match.chunks.size() + chunks.size());
  match.pins_.reserve(match.pins_.size() + chunks.size());
  size_t added = 0;
  for (size_t j = 0; j < chunks.size(); ++j) {
    std::span<const std::byte> bytes = chunks[j];
    if (bytes.size() > pool_bytes || tail > pool_bytes - bytes.size()) break;
    std::span<const uint32_t> block = tokens.subspan(j * uint64_t{bt}, bt);
    auto copy = [bytes](std::span<std::byte> out) {
      if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
      return Status::Ok();
    };
    const uint32_t position = static_cast<uint32_t>(match.chunks.size() + 1);
    ChunkSpec spec{parent, ChainHash(parent, block), position, block, name_space, bytes.size(),
                   copy, nullptr};
    Result<PlacedChunk> placed = PlaceChunk(spec, parent_slot, parent_generation);
    if (!placed.ok()) break;  // no room: the match ends at what is here
    {
      Locked lk(*this);
      KVC_RETURN_IF_ERROR(lk.status());
      const seg::Slot& c = slots_[placed->slot];
      match.chunks.push_back({spec.hash, placed->generation, Extent(c), c.size_bytes});
      match.pins_.push_back({placed->lease.index, placed->lease.generation});
    }
    match.matched_tokens += bt;
    parent = spec.hash;
    parent_slot = placed->slot;
    parent_generation = placed->generation;
    ++added;
  }
  return added;
}

// ---------------------------------------------------------------- match

Result<ChunkMatch> PoolHandle::MatchChunks(uint64_t seed, std::span<const uint32_t> tokens) {
  const uint32_t bt = prefix_block_tokens_;
  const size_t n = tokens.size() / bt;
  // The prompt is matched in runs of chunks, each run twice as long as the one before:
  // a run is hashed without the lock, then looked up and pinned in one hold of it, then
  // confirmed token by token without it. So a prompt that misses early is hashed no
  // further than its first run, the lock is never held while hashing or comparing, and
  // a long prompt takes the lock a handful of times (9 for 8,192 chunks). Pins taken
  // in one hold stay through the next: a chunk found stays found (what others store or
  // evict meanwhile can only move where the part not yet looked up ends).
  constexpr size_t kFirstRun = 32;
  std::vector<uint64_t> chain(n);
  ChunkMatch match;
  match.chunk_tokens = bt;
  match.chunks.reserve(n);
  match.pins_.reserve(n);
  // From here on, whatever way this returns, the match releases the pins it holds.
  match.pool_ = shared_from_this();
  match.epoch_ = ForkEpoch();
  // One clock read for the whole match. Leaves get the older tick, so under LRU an
  // ancestor is never older than its descendants.
  const double now_s = StampSeconds();
  const uint64_t now_ns = MonotonicNs();
  LeaseTable::Owner me;
  uint64_t h = seed;
  size_t begin = 0;  // chunks [0, begin) are pinned and confirmed
  // At least one run, even for a prompt of no whole chunk: it counts as asked.
  for (size_t run = kFirstRun;; run *= 2) {
    const size_t end = std::min(n, begin + run);
    for (size_t c = begin; c < end; ++c) {
      chain[c] = h = ChainHash(h, tokens.subspan(c * bt, bt));
    }
    size_t pinned = begin;  // chunks [begin, pinned) are pinned by this run
    {
      Locked lk(*this);
      KVC_RETURN_IF_ERROR(lk.status());
      LeaseTable::Owner owner = MyProcessLocked();
      if (begin == 0) {
        me = owner;
        if (me.row == kNil) return Status::Busy("process table of pool '" + name_ + "' is full");
        header_->chunk_tokens_asked += tokens.size();
      }
      // A match that fails counts nothing: what the runs before this one counted is
      // taken back.
      auto uncount = [&] {
        header_->chunk_tokens_asked -= tokens.size();
        header_->chunk_tokens_matched -= uint64_t{begin} * bt;
      };
      if (owner.row != me.row || owner.generation != me.generation) {
        // This process's row was taken from it, and its pins with it.
        uncount();
        match.pins_.clear();
        return Status::Busy("the process table row of this process in pool '" + name_ +
                            "' was reclaimed during a match");
      }
      Result<size_t> through = PinChainLocked(seed, chain, begin, end, me, now_s, now_ns, match);
      if (!through.ok()) {
        uncount();
        for (const ChunkMatch::Pin& p : match.pins_) {
          ReleaseLeaseAsLocked({p.lease, p.generation}, me).IgnoreError();
        }
        match.pins_.clear();
        return through.status();
      }
      pinned = *through;
      header_->chunk_tokens_matched += uint64_t{pinned - begin} * bt;
    }
    // Confirm token by token without the lock: pinned chunks cannot change.
    size_t confirmed = begin;
    for (; confirmed < pinned; ++confirmed) {
      if (confirmed + 8 < pinned) {
        const MatchedChunk& ahead = match.chunks[confirmed + 8];
        Prefetch(ahead.bytes + ahead.size);
      }
      const MatchedChunk& f = match.chunks[confirmed];
      if (std::memcmp(f.bytes + f.size, &tokens[confirmed * bt], 4 * uint64_t{bt}) != 0) break;
    }
    if (confirmed < pinned) {
      // A hash collision (or tokens stored under a forged hash): keep what was confirmed.
      Locked lk(*this);
      KVC_RETURN_IF_ERROR(lk.status());
      for (size_t j = confirmed; j < pinned; ++j) {
        const ChunkMatch::Pin& p = match.pins_[j];
        ReleaseLeaseAsLocked({p.lease, p.generation}, me).IgnoreError();
      }
      header_->chunk_tokens_matched -= uint64_t{pinned - confirmed} * bt;
      match.chunks.resize(confirmed);
      match.pins_.resize(confirmed);
    }
    begin = confirmed;
    // Chains are prefix-closed: the first miss ends the match.
    if (confirmed < end || begin == n) break;
  }
  match.matched_tokens = uint64_t{match.chunks.size()} * bt;
  return match;
}

Result<size_t> PoolHandle::PinChainLocked(uint64_t seed, std::span<const uint64_t> chain,
                                          size_t begin, size_t end, LeaseTable::Owner me,
                                          double now_s, uint64_t now_ns, ChunkMatch& match) {
  const uint32_t bt = prefix_block_tokens_;
  const uint32_t cap = layout_.slot_capacity;
  const size_t n = chain.size();
  // Whether slot i holds chunk c of the prompt: a live chunk with its hash that continues
  // the chain (its parent and position) and whose extent fits.
  auto continues = [&](uint32_t i, size_t c) {
    const seg::Slot& s = slots_[i];
    return s.chain_hash == chain[c] && s.kind == seg::kChunkSlot && s.state == seg::kLive &&
           s.parent_hash == (c == 0 ? seed : chain[c - 1]) && s.chain_blocks == c + 1 &&
           s.prefix_len == bt && seg::SlotFits(s, layout_.block_count, layout_.block_size);
  };
  // Blocks of chunks go through three passes, so that each pass's loads are independent
  // of one another and many cache misses are in flight at once, instead of one lookup's
  // misses after the other's:
  //   1. try each chunk in the slot as far from its parent's as the parent's was from
  //      its own parent's (1 to begin with): a chain stored in one go sits in slots one
  //      apart, in the order the free list gives them (ascending in a fresh pool,
  //      descending after a clear), so the match reads slots in order and no index at
  //      all; where that slot is not it, read the chunk's bucket head and start loading
  //      the slot it names (and guess the next chunk from there);
  //   2. look up the chunks pass 1 did not find (FindChunkLocked: the checked walk) and
  //      check they continue the chain, up to the first that does not;
  //   3. take their leases in one run, pin them, count the accesses.
  // A slot tried in pass 1 is checked exactly as a lookup's answer is, and a pool holds
  // one live chunk per hash, so pass 1 finds what a lookup would. (Prefetching more, the
  // slots' other lines or the tokens, measured slower: the loads they would hide are
  // sequential for a chain stored in one go.)
  constexpr size_t kBlock = 32;
  uint32_t found[kBlock];
  LeaseTable::Ticket tickets[kBlock];
  uint32_t last = kNil;  // the slot of the chunk before the block, when known
  uint32_t stride = 1;   // from it to the next chunk's, modulo 2^32
  for (size_t b = begin; b < end;) {
    const size_t e = std::min(end, b + kBlock);
    for (size_t c = b; c < e; ++c) {
      const uint32_t guess = last + stride;  // from kNil: a guess like any other
      if (guess < cap && continues(guess, c)) {
        found[c - b] = last = guess;
        continue;
      }
      found[c - b] = kNil;
      const uint32_t i = *index_->BucketHead(SlotIndex::kBlockChain, chain[c]);
      if (i < cap) {
        Prefetch(reinterpret_cast<const char*>(&slots_[i]) + offsetof(seg::Slot, chain_hash));
      }
      last = i;
    }
    size_t e_found = b;
    for (; e_found < e; ++e_found) {
      if (found[e_found - b] != kNil) continue;
      const uint32_t i = FindChunkLocked(chain[e_found]);
      if (i == kNil || !continues(i, e_found)) break;
      found[e_found - b] = i;
    }
    last = e_found > b ? found[e_found - b - 1] : kNil;
    if (e_found > b + 1) stride = last - found[e_found - b - 2];
    // Each chunk is pinned by a lease of its own (recovery, health and the owner checks
    // on release know leases), taken for the whole block at once.
    const size_t count = e_found - b;
    const size_t leased = leases_->AcquireRun(std::span<const uint32_t>(found, count), me,
                                              header_->generation + 1, tickets);
    header_->generation += leased;
    // Pins (unless its lease did), counts and records chunks [b + from, b + to).
    auto record = [&](size_t from, size_t to, bool pin) {
      for (size_t c = b + from; c < b + to; ++c) {
        seg::Slot& s = slots_[found[c - b]];
        if (pin) s.pins++;
        // Plain loads and stores, not Touch's read-modify-writes: only lock-free gets
        // touch without the lock, and they find entries by id, never chunks.
        seg::StoreRelaxed(s.access_count, seg::LoadRelaxed(s.access_count) + 1);
        seg::StoreRelaxed(s.last_accessed, now_s);
        const uint64_t tick = now_ns + (n - c);
        if (seg::LoadRelaxed(s.access_tick) < tick) seg::StoreRelaxed(s.access_tick, tick);
        match.chunks.push_back({chain[c], s.generation, Extent(s), s.size_bytes});
        match.pins_.push_back({tickets[c - b].index, tickets[c - b].generation});
      }
    };
    record(0, leased, true);
    if (leased < count) {
      // The table ran out (or its free list is damaged): AcquireLeaseLocked reaps dead
      // processes' leases and retries, or says why not. Recovery may change the index,
      // so the chunks after this one are looked up again, in a block of their own.
      // When every lease is held by a live process, the match ends at the chunks it
      // pinned: a shorter prefix, still the prompt's, rather than no answer.
      Result<LeaseTable::Ticket> lease = AcquireLeaseLocked(found[leased]);
      if (!lease.ok()) {
        if (lease.status().code() == Code::kBusy) return b + leased;
        return lease.status();
      }
      tickets[leased] = *lease;
      record(leased, leased + 1, false);
      last = found[leased];
      if (leased > 0) stride = last - found[leased - 1];
      b += leased + 1;
      continue;
    }
    if (e_found < e) return e_found;
    b = e;
  }
  return end;
}

Status PoolHandle::ReleaseMatch(const ChunkMatch& match) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  // Read once for the whole run; a process without a row holds no lease here.
  const LeaseTable::Owner me = MyRowLocked();
  if (me.row == kNil) return Status::Ok();
  Status first;
  for (const ChunkMatch::Pin& p : match.pins_) {
    Status s = ReleaseLeaseAsLocked({p.lease, p.generation}, me);
    if (!s.ok() && first.ok()) first = std::move(s);
  }
  return first;
}

std::vector<EntryView> PoolHandle::ViewsOfMatch(const ChunkMatch& match) {
  const size_t count = std::min(match.pins_.size(), match.chunks.size());
  std::vector<EntryView> views(count);
  auto self = shared_from_this();
  for (size_t k = 0; k < count; ++k) {
    const MatchedChunk& c = match.chunks[k];
    EntryView& v = views[k];
    v.pool_ = self;
    v.epoch_ = match.epoch_;
    v.lease_ = match.pins_[k].lease;
    v.lease_generation_ = match.pins_[k].generation;
    // What a chunk's view tells (no strings: a match may hold thousands of chunks).
    v.info_.sequence_id = c.hash;
    v.info_.size_bytes = c.size;
    v.info_.token_count = match.chunk_tokens;
    v.info_.prefix_length = match.chunk_tokens;
    v.info_.generation = c.generation;
    v.info_.offset = static_cast<uint64_t>(c.bytes - data_);
    v.extent_ = c.bytes;
  }
  return views;
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
