// The exact eviction order of every policy, and what all policies share.
#include "kvcache/manager.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Pattern;

class EvictionTest : public testing::IsolatedTest {
 protected:
  // Puts ids 0..n-1 in order, each `size` bytes, priority from `priorities`.
  void Fill(const std::string& pool, int n, std::vector<int32_t> priorities = {}) {
    for (int i = 0; i < n; ++i) {
      PutOptions o;
      if (!priorities.empty()) o.priority = priorities[static_cast<size_t>(i)];
      ASSERT_TRUE(manager().Put(pool, static_cast<uint64_t>(i), Pattern(i, 100), 1, o).ok());
    }
  }
  void Touch(const std::string& pool, uint64_t seq, int times = 1) {
    for (int i = 0; i < times; ++i) ASSERT_TRUE(manager().Get(pool, seq).ok());
  }
  // Evicts one entry at a time and returns the ids in eviction order.
  std::vector<uint64_t> EvictionOrder(const std::string& pool) {
    std::vector<uint64_t> order;
    for (;;) {
      auto before = manager().Entries(pool);
      if (before->empty()) break;
      EXPECT_EQ(*manager().Evict(pool, 100.0 / static_cast<double>(before->size()) / 2), 1u);
      auto after = manager().Entries(pool);
      for (const EntryInfo& e : *before) {
        bool still = std::any_of(after->begin(), after->end(),
                                 [&](const EntryInfo& a) { return a.sequence_id == e.sequence_id; });
        if (!still) order.push_back(e.sequence_id);
      }
    }
    return order;
  }
};

TEST_F(EvictionTest, LruEvictsOldestAccessFirst) {
  CreatePool("lru", 1 << 20, Policy::kLru);
  Fill("lru", 4);
  Touch("lru", 0);
  Touch("lru", 2);
  EXPECT_EQ(EvictionOrder("lru"), (std::vector<uint64_t>{1, 3, 0, 2}));
}

TEST_F(EvictionTest, LruReplacedEntryCountsAsJustAccessed) {
  CreatePool("lru", 1 << 20, Policy::kLru);
  Fill("lru", 6);
  // A replacement takes over the old entry's place in the eviction order in O(1),
  // stale; the order must still treat it as accessed when it was put.
  ASSERT_TRUE(manager().Put("lru", 0, Pattern(10, 100), 1).ok());
  ASSERT_TRUE(manager().Put("lru", 3, Pattern(13, 100), 1).ok());
  Touch("lru", 1);
  ASSERT_TRUE(manager().Put("lru", 0, Pattern(20, 100), 1).ok());
  EXPECT_TRUE(manager().Health("lru")->healthy);
  EXPECT_EQ(*manager().Get("lru", 0), Pattern(20, 100));
  EXPECT_EQ(EvictionOrder("lru"), (std::vector<uint64_t>{2, 4, 5, 3, 1, 0}));
}

TEST_F(EvictionTest, LfuEvictsFewestAccessesTiesByLru) {
  CreatePool("lfu", 1 << 20, Policy::kLfu);
  Fill("lfu", 4);
  Touch("lfu", 0, 3);
  Touch("lfu", 3, 1);
  Touch("lfu", 1, 1);  // 1 and 3 tie on one access; 3 was touched earlier
  EXPECT_EQ(EvictionOrder("lfu"), (std::vector<uint64_t>{2, 3, 1, 0}));
}

TEST_F(EvictionTest, FifoEvictsOldestCreationRegardlessOfAccess) {
  CreatePool("fifo", 1 << 20, Policy::kFifo);
  Fill("fifo", 4);
  Touch("fifo", 0, 5);
  // A replacement counts as a new creation.
  ASSERT_TRUE(manager().Put("fifo", 1, Pattern(1, 100), 1).ok());
  EXPECT_EQ(EvictionOrder("fifo"), (std::vector<uint64_t>{0, 2, 3, 1}));
}

TEST_F(EvictionTest, PriorityEvictsLowestFirstTiesByLru) {
  CreatePool("prio", 1 << 20, Policy::kPriority);
  Fill("prio", 5, {5, -1, 5, 0, 10});
  Touch("prio", 0);  // among priority 5, entry 2 is now the least recent
  EXPECT_EQ(EvictionOrder("prio"), (std::vector<uint64_t>{1, 3, 2, 0, 4}));
}

// What holds for every policy.
class AnyPolicyTest : public EvictionTest, public ::testing::WithParamInterface<Policy> {};

TEST_P(AnyPolicyTest, PinnedEntriesAreSkipped) {
  CreatePool("p", 1 << 20, GetParam());
  Fill("p", 3);
  auto pinned0 = manager().View("p", 0);
  auto pinned1 = manager().View("p", 1);
  EXPECT_EQ(*manager().Evict("p", 100), 1u);
  EXPECT_TRUE(manager().Stat("p", 0).ok());
  EXPECT_TRUE(manager().Stat("p", 1).ok());
  EXPECT_FALSE(manager().Stat("p", 2).ok());
  EXPECT_TRUE(manager().Health("p")->healthy);
}

TEST_P(AnyPolicyTest, FullPoolKeepsAcceptingPuts) {
  CreatePool("p", 256 * 1024, GetParam());  // 64 blocks
  for (uint64_t i = 0; i < 500; ++i) {
    ASSERT_TRUE(manager().Put("p", i, Pattern(i, 4096 * (1 + i % 5)), 1,
                              {.priority = static_cast<int32_t>(i % 3)}).ok()) << i;
  }
  EXPECT_EQ(*manager().Get("p", 499), Pattern(499, 4096 * 5));
  auto st = manager().Stats("p");
  EXPECT_GT(st->evictions, 0u);
  EXPECT_EQ(st->entry_count + st->evictions, 500u);
  EXPECT_TRUE(manager().Health("p")->healthy);
}

TEST_P(AnyPolicyTest, ReplacingPutsKeepTheOrderSound) {
  CreatePool("p", 256 * 1024, GetParam());  // 64 blocks: replacements also evict
  for (uint64_t i = 0; i < 400; ++i) {
    uint64_t id = (i * 7) % 23;
    // Now and then the entry being replaced is pinned: it is retired, not freed.
    Result<EntryView> pin = Status::NotFound("not pinned");
    if (i % 5 == 0) pin = manager().View("p", id);
    ASSERT_TRUE(manager().Put("p", id, Pattern(i, 4096 * (1 + i % 3)), 1,
                              {.priority = static_cast<int32_t>(i % 3)}).ok()) << i;
    if (pin.ok()) {
      EXPECT_EQ(pin->data().size(), pin->info().size_bytes);
    }
    if (i % 3 == 0) (void)manager().Get("p", (i * 5) % 23);
    if (i % 50 == 0) {
      ASSERT_TRUE(manager().Health("p")->healthy) << i;
    }
  }
  EXPECT_EQ(*manager().Get("p", (399 * 7) % 23), Pattern(399, 4096 * (1 + 399 % 3)));
  EXPECT_TRUE(manager().Health("p")->healthy);
  // Every entry left is evicted, one at a time, with no damage met.
  auto st = manager().Stats("p");
  EXPECT_EQ(*manager().Evict("p", 100), st->entry_count);
  EXPECT_EQ(manager().Stats("p")->entry_count, 0u);
  EXPECT_TRUE(manager().Health("p")->healthy);
}

INSTANTIATE_TEST_SUITE_P(Policies, AnyPolicyTest,
                         ::testing::Values(Policy::kLru, Policy::kLfu, Policy::kFifo,
                                           Policy::kPriority),
                         [](const auto& p) { return std::string(PolicyName(p.param)); });

}  // namespace
}  // namespace kvcache
