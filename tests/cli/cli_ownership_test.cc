// A pool belongs to its owner: segments planted by another user under a pool's name
// (in world-writable /dev/shm) are never adopted, written or read, and every refusal
// says whose file it is. Runs a real unprivileged user (created and removed per test).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "cli_runner.h"
#include "support/child_process.h"
#include "support/test_env.h"
#include "support/test_user.h"

namespace kvcache::testing {
namespace {

class CliOwnershipTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    if (!user_.ok()) GTEST_SKIP() << "needs root and useradd";
    user_home_ = user_.MakeDir();
  }
  // `cortex cache args...` as the other user, with its own home and our shm prefix
  // (the default prefix is shared by everyone the same way). Returns the exit code.
  int AsUser(const std::vector<std::string>& args, std::string* out = nullptr) {
    std::vector<std::string> argv = {CortexPath(), "cache"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<std::string> env = {"CORTEX_HOME=" + user_home_,
                                    "CORTEX_SHM_PREFIX=" + shm_prefix_, "HOME=" + user_home_};
    return ::kvcache::testing::Run(user_.Command(argv, env), out);
  }
  std::string Segment(const std::string& pool) { return "/dev/shm/" + shm_prefix_ + pool; }
  uid_t OwnerOf(const std::string& path) {
    struct stat st {};
    return lstat(path.c_str(), &st) == 0 ? st.st_uid : static_cast<uid_t>(-1);
  }
  // The user's own view of its pool: how many entries it holds.
  std::string UserEntryCount(const std::string& pool) {
    std::string out;
    if (AsUser({"status", pool, "--json"}, &out) != 0) return "<status failed>";
    size_t at = out.find("\"entry_count\": ");
    if (at == std::string::npos) return "<no entry_count>";
    return out.substr(at + 15, out.find_first_of(",\n", at) - at - 15);
  }

  TestUser user_;
  std::string user_home_;
};

TEST_F(CliOwnershipTest, PlantedSegmentIsNeverAdoptedByCreatePutOrAnyCommand) {
  ASSERT_EQ(AsUser({"create", "llama", "--size", "16M"}), 0);
  ASSERT_EQ(OwnerOf(Segment("llama")), user_.uid());

  CliResult r = Cache({"create", "llama", "--size", "16M"});
  EXPECT_TRUE(FailedWith(r, user_.name())) << "create must name the file's owner";
  r = Cache({"put", "llama", "1"}, "root's secret prompt");
  EXPECT_TRUE(FailedWith(r, user_.name()));
  for (std::vector<std::string> args :
       {std::vector<std::string>{"status", "llama"}, {"entries", "llama"}, {"health", "llama"},
        {"get", "llama", "1"}, {"rm", "llama", "1"}, {"evict", "llama", "--percent", "50"},
        {"persist", "llama"}, {"attach", "llama", "--pid", std::to_string(getpid())},
        {"destroy", "llama"}}) {
    r = Cache(args);
    EXPECT_TRUE(FailedWith(r, user_.name())) << args[0];
  }
  // The user's pool is as it left it: nothing written into it, still there.
  EXPECT_EQ(UserEntryCount("llama"), "0");
  EXPECT_EQ(OwnerOf(Segment("llama")), user_.uid());
}

TEST_F(CliOwnershipTest, RestoreIntoAPlantedSegmentIsRefused) {
  ASSERT_TRUE(Succeeded(Cache({"create", "llama", "--size", "16M"})));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Succeeded(Cache({"put", "llama", std::to_string(i)}, "secret " + std::to_string(i))));
  }
  ASSERT_TRUE(Succeeded(Cache({"persist", "llama"})));
  // A reboot empties /dev/shm; the other user gets there first.
  ASSERT_EQ(unlink(Segment("llama").c_str()), 0);
  ASSERT_EQ(AsUser({"create", "llama", "--size", "16M"}), 0);

  CliResult r = Cache({"restore", "llama"});
  EXPECT_TRUE(FailedWith(r, user_.name()));
  EXPECT_EQ(UserEntryCount("llama"), "0");
}

TEST_F(CliOwnershipTest, SymlinkPlantedUnderAPoolNameIsRefused) {
  ASSERT_TRUE(Succeeded(Cache({"create", "secret", "--size", "4M"})));
  ASSERT_TRUE(Succeeded(Cache({"put", "secret", "1"}, "root's bytes")));
  ASSERT_TRUE(Succeeded(Cache({"create", "llama", "--size", "4M"})));
  ASSERT_TRUE(Succeeded(Cache({"persist", "llama"})));
  ASSERT_EQ(unlink(Segment("llama").c_str()), 0);
  // The other user points llama's name at root's secret pool.
  ASSERT_EQ(::kvcache::testing::Run(user_.Command({"/bin/ln", "-s", Segment("secret"), Segment("llama")})), 0);
  ASSERT_EQ(OwnerOf(Segment("llama")), user_.uid());

  CliResult r = Cache({"restore", "llama"});
  EXPECT_TRUE(FailedWith(r, "symbolic link"));
  EXPECT_NE(r.err.find(user_.name()), std::string::npos) << r.err;
  r = Cache({"put", "llama", "2"}, "x");
  EXPECT_TRUE(FailedWith(r, "symbolic link"));
  // The secret pool was not touched through the link.
  r = Cache({"entries", "secret", "--json"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out.find("\"sequence_id\": 2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace kvcache::testing
