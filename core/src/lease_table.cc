#include "lease_table.h"

namespace kvcache {

using seg::kNil;

Status LeaseTable::Corrupt(const std::string& what) const {
  return Status::Corruption("lease table of pool '" + *pool_ + "' is damaged: " + what);
}

void LeaseTable::Reset() {
  for (uint32_t i = 0; i < capacity_; ++i) {
    leases_[i] = seg::Lease{kNil, kNil, i + 1 < capacity_ ? i + 1 : kNil, 0, 0, 0};
  }
  *free_head_ = capacity_ > 0 ? 0 : kNil;
  *live_ = 0;
}

Result<LeaseTable::Ticket> LeaseTable::Acquire(uint32_t slot, Owner owner, uint64_t generation) {
  uint32_t l = *free_head_;
  if (l == kNil) return Status::Busy("pool '" + *pool_ + "' has too many pinned entries");
  if (l >= capacity_) return Corrupt("free list names lease " + std::to_string(l));
  seg::Lease& lease = leases_[l];
  if (lease.slot != kNil) return Corrupt("lease " + std::to_string(l) + " is free and in use");
  *free_head_ = lease.next;
  lease = seg::Lease{slot, owner.row, kNil, 0, owner.generation, generation};
  ++*live_;
  return Ticket{l, generation};
}

size_t LeaseTable::AcquireRun(std::span<const uint32_t> slots, Owner owner,
                              uint64_t first_generation, Ticket* out) {
  // The free-list head stays in a register for the whole run: each pop then waits on
  // the link it reads, not on a store to the header and a load of it back.
  uint32_t l = *free_head_;
  size_t k = 0;
  for (; k < slots.size(); ++k) {
    if (l >= capacity_ || leases_[l].slot != kNil) break;  // empty or damaged: see Acquire
    seg::Lease& lease = leases_[l];
    const uint32_t next = lease.next;
    lease = seg::Lease{slots[k], owner.row, kNil, 0, owner.generation, first_generation + k};
    out[k] = Ticket{l, first_generation + k};
    l = next;
  }
  *free_head_ = l;
  *live_ += static_cast<uint32_t>(k);
  return k;
}

Result<uint32_t> LeaseTable::Release(Ticket ticket, Owner owner) {
  if (ticket.index >= capacity_ || owner.row == kNil) return kNil;
  seg::Lease& lease = leases_[ticket.index];
  if (lease.slot == kNil || lease.generation != ticket.generation || lease.process != owner.row ||
      lease.owner_generation != owner.generation) {
    return kNil;
  }
  uint32_t slot = lease.slot;
  if (slot >= slot_capacity_) {
    return Corrupt("lease " + std::to_string(ticket.index) + " names slot " + std::to_string(slot));
  }
  lease = seg::Lease{kNil, kNil, *free_head_, 0, 0, 0};
  *free_head_ = ticket.index;
  if (*live_ > 0) --*live_;
  return slot;
}

}  // namespace kvcache
