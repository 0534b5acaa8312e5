// What core's own code (snapshots) and its tests may reach inside a Manager: the
// catalog and the mapped pools. Not part of the public API.
#pragma once

#include <memory>
#include <string_view>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"

namespace kvcache {

class ManagerInternals {
 public:
  // The manager's catalog, opened on first use.
  static Result<Catalog*> catalog(Manager& manager) { return manager.catalog(); }
  // The pool's mapped segment, cached per Manager.
  static Result<std::shared_ptr<PoolHandle>> Open(Manager& manager, std::string_view pool) {
    return manager.Open(pool);
  }
};

}  // namespace kvcache
