// The daemon's life: clean unmounts, a SIGKILL and a quick restart.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class DaemonTest : public MountedTest {};

TEST_F(DaemonTest, SigtermUnmountsCleanly) {
  int status = daemon_->Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(IsMounted(mountpoint_));
}

TEST_F(DaemonTest, SigintUnmountsCleanly) {
  int status = daemon_->Kill(SIGINT);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(IsMounted(mountpoint_));
}

TEST_F(DaemonTest, FusermountUnmountStopsTheDaemon) {
  ASSERT_EQ(Shell("fusermount3 -u " + mountpoint_), 0);
  int status = daemon_->Kill(0);  // just reaps it
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_FALSE(IsMounted(mountpoint_));
}

TEST_F(DaemonTest, RestartAfterSigkillReattachesWithEntriesIntact) {
  CreatePool("p", 64 << 20);
  std::vector<std::byte> data = Pattern(9, 5 << 20);
  ASSERT_EQ(WriteFile(Path("p/77"), data), 0);
  daemon_->Kill(SIGKILL);
  ASSERT_TRUE(IsMounted(mountpoint_));  // stale: the kernel still lists it
  std::vector<std::byte> back;
  EXPECT_EQ(ReadFile(Path("p/77"), &back), ENOTCONN);

  auto start = std::chrono::steady_clock::now();
  StartDaemon();
  ASSERT_EQ(ReadFile(Path("p/77"), &back), 0);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(back == data);
  EXPECT_LT(took, std::chrono::milliseconds(500));
  // Only one kvcachefs mount is left at the mount point.
  ASSERT_EQ(Shell("test $(grep -c ' " + mountpoint_ + " .*fuse.kvcachefs' /proc/self/mountinfo) -eq 1"), 0);
}

}  // namespace
}  // namespace kvcache::testing
