#include "kvcache/types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace kvcache {
namespace {

using ::testing::HasSubstr;

PoolConfig ValidConfig() {
  PoolConfig c;
  c.name = "llama-cache";
  c.size_bytes = 1 << 20;
  return c;
}

TEST(PolicyTest, ParsesEveryNameCaseInsensitively) {
  EXPECT_EQ(*ParsePolicy("lru"), Policy::kLru);
  EXPECT_EQ(*ParsePolicy("lfu"), Policy::kLfu);
  EXPECT_EQ(*ParsePolicy("fifo"), Policy::kFifo);
  EXPECT_EQ(*ParsePolicy("priority"), Policy::kPriority);
  EXPECT_EQ(*ParsePolicy("LRU"), Policy::kLru);
  EXPECT_EQ(*ParsePolicy("Priority"), Policy::kPriority);
}

TEST(PolicyTest, NamesRoundTripAndMatchHeaderBytes) {
  for (Policy p : {Policy::kLru, Policy::kLfu, Policy::kFifo, Policy::kPriority}) {
    EXPECT_EQ(*ParsePolicy(PolicyName(p)), p);
  }
  EXPECT_EQ(static_cast<int>(Policy::kLru), 0);
  EXPECT_EQ(static_cast<int>(Policy::kLfu), 1);
  EXPECT_EQ(static_cast<int>(Policy::kFifo), 2);
  EXPECT_EQ(static_cast<int>(Policy::kPriority), 3);
}

TEST(PolicyTest, UnknownPolicyIsRejectedByName) {
  for (const char* bad : {"", "random", "lru ", "mru"}) {
    Result<Policy> r = ParsePolicy(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("'" + std::string(bad) + "'"));
  }
  EXPECT_EQ(ParsePolicy("random").status().message(),
            "invalid policy 'random': expected lru, lfu, fifo or priority");
}

TEST(TierTest, ParsesCpuGpuDisk) {
  EXPECT_EQ(*ParseTier("cpu"), Tier::kCpu);
  EXPECT_EQ(*ParseTier("gpu"), Tier::kGpu);
  EXPECT_EQ(*ParseTier("disk"), Tier::kDisk);
  EXPECT_EQ(*ParseTier("GPU"), Tier::kGpu);
  EXPECT_EQ(TierName(Tier::kCpu), "cpu");
  EXPECT_EQ(TierName(Tier::kGpu), "gpu");
  EXPECT_EQ(TierName(Tier::kDisk), "disk");
}

TEST(TierTest, UnknownTierIsRejectedByName) {
  Result<Tier> r = ParseTier("tpu");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "invalid tier 'tpu': expected cpu, gpu or disk");
}

TEST(PoolNameTest, AcceptsLettersDigitsDotUnderscoreDashColonAt) {
  for (const std::string& good :
       {std::string("llama-cache"), std::string("a"), std::string("A.b_c-1"),
        std::string("llama.70b"), std::string("a..b"), std::string("llama2:7b"),
        std::string("org@model:q4_0"), std::string("a."), std::string(128, 'x')}) {
    EXPECT_TRUE(ValidatePoolName(good).ok()) << good;
  }
}

TEST(PoolNameTest, RejectsBadNamesNamingThem) {
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("..."),
        std::string(".hidden"), std::string("-x"), std::string("a/b"), std::string("a\\b"),
        std::string("a b"), std::string(129, 'x'), std::string("caf\xc3\xa9"), std::string("a\nb"),
        std::string("a\0b", 3), std::string("x*")}) {
    Status s = ValidatePoolName(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("invalid pool name '")) << bad;
  }
  EXPECT_THAT(ValidatePoolName("a/b").message(), HasSubstr("invalid pool name 'a/b': "));
  EXPECT_THAT(ValidatePoolName(std::string(129, 'x')).message(), HasSubstr("128"));
  // Control bytes are escaped so the message stays on one line.
  EXPECT_THAT(ValidatePoolName("a\nb").message(), HasSubstr("'a\\x0ab'"));
}

TEST(PoolConfigTest, ToJsonHasTheDocumentedFieldsInOrder) {
  EXPECT_EQ(ValidConfig().ToJson(),
            "{\"name\":\"llama-cache\",\"size_bytes\":1048576,\"policy\":\"lru\","
            "\"tier\":\"cpu\",\"max_sequences\":10000,\"block_size\":4096,"
            "\"prefix_block_tokens\":16,\"mode\":384}");
}

TEST(PoolConfigTest, JsonRoundTripKeepsEveryField) {
  PoolConfig c;
  c.name = "mistral-7b";
  c.size_bytes = 8ull << 30;
  c.policy = Policy::kPriority;
  c.tier = Tier::kDisk;
  c.max_sequences = 123;
  c.block_size = 65536;
  c.prefix_block_tokens = 32;
  c.mode = 0640;
  Result<PoolConfig> back = PoolConfig::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->name, c.name);
  EXPECT_EQ(back->size_bytes, c.size_bytes);
  EXPECT_EQ(back->policy, c.policy);
  EXPECT_EQ(back->tier, c.tier);
  EXPECT_EQ(back->max_sequences, c.max_sequences);
  EXPECT_EQ(back->block_size, c.block_size);
  EXPECT_EQ(back->prefix_block_tokens, c.prefix_block_tokens);
  EXPECT_EQ(back->mode, c.mode);
}

TEST(PoolConfigTest, FromJsonDefaultsOptionalFieldsAndIgnoresUnknownOnes) {
  Result<PoolConfig> c =
      PoolConfig::FromJson(R"({"name":"p","size_bytes":65536,"future_field":[1,2]})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->policy, Policy::kLru);
  EXPECT_EQ(c->tier, Tier::kCpu);
  EXPECT_EQ(c->max_sequences, kDefaultMaxSequences);
  EXPECT_EQ(c->block_size, kDefaultBlockSize);
  EXPECT_EQ(c->prefix_block_tokens, kDefaultPrefixBlockTokens);
  EXPECT_EQ(c->mode, 0600u);
}

TEST(PoolConfigTest, FromJsonRejectsMalformedInput) {
  const char* bad[] = {
      "",
      "{",
      "not json",
      "[]",
      "null",
      R"({"size_bytes":65536})",
      R"({"name":"p"})",
      R"({"name":1,"size_bytes":65536})",
      R"({"name":"p","size_bytes":-1})",
      R"({"name":"p","size_bytes":1.5})",
      R"({"name":"p","size_bytes":"16G"})",
      R"({"name":"p","size_bytes":65536,"policy":"bogus"})",
      R"({"name":"p","size_bytes":65536,"policy":3})",
      R"({"name":"p","size_bytes":65536,"tier":"tpu"})",
      R"({"name":"p","size_bytes":65536,"max_sequences":4294967296})",
      R"({"name":"p","size_bytes":65536,"block_size":1000})",
      R"({"name":"a/b","size_bytes":65536})",
      R"({"name":"p","size_bytes":65536} trailing)",
  };
  for (const char* json : bad) {
    Result<PoolConfig> r = PoolConfig::FromJson(json);
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << json;
    EXPECT_FALSE(r.status().message().empty());
  }
  EXPECT_THAT(PoolConfig::FromJson(R"({"name":"p"})").status().message(), HasSubstr("size_bytes"));
  EXPECT_THAT(PoolConfig::FromJson(R"({"name":"p","size_bytes":65536,"max_sequences":-5})")
                  .status()
                  .message(),
              HasSubstr("max_sequences"));
}

TEST(PoolConfigTest, ValidateAcceptsBoundaries) {
  PoolConfig c = ValidConfig();
  EXPECT_TRUE(c.Validate().ok());
  c.block_size = 512;
  c.size_bytes = 512;
  EXPECT_TRUE(c.Validate().ok());
  c.block_size = 1 << 20;
  c.size_bytes = 1 << 20;
  EXPECT_TRUE(c.Validate().ok());
  c.max_sequences = 1;
  EXPECT_TRUE(c.Validate().ok());
  c.max_sequences = 16777216;
  EXPECT_TRUE(c.Validate().ok());
  c.prefix_block_tokens = 1;
  EXPECT_TRUE(c.Validate().ok());
  c.prefix_block_tokens = 65536;
  EXPECT_TRUE(c.Validate().ok());
  c.mode = 0777;
  EXPECT_TRUE(c.Validate().ok());
  c.mode = 0;
  EXPECT_TRUE(c.Validate().ok());
}

TEST(PoolConfigTest, ValidateNamesTheBadField) {
  struct Case {
    void (*mutate)(PoolConfig&);
    const char* field;
  };
  const Case cases[] = {
      {[](PoolConfig& c) { c.block_size = 256; }, "block_size"},
      {[](PoolConfig& c) { c.block_size = 1000; }, "block_size"},
      {[](PoolConfig& c) { c.block_size = 2 << 20; }, "block_size"},
      {[](PoolConfig& c) { c.block_size = 0; }, "block_size"},
      {[](PoolConfig& c) { c.size_bytes = 4095; }, "size_bytes"},
      {[](PoolConfig& c) { c.size_bytes = 0; }, "size_bytes"},
      {[](PoolConfig& c) { c.max_sequences = 0; }, "max_sequences"},
      {[](PoolConfig& c) { c.max_sequences = 16777217; }, "max_sequences"},
      {[](PoolConfig& c) { c.prefix_block_tokens = 0; }, "prefix_block_tokens"},
      {[](PoolConfig& c) { c.prefix_block_tokens = 65537; }, "prefix_block_tokens"},
      {[](PoolConfig& c) { c.mode = 01000; }, "mode"},
      {[](PoolConfig& c) { c.mode = 04755; }, "mode"},
      {[](PoolConfig& c) { c.name = "a/b"; }, "pool name"},
      {[](PoolConfig& c) { c.name = ""; }, "pool name"},
      {[](PoolConfig& c) { c.policy = static_cast<Policy>(9); }, "policy"},
      {[](PoolConfig& c) { c.tier = static_cast<Tier>(7); }, "tier"},
  };
  for (const Case& k : cases) {
    PoolConfig c = ValidConfig();
    k.mutate(c);
    Status s = c.Validate();
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << k.field;
    EXPECT_THAT(s.message(), HasSubstr(k.field));
  }
}

}  // namespace
}  // namespace kvcache
