// The write path of the mount as an engine uses it: space accounted while writing,
// publication owned by the writer, temp files renamed into place, metadata that belongs
// to one version, long prefixes from a companion file, fsync. Readers and inheriting
// children are real separate processes.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <string>
#include <thread>

#include "kvcache/prefix.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class WritePathTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 64 << 20);
  }

  // Runs `body` in a forked child process; returns its exit code (or 128 + signal).
  static int InChild(const std::function<int()>& body) {
    pid_t pid = fork();
    if (pid == 0) _exit(body());
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Reads `path` whole in a child process and compares with `want`: 0 when equal, the
  // errno of a failed open, or 100 when the bytes differ.
  static int ChildReads(const std::string& path, const std::vector<std::byte>& want) {
    return InChild([&] {
      std::vector<std::byte> got;
      int err = ReadFile(path, &got);
      if (err != 0) return err;
      return got == want ? 0 : 100;
    });
  }

  static int WriteAll(int fd, const std::vector<std::byte>& data, size_t piece) {
    for (size_t done = 0; done < data.size(); done += piece) {
      size_t n = std::min(piece, data.size() - done);
      if (write(fd, data.data() + done, n) != static_cast<ssize_t>(n)) return errno;
    }
    return 0;
  }

  uint64_t DaemonRssKb() {
    std::ifstream in("/proc/" + std::to_string(daemon_->pid()) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
    }
    return 0;
  }

  int SetAttr(int fd, const std::string& name, const std::string& value) {
    return fsetxattr(fd, ("user.kvcache." + name).c_str(), value.data(), value.size(), 0) == 0
               ? 0
               : errno;
  }
};

// ---------------------------------------------------------------- 1. no silent loss

TEST_F(WritePathTest, WriteThatCanNeverFitFailsAtThatWrite) {
  CreatePool("small", 8 << 20);
  uint64_t pool_bytes = manager().Stats("small")->size;
  int fd = open(Path("small/1").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  std::vector<std::byte> piece = Pattern(1, 1 << 20);
  uint64_t written = 0;
  int err = 0;
  while (written < 4 * pool_bytes) {
    ssize_t n = write(fd, piece.data(), piece.size());
    if (n < 0) {
      err = errno;
      break;
    }
    written += static_cast<uint64_t>(n);
  }
  // The write that would cross the pool's size is the one refused.
  EXPECT_TRUE(err == EFBIG || err == ENOSPC) << "errno " << err;
  EXPECT_LE(written, pool_bytes);
  EXPECT_GT(written + piece.size(), pool_bytes);
  EXPECT_NE(close(fd), 0);
  EXPECT_EQ(manager().Stat("small", 1).status().code(), Code::kNotFound);
}

TEST_F(WritePathTest, WriteBeyondThePoolMinusPinnedBytesIsENOSPC) {
  CreatePool("small", 8 << 20);
  ASSERT_TRUE(manager().Put("small", 1, Pattern(1, 6 << 20), 0).ok());
  Result<EntryView> pinned = manager().Pin("small", 1);
  ASSERT_TRUE(pinned.ok());
  int fd = open(Path("small/2").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(WriteAll(fd, Pattern(2, 4 << 20), 8192), ENOSPC);
  close(fd);
  EXPECT_EQ(manager().Stat("small", 2).status().code(), Code::kNotFound);
  EXPECT_TRUE(*manager().Get("small", 1) == Pattern(1, 6 << 20));
}

TEST_F(WritePathTest, TruncateToATerabyteFailsWithoutTheDaemonGrowing) {
  int fd = open(Path("p/1").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  uint64_t rss_before = DaemonRssKb();
  ASSERT_GT(rss_before, 0u);
  // Four times the pool: zero-filled by a daemon without limits.
  ASSERT_EQ(ftruncate(fd, off_t{256} << 20), -1);
  EXPECT_EQ(errno, EFBIG);
  ASSERT_EQ(ftruncate(fd, off_t{1} << 40), -1);
  EXPECT_EQ(errno, EFBIG);
  EXPECT_EQ(Shell("truncate -s 1T " + Path("p/1") + " 2>/dev/null"), 1);
  EXPECT_LT(DaemonRssKb(), rss_before + 16 * 1024);
  // The file is still usable within the pool's limits.
  ASSERT_EQ(write(fd, "abc", 3), 3);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(manager().Stat("p", 1)->size_bytes, 3u);
}

// Files written at once into one pool share its room: the daemon never stages more
// than the pool can hold, however many writers there are.
TEST_F(WritePathTest, ConcurrentWritersTogetherStageNoMoreThanThePool) {
  CreatePool("small", 8 << 20);
  int first = open(Path("small/1").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int second = open(Path("small/2").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  ASSERT_EQ(WriteAll(first, Pattern(1, 5 << 20), 1 << 20), 0);
  // 5 MiB more would stage 10 MiB for an 8 MiB pool: refused at the write.
  EXPECT_EQ(WriteAll(second, Pattern(2, 5 << 20), 1 << 20), ENOSPC);
  EXPECT_EQ(close(second), -1);
  ASSERT_EQ(close(first), 0);
  EXPECT_TRUE(*manager().Get("small", 1) == Pattern(1, 5 << 20));
  EXPECT_EQ(manager().Stat("small", 2).status().code(), Code::kNotFound);
  // Both closed: their room is back, and a writer of the same size succeeds.
  int third = open(Path("small/3").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(third, 0);
  ASSERT_EQ(WriteAll(third, Pattern(3, 5 << 20), 1 << 20), 0);
  ASSERT_EQ(close(third), 0);
  EXPECT_TRUE(*manager().Get("small", 3) == Pattern(3, 5 << 20));
}

// ---------------------------------------------------------------- 2. publication

TEST_F(WritePathTest, ReaderOpeningMidWriteSeesNothingAndItsClosePublishesNothing) {
  std::vector<std::byte> data = Pattern(3, 300000);
  int fd = open(Path("p/20").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), 1000), 1000);
  // Another process: a new id is not there yet.
  EXPECT_EQ(ChildReads(Path("p/20"), {}), ENOENT);
  EXPECT_EQ(manager().Stat("p", 20).status().code(), Code::kNotFound);
  ASSERT_EQ(WriteAll(fd, {data.begin() + 1000, data.end()}, 8192), 0);
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(*manager().Get("p", 20) == data);
}

TEST_F(WritePathTest, ReaderDuringAReplacementReadsTheOldVersionWhole) {
  std::vector<std::byte> old_data = Pattern(4, 200000), new_data = Pattern(5, 5000);
  ASSERT_TRUE(manager().Put("p", 21, old_data, 0).ok());
  uint64_t old_generation = manager().Stat("p", 21)->generation;
  int fd = open(Path("p/21").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, new_data.data(), 1000), 1000);
  EXPECT_EQ(ChildReads(Path("p/21"), old_data), 0);
  EXPECT_EQ(manager().Stat("p", 21)->generation, old_generation);
  ASSERT_EQ(write(fd, new_data.data() + 1000, 4000), 4000);
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(*manager().Get("p", 21) == new_data);
  EXPECT_EQ(ChildReads(Path("p/21"), new_data), 0);
}

// The soak's shape: a writer replaces an id with open(O_CREAT | O_TRUNC) and many small
// writes while other processes open and read it whole, again and again. Every read is
// one whole published version: never empty, never cut short by the writer's progress.
TEST_F(WritePathTest, ReadersRacingAReplacementInSmallWritesReadWholeVersions) {
  std::vector<std::byte> v1 = Pattern(40, 60000), v2 = Pattern(41, 30000);
  ASSERT_TRUE(manager().Put("p", 26, v1, 0).ok());
  const std::string path = Path("p/26");
  // The writer is a process of its own, forked while this one runs no other thread, and
  // this process reads: a child forked while another thread of its parent allocates may
  // wait forever in malloc (clang 14's ASan allocator takes no lock around fork()).
  void* shared = mmap(nullptr, sizeof(std::atomic<bool>), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  auto* stop = new (shared) std::atomic<bool>(false);
  static_assert(std::atomic<bool>::is_always_lock_free, "shared between processes");
  pid_t writer = fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    for (int round = 0; !stop->load(); ++round) {
      const std::vector<std::byte>& data = round % 2 == 0 ? v2 : v1;
      int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) continue;
      WriteAll(fd, data, 1024);
      close(fd);
    }
    _exit(0);
  }
  int reads = 0;
  size_t bad_size = 0;
  bool bad = false;
  std::vector<std::byte> got;
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
       std::chrono::steady_clock::now() < deadline && !bad; ++reads) {
    if (ReadFile(path, &got) != 0) continue;
    bad = got != v1 && got != v2;
    bad_size = got.size();
  }
  stop->store(true);
  int status = 0;
  EXPECT_EQ(waitpid(writer, &status, 0), writer);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  munmap(shared, sizeof(std::atomic<bool>));
  EXPECT_FALSE(bad) << "a read of " << bad_size << " bytes returned neither version within "
                    << reads << " reads";
}

TEST_F(WritePathTest, ForkedChildClosingAnInheritedDescriptorPublishesNothing) {
  std::vector<std::byte> data = Pattern(6, 100000);
  int fd = open(Path("p/22").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), 5000), 5000);
  // fork + exec: the exec'd program inherits fd and closes it when it exits.
  EXPECT_EQ(InChild([&] {
              execl("/bin/sh", "sh", "-c", "exit 0", static_cast<char*>(nullptr));
              return 127;
            }),
            0);
  EXPECT_EQ(InChild([&] { return close(fd) == 0 ? 0 : errno; }), 0);
  EXPECT_EQ(manager().Stat("p", 22).status().code(), Code::kNotFound);
  EXPECT_EQ(ChildReads(Path("p/22"), {}), ENOENT);
  ASSERT_EQ(write(fd, data.data() + 5000, data.size() - 5000),
            static_cast<ssize_t>(data.size() - 5000));
  ASSERT_EQ(close(fd), 0);
  EXPECT_TRUE(*manager().Get("p", 22) == data);
}

TEST_F(WritePathTest, WriterKilledMidSaveNeverPublishes) {
  std::vector<std::byte> old_data = Pattern(30, 80000);
  ASSERT_TRUE(manager().Put("p", 24, old_data, 0).ok());
  for (const std::string name : {"24", "25"}) {  // a replacement, and a new id
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int fd = open(Path("p/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      std::vector<std::byte> part = Pattern(31, 30000);
      if (fd < 0 || write(fd, part.data(), part.size()) != 30000) _exit(1);
      if (write(ready[1], "x", 1) != 1) _exit(1);
      pause();
      _exit(0);
    }
    close(ready[1]);
    char c;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    kill(pid, SIGKILL);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // release is async
  }
  EXPECT_TRUE(*manager().Get("p", 24) == old_data);
  EXPECT_EQ(ChildReads(Path("p/24"), old_data), 0);
  EXPECT_EQ(manager().Stat("p", 25).status().code(), Code::kNotFound);
}

TEST_F(WritePathTest, OpenFileKeepsItsGenerationsSizeAfterAReplacement) {
  std::vector<std::byte> old_data = Pattern(7, 100000);
  ASSERT_TRUE(manager().Put("p", 23, old_data, 0).ok());
  int fd = open(Path("p/23").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::byte first[10];
  ASSERT_EQ(read(fd, first, sizeof(first)), 10);
  ASSERT_TRUE(manager().Put("p", 23, Pattern(8, 10000), 0).ok());
  // Past the attribute timeout: the kernel asks again, without a file handle.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 100000);
  std::vector<std::byte> rest(200000);
  size_t got = 10;
  ssize_t n;
  while ((n = read(fd, rest.data() + got - 10, rest.size() - (got - 10))) > 0) got += n;
  close(fd);
  ASSERT_EQ(got, old_data.size());
  EXPECT_TRUE(std::equal(old_data.begin() + 10, old_data.end(), rest.begin()));
}

// A new file's attributes are given to the kernel with a timeout (nobody else can reach
// its inode before it is published): the writer still sees the size it wrote and
// truncated to, and once published a stat by name sees the entry, and a replacement by
// another process at once.
TEST_F(WritePathTest, NewFilesWriterSeesItsSizeAndEveryoneThePublishedEntry) {
  std::vector<std::byte> data = Pattern(11, 5000);
  int fd = open(Path("p/27").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), 5000);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 5000);
  ASSERT_EQ(ftruncate(fd, 3000), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 3000);
  ASSERT_EQ(pwrite(fd, data.data() + 3000, 1000, 3000), 1000);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 4000);
  // Not published yet: nobody finds it by name.
  EXPECT_NE(stat(Path("p/27").c_str(), &st), 0);
  ASSERT_EQ(close(fd), 0);
  ASSERT_EQ(stat(Path("p/27").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4000);
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/27"), &back), 0);
  EXPECT_TRUE(back == std::vector<std::byte>(data.begin(), data.begin() + 4000));
  ASSERT_TRUE(manager().Put("p", 27, Pattern(12, 100), 0).ok());
  ASSERT_EQ(stat(Path("p/27").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 100);
  EXPECT_EQ(ChildReads(Path("p/27"), Pattern(12, 100)), 0);
  ASSERT_TRUE(manager().Remove("p", 27).ok());
  EXPECT_NE(stat(Path("p/27").c_str(), &st), 0);
}

// open(O_WRONLY | O_TRUNC) without O_CREAT replaces an id just as O_CREAT | O_TRUNC does:
// the file readers have open keeps its size and bytes while the writer stages.
TEST_F(WritePathTest, TruncatingOpenWithoutCreateLeavesOpenReadersWhole) {
  std::vector<std::byte> old_data = Pattern(9, 100000), new_data = Pattern(10, 3000);
  ASSERT_TRUE(manager().Put("p", 24, old_data, 0).ok());
  int rfd = open(Path("p/24").c_str(), O_RDONLY);
  ASSERT_GE(rfd, 0);
  std::vector<std::byte> got(200000);
  ASSERT_EQ(read(rfd, got.data(), 10), 10);
  int wfd = open(Path("p/24").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(wfd, 0) << strerror(errno);
  ASSERT_EQ(write(wfd, new_data.data(), 1000), 1000);
  size_t have = 10;
  ssize_t n;
  while ((n = read(rfd, got.data() + have, got.size() - have)) > 0) have += n;
  got.resize(have);
  EXPECT_TRUE(got == old_data) << "the reader got " << have << " bytes";
  struct stat st;
  ASSERT_EQ(fstat(rfd, &st), 0);
  EXPECT_EQ(st.st_size, 100000);
  EXPECT_EQ(ChildReads(Path("p/24"), old_data), 0);
  ASSERT_EQ(write(wfd, new_data.data() + 1000, 2000), 2000);
  ASSERT_EQ(close(wfd), 0);
  close(rfd);
  EXPECT_TRUE(*manager().Get("p", 24) == new_data);
  EXPECT_EQ(ChildReads(Path("p/24"), new_data), 0);
}

// ---------------------------------------------------------------- 3. temp + rename

TEST_F(WritePathTest, TempFileRenamedOntoAnIdPublishesAtomically) {
  std::vector<std::byte> old_data = Pattern(9, 50000), new_data = Pattern(10, 70000);
  ASSERT_TRUE(manager().Put("p", 30, old_data, 0).ok());
  for (const std::string tmp : {".30.partial", "30.tmp"}) {
    int fd = open(Path("p/" + tmp).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << tmp << ": " << strerror(errno);
    ASSERT_EQ(WriteAll(fd, new_data, 8192), 0);
    ASSERT_EQ(SetAttr(fd, "token_count", "77"), 0);
    ASSERT_EQ(close(fd), 0);
    // Closed but not renamed: nothing published, nothing listed.
    EXPECT_TRUE(*manager().Get("p", 30) == old_data);
    EXPECT_EQ(manager().Entries("p")->size(), 1u);
    EXPECT_EQ(Shell("ls -a " + Path("p") + " | grep -q tmp"), 1);
    ASSERT_EQ(rename(Path("p/" + tmp).c_str(), Path("p/30").c_str()), 0) << strerror(errno);
    EXPECT_TRUE(*manager().Get("p", 30) == new_data);
    EXPECT_EQ(manager().Stat("p", 30)->token_count, 77u);
    EXPECT_EQ(ChildReads(Path("p/30"), new_data), 0);
    EXPECT_EQ(access(Path("p/" + tmp).c_str(), F_OK), -1);
    std::swap(old_data, new_data);
  }
}

TEST_F(WritePathTest, TempFilesShowThePoolsOwnerAndModeLikeEntries) {
  ASSERT_TRUE(manager().Put("p", 37, Pattern(23, 100), 0).ok());
  int fd = open(Path("p/.37.tmp").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, "abc", 3), 3);
  struct stat entry, temp, temp_by_fd;
  ASSERT_EQ(stat(Path("p/37").c_str(), &entry), 0);
  ASSERT_EQ(stat(Path("p/.37.tmp").c_str(), &temp), 0);
  ASSERT_EQ(fstat(fd, &temp_by_fd), 0);
  ASSERT_EQ(close(fd), 0);
  // The permission checks (default_permissions) of other users go by these.
  EXPECT_EQ(temp.st_mode, entry.st_mode);
  EXPECT_EQ(temp_by_fd.st_mode, entry.st_mode);
  EXPECT_EQ(temp.st_uid, entry.st_uid);
  EXPECT_EQ(temp.st_gid, entry.st_gid);
  EXPECT_EQ(temp.st_size, 3);
  ASSERT_EQ(unlink(Path("p/.37.tmp").c_str()), 0);
  EXPECT_EQ(access(Path("p/.37.tmp").c_str(), F_OK), -1);
}

TEST_F(WritePathTest, RenameMovesAPublishedEntryToAnotherId) {
  PutOptions options;
  options.prefix_tokens = {1, 2, 3};
  options.metadata = R"({"m":1})";
  ASSERT_TRUE(manager().Put("p", 31, Pattern(11, 30000), 12, options).ok());
  ASSERT_EQ(rename(Path("p/31").c_str(), Path("p/32").c_str()), 0) << strerror(errno);
  EXPECT_EQ(manager().Stat("p", 31).status().code(), Code::kNotFound);
  Result<EntryInfo> moved = manager().Stat("p", 32);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->token_count, 12u);
  EXPECT_EQ(moved->metadata, R"({"m":1})");
  EXPECT_EQ(moved->prefix_hash, PrefixHash(std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(ChildReads(Path("p/32"), Pattern(11, 30000)), 0);
  EXPECT_EQ(ChildReads(Path("p/31"), {}), ENOENT);
}

TEST_F(WritePathTest, OtherRenamesGetClearErrnosAndChangeNothing) {
  CreatePool("q", 8 << 20);
  ASSERT_TRUE(manager().Put("p", 33, Pattern(12, 100), 0).ok());
  auto err = [](const std::string& from, const std::string& to) {
    return rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
  };
  EXPECT_EQ(err(Path("p/33"), Path("q/33")), EXDEV);
  EXPECT_EQ(err(Path("p/33"), Path("p/status")), EPERM);
  EXPECT_EQ(err(Path("p/status"), Path("p/34")), EPERM);
  EXPECT_EQ(err(Path("p/33"), Path("p/abc")), EINVAL);
  EXPECT_EQ(err(Path("p/35"), Path("p/36")), ENOENT);
  EXPECT_TRUE(*manager().Get("p", 33) == Pattern(12, 100));
  EXPECT_EQ(manager().Entries("p")->size(), 1u);
}

// ---------------------------------------------------------------- 4. metadata per version

TEST_F(WritePathTest, ReplacementStartsWithEmptyMetadata) {
  PutOptions options;
  options.prefix_tokens = {5, 6, 7};
  options.metadata = R"({"old":true})";
  options.priority = 4;
  ASSERT_TRUE(manager().Put("p", 40, Pattern(13, 1000), 99, options).ok());
  ASSERT_EQ(WriteFile(Path("p/40"), Pattern(14, 2000)), 0);
  Result<EntryInfo> info = manager().Stat("p", 40);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->size_bytes, 2000u);
  EXPECT_EQ(info->token_count, 0u);
  EXPECT_EQ(info->prefix_hash, "");
  EXPECT_EQ(info->metadata, "");
  EXPECT_EQ(info->priority, 0);
  Result<std::vector<EntryInfo>> old_prefix =
      manager().FindByPrefixHash("p", PrefixHash(std::vector<uint32_t>{5, 6, 7}));
  ASSERT_TRUE(old_prefix.ok());
  EXPECT_TRUE(old_prefix->empty());
}

TEST_F(WritePathTest, XattrsOnTheWritersHandleGoToTheReplacement) {
  ASSERT_TRUE(manager().Put("p", 41, Pattern(15, 1000), 5).ok());
  int fd = open(Path("p/41").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "xyz", 3), 3);
  ASSERT_EQ(SetAttr(fd, "prefix_tokens", "8,9"), 0);
  // Not published yet: the entry others see keeps its own attributes.
  EXPECT_EQ(manager().Stat("p", 41)->token_count, 5u);
  EXPECT_EQ(manager().Stat("p", 41)->prefix_hash, "");
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(manager().Stat("p", 41)->prefix_hash, PrefixHash(std::vector<uint32_t>{8, 9}));
  EXPECT_EQ(manager().Stat("p", 41)->size_bytes, 3u);
}

TEST_F(WritePathTest, XattrOnAPublishedEntryChangesItInPlace) {
  std::vector<std::byte> data = Pattern(16, 12 << 20);
  ASSERT_TRUE(manager().Put("p", 42, data, 0).ok());
  Result<EntryInfo> before = manager().Stat("p", 42);
  ASSERT_TRUE(before.ok());
  std::vector<uint32_t> tokens(300);
  for (uint32_t i = 0; i < tokens.size(); ++i) tokens[i] = i * 7;
  std::string list = FormatTokenList(tokens);
  ASSERT_EQ(setxattr(Path("p/42").c_str(), "user.kvcache.prefix_tokens", list.data(), list.size(),
                     0),
            0)
      << strerror(errno);
  ASSERT_EQ(setxattr(Path("p/42").c_str(), "user.kvcache.token_count", "300", 3, 0), 0);
  Result<EntryInfo> after = manager().Stat("p", 42);
  ASSERT_TRUE(after.ok());
  // Same bytes where they were: the payload was not copied.
  EXPECT_EQ(after->offset, before->offset);
  EXPECT_EQ(after->token_count, 300u);
  EXPECT_EQ(after->prefix_hash, PrefixHash(tokens));
  EXPECT_EQ(after->created, before->created);
  Result<EntryView> view = manager().Pin("p", 42);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->prefix_tokens(), tokens);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), view->data().begin()));
}

TEST_F(WritePathTest, XattrOnAnOutdatedGenerationFailsWithESTALE) {
  ASSERT_TRUE(manager().Put("p", 43, Pattern(17, 4000), 1).ok());
  int fd = open(Path("p/43").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  PutOptions newer;
  newer.metadata = R"({"newer":1})";
  ASSERT_TRUE(manager().Put("p", 43, Pattern(18, 6000), 2, newer).ok());
  EXPECT_EQ(SetAttr(fd, "metadata", R"({"stale":1})"), ESTALE);
  EXPECT_EQ(SetAttr(fd, "token_count", "9"), ESTALE);
  close(fd);
  Result<EntryInfo> info = manager().Stat("p", 43);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->metadata, R"({"newer":1})");
  EXPECT_EQ(info->token_count, 2u);
  EXPECT_TRUE(*manager().Get("p", 43) == Pattern(18, 6000));
}

// ---------------------------------------------------------------- 5. long prefixes

TEST_F(WritePathTest, TokensCompanionFileAttachesA128kTokenPrefix) {
  std::vector<uint32_t> tokens(128 * 1024);
  for (uint32_t i = 0; i < tokens.size(); ++i) tokens[i] = (i * 2654435761u) % 152064;
  std::vector<std::byte> raw(tokens.size() * 4);
  for (size_t i = 0; i < tokens.size(); ++i) {
    for (int b = 0; b < 4; ++b) raw[i * 4 + b] = static_cast<std::byte>(tokens[i] >> (8 * b));
  }
  ASSERT_EQ(WriteFile(Path("p/50.tokens"), raw), 0);
  EXPECT_EQ(manager().Entries("p")->size(), 0u);
  std::vector<std::byte> data = Pattern(19, 1 << 20);
  ASSERT_EQ(WriteFile(Path("p/50"), data), 0);
  Result<EntryView> view = manager().Pin("p", 50);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->info().prefix_length, tokens.size());
  EXPECT_EQ(view->info().prefix_hash, PrefixHash(tokens));
  EXPECT_TRUE(view->prefix_tokens() == tokens);
  ASSERT_TRUE(view->Release().ok());
  // Consumed by the publish; the entry is found by its prefix.
  EXPECT_EQ(access(Path("p/50.tokens").c_str(), F_OK), -1);
  EXPECT_EQ(ChildReads(Path("p/by-prefix/" + PrefixHash(tokens) + "/50"), data), 0);
  // A companion of the wrong length is refused at close and attaches nothing.
  EXPECT_EQ(WriteFile(Path("p/51.tokens"), Bytes("abcde")), EINVAL);
}

// ---------------------------------------------------------------- 7. fsync

TEST_F(WritePathTest, FsyncPublishesAndReturnsThePublishError) {
  std::vector<std::byte> data = Pattern(20, 40000);
  int fd = open(Path("p/60").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(WriteAll(fd, data, 8192), 0);
  ASSERT_EQ(fsync(fd), 0);
  EXPECT_TRUE(*manager().Get("p", 60) == data);
  EXPECT_EQ(ChildReads(Path("p/60"), data), 0);
  ASSERT_EQ(close(fd), 0);

  // A publish that fails: the pool filled with pinned entries after the bytes were
  // accepted.
  CreatePool("small", 8 << 20);
  fd = open(Path("small/1").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(WriteAll(fd, Pattern(21, 5 << 20), 1 << 20), 0);
  ASSERT_TRUE(manager().Put("small", 2, Pattern(22, 6 << 20), 0).ok());
  Result<EntryView> pinned = manager().Pin("small", 2);
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(fsync(fd), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(manager().Stat("small", 1).status().code(), Code::kNotFound);
  close(fd);
}

}  // namespace
}  // namespace kvcache::testing
