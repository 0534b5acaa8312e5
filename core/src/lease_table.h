// The pins of a pool: a table of leases in the segment. Each lease names the slot it
// pins, the process-table row that holds it and that row's generation, and carries a
// generation of its own. A lease is released only by a caller that names all three:
// a handle copied into another process (fork) or kept past its row's reuse names an
// owner that no longer matches, and releases nothing.
//
// Every index read from the segment (the free list, a lease's slot) is checked before
// it is used: a bad one is Corruption naming the pool, never a stray write.
//
// Not synchronized: the caller holds the pool lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "kvcache/status.h"
#include "segment_format.h"

namespace kvcache {

class LeaseTable {
 public:
  // Who holds a lease: a process-table row and the generation it was claimed with.
  struct Owner {
    uint32_t row = seg::kNil;
    uint64_t generation = 0;
  };
  // What a holder keeps to release its lease later.
  struct Ticket {
    uint32_t index = seg::kNil;
    uint64_t generation = 0;
  };

  // `free_head` and `live` are the header's free_lease_head and live_pins; `pool`
  // names the pool in errors. Leases name slots below `slot_capacity`.
  LeaseTable(seg::Lease* leases, uint32_t capacity, uint32_t* free_head, uint32_t* live,
             uint32_t slot_capacity, const std::string* pool)
      : leases_(leases),
        capacity_(capacity),
        free_head_(free_head),
        live_(live),
        slot_capacity_(slot_capacity),
        pool_(pool) {}

  // Formats a fresh table: every lease free, on the free list.
  void Reset();
  // Takes a free lease on `slot` for `owner`, named by `generation` (unique, non-zero).
  // Busy when every lease is taken; Corruption when the free list is damaged.
  // REQUIRES: slot < slot_capacity.
  Result<Ticket> Acquire(uint32_t slot, Owner owner, uint64_t generation);
  // Acquire for a run of slots, for pinning many at once (a prompt's chunks): takes
  // leases on slots[k] for `owner`, named by first_generation + k, into out[k], in
  // order, while the free list has a sound lease to give. Returns how many it took;
  // fewer than slots.size() when the table ran out or its free list is damaged (then
  // Acquire on the next slot tells which). REQUIRES: every slot < slot_capacity,
  // out has room for slots.size() tickets, the generations unique and non-zero.
  size_t AcquireRun(std::span<const uint32_t> slots, Owner owner, uint64_t first_generation,
                    Ticket* out);
  // Frees the lease `ticket` names if `owner` holds it; returns the slot it pinned, or
  // kNil when the ticket names no lease of `owner` (already released, reaped, or taken
  // by another process). Corruption when the lease names no slot.
  Result<uint32_t> Release(Ticket ticket, Owner owner);
  // Keeps the leases for which keep(lease) is true and frees the rest, rebuilding the
  // free list and the live count; calls pinned(slot) for each kept lease. Leases naming
  // no slot are freed. Allocates nothing.
  template <typename Keep, typename Pinned>
  void Rebuild(Keep&& keep, Pinned&& pinned);

  uint32_t capacity() const { return capacity_; }
  const seg::Lease& at(uint32_t i) const { return leases_[i]; }

 private:
  Status Corrupt(const std::string& what) const;

  seg::Lease* leases_;
  uint32_t capacity_;
  uint32_t* free_head_;
  uint32_t* live_;
  uint32_t slot_capacity_;
  const std::string* pool_;
};

template <typename Keep, typename Pinned>
void LeaseTable::Rebuild(Keep&& keep, Pinned&& pinned) {
  *free_head_ = seg::kNil;
  *live_ = 0;
  for (uint32_t l = capacity_; l-- > 0;) {
    seg::Lease& lease = leases_[l];
    if (lease.slot < slot_capacity_ && keep(static_cast<const seg::Lease&>(lease))) {
      pinned(lease.slot);
      ++*live_;
    } else {
      lease = seg::Lease{seg::kNil, seg::kNil, *free_head_, 0, 0, 0};
      *free_head_ = l;
    }
  }
}

}  // namespace kvcache
