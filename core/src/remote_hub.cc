#include "remote_hub.h"

#include <time.h>

#include "kvcache/catalog.h"
#include "manager_internals.h"
#include "pool_handle.h"
#include "process_table.h"

namespace kvcache {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kRereadEvery{1};

thread_local int warming_depth = 0;
// Set by RemoteHub::Known: the tier of the pool a put on this thread is committing to.
thread_local bool known_set = false;
thread_local std::string_view known_pool;
thread_local remote::RemoteTier* known_tier = nullptr;

// For the once-a-second re-read: a clock read costs a tenth of a small put, the coarse
// clock (ticks of a few milliseconds) a small part of that.
Clock::time_point CoarseNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return Clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}

// Tiers inherited across a fork. mu is a leaf, taken under RemoteHub::mu_ (hubs of
// several Managers may forget theirs at once).
struct Abandoned {
  Mutex mu;
  std::vector<std::shared_ptr<remote::RemoteTier>> tiers GUARDED_BY(mu);
};

bool SameConfig(const std::optional<RemoteConfig>& a, const std::optional<RemoteConfig>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->url == b->url && a->mode == b->mode && a->name_space == b->name_space;
}

}  // namespace

RemoteHub::Warming::Warming() { ++warming_depth; }
RemoteHub::Warming::~Warming() { --warming_depth; }

RemoteHub::Known::Known(std::string_view pool, remote::RemoteTier* tier)
    : saved_pool_(known_pool), saved_tier_(known_tier), saved_set_(known_set) {
  known_set = true;
  known_pool = pool;
  known_tier = tier;
}
RemoteHub::Known::~Known() {
  known_set = saved_set_;
  known_pool = saved_pool_;
  known_tier = saved_tier_;
}

RemoteHub::RemoteHub(Manager* manager, const ManagerOptions& options)
    : manager_(manager), options_(options), epoch_(ForkEpoch()) {}

void RemoteHub::ForgetInheritedLocked() {
  if (epoch_ == ForkEpoch()) return;
  epoch_ = ForkEpoch();
  // Never destroyed: their threads belong to the parent. Held from a static, so they
  // stay reachable (a leak checker sees them as kept, which they are).
  static Abandoned* abandoned = new Abandoned;
  MutexLock lk(&abandoned->mu);
  for (auto& tier : retired_) abandoned->tiers.push_back(std::move(tier));
  for (auto& [name, known] : known_) {
    if (known.tier != nullptr) abandoned->tiers.push_back(std::move(known.tier));
  }
  known_.clear();
  retired_.clear();
}

RemoteHub::~RemoteHub() {
  std::map<std::string, Entry, std::less<>> known;
  std::vector<std::shared_ptr<remote::RemoteTier>> retired;
  {
    MutexLock lk(&mu_);
    ForgetInheritedLocked();
    known.swap(known_);
    retired.swap(retired_);
  }
  // Each tier flushes its queue (bounded by remote_flush_ms) as it is destroyed.
}

std::shared_ptr<remote::RemoteTier> RemoteHub::Make(const std::string& pool,
                                                    const RemoteConfig& config) {
  remote::TierOptions o;
  o.pool = pool;
  o.config = config;
  o.timeout = std::chrono::milliseconds(options_.remote_timeout_ms);
  o.flush_deadline = std::chrono::milliseconds(options_.remote_flush_ms);
  if (options_.remote_piece_bytes != 0) o.piece_bytes = options_.remote_piece_bytes;
  if (options_.remote_queue_entries != 0) o.queue_entries = options_.remote_queue_entries;
  remote::TierHooks hooks;
  Manager* manager = manager_;
  hooks.read_each = [manager, pool](std::span<const EntryRef> refs, const PublishedReader& read,
                                    std::span<ReadOutcome> outcomes) -> Status {
    KVC_ASSIGN_OR_RETURN(auto handle, ManagerInternals::Open(*manager, pool));
    handle->ReadEach(refs, read, outcomes);
    return Status::Ok();
  };
  hooks.pin_each = [manager, pool](std::span<const uint64_t> seqs)
      -> Result<std::vector<EntryView>> {
    KVC_ASSIGN_OR_RETURN(auto handle, ManagerInternals::Open(*manager, pool));
    return handle->PinEach(seqs);
  };
  hooks.pin_chunk = [manager, pool](uint64_t hash) { return manager->PinChunk(pool, hash); };
  hooks.record = [manager, pool](const RemoteCounters& d, const std::string& error,
                                 double error_at) -> Status {
    KVC_ASSIGN_OR_RETURN(Catalog * cat, ManagerInternals::catalog(*manager));
    Status s = cat->AddRemoteStats(pool, d, error, error_at);
    // A pool destroyed meanwhile has nowhere to record: drop the counts.
    return s.code() == Code::kNotFound ? Status::Ok() : s;
  };
  Result<std::unique_ptr<remote::RemoteTier>> tier =
      remote::RemoteTier::Start(std::move(o), std::move(hooks));
  if (!tier.ok()) return nullptr;  // a URL the catalog should never hold
  return std::shared_ptr<remote::RemoteTier>(std::move(tier).value());
}

std::shared_ptr<remote::RemoteTier> RemoteHub::TierFor(std::string_view pool) {
  const Clock::time_point now = CoarseNow();
  {
    MutexLock lk(&mu_);
    ForgetInheritedLocked();
    auto it = known_.find(pool);
    if (it != known_.end() && it->second.fresh && now - it->second.checked < kRereadEvery) {
      return it->second.tier;
    }
  }
  std::optional<RemoteConfig> config;
  bool read = false;
  if (Result<Catalog*> cat = ManagerInternals::catalog(*manager_); cat.ok()) {
    Result<std::optional<RemoteConfig>> rc = (*cat)->GetRemote(pool);
    if (rc.ok()) {
      config = std::move(rc).value();
      read = true;
    } else if (rc.status().code() == Code::kNotFound) {
      read = true;  // no such pool: no remote
    }
  }
  if (config.has_value() && config->name_space.empty()) config->name_space = std::string(pool);
  std::shared_ptr<remote::RemoteTier> tier;
  bool replace = false;
  {
    MutexLock lk(&mu_);
    Entry& k = known_[std::string(pool)];
    k.checked = now;
    k.fresh = true;
    if (!read || SameConfig(k.config, config)) return k.tier;  // unreadable: keep what we had
    replace = true;
  }
  if (replace && config.has_value()) tier = Make(std::string(pool), *config);
  {
    MutexLock lk(&mu_);
    Entry& k = known_[std::string(pool)];
    if (k.tier != nullptr) retired_.push_back(std::move(k.tier));
    k.config = config;
    k.tier = tier;
  }
  Reap();
  return tier;
}

void RemoteHub::Reap() {
  std::vector<std::shared_ptr<remote::RemoteTier>> done;
  {
    MutexLock lk(&mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (it->use_count() == 1) {
        done.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // `done` flushes and stops here, holding no lock.
}

void RemoteHub::Invalidate(std::string_view pool) {
  MutexLock lk(&mu_);
  auto it = known_.find(pool);
  if (it != known_.end()) it->second.fresh = false;
}

RemoteCounters RemoteHub::Unrecorded(std::string_view pool,
                                     std::pair<std::string, double>* error) {
  std::shared_ptr<remote::RemoteTier> tier;
  {
    MutexLock lk(&mu_);
    ForgetInheritedLocked();
    auto it = known_.find(pool);
    if (it != known_.end()) tier = it->second.tier;
  }
  if (tier == nullptr) return RemoteCounters{};
  if (error != nullptr) *error = tier->UnrecordedError();
  return tier->Unrecorded();
}

void RemoteHub::Committed(const std::string& pool, uint64_t seq, uint64_t generation) {
  if (warming_depth > 0) return;
  if (known_set && known_pool == pool) {
    if (known_tier != nullptr &&
        known_tier->options().config.mode == RemoteMode::kWriteThrough) {
      known_tier->EnqueuePut(seq, generation);
    }
    return;
  }
  std::shared_ptr<remote::RemoteTier> tier = TierFor(pool);
  if (tier != nullptr && tier->options().config.mode == RemoteMode::kWriteThrough) {
    tier->EnqueuePut(seq, generation);
  }
}

void RemoteHub::Evicting(const std::string& pool, uint64_t seq, uint64_t token_count,
                         int32_t priority, std::span<const std::byte> prefix_tokens,
                         std::string_view metadata, std::span<const std::byte> data) noexcept {
  // Under the pool lock: only the tier already known (Manager::Reserve and Evict
  // refresh it first), never a catalog read.
  std::shared_ptr<remote::RemoteTier> tier;
  {
    MutexLock lk(&mu_);
    if (epoch_ != ForkEpoch()) return;  // inherited tiers: a child's TierFor makes its own
    auto it = known_.find(pool);
    if (it != known_.end()) tier = it->second.tier;
  }
  if (tier != nullptr && tier->options().config.mode == RemoteMode::kWriteBack) {
    tier->EnqueueEvicted(seq, token_count, priority, prefix_tokens, metadata, data);
  }
}

void RemoteHub::EvictingChunk(const std::string& pool, uint64_t hash, uint64_t parent,
                              uint32_t position, std::span<const std::byte> tokens,
                              std::string_view name_space,
                              std::span<const std::byte> data) noexcept {
  // As Evicting: under the pool lock, only the tier already known.
  std::shared_ptr<remote::RemoteTier> tier;
  {
    MutexLock lk(&mu_);
    if (epoch_ != ForkEpoch()) return;
    auto it = known_.find(pool);
    if (it != known_.end()) tier = it->second.tier;
  }
  if (tier != nullptr && tier->options().config.mode == RemoteMode::kWriteBack) {
    tier->EnqueueEvictedChunk(hash, parent, position, tokens, name_space, data);
  }
}

}  // namespace kvcache
