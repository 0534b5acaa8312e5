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
      // Never ENOSYS: the kernel takes it to mean the operation is not implemented
      // and stops sending it for the life of the mount (create, open, flush, xattrs).
      return EOPNOTSUPP;
    case Code::kPermissionDenied:
      return EACCES;
    case Code::kCorruption:
    case Code::kIOError:
      return EIO;
  }
  return EIO;
}

}  // namespace kvcache::fs
