// Manager maps only segments that are provably the pool's own: a regular file of the
// recorded owner, not writable by others unless created so, carrying the pool id the
// catalog recorded at creation.
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "manager_internals.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using ::kvcache::testing::IsolatedTest;
using ::kvcache::testing::Pattern;
using ::kvcache::testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

class OwnershipTest : public IsolatedTest {
 protected:
  std::string Segment(const std::string& pool) { return "/dev/shm/" + manager().ShmName(pool); }
  PoolConfig Config(const std::string& name, uint32_t mode = 0600) {
    PoolConfig c;
    c.name = name;
    c.size_bytes = 4 * kMiB;
    c.mode = mode;
    return c;
  }
};

TEST_F(OwnershipTest, SegmentMadeWritableByOthersIsRefused) {
  ASSERT_TRUE(manager().CreatePool(Config("p")).ok());
  ASSERT_EQ(chmod(Segment("p").c_str(), 0666), 0);
  Manager fresh(options());
  Status s = fresh.Put("p", 1, Pattern(1, 10), 1);
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("every user"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("uid " + std::to_string(geteuid())), std::string::npos);
  ASSERT_EQ(chmod(Segment("p").c_str(), 0620), 0);
  EXPECT_EQ(Manager(options()).Stats("p").status().code(), Code::kPermissionDenied);
  // Read bits for others are the owner's business, not a sign of tampering.
  ASSERT_EQ(chmod(Segment("p").c_str(), 0644), 0);
  EXPECT_TRUE(Manager(options()).Put("p", 1, Pattern(1, 10), 1).ok());
}

TEST_F(OwnershipTest, PoolCreatedWritableOnPurposeStaysUsable) {
  mode_t old = umask(0);
  Status s = manager().CreatePool(Config("shared", 0666));
  umask(old);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Manager fresh(options());
  EXPECT_TRUE(fresh.Put("shared", 1, Pattern(1, 10), 1).ok());
}

TEST_F(OwnershipTest, SegmentWithAnotherPoolIdIsRefused) {
  ASSERT_TRUE(manager().CreatePool(Config("p")).ok());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 10), 1).ok());
  // Another catalog (another home) creates its own p under the same name.
  ASSERT_EQ(unlink(Segment("p").c_str()), 0);
  TempDir other_home;
  Manager other({other_home.path(), shm_prefix_});
  ASSERT_TRUE(other.CreatePool(Config("p")).ok());
  Manager fresh(options());
  Result<EntryInfo> info = fresh.Stat("p", 1);
  EXPECT_EQ(info.status().code(), Code::kPermissionDenied) << info.status().ToString();
  EXPECT_NE(info.status().message().find("pool id"), std::string::npos);
  EXPECT_EQ(fresh.Put("p", 2, Pattern(2, 10), 1).code(), Code::kPermissionDenied);
  // And the other catalog's pool is untouched.
  EXPECT_EQ(other.Stats("p")->entry_count, 0u);
}

TEST_F(OwnershipTest, SegmentUnknownToTheCatalogIsRefusedNotAdopted) {
  TempDir other_home;
  Manager other({other_home.path(), shm_prefix_});
  ASSERT_TRUE(other.CreatePool(Config("p")).ok());
  Status s = manager().CreatePool(Config("p"));
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find(Segment("p")), std::string::npos) << s.message();
  EXPECT_EQ(manager().Put("p", 1, Pattern(1, 10), 1).code(), Code::kPermissionDenied);
  Result<std::vector<std::string>> pools = manager().ListPools();
  ASSERT_TRUE(pools.ok());
  EXPECT_TRUE(pools->empty());
  EXPECT_TRUE(other.Stats("p").ok());
}

TEST_F(OwnershipTest, CatalogRecordsThePoolIdAndOwner) {
  ASSERT_TRUE(manager().CreatePool(Config("p")).ok());
  Result<Catalog*> cat = ManagerInternals::catalog(manager());
  ASSERT_TRUE(cat.ok());
  Result<PoolRecord> record = (*cat)->GetPool("p");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->pool_id.size(), 32u);
  EXPECT_EQ(record->owner_uid, static_cast<int64_t>(geteuid()));
  ASSERT_TRUE(manager().CreatePool(Config("q")).ok());
  EXPECT_NE((*cat)->GetPool("q")->pool_id, record->pool_id);
}

}  // namespace
}  // namespace kvcache
