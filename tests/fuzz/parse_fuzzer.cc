// The text parsers every user input goes through: sizes ("16G"), token lists
// ("1,2,3"), eviction percents, prefix hashes, policy and tier names, pool configs
// (JSON), pool and shm prefix names, and the mount's sequence file names. Each must
// refuse bad text with an error, never crash, and what it accepts must round-trip.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_env.h"
#include "kvcache/prefix.h"
#include "kvcache/requests.h"
#include "kvcache/size.h"
#include "kvcache/types.h"
#include "names.h"

namespace {

using kvcache::fuzz::Check;

bool EqualIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void Sizes(std::string_view text) {
  kvcache::Result<uint64_t> size = kvcache::ParseSize(text);
  if (!size.ok()) return;
  Check(*size > 0, "ParseSize accepted a zero size");
  (void)kvcache::FormatSizeShort(*size);
  (void)kvcache::FormatSizeLong(*size);
  // The plain byte count always parses back to itself.
  kvcache::Result<uint64_t> again = kvcache::ParseSize(std::to_string(*size));
  Check(again.ok() && *again == *size, "ParseSize of a byte count does not round-trip");
}

void Tokens(std::string_view text) {
  kvcache::Result<std::vector<uint32_t>> tokens = kvcache::ParseTokenList(text);
  if (!tokens.ok()) return;
  std::string formatted = kvcache::FormatTokenList(*tokens);
  kvcache::Result<std::vector<uint32_t>> again = kvcache::ParseTokenList(formatted);
  if (tokens->empty()) return;  // "" formats to "", which is not a list
  Check(again.ok() && *again == *tokens, "token list does not round-trip");
  Check(kvcache::PrefixHash(*tokens).size() == 16, "prefix hash is not 16 hex digits");
}

void Percent(std::string_view text) {
  kvcache::Result<double> p = kvcache::ParsePercent(text);
  if (p.ok()) Check(*p > 0.0 && *p <= 100.0, "ParsePercent accepted a value outside (0, 100]");
}

void Hash(std::string_view text) {
  kvcache::Result<uint64_t> h = kvcache::ParsePrefixHash(text);
  if (h.ok()) {
    Check(EqualIgnoreCase(kvcache::PrefixHashToHex(*h), text), "prefix hash does not round-trip");
  }
}

void Names(std::string_view text) {
  if (kvcache::Result<kvcache::Policy> p = kvcache::ParsePolicy(text); p.ok()) {
    Check(EqualIgnoreCase(kvcache::PolicyName(*p), text), "policy name does not round-trip");
  }
  if (kvcache::Result<kvcache::Tier> t = kvcache::ParseTier(text); t.ok()) {
    Check(EqualIgnoreCase(kvcache::TierName(*t), text), "tier name does not round-trip");
  }
  if (kvcache::ValidatePoolName(text).ok()) {
    Check(!text.empty() && text.size() <= kvcache::kMaxPoolNameLength &&
              text.find('/') == std::string_view::npos && text != "." && text != "..",
          "ValidatePoolName accepted a name that is not one file name");
  }
  if (kvcache::ValidateShmPrefix(text).ok()) {
    Check(text.find('/') == std::string_view::npos && text.find("..") == std::string_view::npos,
          "ValidateShmPrefix accepted a prefix that leaves /dev/shm");
  }
  kvcache::fs::SeqName seq = kvcache::fs::ParseSeqName(text);
  if (seq.error == 0) {
    Check(std::to_string(seq.seq) == text, "a sequence file name is not its id in decimal");
  }
  (void)kvcache::fs::ParsePoolFile(text);
  (void)kvcache::fs::ParseRootFile(text);
  (void)kvcache::fs::CheckPoolDirName(text);
}

void Config(std::string_view text) {
  kvcache::Result<kvcache::PoolConfig> config = kvcache::PoolConfig::FromJson(text);
  if (!config.ok()) return;
  Check(config->Validate().ok(), "FromJson returned a config that does not validate");
  kvcache::Result<kvcache::PoolConfig> again = kvcache::PoolConfig::FromJson(config->ToJson());
  Check(again.ok() && again->ToJson() == config->ToJson(), "pool config does not round-trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kvcache::fuzz::AsText(data, size);
  Sizes(text);
  Tokens(text);
  Percent(text);
  Hash(text);
  Names(text);
  Config(text);
  return 0;
}
