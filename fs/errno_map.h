// The one mapping from core Status codes to the errno a FUSE reply carries.
#pragma once

#include "kvcache/status.h"

namespace kvcache::fs {

// 0 for OK; ENOENT, EEXIST, ENOSPC, EINVAL, EIO, EBUSY, EOPNOTSUPP, EACCES for the
// others.
// Never ENOSYS, which the kernel latches as "not implemented" for the whole mount.
int ToErrno(const Status& status);

}  // namespace kvcache::fs
