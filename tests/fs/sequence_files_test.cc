// Sequence files: put by create+write+close, get by open+read, write-once, delete.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class SequenceFilesTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 256ull << 20);
  }
};

TEST_F(SequenceFilesTest, RoundTripsOfEverySize) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{64} << 20}) {
    SCOPED_TRACE(size);
    uint64_t seq = 100 + size % 997;
    std::vector<std::byte> data = Pattern(size, size);
    ASSERT_EQ(WriteFile(Path("p/" + std::to_string(seq)), data), 0);
    std::vector<std::byte> back;
    ASSERT_EQ(ReadFile(Path("p/" + std::to_string(seq)), &back), 0);
    EXPECT_TRUE(back == data);
    Result<std::vector<std::byte>> stored = manager().Get("p", seq);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    EXPECT_TRUE(*stored == data);
    struct stat st;
    ASSERT_EQ(stat(Path("p/" + std::to_string(seq)).c_str(), &st), 0);
    EXPECT_EQ(static_cast<size_t>(st.st_size), size);
  }
}

TEST_F(SequenceFilesTest, StatShowsCreationAndLastAccess) {
  ASSERT_TRUE(manager().Put("p", 7, Pattern(1, 5000), 12).ok());
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/7"), &back), 0);
  Result<EntryInfo> info = manager().Stat("p", 7);
  ASSERT_TRUE(info.ok());
  sleep(1);  // attributes are cached for a second
  struct stat st;
  ASSERT_EQ(stat(Path("p/7").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 5000);
  EXPECT_EQ(st.st_mtim.tv_sec, static_cast<time_t>(std::floor(info->created)));
  EXPECT_EQ(st.st_ctim.tv_sec, static_cast<time_t>(std::floor(info->created)));
  EXPECT_EQ(st.st_atim.tv_sec, static_cast<time_t>(std::floor(info->last_accessed)));
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(SequenceFilesTest, OneHitPerOpenNotPerRead) {
  ASSERT_TRUE(manager().Put("p", 1, Pattern(2, 1 << 20), 0).ok());
  uint64_t hits = manager().Stats("p")->hits;
  int fd = open(Path("p/1").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[4096];
  for (int i = 0; i < 50; ++i) ASSERT_EQ(pread(fd, buf, sizeof(buf), i * 8192), 4096);
  close(fd);
  EXPECT_EQ(manager().Stats("p")->hits, hits + 1);
}

TEST_F(SequenceFilesTest, OpeningAMissingIdCountsAMiss) {
  uint64_t misses = manager().Stats("p")->misses;
  EXPECT_EQ(open(Path("p/424242").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(manager().Stats("p")->misses, misses + 1);
}

TEST_F(SequenceFilesTest, PublishedEntriesAreWriteOnce) {
  std::vector<std::byte> data = Pattern(3, 10000);
  ASSERT_TRUE(manager().Put("p", 9, data, 0).ok());
  EXPECT_EQ(open(Path("p/9").c_str(), O_WRONLY | O_APPEND), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(open(Path("p/9").c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(truncate(Path("p/9").c_str(), 10), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_TRUE(*manager().Get("p", 9) == data);
}

TEST_F(SequenceFilesTest, TruncatingOpenStagesAWholeReplacement) {
  ASSERT_TRUE(manager().Put("p", 9, Pattern(3, 10000), 0).ok());
  std::vector<std::byte> data = Pattern(4, 3000);
  int fd = open(Path("p/9").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), 1000), 1000);
  // Until close, readers still get the old entry whole.
  EXPECT_EQ(manager().Stat("p", 9)->size_bytes, 10000u);
  ASSERT_EQ(write(fd, data.data() + 1000, 2000), 2000);
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(*manager().Get("p", 9) == data);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/9"), &back), 0);
  EXPECT_TRUE(back == data);
}

TEST_F(SequenceFilesTest, UnlinkRemovesTheEntry) {
  ASSERT_TRUE(manager().Put("p", 5, Pattern(5, 100), 0).ok());
  ASSERT_EQ(unlink(Path("p/5").c_str()), 0);
  EXPECT_EQ(manager().Stat("p", 5).status().code(), Code::kNotFound);
  EXPECT_EQ(access(Path("p/5").c_str(), F_OK), -1);
  EXPECT_EQ(unlink(Path("p/5").c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(SequenceFilesTest, ListingShowsEveryEntry) {
  for (uint64_t s : {3, 1, 2}) ASSERT_TRUE(manager().Put("p", s, Pattern(s, 10), 0).ok());
  std::string out;
  ASSERT_EQ(Shell("ls " + Path("p") + " > " + dir_->Join("ls.txt")), 0);
  ASSERT_EQ(ReadText(dir_->Join("ls.txt"), &out), 0);
  EXPECT_EQ(out, "1\n2\n3\nby-prefix\nconfig\nentries\nevict\nhealth\npersist\nrestore\nstatus\n");
}

TEST_F(SequenceFilesTest, BadNamesGetErrnosAndChangeNothing) {
  EXPECT_EQ(WriteFile(Path("p/abc"), Bytes("x")), EINVAL);
  EXPECT_EQ(WriteFile(Path("p/007"), Bytes("x")), EINVAL);
  EXPECT_EQ(WriteFile(Path("p/-1"), Bytes("x")), EINVAL);
  EXPECT_EQ(WriteFile(Path("p/99999999999999999999999"), Bytes("x")), EINVAL);
  EXPECT_EQ(WriteFile(Path("p/" + std::string(256, '1')), Bytes("x")), ENAMETOOLONG);
  struct stat st;
  EXPECT_EQ(stat(Path("p/abc").c_str(), &st), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(WriteFile(Path("newfile"), Bytes("x")), EPERM);
  EXPECT_TRUE(manager().Entries("p")->empty());
}

TEST_F(SequenceFilesTest, PutLargerThanThePoolIsENOSPC) {
  CreatePool("tiny", 1 << 20);
  EXPECT_EQ(WriteFile(Path("tiny/1"), Pattern(6, 2 << 20)), ENOSPC);
  EXPECT_EQ(manager().Stat("tiny", 1).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace kvcache::testing
