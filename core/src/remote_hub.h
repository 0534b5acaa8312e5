// RemoteHub: a Manager's remote tiers, one per pool that has a remote, and the glue
// between them and the pools: it hears commits (write-through) and evictions
// (write-back) and serves local misses (read-through), for entries and token chunks.
//
// A pool's remote is read from the catalog at most once a second per Manager, so a
// change made by `cortex cache remote` reaches long-lived processes (the kvcachefs
// daemon, engines) within about a second. A replaced tier is flushed and stopped
// outside every lock.
//
// Thread-safe. Lock order: a pool's lock, then mu_ (Evicting runs under the pool lock).
// No RemoteTier lock, catalog lock or pool lock is taken while mu_ is held.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvcache/manager.h"
#include "kvcache/remote.h"
#include "fork_guard.h"
#include "pool_listener.h"
#include "remote_tier.h"
#include "thread_annotations.h"

namespace kvcache {

class RemoteHub : public PoolListener {
 public:
  // `manager` owns the hub and outlives it (its destructor destroys the hub first).
  RemoteHub(Manager* manager, const ManagerOptions& options);
  ~RemoteHub() override;

  // The pool's tier, re-read from the catalog when the last read is over a second old;
  // null when the pool has no remote (or its catalog cannot be read and none was known).
  std::shared_ptr<remote::RemoteTier> TierFor(std::string_view pool);
  // Makes the next TierFor re-read the catalog.
  void Invalidate(std::string_view pool);
  // Counts of this Manager's tier for `pool` not yet in the catalog; zeroes if none.
  // With `error`, also its latest failure not yet in the catalog (empty and 0 if none).
  RemoteCounters Unrecorded(std::string_view pool,
                            std::pair<std::string, double>* error = nullptr);

  // Puts made while a Warming exists on the thread are copies of remote entries: they
  // are not sent back.
  class Warming {
   public:
    Warming();
    ~Warming();
    Warming(const Warming&) = delete;
    Warming& operator=(const Warming&) = delete;
  };

  // While a Known exists on the thread, commits to `pool` go to `tier` (the caller
  // looked it up as it reserved; null: the pool has none) without a second lookup.
  class Known {
   public:
    Known(std::string_view pool, remote::RemoteTier* tier);
    ~Known();
    Known(const Known&) = delete;
    Known& operator=(const Known&) = delete;

   private:
    std::string_view saved_pool_;
    remote::RemoteTier* saved_tier_;
    bool saved_set_;
  };

  void Committed(const std::string& pool, uint64_t seq, uint64_t generation) override;
  void Evicting(const std::string& pool, uint64_t seq, uint64_t token_count, int32_t priority,
                std::span<const std::byte> prefix_tokens, std::string_view metadata,
                std::span<const std::byte> data) noexcept override;
  void EvictingChunk(const std::string& pool, uint64_t hash, uint64_t parent, uint32_t position,
                     std::span<const std::byte> tokens, std::string_view name_space,
                     std::span<const std::byte> data) noexcept override;

 private:
  struct Entry {
    std::optional<RemoteConfig> config;  // as the catalog had it, name_space resolved
    std::shared_ptr<remote::RemoteTier> tier;
    std::chrono::steady_clock::time_point checked{};
    bool fresh = false;  // false: re-read on the next TierFor
  };
  std::shared_ptr<remote::RemoteTier> Make(const std::string& pool, const RemoteConfig& config);
  // Destroys retired tiers nobody else holds. Called without mu_.
  void Reap();
  // In a child forked from the process that made the tiers, their sender threads do not
  // exist: the inherited tiers are abandoned (never destroyed, which would wait on those
  // threads) and the child makes its own.
  void ForgetInheritedLocked() REQUIRES(mu_);

  Manager* const manager_;
  const ManagerOptions options_;
  // Guards the known tiers; held only to look up or swap pointers (a tier is made,
  // flushed and destroyed outside it).
  Mutex mu_;
  ForkGuard mu_across_fork_{&mu_, ForkRank::kRemoteHub};
  std::map<std::string, Entry, std::less<>> known_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<remote::RemoteTier>> retired_ GUARDED_BY(mu_);
  uint64_t epoch_ GUARDED_BY(mu_);  // the ForkEpoch() known_ belongs to
};

}  // namespace kvcache
