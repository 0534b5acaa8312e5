#include "names.h"

#include <cerrno>

#include "kvcache/number.h"
#include "kvcache/types.h"

namespace kvcache::fs {

std::optional<RootFile> ParseRootFile(std::string_view name) {
  if (name == "status") return RootFile::kStatus;
  if (name == "metrics") return RootFile::kMetrics;
  return std::nullopt;
}

std::string_view RootFileName(RootFile file) {
  return file == RootFile::kStatus ? "status" : "metrics";
}

std::optional<PoolFile> ParsePoolFile(std::string_view name) {
  for (PoolFile f : kAllPoolFiles) {
    if (PoolFileName(f) == name) return f;
  }
  return std::nullopt;
}

std::string_view PoolFileName(PoolFile file) {
  switch (file) {
    case PoolFile::kStatus:
      return "status";
    case PoolFile::kHealth:
      return "health";
    case PoolFile::kEntries:
      return "entries";
    case PoolFile::kConfig:
      return "config";
    case PoolFile::kEvict:
      return "evict";
    case PoolFile::kPersist:
      return "persist";
    case PoolFile::kRestore:
      return "restore";
    case PoolFile::kMatch:
      return "match";
  }
  return "";
}

bool IsControlFile(PoolFile file) {
  return file == PoolFile::kEvict || file == PoolFile::kPersist || file == PoolFile::kRestore;
}

SeqName ParseSeqName(std::string_view name) {
  if (name.size() > kMaxNameLength) return {0, ENAMETOOLONG};
  Result<uint64_t> value = ParseSequenceId(name);
  if (!value.ok()) return {0, EINVAL};
  return {*value, 0};
}

ScratchName ParseScratchName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength || name == "." || name == "..") return {};
  if (name.find('/') != std::string_view::npos) return {};
  if (name.size() > kTokensSuffix.size() &&
      name.substr(name.size() - kTokensSuffix.size()) == kTokensSuffix) {
    SeqName seq = ParseSeqName(name.substr(0, name.size() - kTokensSuffix.size()));
    if (seq.error == 0) return {ScratchKind::kTokens, seq.seq};
  }
  constexpr std::string_view kTmp = ".tmp";
  if (name[0] == '.' || (name.size() > kTmp.size() && name.substr(name.size() - kTmp.size()) == kTmp)) {
    return {ScratchKind::kTemp, 0};
  }
  return {};
}

int CheckPoolDirName(std::string_view name) {
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  if (ParseRootFile(name)) return EINVAL;
  if (!ValidatePoolName(name).ok()) return EINVAL;
  return 0;
}

}  // namespace kvcache::fs
