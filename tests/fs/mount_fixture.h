// A real kvcachefs mount for a test: the built daemon runs as a child process in the
// foreground over the test's own CORTEX_HOME and shm prefix, mounted on a directory
// in a temp dir. The mount is always taken down (fusermount3 -u -z, then the child is
// reaped), even when the test fails.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "support/test_env.h"

namespace kvcache::testing {

// Owns one daemon process and its mount.
class MountGuard {
 public:
  MountGuard(std::string mountpoint, pid_t pid) : mountpoint_(std::move(mountpoint)), pid_(pid) {}
  ~MountGuard();
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;
  pid_t pid() const { return pid_; }
  // Kills the daemon with `signal` and reaps it; returns its wait status.
  int Kill(int signal);
  // Hands the daemon over to the caller, who kills and reaps it.
  pid_t Release() { return std::exchange(pid_, -1); }

 private:
  std::string mountpoint_;
  pid_t pid_;
};

class MountedTest : public IsolatedTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Starts the daemon and waits until it is mounted; fails the test otherwise.
  void StartDaemon(const std::vector<std::string>& extra_args = {});
  std::string Path(const std::string& rel) const { return mountpoint_ + "/" + rel; }

  // Extra -o options every start of this fixture passes (e.g. pool_size=64M).
  std::vector<std::string> daemon_args_;
  std::unique_ptr<TempDir> dir_;
  std::string mountpoint_;
  std::unique_ptr<MountGuard> daemon_;
};

// True when /proc/self/mountinfo lists a kvcachefs mount at `path`.
bool IsMounted(const std::string& path);

// Whole-file helpers over plain syscalls; they return errno (0 on success).
int WriteFile(const std::string& path, const std::vector<std::byte>& data, int flags = 0);
int ReadFile(const std::string& path, std::vector<std::byte>* out);
int ReadText(const std::string& path, std::string* out);
// Writes `text` in one write() to an existing file (a control file).
int WriteText(const std::string& path, const std::string& text);
// Runs `sh -c command`; returns its exit status (or -1).
int Shell(const std::string& command);

std::vector<std::byte> Bytes(const std::string& s);

}  // namespace kvcache::testing
