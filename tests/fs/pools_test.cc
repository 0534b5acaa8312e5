// Pools as directories: mkdir, rmdir, and pools made or destroyed by others.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class PoolsTest : public MountedTest {
 protected:
  void SetUp() override {
    daemon_args_ = {"pool_size=32M", "policy=lfu"};
    MountedTest::SetUp();
  }
  bool Exists(const std::string& rel) {
    struct stat st;
    return stat(Path(rel).c_str(), &st) == 0;
  }
  // Waits up to 3 s for `rel` to (dis)appear.
  bool Eventually(const std::string& rel, bool present) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Exists(rel) == present) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
};

TEST_F(PoolsTest, MkdirCreatesAPoolWithTheMountsDefaults) {
  ASSERT_EQ(mkdir(Path("fresh").c_str(), 0755), 0);
  Result<PoolConfig> config = manager().GetConfig("fresh");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->size_bytes, 32u << 20);
  EXPECT_EQ(config->policy, Policy::kLfu);
  EXPECT_TRUE(Exists("fresh/status"));
  EXPECT_EQ(mkdir(Path("fresh").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
}

TEST_F(PoolsTest, RmdirDestroysOnlyAnEmptyPool) {
  CreatePool("full", 1 << 20);
  CreatePool("empty", 1 << 20);
  ASSERT_TRUE(manager().Put("full", 1, Pattern(1, 10), 0).ok());
  EXPECT_EQ(rmdir(Path("full").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  EXPECT_TRUE(manager().GetConfig("full").ok());
  EXPECT_EQ(rmdir(Path("empty").c_str()), 0);
  EXPECT_FALSE(manager().GetConfig("empty").ok());
  EXPECT_FALSE(Exists("empty"));
}

TEST_F(PoolsTest, BadPoolNamesAreRefused) {
  EXPECT_EQ(mkdir(Path("bad name").c_str(), 0755), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mkdir(Path("-dash").c_str(), 0755), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mkdir(Path(std::string(129, 'a')).c_str(), 0755), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mkdir(Path(std::string(256, 'a')).c_str(), 0755), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  // The fixed top-level names exist already, so the kernel answers before we do.
  EXPECT_EQ(mkdir(Path("status").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(mkdir(Path("p/sub").c_str(), 0755), -1);  // no pool p
  EXPECT_TRUE(manager().ListPools()->empty());
}

TEST_F(PoolsTest, PoolsOfOtherProcessesAppearAndDisappear) {
  EXPECT_FALSE(Exists("other"));
  CreatePool("other", 1 << 20);
  EXPECT_TRUE(Exists("other"));
  EXPECT_TRUE(Exists("other/entries"));
  ASSERT_TRUE(manager().DestroyPool("other").ok());
  EXPECT_TRUE(Eventually("other", false));
  CreatePool("other", 2 << 20);
  EXPECT_TRUE(Eventually("other", true));
}

// Lines of /proc/<pid>/maps that map a removed file whose name holds `needle`.
std::vector<std::string> DeletedMappings(pid_t pid, const std::string& needle) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::vector<std::string> found;
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos && line.find("(deleted)") != std::string::npos) {
      found.push_back(line);
    }
  }
  return found;
}

TEST_F(PoolsTest, PoolDestroyedByCortexIsUnmappedWithinASecond) {
  CreatePool("gone", 8 << 20);
  ASSERT_TRUE(manager().Put("gone", 1, Pattern(1, 1 << 20), 0).ok());
  // The daemon maps the pool without ever looking into its directory: `df` and the
  // mount's status file report every pool.
  std::string status;
  ASSERT_EQ(ReadText(Path("status"), &status), 0);
  ASSERT_NE(status.find("gone"), std::string::npos) << status;
  ASSERT_EQ(Shell("df '" + Path("") + "' >/dev/null"), 0);
  std::string segment = shm_prefix_ + "gone";
  ASSERT_EQ(Shell("grep -q '" + segment + "' /proc/" + std::to_string(daemon_->pid()) +
                  "/maps"),
            0);

  ASSERT_EQ(Shell("'" + BuildDir() + "/cli/cortex' cache destroy gone >/dev/null"), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1200);
  std::vector<std::string> held = DeletedMappings(daemon_->pid(), segment);
  while (!held.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    held = DeletedMappings(daemon_->pid(), segment);
  }
  EXPECT_TRUE(held.empty()) << held.size() << " mappings held, first: " << held.front();
  EXPECT_FALSE(Exists("gone"));
}

}  // namespace
}  // namespace kvcache::testing
