// PoolHandle::RebuildLocked: recomputes every derived structure of a segment from its
// slot, lease and process tables, after a process died holding the lock or anything
// else. It runs while recovering the lock, so it allocates nothing and cannot throw.
// It is also the repair of damaged derived structures (eviction order, chains, free
// lists, counters): it reads only the slot, lease and process tables, each checked,
// and sizes everything by the geometry cached at mapping, never by the header.

#include "pool_handle.h"

namespace kvcache {

using seg::kNil;

void PoolHandle::RebuildLocked() {
  seg::Header& h = *header_;
  const seg::Layout& l = layout_;
  const uint32_t cap = l.slot_capacity;
  // The geometry and counters the header repeats are rewritten from the layout.
  h.block_count = l.block_count;
  h.block_size = static_cast<uint32_t>(l.block_size);
  h.size = l.block_count * l.block_size;
  h.slot_capacity = l.slot_capacity;
  h.lease_capacity = l.lease_capacity;
  h.id_bucket_count = h.chain_bucket_count = l.id_bucket_count;
  h.prefix_bucket_count = l.prefix_bucket_count;
  h.max_sequences = max_sequences_;
  // Slots: drop unpublished writes whose owner is gone, and anything that does not fit
  // its extent or the data region. A COMMITTING slot is complete: its committer died
  // publishing it, so it is published.
  for (uint32_t i = 0; i < cap; ++i) {
    seg::Slot& s = slots_[i];
    s.pins = 0;
    if (s.state == seg::kFree) continue;
    // Dead processes' rows were reaped before any rebuild: a writer whose row (and
    // generation) is gone is dead.
    bool owner_gone =
        s.state == seg::kWriting && !processes_->IsOwnRow(s.owner, s.owner_generation);
    if (owner_gone || !seg::SlotFits(s, l.block_count, l.block_size) ||
        s.state > seg::kCommitting) {
      seg::StoreRelaxed(s.state, uint32_t{seg::kFree});
    }
  }
  // Leases: keep those of live owners (row and generation) on pinnable slots.
  leases_->Rebuild(
      [&](const seg::Lease& lease) {
        uint32_t st = slots_[lease.slot].state;
        return processes_->IsOwnRow(lease.process, lease.owner_generation) &&
               (st == seg::kLive || st == seg::kRetired);
      },
      [&](uint32_t slot) { slots_[slot].pins++; });
  // One entry per id. The id chains serve as the scratch index: first every
  // COMMITTING slot (an interrupted commit replaces what it was replacing), then every
  // LIVE one; between two of one kind the newer generation wins.
  index_->Clear();
  for (uint32_t kind : {uint32_t{seg::kCommitting}, uint32_t{seg::kLive}}) {
    for (uint32_t i = 0; i < cap; ++i) {
      seg::Slot& s = slots_[i];
      if (s.state == seg::kRetired && s.pins == 0) seg::StoreRelaxed(s.state, uint32_t{seg::kFree});
      if (s.state != kind) continue;
      if (s.kind == seg::kChunkSlot) continue;  // chunks are not in the id index
      uint32_t loser = index_->LinkUniqueId(i, [&](uint32_t mine, uint32_t other) {
        return slots_[other].state == kind && slots_[mine].generation > slots_[other].generation;
      });
      if (loser == kNil) continue;
      seg::StoreRelaxed(slots_[loser].state,
                        uint32_t{slots_[loser].pins > 0 ? seg::kRetired : seg::kFree});
    }
  }
  // Bitmap and byte counters from the extents still owned.
  bitmap_->Reset();
  h.used = 0;
  for (uint32_t i = 0; i < cap; ++i) {
    seg::Slot& s = slots_[i];
    if (s.state == seg::kFree || s.extent_blocks == 0) continue;
    if (!bitmap_->AllClear(s.first_block, s.extent_blocks)) {
      // Overlaps an extent already claimed: cannot be trusted.
      seg::StoreRelaxed(s.state, uint32_t{seg::kFree});
      continue;
    }
    bitmap_->Mark(s.first_block, s.extent_blocks);
    h.used += s.extent_blocks * l.block_size;
  }
  h.free = h.size - h.used;
  // Indexes, heap and free list.
  index_->Clear();
  h.heap_size = 0;
  heap_->ClearDamage();
  h.entry_count = 0;
  h.chunk_count = 0;
  for (uint32_t i = cap; i-- > 0;) {
    seg::Slot& s = slots_[i];
    s.heap_pos = kNil;
    if (s.state == seg::kFree) {
      seg::BeginSlotChange(s);
      seg::StoreRelaxed(s.extent_blocks, uint64_t{0});
      s.owner = kNil;
      index_->PushFree(i);
    } else if (s.state == seg::kLive || s.state == seg::kCommitting) {
      s.owner = kNil;
      s.children = 0;  // counted again below, once every chunk is linked
      LinkLocked(i);
    } else {
      index_->ClearLinks(i);
    }
  }
  // Chunk children, now that every chunk is indexed: parents with a child leave the
  // eviction heap.
  for (uint32_t i = 0; i < cap; ++i) {
    if (slots_[i].state == seg::kLive && slots_[i].kind == seg::kChunkSlot) AdoptChunkLocked(i);
  }
  SetAttachedLocked(processes_->CountAttached());
}

}  // namespace kvcache
