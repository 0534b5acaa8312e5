// Reading /proc/<pid>/mountinfo, for the daemon (its mount's device) and the CLI (which
// mounts are kvcachefs).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvcache {

// One line of mountinfo (proc(5)), the fields kvcachefs needs:
//   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//   (1)(2)(3)   (4)   (5)     (6)       (7...)  -  (8)   (9)       (10)
struct MountInfo {
  std::string device;       // field 3, "major:minor"
  std::string mount_point;  // field 5, unescaped
  std::string fstype;       // the first field after "-", e.g. "fuse.kvcachefs"
  std::string source;       // the second field after "-", unescaped
};

// Undoes mountinfo's escaping of space, tab, newline and backslash as \ooo (octal); any
// other backslash is kept as written.
std::string UnescapeMountField(std::string_view field);

// Parses one line; nullopt when it lacks a field, including the "-" that ends the
// optional fields (zero or more, e.g. "shared:1 master:2").
std::optional<MountInfo> ParseMountInfoLine(std::string_view line);

// Every mount listed in `path` (default: this process's view), in the file's order,
// so of several mounts at one point the topmost comes last. Unparsable lines are
// skipped; an unreadable file gives none.
std::vector<MountInfo> ReadMountInfo(const std::string& path = "/proc/self/mountinfo");

}  // namespace kvcache
