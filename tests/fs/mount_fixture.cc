#include "mount_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/child_process.h"

namespace kvcache::testing {
namespace {

int WaitFor(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return status;
}

}  // namespace

MountGuard::~MountGuard() {
  if (pid_ <= 0) return;  // already killed and reaped; TearDown clears any mount left
  Shell("fusermount3 -u -z '" + mountpoint_ + "' 2>/dev/null");
  WaitFor(pid_, std::chrono::seconds(5));
}

int MountGuard::Kill(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  int status = WaitFor(pid_, std::chrono::seconds(5));
  pid_ = -1;
  return status;
}

bool IsMounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point == path && line.find("fuse.kvcachefs") != std::string::npos) return true;
  }
  return false;
}

void MountedTest::SetUp() {
  IsolatedTest::SetUp();
  dir_ = std::make_unique<TempDir>();
  mountpoint_ = dir_->Join("mnt");
  ASSERT_EQ(mkdir(mountpoint_.c_str(), 0755), 0);
  StartDaemon();
}

void MountedTest::TearDown() {
  daemon_.reset();  // unmounts before the temp dir under it is removed
  if (IsMounted(mountpoint_)) Shell("fusermount3 -u -z '" + mountpoint_ + "' 2>/dev/null");
  dir_.reset();
  IsolatedTest::TearDown();
}

void MountedTest::StartDaemon(const std::vector<std::string>& extra_args) {
  std::string binary = BuildDir() + "/fs/kvcachefs";
  ASSERT_EQ(access(binary.c_str(), X_OK), 0) << "missing " << binary;
  std::vector<std::string> args = {binary, mountpoint_, "-f", "-o", "home=" + home_->path()};
  for (const std::string& o : daemon_args_) {
    args.push_back("-o");
    args.push_back(o);
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  daemon_.reset();
  std::vector<char*> argv = ExecArgv(args);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  daemon_ = std::make_unique<MountGuard>(mountpoint_, pid);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  // A stale mount left by a killed daemon is listed too, but answers ENOTCONN; once
  // the new daemon has detached it, the directory under it answers until the new
  // mount is made, so the answer must come from a FUSE filesystem.
  constexpr decltype(statfs::f_type) kFuseSuperMagic = 0x65735546;
  struct statfs st;
  while (!IsMounted(mountpoint_) || statfs(mountpoint_.c_str(), &st) != 0 ||
         st.f_type != kFuseSuperMagic) {
    int status;
    ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0) << "kvcachefs exited early";
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "kvcachefs did not mount";
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

int WriteFile(const std::string& path, const std::vector<std::byte>& data, int flags) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | flags, 0644);
  if (fd < 0) return errno;
  size_t done = 0;
  while (done < data.size()) {
    size_t n = std::min<size_t>(data.size() - done, 1 << 20);
    ssize_t w = write(fd, data.data() + done, n);
    if (w < 0) {
      int err = errno;
      close(fd);
      return err;
    }
    done += static_cast<size_t>(w);
  }
  return close(fd) == 0 ? 0 : errno;
}

int ReadFile(const std::string& path, std::vector<std::byte>* out) {
  out->clear();
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  std::vector<std::byte> buf(1 << 20);
  for (;;) {
    ssize_t r = read(fd, buf.data(), buf.size());
    if (r < 0) {
      int err = errno;
      close(fd);
      return err;
    }
    if (r == 0) break;
    out->insert(out->end(), buf.begin(), buf.begin() + r);
  }
  close(fd);
  return 0;
}

int ReadText(const std::string& path, std::string* out) {
  std::vector<std::byte> bytes;
  int err = ReadFile(path, &bytes);
  out->assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return err;
}

int WriteText(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_TRUNC);
  if (fd < 0) return errno;
  int err = 0;
  if (write(fd, text.data(), text.size()) < 0) err = errno;
  close(fd);
  return err;
}

int Shell(const std::string& command) {
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::byte> Bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

}  // namespace kvcache::testing
