// PoolHandle::RebuildLocked: recomputes every derived structure of a segment from its
// slot and lease tables, after a process died holding the lock or anything else.
#include <cstring>
#include <unordered_map>

#include "pool_handle.h"

namespace kvcache {

using seg::kNil;

void PoolHandle::RebuildLocked() {
  seg::Header& h = *header_;
  const uint32_t cap = h.slot_capacity;
  // Slots: drop unpublished writes of dead processes and anything out of bounds.
  for (uint32_t i = 0; i < cap; ++i) {
    seg::Slot& s = slots_[i];
    s.pins = 0;
    if (s.state == seg::kFree) continue;
    bool bad_owner = s.state == seg::kWriting &&
                     (s.owner >= h.process_capacity || processes_->at(s.owner).pid == 0);
    bool out_of_bounds = s.first_block > h.block_count ||
                         s.extent_blocks > h.block_count - s.first_block ||
                         s.state > seg::kRetired;
    if (bad_owner || out_of_bounds) seg::StoreRelaxed(s.state, uint32_t{seg::kFree});
  }
  // Leases: keep those of live processes on pinnable slots.
  h.free_lease_head = kNil;
  h.live_pins = 0;
  for (uint32_t l = h.lease_capacity; l-- > 0;) {
    seg::Lease& lease = leases_[l];
    bool keep = lease.slot < cap && lease.process < h.process_capacity &&
                processes_->at(lease.process).pid != 0 &&
                (slots_[lease.slot].state == seg::kLive ||
                 slots_[lease.slot].state == seg::kRetired);
    if (keep) {
      slots_[lease.slot].pins++;
      h.live_pins++;
    } else {
      lease = seg::Lease{kNil, kNil, h.free_lease_head, 0};
      h.free_lease_head = l;
    }
  }
  // One live slot per id: the newest generation wins.
  std::unordered_map<uint64_t, uint32_t> newest;
  for (uint32_t i = 0; i < cap; ++i) {
    seg::Slot& s = slots_[i];
    if (s.state == seg::kRetired && s.pins == 0) seg::StoreRelaxed(s.state, uint32_t{seg::kFree});
    if (s.state != seg::kLive) continue;
    auto [it, inserted] = newest.emplace(s.sequence_id, i);
    if (!inserted) {
      uint32_t other = it->second;
      uint32_t loser = slots_[other].generation > s.generation ? i : other;
      if (loser == other) it->second = i;
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
    h.used += s.extent_blocks * h.block_size;
  }
  h.free = h.size - h.used;
  // Indexes, heap and free list.
  // Lock-free gets may be walking the id chains: one atomic store per head.
  for (uint32_t b = 0; b < h.id_bucket_count; ++b) seg::StoreRelaxed(id_buckets_[b], kNil);
  std::memset(prefix_buckets_, 0xFF, h.prefix_bucket_count * sizeof(uint32_t));
  std::memset(chain_buckets_, 0xFF, h.chain_bucket_count * sizeof(uint32_t));
  h.heap_size = 0;
  h.entry_count = 0;
  h.free_slot_head = kNil;
  for (uint32_t i = cap; i-- > 0;) {
    seg::Slot& s = slots_[i];
    s.heap_pos = kNil;
    if (s.state == seg::kFree) {
      seg::BeginSlotChange(s);
      seg::StoreRelaxed(s.extent_blocks, uint64_t{0});
      s.owner = kNil;
      seg::StoreRelaxed(s.id_next, h.free_slot_head);
      h.free_slot_head = i;
    } else if (s.state == seg::kLive) {
      LinkLocked(i);
    } else {
      seg::StoreRelaxed(s.id_next, kNil);
      s.prefix_next = s.prefix_prev = s.chain_next = s.chain_prev = kNil;
    }
  }
  SetAttachedLocked(processes_->CountAttached());
}

}  // namespace kvcache
