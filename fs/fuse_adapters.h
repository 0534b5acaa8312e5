// The libfuse low-level operation table: thin Op* adapters that call the Do*
// functions of KvcacheFs and reply.
#pragma once

#include <fuse_lowlevel.h>

namespace kvcache::fs {

// The operations; the session's userdata must be a KvcacheFs*.
const fuse_lowlevel_ops& Operations();

}  // namespace kvcache::fs
