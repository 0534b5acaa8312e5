#include "lease_table.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvcache {
namespace {

using seg::kNil;

class LeaseTableTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kSlots = 8;
  LeaseTableTest() : leases_(4), table_(leases_.data(), 4, &free_head_, &live_, kSlots, &name_) {
    table_.Reset();
  }
  std::vector<seg::Lease> leases_;
  uint32_t free_head_ = 0;
  uint32_t live_ = 0;
  std::string name_ = "p";
  LeaseTable table_;
};

TEST_F(LeaseTableTest, ReleasedByItsOwnerOnly) {
  LeaseTable::Owner me{2, 100}, other{3, 101}, my_old_row{2, 99};
  auto t = table_.Acquire(5, me, 7);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(live_, 1u);
  EXPECT_EQ(*table_.Release(*t, other), kNil);       // another process
  EXPECT_EQ(*table_.Release(*t, my_old_row), kNil);  // the row's earlier process
  EXPECT_EQ(*table_.Release({t->index, 8}, me), kNil);  // another pin in that lease
  EXPECT_EQ(live_, 1u);
  EXPECT_EQ(*table_.Release(*t, me), 5u);
  EXPECT_EQ(live_, 0u);
  EXPECT_EQ(*table_.Release(*t, me), kNil);  // twice: nothing
}

TEST_F(LeaseTableTest, ReusedLeaseIsNotReleasedByAStaleTicket) {
  LeaseTable::Owner me{0, 1};
  auto first = table_.Acquire(1, me, 10);
  ASSERT_TRUE(table_.Release(*first, me).ok());
  auto second = table_.Acquire(2, me, 11);
  ASSERT_EQ(second->index, first->index);  // the same lease, taken again
  EXPECT_EQ(*table_.Release(*first, me), kNil);
  EXPECT_EQ(*table_.Release(*second, me), 2u);
}

TEST_F(LeaseTableTest, FullTableIsBusy) {
  for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(table_.Acquire(i, {0, 1}, 10 + i).ok());
  EXPECT_EQ(table_.Acquire(0, {0, 1}, 20).status().code(), Code::kBusy);
}

TEST_F(LeaseTableTest, RunTakesWhatTheTableHasAndStopsWhenFull) {
  LeaseTable::Owner me{1, 9};
  ASSERT_TRUE(table_.Acquire(7, me, 3).ok());  // one of the four taken already
  const std::vector<uint32_t> slots{4, 5, 6, 7, 0};
  LeaseTable::Ticket out[5];
  EXPECT_EQ(table_.AcquireRun(slots, me, 100, out), 3u);  // three were left
  EXPECT_EQ(live_, 4u);
  EXPECT_EQ(free_head_, kNil);
  EXPECT_EQ(table_.Acquire(0, me, 200).status().code(), Code::kBusy);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(out[k].generation, 100 + k);
    EXPECT_EQ(leases_[out[k].index].slot, slots[k]);
    EXPECT_EQ(leases_[out[k].index].process, 1u);
    EXPECT_EQ(leases_[out[k].index].owner_generation, 9u);
  }
  // Every lease of the run is its own, released by its own ticket only.
  EXPECT_EQ(*table_.Release(out[1], {2, 9}), kNil);
  for (size_t k = 0; k < 3; ++k) EXPECT_EQ(*table_.Release(out[k], me), slots[k]);
  EXPECT_EQ(live_, 1u);
}

TEST_F(LeaseTableTest, RunStopsAtADamagedFreeList) {
  LeaseTable::Ticket out[4];
  const std::vector<uint32_t> slots{1, 2, 3, 4};
  leases_[2].slot = 5;  // on the free list (0 -> 1 -> 2) but in use
  EXPECT_EQ(table_.AcquireRun(slots, {0, 1}, 10, out), 2u);
  EXPECT_EQ(free_head_, 2u);  // left where the damage is, for Acquire to report
  EXPECT_EQ(table_.Acquire(3, {0, 1}, 20).status().code(), Code::kCorruption);
  free_head_ = 77;
  EXPECT_EQ(table_.AcquireRun(slots, {0, 1}, 30, out), 0u);
  EXPECT_EQ(live_, 2u);
}

TEST_F(LeaseTableTest, DamagedFreeListIsCorruptionNamingThePool) {
  free_head_ = 77;
  auto t = table_.Acquire(0, {0, 1}, 1);
  EXPECT_EQ(t.status().code(), Code::kCorruption);
  EXPECT_NE(t.status().message().find("'p'"), std::string::npos);
  free_head_ = 1;
  leases_[1].slot = 3;  // on the free list but in use
  EXPECT_EQ(table_.Acquire(0, {0, 1}, 1).status().code(), Code::kCorruption);
}

TEST_F(LeaseTableTest, LeaseNamingNoSlotIsCorruptionOnRelease) {
  auto t = table_.Acquire(0, {0, 1}, 5);
  leases_[t->index].slot = 1000;
  EXPECT_EQ(table_.Release(*t, {0, 1}).status().code(), Code::kCorruption);
}

TEST_F(LeaseTableTest, RebuildKeepsChosenLeasesAndFreesTheRest) {
  auto a = table_.Acquire(1, {0, 1}, 5);
  auto b = table_.Acquire(2, {1, 2}, 6);
  auto c = table_.Acquire(3, {0, 1}, 7);
  leases_[c->index].slot = 99;  // out of range: dropped whatever keep says
  std::vector<uint32_t> pinned;
  table_.Rebuild([](const seg::Lease& l) { return l.process == 0; },
                 [&](uint32_t slot) { pinned.push_back(slot); });
  EXPECT_EQ(pinned, std::vector<uint32_t>{1});
  EXPECT_EQ(live_, 1u);
  EXPECT_EQ(*table_.Release(*a, {0, 1}), 1u);
  EXPECT_EQ(*table_.Release(*b, {1, 2}), kNil);
  // Every lease is free again and can be taken.
  for (uint32_t i = 0; i < 4; ++i) ASSERT_TRUE(table_.Acquire(i, {0, 1}, 20 + i).ok());
}

}  // namespace
}  // namespace kvcache
