// Pools shared by real separate processes (tests/core/pool_worker): pools outlive
// their creators, concurrent processes never see torn or foreign bytes, and a process
// killed at any point does not wedge or corrupt the pool.
#include <signal.h>

#include <chrono>

#include "kvcache/manager.h"
#include "support/child_process.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Child;
using testing::Pattern;

class MultiProcessTest : public testing::IsolatedTest {
 protected:
  std::string Worker() { return testing::BuildDir() + "/tests/core/pool_worker"; }
  void ExpectHealthy(const std::string& pool) {
    auto h = manager().Health(pool);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_TRUE(h->healthy);
    for (const auto& p : h->problems) ADD_FAILURE() << p;
  }
  // Runs `fn` and fails the test if it takes a second or more.
  template <typename Fn>
  void WithinASecond(Fn fn) {
    auto start = std::chrono::steady_clock::now();
    fn();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  }
};

TEST_F(MultiProcessTest, PoolOutlivesTheProcessThatFilledIt) {
  CreatePool("shared", 64 << 20);
  manager_.reset();  // this process holds nothing now
  ASSERT_EQ(testing::Run({Worker(), "put", "shared", "7", "3000000", "99"}), 0);
  ASSERT_EQ(testing::Run({Worker(), "check", "shared", "7", "3000000", "99"}), 0);
  ASSERT_EQ(testing::Run({Worker(), "check", "shared", "7", "3000000", "98"}), 2);
  manager_ = std::make_unique<Manager>(options());
  EXPECT_EQ(*manager().Get("shared", 7), Pattern(99, 3000000));
  EXPECT_EQ(manager().Stats("shared")->hits, 3u);
}

TEST_F(MultiProcessTest, ConcurrentProcessesSeeNoTornBytesAndLoseNothing) {
  CreatePool("stress", 256 << 20);
  std::vector<std::unique_ptr<Child>> workers;
  for (int w = 0; w < 4; ++w) {
    workers.push_back(std::make_unique<Child>(std::vector<std::string>{
        Worker(), "stress", "stress", "3", std::to_string(w), "64"}));
  }
  for (auto& w : workers) {
    EXPECT_EQ(w->Wait(), 0) << w->output();
  }
  ExpectHealthy("stress");
}

TEST_F(MultiProcessTest, LockFreeGetsRaceReplacementsOfAFewIds) {
  // Four ids replaced all the time by both processes: every lock-free get races a
  // replacement that frees and reuses slots and blocks.
  CreatePool("race", 64 << 20);
  Child a({Worker(), "stress", "race", "2", "0", "4"});
  Child b({Worker(), "stress", "race", "2", "1", "4"});
  EXPECT_EQ(a.Wait(), 0) << a.output();
  EXPECT_EQ(b.Wait(), 0) << b.output();
  ExpectHealthy("race");
}

TEST_F(MultiProcessTest, ConcurrentProcessesUnderEvictionPressure) {
  // Too small for the working set: evictions and frees race with reads all along.
  CreatePool("tight", 2 << 20);
  std::vector<std::unique_ptr<Child>> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(std::make_unique<Child>(std::vector<std::string>{
        Worker(), "stress", "tight", "2", std::to_string(w), "200"}));
  }
  // Own entries of a worker may be evicted here, so only data errors (2) fail.
  for (auto& w : workers) EXPECT_NE(w->Wait(), 2) << w->output();
  ExpectHealthy("tight");
}

TEST_F(MultiProcessTest, ProcessKilledHoldingTheLockDoesNotWedgeThePool) {
  CreatePool("lock", 8 << 20);
  ASSERT_TRUE(manager().Put("lock", 1, Pattern(1, 5000), 1).ok());
  Child holder({Worker(), "hold-lock", "lock"});
  ASSERT_TRUE(holder.WaitForLine("ready"));
  holder.Kill(SIGKILL);
  holder.Wait();
  WithinASecond([&] {
    ASSERT_TRUE(manager().Put("lock", 2, Pattern(2, 5000), 1).ok());
    EXPECT_EQ(*manager().Get("lock", 1), Pattern(1, 5000));
  });
  ExpectHealthy("lock");
}

TEST_F(MultiProcessTest, ProcessKilledHoldingPinsReleasesThem) {
  CreatePool("pins", 1 << 20);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(manager().Put("pins", i, Pattern(i, 256 * 1024 - 100), 1).ok());
  }
  Child holder({Worker(), "hold-pins", "pins", "0", "1", "2", "3"});
  ASSERT_TRUE(holder.WaitForLine("ready"));
  EXPECT_EQ(manager().Health("pins")->pinned_entries, 4u);
  EXPECT_EQ(manager().Put("pins", 9, Pattern(9, 4096), 1).code(), Code::kNoSpace);
  holder.Kill(SIGKILL);
  holder.Wait();
  WithinASecond([&] {
    ASSERT_TRUE(manager().Put("pins", 9, Pattern(9, 4096), 1).ok());
  });
  EXPECT_EQ(manager().Health("pins")->pinned_entries, 0u);
  ExpectHealthy("pins");
}

TEST_F(MultiProcessTest, ProcessKilledMidPutLeavesNoTrace) {
  CreatePool("half", 1 << 20);
  ASSERT_TRUE(manager().Put("half", 5, Pattern(5, 1000), 1).ok());
  Child writer({Worker(), "half-put", "half", "5", "900000"});
  ASSERT_TRUE(writer.WaitForLine("ready"));
  EXPECT_EQ(*manager().Get("half", 5), Pattern(5, 1000));  // old entry still served
  writer.Kill(SIGKILL);
  writer.Wait();
  WithinASecond([&] {
    // Needs the space the dead writer reserved.
    ASSERT_TRUE(manager().Put("half", 6, Pattern(6, 600000), 1).ok());
  });
  EXPECT_EQ(*manager().Get("half", 5), Pattern(5, 1000));
  auto health = manager().Health("half");
  EXPECT_TRUE(health->healthy);
  EXPECT_EQ(manager().Stats("half")->entry_count, 2u);
}

TEST_F(MultiProcessTest, HealthRecoversDeadWritersAndReportsIt) {
  CreatePool("rec", 1 << 20);
  Child writer({Worker(), "half-put", "rec", "1", "4096"});
  ASSERT_TRUE(writer.WaitForLine("ready"));
  EXPECT_EQ(manager().Stats("rec")->used, 4096u);
  writer.Kill(SIGKILL);
  writer.Wait();
  auto h = manager().Health("rec");
  EXPECT_TRUE(h->healthy);
  EXPECT_EQ(h->recovered_processes, 1u);
  EXPECT_EQ(manager().Stats("rec")->used, 0u);
}

}  // namespace
}  // namespace kvcache
