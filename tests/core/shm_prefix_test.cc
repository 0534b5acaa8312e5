// CORTEX_SHM_PREFIX names files in /dev/shm: it must never reach outside it.
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "kvcache/manager.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using ::kvcache::testing::TempDir;

TEST(ShmPrefixTest, ValidPrefixesAreAccepted) {
  for (const char* ok : {"cortex_kv_", "kvct_12_3_", "a", "A.b-c_", "_x"}) {
    EXPECT_TRUE(ValidateShmPrefix(ok).ok()) << ok;
  }
  EXPECT_TRUE(ValidateShmPrefix(std::string(kMaxShmPrefixLength, 'a')).ok());
}

TEST(ShmPrefixTest, PrefixesThatLeaveDevShmOrHideAreRefused) {
  for (const char* bad : {"../../x/", "a/b", "/abs", "..", "x..y", ".hidden", "-x", "a b",
                          "a\nb", "a*", "\xc3\xa9"}) {
    Status s = ValidateShmPrefix(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("CORTEX_SHM_PREFIX"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(ValidateShmPrefix(std::string(kMaxShmPrefixLength + 1, 'a')).ok());
}

TEST(ShmPrefixTest, ManagerWithABadPrefixCreatesNothing) {
  TempDir home;
  TempDir outside;
  // Relative to /dev/shm, this would name a file in `outside`.
  std::string prefix = "../.." + outside.path() + "/";
  Manager m({home.path(), prefix});
  PoolConfig config;
  config.name = "p";
  config.size_bytes = 1 << 20;
  Status s = m.CreatePool(config);
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(m.Stats("p").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m.DestroyPool("p").code(), Code::kInvalidArgument);
  struct stat st {};
  EXPECT_NE(stat((outside.path() + "/p").c_str(), &st), 0) << "segment created outside /dev/shm";
  EXPECT_NE(stat((home.path() + "/kv_cache.db").c_str(), &st), 0);
}

}  // namespace
}  // namespace kvcache
