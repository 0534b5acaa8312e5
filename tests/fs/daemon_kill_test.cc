// Killing or stopping the daemon while readers and lookups are in flight never wedges
// anything: the daemon exits (within 1 s of a SIGKILL), and every reader returns (with
// ENOTCONN, or finding the mount gone) instead of hanging unkillable in the kernel.
//
// KVC_KILL_ITERATIONS sets the number of kills (default 200).
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kIds = 24;

// Polls for `pid` to exit within `limit`; true when it did (and was reaped).
bool ExitsWithin(pid_t pid, std::chrono::milliseconds limit, int* status) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid || r < 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

char ProcState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(in)), {});
  size_t paren = content.rfind(')');
  return paren != std::string::npos && paren + 2 < content.size() ? content[paren + 2] : '?';
}

// Mounts the fuse control filesystem where it belongs when nothing has yet (a machine
// without systemd, which otherwise mounts it at boot): the tests read each
// connection's count of waiting requests there. True when it is mounted.
bool EnsureFusectl() {
  constexpr const char* kDir = "/sys/fs/fuse/connections";
  constexpr long kFusectlMagic = 0x65735543;  // FUSE_CTL_SUPER_MAGIC
  struct statfs fs;
  if (statfs(kDir, &fs) == 0 && fs.f_type == kFusectlMagic) return true;
  return mount("fusectl", kDir, "fusectl", 0, nullptr) == 0 ||
         (statfs(kDir, &fs) == 0 && fs.f_type == kFusectlMagic);
}

// The fusectl directory of the connection mounted at `path` (named by the mount's
// device number), or "" when there is none.
std::string ConnectionDir(const std::string& path) {
  struct stat st;
  if (!EnsureFusectl() || stat(path.c_str(), &st) != 0) return "";
  unsigned dev = (major(st.st_dev) << 20) | minor(st.st_dev);
  std::string dir = "/sys/fs/fuse/connections/" + std::to_string(dev);
  return access((dir + "/waiting").c_str(), R_OK) == 0 ? dir : "";
}

// Requests of the connection queued for the daemon or being answered by it.
int WaitingRequests(const std::string& connection) {
  std::ifstream in(connection + "/waiting");
  int n = -1;
  in >> n;
  return n;
}

// Ends the connection: every request in flight is answered with ENOTCONN, whatever
// the daemon does.
void AbortConnection(const std::string& connection) {
  std::ofstream(connection + "/abort") << "1";
}

// Each thread of `pid` with its name, state and kernel stack, to say what holds it.
std::string ThreadStacks(pid_t pid) {
  std::ostringstream out;
  std::error_code ec;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(task_dir, ec)) {
    auto slurp = [&](const char* name) {
      std::ifstream in(task.path() / name);
      return std::string((std::istreambuf_iterator<char>(in)), {});
    };
    std::string comm = slurp("comm"), stack = slurp("stack");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    std::replace(stack.begin(), stack.end(), '\n', ' ');
    std::string tid = task.path().filename().string();
    out << "\n  thread " << tid << " (" << comm << ") state "
        << ProcState(static_cast<pid_t>(std::stol(tid))) << ": " << stack;
  }
  return out.str();
}

// A reader process: lookups, stats, reads and listings of the pool until the mount
// stops answering. Exits 0 when it sees the daemon gone, 1 at its own deadline.
[[noreturn]] void ReaderMain(const std::string& mount, unsigned seed) {
  std::minstd_rand rng(seed);
  std::vector<char> buf(1 << 16);
  auto deadline = Clock::now() + std::chrono::seconds(30);
  auto gone = [](int err) { return err == ENOTCONN || err == ECONNABORTED; };
  while (Clock::now() < deadline) {
    std::string name = mount + "/p/" + std::to_string(rng() % (kIds + 4));
    struct stat st;
    if (stat(name.c_str(), &st) != 0 && gone(errno)) _exit(0);
    int fd = open(name.c_str(), O_RDONLY);
    if (fd < 0) {
      if (gone(errno)) _exit(0);
    } else {
      ssize_t n;
      while ((n = read(fd, buf.data(), buf.size())) > 0) {
      }
      int err = errno;
      close(fd);
      if (n < 0 && gone(err)) _exit(0);
    }
    if (rng() % 8 == 0) {
      DIR* dir = opendir((mount + "/p").c_str());
      if (dir == nullptr) {
        if (gone(errno) || errno == ENOENT) _exit(0);
      } else {
        errno = 0;
        while (readdir(dir) != nullptr) {
        }
        int err = errno;
        closedir(dir);
        if (gone(err)) _exit(0);
      }
    }
    // Unmounted cleanly: the mount point is an empty directory again.
    if (stat((mount + "/p").c_str(), &st) != 0 && (gone(errno) || errno == ENOENT)) _exit(0);
  }
  _exit(1);
}

// Another process replacing and removing entries behind the mount's back, so lookups
// find new generations and listings find names gone.
[[noreturn]] void ChurnMain(ManagerOptions options, unsigned seed) {
  Manager manager(options);
  std::minstd_rand rng(seed);
  for (;;) {
    uint64_t id = rng() % kIds;
    if (rng() % 4 == 0) {
      (void)manager.Remove("p", id);
    } else {
      (void)manager.Put("p", id, Pattern(rng(), 4096 + rng() % (256 << 10)), 1);
    }
  }
}

class DaemonKillTest : public MountedTest {};

TEST_F(DaemonKillTest, KillsAndStopsUnderLoadNeverWedge) {
  int iterations = 200;
  if (const char* env = std::getenv("KVC_KILL_ITERATIONS")) iterations = std::atoi(env);
  CreatePool("p", 64 << 20);
  for (int id = 0; id < kIds; ++id) {
    ASSERT_TRUE(manager().Put("p", id, Pattern(id, 64 << 10), 1).ok());
  }
  std::minstd_rand rng(42);
  auto started = Clock::now();
  int sigkills = 0, sigterms = 0, unclean_stops = 0;
  for (int it = 0; it < iterations; ++it) {
    SCOPED_TRACE("iteration " + std::to_string(it));
    if (it > 0) StartDaemon();
    if (HasFatalFailure()) return;
    std::vector<pid_t> children;
    for (int r = 0; r < 3; ++r) {
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) ReaderMain(mountpoint_, static_cast<unsigned>(it * 10 + r));
      children.push_back(pid);
    }
    pid_t churn = fork();
    ASSERT_GE(churn, 0);
    if (churn == 0) ChurnMain(options(), static_cast<unsigned>(it));

    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 40));
    int sig = rng() % 2 == 0 ? SIGKILL : SIGTERM;
    (sig == SIGKILL ? sigkills : sigterms)++;
    pid_t daemon = daemon_->Release();
    kill(daemon, sig);
    int status = 0;
    bool daemon_exited = ExitsWithin(daemon, std::chrono::seconds(5), &status);
    bool readers_returned = true;
    std::string stuck;
    for (pid_t pid : children) {
      int reader_status = 0;
      if (!ExitsWithin(pid, std::chrono::seconds(5), &reader_status)) {
        readers_returned = false;
        stuck += " " + std::to_string(pid) + "(" + ProcState(pid) + ")";
      } else {
        EXPECT_TRUE(WIFEXITED(reader_status) && WEXITSTATUS(reader_status) == 0)
            << "reader status " << reader_status;
      }
    }
    kill(churn, SIGKILL);
    waitpid(churn, nullptr, 0);
    EXPECT_TRUE(daemon_exited) << "daemon " << daemon << " did not exit after signal " << sig
                               << " (state " << ProcState(daemon) << ")";
    EXPECT_TRUE(readers_returned) << "readers stuck after signal " << sig << ":" << stuck;
    if (!daemon_exited || !readers_returned) {
      // Free the wedge so the test can clean up: aborting the connection answers
      // every request in flight.
      umount2(mountpoint_.c_str(), MNT_FORCE);
      umount2(mountpoint_.c_str(), MNT_DETACH);
      for (pid_t pid : children) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
      kill(daemon, SIGKILL);
      waitpid(daemon, nullptr, 0);
      return;
    }
    if (sig == SIGTERM && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      // Exited, but not through the clean shutdown (seen about once in 600 stops
      // under a loaded machine, as death by the signal itself): counted and shown.
      unclean_stops++;
      std::printf("iteration %d: SIGTERM ended the daemon with wait status %d\n", it, status);
    }
  }
  EXPECT_LE(unclean_stops, std::max(1, sigterms / 100));
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  RecordProperty("iterations", iterations);
  std::printf("%d kills (%d SIGKILL, %d SIGTERM) in %.1f s\n", iterations, sigkills, sigterms,
              seconds);
  // The last start must still serve the pool whole.
  StartDaemon();
  struct stat st;
  EXPECT_EQ(stat(Path("p").c_str(), &st), 0);
}

// SIGKILL while requests wait on the daemon (lookups, reads and listings of readers,
// with entries replaced and removed by another process): the daemon's process is gone
// within 1 s, every time. No thread of the daemon may sleep uninterruptibly in the
// kernel on something only the mount's requests can release (a directory lock held by
// a lookup waiting for this very daemon, say): the process would never exit, /dev/fuse
// would stay open, the connection would never be aborted, and the readers would hang
// with it. Each kill waits for the connection to count requests in flight. The kills
// are random in time, so this drives the race for a bounded time (about 5 s) rather
// than reproducing one interleaving.
TEST_F(DaemonKillTest, SigkillWithRequestsInFlightExitsWithinOneSecond) {
  using std::chrono::milliseconds;
  CreatePool("p", 64 << 20);
  for (int id = 0; id < kIds; ++id) {
    ASSERT_TRUE(manager().Put("p", id, Pattern(id, 64 << 10), 1).ok());
  }
  std::minstd_rand rng(7);
  auto until = Clock::now() + std::chrono::seconds(5);
  int kills = 0, in_flight = 0;
  milliseconds slowest{0};
  while (kills < 4 || (Clock::now() < until && kills < 40)) {
    SCOPED_TRACE("kill " + std::to_string(kills));
    if (kills > 0) StartDaemon();
    if (HasFatalFailure()) return;
    std::string connection = ConnectionDir(mountpoint_);
    ASSERT_FALSE(connection.empty()) << "no fusectl entry for " << mountpoint_;
    std::vector<pid_t> readers;
    for (int r = 0; r < 4; ++r) {
      pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) ReaderMain(mountpoint_, static_cast<unsigned>(kills * 10 + r));
      readers.push_back(pid);
    }
    pid_t churn = fork();
    ASSERT_GE(churn, 0);
    if (churn == 0) ChurnMain(options(), static_cast<unsigned>(kills));

    std::this_thread::sleep_for(milliseconds(10 + rng() % 30));
    auto gate = Clock::now() + milliseconds(500);
    bool busy = false;
    while (!(busy = WaitingRequests(connection) > 0) && Clock::now() < gate) {
      std::this_thread::yield();
    }
    in_flight += busy ? 1 : 0;
    pid_t daemon = daemon_->Release();
    auto killed = Clock::now();
    kill(daemon, SIGKILL);
    int status = 0;
    bool exited = ExitsWithin(daemon, milliseconds(1000), &status);
    slowest = std::max(slowest, std::chrono::duration_cast<milliseconds>(Clock::now() - killed));
    ++kills;
    std::string stacks;
    if (!exited) {
      stacks = ThreadStacks(daemon);
      // Frees whatever holds the daemon, so that everything can be reaped.
      AbortConnection(connection);
      if (!ExitsWithin(daemon, std::chrono::seconds(5), &status)) {
        kill(daemon, SIGKILL);
        waitpid(daemon, &status, 0);
      }
    }
    bool readers_returned = true;
    for (pid_t pid : readers) {
      if (!ExitsWithin(pid, std::chrono::seconds(5), &status)) {
        readers_returned = false;
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    kill(churn, SIGKILL);
    waitpid(churn, nullptr, 0);
    if (!exited || !readers_returned) {
      Shell("fusermount3 -u -z '" + mountpoint_ + "' 2>/dev/null");
      EXPECT_TRUE(exited) << "daemon " << daemon << " still alive 1 s after SIGKILL"
                          << (busy ? " with requests in flight" : "") << "; its threads:"
                          << stacks;
      EXPECT_TRUE(readers_returned) << "readers stuck after the daemon's SIGKILL";
      return;
    }
  }
  std::printf("%d SIGKILLs (%d with requests in flight), slowest exit %lld ms\n", kills,
              in_flight, static_cast<long long>(slowest.count()));
  // The kills must have met the daemon busy, or this proves nothing.
  EXPECT_GE(in_flight, kills / 2);
  StartDaemon();
  struct stat st;
  EXPECT_EQ(stat(Path("p").c_str(), &st), 0);
}

}  // namespace
}  // namespace kvcache::testing
