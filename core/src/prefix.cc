#include "kvcache/prefix.h"

#include <openssl/sha.h>
// Inlined: a chained hash is one short XXH3 call per chunk, thousands per match, and
// the call into the shared library costs as much as the hashing of 16 tokens.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <string>

#include "text.h"

namespace kvcache {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Tokens are hashed as little-endian uint32, the seed's encoding. On a little-endian
// host the in-memory array already is that encoding, so long prompts are hashed in
// place; elsewhere the bytes are swapped into a buffer first.
template <typename Fn>
void WithLittleEndianBytes(std::span<const uint32_t> tokens, Fn&& fn) {
  if constexpr (std::endian::native == std::endian::little) {
    fn(reinterpret_cast<const unsigned char*>(tokens.data()), tokens.size_bytes());
  } else {
    std::string buf(tokens.size() * 4, '\0');
    for (size_t i = 0; i < tokens.size(); ++i) {
      uint32_t t = tokens[i];
      for (int b = 0; b < 4; ++b) buf[i * 4 + b] = static_cast<char>((t >> (8 * b)) & 0xff);
    }
    fn(reinterpret_cast<const unsigned char*>(buf.data()), buf.size());
  }
}



}  // namespace

uint64_t PrefixHashValue(std::span<const uint32_t> tokens) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  WithLittleEndianBytes(
      tokens, [&](const unsigned char* data, size_t len) { SHA256(data, len, digest.data()); });
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | digest[i];
  return value;
}

std::string PrefixHash(std::span<const uint32_t> tokens) {
  if (tokens.empty()) return {};  // the original's hash of no tokens
  return PrefixHashToHex(PrefixHashValue(tokens));
}

std::string PrefixHashToHex(uint64_t value) {
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[i] = kHexDigits[value & 0xf];
    value >>= 4;
  }
  return out;
}

Result<uint64_t> ParsePrefixHash(std::string_view hex) {
  auto bad = [&] {
    return Status::InvalidArgument("invalid prefix hash '" + std::string(hex) +
                                   "': expected 16 hex digits");
  };
  if (hex.size() != 16) return bad();
  uint64_t value = 0;
  for (char c : hex) {
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return bad();
    }
    value = (value << 4) | digit;
  }
  return value;
}

uint64_t ChainHash(uint64_t parent, std::span<const uint32_t> block) {
  uint64_t h = 0;
  WithLittleEndianBytes(block, [&](const unsigned char* data, size_t len) {
    h = XXH3_64bits_withSeed(data, len, parent);
  });
  // 0 means "no block" to callers; remapping one value in 2^64 costs nothing.
  return h == 0 ? 1 : h;
}

uint64_t ChunkChainSeed(std::string_view name_space) {
  // A fixed, arbitrary seed keeps namespace seeds apart from plain XXH3 of the same bytes.
  uint64_t h = XXH3_64bits_withSeed(name_space.data(), name_space.size(), 0x6b76636e6b73ull);
  return h == 0 ? 1 : h;
}

// Accepts "1,2,3", "1 2 3", "1, 2, 3", "[1, 2, 3]" and surrounding whitespace.
Result<std::vector<uint32_t>> ParseTokenList(std::string_view text) {
  std::string_view s = TrimSpace(text);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
    s = TrimSpace(s.substr(1, s.size() - 2));
  }
  std::vector<uint32_t> tokens;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size() && IsSpace(s[i])) ++i;
  };
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && !IsSpace(s[i]) && s[i] != ',') ++i;
    std::string_view token = s.substr(start, i - start);
    if (token.empty()) {
      return Status::InvalidArgument("invalid token list '" + std::string(TrimSpace(text)) +
                                     "': empty token at position " +
                                     std::to_string(tokens.size() + 1));
    }
    uint32_t value = 0;
    auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value, 10);
    if (ec != std::errc() || end != token.data() + token.size()) {
      return Status::InvalidArgument("invalid token '" + std::string(token) +
                                     "': expected a decimal number from 0 to 4294967295");
    }
    tokens.push_back(value);
    skip_space();
    if (i < s.size() && s[i] == ',') {
      ++i;
      skip_space();
      if (i == s.size()) {
        return Status::InvalidArgument("invalid token list '" + std::string(TrimSpace(text)) +
                                       "': trailing ','");
      }
    }
  }
  return tokens;
}

std::string FormatTokenList(std::span<const uint32_t> tokens) {
  std::string out;
  out.reserve(tokens.size() * 6);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i != 0) out += ',';
    out += std::to_string(tokens[i]);
  }
  return out;
}

}  // namespace kvcache
