// Read-only text files and the evict / persist / restore control files.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "kvcache/report.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class ControlFilesTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 64 << 20);
    for (uint64_t s = 1; s <= 8; ++s) ASSERT_TRUE(manager().Put("p", s, Pattern(s, 1000), s).ok());
  }
  std::string Read(const std::string& rel) {
    std::string out;
    int err = ReadText(Path(rel), &out);
    return err == 0 ? out : "<errno " + std::to_string(err) + ">";
  }
  size_t Count() { return manager().Entries("p")->size(); }
};

TEST_F(ControlFilesTest, TextFilesShowWhatTheCliPrints) {
  EXPECT_EQ(Read("status"), FormatStatusTable(*manager().StatsAll()));
  EXPECT_EQ(Read("metrics"), FormatMetrics(*manager().StatsAll()));
  EXPECT_EQ(Read("p/status"), FormatStatusTable({*manager().Stats("p")}));
  EXPECT_EQ(Read("p/entries"), FormatEntries("p", *manager().Entries("p")));
  EXPECT_EQ(Read("p/config"), FormatConfig(*manager().GetConfig("p")));
  EXPECT_NE(Read("p/health").find("Health check for 'p'"), std::string::npos);
  EXPECT_NE(Read("metrics").find("pool=\"p\""), std::string::npos);
}

TEST_F(ControlFilesTest, TextFilesAreReadOnly) {
  for (const char* rel : {"status", "metrics", "p/status", "p/health", "p/entries", "p/config"}) {
    EXPECT_EQ(open(Path(rel).c_str(), O_WRONLY), -1) << rel;
    EXPECT_EQ(errno, EACCES) << rel;
  }
}

TEST_F(ControlFilesTest, EvictTakesAPercentAndReportsTheResult) {
  ASSERT_EQ(WriteText(Path("p/evict"), "25\n"), 0);
  EXPECT_EQ(Count(), 6u);
  EXPECT_EQ(Read("p/evict"), EvictedMessage("p", 2) + "\n");
  ASSERT_EQ(WriteText(Path("p/evict"), "50%\n"), 0);
  EXPECT_EQ(Count(), 3u);
  EXPECT_EQ(Read("p/evict"), EvictedMessage("p", 3) + "\n");
}

TEST_F(ControlFilesTest, MalformedEvictIsEinvalChangesNothingAndSaysWhy) {
  for (const char* bad : {"abc\n", "0\n", "150\n", "-5\n", "\n", "25%%\n"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(WriteText(Path("p/evict"), bad), EINVAL);
    EXPECT_EQ(Count(), 8u);
    std::string result = Read("p/evict");
    EXPECT_EQ(result.rfind("error: ", 0), 0u) << result;
    EXPECT_GT(result.size(), 10u);
  }
}

TEST_F(ControlFilesTest, UnusedControlFilesExplainThemselves) {
  EXPECT_NE(Read("p/evict").find("echo 25"), std::string::npos);
  EXPECT_NE(Read("p/persist").find("persist"), std::string::npos);
}

TEST_F(ControlFilesTest, PersistAndRestoreAtTheDefaultPath) {
  ASSERT_EQ(WriteText(Path("p/persist"), "\n"), 0);
  EXPECT_EQ(Read("p/persist"),
            PersistedMessage("p", 8, manager().DefaultSnapshotPath("p")) + "\n");
  for (uint64_t s = 1; s <= 4; ++s) ASSERT_TRUE(manager().Remove("p", s).ok());
  ASSERT_EQ(WriteText(Path("p/restore"), "\n"), 0);
  // The same text `cortex cache restore` prints for a live pool.
  EXPECT_EQ(Read("p/restore"), RestoredMessage("p", 8) + "\n(replaced the pool's previous entries)\n");
  EXPECT_EQ(Count(), 8u);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/3"), &back), 0);
  EXPECT_TRUE(back == Pattern(3, 1000));
}

TEST_F(ControlFilesTest, PersistAndRestoreAtAGivenPath) {
  std::string path = dir_->Join("snap.cache");
  ASSERT_EQ(WriteText(Path("p/persist"), path + "\n"), 0);
  EXPECT_EQ(Read("p/persist"), PersistedMessage("p", 8, path) + "\n");
  ASSERT_EQ(access(path.c_str(), F_OK), 0);
  ASSERT_TRUE(manager().Remove("p", 8).ok());
  ASSERT_EQ(WriteText(Path("p/restore"), path + "\n"), 0);
  EXPECT_EQ(Count(), 8u);
}

TEST_F(ControlFilesTest, RelativePathsAreInsideTheSnapshotDirectory) {
  // The daemon runs in /: a relative path must not land there.
  std::string name = "kvct-relative-" + std::to_string(getpid()) + ".cache";
  std::string in_snapshots = home_->Join("kv_persist/" + name);
  ASSERT_EQ(WriteText(Path("p/persist"), name + "\n"), 0);
  EXPECT_EQ(Read("p/persist"), PersistedMessage("p", 8, in_snapshots) + "\n");
  EXPECT_EQ(access(in_snapshots.c_str(), F_OK), 0);
  EXPECT_NE(access(("/" + name).c_str(), F_OK), 0);
  unlink(("/" + name).c_str());

  ASSERT_TRUE(manager().Remove("p", 8).ok());
  ASSERT_EQ(WriteText(Path("p/restore"), name + "\n"), 0);
  EXPECT_EQ(Count(), 8u);

  // A subdirectory of it works; climbing out of it is refused and writes nothing.
  ASSERT_EQ(mkdir(home_->Join("kv_persist/sub").c_str(), 0700), 0);
  ASSERT_EQ(WriteText(Path("p/persist"), "sub/x.cache\n"), 0);
  EXPECT_EQ(access(home_->Join("kv_persist/sub/x.cache").c_str(), F_OK), 0);
  for (const char* bad : {"../x.cache", "sub/../../x.cache", ".."}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(WriteText(Path("p/persist"), std::string(bad) + "\n"), EINVAL);
    EXPECT_NE(Read("p/persist").find("snapshot directory"), std::string::npos);
    EXPECT_EQ(WriteText(Path("p/restore"), std::string(bad) + "\n"), EINVAL);
  }
  EXPECT_NE(access(home_->Join("x.cache").c_str(), F_OK), 0);
  EXPECT_EQ(Count(), 8u);
}

TEST_F(ControlFilesTest, RestoreFromABadFileFailsAndChangesNothing) {
  std::string missing = dir_->Join("missing.cache");
  EXPECT_NE(WriteText(Path("p/restore"), missing + "\n"), 0);
  EXPECT_EQ(Read("p/restore").rfind("error: ", 0), 0u);
  std::string junk = dir_->Join("junk.cache");
  ASSERT_EQ(Shell("head -c 5000 /dev/urandom > " + junk), 0);
  EXPECT_NE(WriteText(Path("p/restore"), junk + "\n"), 0);
  EXPECT_EQ(Read("p/restore").rfind("error: ", 0), 0u);
  EXPECT_EQ(Count(), 8u);
}

}  // namespace
}  // namespace kvcache::testing
