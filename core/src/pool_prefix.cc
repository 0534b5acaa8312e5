// PoolHandle's prefix lookups: by the seed's prefix hash, and longest-prefix
// matching over chained block hashes.
#include <algorithm>
#include <cstring>

#include "kvcache/prefix.h"
#include "pool_handle.h"

namespace kvcache {

using seg::kNil;

Result<std::vector<EntryView>> PoolHandle::ViewByPrefix(uint64_t prefix_hash) {
  std::vector<PinnedEntry> pinned;
  Status failure;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    // A chain that meets an entry twice (a cycle through matching entries) is damaged
    // as much as one that leads out of range: its matches cannot be trusted.
    Status walk =
        index_->ForEach<SlotIndex::kPrefixChain>(prefix_hash, [&](uint32_t i) {
          if (slots_[i].prefix_hash != prefix_hash || slots_[i].state != seg::kLive) return true;
          uint64_t seq = slots_[i].sequence_id;
          if (std::any_of(pinned.begin(), pinned.end(),
                          [&](const PinnedEntry& p) { return p.info.sequence_id == seq; })) {
            failure = index_->Damaged(SlotIndex::kPrefixChain);
            return false;
          }
          header_->hits++;
          Touch(i);
          failure = PinLocked(i, pinned);
          return failure.ok();
        });
    if (failure.ok()) failure = walk;
    if (!failure.ok()) {
      for (const PinnedEntry& p : pinned) ReleaseLeaseLocked(p.lease).IgnoreError();
      pinned.clear();
    }
    if (failure.ok() && pinned.empty()) header_->misses++;
  }
  KVC_RETURN_IF_ERROR(failure);
  return MakeViews(std::move(pinned));
}

Result<std::vector<EntryInfo>> PoolHandle::InfoByPrefix(uint64_t prefix_hash) {
  std::vector<EntryInfo> out;
  Status failure;
  {
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    Status walk =
        index_->ForEach<SlotIndex::kPrefixChain>(prefix_hash, [&](uint32_t i) {
          if (slots_[i].prefix_hash != prefix_hash || slots_[i].state != seg::kLive) return true;
          uint64_t seq = slots_[i].sequence_id;
          if (std::any_of(out.begin(), out.end(),
                          [&](const EntryInfo& e) { return e.sequence_id == seq; })) {
            failure = index_->Damaged(SlotIndex::kPrefixChain);  // as in ViewByPrefix
            return false;
          }
          Result<EntryInfo> info = InfoLocked(i);
          if (!info.ok()) {
            failure = info.status();
            return false;
          }
          out.push_back(std::move(*info));
          return true;
        });
    if (failure.ok()) failure = walk;
  }
  KVC_RETURN_IF_ERROR(failure);
  std::sort(out.begin(), out.end(),
            [](const EntryInfo& a, const EntryInfo& b) { return a.sequence_id < b.sequence_id; });
  return out;
}

Result<PrefixMatch> PoolHandle::LongestPrefix(std::span<const uint32_t> tokens) {
  const uint32_t bt = prefix_block_tokens_;  // fixed at creation
  std::vector<uint64_t> chain(tokens.size() / bt);
  uint64_t h = 0;
  for (size_t b = 0; b < chain.size(); ++b) chain[b] = h = ChainHash(h, tokens.subspan(b * bt, bt));
  // Longest first: the first entry whose whole prefix blocks hash like the query's
  // first k blocks, confirmed token by token outside the lock (hashes can collide).
  for (size_t k = chain.size(); k > 0; --k) {
    uint32_t found = kNil;
    LeaseTable::Ticket lease;
    const std::byte* extent = nullptr;
    uint64_t size = 0;
    uint32_t prefix_len = 0;
    {
      Locked lk(*this);
      KVC_RETURN_IF_ERROR(lk.status());
      for (; k > 0 && found == kNil; --k) {
        uint64_t want = chain[k - 1];
        Status walk =
            index_->ForEach<SlotIndex::kBlockChain>(want, [&](uint32_t i) {
              const seg::Slot& s = slots_[i];
              if (s.chain_hash == want && s.chain_blocks == k && s.state == seg::kLive &&
                  s.kind == seg::kEntrySlot) {
                found = i;
              }
              return found == kNil;
            });
        if (!walk.ok()) return walk;
        if (found != kNil) break;
      }
      if (found == kNil) {
        header_->misses++;
        return Status::NotFound("no entry in pool '" + name_ + "' shares a prefix block of " +
                                std::to_string(bt) + " tokens with the query");
      }
      KVC_RETURN_IF_ERROR(CheckSlotLocked(found));  // its tokens are read below
      KVC_ASSIGN_OR_RETURN(lease, AcquireLeaseLocked(found));
      extent = Extent(slots_[found]);
      size = slots_[found].size_bytes;
      prefix_len = slots_[found].prefix_len;
    }
    const std::byte* stored = extent + size;
    uint64_t limit = std::min<uint64_t>(prefix_len, tokens.size());
    uint64_t matched = 0;
    while (matched < limit && std::memcmp(stored + 4 * matched, &tokens[matched], 4) == 0) {
      ++matched;
    }
    Locked lk(*this);
    KVC_RETURN_IF_ERROR(lk.status());
    // The pin goes when this scope ends, however it ends (InfoLocked allocates).
    struct Unpin {
      PoolHandle* pool;
      LeaseTable::Ticket lease;
      ~Unpin() { pool->ReleaseLeaseLocked(lease).IgnoreError(); }
    } unpin{this, lease};
    bool confirmed = matched >= k * bt && slots_[found].state == seg::kLive;
    if (confirmed) {
      header_->hits++;
      Touch(found);
    }
    KVC_ASSIGN_OR_RETURN(EntryInfo info, InfoLocked(found));
    if (confirmed) return PrefixMatch{std::move(info), matched};
  }
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  header_->misses++;
  return Status::NotFound("no entry in pool '" + name_ + "' shares a prefix block of " +
                          std::to_string(bt) + " tokens with the query");
}

}  // namespace kvcache
