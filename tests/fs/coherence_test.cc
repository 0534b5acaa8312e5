// Many readers at once, and entries changed by another process while open; each test
// both with names never cached (the default) and with names the kernel keeps
// (-o name_timeout=30): bytes are as coherent either way.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class CoherenceTest : public MountedTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool KeptNames() const { return GetParam(); }
  void SetUp() override {
    if (KeptNames()) daemon_args_.push_back("name_timeout=30");
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

TEST_P(CoherenceTest, ConcurrentCatAndCpFromSeveralProcesses) {
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

TEST_P(CoherenceTest, ReaderKeepsOldBytesWhenAnotherProcessReplacesTheEntry) {
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

TEST_P(CoherenceTest, ReaderKeepsBytesWhenTheEntryIsDeletedOrEvicted) {
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

TEST_P(CoherenceTest, EntryDeletedAndPutAgainIsNotServedStale) {
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
// descriptor its own version. With kept names, stat() may show the old version for
// name_timeout, but opens and reads never do.
TEST_P(CoherenceTest, AttributesAfterAReplaceOrDeleteByAnotherProcessAreCurrent) {
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
  if (!KeptNames()) {
    EXPECT_EQ(st.st_size, 7000);
  }
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 5000) << "an open descriptor's size is its own version's";
  EXPECT_TRUE(ReadAll(fd) == Pattern(1, 5000));
  close(fd);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/6"), &back), 0);
  EXPECT_TRUE(back == Pattern(2, 7000));

  ASSERT_TRUE(manager().Remove("p", 6).ok());
  if (!KeptNames()) {
    EXPECT_NE(stat(Path("p/6").c_str(), &st), 0);
    EXPECT_EQ(errno, ENOENT);
  }
  EXPECT_EQ(ReadFile(Path("p/6"), &back), ENOENT);
  EXPECT_EQ(ReadFile(Path("p/6"), &back), ENOENT) << "asked twice";
}

// With kept names, a name listed or read before is reached without a lookup; what
// another process did to the entry since still decides what an open gets.
TEST_P(CoherenceTest, AKeptNameOpensWhatTheEntryIsNow) {
  ASSERT_TRUE(manager().Put("p", 3, Pattern(1, 6000), 0).ok());
  ASSERT_EQ(Shell("ls -l '" + Path("p") + "' >/dev/null"), 0);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/3"), &back), 0);
  ASSERT_TRUE(back == Pattern(1, 6000));
  // Replaced, then replaced through the mount by a writer that keeps the old name.
  ASSERT_TRUE(manager().Put("p", 3, Pattern(2, 9000), 0).ok());
  ASSERT_EQ(ReadFile(Path("p/3"), &back), 0);
  EXPECT_TRUE(back == Pattern(2, 9000)) << "stale bytes through a kept name";
  int reader = open(Path("p/3").c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  ASSERT_EQ(WriteFile(Path("p/3"), Pattern(3, 4000)), 0);
  EXPECT_TRUE(ReadAll(reader) == Pattern(2, 9000)) << "a replacement truncated a reader's version";
  close(reader);
  ASSERT_EQ(ReadFile(Path("p/3"), &back), 0);
  EXPECT_TRUE(back == Pattern(3, 4000));
  // Deleted by another process: gone; put again: the new bytes.
  ASSERT_TRUE(manager().Remove("p", 3).ok());
  EXPECT_EQ(ReadFile(Path("p/3"), &back), ENOENT);
  ASSERT_TRUE(manager().Put("p", 3, Pattern(4, 6000), 0).ok());
  ASSERT_EQ(ReadFile(Path("p/3"), &back), 0);
  EXPECT_TRUE(back == Pattern(4, 6000));
  // Listings are never kept: an entry deleted elsewhere is not listed.
  ASSERT_TRUE(manager().Remove("p", 3).ok());
  std::string listing;
  ASSERT_EQ(Shell("ls '" + Path("p") + "' > '" + dir_->Join("ls") + "'"), 0);
  ASSERT_EQ(ReadText(dir_->Join("ls"), &listing), 0);
  EXPECT_EQ(listing.find('3'), std::string::npos) << listing;
}

// A file being created is its writer's alone until it is published: another process
// that opens the name (which the kernel may keep from the create) gets the published
// version or nothing, and a create that failed leaves nothing behind.
TEST_P(CoherenceTest, AFileBeingCreatedIsNobodyElsesUntilPublished) {
  ASSERT_TRUE(manager().Put("p", 8, Pattern(1, 5000), 0).ok());
  std::string out = dir_->Join("seen");
  auto other_reads = [&](const std::string& name) {
    return Shell("cat '" + Path("p/" + name) + "' > '" + out + "' 2>/dev/null");
  };
  for (const char* name : {"8", "9"}) {
    SCOPED_TRACE(name);
    int w = open(Path(std::string("p/") + name).c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_GE(w, 0);
    std::vector<std::byte> fresh = Pattern(2, 7000);
    ASSERT_EQ(write(w, fresh.data(), 3000), 3000);
    std::vector<std::byte> seen;
    if (std::string(name) == "8") {
      ASSERT_EQ(other_reads(name), 0);
      ASSERT_EQ(ReadFile(out, &seen), 0);
      EXPECT_TRUE(seen == Pattern(1, 5000)) << "another process saw bytes being written";
    } else {
      EXPECT_NE(other_reads(name), 0) << "another process opened a file being created";
    }
    ASSERT_EQ(write(w, fresh.data() + 3000, 4000), 4000);
    ASSERT_EQ(close(w), 0);
    ASSERT_EQ(other_reads(name), 0);
    ASSERT_EQ(ReadFile(out, &seen), 0);
    EXPECT_TRUE(seen == fresh) << "the published bytes are not what was written";
  }
  // Larger than the pool: the write fails, nothing is published, and the name the
  // create gave leads nowhere, for this process and for others.
  CreatePool("small", 1 << 20);
  std::string big = Path("small/4");
  int w = open(big.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  ASSERT_GE(w, 0);
  std::vector<std::byte> too_big = Pattern(3, 2 << 20);
  size_t written = 0;
  ssize_t n = 0;
  while (written < too_big.size() &&
         (n = write(w, too_big.data() + written, too_big.size() - written)) > 0) {
    written += static_cast<size_t>(n);
  }
  EXPECT_EQ(n, -1) << "all of 2 MiB was written into a 1 MiB pool";
  EXPECT_EQ(errno, EFBIG) << "larger than the whole pool";
  close(w);
  std::vector<std::byte> back;
  EXPECT_EQ(ReadFile(big, &back), ENOENT);
  EXPECT_NE(Shell("cat '" + big + "' > /dev/null 2>&1"), 0);
  struct stat st;
  EXPECT_NE(stat(big.c_str(), &st), 0) << "a failed create left a name";
}

INSTANTIATE_TEST_SUITE_P(Names, CoherenceTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Kept" : "NeverCached";
                         });

}  // namespace
}  // namespace kvcache::testing
