// Sequence files: put by create+write+close, get by open+read, write-once, delete.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <thread>

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

TEST_F(SequenceFilesTest, LookingAtAMissingIdCountsNoMiss) {
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 0).ok());
  uint64_t misses = manager().Stats("p")->misses;
  struct stat st;
  EXPECT_NE(stat(Path("p/424242").c_str(), &st), 0);
  EXPECT_NE(access(Path("p/424243").c_str(), F_OK), 0);
  EXPECT_NE(Shell("test -e '" + Path("p/424244") + "'"), 0);
  EXPECT_NE(Shell("ls '" + Path("p/424245") + "' 2>/dev/null"), 0);
  EXPECT_EQ(manager().Stats("p")->misses, misses);
  // Creating a new id is not a miss either; reading a missing one still is.
  ASSERT_EQ(WriteFile(Path("p/424246"), Pattern(2, 10)), 0);
  EXPECT_EQ(manager().Stats("p")->misses, misses);
  EXPECT_EQ(open(Path("p/424247").c_str(), O_RDWR), -1);
  EXPECT_EQ(manager().Stats("p")->misses, misses + 1);
}

// Writes `data` to `path` and closes it (the close publishes); returns how long the
// close took. With `dup_out`, a duplicate of the descriptor is left open there and
// `closing` is set just before the close.
std::chrono::nanoseconds WriteAndTimeClose(const std::string& path,
                                           const std::vector<std::byte>& data,
                                           int* dup_out = nullptr,
                                           std::atomic<bool>* closing = nullptr) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return {};
  for (size_t done = 0; done < data.size();) {
    ssize_t w = write(fd, data.data() + done, std::min<size_t>(data.size() - done, 1 << 20));
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  if (dup_out != nullptr) *dup_out = dup(fd);
  auto start = std::chrono::steady_clock::now();
  if (closing != nullptr) closing->store(true);
  close(fd);
  return std::chrono::steady_clock::now() - start;
}

TEST_F(SequenceFilesTest, StatDoesNotWaitForAPublishInProgress) {
  std::vector<std::byte> data = Pattern(5, 160 << 20);
  // How long a publish of this size takes here, once the pool's pages are warm.
  WriteAndTimeClose(Path("p/5"), data);
  std::chrono::nanoseconds publish = WriteAndTimeClose(Path("p/5"), data);
  ASSERT_GT(publish, std::chrono::milliseconds(8)) << "publish too fast to measure";

  int other = -1;
  std::atomic<bool> closing{false};
  std::thread writer([&] { WriteAndTimeClose(Path("p/5"), data, &other, &closing); });
  while (!closing.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  std::this_thread::sleep_for(publish / 8);
  // The same open file through another descriptor, asking the daemon (not the
  // kernel's cache).
  auto start = std::chrono::steady_clock::now();
  struct statx st;
  int rc = statx(other, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &st);
  auto took = std::chrono::steady_clock::now() - start;
  writer.join();
  close(other);
  EXPECT_EQ(rc, 0);
  EXPECT_LT(took, publish / 2) << "stat took "
                               << std::chrono::duration<double, std::milli>(took).count()
                               << " ms; a publish takes "
                               << std::chrono::duration<double, std::milli>(publish).count()
                               << " ms";
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/5"), &back), 0);
  EXPECT_TRUE(back == data);
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
  EXPECT_EQ(out,
            "1\n2\n3\nby-prefix\nchunks\nconfig\nentries\nevict\nhealth\nmatch\npersist\n"
            "restore\nstatus\n");
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

TEST_F(SequenceFilesTest, PutLargerThanThePoolIsEFBIG) {
  CreatePool("tiny", 1 << 20);
  // Refused at the write() that crosses the pool's size, not at close.
  EXPECT_EQ(WriteFile(Path("tiny/1"), Pattern(6, 2 << 20)), EFBIG);
  EXPECT_EQ(manager().Stat("tiny", 1).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace kvcache::testing
