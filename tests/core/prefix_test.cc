#include "kvcache/prefix.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace kvcache {
namespace {

using ::testing::HasSubstr;
using Tokens = std::vector<uint32_t>;

TEST(PrefixHashTest, MatchesKnownAnswers) {
  EXPECT_EQ(PrefixHash(Tokens{1, 2, 3, 4, 5}), "4f6addc9659d6fb9");
  EXPECT_EQ(PrefixHash(Tokens{42}), "e8a4b2ee7ede79a3");
  EXPECT_EQ(PrefixHash(Tokens{}), "");  // the original's hash of no tokens
  // Little-endian encoding of tokens that use every byte.
  EXPECT_EQ(PrefixHash(Tokens{4294967295u, 256}), "9911adafa6949df3");
  EXPECT_EQ(PrefixHash(Tokens{1, 2, 3, 0}), "81c1a5a2f482e82c");
}

TEST(PrefixHashTest, ValueIsTheHexDigitsReadBigEndian) {
  EXPECT_EQ(PrefixHashValue(Tokens{1, 2, 3, 4, 5}), 0x4f6addc9659d6fb9ull);
  EXPECT_EQ(PrefixHashValue(Tokens{}), 0xe3b0c44298fc1c14ull);
  for (const Tokens& t : {Tokens{7}, Tokens{1, 2}, Tokens{99, 98, 97}}) {
    EXPECT_EQ(PrefixHashToHex(PrefixHashValue(t)), PrefixHash(t));
  }
}

TEST(PrefixHashTest, IsSixteenLowercaseHexDigits) {
  for (uint32_t n = 1; n < 200; ++n) {
    Tokens t(n, n * 7919u);
    std::string h = PrefixHash(t);
    ASSERT_EQ(h.size(), 16u);
    EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos) << h;
  }
}

TEST(PrefixHashTest, SameTokensSameHashDifferentTokensDifferentHash) {
  EXPECT_EQ(PrefixHash(Tokens{1, 2, 3}), PrefixHash(Tokens{1, 2, 3}));
  EXPECT_NE(PrefixHash(Tokens{1, 2, 3}), PrefixHash(Tokens{3, 2, 1}));
  EXPECT_NE(PrefixHash(Tokens{1, 2, 3}), PrefixHash(Tokens{1, 2, 3, 0}));
  EXPECT_NE(PrefixHash(Tokens{}), PrefixHash(Tokens{0}));
  std::set<std::string> seen;
  for (uint32_t i = 0; i < 1000; ++i) seen.insert(PrefixHash(Tokens{i}));
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(PrefixHashTest, HexRoundTrips) {
  EXPECT_EQ(PrefixHashToHex(0), "0000000000000000");
  EXPECT_EQ(PrefixHashToHex(0xABCDEF0123456789ull), "abcdef0123456789");
  EXPECT_EQ(PrefixHashToHex(~0ull), "ffffffffffffffff");
  EXPECT_EQ(*ParsePrefixHash("abcdef0123456789"), 0xABCDEF0123456789ull);
  EXPECT_EQ(*ParsePrefixHash("ABCDEF0123456789"), 0xABCDEF0123456789ull);
  EXPECT_EQ(*ParsePrefixHash("0000000000000000"), 0ull);
  EXPECT_EQ(*ParsePrefixHash(PrefixHash(Tokens{1, 2, 3, 4, 5})), 0x4f6addc9659d6fb9ull);
}

TEST(PrefixHashTest, ParseRejectsAnythingButSixteenHexDigits) {
  for (const char* bad : {"", "abc", "4f6addc9659d6fb", "4f6addc9659d6fb90", "4f6addc9659d6fbg",
                          "0x6addc9659d6fb9", " 4f6addc9659d6fb", "4f6addc9-59d6fb9"}) {
    Result<uint64_t> r = ParsePrefixHash(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr("'" + std::string(bad) + "'"));
  }
}

TEST(ChainHashTest, EmptyFirstBlockIsPlainXxh3) {
  // XXH3_64bits of no bytes with seed 0, the published test vector.
  EXPECT_EQ(ChainHash(0, Tokens{}), 0x2D06800538D394C2ull);
}

TEST(ChainHashTest, ChunkSizedBlocksKeepTheirValues) {
  // Chained hashes are stored in segments and snapshots: a block of 16 and one of 256
  // tokens hash to what libxxhash 0.8's XXH3_64bits_withSeed gives for their
  // little-endian bytes, however ChainHash calls it.
  Tokens sixteen(16);
  for (uint32_t i = 0; i < 16; ++i) sixteen[i] = 1000 * i + 7;
  EXPECT_EQ(ChainHash(0x0123456789ABCDEFull, sixteen), 0xA85F1DD24F2C887Aull);
  Tokens many(256);
  for (uint32_t i = 0; i < 256; ++i) many[i] = 31 * i;
  EXPECT_EQ(ChainHash(42, many), 0xFFA81B8A05CCBAEAull);
}

TEST(ChainHashTest, DependsOnParentAndEveryToken) {
  Tokens a{1, 2, 3, 4};
  Tokens b{1, 2, 3, 5};
  EXPECT_EQ(ChainHash(0, a), ChainHash(0, a));
  EXPECT_NE(ChainHash(0, a), ChainHash(0, b));
  EXPECT_NE(ChainHash(0, a), ChainHash(1, a));
  EXPECT_NE(ChainHash(0, a), ChainHash(0, Tokens{4, 3, 2, 1}));
  uint64_t parent = ChainHash(0, a);
  EXPECT_NE(ChainHash(parent, b), ChainHash(0, b));
  EXPECT_NE(ChainHash(ChainHash(0, a), b), ChainHash(ChainHash(0, b), a));
}

TEST(ChainHashTest, NeverReturnsZero) {
  std::set<uint64_t> seen;
  uint64_t h = 0;
  for (uint32_t i = 0; i < 10000; ++i) {
    h = ChainHash(h, Tokens{i, i + 1});
    ASSERT_NE(h, 0u);
    seen.insert(h);
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(TokenListTest, ParsesCommaAndSpaceSeparatedLists) {
  const Tokens expected{1, 2, 3};
  for (const char* text :
       {"1,2,3", "1 2 3", "1, 2, 3", " 1,2,3\n", "[1, 2, 3]", "[1,2,3]\n", "1\t2  3", "1 ,2 , 3"}) {
    Result<Tokens> r = ParseTokenList(text);
    ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    EXPECT_EQ(*r, expected) << text;
  }
}

TEST(TokenListTest, EmptyInputIsAnEmptyList) {
  for (const char* text : {"", "  ", "\n", "[]", "[ ]"}) {
    Result<Tokens> r = ParseTokenList(text);
    ASSERT_TRUE(r.ok()) << text;
    EXPECT_TRUE(r->empty()) << text;
  }
}

TEST(TokenListTest, AcceptsTheWholeUint32Range) {
  Result<Tokens> r = ParseTokenList("0,4294967295");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (Tokens{0, 4294967295u}));
}

TEST(TokenListTest, RejectsBadTokensNamingThem) {
  struct Case {
    const char* text;
    const char* named;
  };
  const Case cases[] = {
      {"1,a,3", "'a'"},   {"-1", "'-1'"},   {"4294967296", "'4294967296'"},
      {"1.5", "'1.5'"},   {"[1,2", "'[1'"}, {"1;2", "'1;2'"},
      {"0x10", "'0x10'"}, {"+1", "'+1'"},
  };
  for (const Case& c : cases) {
    Result<Tokens> r = ParseTokenList(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.named)) << c.text;
  }
  for (const char* text : {"1,,2", "1,", ",1", "[,]"}) {
    Result<Tokens> r = ParseTokenList(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  }
}

TEST(TokenListTest, FormatsWithCommasAndRoundTrips) {
  EXPECT_EQ(FormatTokenList(Tokens{1, 2, 3}), "1,2,3");
  EXPECT_EQ(FormatTokenList(Tokens{}), "");
  EXPECT_EQ(FormatTokenList(Tokens{4294967295u}), "4294967295");
  Tokens t{5, 0, 17, 4000000000u};
  EXPECT_EQ(*ParseTokenList(FormatTokenList(t)), t);
}

}  // namespace
}  // namespace kvcache
