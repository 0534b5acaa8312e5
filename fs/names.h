// Names in the mounted tree: which are fixed, and how a directory entry name is
// validated before anything is looked up or created.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvcache::fs {

inline constexpr size_t kMaxNameLength = 255;

// Files at the top of the mount, beside the pool directories.
enum class RootFile : uint8_t { kStatus, kMetrics };
std::optional<RootFile> ParseRootFile(std::string_view name);
std::string_view RootFileName(RootFile file);

// Fixed names inside a pool directory (besides the sequence files).
enum class PoolFile : uint8_t {
  kStatus,
  kHealth,
  kEntries,
  kConfig,
  kEvict,
  kPersist,
  kRestore,
  kMatch,  // a prompt's cached chunks, per open handle (match_file.h)
};
inline constexpr PoolFile kAllPoolFiles[] = {PoolFile::kStatus,  PoolFile::kHealth,
                                              PoolFile::kEntries, PoolFile::kConfig,
                                              PoolFile::kEvict,   PoolFile::kPersist,
                                              PoolFile::kRestore, PoolFile::kMatch};
inline constexpr std::string_view kByPrefixName = "by-prefix";
// <pool>/chunks/<hash>: the pool's token chunks, named by their chained hash.
inline constexpr std::string_view kChunksName = "chunks";

std::optional<PoolFile> ParsePoolFile(std::string_view name);
std::string_view PoolFileName(PoolFile file);
// evict, persist and restore accept writes; the others are read-only text, except
// match, which answers each open handle on its own.
bool IsControlFile(PoolFile file);

// A sequence file name: a decimal id without sign or leading zeros ("0" is fine).
// Returns the id, or the errno to reply: ENAMETOOLONG over 255 bytes, EINVAL otherwise.
struct SeqName {
  uint64_t seq = 0;
  int error = 0;
};
SeqName ParseSeqName(std::string_view name);

// A file in a pool directory that is not an entry: written by one engine, never listed,
// published only by a rename onto an id (kTemp) or consumed by the publish of <id>
// (kTokens: little-endian u32 prefix tokens of entry <id>).
//   kTemp:   a hidden name (".x", not "." or "..") or one ending in ".tmp"
//   kTokens: "<id>.tokens"
enum class ScratchKind : uint8_t { kNone, kTemp, kTokens };
struct ScratchName {
  ScratchKind kind = ScratchKind::kNone;
  uint64_t seq = 0;  // kTokens: the entry the tokens are for
};
ScratchName ParseScratchName(std::string_view name);
inline constexpr std::string_view kTokensSuffix = ".tokens";

// A name for a new pool directory: 0, or ENAMETOOLONG / EINVAL (bad characters,
// too long for a pool, or one of the fixed top-level names).
int CheckPoolDirName(std::string_view name);

}  // namespace kvcache::fs
