// Manager's private state, shared by the files that implement Manager (manager.cc,
// manager_remote.cc).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "fork_guard.h"
#include "pool_handle.h"
#include "remote_hub.h"
#include "thread_annotations.h"

namespace kvcache {

// Lock order: mu and catalog_mu are never held together, nor while a pool lock (a
// segment's robust mutex) or a RemoteHub/RemoteTier lock is taken: each is held only to
// look up or swap a pointer (dropping a pool's last handle under mu unmaps its segment,
// which takes the SegmentFile registry's leaf lock). Both are held across fork() (see
// fork_guard.h), so a child finds them free.
struct Manager::Impl {
  // Guards pools: readers look a handle up, writers add or drop one.
  SharedMutex mu;
  std::map<std::string, std::shared_ptr<PoolHandle>, std::less<>> pools GUARDED_BY(mu);
  // Guards the lazily opened catalog pointer (the Catalog serialises its own queries).
  Mutex catalog_mu;
  std::unique_ptr<Catalog> catalog GUARDED_BY(catalog_mu);
  // The ForkEpoch() the catalog was opened in. SQLite forbids using a connection in a
  // child of the process that opened it: a child opens its own and leaves the
  // inherited one alone.
  uint64_t catalog_epoch GUARDED_BY(catalog_mu) = 0;
  ForkGuard mu_across_fork{&mu, ForkRank::kManagerPools};
  ForkGuard catalog_mu_across_fork{&catalog_mu, ForkRank::kManagerCatalog};
  // The pools' remote tiers; destroyed first (they record into the catalog and pin
  // entries as they flush). Handles hold it weakly.
  std::shared_ptr<RemoteHub> hub;
};

// Asks the remote `status` names for a PING over a fresh connection (timeout_ms),
// setting status.reachable and status.probe_error. Does nothing without a remote.
void ProbeRemote(RemoteStatus& status, uint32_t timeout_ms);

}  // namespace kvcache
