// Entry metadata as user.kvcache.* extended attributes.
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>

#include "kvcache/prefix.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class XattrTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 64 << 20);
  }
  std::string Get(const std::string& rel, const std::string& name) {
    char buf[4096];
    ssize_t n = getxattr(Path(rel).c_str(), ("user.kvcache." + name).c_str(), buf, sizeof(buf));
    return n < 0 ? "<errno " + std::to_string(errno) + ">" : std::string(buf, n);
  }
  int Set(const std::string& rel, const std::string& name, const std::string& value) {
    int r = setxattr(Path(rel).c_str(), ("user.kvcache." + name).c_str(), value.data(),
                     value.size(), 0);
    return r == 0 ? 0 : errno;
  }
};

TEST_F(XattrTest, ShowsTheEntrysMetadata) {
  PutOptions options;
  options.prefix_tokens = {1, 2, 3, 4, 5};
  options.priority = 7;
  options.metadata = R"({"model":"llama"})";
  ASSERT_TRUE(manager().Put("p", 3, Pattern(1, 100), 42, options).ok());
  // First: reading prefix_tokens pins the entry through Manager::View, a hit.
  EXPECT_EQ(Get("p/3", "access_count"), "0");
  EXPECT_EQ(Get("p/3", "token_count"), "42");
  EXPECT_EQ(Get("p/3", "priority"), "7");
  EXPECT_EQ(Get("p/3", "prefix_tokens"), "1,2,3,4,5");
  EXPECT_EQ(Get("p/3", "prefix_hash"), "4f6addc9659d6fb9");
  EXPECT_EQ(Get("p/3", "metadata"), R"({"model":"llama"})");
  Result<EntryInfo> info = manager().Stat("p", 3);
  EXPECT_NEAR(std::stod(Get("p/3", "created")), info->created, 1e-3);
  EXPECT_NEAR(std::stod(Get("p/3", "last_accessed")), info->last_accessed, 1e-3);
  EXPECT_EQ(Get("p/3", "nonsense"), "<errno " + std::to_string(ENODATA) + ">");
}

// `ls -l` asks every file for security.selinux and system.posix_acl_access; GNU ls stops
// asking a filesystem that answers ENOTSUP once, but keeps asking after ENODATA.
TEST_F(XattrTest, NamespacesOtherThanUserAreUnsupportedSoListingsStopAsking) {
  ASSERT_TRUE(manager().Put("p", 3, Pattern(1, 100), 1).ok());
  for (const std::string rel : {"", "p", "p/3", "p/status", "p/by-prefix"}) {
    for (const char* name : {"security.selinux", "system.posix_acl_access",
                             "system.posix_acl_default", "trusted.x"}) {
      char buf[256];
      errno = 0;
      EXPECT_EQ(getxattr(Path(rel).c_str(), name, buf, sizeof(buf)), -1) << rel << " " << name;
      EXPECT_EQ(errno, ENOTSUP) << "'" << rel << "' " << name;
    }
  }
  // Our own namespace still answers ENODATA for a name it does not have.
  EXPECT_EQ(Get("p/3", "nonsense"), "<errno " + std::to_string(ENODATA) + ">");
}

TEST_F(XattrTest, ListsEveryAttribute) {
  ASSERT_TRUE(manager().Put("p", 3, Pattern(1, 100), 0).ok());
  char buf[4096];
  ssize_t n = listxattr(Path("p/3").c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  std::string all(buf, n);
  for (const char* name : {"token_count", "priority", "prefix_tokens", "metadata", "prefix_hash",
                           "access_count", "created", "last_accessed"}) {
    EXPECT_NE(all.find(std::string("user.kvcache.") + name + '\0'), std::string::npos) << name;
  }
}

TEST_F(XattrTest, SettingRepublishesWithSameBytesAndStats) {
  std::vector<std::byte> data = Pattern(2, 50000);
  ASSERT_TRUE(manager().Put("p", 4, data, 1).ok());
  ASSERT_EQ(Set("p/4", "token_count", "128"), 0);
  ASSERT_EQ(Set("p/4", "priority", "-3"), 0);
  ASSERT_EQ(Set("p/4", "prefix_tokens", "9,8,7"), 0);
  ASSERT_EQ(Set("p/4", "metadata", R"({"a":[1,2]})"), 0);
  Result<EntryInfo> info = manager().Stat("p", 4);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->token_count, 128u);
  EXPECT_EQ(info->priority, -3);
  EXPECT_EQ(info->prefix_hash, PrefixHash(std::vector<uint32_t>{9, 8, 7}));
  EXPECT_EQ(info->metadata, R"({"a":[1,2]})");
  EXPECT_EQ(Get("p/4", "prefix_tokens"), "9,8,7");
  EXPECT_TRUE(*manager().Get("p", 4) == data);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/4"), &back), 0);
  EXPECT_TRUE(back == data);
}

TEST_F(XattrTest, AttributesSetWhileWritingGoOutWithTheBytes) {
  int fd = open(Path("p/11").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "abc", 3), 3);
  ASSERT_EQ(fsetxattr(fd, "user.kvcache.token_count", "3", 1, 0), 0);
  ASSERT_EQ(fsetxattr(fd, "user.kvcache.prefix_tokens", "1,2,3,4,5", 9, 0), 0);
  ASSERT_EQ(close(fd), 0);
  Result<EntryInfo> info = manager().Stat("p", 11);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->token_count, 3u);
  EXPECT_EQ(info->prefix_hash, "4f6addc9659d6fb9");
  EXPECT_EQ(info->size_bytes, 3u);
}

TEST_F(XattrTest, ReadOnlyAndMalformedAreRefusedAndChangeNothing) {
  ASSERT_TRUE(manager().Put("p", 4, Pattern(2, 100), 5).ok());
  uint64_t generation = manager().Stat("p", 4)->generation;
  EXPECT_EQ(Set("p/4", "prefix_hash", "0000000000000000"), EPERM);
  EXPECT_EQ(Set("p/4", "access_count", "9"), EPERM);
  EXPECT_EQ(Set("p/4", "created", "1"), EPERM);
  EXPECT_EQ(Set("p/4", "last_accessed", "1"), EPERM);
  EXPECT_EQ(Set("p/4", "token_count", "abc"), EINVAL);
  EXPECT_EQ(Set("p/4", "token_count", "-1"), EINVAL);
  EXPECT_EQ(Set("p/4", "priority", "x"), EINVAL);
  EXPECT_EQ(Set("p/4", "prefix_tokens", "1,b,3"), EINVAL);
  EXPECT_EQ(Set("p/4", "metadata", "{not json"), EINVAL);
  EXPECT_EQ(Set("p/4", "bogus", "1"), ENOTSUP);
  EXPECT_EQ(manager().Stat("p", 4)->generation, generation);
  EXPECT_EQ(manager().Stat("p", 4)->token_count, 5u);
}

}  // namespace
}  // namespace kvcache::testing
