// by-prefix/<hash>/<seq> symlinks to the entries sharing a prefix hash.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "kvcache/prefix.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

std::vector<std::string> List(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return {"<errno " + std::to_string(errno) + ">"};
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

class ByPrefixTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 64 << 20);
    PutOptions a, b;
    a.prefix_tokens = {1, 2, 3, 4, 5};
    b.prefix_tokens = {7, 7};
    ASSERT_TRUE(manager().Put("p", 10, Pattern(10, 100), 0, a).ok());
    ASSERT_TRUE(manager().Put("p", 11, Pattern(11, 100), 0, a).ok());
    ASSERT_TRUE(manager().Put("p", 12, Pattern(12, 100), 0, b).ok());
    ASSERT_TRUE(manager().Put("p", 13, Pattern(13, 100), 0).ok());
    hash_a_ = PrefixHash(a.prefix_tokens);
    hash_b_ = PrefixHash(b.prefix_tokens);
  }
  std::string hash_a_, hash_b_;
};

TEST_F(ByPrefixTest, ListsTheHashesPresent) {
  std::vector<std::string> want = {hash_a_, hash_b_};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(List(Path("p/by-prefix")), want);
}

TEST_F(ByPrefixTest, HashDirectoryHoldsSymlinksToTheEntries) {
  EXPECT_EQ(List(Path("p/by-prefix/" + hash_a_)), (std::vector<std::string>{"10", "11"}));
  EXPECT_EQ(List(Path("p/by-prefix/" + hash_b_)), (std::vector<std::string>{"12"}));
  char target[64];
  ssize_t n = readlink(Path("p/by-prefix/" + hash_a_ + "/11").c_str(), target, sizeof(target));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(target, n), "../../11");
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/by-prefix/" + hash_a_ + "/11"), &back), 0);
  EXPECT_TRUE(back == Pattern(11, 100));
}

TEST_F(ByPrefixTest, UnknownOrMalformedHashes) {
  struct stat st;
  EXPECT_EQ(stat(Path("p/by-prefix/0123456789abcdef").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(Path("p/by-prefix/xyz").c_str(), &st), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(stat(Path("p/by-prefix/" + hash_a_ + "/12").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(ByPrefixTest, FollowsEntriesAddedAndRemoved) {
  ASSERT_TRUE(manager().Remove("p", 12).ok());
  EXPECT_EQ(List(Path("p/by-prefix")), (std::vector<std::string>{hash_a_}));
  PutOptions c;
  c.prefix_tokens = {1, 2, 3, 4, 5};
  ASSERT_TRUE(manager().Put("p", 20, Pattern(20, 10), 0, c).ok());
  EXPECT_EQ(List(Path("p/by-prefix/" + hash_a_)), (std::vector<std::string>{"10", "11", "20"}));
}

}  // namespace
}  // namespace kvcache::testing
