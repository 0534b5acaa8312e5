// Who sent a request: the credentials the kernel passes with it, and what the calling
// thread is doing.
#pragma once

#include <sys/types.h>

namespace kvcache::fs {

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;  // the calling thread, in the daemon's PID namespace; 0 when unknown
};

// What thread `tid`, blocked in a lookup of a name, is about to do with it, from its
// system call (/proc/<tid>/syscall, read once per call). The kernel sends the same LOOKUP
// for `cat x` as for `stat x` or `test -e x`, and never sends an OPEN for a name its
// lookup refused: the caller's system call is the only thing that tells them apart.
enum class OpenIntent {
  // Not in open(2)/openat(2)/creat(2), or it cannot be told (pid 0, another
  // architecture's call, no permission): a stat, an access, a path walk.
  kNone,
  // Opening to read without creating.
  kRead,
  // Opening with O_CREAT and O_TRUNC for writing: about to replace the file's bytes.
  // Such a lookup is answered "no such name" so the kernel creates a new inode for the
  // writer instead of truncating the one readers of the published version share (the
  // kernel sets that inode's size to 0 and then to the writer's progress, cutting their
  // reads short).
  kReplace,
  // Any other open (creating without truncating, writing in place).
  kOtherOpen,
};
OpenIntent OpenIntentOf(pid_t tid);

}  // namespace kvcache::fs
