#include "kvcache/requests.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "kvcache/report.h"
#include "text.h"

namespace kvcache {

Result<double> ParsePercent(std::string_view text) {
  auto invalid = [text] {
    return Status::InvalidArgument(
        fmt::format("invalid percent '{}': expected a number above 0 and at most 100", text));
  };
  std::string_view t = TrimSpace(text);
  if (!t.empty() && t.back() == '%') t = TrimSpace(t.substr(0, t.size() - 1));
  if (t.empty()) return invalid();
  double value = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value, std::chars_format::fixed);
  if (ec != std::errc() || end != t.data() + t.size()) return invalid();
  if (!std::isfinite(value) || value <= 0.0 || value > 100.0) return invalid();
  return value;
}

Result<std::string> ApplyEvictRequest(Manager& manager, std::string_view pool,
                                      std::string_view percent) {
  KVC_ASSIGN_OR_RETURN(double share, ParsePercent(percent));
  KVC_ASSIGN_OR_RETURN(uint64_t count, manager.Evict(pool, share));
  return EvictedMessage(pool, count);
}

}  // namespace kvcache
