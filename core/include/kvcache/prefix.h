// Prefix hashing. PrefixHash is the seed's: the first 16 hex characters of SHA-256
// over the tokens encoded as little-endian uint32 ([1,2,3,4,5] -> "4f6addc9659d6fb9").
// No tokens hash to "", as in the original; such an entry has no prefix and is never
// indexed. ChainHash links fixed-size token blocks for longest-prefix matching.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/export.h"
#include "kvcache/status.h"

namespace kvcache {

KVCACHE_EXPORT std::string PrefixHash(std::span<const uint32_t> tokens);
// The same 64 bits as a number (the 16 hex digits read big-endian).
KVCACHE_EXPORT uint64_t PrefixHashValue(std::span<const uint32_t> tokens);
KVCACHE_EXPORT std::string PrefixHashToHex(uint64_t value);
// Exactly 16 lowercase or uppercase hex digits -> value; InvalidArgument otherwise.
KVCACHE_EXPORT Result<uint64_t> ParsePrefixHash(std::string_view hex);

// Hash of a block of tokens chained to its parent's hash (0 for the first block).
// Never returns 0, so 0 can mean "no block".
KVCACHE_EXPORT uint64_t ChainHash(uint64_t parent, std::span<const uint32_t> block);

// H_0 of the token chunks of `name_space` (any string: model, dtype, rank, adapter,
// salt): chunks stored under one namespace never match a prompt asked under another.
// Never 0, so no chunk chain starts where an entry's block chain does.
KVCACHE_EXPORT uint64_t ChunkChainSeed(std::string_view name_space);

// "1,2,3" or "1 2 3" -> tokens; InvalidArgument naming the bad token.
KVCACHE_EXPORT Result<std::vector<uint32_t>> ParseTokenList(std::string_view text);
// tokens -> "1,2,3"
KVCACHE_EXPORT std::string FormatTokenList(std::span<const uint32_t> tokens);

}  // namespace kvcache
