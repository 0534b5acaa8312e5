// The daemon's life: clean unmounts, a SIGKILL and a quick restart.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "kvcache/prefix.h"
#include "kvcache/snapshot.h"
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

TEST_F(DaemonTest, RestoreOptionBringsBackPoolsWhoseMemoryIsGone) {
  CreatePool("keep", 16 << 20);
  CreatePool("nosnap", 16 << 20);
  std::vector<std::byte> data = Pattern(3, 300000);
  ASSERT_TRUE(manager().Put("keep", 5, data, 12, {.prefix_tokens = {1, 2, 3}}).ok());
  ASSERT_TRUE(PersistPool(manager(), "keep").ok());
  daemon_->Kill(SIGTERM);
  // What a reboot does: the segments vanish, the catalog and snapshots stay.
  UnlinkSegmentsWithPrefix(shm_prefix_);
  manager_ = std::make_unique<Manager>(options());
  ASSERT_FALSE(manager().Stats("keep")->loaded);

  StartDaemon({"-o", "restore"});
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("keep/5"), &back), 0);
  EXPECT_TRUE(back == data);
  EXPECT_TRUE(manager().Stats("keep")->loaded);
  std::string hash = PrefixHash(std::vector<uint32_t>{1, 2, 3});
  EXPECT_EQ(manager().Stat("keep", 5)->prefix_hash, hash);
  EXPECT_EQ(Shell("test -L '" + Path("keep/by-prefix/" + hash + "/5") + "'"), 0);
  // A pool without a snapshot stays known but not loaded.
  EXPECT_FALSE(manager().Stats("nosnap")->loaded);
}

}  // namespace
}  // namespace kvcache::testing
