#include "kvcache/types.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "text.h"

namespace kvcache {
namespace {

using Json = nlohmann::ordered_json;

constexpr uint32_t kMinBlockSize = 512;
constexpr uint32_t kMaxBlockSize = 1u << 20;
constexpr uint32_t kMaxMaxSequences = 1u << 24;
constexpr uint32_t kMaxPrefixBlockTokens = 65536;
constexpr uint32_t kMaxMode = 0777;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (x != b[i]) return false;
  }
  return true;
}

bool IsPoolNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == ':' || c == '@';  // "llama2:7b", "model@rev" 
}

// Reads an unsigned integer field; absent fields keep the default already in `out`.
template <typename T>
Status ReadUnsigned(const Json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::Ok();
  if (!it->is_number_unsigned()) {
    return Status::InvalidArgument(std::string("invalid pool config: '") + key +
                                   "' must be a non-negative integer");
  }
  uint64_t v = it->template get<uint64_t>();
  if (v > std::numeric_limits<T>::max()) {
    return Status::InvalidArgument(std::string("invalid pool config: '") + key + "' value " +
                                   std::to_string(v) + " is out of range");
  }
  *out = static_cast<T>(v);
  return Status::Ok();
}

Status ReadString(const Json& j, const char* key, bool required, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (!required) return Status::Ok();
    return Status::InvalidArgument(std::string("invalid pool config: missing '") + key + "'");
  }
  if (!it->is_string()) {
    return Status::InvalidArgument(std::string("invalid pool config: '") + key +
                                   "' must be a string");
  }
  *out = it->get<std::string>();
  return Status::Ok();
}

}  // namespace

// Bad input is echoed back in messages; control bytes would garble a terminal or a
// control file's reply, so they are shown as \xNN.
std::string Printable(std::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max));
  for (unsigned char c : text.substr(0, max)) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

Result<Policy> ParsePolicy(std::string_view text) {
  for (Policy p : {Policy::kLru, Policy::kLfu, Policy::kFifo, Policy::kPriority}) {
    if (EqualsIgnoreCase(text, PolicyName(p))) return p;
  }
  return Status::InvalidArgument("invalid policy '" + Printable(text) +
                                 "': expected lru, lfu, fifo or priority");
}

std::string_view PolicyName(Policy policy) {
  switch (policy) {
    case Policy::kLru:
      return "lru";
    case Policy::kLfu:
      return "lfu";
    case Policy::kFifo:
      return "fifo";
    case Policy::kPriority:
      return "priority";
  }
  return "unknown";
}

Result<Tier> ParseTier(std::string_view text) {
  for (Tier t : {Tier::kCpu, Tier::kGpu, Tier::kDisk}) {
    if (EqualsIgnoreCase(text, TierName(t))) return t;
  }
  return Status::InvalidArgument("invalid tier '" + Printable(text) +
                                 "': expected cpu, gpu or disk");
}

std::string_view TierName(Tier tier) {
  switch (tier) {
    case Tier::kCpu:
      return "cpu";
    case Tier::kGpu:
      return "gpu";
    case Tier::kDisk:
      return "disk";
  }
  return "unknown";
}

Status ValidatePoolName(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("invalid pool name '" + Printable(name) +
                                   "': " + std::string(why));
  };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > kMaxPoolNameLength) {
    return bad("longer than " + std::to_string(kMaxPoolNameLength) + " bytes (" +
               std::to_string(name.size()) + ")");
  }
  if (name.front() == '.') return bad("must not start with '.'");
  if (name.front() == '-') return bad("must not start with '-'");
  for (char c : name) {
    if (!IsPoolNameChar(c)) {
      return bad("only letters, digits, '.', '_', '-', ':' and '@' are allowed");
    }
  }
  return Status::Ok();
}

std::string PoolConfig::ToJson() const {
  Json j;
  j["name"] = name;
  j["size_bytes"] = size_bytes;
  j["policy"] = std::string(PolicyName(policy));
  j["tier"] = std::string(TierName(tier));
  j["max_sequences"] = max_sequences;
  j["block_size"] = block_size;
  j["prefix_block_tokens"] = prefix_block_tokens;
  j["mode"] = mode;
  // `replace` keeps a name with invalid UTF-8 from throwing; Validate rejects such names.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Fields other than name and size_bytes are optional (older catalogs and the seed's
// config JSON lack some); unknown fields are ignored. The result is validated, so a
// config read back from disk is usable as is.
Result<PoolConfig> PoolConfig::FromJson(std::string_view json) {
  Json j;
  try {
    j = Json::parse(json.begin(), json.end());
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(std::string("invalid pool config JSON: ") + e.what());
  }
  if (!j.is_object()) {
    return Status::InvalidArgument("invalid pool config JSON: expected an object");
  }
  PoolConfig c;
  KVC_RETURN_IF_ERROR(ReadString(j, "name", true, &c.name));
  if (j.find("size_bytes") == j.end()) {
    return Status::InvalidArgument("invalid pool config: missing 'size_bytes'");
  }
  KVC_RETURN_IF_ERROR(ReadUnsigned(j, "size_bytes", &c.size_bytes));
  std::string text;
  if (j.contains("policy")) {
    KVC_RETURN_IF_ERROR(ReadString(j, "policy", true, &text));
    KVC_ASSIGN_OR_RETURN(c.policy, ParsePolicy(text));
  }
  if (j.contains("tier")) {
    KVC_RETURN_IF_ERROR(ReadString(j, "tier", true, &text));
    KVC_ASSIGN_OR_RETURN(c.tier, ParseTier(text));
  }
  KVC_RETURN_IF_ERROR(ReadUnsigned(j, "max_sequences", &c.max_sequences));
  KVC_RETURN_IF_ERROR(ReadUnsigned(j, "block_size", &c.block_size));
  KVC_RETURN_IF_ERROR(ReadUnsigned(j, "prefix_block_tokens", &c.prefix_block_tokens));
  KVC_RETURN_IF_ERROR(ReadUnsigned(j, "mode", &c.mode));
  KVC_RETURN_IF_ERROR(c.Validate());
  return c;
}

Status ValidatePutOptions(const PutOptions& options) {
  if (options.metadata.size() > kMaxPutMetadataBytes) {
    return Status::InvalidArgument("metadata of " + std::to_string(options.metadata.size()) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(kMaxPutMetadataBytes));
  }
  if (!options.metadata.empty() && !nlohmann::json::accept(options.metadata)) {
    return Status::InvalidArgument("metadata is not valid JSON: " +
                                   Printable(options.metadata.substr(0, 80)));
  }
  if (options.prefix_tokens.size() > kMaxPutPrefixTokens) {
    return Status::InvalidArgument("prefix of " + std::to_string(options.prefix_tokens.size()) +
                                   " tokens exceeds the limit of " +
                                   std::to_string(kMaxPutPrefixTokens));
  }
  return Status::Ok();
}

Status PoolConfig::Validate() const {
  KVC_RETURN_IF_ERROR(ValidatePoolName(name));
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("invalid config for pool '" + name + "': " + why);
  };
  if (static_cast<uint8_t>(policy) > static_cast<uint8_t>(Policy::kPriority)) {
    return bad("unknown policy value " + std::to_string(static_cast<int>(policy)));
  }
  if (static_cast<uint8_t>(tier) > static_cast<uint8_t>(Tier::kDisk)) {
    return bad("unknown tier value " + std::to_string(static_cast<int>(tier)));
  }
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize ||
      (block_size & (block_size - 1)) != 0) {
    return bad("block_size " + std::to_string(block_size) +
               " must be a power of two from 512 to 1048576");
  }
  if (size_bytes < block_size) {
    return bad("size_bytes " + std::to_string(size_bytes) + " is smaller than block_size " +
               std::to_string(block_size));
  }
  if (max_sequences < 1 || max_sequences > kMaxMaxSequences) {
    return bad("max_sequences " + std::to_string(max_sequences) + " must be from 1 to 16777216");
  }
  if (prefix_block_tokens < 1 || prefix_block_tokens > kMaxPrefixBlockTokens) {
    return bad("prefix_block_tokens " + std::to_string(prefix_block_tokens) +
               " must be from 1 to 65536");
  }
  if (mode > kMaxMode) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%o", mode);
    return bad(std::string("mode 0") + buf + " has bits outside 0777");
  }
  return Status::Ok();
}

}  // namespace kvcache
