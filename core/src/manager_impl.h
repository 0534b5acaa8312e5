// Manager's private state, shared by the files that implement Manager (manager.cc,
// manager_remote.cc).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "pool_handle.h"
#include "remote_hub.h"

namespace kvcache {

struct Manager::Impl {
  std::shared_mutex mu;  // guards pools
  std::map<std::string, std::shared_ptr<PoolHandle>, std::less<>> pools;
  std::mutex catalog_mu;  // guards catalog
  std::unique_ptr<Catalog> catalog;
  // The pools' remote tiers; destroyed first (they record into the catalog and pin
  // entries as they flush). Handles hold it weakly.
  std::shared_ptr<RemoteHub> hub;
};

// Asks the remote `status` names for a PING over a fresh connection (timeout_ms),
// setting status.reachable and status.probe_error. Does nothing without a remote.
void ProbeRemote(RemoteStatus& status, uint32_t timeout_ms);

}  // namespace kvcache
