// The one mapping from core Status codes to the errno a FUSE reply carries.
#pragma once

#include "kvcache/status.h"

namespace kvcache::fs {

// 0 for OK; ENOENT, EEXIST, ENOSPC, EINVAL, EIO, EBUSY, ENOSYS for the others.
int ToErrno(const Status& status);

}  // namespace kvcache::fs
