// Pins that users other than a pool's owner hold through the mount, bounded.
//
// Every open of an entry for reading pins it in the pool's lease table until close,
// and the lease table is shared with the owner's own processes (their gets and puts
// need leases too). With allow_other, a reader opening entries without end would fill
// it and starve the owner; so each other user may hold at most a share, and all of
// them together at most half of what the pool was sized for. The owner, root and the
// daemon's own user are never counted.
//
// Thread-safe: one mutex, never held across anything that blocks.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "thread_annotations.h"

namespace kvcache::fs {

class PinQuota {
 public:
  // The most pins one other user, and all other users together, may hold in a pool
  // sized for `max_sequences` entries (its lease table holds 2x that plus 1024).
  static uint32_t PerUserLimit(uint32_t max_sequences);
  static uint32_t AllUsersLimit(uint32_t max_sequences);

  // Counts one pin of `uid` in `pool`; false (nothing counted) when over a limit.
  bool TryAcquire(const std::string& pool, uid_t uid, uint32_t max_sequences);
  // Uncounts one pin counted by TryAcquire.
  void Release(const std::string& pool, uid_t uid);

  uint32_t Held(const std::string& pool, uid_t uid) const;

 private:
  mutable Mutex mu_;  // a leaf lock
  std::map<std::pair<std::string, uid_t>, uint32_t> by_user_ GUARDED_BY(mu_);
  std::map<std::string, uint32_t> by_pool_ GUARDED_BY(mu_);
};

}  // namespace kvcache::fs
