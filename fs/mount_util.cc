#include "mount_util.h"

#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kvcache::fs {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool octal = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') octal = false;
        v = v * 8 + (c - '0');
      }
      if (octal) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool RunFusermountDetach(const std::string& mountpoint) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", "-z", "--", mountpoint.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

bool CleanStaleMount(const std::string& mountpoint, std::string* error) {
  // statfs always reaches the filesystem; a stat could be answered from cached
  // attributes of the dead mount's root.
  struct statvfs st;
  if (statvfs(mountpoint.c_str(), &st) == 0) return true;
  if (errno != ENOTCONN && errno != ECONNABORTED) return true;  // fuse_session_mount reports
  if (umount2(mountpoint.c_str(), MNT_DETACH) == 0) return true;
  int err = errno;
  if (RunFusermountDetach(mountpoint)) return true;
  *error = "cannot detach the stale mount at " + mountpoint + ": " + std::strerror(err);
  return false;
}

std::optional<std::string> MountDevice(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<std::string> device;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    if (!(fields >> id >> parent >> dev >> root >> point)) continue;
    if (Unescape(point) == mountpoint) device = dev;
  }
  return device;
}

bool SetReadaheadKb(const std::string& device, unsigned kb) {
  std::ofstream out("/sys/class/bdi/" + device + "/read_ahead_kb");
  if (!out) return false;
  out << kb << "\n";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace kvcache::fs
