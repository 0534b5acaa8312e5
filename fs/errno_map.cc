#include "errno_map.h"

#include <cerrno>

namespace kvcache::fs {

int ToErrno(const Status& status) {
  switch (status.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kAlreadyExists:
      return EEXIST;
    case Code::kNoSpace:
      return ENOSPC;
    case Code::kInvalidArgument:
      return EINVAL;
    case Code::kBusy:
      return EBUSY;
    case Code::kNotSupported:
      return ENOSYS;
    case Code::kPermissionDenied:
      return EACCES;
    case Code::kCorruption:
    case Code::kIOError:
      return EIO;
  }
  return EIO;
}

}  // namespace kvcache::fs
