// Who may see and use a pool through the mount: with allow_other, each pool shows its
// segment's owner and mode and the kernel enforces them (default_permissions); other
// users cannot fill a pool's lease table. Runs real processes as an unprivileged user
// made for the test and always removed. (That only catalog pools are ever mapped is
// foreign_pool_test's.)
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "kvcache/snapshot.h"
#include "mount_fixture.h"
#include "support/test_user.h"

namespace kvcache::testing {
namespace {

// Runs `fn` in a child process as `user`; returns its result (or -1).
int RunAs(const TestUser& user, const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(user.gid()) != 0 || setuid(user.uid()) != 0) {
      _exit(250);
    }
    _exit(fn());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// errno of `rc` (0 when it succeeded), small enough for an exit status.
int Err(int rc) { return rc == 0 ? 0 : errno; }

class PermissionsTest : public MountedTest {
 protected:
  void SetUp() override {
    daemon_args_ = {"allow_other"};
    MountedTest::SetUp();
    if (HasFatalFailure()) return;
    // Let other users reach the mount point (temp dirs are 0700).
    ASSERT_EQ(chmod(dir_->path().c_str(), 0755), 0);
    if (!user_.ok()) GTEST_SKIP() << "needs root and useradd";
  }
  void CreatePoolWithMode(const std::string& name, uint32_t mode, uint32_t max_sequences = 64) {
    PoolConfig config;
    config.name = name;
    config.size_bytes = 16 << 20;
    config.mode = mode;
    config.max_sequences = max_sequences;
    ASSERT_TRUE(manager().CreatePool(config).ok());
  }
  struct stat Stat(const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(lstat(Path(rel).c_str(), &st), 0) << rel;
    return st;
  }

  TestUser user_;
};

TEST_F(PermissionsTest, EachPoolShowsItsSegmentsOwnerAndMode) {
  CreatePoolWithMode("priv", 0600);
  CreatePoolWithMode("shared", 0644);
  ASSERT_TRUE(manager().Put("priv", 1, Pattern(1, 100), 1, {.prefix_tokens = {1, 2}}).ok());
  ASSERT_TRUE(manager().Put("shared", 1, Pattern(1, 100), 1).ok());

  EXPECT_EQ(Stat("priv").st_mode, S_IFDIR | 0700);
  EXPECT_EQ(Stat("priv").st_uid, 0u);
  EXPECT_EQ(Stat("priv/1").st_mode, S_IFREG | 0600);
  EXPECT_EQ(Stat("priv/evict").st_mode, S_IFREG | 0600);
  EXPECT_EQ(Stat("priv/status").st_mode, S_IFREG | 0400);
  EXPECT_EQ(Stat("priv/by-prefix").st_mode, S_IFDIR | 0500);
  EXPECT_EQ(Stat("shared").st_mode, S_IFDIR | 0755);
  EXPECT_EQ(Stat("shared/1").st_mode, S_IFREG | 0644);
  EXPECT_EQ(Stat("shared/evict").st_mode, S_IFREG | 0644);
  EXPECT_EQ(Stat("shared/entries").st_mode, S_IFREG | 0444);

  EXPECT_EQ(Stat("shared/1").st_uid, 0u);
}

TEST_F(PermissionsTest, OtherUsersGetWhatTheModeAllowsAndNothingMore) {
  CreatePoolWithMode("priv", 0600);
  CreatePoolWithMode("shared", 0644);
  ASSERT_TRUE(manager().Put("priv", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(manager().Put("shared", 1, Pattern(2, 100), 1).ok());
  std::string m = mountpoint_;
  auto read_file = [](const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return errno;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    return n == 100 ? 0 : 99;
  };
  struct stat st;
  EXPECT_EQ(RunAs(user_, [&] { return Err(stat((m + "/priv/1").c_str(), &st)); }), EACCES);
  EXPECT_EQ(RunAs(user_, [&] { return read_file(m + "/priv/1"); }), EACCES);
  EXPECT_EQ(RunAs(user_, [&] { return Shell("ls '" + m + "/priv' >/dev/null 2>&1"); }), 2);
  EXPECT_EQ(RunAs(user_, [&] { return read_file(m + "/shared/1"); }), 0);
  EXPECT_EQ(RunAs(user_, [&] { return WriteFile(m + "/shared/9", Pattern(1, 10)); }), EACCES);
  EXPECT_EQ(RunAs(user_, [&] { return WriteText(m + "/shared/evict", "50\n"); }), EACCES);
  EXPECT_EQ(RunAs(user_, [&] { return Err(unlink((m + "/shared/1").c_str())); }), EACCES);
  EXPECT_EQ(RunAs(user_, [&] { return Err(mkdir((m + "/newpool").c_str(), 0755)); }), EACCES);
  EXPECT_EQ(manager().Entries("shared")->size(), 1u);
  EXPECT_FALSE(manager().GetConfig("newpool").ok());
}

TEST_F(PermissionsTest, OtherUsersCannotFillTheLeaseTable) {
  CreatePoolWithMode("shared", 0644, 64);
  constexpr int kEntries = 50;
  for (int s = 0; s < kEntries; ++s) {
    ASSERT_TRUE(manager().Put("shared", s, Pattern(s, 1000), 1).ok());
  }
  // The reader opens entries and keeps them open until told to stop; it reports how
  // many opens worked and the errno of the first that did not.
  int report[2], go[2];
  ASSERT_EQ(pipe(report), 0);
  ASSERT_EQ(pipe(go), 0);
  std::string m = mountpoint_;
  pid_t reader = fork();
  ASSERT_GE(reader, 0);
  if (reader == 0) {
    close(report[0]);
    close(go[1]);
    rlimit lim{8192, 8192};
    setrlimit(RLIMIT_NOFILE, &lim);
    if (setgroups(0, nullptr) != 0 || setgid(user_.gid()) != 0 || setuid(user_.uid()) != 0) {
      _exit(250);
    }
    int opened = 0, err = 0;
    while (opened < 3000) {
      int fd = open((m + "/shared/" + std::to_string(opened % kEntries)).c_str(), O_RDONLY);
      if (fd < 0) {
        err = errno;
        break;
      }
      opened++;
    }
    int out[2] = {opened, err};
    (void)!write(report[1], out, sizeof(out));
    char c;
    (void)!read(go[0], &c, 1);
    _exit(0);
  }
  close(report[1]);
  close(go[0]);
  int result[2] = {-1, -1};
  ASSERT_EQ(read(report[0], result, sizeof(result)), static_cast<ssize_t>(sizeof(result)));
  EXPECT_GT(result[0], 0);
  EXPECT_LT(result[0], 64) << "another user pinned " << result[0] << " entries";
  EXPECT_TRUE(result[1] == EMFILE || result[1] == EBUSY) << "errno " << result[1];

  // Meanwhile the owner's gets, pins, puts and persists all work.
  std::vector<EntryView> views;
  for (int s = 0; s < kEntries; ++s) {
    Result<EntryView> v = manager().View("shared", s);
    ASSERT_TRUE(v.ok()) << s << ": " << v.status().ToString();
    views.push_back(std::move(v).value());
  }
  for (int s = kEntries; s < kEntries + 10; ++s) {
    ASSERT_TRUE(manager().Put("shared", s, Pattern(s, 1000), 1).ok()) << s;
  }
  EXPECT_TRUE(PersistPool(manager(), "shared").ok());
  // Root's own opens through the mount are not counted against anyone.
  std::vector<int> fds;
  for (int i = 0; i < 200; ++i) {
    int fd = open(Path("shared/" + std::to_string(i % kEntries)).c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << i;
    fds.push_back(fd);
  }
  for (int fd : fds) close(fd);
  (void)!write(go[1], "x", 1);
  int status = 0;
  waitpid(reader, &status, 0);
  close(report[0]);
  close(go[1]);

  // Closed files give their pins back: the reader may open again.
  EXPECT_EQ(RunAs(user_, [&] {
    int fd = open((m + "/shared/1").c_str(), O_RDONLY);
    return fd < 0 ? errno : (close(fd), 0);
  }), 0);
}

}  // namespace
}  // namespace kvcache::testing
