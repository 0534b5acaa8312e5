#include "fuse_mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "clock.h"

extern char** environ;

namespace kvcache::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(20);

bool IsExecutable(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && access(path.c_str(), X_OK) == 0;
}

// The last non-empty line the daemon wrote to its log since `offset`.
// The last `n` non-empty lines written to the log since `offset`, joined by "; ".
std::string LastLogLines(const std::string& log_path, off_t offset, size_t n) {
  std::ifstream in(log_path);
  if (!in) return {};
  in.seekg(offset);
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    last.push_back(line);
    if (last.size() > n) last.pop_front();
  }
  std::string out;
  for (const std::string& l : last) out += (out.empty() ? "" : "; ") + l;
  return out;
}

// The kvcachefs process serving `dir`: started as `kvcachefs <dir> ...` by StartDaemon,
// or as `kvcachefs <source> <dir> ...` by mount.fuse3 (mount -t fuse.kvcachefs, fstab).
pid_t FindDaemonPid(const std::string& dir) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  pid_t found = 0;
  while (dirent* e = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream cmdline(fmt::format("/proc/{}/cmdline", pid));
    std::string argv0, argv1, argv2;
    if (!std::getline(cmdline, argv0, '\0') || !std::getline(cmdline, argv1, '\0')) continue;
    if (!std::getline(cmdline, argv2, '\0')) argv2.clear();
    if (fs::path(argv0).filename() == "kvcachefs" &&
        (argv1 == dir || (argv2 == dir && !argv1.empty() && argv1[0] != '-'))) {
      found = static_cast<pid_t>(pid);
      break;
    }
  }
  closedir(proc);
  return found;
}

bool MountIsLive(const std::string& dir) {
  MountInfo mount;
  struct stat st {};
  return FindMount(dir, &mount) && IsKvcachefs(mount) && stat((dir + "/status").c_str(), &st) == 0;
}

// Runs fusermount3 -u quietly (its own messages would break our one-line errors).
bool RunFusermount(const std::string& dir) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::string prog = "fusermount3", flag = "-u", target = dir;
  char* argv[] = {prog.data(), flag.data(), target.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, prog.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return false;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// libfuse splits -o values on commas; a backslash keeps one literal.
std::string EscapeOptionValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

Result<std::string> FindDaemon() {
  std::vector<fs::path> tried;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path here = exe.parent_path();
    tried.push_back(here / "kvcachefs");
    tried.push_back((here / ".." / "fs" / "kvcachefs").lexically_normal());
  }
  for (const fs::path& p : tried) {
    if (IsExecutable(p)) return p.string();
  }
  if (const char* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      if (dir.empty()) continue;
      fs::path p = fs::path(dir) / "kvcachefs";
      if (IsExecutable(p)) return p.string();
    }
  }
  std::string places;
  for (const fs::path& p : tried) places += p.string() + ", ";
  return Status::NotFound(fmt::format("kvcachefs not found ({}PATH); build or install it", places));
}

bool FindMount(const std::string& dir, MountInfo* out) {
  bool found = false;
  for (MountInfo& m : ReadMountInfo()) {
    if (m.mount_point == dir) {
      *out = std::move(m);
      found = true;
    }
  }
  return found;
}

bool IsKvcachefs(const MountInfo& mount) {
  return mount.fstype == "fuse.kvcachefs" ||
         (mount.fstype.rfind("fuse", 0) == 0 && mount.source == "kvcachefs");
}

Result<pid_t> StartDaemon(const std::string& daemon, const std::string& dir,
                          const std::string& home, const std::string& log_path,
                          std::chrono::milliseconds timeout) {
  std::vector<std::string> args = {daemon, dir, "-f", "-o", "home=" + EscapeOptionValue(home)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) return ErrnoToStatus(errno, "open /dev/null");
  // O_NOFOLLOW: a symlink planted as the log never redirects the daemon's writes.
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW |
                                          O_NONBLOCK | O_NOCTTY,
                    0600);
  if (log_fd < 0) {
    close(null_fd);
    return ErrnoToStatus(errno, fmt::format("open log '{}'", log_path));
  }
  struct stat log_st {};
  if (fstat(log_fd, &log_st) != 0 || !S_ISREG(log_st.st_mode) || log_st.st_uid != geteuid()) {
    close(null_fd);
    close(log_fd);
    return Status::PermissionDenied(
        fmt::format("refusing log '{}': not a regular file of this user", log_path));
  }
  off_t log_start = lseek(log_fd, 0, SEEK_END);

  pid_t pid = fork();
  if (pid == 0) {
    // Child: its own session, so the shell's Ctrl-C and hangup do not reach it, and no
    // inherited descriptor (a caller's pipe) is held open by the long-lived daemon.
    setsid();
    dup2(null_fd, STDIN_FILENO);
    dup2(null_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close_range(3, ~0U, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int fork_errno = errno;
  close(null_fd);
  close(log_fd);
  if (pid < 0) return ErrnoToStatus(fork_errno, "fork");

  auto deadline = Clock::now() + timeout;
  bool running = true;
  while (Clock::now() < deadline) {
    if (MountIsLive(dir)) return pid;
    int status = 0;
    if (running && waitpid(pid, &status, WNOHANG) == pid) {
      running = false;
      // The daemon runs in the foreground (-f): whatever its exit status, exiting
      // before the mount is live is a failure, explained by the last lines it logged.
      if (MountIsLive(dir)) return pid;
      std::string why = WIFEXITED(status)
                            ? fmt::format("exited with status {}", WEXITSTATUS(status))
                            : fmt::format("died of signal {}", WTERMSIG(status));
      std::string last = LastLogLines(log_path, log_start, 2);
      return Status::IOError(fmt::format("kvcachefs {} before mounting '{}'{}{}", why, dir,
                                         last.empty() ? "" : ": ", last));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  if (running) {
    // The daemon leads its own session and process group: stop the whole group.
    kill(-pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  }
  MountInfo mount;
  if (FindMount(dir, &mount) && IsKvcachefs(mount)) RunFusermount(dir);
  return Status::IOError(fmt::format("kvcachefs did not mount '{}' within {} s (log: {})", dir,
                                     timeout.count() / 1000.0, log_path));
}

Status StopDaemon(const std::string& dir, std::chrono::milliseconds timeout) {
  pid_t daemon = FindDaemonPid(dir);
  if (!RunFusermount(dir) && umount2(dir.c_str(), 0) != 0) {
    return ErrnoToStatus(errno, fmt::format("unmount '{}'", dir));
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    MountInfo mount;
    bool mounted = FindMount(dir, &mount) && IsKvcachefs(mount);
    // An exited daemon whose new parent has not reaped it yet is a zombie: gone for us.
    bool alive = daemon > 0 && PidRunning(daemon);
    if (!mounted && !alive) return Status::Ok();
    if (Clock::now() >= deadline) {
      return Status::Busy(
          mounted ? fmt::format("'{}' is still mounted", dir)
                  : fmt::format("kvcachefs (pid {}) serving '{}' did not exit", daemon, dir));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace kvcache::cli
