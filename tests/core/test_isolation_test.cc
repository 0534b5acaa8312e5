// The fixtures' own cleanup stays inside the test's prefix: a test skipped before its
// SetUp ran (no prefix yet) must not remove anyone else's segments, a user's pools or
// another test's half-created one.
#include <fcntl.h>
#include <unistd.h>

#include <random>
#include <string>

#include <fmt/format.h>

#include "support/test_env.h"
#include "support/two_hosts.h"

namespace kvcache::testing {
namespace {

class Sentinel {
 public:
  Sentinel()
      : path_(fmt::format("/dev/shm/kvct_sentinel_{}_{:08x}", getpid(), std::random_device{}())) {
    int fd = open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0) << path_;
    if (fd >= 0) close(fd);
  }
  ~Sentinel() { unlink(path_.c_str()); }
  bool Exists() const { return access(path_.c_str(), F_OK) == 0; }

 private:
  std::string path_;
};

TEST(TestIsolationTest, AnEmptyPrefixRemovesNothing) {
  Sentinel other;
  UnlinkSegmentsWithPrefix("");
  EXPECT_TRUE(other.Exists());
}

// gtest runs TearDown after a SetUp that skipped; these run it with nothing set up.
template <typename Fixture>
class NeverSetUp : public Fixture {
 public:
  void TestBody() override {}
  void CleanUp() { Fixture::TearDown(); }
};

TEST(TestIsolationTest, AFixtureSkippedBeforeItsSetUpRemovesNothing) {
  Sentinel other;
  NeverSetUp<IsolatedTest>().CleanUp();
  EXPECT_TRUE(other.Exists());
}

TEST(TestIsolationTest, ATwoHostsFixtureSkippedBeforeItsSetUpRemovesNothing) {
  Sentinel other;
  NeverSetUp<TwoHostsTest>().CleanUp();
  EXPECT_TRUE(other.Exists());
}

}  // namespace
}  // namespace kvcache::testing
