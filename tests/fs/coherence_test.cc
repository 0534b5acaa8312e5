// Many readers at once, and entries changed by another process while open.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class CoherenceTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 256ull << 20);
  }
  // Reads the whole file through an open descriptor.
  static std::vector<std::byte> ReadAll(int fd) {
    std::vector<std::byte> out, buf(1 << 20);
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0) out.insert(out.end(), buf.begin(), buf.begin() + n);
    return out;
  }
};

TEST_F(CoherenceTest, ConcurrentCatAndCpFromSeveralProcesses) {
  constexpr int kEntries = 4;
  for (int i = 0; i < kEntries; ++i) {
    std::vector<std::byte> data = Pattern(i, 8 << 20);
    ASSERT_EQ(WriteFile(dir_->Join("ref" + std::to_string(i)), data), 0);
    ASSERT_TRUE(manager().Put("p", i, data, 0).ok());
  }
  std::string script;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kEntries; ++i) {
      std::string ref = dir_->Join("ref" + std::to_string(i));
      std::string src = Path("p/" + std::to_string(i));
      std::string out = dir_->Join("out" + std::to_string(round) + "_" + std::to_string(i));
      script += "(cat " + src + " | cmp - " + ref + " && cp " + src + " " + out + " && cmp " +
                out + " " + ref + ") || echo FAIL > " + dir_->Join("failed") + " &\n";
    }
  }
  script += "wait\n";
  ASSERT_EQ(Shell(script), 0);
  EXPECT_NE(access(dir_->Join("failed").c_str(), F_OK), 0) << "a reader saw wrong bytes";
}

TEST_F(CoherenceTest, ReaderKeepsOldBytesWhenAnotherProcessReplacesTheEntry) {
  std::vector<std::byte> old_bytes = Pattern(1, 8 << 20), new_bytes = Pattern(2, 3 << 20);
  ASSERT_TRUE(manager().Put("p", 5, old_bytes, 0).ok());
  std::vector<std::byte> warm;
  ASSERT_EQ(ReadFile(Path("p/5"), &warm), 0);  // the kernel now caches the old pages
  int fd = open(Path("p/5").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<std::byte> head(4096);
  ASSERT_EQ(read(fd, head.data(), head.size()), 4096);
  ASSERT_TRUE(manager().Put("p", 5, new_bytes, 0).ok());
  std::vector<std::byte> rest = ReadAll(fd);
  close(fd);
  head.insert(head.end(), rest.begin(), rest.end());
  EXPECT_TRUE(head == old_bytes) << "the open reader saw other bytes";
  std::vector<std::byte> later;
  ASSERT_EQ(ReadFile(Path("p/5"), &later), 0);
  EXPECT_TRUE(later == new_bytes) << "a later open got stale bytes";
}

TEST_F(CoherenceTest, ReaderKeepsBytesWhenTheEntryIsDeletedOrEvicted) {
  std::vector<std::byte> a = Pattern(3, 2 << 20), b = Pattern(4, 2 << 20);
  ASSERT_TRUE(manager().Put("p", 1, a, 0).ok());
  ASSERT_TRUE(manager().Put("p", 2, b, 0).ok());
  int fa = open(Path("p/1").c_str(), O_RDONLY);
  int fb = open(Path("p/2").c_str(), O_RDONLY);
  ASSERT_GE(fa, 0);
  ASSERT_GE(fb, 0);
  ASSERT_TRUE(manager().Remove("p", 1).ok());
  EXPECT_TRUE(manager().Evict("p", 100).ok());
  EXPECT_TRUE(ReadAll(fa) == a);
  EXPECT_TRUE(ReadAll(fb) == b);
  close(fa);
  close(fb);
  std::vector<std::byte> back;
  EXPECT_EQ(ReadFile(Path("p/1"), &back), ENOENT);
  // An entry pinned by an open file is not evicted; once closed it can be.
  if (manager().Stat("p", 2).ok()) {
    ASSERT_TRUE(manager().Evict("p", 100).ok());
  }
  EXPECT_EQ(ReadFile(Path("p/2"), &back), ENOENT);
}

TEST_F(CoherenceTest, EntryDeletedAndPutAgainIsNotServedStale) {
  ASSERT_TRUE(manager().Put("p", 8, Pattern(5, 1 << 20), 0).ok());
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/8"), &back), 0);
  ASSERT_TRUE(manager().Remove("p", 8).ok());
  std::vector<std::byte> same_size = Pattern(6, 1 << 20);
  ASSERT_TRUE(manager().Put("p", 8, same_size, 0).ok());
  ASSERT_EQ(ReadFile(Path("p/8"), &back), 0);
  EXPECT_TRUE(back == same_size);
}

// The kernel keeps a sequence file's attributes for a while (FsOptions::
// seq_attr_timeout): a name stat-ed, opened or listed right after another process
// replaced or deleted the entry must still show the entry as it is now, and an open
// descriptor its own version.
TEST_F(CoherenceTest, AttributesAfterAReplaceOrDeleteByAnotherProcessAreCurrent) {
  ASSERT_TRUE(manager().Put("p", 6, Pattern(1, 5000), 0).ok());
  struct stat st;
  ASSERT_EQ(stat(Path("p/6").c_str(), &st), 0);
  ASSERT_EQ(Shell("ls -l '" + Path("p") + "' >/dev/null"), 0);
  int fd = open(Path("p/6").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  ASSERT_EQ(st.st_size, 5000);

  ASSERT_TRUE(manager().Put("p", 6, Pattern(2, 7000), 0).ok());
  ASSERT_EQ(stat(Path("p/6").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 7000);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 5000) << "an open descriptor's size is its own version's";
  EXPECT_TRUE(ReadAll(fd) == Pattern(1, 5000));
  close(fd);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/6"), &back), 0);
  EXPECT_TRUE(back == Pattern(2, 7000));

  ASSERT_TRUE(manager().Remove("p", 6).ok());
  EXPECT_NE(stat(Path("p/6").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(ReadFile(Path("p/6"), &back), ENOENT);
}

}  // namespace
}  // namespace kvcache::testing
