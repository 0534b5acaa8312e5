#include "slot_index.h"

#include <cstring>

namespace kvcache {

using seg::kNil;

namespace {

// The prefix and block chains are doubly linked; Prev and Next name the link fields of
// one of them. Links read from the segment are checked against the slot capacity `cap`:
// one out of range is taken for the end of the chain, never followed or written through.
template <uint32_t seg::Slot::*Prev, uint32_t seg::Slot::*Next>
void PushChain(seg::Slot* slots, uint32_t cap, uint32_t& head, uint32_t i) {
  uint32_t old = head < cap ? head : kNil;
  slots[i].*Prev = kNil;
  slots[i].*Next = old;
  if (old != kNil) slots[old].*Prev = i;
  head = i;
}

template <uint32_t seg::Slot::*Prev, uint32_t seg::Slot::*Next>
void UnlinkChain(seg::Slot* slots, uint32_t cap, uint32_t& head, uint32_t i) {
  seg::Slot& s = slots[i];
  uint32_t prev = s.*Prev < cap ? s.*Prev : kNil;
  uint32_t next = s.*Next < cap ? s.*Next : kNil;
  if (prev != kNil) {
    slots[prev].*Next = next;
  } else if (head == i) {
    head = next;
  }
  if (next != kNil) slots[next].*Prev = prev;
}

// Whether slot s belongs in the prefix chain: a chunk's tokens are its own block, not a
// prefix.
bool InPrefixChain(const seg::Slot& s) { return s.prefix_len > 0 && s.kind != seg::kChunkSlot; }

}  // namespace

void SlotIndex::Reset() {
  for (uint32_t i = 0; i < capacity_; ++i) {
    seg::Slot& s = slots_[i];
    s.id_next = i + 1 < capacity_ ? i + 1 : kNil;
    s.prefix_next = s.prefix_prev = s.chain_next = s.chain_prev = kNil;
  }
  for (const Buckets& b : chains_) std::memset(b.heads, 0xFF, b.count * sizeof(uint32_t));
  *free_head_ = capacity_ > 0 ? 0 : kNil;
}

Status SlotIndex::Damaged(Chain chain) const {
  static constexpr const char* kNames[] = {"id", "prefix", "block-prefix"};
  return Status::Corruption("pool '" + *pool_ + "' is corrupt: its " + kNames[chain] +
                            " index has a cycle or a link out of range (see `cortex cache "
                            "health`)");
}

Result<uint32_t> SlotIndex::FindEntry(uint64_t seq) const {
  uint32_t found = kNil;
  Status walk = ForEach<kIdChain>(seq, [&](uint32_t i) {
    const seg::Slot& s = slots_[i];
    if (s.sequence_id == seq && s.state == seg::kLive) found = i;
    return found == kNil;
  });
  if (!walk.ok()) return walk;
  return found;
}

Result<uint32_t> SlotIndex::FindChunk(uint64_t hash) const {
  uint32_t found = kNil;
  Status walk = ForEach<kBlockChain>(hash, [&](uint32_t i) {
    const seg::Slot& s = slots_[i];
    if (s.chain_hash == hash && s.kind == seg::kChunkSlot && s.state == seg::kLive) found = i;
    return found == kNil;
  });
  if (!walk.ok()) return walk;
  return found;
}

void SlotIndex::LinkKeys(uint32_t i) {
  seg::Slot& s = slots_[i];
  s.prefix_prev = s.prefix_next = s.chain_prev = s.chain_next = kNil;
  if (InPrefixChain(s)) {
    PushChain<&seg::Slot::prefix_prev, &seg::Slot::prefix_next>(
        slots_, capacity_, Head(kPrefixChain, s.prefix_hash), i);
  }
  if (s.chain_blocks > 0) {
    PushChain<&seg::Slot::chain_prev, &seg::Slot::chain_next>(slots_, capacity_,
                                                              Head(kBlockChain, s.chain_hash), i);
  }
}

void SlotIndex::UnlinkKeys(uint32_t i) {
  seg::Slot& s = slots_[i];
  if (InPrefixChain(s)) {
    UnlinkChain<&seg::Slot::prefix_prev, &seg::Slot::prefix_next>(
        slots_, capacity_, Head(kPrefixChain, s.prefix_hash), i);
  }
  if (s.chain_blocks > 0) {
    UnlinkChain<&seg::Slot::chain_prev, &seg::Slot::chain_next>(slots_, capacity_,
                                                                Head(kBlockChain, s.chain_hash), i);
  }
  s.prefix_next = s.prefix_prev = s.chain_next = s.chain_prev = kNil;
}

void SlotIndex::Link(uint32_t i) {
  seg::Slot& s = slots_[i];
  if (s.kind == seg::kChunkSlot) {
    // Chunks are found by their chained hash only (segment_format.h, SlotKind).
    seg::StoreRelaxed(s.id_next, kNil);
  } else {
    uint32_t& head = Head(kIdChain, s.sequence_id);
    seg::StoreRelaxed(s.id_next, head < capacity_ ? head : kNil);
    seg::Atomic(head).store(i, std::memory_order_release);  // lock-free gets follow it
  }
  LinkKeys(i);
}

void SlotIndex::Unlink(uint32_t i) {
  seg::Slot& s = slots_[i];
  if (s.kind != seg::kChunkSlot) {
    uint32_t steps = 0;
    for (uint32_t* link = &Head(kIdChain, s.sequence_id); *link < capacity_ && ++steps <= capacity_;
         link = &slots_[*link].id_next) {
      if (*link == i) {
        seg::Atomic(*link).store(s.id_next < capacity_ ? s.id_next : kNil,
                                 std::memory_order_release);
        break;
      }
    }
  }
  UnlinkKeys(i);
  seg::StoreRelaxed(s.id_next, kNil);
}

void SlotIndex::ClearLinks(uint32_t i) {
  seg::Slot& s = slots_[i];
  seg::StoreRelaxed(s.id_next, kNil);
  s.prefix_next = s.prefix_prev = s.chain_next = s.chain_prev = kNil;
}

uint32_t SlotIndex::PopFree() {
  uint32_t i = *free_head_;
  // The head was range-checked when the lock was taken (PoolHandle::CheckHeaderLocked);
  // checked again here so that the index stands on its own.
  if (i >= capacity_ || slots_[i].state != seg::kFree) return kNil;
  *free_head_ = slots_[i].id_next;
  seg::StoreRelaxed(slots_[i].id_next, kNil);
  return i;
}

void SlotIndex::PushFree(uint32_t i) {
  seg::StoreRelaxed(slots_[i].id_next, *free_head_);
  *free_head_ = i;
}

void SlotIndex::Clear() {
  // Lock-free gets may be walking the id chains: one atomic store per head.
  const Buckets& ids = chains_[kIdChain];
  for (uint32_t b = 0; b < ids.count; ++b) seg::StoreRelaxed(ids.heads[b], kNil);
  for (Chain c : {kPrefixChain, kBlockChain}) {
    std::memset(chains_[c].heads, 0xFF, chains_[c].count * sizeof(uint32_t));
  }
  *free_head_ = kNil;
}

}  // namespace kvcache
