// Byte sizes as users write them: "16G", "512M", "1.5G", "1024K", "4096", "1T"
// (powers of 1024, case-insensitive suffix, optional trailing "B" as in "16GB").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvcache/export.h"
#include "kvcache/status.h"

namespace kvcache {

// InvalidArgument (naming the input) for "", "abc", "0", "-1G", "16X", overflow.
KVCACHE_EXPORT Result<uint64_t> ParseSize(std::string_view text);

// The status table's short form: "16.0G", "512.0M", "4.0K", "100B".
KVCACHE_EXPORT std::string FormatSizeShort(uint64_t bytes);
// The health report's long form: "16.00 GB", "512.00 MB", "4.00 KB", "100 B".
KVCACHE_EXPORT std::string FormatSizeLong(uint64_t bytes);

}  // namespace kvcache
