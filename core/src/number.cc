#include "kvcache/number.h"

#include <cstdio>
#include <string>

#include "text.h"

namespace kvcache {
namespace {

Status Invalid(std::string_view text, std::string_view what, std::string_view why) {
  return Status::InvalidArgument("invalid " + std::string(what) + " '" + Printable(text, 64) +
                                 "': " + std::string(why));
}

// Digits of a non-negative decimal without a leading zero; false on anything else or
// a value over `max`.
bool ParseDigits(std::string_view digits, uint64_t max, uint64_t* out, bool* too_large) {
  *too_large = false;
  if (digits.empty()) return false;
  if (digits.size() > 1 && digits[0] == '0') return false;
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (value > (max - d) / 10) {
      *too_large = true;
      return false;
    }
    value = value * 10 + d;
  }
  *out = value;
  return true;
}

constexpr std::string_view kUnsignedForm =
    "expected a decimal number without sign, spaces or leading zeros";
constexpr std::string_view kSignedForm =
    "expected a decimal number (optional '-') without spaces or leading zeros";

}  // namespace

Result<uint64_t> ParseUnsigned(std::string_view text, std::string_view what, uint64_t max) {
  uint64_t value = 0;
  bool too_large = false;
  if (!ParseDigits(text, max, &value, &too_large)) {
    if (too_large) return Invalid(text, what, "larger than " + std::to_string(max));
    return Invalid(text, what, kUnsignedForm);
  }
  return value;
}

Result<int64_t> ParseSigned(std::string_view text, std::string_view what, int64_t min,
                            int64_t max) {
  bool negative = !text.empty() && text[0] == '-';
  std::string_view digits = negative ? text.substr(1) : text;
  // The magnitude limit: |min| for negatives (computed without overflowing), max otherwise.
  uint64_t limit = negative ? (min >= 0 ? 0 : static_cast<uint64_t>(-(min + 1)) + 1)
                            : (max < 0 ? 0 : static_cast<uint64_t>(max));
  uint64_t magnitude = 0;
  bool too_large = false;
  bool ok = ParseDigits(digits, std::numeric_limits<uint64_t>::max(), &magnitude, &too_large);
  if (!ok && !too_large) return Invalid(text, what, kSignedForm);
  if (ok && negative && magnitude == 0) return Invalid(text, what, kSignedForm);  // "-0"
  if (!ok || magnitude > limit || (negative && min >= 0) || (!negative && max < 0)) {
    return Invalid(text, what,
                   "out of range (" + std::to_string(min) + " to " + std::to_string(max) + ")");
  }
  if (!negative) return static_cast<int64_t>(magnitude);
  return magnitude == limit && min < 0 ? min : -static_cast<int64_t>(magnitude);
}

Result<uint32_t> ParseMode(std::string_view text) {
  std::string_view digits = text.size() == 4 && text[0] == '0' ? text.substr(1) : text;
  if (digits.size() != 3) {
    return Invalid(text, "mode", "expected three octal digits, e.g. 600 or 0640");
  }
  uint32_t mode = 0;
  for (char c : digits) {
    if (c < '0' || c > '7') {
      return Invalid(text, "mode", "expected three octal digits, e.g. 600 or 0640");
    }
    mode = mode * 8 + static_cast<uint32_t>(c - '0');
  }
  return mode;
}

}  // namespace kvcache
