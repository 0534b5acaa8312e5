#include "file_util.h"

#include <sys/stat.h>

#include <cerrno>

namespace kvcache {

Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, "create directory " + Quoted(part));
    }
  }
  return Status::Ok();
}

}  // namespace kvcache
