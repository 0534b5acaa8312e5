#include "clock.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace kvcache {
namespace {

TEST(ClockTest, ThisProcessExistsRunsAndIsAliveWithItsStartTime) {
  pid_t me = getpid();
  EXPECT_TRUE(PidExists(me));
  EXPECT_TRUE(PidRunning(me));
  uint64_t start = ProcessStartTime(me);
  ASSERT_NE(start, 0u);
  EXPECT_TRUE(ProcessAlive(me, start));
  EXPECT_FALSE(ProcessAlive(me, start + 1));  // another process that had this pid
}

TEST(ClockTest, StampsFollowTheWallClockWithinATick) {
  // The coarse clock moves in scheduler ticks (1-10 ms): never ahead of the precise
  // clock read after it, and never more than a tick (here, generously, 50 ms) behind
  // the one read before it.
  for (int i = 0; i < 1000; ++i) {
    const double before = NowSeconds();
    const double stamp = StampSeconds();
    const double after = NowSeconds();
    ASSERT_LE(stamp, after + 1e-6) << i;
    ASSERT_GE(stamp, before - 0.05) << i;
  }
  // And it moves: 20 ms later it reads later.
  const double first = StampSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GT(StampSeconds(), first);
}

TEST(ClockTest, NoPidBelowOneExists) {
  // kill(0, 0) and kill(-1, 0) would succeed: they name process groups.
  for (pid_t pid : {0, -1}) {
    EXPECT_FALSE(PidExists(pid));
    EXPECT_FALSE(PidRunning(pid));
  }
}

TEST(ClockTest, AZombieExistsButDoesNotRunAndAReapedChildIsGone) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  uint64_t start = ProcessStartTime(child);
  // Until it has exited it may still run; once a zombie, it stays one until reaped.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (PidRunning(child) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(PidExists(child));
  EXPECT_FALSE(PidRunning(child));
  EXPECT_FALSE(ProcessAlive(child, start));
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(PidExists(child));
  EXPECT_FALSE(PidRunning(child));
}

}  // namespace
}  // namespace kvcache
