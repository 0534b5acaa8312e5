// The daemon's life: clean unmounts, a SIGKILL and a quick restart.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "kvcache/prefix.h"
#include "kvcache/snapshot.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class DaemonTest : public MountedTest {};

// A bad name_timeout is refused with a message before anything is mounted.
TEST_F(DaemonTest, ABadNameTimeoutIsRefusedBeforeMounting) {
  daemon_.reset();  // the fixture's mount
  ASSERT_FALSE(IsMounted(mountpoint_));
  for (std::string bad : {"abc", "-1", "3601", "1s", "nan"}) {
    std::string err = dir_->Join("err");
    int status = Shell("'" + BuildDir() + "/fs/kvcachefs' '" + mountpoint_ + "' -f -o home='" +
                       home_->path() + "' -o name_timeout=" + bad + " 2>'" + err + "'");
    EXPECT_EQ(status, 2) << bad;
    std::string message;
    ASSERT_EQ(ReadText(err, &message), 0);
    EXPECT_NE(message.find("name_timeout: '" + bad + "' is not a number of seconds"),
              std::string::npos)
        << message;
    EXPECT_FALSE(IsMounted(mountpoint_)) << bad;
  }
}

TEST_F(DaemonTest, SigtermUnmountsCleanly) {
  int status = daemon_->Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(IsMounted(mountpoint_));
}

TEST_F(DaemonTest, SigintUnmountsCleanly) {
  int status = daemon_->Kill(SIGINT);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(IsMounted(mountpoint_));
}

TEST_F(DaemonTest, FusermountUnmountStopsTheDaemon) {
  ASSERT_EQ(Shell("fusermount3 -u " + mountpoint_), 0);
  int status = daemon_->Kill(0);  // just reaps it
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_FALSE(IsMounted(mountpoint_));
}

TEST_F(DaemonTest, RestartAfterSigkillReattachesWithEntriesIntact) {
  CreatePool("p", 64 << 20);
  std::vector<std::byte> data = Pattern(9, 5 << 20);
  ASSERT_EQ(WriteFile(Path("p/77"), data), 0);
  daemon_->Kill(SIGKILL);
  ASSERT_TRUE(IsMounted(mountpoint_));  // stale: the kernel still lists it
  std::vector<std::byte> back;
  EXPECT_EQ(ReadFile(Path("p/77"), &back), ENOTCONN);

  auto start = std::chrono::steady_clock::now();
  StartDaemon();
  ASSERT_EQ(ReadFile(Path("p/77"), &back), 0);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(back == data);
  EXPECT_LT(took, std::chrono::milliseconds(500));
  // Only one kvcachefs mount is left at the mount point.
  ASSERT_EQ(Shell("test $(grep -c ' " + mountpoint_ + " .*fuse.kvcachefs' /proc/self/mountinfo) -eq 1"), 0);
}

TEST_F(DaemonTest, RestoreOptionBringsBackPoolsWhoseMemoryIsGone) {
  CreatePool("keep", 16 << 20);
  CreatePool("nosnap", 16 << 20);
  std::vector<std::byte> data = Pattern(3, 300000);
  ASSERT_TRUE(manager().Put("keep", 5, data, 12, {.prefix_tokens = {1, 2, 3}}).ok());
  ASSERT_TRUE(PersistPool(manager(), "keep").ok());
  daemon_->Kill(SIGTERM);
  // What a reboot does: the segments vanish, the catalog and snapshots stay.
  UnlinkSegmentsWithPrefix(shm_prefix_);
  manager_ = std::make_unique<Manager>(options());
  ASSERT_FALSE(manager().Stats("keep")->loaded);

  StartDaemon({"-o", "restore"});
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("keep/5"), &back), 0);
  EXPECT_TRUE(back == data);
  EXPECT_TRUE(manager().Stats("keep")->loaded);
  std::string hash = PrefixHash(std::vector<uint32_t>{1, 2, 3});
  EXPECT_EQ(manager().Stat("keep", 5)->prefix_hash, hash);
  EXPECT_EQ(Shell("test -L '" + Path("keep/by-prefix/" + hash + "/5") + "'"), 0);
  // A pool without a snapshot stays known but not loaded.
  EXPECT_FALSE(manager().Stats("nosnap")->loaded);
}

// The kvcachefs process whose argv[1] is `mountpoint`, 0 if none.
pid_t DaemonServing(const std::string& mountpoint) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  pid_t found = 0;
  while (dirent* e = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream cmdline("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string argv0, argv1;
    if (!std::getline(cmdline, argv0, '\0') || !std::getline(cmdline, argv1, '\0')) continue;
    if (argv0.size() >= 9 && argv0.substr(argv0.size() - 9) == "kvcachefs" &&
        argv1 == mountpoint) {
      found = pid;
      break;
    }
  }
  closedir(proc);
  return found;
}

// True when /proc/locks shows `pid` holding a lock on the file `path`.
bool HoldsLock(pid_t pid, const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  std::ostringstream id;
  id << std::hex << std::setfill('0') << std::setw(2) << major(st.st_dev) << ":"
     << std::setw(2) << minor(st.st_dev) << ":" << std::dec << st.st_ino;
  std::ifstream in("/proc/locks");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string n, kind, adv, mode, pid_s, file;
    f >> n >> kind >> adv >> mode >> pid_s >> file;
    if (pid_s == std::to_string(pid) && file == id.str()) return true;
  }
  return false;
}

TEST_F(DaemonTest, RestoreInTheBackgroundOpensTheCatalogInTheServingProcess) {
  CreatePool("keep", 16 << 20);
  ASSERT_TRUE(manager().Put("keep", 5, Pattern(3, 3000), 12).ok());
  ASSERT_TRUE(PersistPool(manager(), "keep").ok());
  daemon_->Kill(SIGTERM);
  UnlinkSegmentsWithPrefix(shm_prefix_);
  manager_ = std::make_unique<Manager>(options());

  // Without -f: the daemon forks itself into the background.
  std::string binary = BuildDir() + "/fs/kvcachefs";
  ASSERT_EQ(Shell("'" + binary + "' '" + mountpoint_ + "' -o 'home=" + home_->path() +
                  "' -o restore"), 0);
  pid_t pid = DaemonServing(mountpoint_);
  ASSERT_GT(pid, 0);
  std::vector<std::byte> back;
  EXPECT_EQ(ReadFile(Path("keep/5"), &back), 0);
  EXPECT_TRUE(back == Pattern(3, 3000));
  // SQLite in WAL mode holds a read lock on the -shm file for as long as its
  // connection is open: the serving process must hold it, not the parent that exited.
  EXPECT_TRUE(HoldsLock(pid, home_->Join("kv_cache.db-shm")))
      << "the daemon's catalog connection was opened before it forked";
  ASSERT_EQ(Shell("fusermount3 -u '" + mountpoint_ + "'"), 0);
  for (int i = 0; i < 500 && kill(pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(kill(pid, 0), 0) << "daemon did not exit after unmount";
}

}  // namespace
}  // namespace kvcache::testing
