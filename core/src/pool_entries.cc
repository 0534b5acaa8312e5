// PoolHandle's entry operations: puts (reserve, fill, commit), gets (lock-free with a
// locked fallback, and pinned views), removal, eviction requests and listings.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "clock.h"
#include "kvcache/prefix.h"
#include "kvcache/size.h"
#include "optimistic_copy.h"
#include "pool_handle.h"
#include "process_table.h"
#include "test_hooks.h"

namespace kvcache {
namespace {

using seg::kNil;

constexpr size_t kMaxMetadataBytes = 64 * 1024;

}  // namespace

Status PoolHandle::SeqNotFound(uint64_t seq) const {
  return Status::NotFound("sequence " + std::to_string(seq) + " not found in pool '" + name_ + "'");
}

// ---------------------------------------------------------------- puts

Result<PutReservation> PoolHandle::Reserve(uint64_t seq, size_t size, uint64_t token_count,
                                           const PutOptions& options,
                                           const std::optional<EntryStats>& stats,
                                           bool notify) {
  if (options.metadata.size() > kMaxMetadataBytes) {
    return Status::InvalidArgument("metadata of " + std::to_string(options.metadata.size()) +
                                   " bytes exceeds the limit of 65536");
  }
  if (options.prefix_tokens.size() > (1u << 24)) {
    return Status::InvalidArgument("prefix of " + std::to_string(options.prefix_tokens.size()) +
                                   " tokens exceeds the limit of 16777216");
  }
  uint32_t prefix_len = static_cast<uint32_t>(options.prefix_tokens.size());
  // The payload is checked alone first: with it at most the pool's size (far below
  // 2^64), the sum with the bounded tail and the block rounding cannot wrap.
  uint64_t bs = layout_.block_size;
  uint64_t pool_bytes = layout_.block_count * bs;  // no wrap: checked at attach
  uint64_t tail_bytes = 4 * uint64_t{prefix_len} + options.metadata.size();
  if (uint64_t{size} > pool_bytes || tail_bytes > pool_bytes - uint64_t{size}) {
    std::string total = uint64_t{size} > UINT64_MAX - tail_bytes
                            ? std::to_string(size) + " + " + std::to_string(tail_bytes) + " bytes"
                            : FormatSizeLong(uint64_t{size} + tail_bytes);
    return Status::NoSpace("entry of " + total + " is larger than pool '" + name_ + "' (" +
                           FormatSizeLong(pool_bytes) + ")");
  }
  uint64_t total = uint64_t{size} + tail_bytes;
  uint64_t blocks = total / bs + (total % bs != 0);
  uint64_t prefix_hash = prefix_len > 0 ? PrefixHashValue(options.prefix_tokens) : 0;
  uint32_t block_tokens = prefix_block_tokens_;
  uint32_t chain_blocks = prefix_len / block_tokens;
  uint64_t chain_hash = 0;
  for (uint32_t b = 0; b < chain_blocks; ++b) {
    chain_hash = ChainHash(chain_hash, std::span<const uint32_t>(options.prefix_tokens)
                                           .subspan(uint64_t{b} * block_tokens, block_tokens));
  }
  PutReservation r;
  const double now = StampSeconds();  // read before the lock: it is held for metadata only
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    LeaseTable::Owner me = MyProcessLocked();
    if (me.row == kNil) return Status::Busy("process table of pool '" + name_ + "' is full");
    uint32_t i = index_->PopFree();
    if (i == kNil && RecoverDeadLocked() > 0) i = index_->PopFree();
    if (i == kNil) return Status::Busy("pool '" + name_ + "' has too many puts in flight");
    seg::Slot& s = slots_[i];
    ClaimForWriteLocked(i, me);
    uint64_t first = 0;
    if (blocks > 0) {
      first = AllocateExtentLocked(blocks);
      if (first == BitmapAllocator::kNone) {
        FreeSlotLocked(i);
        KVC_RETURN_IF_ERROR(HeapStatusLocked());  // eviction stopped at damage
        return Status::NoSpace("pool '" + name_ + "' is full: " + FormatSizeLong(blocks * bs) +
                               " needed, " + FormatSizeLong(header_->free) +
                               " free and nothing more can be evicted");
      }
    }
    seg::StoreRelaxed(s.sequence_id, seq);
    seg::StoreRelaxed(s.first_block, first);
    seg::StoreRelaxed(s.extent_blocks, blocks);
    seg::StoreRelaxed(s.size_bytes, uint64_t{size});
    s.token_count = token_count;
    s.prefix_hash = prefix_hash;
    s.prefix_len = prefix_len;
    s.chain_hash = chain_hash;
    s.chain_blocks = chain_blocks;
    s.kind = seg::kEntrySlot;
    s.children = 0;
    s.parent_hash = 0;
    s.metadata_len = static_cast<uint32_t>(options.metadata.size());
    s.priority = options.priority;
    s.created = stats ? stats->created : now;
    seg::StoreRelaxed(s.last_accessed, stats ? stats->last_accessed : now);
    seg::StoreRelaxed(s.access_count, stats ? stats->access_count : uint64_t{0});
    s.pins = 0;
    s.heap_pos = s.prefix_next = s.prefix_prev = s.chain_next = s.chain_prev = kNil;
    uint64_t gen = NextGenerationLocked();
    AtomicGeneration(s).store(gen, std::memory_order_release);
    r.pool_ = shared_from_this();
    r.slot_ = i;
    r.generation_ = gen;
    r.epoch_ = ForkEpoch();
    r.extent_ = Extent(s);
    r.size_ = size;
    r.notify_ = notify;
  }
  // The slot is ours until Commit: fill the tail (tokens, metadata) without the lock.
  std::byte* tail = r.extent_ + size;
  for (uint32_t t = 0; t < prefix_len; ++t) {
    uint32_t v = options.prefix_tokens[t];  // little-endian host (segment_format.h)
    std::memcpy(tail + 4 * uint64_t{t}, &v, 4);
  }
  if (!options.metadata.empty()) {
    std::memcpy(tail + 4 * uint64_t{prefix_len}, options.metadata.data(), options.metadata.size());
  }
  return r;
}

bool PoolHandle::IsMyReservationLocked(uint32_t i, uint64_t generation) const {
  if (i >= layout_.slot_capacity) return false;
  const seg::Slot& s = slots_[i];
  LeaseTable::Owner me = MyRowLocked();
  return s.state == seg::kWriting && s.generation == generation && me.row != kNil &&
         s.owner == me.row && s.owner_generation == me.generation;
}

Status PoolHandle::Commit(uint32_t i, uint64_t generation, bool notify) {
  uint64_t seq = 0;
  bool published = false;
  Status s = CommitLocked(i, generation, &seq, &published);
  if (published && notify) {
    if (std::shared_ptr<PoolListener> listener = listener_.lock()) {
      listener->Committed(name_, seq, generation);
    }
  }
  return s;
}

Status PoolHandle::CommitLocked(uint32_t i, uint64_t generation, uint64_t* seq,
                                bool* published) {
  // The clocks are read before the lock, which is held for the index and heap only.
  const double now = StampSeconds();
  uint64_t tick = MonotonicNs();
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  if (!IsMyReservationLocked(i, generation)) {
    return Status::Busy("reservation in pool '" + name_ + "' was lost");
  }
  seg::Slot& s = slots_[i];
  // The intent first: from here on, recovery publishes this slot (and drops the entry
  // it replaces) if this process dies before LinkLocked, so readers find the old entry
  // or the new one, never neither.
  seg::Atomic(s.state).store(seg::kCommitting, std::memory_order_release);
  uint32_t old = FindLocked(s.sequence_id);
  bool in_heap = false;
  if (old != kNil) {
    // Under LRU the new entry takes over the old one's place in the eviction order, in
    // O(1): its access tick is at least the old one's placed key, so the heap holds it
    // stale and refreshes it if it comes to the top (eviction_heap.h). Remove + Push
    // would sift through the heap, under the lock, at every replacing put. Not when an
    // eviction may follow (more entries than allowed): the new slot is not LIVE yet.
    const seg::Slot& o = slots_[old];
    if (policy_ == Policy::kLru && s.kind == seg::kEntrySlot && o.heap_pos != kNil &&
        header_->entry_count <= max_sequences_) {
      tick = std::max(tick, o.key_tick);
      in_heap = heap_->Replace(old, i);
    }
    UnpublishLocked(old, now);
  }
  CrashPoint("commit-unpublished");
  if (header_->entry_count >= max_sequences_ && !EvictOneLocked()) {
    if (in_heap) heap_->Remove(i);  // not reached: the old entry made room (see above)
    FreeSlotLocked(i);
    KVC_RETURN_IF_ERROR(HeapStatusLocked());
    return Status::NoSpace("pool '" + name_ + "' holds its maximum of " +
                           std::to_string(max_sequences_) + " entries and none can be evicted");
  }
  s.create_tick = NextTickLocked();
  seg::Atomic(s.access_tick).store(tick, std::memory_order_relaxed);
  s.owner = kNil;
  LinkLocked(i, in_heap);
  header_->puts++;
  header_->modified = now;
  *seq = s.sequence_id;
  *published = true;
  return HeapStatusLocked();  // published, but the eviction order needs repair
}

Result<std::pair<int, uint64_t>> PoolHandle::OpenFileRange(const std::byte* at) const {
  KVC_ASSIGN_OR_RETURN(int fd, segment_.WriteFd(path_));
  return std::make_pair(fd, static_cast<uint64_t>(at - segment_.base()));
}

Status PoolHandle::Abort(uint32_t i, uint64_t generation) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  // Only the process that reserved the slot frees it: a copy of the reservation in a
  // forked child, or one whose slot was reclaimed and reused, does nothing.
  if (IsMyReservationLocked(i, generation)) FreeSlotLocked(i);
  return Status::Ok();
}

// ---------------------------------------------------------------- gets

// The reader half of the seqlock described at seg::Slot: every load is atomic, and what
// was read counts only if the generation is unchanged after the acquire fence.
bool PoolHandle::FindUnlocked(uint64_t seq, UnlockedRead* read) const {
  const uint32_t cap = layout_.slot_capacity;
  uint32_t steps = 0;
  for (uint32_t i = index_->IdHeadAcquire(seq); i != kNil; i = index_->IdNextAcquire(i)) {
    // A chain can change under us (a slot freed and relinked): bound the walk.
    if (i >= cap || ++steps > cap) return false;
    seg::Slot& s = slots_[i];
    if (seg::Atomic(s.sequence_id).load(std::memory_order_relaxed) != seq) continue;
    uint64_t gen = AtomicGeneration(s).load(std::memory_order_acquire);
    if (gen == 0 || seg::Atomic(s.state).load(std::memory_order_acquire) != seg::kLive) {
      return false;
    }
    // The slot may have been reused for another id between the two loads above: the
    // id read after the generation is the one that generation belongs to.
    if (seg::Atomic(s.sequence_id).load(std::memory_order_relaxed) != seq) return false;
    uint64_t first = seg::Atomic(s.first_block).load(std::memory_order_relaxed);
    uint64_t blocks = seg::Atomic(s.extent_blocks).load(std::memory_order_relaxed);
    uint64_t size = seg::Atomic(s.size_bytes).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (AtomicGeneration(s).load(std::memory_order_relaxed) != gen) return false;
    // Checked against the geometry cached at mapping: no wrap, nothing outside the data.
    if (!seg::ExtentInBounds(first, blocks, layout_.block_count) ||
        size > blocks * layout_.block_size) {
      return false;
    }
    *read = {i, gen, data_ + first * layout_.block_size, size};
    return true;
  }
  return false;
}

Status PoolHandle::GetInto(uint64_t seq, std::vector<std::byte>& out) {
  // Fast path, without the lock, once this process has a row to count its hits in:
  // find the slot optimistically, copy, and keep the copy only if the slot still has
  // the generation it had before the copy. Anything unusual takes the locked path.
  uint32_t me = processes_->MyRowUnlocked();
  if (me != kNil) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      UnlockedRead r;
      if (!FindUnlocked(seq, &r)) break;
      out.resize(r.size);
      CopyOptimistic(out.data(), r.bytes, r.size);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (AtomicGeneration(slots_[r.slot]).load(std::memory_order_relaxed) == r.generation) {
        Touch(r.slot);
        seg::Atomic(processes_->at(me).hits).fetch_add(1, std::memory_order_relaxed);
        return Status::Ok();
      }
    }
  }
  for (int attempt = 0;; ++attempt) {
    uint32_t i;
    uint64_t gen;
    const std::byte* src;
    size_t size;
    {
      Locked lk(*this);
      KVC_RETURN_IF_ERROR(lk.status());
      i = FindLocked(seq);
      if (i == kNil) {
        if (attempt == 0) header_->misses++;
        return SeqNotFound(seq);
      }
      KVC_RETURN_IF_ERROR(CheckSlotLocked(i));
      if (attempt == 0) {
        header_->hits++;
        Touch(i);
        MyProcessLocked();  // registers this process, which enables the fast path
      }
      gen = slots_[i].generation;
      src = Extent(slots_[i]);
      size = slots_[i].size_bytes;
    }
    out.resize(size);
    CopyOptimistic(out.data(), src, size);
    // The copy is good only if the slot still holds the same generation: freeing a
    // slot zeroes its generation before its blocks can be reused.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (AtomicGeneration(slots_[i]).load(std::memory_order_relaxed) == gen) return Status::Ok();
  }
}

Result<EntryView> PoolHandle::View(uint64_t seq, bool count_access) {
  EntryView v;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    uint32_t i = FindLocked(seq);
    if (i == kNil) {
      if (count_access) header_->misses++;
      return SeqNotFound(seq);
    }
    if (count_access) {
      header_->hits++;
      Touch(i);
    }
    // Before the pin: nothing may throw once it is taken.
    KVC_ASSIGN_OR_RETURN(v.info_, InfoLocked(i));
    KVC_ASSIGN_OR_RETURN(LeaseTable::Ticket lease, AcquireLeaseLocked(i));
    v.lease_ = lease.index;
    v.lease_generation_ = lease.generation;
    v.extent_ = Extent(slots_[i]);
  }
  v.epoch_ = ForkEpoch();
  v.pool_ = shared_from_this();
  return v;
}

Result<std::vector<EntryView>> PoolHandle::PinEach(std::span<const uint64_t> seqs) {
  std::vector<EntryView> views(seqs.size());  // declared before the lock: released after it
  const std::shared_ptr<PoolHandle> self = shared_from_this();
  const uint64_t epoch = ForkEpoch();
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  for (size_t k = 0; k < seqs.size(); ++k) {
    const uint32_t i = FindLocked(seqs[k]);
    if (i == kNil) continue;
    // Before the pin: nothing may throw once it is taken.
    KVC_ASSIGN_OR_RETURN(EntryInfo info, InfoLocked(i));
    Result<LeaseTable::Ticket> lease = AcquireLeaseLocked(i);
    if (!lease.ok()) break;  // no lease left: the rest stay unpinned
    EntryView& v = views[k];
    v.info_ = std::move(info);
    v.lease_ = lease->index;
    v.lease_generation_ = lease->generation;
    v.extent_ = Extent(slots_[i]);
    v.epoch_ = epoch;
    v.pool_ = self;
  }
  return views;
}

void PoolHandle::ReadEach(std::span<const EntryRef> refs, const PublishedReader& read,
                          std::span<ReadOutcome> outcomes) const {
  for (size_t k = 0; k < refs.size(); ++k) {
    outcomes[k] = ReadOutcome::kUnsure;
    for (int attempt = 0; attempt < 3; ++attempt) {
      UnlockedRead r;
      if (!FindUnlocked(refs[k].seq, &r)) break;
      if (r.generation != refs[k].generation) {
        outcomes[k] = ReadOutcome::kReplaced;
        break;
      }
      // The slot's other fields, read as the payload is: kept only if the generation
      // is unchanged after the copy.
      seg::Slot s;
      CopyOptimistic(reinterpret_cast<std::byte*>(&s),
                     reinterpret_cast<const std::byte*>(&slots_[r.slot]), sizeof s);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (AtomicGeneration(slots_[r.slot]).load(std::memory_order_relaxed) != r.generation) {
        continue;
      }
      const uint64_t tokens_bytes = uint64_t{4} * s.prefix_len;
      if (s.kind != seg::kEntrySlot || s.size_bytes != r.size ||
          r.size + tokens_bytes + s.metadata_len > s.extent_blocks * layout_.block_size) {
        break;  // not an entry as FindUnlocked saw it: the locked path decides
      }
      {
        OptimisticReads reads;
        const std::byte* tail = r.bytes + r.size;
        read(k, PublishedEntry{s.token_count, s.priority, {tail, tokens_bytes},
                               {reinterpret_cast<const char*>(tail + tokens_bytes),
                                s.metadata_len},
                               {r.bytes, r.size}});
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (AtomicGeneration(slots_[r.slot]).load(std::memory_order_relaxed) == r.generation) {
        outcomes[k] = ReadOutcome::kRead;
        break;
      }
    }
  }
}

Status PoolHandle::ReleaseViews(std::span<EntryView> views) {
  Status first;
  {
    Locked lk(*this);
    first = lk.status();
    // A process without a row holds no lease here; views inherited across fork() are
    // only forgotten.
    const LeaseTable::Owner me = first.ok() ? MyRowLocked() : LeaseTable::Owner{};
    const uint64_t epoch = ForkEpoch();
    for (EntryView& v : views) {
      if (!first.ok() || me.row == kNil) break;
      if (v.pool_.get() != this || v.epoch_ != epoch) continue;
      Status s = ReleaseLeaseAsLocked({v.lease_, v.lease_generation_}, me);
      if (!s.ok() && first.ok()) first = std::move(s);
    }
  }
  // Outside the lock: the last reference to a pool unmaps it.
  for (EntryView& v : views) {
    if (v.pool_.get() == this) v.pool_.reset();
  }
  return first;
}

std::vector<EntryView> PoolHandle::MakeViews(std::vector<PinnedEntry> pinned) {
  std::vector<EntryView> views(pinned.size());
  auto self = shared_from_this();
  uint64_t epoch = ForkEpoch();
  for (size_t k = 0; k < pinned.size(); ++k) {
    views[k].pool_ = self;
    views[k].epoch_ = epoch;
    views[k].lease_ = pinned[k].lease.index;
    views[k].lease_generation_ = pinned[k].lease.generation;
    views[k].info_ = std::move(pinned[k].info);
    views[k].extent_ = pinned[k].extent;
  }
  std::sort(views.begin(), views.end(), [](const EntryView& a, const EntryView& b) {
    return a.info().sequence_id < b.info().sequence_id;
  });
  return views;
}

Status PoolHandle::PinLocked(uint32_t i, std::vector<PinnedEntry>& pinned) {
  // Everything that can allocate (and so throw) happens before the pin is taken.
  if (pinned.size() == pinned.capacity()) pinned.reserve(2 * pinned.size() + 16);
  Result<EntryInfo> info = InfoLocked(i);
  Result<LeaseTable::Ticket> lease =
      info.ok() ? AcquireLeaseLocked(i) : Result<LeaseTable::Ticket>(info.status());
  if (!lease.ok()) {
    for (const PinnedEntry& p : pinned) ReleaseLeaseLocked(p.lease).IgnoreError();
    pinned.clear();
    return lease.status();
  }
  pinned.push_back({*lease, std::move(*info), Extent(slots_[i])});
  return Status::Ok();
}

Result<EntryInfo> PoolHandle::Stat(uint64_t seq) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  uint32_t i = FindLocked(seq);
  if (i == kNil) {
    return SeqNotFound(seq);
  }
  return InfoLocked(i);
}

// ---------------------------------------------------------------- removal

Status PoolHandle::Remove(uint64_t seq) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  uint32_t i = FindLocked(seq);
  if (i == kNil) {
    return SeqNotFound(seq);
  }
  UnpublishLocked(i);
  return HeapStatusLocked();  // removed, but the eviction order needs repair
}

Result<uint64_t> PoolHandle::Clear() {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  uint64_t n = 0;
  for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
    if (slots_[i].state == seg::kLive) {
      UnpublishLocked(i);
      ++n;
    }
  }
  KVC_RETURN_IF_ERROR(HeapStatusLocked());
  return n;
}

Result<uint64_t> PoolHandle::Evict(double percent) {
  if (!(percent > 0 && percent <= 100)) {
    return Status::InvalidArgument("eviction percent must be in (0, 100], got " +
                                   std::to_string(percent));
  }
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  uint64_t n = header_->entry_count;
  if (n == 0) return uint64_t{0};
  uint64_t want = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::floor(static_cast<double>(n) * percent / 100.0)));
  uint64_t evicted = 0;
  bool recovered = false;
  while (evicted < want) {
    if (EvictOneLocked()) {
      ++evicted;
    } else if (!recovered) {
      recovered = true;  // pins of dead processes may be all that is in the way
      if (RecoverDeadLocked() == 0) break;
    } else {
      break;
    }
  }
  KVC_RETURN_IF_ERROR(HeapStatusLocked());
  return evicted;
}

// ---------------------------------------------------------------- listing

Result<std::vector<EntryInfo>> PoolHandle::Entries() {
  std::vector<EntryInfo> out;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    out.reserve(header_->entry_count);  // at most the slot capacity (CheckHeaderLocked)
    for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
      if (slots_[i].state != seg::kLive || slots_[i].kind != seg::kEntrySlot) continue;
      KVC_ASSIGN_OR_RETURN(EntryInfo info, InfoLocked(i));
      out.push_back(std::move(info));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const EntryInfo& a, const EntryInfo& b) { return a.sequence_id < b.sequence_id; });
  return out;
}

Result<std::vector<EntryView>> PoolHandle::PinAll() {
  std::vector<PinnedEntry> pinned;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    pinned.reserve(header_->entry_count);  // at most the slot capacity (CheckHeaderLocked)
    for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
      if (slots_[i].state != seg::kLive || slots_[i].kind != seg::kEntrySlot) continue;
      KVC_RETURN_IF_ERROR(PinLocked(i, pinned));
    }
  }
  return MakeViews(std::move(pinned));
}

}  // namespace kvcache
