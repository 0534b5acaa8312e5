#include "pool_handle.h"

#include <pthread.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <random>
#include <unordered_map>

#include "clock.h"
#include "kvcache/prefix.h"
#include "kvcache/size.h"
#include "pool_lock.h"
#include "segment_file.h"
#include "test_hooks.h"

namespace kvcache {
namespace {

using seg::kNil;

template <typename T>
T* At(std::byte* base, uint64_t offset) {
  return reinterpret_cast<T*>(base + offset);
}

}  // namespace

// ---------------------------------------------------------------- lifecycle

PoolHandle::PoolHandle(MappedSegment segment, std::string path)
    : segment_(std::move(segment)), path_(std::move(path)) {}

PoolHandle::PoolId PoolHandle::NewPoolId() {
  PoolId id{};
  size_t got = 0;
  while (got < id.size()) {
    ssize_t n = getrandom(id.data() + got, id.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::abort();  // no kernel randomness: nothing safe to fall back on
    }
    got += static_cast<size_t>(n);
  }
  return id;
}

PoolHandle::PoolId PoolHandle::pool_id() const {
  PoolId id{};
  std::memcpy(id.data(), header_->pool_id, id.size());
  return id;
}

Result<std::shared_ptr<PoolHandle>> PoolHandle::Create(const std::string& path,
                                                       const PoolConfig& config,
                                                       const PoolId& pool_id) {
  seg::Layout l = seg::ComputeLayout(config.size_bytes, config.block_size, config.max_sequences);
  if (l.block_count == 0) {
    return Status::InvalidArgument("pool size " + std::to_string(config.size_bytes) +
                                   " is smaller than one block");
  }
  auto init = [&](std::byte* base) -> Status {
    auto* h = new (base) seg::Header{};
    h->size = l.block_count * l.block_size;
    h->used = 0;
    h->free = h->size;
    h->block_count = l.block_count;
    h->created = h->modified = StampSeconds();
    h->policy = static_cast<uint8_t>(config.policy);
    h->header_size = seg::kHeaderSize;
    h->block_size = static_cast<uint32_t>(l.block_size);
    h->segment_size = l.segment_size;
    h->process_offset = l.process_offset;
    h->process_capacity = seg::kProcessCapacity;
    h->lease_capacity = l.lease_capacity;
    h->lease_offset = l.lease_offset;
    h->bitmap_offset = l.bitmap_offset;
    h->bitmap_bytes = l.bitmap_bytes;
    h->slot_offset = l.slot_offset;
    h->slot_capacity = l.slot_capacity;
    h->max_sequences = config.max_sequences;
    h->id_bucket_offset = l.id_bucket_offset;
    h->id_bucket_count = l.id_bucket_count;
    h->prefix_bucket_count = l.prefix_bucket_count;
    h->prefix_bucket_offset = l.prefix_bucket_offset;
    h->chain_bucket_offset = l.chain_bucket_offset;
    h->chain_bucket_count = l.id_bucket_count;
    h->heap_offset = l.heap_offset;
    h->data_offset = l.data_offset;
    h->tier = static_cast<uint32_t>(config.tier);
    h->prefix_block_tokens = config.prefix_block_tokens;
    h->instance_id = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
    std::snprintf(h->name, sizeof(h->name), "%s", config.name.c_str());
    std::memcpy(h->pool_id, pool_id.data(), pool_id.size());
    KVC_RETURN_IF_ERROR(FailPoint("pool-lock-init")
                            ? Status::IOError("initialize pool lock: injected failure")
                            : InitPoolMutex(&h->lock));

    LeaseTable(At<seg::Lease>(base, l.lease_offset), l.lease_capacity, &h->free_lease_head,
               &h->live_pins, l.slot_capacity, &config.name)
        .Reset();
    BitmapAllocator(At<uint64_t>(base, l.bitmap_offset), l.block_count).Reset();
    auto* slots = At<seg::Slot>(base, l.slot_offset);
    for (uint32_t i = 0; i < l.slot_capacity; ++i) {
      slots[i] = seg::Slot{};
      slots[i].heap_pos = kNil;
      slots[i].owner = kNil;
    }
    SlotIndex(slots, l.slot_capacity, {At<uint32_t>(base, l.id_bucket_offset), l.id_bucket_count},
              {At<uint32_t>(base, l.prefix_bucket_offset), l.prefix_bucket_count},
              {At<uint32_t>(base, l.chain_bucket_offset), l.id_bucket_count}, &h->free_slot_head,
              &config.name)
        .Reset();
    h->version = seg::kFormatVersion;
    std::atomic_ref<uint32_t>(h->magic).store(seg::kMagic, std::memory_order_release);
    return Status::Ok();
  };
  KVC_ASSIGN_OR_RETURN(MappedSegment segment,
                       MappedSegment::Create(path, l.segment_size, config.mode, init));
  std::shared_ptr<PoolHandle> pool(new PoolHandle(std::move(segment), path));
  KVC_RETURN_IF_ERROR(pool->ValidateAndBind());
  return pool;
}

Result<std::shared_ptr<PoolHandle>> PoolHandle::Open(const std::string& path,
                                                     const SegmentOwner& owner) {
  KVC_ASSIGN_OR_RETURN(MappedSegment segment, MappedSegment::Open(path, owner));
  std::shared_ptr<PoolHandle> pool(new PoolHandle(std::move(segment), path));
  KVC_RETURN_IF_ERROR(pool->ValidateAndBind());
  return pool;
}

Status PoolHandle::ValidateAndBind() {
  auto bad = [&](const std::string& why) {
    return Status::Corruption("segment " + path_ + " is not a usable pool: " + why);
  };
  if (segment_.size() < seg::kHeaderSize) return bad("smaller than a header");
  auto* h = reinterpret_cast<seg::Header*>(segment_.base());
  uint32_t magic = std::atomic_ref<uint32_t>(h->magic).load(std::memory_order_acquire);
  if (magic != seg::kMagic) return bad("bad magic");
  if (h->version != seg::kFormatVersion) {
    return bad("format version " + std::to_string(h->version) + ", expected " +
               std::to_string(seg::kFormatVersion));
  }
  if (h->header_size != seg::kHeaderSize) return bad("bad header size");
  if (h->policy > static_cast<uint8_t>(Policy::kPriority)) return bad("bad policy");
  uint32_t bs = h->block_size;
  if (bs < 512 || (bs & (bs - 1)) != 0) return bad("bad block size");
  if (h->max_sequences == 0 || h->max_sequences > (1u << 24)) return bad("bad max_sequences");
  // Checked before anything multiplies it: a block_count whose product with the block
  // size wraps would otherwise describe a small segment and be walked as a huge one.
  if (h->block_count == 0 || h->block_count > segment_.size() / bs) {
    return bad("block count " + std::to_string(h->block_count) + " does not fit in " +
               std::to_string(segment_.size()) + " bytes");
  }
  seg::Layout l = seg::ComputeLayout(h->block_count * bs, bs, h->max_sequences);
  if (l.block_count != h->block_count || l.bitmap_bytes != h->bitmap_bytes ||
      l.segment_size != h->segment_size || l.segment_size != segment_.size() ||
      l.data_offset != h->data_offset || l.slot_capacity != h->slot_capacity ||
      l.lease_capacity != h->lease_capacity || l.bitmap_offset != h->bitmap_offset ||
      l.slot_offset != h->slot_offset || l.heap_offset != h->heap_offset ||
      l.id_bucket_offset != h->id_bucket_offset || l.lease_offset != h->lease_offset ||
      l.process_offset != h->process_offset || l.id_bucket_count != h->id_bucket_count ||
      l.prefix_bucket_offset != h->prefix_bucket_offset ||
      l.prefix_bucket_count != h->prefix_bucket_count ||
      l.chain_bucket_offset != h->chain_bucket_offset ||
      l.id_bucket_count != h->chain_bucket_count || h->prefix_block_tokens == 0 ||
      h->process_capacity != seg::kProcessCapacity || h->size != h->block_count * bs) {
    return bad("layout does not match its size (" + std::to_string(segment_.size()) + " bytes)");
  }
  if (std::memchr(h->name, '\0', sizeof(h->name)) == nullptr) return bad("unterminated name");

  // From here on only the validated layout is used to size or place anything: the
  // header's copies of it are checked against it (CheckHeaderLocked), never trusted.
  std::byte* base = segment_.base();
  header_ = h;
  layout_ = l;
  max_sequences_ = h->max_sequences;
  prefix_block_tokens_ = h->prefix_block_tokens;
  name_ = h->name;
  policy_ = static_cast<Policy>(h->policy);
  slots_ = At<seg::Slot>(base, l.slot_offset);
  data_ = base + l.data_offset;
  processes_.emplace(At<seg::ProcessSlot>(base, l.process_offset), seg::kProcessCapacity,
                     &segment_.file(), l.process_offset);
  evict_scratch_.reserve(l.slot_capacity);
  leases_.emplace(At<seg::Lease>(base, l.lease_offset), l.lease_capacity, &h->free_lease_head,
                  &h->live_pins, l.slot_capacity, &name_);
  // The block-prefix chains have as many buckets as the id chains (formats.md).
  index_.emplace(
      slots_, l.slot_capacity,
      SlotIndex::Buckets{At<uint32_t>(base, l.id_bucket_offset), l.id_bucket_count},
      SlotIndex::Buckets{At<uint32_t>(base, l.prefix_bucket_offset), l.prefix_bucket_count},
      SlotIndex::Buckets{At<uint32_t>(base, l.chain_bucket_offset), l.id_bucket_count},
      &h->free_slot_head, &name_);
  bitmap_.emplace(At<uint64_t>(base, l.bitmap_offset), l.block_count);
  heap_.emplace(policy_, At<uint32_t>(base, l.heap_offset), &h->heap_size, slots_,
                l.slot_capacity);
  return Status::Ok();
}

bool PoolHandle::destroyed() const {
  return std::atomic_ref<uint32_t>(header_->destroyed).load(std::memory_order_acquire) != 0;
}

void PoolHandle::MarkDestroyed() {
  std::atomic_ref<uint32_t>(header_->destroyed).store(1, std::memory_order_release);
}

// Nothing between taking the lock and the end of this constructor allocates or throws:
// a throw here would leave the lock held by a live thread and wedge every process.
// After it, the destructor releases the lock however the holder's scope ends.
PoolHandle::Locked::Locked(PoolHandle& pool, bool inspect) : pool_(pool) {
  Result<LockOutcome> r = LockPoolMutex(&pool.header_->lock);
  if (!r.ok()) {
    status_ = Status(r.status().code(), "pool '" + pool.name_ + "': " + r.status().message());
    return;
  }
  if (*r == LockOutcome::kOwnerDied) {
    // The holder died mid-update: whatever it left half done is rebuilt from the
    // slot table, the one structure whose every change is a single state store.
    pool.processes_->ReapDead(&pool.header_->hits);
    pool.header_->recoveries++;
    pool.RebuildLocked();
    MarkConsistent(&pool.header_->lock);
  }
  pool.header_->lock_owner_pid = static_cast<uint32_t>(CurrentProcess().pid);
  pool.heap_->ClearDamage();
  if (inspect) return;
  if (Status s = pool.CheckHeaderLocked(); !s.ok()) {
    pool.header_->lock_owner_pid = 0;
    UnlockPoolMutex(&pool.header_->lock);
    status_ = std::move(s);
  }
}

PoolHandle::Locked::~Locked() {
  if (!status_.ok()) return;
  pool_.header_->lock_owner_pid = 0;
  UnlockPoolMutex(&pool_.header_->lock);
}

// ---------------------------------------------------------------- damage checks

Status PoolHandle::Corrupt(const std::string& what) const {
  return Status::Corruption("pool '" + name_ + "' is corrupt: " + what);
}

Status PoolHandle::CheckHeaderLocked() const {
  const seg::Header& h = *header_;
  const seg::Layout& l = layout_;
  auto changed = [&](const char* field, uint64_t now, uint64_t was) {
    return Corrupt("its header's " + std::string(field) + " is " + std::to_string(now) +
                   ", it was " + std::to_string(was) + " when the pool was opened");
  };
  // The geometry: fixed at creation, so any change is damage.
  if (h.block_count != l.block_count) return changed("block count", h.block_count, l.block_count);
  if (h.block_size != l.block_size) return changed("block size", h.block_size, l.block_size);
  if (h.size != l.block_count * l.block_size) {
    return changed("size", h.size, l.block_count * l.block_size);
  }
  if (h.slot_capacity != l.slot_capacity) {
    return changed("slot capacity", h.slot_capacity, l.slot_capacity);
  }
  if (h.lease_capacity != l.lease_capacity) {
    return changed("lease capacity", h.lease_capacity, l.lease_capacity);
  }
  if (h.id_bucket_count != l.id_bucket_count || h.chain_bucket_count != l.id_bucket_count ||
      h.prefix_bucket_count != l.prefix_bucket_count) {
    return changed("bucket count", h.id_bucket_count, l.id_bucket_count);
  }
  if (h.max_sequences != max_sequences_) {
    return changed("max_sequences", h.max_sequences, max_sequences_);
  }
  // The changing fields: counts, list heads and byte counters that the operations
  // below index or size with.
  auto beyond = [&](const std::string& what, uint64_t value, const char* limit_name,
                    uint64_t limit) {
    return Corrupt("its header's " + what + " is " + std::to_string(value) + ", beyond its " +
                   std::to_string(limit) + " " + limit_name);
  };
  if (h.heap_size > l.slot_capacity) {
    return beyond("eviction order size", h.heap_size, "slots", l.slot_capacity);
  }
  if (h.entry_count > l.slot_capacity) {
    return beyond("entry count", h.entry_count, "slots", l.slot_capacity);
  }
  if (h.free_slot_head != kNil && h.free_slot_head >= l.slot_capacity) {
    return beyond("free slot list head", h.free_slot_head, "slots", l.slot_capacity);
  }
  if (h.free_lease_head != kNil && h.free_lease_head >= l.lease_capacity) {
    return beyond("free lease list head", h.free_lease_head, "leases", l.lease_capacity);
  }
  if (h.live_pins > l.lease_capacity) {
    return beyond("pin count", h.live_pins, "leases", l.lease_capacity);
  }
  if (h.used > h.size || h.free != h.size - h.used || h.used % l.block_size != 0) {
    return Corrupt("its header counts " + std::to_string(h.used) + " bytes used and " +
                   std::to_string(h.free) + " free of " + std::to_string(h.size));
  }
  return Status::Ok();
}

Status PoolHandle::CheckSlotLocked(uint32_t i) const {
  const seg::Slot& s = slots_[i];
  if (seg::SlotFits(s, layout_.block_count, layout_.block_size)) return Status::Ok();
  return Corrupt("entry " + std::to_string(s.sequence_id) + " (slot " + std::to_string(i) +
                 ") claims blocks " + std::to_string(s.first_block) + "+" +
                 std::to_string(s.extent_blocks) + " holding " + std::to_string(s.size_bytes) +
                 " bytes, " + std::to_string(s.prefix_len) + " prefix tokens and " +
                 std::to_string(s.metadata_len) + " bytes of metadata, which do not fit in its " +
                 std::to_string(layout_.block_count) + " blocks of " +
                 std::to_string(layout_.block_size) + " bytes");
}

Status PoolHandle::HeapStatusLocked() const {
  if (!heap_->damaged()) return Status::Ok();
  return Corrupt("its eviction order names slots out of range or out of place");
}

// ---------------------------------------------------------------- index helpers

uint32_t PoolHandle::FindLocked(uint64_t seq) const {
  Result<uint32_t> i = index_->FindEntry(seq);
  return i.ok() ? *i : kNil;
}

uint32_t PoolHandle::FindChunkLocked(uint64_t hash) const {
  Result<uint32_t> i = index_->FindChunk(hash);
  return i.ok() ? *i : kNil;
}

void PoolHandle::LinkLocked(uint32_t i, bool in_heap) {
  seg::Slot& s = slots_[i];
  const bool chunk = s.kind == seg::kChunkSlot;
  index_->Link(i);
  seg::Atomic(s.state).store(seg::kLive, std::memory_order_release);  // bytes are complete
  // A chunk with children is never a victim: eviction takes chains leaves first.
  if (!in_heap && !(chunk && s.children > 0)) heap_->Push(i);
  header_->entry_count++;
  if (chunk) header_->chunk_count++;
}

void PoolHandle::UnpublishLocked(uint32_t i) { UnpublishLocked(i, StampSeconds()); }

void PoolHandle::UnpublishLocked(uint32_t i, double now) {
  seg::Slot& s = slots_[i];
  const bool chunk = s.kind == seg::kChunkSlot;
  if (chunk) OrphanChunkLocked(i);
  index_->Unlink(i);
  if (s.heap_pos != kNil) heap_->Remove(i);  // a chunk with children is not in the heap
  if (header_->entry_count > 0) header_->entry_count--;
  if (chunk && header_->chunk_count > 0) header_->chunk_count--;
  header_->modified = now;
  if (s.pins > 0) {
    seg::Atomic(s.state).store(seg::kRetired, std::memory_order_release);
  } else {
    FreeSlotLocked(i);
  }
}

void PoolHandle::FreeSlotLocked(uint32_t i) {
  seg::Slot& s = slots_[i];
  // Readers validating a copy see the generation change before the bytes are reused.
  seg::BeginSlotChange(s);
  seg::StoreRelaxed(s.state, uint32_t{seg::kFree});
  // An extent out of bounds was never allocated from the bitmap: nothing to give back.
  if (s.extent_blocks > 0 &&
      seg::ExtentInBounds(s.first_block, s.extent_blocks, layout_.block_count)) {
    bitmap_->Free(s.first_block, s.extent_blocks);
    uint64_t bytes = std::min(s.extent_blocks * layout_.block_size, header_->used);
    header_->used -= bytes;
    header_->free += bytes;
  }
  seg::StoreRelaxed(s.extent_blocks, uint64_t{0});
  s.pins = 0;
  s.owner = kNil;
  s.heap_pos = kNil;
  index_->PushFree(i);
}

void PoolHandle::ClaimForWriteLocked(uint32_t i, LeaseTable::Owner me) {
  seg::Slot& s = slots_[i];
  // A free slot has generation 0, so lock-free readers still on it ignore it while
  // its [L] fields change (segment_format.h). Its sizes are still those of what it
  // held before: an empty extent must hold nothing, or a rebuild would take the
  // reservation for damage and drop it.
  seg::StoreRelaxed(s.extent_blocks, uint64_t{0});
  seg::StoreRelaxed(s.size_bytes, uint64_t{0});
  s.prefix_len = 0;
  s.metadata_len = 0;
  s.owner = me.row;
  s.owner_generation = me.generation;
  seg::StoreRelaxed(s.state, uint32_t{seg::kWriting});
}

void PoolHandle::Touch(uint32_t i) { TouchAt(i, StampSeconds(), MonotonicNs()); }

void PoolHandle::TouchAt(uint32_t i, double now_s, uint64_t now) {
  // Atomic: lock-free gets touch concurrently. The heap catches up lazily
  // (eviction_heap.h), which needs keys that only rise: hence the max.
  seg::Slot& s = slots_[i];
  seg::Atomic(s.access_count).fetch_add(1, std::memory_order_relaxed);
  seg::Atomic(s.last_accessed).store(now_s, std::memory_order_relaxed);
  auto tick = seg::Atomic(s.access_tick);
  for (uint64_t old = tick.load(std::memory_order_relaxed);
       old < now && !tick.compare_exchange_weak(old, now, std::memory_order_relaxed);) {
  }
}

Result<EntryInfo> PoolHandle::InfoLocked(uint32_t i) const {
  KVC_RETURN_IF_ERROR(CheckSlotLocked(i));
  const seg::Slot& s = slots_[i];
  EntryInfo e;
  e.sequence_id = s.sequence_id;
  e.size_bytes = s.size_bytes;
  e.token_count = s.token_count;
  if (s.prefix_len > 0) e.prefix_hash = PrefixHashToHex(s.prefix_hash);
  e.prefix_length = s.prefix_len;
  e.priority = s.priority;
  e.created = s.created;
  e.last_accessed = seg::LoadRelaxed(s.last_accessed);
  e.access_count = seg::LoadRelaxed(s.access_count);
  e.generation = s.generation;
  e.offset = s.first_block * layout_.block_size;
  if (s.metadata_len > 0) {
    const char* meta =
        reinterpret_cast<const char*>(Extent(s) + s.size_bytes + 4 * uint64_t{s.prefix_len});
    e.metadata.assign(meta, s.metadata_len);
  }
  return e;
}

// ---------------------------------------------------------------- processes

LeaseTable::Owner PoolHandle::MyRowLocked() const {
  uint32_t row = processes_->MyRow();
  if (row == kNil) return {};
  return {row, processes_->at(row).generation};
}

LeaseTable::Owner PoolHandle::MyProcessLocked() {
  LeaseTable::Owner me = MyRowLocked();
  if (me.row != kNil) return me;
  ProcessId self = CurrentProcess();
  me.generation = NextGenerationLocked();
  me.row = processes_->ClaimOwn(self, me.generation);
  if (me.row == kNil && RecoverDeadLocked() > 0) me.row = processes_->ClaimOwn(self, me.generation);
  if (me.row == kNil) return {};
  return me;
}

uint64_t PoolHandle::RecoverDeadLocked() {
  uint32_t dead = processes_->ReapDead(&header_->hits);
  if (dead == 0) return 0;
  header_->recoveries += dead;
  RebuildLocked();
  return dead;
}

void PoolHandle::SetAttachedLocked(uint32_t n) {
  std::memcpy(header_->attached, &n, sizeof(n));
}

Result<LeaseTable::Ticket> PoolHandle::AcquireLeaseLocked(uint32_t slot) {
  LeaseTable::Owner me = MyProcessLocked();
  if (me.row == kNil) return Status::Busy("process table of pool '" + name_ + "' is full");
  Result<LeaseTable::Ticket> lease = leases_->Acquire(slot, me, NextGenerationLocked());
  if (!lease.ok() && lease.status().code() == Code::kBusy && RecoverDeadLocked() > 0) {
    me = MyProcessLocked();  // recovery keeps live rows; this re-reads ours
    lease = leases_->Acquire(slot, me, NextGenerationLocked());
  }
  if (lease.ok()) slots_[slot].pins++;
  return lease;
}

Status PoolHandle::ReleaseLeaseLocked(LeaseTable::Ticket lease) {
  return ReleaseLeaseAsLocked(lease, MyRowLocked());
}

Status PoolHandle::ReleaseLeaseAsLocked(LeaseTable::Ticket lease, LeaseTable::Owner me) {
  KVC_ASSIGN_OR_RETURN(uint32_t slot, leases_->Release(lease, me));
  if (slot == kNil) return Status::Ok();  // not a pin of this process: nothing to do
  seg::Slot& s = slots_[slot];
  if (s.pins > 0 && --s.pins == 0 && s.state == seg::kRetired) FreeSlotLocked(slot);
  return Status::Ok();
}

Status PoolHandle::ReleaseLease(uint32_t lease, uint64_t generation) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  return ReleaseLeaseLocked({lease, generation});
}

// ---------------------------------------------------------------- eviction

bool PoolHandle::EvictOneLocked() {
  // Pinned tops are set aside in evict_scratch_, sized when the pool was mapped:
  // nothing here allocates, so nothing can throw between taking a slot out of the heap
  // and putting it back.
  std::vector<uint32_t>& pinned = evict_scratch_;
  pinned.clear();
  bool evicted = false;
  for (heap_->SettleTop(); !heap_->empty() && !heap_->damaged(); heap_->SettleTop()) {
    uint32_t victim = heap_->Top();
    if (slots_[victim].state != seg::kLive) {
      heap_->MarkDamaged();  // the order holds a slot that is not an entry
      break;
    }
    if (slots_[victim].pins > 0) {
      if (pinned.size() == pinned.capacity()) break;  // a damaged heap: stop, lose nothing
      heap_->Remove(victim);
      pinned.push_back(victim);
      continue;
    }
    if (slots_[victim].kind == seg::kEntrySlot && CheckSlotLocked(victim).ok()) {
      if (std::shared_ptr<PoolListener> listener = listener_.lock()) {
        const seg::Slot& v = slots_[victim];
        const std::byte* bytes = Extent(v);
        const std::byte* prefix = bytes + v.size_bytes;  // u32 tokens, maybe unaligned
        const uint64_t prefix_bytes = 4 * uint64_t{v.prefix_len};
        const char* meta = reinterpret_cast<const char*>(prefix + prefix_bytes);
        listener->Evicting(name_, v.sequence_id, v.token_count, v.priority,
                           {prefix, prefix_bytes}, {meta, v.metadata_len},
                           {bytes, v.size_bytes});
      }
    }
    if (slots_[victim].kind == seg::kChunkSlot && CheckSlotLocked(victim).ok()) {
      if (std::shared_ptr<PoolListener> listener = listener_.lock()) {
        // A chunk's extent: its bytes, its tokens, its namespace (metadata_len bytes).
        const seg::Slot& v = slots_[victim];
        const std::byte* bytes = Extent(v);
        const std::byte* tokens = bytes + v.size_bytes;
        const uint64_t token_bytes = 4 * uint64_t{v.prefix_len};
        const char* ns = reinterpret_cast<const char*>(tokens + token_bytes);
        listener->EvictingChunk(name_, v.chain_hash, v.parent_hash, v.chain_blocks,
                                {tokens, token_bytes}, {ns, v.metadata_len},
                                {bytes, v.size_bytes});
      }
    }
    UnpublishLocked(victim);
    header_->evictions++;
    evicted = true;
    break;
  }
  for (uint32_t s : pinned) heap_->Push(s);
  return evicted;
}

uint64_t PoolHandle::AllocateExtentLocked(uint64_t blocks) {
  uint64_t need = blocks * layout_.block_size;
  bool recovered = false;
  for (;;) {
    if (header_->free >= need) {
      uint64_t first = bitmap_->Allocate(blocks, header_->alloc_cursor);
      if (first != BitmapAllocator::kNone) {
        header_->alloc_cursor = first + blocks;
        header_->used += need;
        header_->free -= need;
        return first;
      }
    }
    // Space held by dead processes goes back before live entries are evicted; the
    // scan reads /proc, so it runs at most every 100 ms. A last scan "later" than now
    // (the wall clock stepped back since, or another process's clock reads ahead) is
    // taken as long ago (as is a damaged one): the limit may let an extra scan
    // through, never hold one off.
    if (!recovered) {
      const double now = NowSeconds();
      const double since = now - header_->last_reap;
      if (!(since >= 0 && since < 0.1)) {
        header_->last_reap = now;
        recovered = RecoverDeadLocked() > 0;
        if (recovered) continue;
      }
    }
    if (EvictOneLocked()) continue;
    if (!recovered && RecoverDeadLocked() > 0) {
      recovered = true;
      continue;
    }
    return BitmapAllocator::kNone;
  }
}

// ---------------------------------------------------------------- stats, processes

Result<PoolStats> PoolHandle::Stats() {
  PoolStats st;
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  RecoverDeadLocked();
  SetAttachedLocked(processes_->CountAttached());
  header_->hits += processes_->TakeHits();
  StatsLocked(st);
  return st;
}

Result<PoolSpace> PoolHandle::Space() {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  return PoolSpace{layout_.block_count * layout_.block_size, header_->free};
}

void PoolHandle::StatsLocked(PoolStats& st) const {
  const seg::Header& h = *header_;
  const uint64_t size = layout_.block_count * layout_.block_size;
  st.config.name = name_;
  st.config.size_bytes = size;
  st.config.policy = policy_;
  st.config.tier = static_cast<Tier>(h.tier);
  st.config.max_sequences = max_sequences_;
  st.config.block_size = static_cast<uint32_t>(layout_.block_size);
  st.config.prefix_block_tokens = prefix_block_tokens_;
  st.loaded = true;
  st.size = size;
  st.used = h.used;
  st.free = h.free;
  for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
    const seg::Slot& s = slots_[i];
    if ((s.state == seg::kLive || s.state == seg::kRetired) &&
        seg::ExtentInBounds(s.first_block, s.extent_blocks, layout_.block_count)) {
      uint64_t bytes = s.extent_blocks * layout_.block_size;
      if (s.pins > 0) st.pinned += bytes;
      if (s.state == seg::kLive && s.kind == seg::kChunkSlot) st.chunk_bytes += bytes;
    }
  }
  st.block_count = layout_.block_count;
  st.entry_count = h.entry_count - std::min(h.chunk_count, h.entry_count);
  st.chunk_count = h.chunk_count;
  st.chunk_tokens_asked = h.chunk_tokens_asked;
  st.chunk_tokens_matched = h.chunk_tokens_matched;
  st.hits = h.hits;
  st.misses = h.misses;
  st.evictions = h.evictions;
  st.puts = h.puts;
  st.created = h.created;
  st.modified = h.modified;
  std::memcpy(&st.attached, h.attached, sizeof(st.attached));
  st.segment_bytes = h.segment_size;
}

Result<PoolHandle::CounterDelta> PoolHandle::TakeUnrecorded() {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  seg::Header& h = *header_;
  h.hits += processes_->TakeHits();
  CounterDelta d{h.hits - h.recorded_hits, h.misses - h.recorded_misses,
                 h.evictions - h.recorded_evictions};
  h.recorded_hits = h.hits;
  h.recorded_misses = h.misses;
  h.recorded_evictions = h.evictions;
  return d;
}

Status PoolHandle::GiveBack(const CounterDelta& d) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  header_->recorded_hits -= d.hits;
  header_->recorded_misses -= d.misses;
  header_->recorded_evictions -= d.evictions;
  return Status::Ok();
}

Status PoolHandle::Attach(pid_t pid) {
  uint64_t start = ProcessStartTime(pid);
  if (pid <= 0 || start == 0) {
    return Status::NotFound("no running process with pid " + std::to_string(pid));
  }
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  RecoverDeadLocked();
  uint32_t idx = processes_->FindOrAddAttach(pid, start, NextGenerationLocked());
  if (idx == kNil) return Status::Busy("process table of pool '" + name_ + "' is full");
  seg::ProcessSlot& p = processes_->at(idx);
  if (p.attach_refs++ == 0) p.attached_at = NowSeconds();
  SetAttachedLocked(processes_->CountAttached());
  return Status::Ok();
}

Status PoolHandle::Detach(pid_t pid) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  RecoverDeadLocked();
  uint32_t idx = processes_->FindAttach(pid);
  if (idx == kNil || processes_->at(idx).attach_refs == 0) {
    return Status::NotFound("process " + std::to_string(pid) + " is not attached to pool '" +
                            name_ + "'");
  }
  seg::ProcessSlot& p = processes_->at(idx);
  if (--p.attach_refs == 0) p.attached_at = 0;
  SetAttachedLocked(processes_->CountAttached());
  return Status::Ok();
}

}  // namespace kvcache
