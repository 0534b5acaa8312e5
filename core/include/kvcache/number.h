// Integers as users write them to the cortex CLI and to kvcachefs (sequence file
// names, put attributes): one grammar for both, so the CLI accepts exactly what the
// mount accepts.
//
// Grammar: an optional '-' (signed parsers only), then decimal digits with no leading
// zero unless the number is 0. Nothing else: no '+', no whitespace, no "0x", no empty
// string, no "-0". Out of range is an error, never a wrap.
#pragma once

#include <cstdint>
#include <limits>
#include <string_view>

#include "kvcache/export.h"
#include "kvcache/status.h"

namespace kvcache {

// InvalidArgument naming `what` and the input (e.g. "invalid sequence id '-1': ...").
KVCACHE_EXPORT Result<uint64_t> ParseUnsigned(std::string_view text, std::string_view what,
                                              uint64_t max = std::numeric_limits<uint64_t>::max());
KVCACHE_EXPORT Result<int64_t> ParseSigned(std::string_view text, std::string_view what,
                                           int64_t min, int64_t max);

// Permission bits as chmod writes them: three octal digits, or four starting with 0
// ("640", "0640"); at most 0777.
KVCACHE_EXPORT Result<uint32_t> ParseMode(std::string_view text);

// A sequence id: any uint64.
inline Result<uint64_t> ParseSequenceId(std::string_view text) {
  return ParseUnsigned(text, "sequence id");
}

}  // namespace kvcache
