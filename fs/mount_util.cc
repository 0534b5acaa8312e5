#include "mount_util.h"

#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "mount_info.h"

namespace kvcache::fs {
namespace {

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
  std::optional<std::string> device;
  for (const MountInfo& m : ReadMountInfo()) {
    if (m.mount_point == mountpoint) device = m.device;
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
