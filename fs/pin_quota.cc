#include "pin_quota.h"

#include <algorithm>

namespace kvcache::fs {

uint32_t PinQuota::PerUserLimit(uint32_t max_sequences) {
  return std::max<uint32_t>(16, max_sequences / 4);
}

uint32_t PinQuota::AllUsersLimit(uint32_t max_sequences) {
  return std::max<uint32_t>(32, max_sequences / 2);
}

bool PinQuota::TryAcquire(const std::string& pool, uid_t uid, uint32_t max_sequences) {
  MutexLock lock(&mu_);
  uint32_t& user = by_user_[{pool, uid}];
  uint32_t& all = by_pool_[pool];
  if (user >= PerUserLimit(max_sequences) || all >= AllUsersLimit(max_sequences)) {
    if (user == 0) by_user_.erase({pool, uid});
    if (all == 0) by_pool_.erase(pool);
    return false;
  }
  user++;
  all++;
  return true;
}

void PinQuota::Release(const std::string& pool, uid_t uid) {
  MutexLock lock(&mu_);
  auto user = by_user_.find({pool, uid});
  if (user != by_user_.end() && --user->second == 0) by_user_.erase(user);
  auto all = by_pool_.find(pool);
  if (all != by_pool_.end() && --all->second == 0) by_pool_.erase(all);
}

uint32_t PinQuota::Held(const std::string& pool, uid_t uid) const {
  MutexLock lock(&mu_);
  auto it = by_user_.find({pool, uid});
  return it == by_user_.end() ? 0 : it->second;
}

}  // namespace kvcache::fs
