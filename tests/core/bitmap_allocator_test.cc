#include "bitmap_allocator.h"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

namespace kvcache {
namespace {

class BitmapAllocatorTest : public ::testing::Test {
 protected:
  void Make(uint64_t blocks) {
    words_.assign((blocks + 63) / 64, ~uint64_t{0});
    alloc_.emplace(words_.data(), blocks);
    alloc_->Reset();
  }
  std::vector<uint64_t> words_;
  std::optional<BitmapAllocator> alloc_;
};

TEST_F(BitmapAllocatorTest, AllocatesContiguousRuns) {
  Make(1000);
  EXPECT_EQ(alloc_->Allocate(10, 0), 0u);
  EXPECT_EQ(alloc_->Allocate(100, 0), 10u);
  EXPECT_EQ(alloc_->CountAllocated(), 110u);
  EXPECT_TRUE(alloc_->AllSet(0, 110));
  EXPECT_TRUE(alloc_->AllClear(110, 890));
}

TEST_F(BitmapAllocatorTest, FreedRunIsReused) {
  Make(256);
  uint64_t a = alloc_->Allocate(64, 0);
  uint64_t b = alloc_->Allocate(64, 0);
  alloc_->Free(a, 64);
  EXPECT_EQ(alloc_->Allocate(64, b + 64), b + 64);
  EXPECT_EQ(alloc_->Allocate(64, 0), a);
  EXPECT_EQ(alloc_->CountAllocated(), 192u);
}

TEST_F(BitmapAllocatorTest, FullPoolReturnsNone) {
  Make(130);  // padding bits in the last word must never be handed out
  EXPECT_EQ(alloc_->Allocate(130, 0), 0u);
  EXPECT_EQ(alloc_->Allocate(1, 0), BitmapAllocator::kNone);
  alloc_->Free(129, 1);
  EXPECT_EQ(alloc_->Allocate(2, 0), BitmapAllocator::kNone);
  EXPECT_EQ(alloc_->Allocate(1, 0), 129u);
  EXPECT_EQ(alloc_->Allocate(131, 0), BitmapAllocator::kNone);
}

TEST_F(BitmapAllocatorTest, FragmentedSpaceNeedsAContiguousRun) {
  Make(640);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_EQ(alloc_->Allocate(64, 0), i * 64);
  for (uint64_t i = 0; i < 10; i += 2) alloc_->Free(i * 64 + 10, 40);  // holes of 40
  EXPECT_EQ(alloc_->CountAllocated(), 640u - 200u);
  EXPECT_EQ(alloc_->Allocate(41, 0), BitmapAllocator::kNone);
  EXPECT_EQ(alloc_->Allocate(40, 0), 10u);
  alloc_->Free(64 * 3, 64);
  alloc_->Free(64 * 2, 64);  // blocks 128..255 are now one free run
  EXPECT_EQ(alloc_->Allocate(128, 0), 128u);
}

TEST_F(BitmapAllocatorTest, RunsCrossWordBoundariesAndHintWraps) {
  Make(200);
  ASSERT_EQ(alloc_->Allocate(60, 0), 0u);
  EXPECT_EQ(alloc_->Allocate(10, 0), 60u);  // spans words 0 and 1
  EXPECT_TRUE(alloc_->AllSet(60, 10));
  EXPECT_EQ(alloc_->Allocate(20, 190), 70u);  // nothing fits after the hint: wraps
}

TEST_F(BitmapAllocatorTest, ThreadSafeUnderTheCallersLock) {
  Make(4096);
  std::mutex mu;
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        std::lock_guard<std::mutex> lock(mu);
        uint64_t n = 1 + (i % 4);
        uint64_t first = alloc_->Allocate(n, 0);
        if (first != BitmapAllocator::kNone) got[t].push_back({first, n});
        if (i % 3 == 0 && !got[t].empty()) {
          alloc_->Free(got[t].back().first, got[t].back().second);
          got[t].pop_back();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> owned;
  uint64_t total = 0;
  for (auto& runs : got) {
    for (auto [first, n] : runs) {
      for (uint64_t b = first; b < first + n; ++b) EXPECT_TRUE(owned.insert(b).second) << b;
      total += n;
    }
  }
  EXPECT_EQ(alloc_->CountAllocated(), total);
}

}  // namespace
}  // namespace kvcache
