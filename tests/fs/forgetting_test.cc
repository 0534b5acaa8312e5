// What the kernel may still know after something is removed: when an evict, a restore
// or an unlink returns, nothing it removed is visible, and creates never fail because
// of names the kernel remembered.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "kvcache/snapshot.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class ForgettingTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 64 << 20);
  }
  bool Visible(const std::string& rel) {
    struct stat st;
    return stat(Path(rel).c_str(), &st) == 0;
  }
  // Looks each name up the ways a shell does, so the kernel has them all cached.
  void Touch(int first, int last) {
    std::vector<std::byte> out;
    for (int s = first; s <= last; ++s) {
      struct stat st;
      stat(Path("p/" + std::to_string(s)).c_str(), &st);
      ReadFile(Path("p/" + std::to_string(s)), &out);
    }
    ASSERT_EQ(Shell("ls -l '" + Path("p") + "' >/dev/null"), 0);
  }
};

// The loop of the report, three rounds: writes, reads, ls and stat, then evict 100%.
TEST_F(ForgettingTest, EvictedEntriesAreGoneWhenTheWriteReturnsAndCreatesWork) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    for (int s = 1; s <= 10; ++s) {
      ASSERT_EQ(WriteFile(Path("p/" + std::to_string(s)), Pattern(s + round, 100000)), 0)
          << "write " << s;
    }
    Touch(1, 10);
    ASSERT_EQ(WriteText(Path("p/evict"), "100\n"), 0);
    for (int s = 1; s <= 10; ++s) EXPECT_FALSE(Visible("p/" + std::to_string(s))) << s;
    EXPECT_EQ(manager().Entries("p")->size(), 0u);
  }
}

TEST_F(ForgettingTest, EntriesRemovedByAnotherProcessAreGoneAtOnce) {
  for (int s = 1; s <= 5; ++s) ASSERT_TRUE(manager().Put("p", s, Pattern(s, 5000), 1).ok());
  Touch(1, 5);
  for (int s = 1; s <= 5; ++s) ASSERT_TRUE(manager().Remove("p", s).ok());
  for (int s = 1; s <= 5; ++s) EXPECT_FALSE(Visible("p/" + std::to_string(s))) << s;
  // And a replacement by another process is seen with its own size at once.
  ASSERT_TRUE(manager().Put("p", 3, Pattern(3, 100), 1).ok());
  Touch(3, 3);
  ASSERT_TRUE(manager().Put("p", 3, Pattern(4, 777), 1).ok());
  struct stat st;
  ASSERT_EQ(stat(Path("p/3").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 777);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/3"), &back), 0);
  EXPECT_TRUE(back == Pattern(4, 777));
}

TEST_F(ForgettingTest, RestoreDropsWhatTheSnapshotDoesNotHold) {
  for (int s = 1; s <= 4; ++s) ASSERT_TRUE(manager().Put("p", s, Pattern(s, 3000), 1).ok());
  ASSERT_EQ(WriteText(Path("p/persist"), "\n"), 0);
  for (int s = 5; s <= 8; ++s) {
    ASSERT_EQ(WriteFile(Path("p/" + std::to_string(s)), Pattern(s, 3000)), 0);
  }
  Touch(1, 8);
  ASSERT_EQ(WriteText(Path("p/restore"), "\n"), 0);
  for (int s = 1; s <= 4; ++s) EXPECT_TRUE(Visible("p/" + std::to_string(s))) << s;
  for (int s = 5; s <= 8; ++s) EXPECT_FALSE(Visible("p/" + std::to_string(s))) << s;
  // Creating the dropped names again works at once.
  for (int s = 5; s <= 8; ++s) {
    EXPECT_EQ(WriteFile(Path("p/" + std::to_string(s)), Pattern(s + 1, 10)), 0) << s;
  }
}

TEST_F(ForgettingTest, UnlinkedNameIsGoneAndCanBeCreatedAgain) {
  ASSERT_EQ(WriteFile(Path("p/9"), Pattern(1, 1000)), 0);
  Touch(9, 9);
  ASSERT_EQ(unlink(Path("p/9").c_str()), 0);
  EXPECT_FALSE(Visible("p/9"));
  ASSERT_EQ(WriteFile(Path("p/9"), Pattern(2, 10)), 0);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/9"), &back), 0);
  EXPECT_TRUE(back == Pattern(2, 10));
}

}  // namespace
}  // namespace kvcache::testing
