// Small text helpers shared inside core.
#pragma once

#include <string>
#include <string_view>

namespace kvcache {

// `text` for an error message: control bytes as \xNN so the message stays one clean
// line; past `max` bytes it is cut and ends in "...".
std::string Printable(std::string_view text, size_t max = std::string_view::npos);

// What IsSpace accepts: the C locale's isspace.
inline constexpr std::string_view kSpaceChars = " \t\n\r\v\f";
// What a line written by echo, printf or a script carries around its text: blanks and
// line ends. Control-file requests and match lines are trimmed of these only, so a \v
// or \f stays in the text for the request's own parser to judge.
inline constexpr std::string_view kLineBlankChars = " \t\r\n";

inline bool IsSpace(char c) { return kSpaceChars.find(c) != std::string_view::npos; }

// `s` without leading and trailing characters from `chars` (by default IsSpace's).
inline std::string_view TrimSpace(std::string_view s,
                                  std::string_view chars = kSpaceChars) {
  size_t b = s.find_first_not_of(chars);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(chars) - b + 1);
}

}  // namespace kvcache
