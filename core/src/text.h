// Small text helpers shared inside core.
#pragma once

#include <string>
#include <string_view>

namespace kvcache {

// `text` for an error message: control bytes as \xNN so the message stays one clean
// line; past `max` bytes it is cut and ends in "...".
std::string Printable(std::string_view text, size_t max = std::string_view::npos);

inline bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// `s` without leading and trailing IsSpace characters.
inline std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace kvcache
