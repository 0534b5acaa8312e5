// Requests that both the cortex CLI and kvcachefs's control files apply, so that a
// command and the matching control file accept the same input, change the same things
// and answer the same message (the messages themselves are in report.h).
#pragma once

#include <string>
#include <string_view>

#include "kvcache/export.h"
#include "kvcache/manager.h"
#include "kvcache/status.h"

namespace kvcache {

// Parses an eviction request as written to the evict control file or given to
// --percent: "25", "25%", "12.5" -> percent in (0, 100]; InvalidArgument otherwise.
KVCACHE_EXPORT Result<double> ParsePercent(std::string_view text);

// An eviction request as the evict control file and `cortex cache evict --percent`
// both apply it: ParsePercent, Manager::Evict, then EvictedMessage. A malformed
// request evicts nothing.
KVCACHE_EXPORT Result<std::string> ApplyEvictRequest(Manager& manager, std::string_view pool,
                                                     std::string_view percent);

}  // namespace kvcache
