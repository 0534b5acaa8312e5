#include "slot_index.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvcache {
namespace {

using seg::kNil;

class SlotIndexTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kSlots = 8;
  static constexpr uint32_t kBuckets = 4;

  SlotIndexTest()
      : slots_(kSlots),
        ids_(kBuckets),
        prefixes_(kBuckets),
        blocks_(kBuckets),
        index_(slots_.data(), kSlots, {ids_.data(), kBuckets}, {prefixes_.data(), kBuckets},
               {blocks_.data(), kBuckets}, &free_head_, &name_) {
    index_.Reset();
  }

  // `n` distinct keys that all fall in one bucket, starting the search at `from`.
  static std::vector<uint64_t> Colliding(uint32_t n, uint64_t from = 1) {
    std::vector<uint64_t> keys;
    uint32_t bucket = seg::BucketOf(from, kBuckets);
    for (uint64_t k = from; keys.size() < n; ++k) {
      if (seg::BucketOf(k, kBuckets) == bucket) keys.push_back(k);
    }
    return keys;
  }

  // Takes a slot off the free list and makes it a LIVE entry with these keys, unlinked.
  uint32_t NewEntry(uint64_t seq, uint64_t prefix_hash = 0, uint64_t chain_hash = 0) {
    uint32_t i = index_.PopFree();
    EXPECT_NE(i, kNil);
    seg::Slot& s = slots_[i];
    s.sequence_id = seq;
    s.kind = seg::kEntrySlot;
    s.state = seg::kLive;
    s.prefix_len = prefix_hash != 0 ? 4 : 0;
    s.prefix_hash = prefix_hash;
    s.chain_hash = chain_hash;
    s.chain_blocks = chain_hash != 0 ? 1 : 0;
    return i;
  }
  uint32_t NewChunk(uint64_t hash) {
    uint32_t i = NewEntry(0);
    slots_[i].kind = seg::kChunkSlot;
    slots_[i].prefix_len = 4;  // a chunk stores its own block: not a prefix
    slots_[i].prefix_hash = hash;
    slots_[i].chain_hash = hash;
    slots_[i].chain_blocks = 1;
    return i;
  }

  // The slots of `key`'s chain, in order (all of its bucket).
  std::vector<uint32_t> Walk(SlotIndex::Chain chain, uint64_t key) {
    std::vector<uint32_t> seen;
    Status s = index_.ForEachInBucket(chain, seg::BucketOf(key, kBuckets), [&](uint32_t i) {
      seen.push_back(i);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return seen;
  }
  // The id chain as a lock-free get walks it.
  std::vector<uint32_t> WalkLockFree(uint64_t seq) {
    std::vector<uint32_t> seen;
    for (uint32_t i = index_.IdHeadAcquire(seq); i != kNil && seen.size() <= kSlots;
         i = index_.IdNextAcquire(i)) {
      seen.push_back(i);
    }
    return seen;
  }

  void ExpectCorruption(const Status& s, const std::string& chain) {
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("pool 'p'"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("its " + chain + " index"), std::string::npos) << s.message();
  }

  std::vector<seg::Slot> slots_;
  std::vector<uint32_t> ids_, prefixes_, blocks_;
  uint32_t free_head_ = 0;
  std::string name_ = "p";
  SlotIndex index_;
};

TEST_F(SlotIndexTest, ResetLeavesEveryChainEmptyAndEverySlotFree) {
  for (uint32_t b = 0; b < kBuckets; ++b) {
    EXPECT_EQ(ids_[b], kNil);
    EXPECT_EQ(prefixes_[b], kNil);
    EXPECT_EQ(blocks_[b], kNil);
  }
  for (uint32_t i = 0; i < kSlots; ++i) EXPECT_EQ(index_.PopFree(), i);
  EXPECT_EQ(index_.PopFree(), kNil);
  EXPECT_EQ(free_head_, kNil);
}

TEST_F(SlotIndexTest, IdChainFindsEachOfCollidingEntriesAndUnlinksOne) {
  std::vector<uint64_t> keys = Colliding(3);
  uint32_t a = NewEntry(keys[0]), b = NewEntry(keys[1]), c = NewEntry(keys[2]);
  for (uint32_t i : {a, b, c}) index_.Link(i);
  // One bucket, newest first, for the locked and the lock-free walk alike.
  EXPECT_EQ(Walk(SlotIndex::kIdChain, keys[0]), (std::vector<uint32_t>{c, b, a}));
  EXPECT_EQ(WalkLockFree(keys[0]), (std::vector<uint32_t>{c, b, a}));
  EXPECT_EQ(*index_.FindEntry(keys[0]), a);
  EXPECT_EQ(*index_.FindEntry(keys[1]), b);
  EXPECT_EQ(*index_.FindEntry(keys[2]), c);
  EXPECT_EQ(*index_.FindEntry(Colliding(4)[3]), kNil);  // same bucket, absent

  index_.Unlink(b);  // the middle of the chain
  EXPECT_EQ(slots_[b].id_next, kNil);
  EXPECT_EQ(*index_.FindEntry(keys[1]), kNil);
  EXPECT_EQ(*index_.FindEntry(keys[0]), a);
  EXPECT_EQ(WalkLockFree(keys[0]), (std::vector<uint32_t>{c, a}));
  index_.Unlink(c);  // the head
  EXPECT_EQ(WalkLockFree(keys[0]), (std::vector<uint32_t>{a}));
  index_.Unlink(a);
  EXPECT_EQ(ids_[seg::BucketOf(keys[0], kBuckets)], kNil);
}

TEST_F(SlotIndexTest, FindEntrySkipsSlotsThatAreNotLive) {
  uint32_t i = NewEntry(7);
  index_.Link(i);
  for (uint32_t state : {seg::kWriting, seg::kRetired, seg::kCommitting, seg::kFree}) {
    slots_[i].state = state;
    EXPECT_EQ(*index_.FindEntry(7), kNil) << "state " << state;
  }
  slots_[i].state = seg::kLive;
  EXPECT_EQ(*index_.FindEntry(7), i);
}

TEST_F(SlotIndexTest, PrefixChainKeepsItsLinksWhenAnyMemberLeaves) {
  std::vector<uint64_t> hashes = Colliding(2, 1000);
  // Three entries of one prefix hash and one of another in the same bucket.
  uint32_t a = NewEntry(1, hashes[0]), b = NewEntry(2, hashes[0]), c = NewEntry(3, hashes[1]),
           d = NewEntry(4, hashes[0]);
  for (uint32_t i : {a, b, c, d}) index_.Link(i);
  EXPECT_EQ(Walk(SlotIndex::kPrefixChain, hashes[0]), (std::vector<uint32_t>{d, c, b, a}));
  index_.Unlink(d);  // head
  index_.Unlink(b);  // middle
  EXPECT_EQ(Walk(SlotIndex::kPrefixChain, hashes[1]), (std::vector<uint32_t>{c, a}));
  EXPECT_EQ(slots_[c].prefix_prev, kNil);
  EXPECT_EQ(slots_[a].prefix_prev, c);
  index_.Unlink(a);  // tail
  EXPECT_EQ(Walk(SlotIndex::kPrefixChain, hashes[0]), (std::vector<uint32_t>{c}));
  EXPECT_EQ(slots_[c].prefix_next, kNil);
  // Entries without prefix tokens are in no prefix chain.
  uint32_t e = NewEntry(5);
  index_.Link(e);
  EXPECT_EQ(Walk(SlotIndex::kPrefixChain, hashes[0]), (std::vector<uint32_t>{c}));
  for (uint32_t head : prefixes_) EXPECT_NE(head, e);
}

TEST_F(SlotIndexTest, ChunksAreInTheBlockChainOnly) {
  std::vector<uint64_t> hashes = Colliding(2, 5000);
  uint32_t chunk = NewChunk(hashes[0]);
  uint32_t entry = NewEntry(9, 0, hashes[0]);  // an entry with the same block hash
  uint32_t other = NewChunk(hashes[1]);
  for (uint32_t i : {chunk, entry, other}) index_.Link(i);
  EXPECT_EQ(*index_.FindChunk(hashes[0]), chunk);
  EXPECT_EQ(*index_.FindChunk(hashes[1]), other);
  EXPECT_EQ(Walk(SlotIndex::kBlockChain, hashes[0]), (std::vector<uint32_t>{other, entry, chunk}));
  EXPECT_EQ(*index_.FindEntry(0), kNil);  // chunks have no id
  EXPECT_EQ(Walk(SlotIndex::kPrefixChain, hashes[0]), std::vector<uint32_t>{});
  index_.Unlink(chunk);
  EXPECT_EQ(*index_.FindChunk(hashes[0]), kNil);  // the entry of that hash is not a chunk
  EXPECT_EQ(Walk(SlotIndex::kBlockChain, hashes[0]), (std::vector<uint32_t>{other, entry}));
}

TEST_F(SlotIndexTest, KeysChangeInPlaceWithoutTouchingTheIdChain) {
  uint32_t i = NewEntry(3, 111, 222);
  index_.Link(i);
  index_.UnlinkKeys(i);
  slots_[i].prefix_hash = 333;
  slots_[i].chain_hash = 444;
  index_.LinkKeys(i);
  EXPECT_EQ(*index_.FindEntry(3), i);
  EXPECT_EQ(Walk(SlotIndex::kPrefixChain, 333), std::vector<uint32_t>{i});
  EXPECT_EQ(Walk(SlotIndex::kBlockChain, 444), std::vector<uint32_t>{i});
  if (seg::BucketOf(111, kBuckets) != seg::BucketOf(333, kBuckets)) {
    EXPECT_EQ(prefixes_[seg::BucketOf(111, kBuckets)], kNil);
  }
}

TEST_F(SlotIndexTest, IdLinkOutOfRangeIsCorruption) {
  std::vector<uint64_t> keys = Colliding(3);
  uint32_t a = NewEntry(keys[0]), b = NewEntry(keys[1]);
  index_.Link(a);
  index_.Link(b);
  slots_[b].id_next = 0x7FFFFFF0u;  // the head links far past the table
  ExpectCorruption(index_.FindEntry(keys[0]).status(), "id");
  ExpectCorruption(index_.FindEntry(keys[2]).status(), "id");
  EXPECT_EQ(*index_.FindEntry(keys[1]), b);         // found before the bad link
  ids_[seg::BucketOf(keys[0], kBuckets)] = kSlots;  // a head one past the end
  ExpectCorruption(index_.FindEntry(keys[1]).status(), "id");
}

TEST_F(SlotIndexTest, IdCycleEndsAsCorruption) {
  std::vector<uint64_t> keys = Colliding(3);
  uint32_t a = NewEntry(keys[0]), b = NewEntry(keys[1]);
  index_.Link(a);
  index_.Link(b);
  slots_[a].id_next = b;  // b -> a -> b -> ...
  ExpectCorruption(index_.FindEntry(keys[2]).status(), "id");
  slots_[b].id_next = b;  // a slot linking to itself
  ExpectCorruption(index_.FindEntry(keys[2]).status(), "id");
  // Unlinking walks the same chain: it ends too, and leaves nothing out of range.
  index_.Unlink(a);
  for (const seg::Slot& s : slots_) EXPECT_TRUE(s.id_next == kNil || s.id_next < kSlots);
}

TEST_F(SlotIndexTest, PrefixAndBlockChainDamageIsCorruption) {
  std::vector<uint64_t> hashes = Colliding(3, 1000);
  uint32_t a = NewEntry(1, hashes[0], hashes[0]), b = NewEntry(2, hashes[1], hashes[1]);
  index_.Link(a);
  index_.Link(b);
  slots_[a].prefix_next = b;  // b -> a -> b
  auto never = [](uint32_t) { return true; };
  ExpectCorruption(index_.ForEach<SlotIndex::kPrefixChain>(hashes[0], never), "prefix");
  ExpectCorruption(
      index_.ForEachInBucket(SlotIndex::kPrefixChain, seg::BucketOf(hashes[0], kBuckets), never),
      "prefix");
  slots_[a].chain_next = 0xFFFFFFF0u;
  ExpectCorruption(index_.FindChunk(hashes[2]).status(), "block-prefix");
  ExpectCorruption(index_.ForEach<SlotIndex::kBlockChain>(hashes[0], never), "block-prefix");
  // A walk stopped by its caller before the bad link is whole.
  EXPECT_TRUE(
      index_.ForEach<SlotIndex::kBlockChain>(hashes[0], [](uint32_t) { return false; }).ok());
}

TEST_F(SlotIndexTest, UnlinkNeverWritesThroughALinkOutOfRange) {
  std::vector<uint64_t> keys = Colliding(2), hashes = Colliding(2, 1000);
  uint32_t a = NewEntry(keys[0], hashes[0], hashes[0]), b = NewEntry(keys[1], hashes[0], hashes[0]);
  index_.Link(a);
  index_.Link(b);
  // Links far past the table: a write through any of them would land outside slots_.
  slots_[b].prefix_next = 0x7FFFFFF0u;
  slots_[b].chain_prev = 0x7FFFFFF1u;
  slots_[b].id_next = 0x7FFFFFF2u;
  index_.Unlink(b);
  EXPECT_EQ(slots_[b].prefix_next, kNil);
  EXPECT_EQ(slots_[b].id_next, kNil);
  // b was the head: what lay past its bad link is unreachable, never followed.
  EXPECT_EQ(prefixes_[seg::BucketOf(hashes[0], kBuckets)], kNil);
  EXPECT_EQ(*index_.FindEntry(keys[0]), kNil);
}

TEST_F(SlotIndexTest, FreeListIsLastInFirstOutAndStopsAtDamage) {
  uint32_t a = index_.PopFree(), b = index_.PopFree();
  index_.PushFree(a);
  index_.PushFree(b);
  EXPECT_EQ(index_.PopFree(), b);
  EXPECT_EQ(index_.PopFree(), a);
  free_head_ = 0x7FFFFFF0u;
  EXPECT_EQ(index_.PopFree(), kNil);
  uint32_t in_use = 3;
  slots_[in_use].state = seg::kLive;
  free_head_ = in_use;
  EXPECT_EQ(index_.PopFree(), kNil);
  EXPECT_EQ(free_head_, in_use);  // left for health to report
}

TEST_F(SlotIndexTest, LinkUniqueIdKeepsOneSlotPerId) {
  index_.Clear();
  EXPECT_EQ(free_head_, kNil);
  std::vector<uint64_t> keys = Colliding(2);
  for (uint32_t i = 0; i < 3; ++i) {
    slots_[i].sequence_id = i < 2 ? keys[0] : keys[1];
    slots_[i].generation = 10 + i;
  }
  auto newer = [&](uint32_t mine, uint32_t other) {
    return slots_[mine].generation > slots_[other].generation;
  };
  EXPECT_EQ(index_.LinkUniqueId(0, newer), kNil);
  EXPECT_EQ(index_.LinkUniqueId(2, newer), kNil);  // another id, same bucket
  EXPECT_EQ(index_.LinkUniqueId(1, newer), 0u);    // newer: takes slot 0's place
  EXPECT_EQ(WalkLockFree(keys[0]).size(), 2u);
  slots_[0].generation = 99;
  EXPECT_EQ(index_.LinkUniqueId(0, [](uint32_t, uint32_t) { return false; }), 0u);
  for (uint32_t i : {1u, 2u}) slots_[i].state = seg::kLive;
  EXPECT_EQ(*index_.FindEntry(keys[0]), 1u);
  EXPECT_EQ(*index_.FindEntry(keys[1]), 2u);
}

}  // namespace
}  // namespace kvcache
