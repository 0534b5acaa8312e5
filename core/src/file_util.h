// Small file-system helpers shared inside core.
#pragma once

#include <string>
#include <string_view>

#include "kvcache/status.h"

namespace kvcache {

// mkdir -p: creates the missing directories of `dir` with mode 0700.
Status MakeDirs(const std::string& dir);

// `'path'`, for messages that name a file.
inline std::string Quoted(std::string_view path) { return "'" + std::string(path) + "'"; }

}  // namespace kvcache
