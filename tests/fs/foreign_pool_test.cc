// The daemon maps only pools of its own catalog whose segment is provably theirs: a
// name looked up in the mount never makes it open a file another user put in /dev/shm.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "mount_fixture.h"
#include "support/test_user.h"

namespace kvcache::testing {
namespace {

std::string Maps(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ForeignPoolTest : public MountedTest {
 protected:
  std::string Segment(const std::string& pool) { return "/dev/shm/" + shm_prefix_ + pool; }
};

TEST_F(ForeignPoolTest, SegmentPlantedByAnotherUserIsNeverMapped) {
  TestUser user;
  if (!user.ok()) GTEST_SKIP() << "needs root and useradd";
  // Another user's pool under a name this catalog does not know.
  TempDir other_home;
  Manager other({other_home.path(), shm_prefix_});
  PoolConfig config;
  config.name = "llama";
  config.size_bytes = 1 << 20;
  ASSERT_TRUE(other.CreatePool(config).ok());
  ASSERT_EQ(chown(Segment("llama").c_str(), user.uid(), user.gid()), 0);
  // And a symlink to one of this catalog's pools.
  CreatePool("mine", 1 << 20);
  ASSERT_EQ(symlink(Segment("mine").c_str(), Segment("alias").c_str()), 0);

  struct stat st {};
  EXPECT_NE(stat(Path("llama").c_str(), &st), 0);
  EXPECT_NE(stat(Path("alias").c_str(), &st), 0);
  EXPECT_NE(stat(Path("llama/status").c_str(), &st), 0);
  std::string maps = Maps(daemon_->pid());
  EXPECT_EQ(maps.find(Segment("llama")), std::string::npos) << maps;
  EXPECT_EQ(maps.find(Segment("alias")), std::string::npos) << maps;
  // The daemon's own pool still works.
  EXPECT_EQ(stat(Path("mine").c_str(), &st), 0);
  unlink(Segment("alias").c_str());
}

}  // namespace
}  // namespace kvcache::testing
