// Numbers on the command line follow core's one grammar (kvcache/number.h): nothing
// wraps, nothing empty means 0, no other base or sign sneaks in.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

const char* const kBadIds[] = {"", "-1", "0x10", "+5", " 5", "5 ", "010", "1e3",
                               "18446744073709551616"};

class CliNumbersTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "16M"})));
    for (uint64_t seq : {0, 5, 16}) {
      ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 100), 1).ok());
    }
  }
  void ExpectAllEntriesPresent() {
    for (uint64_t seq : {0, 5, 16}) EXPECT_TRUE(manager().Stat("p", seq).ok()) << seq;
  }
};

TEST_F(CliNumbersTest, RmRefusesIdsThatAreNotCanonicalDecimals) {
  for (const char* bad : kBadIds) {
    CliResult r = Cache({"rm", "p", bad});
    EXPECT_TRUE(UsageError(r)) << "'" << bad << "'";
    EXPECT_NE(r.err.find("sequence id"), std::string::npos) << Describe(r);
  }
  ExpectAllEntriesPresent();
  EXPECT_TRUE(Succeeded(Cache({"rm", "p", "16"})));
  EXPECT_FALSE(manager().Stat("p", 16).ok());
}

TEST_F(CliNumbersTest, GetAndPutRefuseBadIdsAndCounts) {
  for (const char* bad : kBadIds) {
    EXPECT_TRUE(UsageError(Cache({"get", "p", bad, "-o", "/dev/null"}))) << bad;
    EXPECT_TRUE(UsageError(Cache({"put", "p", bad}, "x"))) << bad;
    EXPECT_TRUE(UsageError(Cache({"put", "p", "7", "--tokens", bad}, "x"))) << bad;
  }
  for (const char* bad : {"", "+1", "0x1", " 1", "2147483648", "-2147483649"}) {
    EXPECT_TRUE(UsageError(Cache({"put", "p", "7", "--priority", bad}, "x"))) << bad;
  }
  EXPECT_FALSE(manager().Stat("p", 7).ok());
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "7", "--tokens", "3", "--priority", "-2"}, "x")));
  Result<EntryInfo> info = manager().Stat("p", 7);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->token_count, 3u);
  EXPECT_EQ(info->priority, -2);
  ExpectAllEntriesPresent();
}

TEST_F(CliNumbersTest, CreateRefusesEmptyPolicyAndBadCounts) {
  EXPECT_TRUE(UsageError(Cache({"create", "q", "--size", "1M", "--policy", ""})));
  EXPECT_TRUE(UsageError(Cache({"create", "q", "--size", "1M", "--tier", ""})));
  for (const char* bad : {"", "-1", "0x10", "+5", " 5", "4294967296"}) {
    EXPECT_TRUE(UsageError(Cache({"create", "q", "--size", "1M", "--max-sequences", bad})))
        << bad;
  }
  EXPECT_TRUE(UsageError(Cache({"attach", "p", "--pid", "0x10"})));
  EXPECT_TRUE(UsageError(Cache({"attach", "p", "--pid", "-1"})));
  EXPECT_FALSE(manager().GetConfig("q").ok());
  ASSERT_TRUE(Succeeded(Cache({"create", "q", "--size", "1M", "--policy", "LFU",
                               "--max-sequences", "7"})));
  Result<PoolConfig> config = manager().GetConfig("q");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->policy, Policy::kLfu);
  EXPECT_EQ(config->max_sequences, 7u);
}

class CliRestoreModeTest : public IsolatedTest {
 protected:
  mode_t SegmentMode(const std::string& pool) {
    struct stat st {};
    if (stat(("/dev/shm/" + shm_prefix_ + pool).c_str(), &st) != 0) return 0;
    return st.st_mode & 07777;
  }
};

TEST_F(CliRestoreModeTest, ModeComesFromTheCallerNeverFromTheSnapshot) {
  PoolConfig config;
  config.name = "open";
  config.size_bytes = 1 << 20;
  config.mode = 0777;  // recorded in the snapshot's config as "mode": 511
  ASSERT_TRUE(manager().CreatePool(config).ok());
  ASSERT_TRUE(Succeeded(Cache({"put", "open", "1"}, "bytes")));
  std::string path = home_->Join("open.cache");
  ASSERT_TRUE(Succeeded(Cache({"persist", "open", "--path", path})));

  ASSERT_TRUE(Succeeded(Cache({"restore", "a", "--path", path})));
  EXPECT_EQ(SegmentMode("a"), 0600u);
  ASSERT_TRUE(Succeeded(Cache({"restore", "b", "--path", path, "--mode", "0640"})));
  EXPECT_EQ(SegmentMode("b"), 0640u);
  for (const char* bad : {"", "999", "1777", "0x1ff", "-600"}) {
    EXPECT_TRUE(UsageError(Cache({"restore", "c", "--path", path, "--mode", bad}))) << bad;
  }
  EXPECT_EQ(SegmentMode("c"), 0u);
}

}  // namespace
}  // namespace kvcache::testing
