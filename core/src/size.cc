#include "kvcache/size.h"

#include <cstdio>
#include <limits>
#include <string>

#include "text.h"

namespace kvcache {
namespace {

// __extension__ keeps -Wpedantic quiet about the GCC/Clang 128-bit type.
__extension__ typedef unsigned __int128 u128;

constexpr uint64_t kMaxSize = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
// Fraction digits beyond this could overflow u128 when scaled by 1024^4; nobody types
// that many, so they are refused rather than handled.
constexpr size_t kMaxFractionDigits = 24;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }


Status Invalid(std::string_view text, std::string_view why) {
  return Status::InvalidArgument("invalid size '" + std::string(text) + "': " + std::string(why));
}

int UnitShift(char c) {
  switch (c) {
    case 'k':
    case 'K':
      return 10;
    case 'm':
    case 'M':
      return 20;
    case 'g':
    case 'G':
      return 30;
    case 't':
    case 'T':
      return 40;
    default:
      return -1;
  }
}

std::string FormatScaled(uint64_t bytes, const char* const* units, const char* fmt) {
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && units[unit + 1] != nullptr) {
    value /= 1024.0;
    ++unit;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, value, units[unit]);
  return buf;
}

}  // namespace

// Grammar (after trimming surrounding whitespace):
//   digits [ "." digits ] [ K|M|G|T [ "i" ] ] [ "B" ]      letters case-insensitive
// The value is computed exactly in integers, so "1.5G" is 1610612736, and a fraction
// that does not come out as whole bytes ("1.5", "0.3K") is refused, not rounded.
Result<uint64_t> ParseSize(std::string_view text) {
  static constexpr std::string_view kExpected =
      "expected a number with an optional K, M, G or T suffix";
  std::string_view s = TrimSpace(text);
  if (s.empty()) return Invalid(text, kExpected);

  size_t i = 0;
  u128 whole = 0;
  bool overflow = false;
  size_t int_digits = 0;
  for (; i < s.size() && IsDigit(s[i]); ++i, ++int_digits) {
    whole = whole * 10 + static_cast<unsigned>(s[i] - '0');
    if (whole > kMaxSize) {
      overflow = true;
      whole = static_cast<u128>(kMaxSize) + 1;  // keep it bounded; the result is refused
    }
  }
  std::string_view fraction;
  if (i < s.size() && s[i] == '.') {
    size_t start = ++i;
    while (i < s.size() && IsDigit(s[i])) ++i;
    fraction = s.substr(start, i - start);
  }
  if (int_digits == 0 && fraction.empty()) return Invalid(text, kExpected);

  int shift = 0;
  if (i < s.size() && UnitShift(s[i]) >= 0) {
    shift = UnitShift(s[i++]);
    if (i < s.size() && (s[i] == 'i' || s[i] == 'I')) ++i;
  }
  if (i < s.size() && (s[i] == 'b' || s[i] == 'B')) ++i;
  if (i != s.size()) return Invalid(text, kExpected);

  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (fraction.size() > kMaxFractionDigits) {
    return Invalid(text, "too many decimal places");
  }
  u128 frac = 0;
  u128 denom = 1;
  for (char c : fraction) {
    frac = frac * 10 + static_cast<unsigned>(c - '0');
    denom *= 10;
  }
  u128 scaled_frac = frac << shift;
  if (scaled_frac % denom != 0) return Invalid(text, "not a whole number of bytes");

  u128 value = (whole << shift) + scaled_frac / denom;
  if (overflow || value > kMaxSize) return Invalid(text, "too large (at most 2^63-1 bytes)");
  if (value == 0) return Invalid(text, "must be greater than zero");
  return static_cast<uint64_t>(value);
}

std::string FormatSizeShort(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + "B";
  static const char* const kUnits[] = {"B", "K", "M", "G", "T", nullptr};
  return FormatScaled(bytes, kUnits, "%.1f%s");
}

std::string FormatSizeLong(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* const kUnits[] = {"B", "KB", "MB", "GB", "TB", nullptr};
  return FormatScaled(bytes, kUnits, "%.2f %s");
}

}  // namespace kvcache
