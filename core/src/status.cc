#include "kvcache/status.h"

#include <cerrno>
#include <cstring>
#include <string>

namespace kvcache {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      return "NotFound";
    case Code::kAlreadyExists:
      return "AlreadyExists";
    case Code::kNoSpace:
      return "NoSpace";
    case Code::kInvalidArgument:
      return "InvalidArgument";
    case Code::kCorruption:
      return "Corruption";
    case Code::kIOError:
      return "IOError";
    case Code::kBusy:
      return "Busy";
    case Code::kNotSupported:
      return "NotSupported";
    case Code::kPermissionDenied:
      return "PermissionDenied";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string out(CodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

namespace {

Code CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
      return Code::kNotFound;
    case EEXIST:
      return Code::kAlreadyExists;
    case ENOSPC:
    case ENOMEM:
    case EDQUOT:
      return Code::kNoSpace;
    case EINVAL:
    case ENAMETOOLONG:
      return Code::kInvalidArgument;
    case EBUSY:
    case EAGAIN:
      return Code::kBusy;  // EWOULDBLOCK is the same value on Linux
    case ENOSYS:
    case EOPNOTSUPP:
      return Code::kNotSupported;  // ENOTSUP is the same value on Linux
    case EACCES:
    case EPERM:
    case ELOOP:  // O_NOFOLLOW met a symlink
      return Code::kPermissionDenied;
    default:
      return Code::kIOError;
  }
}

// strerror() may share a static buffer between threads; the GNU strerror_r does not.
std::string ErrnoText(int err) {
  char buf[256];
  const char* text = strerror_r(err, buf, sizeof(buf));
  return text != nullptr ? text : "errno " + std::to_string(err);
}

}  // namespace

Status ErrnoToStatus(int err, std::string_view context) {
  std::string message(context);
  message += ": ";
  message += ErrnoText(err);
  return Status(CodeForErrno(err), std::move(message));
}

}  // namespace kvcache
