// Mount point chores done around fuse_session_mount, without ever touching our own
// mount (a stat of it from the daemon would wait on the daemon itself).
#pragma once

#include <optional>
#include <string>

namespace kvcache::fs {

// When `mountpoint` is a dead FUSE mount (ENOTCONN: its daemon was killed), detaches
// it so a new mount can take its place. Returns false with *error when it cannot.
bool CleanStaleMount(const std::string& mountpoint, std::string* error);

// "major:minor" of the filesystem mounted at `mountpoint` (an absolute, resolved
// path), from /proc/self/mountinfo; the last mount there wins.
std::optional<std::string> MountDevice(const std::string& mountpoint);

// Sets /sys/class/bdi/<device>/read_ahead_kb. The kernel's 128 KiB default caps a
// FUSE sequential read far below what 1 MiB requests can do.
bool SetReadaheadKb(const std::string& device, unsigned kb);

}  // namespace kvcache::fs
