// An untrusted CORTEX_HOME: a home (or a directory in it) that someone else owns or
// may write is refused, and files in it are never followed through planted symlinks.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "kvcache/snapshot.h"
#include "support/test_env.h"
#include "support/test_user.h"

namespace kvcache {
namespace {

using ::kvcache::testing::IsolatedTest;
using ::kvcache::testing::Pattern;
using ::kvcache::testing::TempDir;
using ::kvcache::testing::TestUser;

constexpr uint64_t kMiB = 1 << 20;

PoolConfig Config(const std::string& name) {
  PoolConfig c;
  c.name = name;
  c.size_bytes = 4 * kMiB;
  return c;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

class HomeTrustTest : public IsolatedTest {
 protected:
  std::string NewHome() {
    std::string home = scratch_.Join("home" + std::to_string(n_++));
    EXPECT_EQ(mkdir(home.c_str(), 0700), 0);
    return home;
  }
  TempDir scratch_;
  int n_ = 0;
};

TEST_F(HomeTrustTest, HomeWritableByOthersIsRefused) {
  std::string home = NewHome();
  ASSERT_EQ(chmod(home.c_str(), 0777), 0);
  Manager m({home, shm_prefix_});
  Status s = m.CreatePool(Config("p"));
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("every user"), std::string::npos) << s.message();
  EXPECT_FALSE(Exists(home + "/kv_cache.db"));
  EXPECT_FALSE(Exists("/dev/shm/" + m.ShmName("p")));
  ASSERT_EQ(chmod(home.c_str(), 0770), 0);
  EXPECT_EQ(Manager({home, shm_prefix_}).ListPools().status().code(), Code::kPermissionDenied);
}

TEST_F(HomeTrustTest, HomeOwnedByAnotherUserIsRefusedNamingThem) {
  TestUser user;
  if (!user.ok()) GTEST_SKIP() << "needs root and useradd";
  std::string home = user.MakeDir();
  Manager m({home, shm_prefix_});
  Status s = m.CreatePool(Config("p"));
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find(user.name()), std::string::npos) << s.message();
  EXPECT_FALSE(Exists(home + "/kv_cache.db"));
  EXPECT_EQ(m.CheckHome().code(), Code::kPermissionDenied);
}

TEST_F(HomeTrustTest, SubdirectoriesWritableByOthersAreRefused) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  std::string persist_dir = home_->Join("kv_persist");
  ASSERT_EQ(chmod(persist_dir.c_str(), 0777), 0);
  Result<PersistResult> persisted = PersistPool(manager(), "p");
  EXPECT_EQ(persisted.status().code(), Code::kPermissionDenied) << persisted.status().ToString();
  Result<RestoreResult> restored = RestorePool(manager(), "p");
  EXPECT_EQ(restored.status().code(), Code::kPermissionDenied) << restored.status().ToString();
  EXPECT_TRUE(manager().Stat("p", 1).ok());

  ASSERT_EQ(mkdir(home_->Join("kv_disk").c_str(), 0777), 0);
  ASSERT_EQ(chmod(home_->Join("kv_disk").c_str(), 0777), 0);
  PoolConfig disk = Config("d");
  disk.tier = Tier::kDisk;
  EXPECT_EQ(manager().CreatePool(disk).code(), Code::kPermissionDenied);
}

TEST_F(HomeTrustTest, CatalogAndItsSiblingsAreNeverFollowedThroughSymlinks) {
  for (const char* name : {"kv_cache.db", "kv_cache.db-wal", "kv_cache.db-shm"}) {
    std::string home = NewHome();
    std::string target = scratch_.Join(std::string("target-") + name);
    ASSERT_EQ(symlink(target.c_str(), (home + "/" + name).c_str()), 0);
    Manager m({home, shm_prefix_});
    Result<std::vector<std::string>> pools = m.ListPools();
    EXPECT_EQ(pools.status().code(), Code::kPermissionDenied) << name << ": "
                                                              << pools.status().ToString();
    EXPECT_NE(pools.status().message().find("symbolic link"), std::string::npos);
    EXPECT_FALSE(Exists(target)) << name << " was followed";
  }
}

TEST_F(HomeTrustTest, DefaultSnapshotPathIsNeverFollowedThroughASymlink) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  // A valid snapshot elsewhere, linked in as p's default snapshot.
  PersistOptions elsewhere;
  elsewhere.path = scratch_.Join("elsewhere.cache");
  ASSERT_TRUE(PersistPool(manager(), "p", elsewhere).ok());
  ASSERT_EQ(mkdir(home_->Join("kv_persist").c_str(), 0700), 0);
  ASSERT_EQ(symlink(elsewhere.path.c_str(), manager().DefaultSnapshotPath("p").c_str()), 0);
  Result<RestoreResult> restored = RestorePool(manager(), "p");
  EXPECT_EQ(restored.status().code(), Code::kPermissionDenied) << restored.status().ToString();
  // Given explicitly, a path is the caller's choice and may be a link.
  RestoreOptions explicit_path;
  explicit_path.path = manager().DefaultSnapshotPath("p");
  EXPECT_TRUE(RestorePool(manager(), "p", explicit_path).ok());
}

}  // namespace
}  // namespace kvcache
