// The indexes over a pool's slot table: hash chains threaded through the slots, with
// their bucket arrays in the segment, and the free-slot list.
//
//   id chain      (id buckets, Slot::id_next): entries by sequence id. Singly linked,
//                 and the one chain lock-free gets walk.
//   prefix chain  (prefix buckets, Slot::prefix_next/prefix_prev): entries with prefix
//                 tokens, by prefix hash. Doubly linked.
//   block chain   (chain buckets, Slot::chain_next/chain_prev): entries and chunks by the
//                 chained hash of their whole prefix blocks (a chunk: of its chain up to
//                 it). Doubly linked.
//   free list     (header free_slot_head, Slot::id_next): FREE slots, singly linked.
//
// A chunk is in the block chain only (segment_format.h, SlotKind). Link and Unlink put a
// slot in / take it out of every chain its fields name.
//
// Shared memory is checked, not trusted: every link read from the segment is
// range-checked and every walk bounded by the slot count, so a link out of range or a
// cycle ends the walk. A lookup or walk that met one reports Corruption naming the pool
// and the chain; linking and unlinking treat a bad link as the end of its chain (what
// lay past it becomes unreachable, which health reports), never follow it.
//
// Memory orders (segment_format.h, Slot, has the whole seqlock protocol). Lock-free gets
// read the id bucket heads and Slot::id_next, and nothing else of this index:
//   - they load both with acquire (IdHeadAcquire, IdNextAcquire);
//   - Link stores the slot's id_next relaxed, then the bucket head with release, so a
//     reader that sees the new head sees the slot's link;
//   - Unlink stores the predecessor's link (head or id_next) with release, then the
//     slot's own id_next relaxed;
//   - the free list shares id_next, which a reader may still load on a slot just freed:
//     PushFree, PopFree and Clear store it (and the id heads) relaxed, never plainly.
// Everything else (prefix and block links, their heads, the free-list head) is read and
// written only under the pool lock.
//
// Not synchronized: every member but the lock-free pair REQUIRES the pool lock.
#pragma once

#include <cstdint>
#include <string>

#include "kvcache/status.h"
#include "segment_format.h"

namespace kvcache {

class SlotIndex {
 public:
  enum Chain : uint8_t { kIdChain, kPrefixChain, kBlockChain };
  // A bucket array in the segment: `count` heads (a power of two), kNil when empty.
  struct Buckets {
    uint32_t* heads = nullptr;
    uint32_t count = 0;
  };

  // `free_head` is the header's free_slot_head; `pool` names the pool in errors. The
  // bucket counts are the geometry validated at mapping, never re-read from the header.
  SlotIndex(seg::Slot* slots, uint32_t capacity, Buckets ids, Buckets prefixes, Buckets blocks,
            uint32_t* free_head, const std::string* pool)
      : slots_(slots),
        capacity_(capacity),
        chains_{ids, prefixes, blocks},
        free_head_(free_head),
        pool_(pool) {}

  // Formats a fresh index: every chain empty, every slot on the free list in order.
  // Touches only the link fields and the bucket arrays.
  void Reset();

  // ---- lock-free readers (no lock) ----
  // The first slot of `seq`'s id chain, and the slot after `i` (REQUIRES i < capacity).
  // Either may be out of range or lead into a cycle: the caller bounds its walk.
  uint32_t IdHeadAcquire(uint64_t seq) const {
    return seg::Atomic(Head(kIdChain, seq)).load(std::memory_order_acquire);
  }
  uint32_t IdNextAcquire(uint32_t i) const {
    return seg::Atomic(slots_[i].id_next).load(std::memory_order_acquire);
  }

  // ---- everything below REQUIRES the pool lock ----
  // The LIVE entry with id `seq`; kNil if there is none. Corruption when the walk met a
  // bad link before finding it.
  Result<uint32_t> FindEntry(uint64_t seq) const;
  // The LIVE chunk whose chained hash is `hash`; kNil if none. Corruption as FindEntry.
  Result<uint32_t> FindChunk(uint64_t hash) const;
  // Calls fn(i) for each slot of the chain `key` hashes to, in chain order, until fn
  // returns false. Slots of other keys sharing the bucket are visited too: fn checks
  // the key. Corruption (Damaged) when the walk met a link out of range or a cycle.
  // The chain is a template argument so that the walk compiles to the loop alone: the
  // longest-prefix lookup walks thousands of chains under the lock.
  template <Chain kChain, typename Fn>
  Status ForEach(uint64_t key, Fn&& fn) const;
  // The same over bucket `bucket` (< bucket_count(chain)): for walks of a whole index.
  template <typename Fn>
  Status ForEachInBucket(Chain chain, uint32_t bucket, Fn&& fn) const;
  uint32_t bucket_count(Chain chain) const { return chains_[chain].count; }
  // The head of the bucket `key` falls in, where it lives in the segment: for a walk
  // that prefetches ahead of itself (MatchChunks). The head read may be out of range.
  const uint32_t* BucketHead(Chain chain, uint64_t key) const { return &Head(chain, key); }
  // "pool 'x' is corrupt: its <chain> index has a cycle or a link out of range ..."
  Status Damaged(Chain chain) const;

  // Puts slot i in every chain its fields name: its id (entries), its prefix hash
  // (entries with prefix tokens) and its block hash (chain_blocks > 0). The id link is
  // published with release (see above). REQUIRES: i < capacity, in no chain.
  void Link(uint32_t i);
  // Takes slot i out of every chain Link put it in, and clears its links.
  void Unlink(uint32_t i);
  // Link and Unlink for the prefix and block chains only: for an entry whose prefix
  // changes in place (its id link stays).
  void LinkKeys(uint32_t i);
  void UnlinkKeys(uint32_t i);
  // Clears slot i's links without touching any chain: for a slot in none.
  void ClearLinks(uint32_t i);

  // The first free slot, taken off the list; kNil when the list is empty, or leads out
  // of range or into a slot in use (health reports that).
  uint32_t PopFree();
  // Puts slot i at the head of the free list. REQUIRES: i < capacity, in no chain.
  void PushFree(uint32_t i);
  // For health's walk of the free list: its head and the slot after i (unchecked).
  uint32_t free_head() const { return *free_head_; }
  uint32_t NextFree(uint32_t i) const { return seg::LoadRelaxed(slots_[i].id_next); }

  // For a rebuild: empties every chain and the free list, without touching a slot.
  void Clear();
  // For a rebuild's one-entry-per-id pass, on id chains built since Clear: links entry
  // i unless a slot with its id is linked already. If one is and prefer(i, other),
  // i takes its place. Returns the slot left out (i or other), kNil when i was linked
  // and nothing was displaced.
  template <typename Prefer>
  uint32_t LinkUniqueId(uint32_t i, Prefer&& prefer);

  uint32_t capacity() const { return capacity_; }

 private:
  // The head of the bucket `key` falls in.
  uint32_t& Head(Chain chain, uint64_t key) const {
    const Buckets& b = chains_[chain];
    return b.heads[seg::BucketOf(key, b.count)];
  }
  // Walks the chain from `head` through kChain's links: false when it met damage.
  template <Chain kChain, typename Fn>
  bool Walk(uint32_t head, Fn&& fn) const;

  seg::Slot* slots_;
  uint32_t capacity_;
  Buckets chains_[3];
  uint32_t* free_head_;
  const std::string* pool_;
};

template <SlotIndex::Chain kChain, typename Fn>
bool SlotIndex::Walk(uint32_t head, Fn&& fn) const {
  if constexpr (kChain == kIdChain) {
    return seg::ForEachInChain<&seg::Slot::id_next>(slots_, capacity_, head, fn);
  } else if constexpr (kChain == kPrefixChain) {
    return seg::ForEachInChain<&seg::Slot::prefix_next>(slots_, capacity_, head, fn);
  } else {
    return seg::ForEachInChain<&seg::Slot::chain_next>(slots_, capacity_, head, fn);
  }
}

template <SlotIndex::Chain kChain, typename Fn>
Status SlotIndex::ForEach(uint64_t key, Fn&& fn) const {
  if (Walk<kChain>(Head(kChain, key), fn)) return Status::Ok();
  return Damaged(kChain);
}

template <typename Fn>
Status SlotIndex::ForEachInBucket(Chain chain, uint32_t bucket, Fn&& fn) const {
  uint32_t head = chains_[chain].heads[bucket];
  bool intact = chain == kIdChain       ? Walk<kIdChain>(head, fn)
                : chain == kPrefixChain ? Walk<kPrefixChain>(head, fn)
                                        : Walk<kBlockChain>(head, fn);
  return intact ? Status::Ok() : Damaged(chain);
}

template <typename Prefer>
uint32_t SlotIndex::LinkUniqueId(uint32_t i, Prefer&& prefer) {
  seg::Slot& s = slots_[i];
  // Every link here was stored since Clear, by this function, from indexes in range.
  uint32_t* link = &Head(kIdChain, s.sequence_id);
  while (*link != seg::kNil && slots_[*link].sequence_id != s.sequence_id) {
    link = &slots_[*link].id_next;
  }
  uint32_t other = *link;
  if (other == seg::kNil) {
    seg::StoreRelaxed(s.id_next, seg::kNil);
    seg::StoreRelaxed(*link, i);
    return seg::kNil;
  }
  if (!prefer(i, other)) return i;
  seg::StoreRelaxed(s.id_next, slots_[other].id_next);
  seg::StoreRelaxed(*link, i);
  return other;
}

}  // namespace kvcache
