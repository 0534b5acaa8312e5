// Creating a pool segment leaks nothing: a creator that dies between creating its
// temporary file and publishing it leaves a file the next creation sweeps away (but a
// live creator's file is never touched), and a segment whose initialization failed is
// never published. Real processes, killed and stopped at the fault points.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kvcache/manager.h"
#include "support/child_process.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Child;

class SegmentCreateTest : public testing::IsolatedTest {
 protected:
  std::string Worker() { return testing::BuildDir() + "/tests/core/pool_worker"; }
  // The creating files of process `pid` in /dev/shm.
  std::vector<std::string> CreatingFilesOf(pid_t pid) {
    std::vector<std::string> out;
    std::string prefix = ".kvc-creating-" + std::to_string(pid) + "-";
    DIR* d = opendir("/dev/shm");
    while (dirent* e = d != nullptr ? readdir(d) : nullptr) {
      if (std::string(e->d_name).rfind(prefix, 0) == 0) out.push_back("/dev/shm/" + std::string(e->d_name));
    }
    if (d != nullptr) closedir(d);
    return out;
  }
  // Makes a file look older than the sweep's grace period.
  void Age(const std::string& path) {
    timespec times[2];
    clock_gettime(CLOCK_REALTIME, &times[0]);
    times[0].tv_sec -= 60;
    times[1] = times[0];
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }
  bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }
  std::string Segment(const std::string& pool) { return "/dev/shm/" + manager().ShmName(pool); }
};

TEST_F(SegmentCreateTest, CreatorKilledBeforePublishingLeavesNothingAfterTheNextCreate) {
  setenv("KVC_TEST_CRASH_AT", "create-unpublished", 1);
  Child creator({Worker(), "create", "dead", "4194304"});
  unsetenv("KVC_TEST_CRASH_AT");
  ASSERT_EQ(creator.Wait(), 128 + SIGKILL);
  std::vector<std::string> left = CreatingFilesOf(creator.pid());
  ASSERT_EQ(left.size(), 1u);  // the whole pool size, held by nobody
  EXPECT_FALSE(Exists(Segment("dead")));
  Age(left[0]);
  CreatePool("next", 1 << 20);
  EXPECT_FALSE(Exists(left[0]));
}

TEST_F(SegmentCreateTest, LiveCreatorsFileIsNotSwept) {
  setenv("KVC_TEST_STOP_AT", "create-unpublished", 1);
  Child creator({Worker(), "create", "slow", "4194304"});
  unsetenv("KVC_TEST_STOP_AT");
  std::vector<std::string> mine;
  for (int i = 0; i < 500 && mine.empty(); ++i, usleep(10000)) {
    mine = CreatingFilesOf(creator.pid());
  }
  ASSERT_EQ(mine.size(), 1u);
  usleep(100000);  // it stops itself right after initializing
  Age(mine[0]);
  CreatePool("other", 1 << 20);
  EXPECT_TRUE(Exists(mine[0]));  // its creator still holds it
  creator.Kill(SIGCONT);
  ASSERT_EQ(creator.Wait(), 0);  // and finishes creating the pool
  EXPECT_TRUE(Exists(Segment("slow")));
  EXPECT_FALSE(Exists(mine[0]));
  EXPECT_TRUE(manager().Put("slow", 1, testing::Pattern(1, 100), 1).ok());
}

TEST_F(SegmentCreateTest, FailedInitPublishesNothing) {
  setenv("KVC_TEST_FAIL_AT", "pool-lock-init", 1);
  PoolConfig config;
  config.name = "broken";
  config.size_bytes = 1 << 20;
  Status s = manager().CreatePool(config);
  unsetenv("KVC_TEST_FAIL_AT");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("pool lock"), std::string::npos) << s.ToString();
  EXPECT_FALSE(Exists(Segment("broken")));
  EXPECT_TRUE(CreatingFilesOf(getpid()).empty());
  // Nothing half made is in the way of doing it again.
  EXPECT_TRUE(manager().CreatePool(config).ok());
  EXPECT_TRUE(manager().Put("broken", 1, testing::Pattern(1, 100), 1).ok());
}

}  // namespace
}  // namespace kvcache
