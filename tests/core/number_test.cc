// The one integer grammar of the CLI and the mount.
#include "kvcache/number.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace kvcache {
namespace {

TEST(NumberTest, AcceptsPlainDecimals) {
  EXPECT_EQ(*ParseUnsigned("0", "id"), 0u);
  EXPECT_EQ(*ParseUnsigned("42", "id"), 42u);
  EXPECT_EQ(*ParseUnsigned("18446744073709551615", "id"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(*ParseSigned("-3", "priority", INT32_MIN, INT32_MAX), -3);
  EXPECT_EQ(*ParseSigned("-2147483648", "priority", INT32_MIN, INT32_MAX), INT32_MIN);
  EXPECT_EQ(*ParseSigned("2147483647", "priority", INT32_MIN, INT32_MAX), INT32_MAX);
  EXPECT_EQ(*ParseSigned("-9223372036854775808", "n", INT64_MIN, INT64_MAX), INT64_MIN);
}

TEST(NumberTest, RefusesWhatWouldWrapOrGuess) {
  for (const char* bad : {"", "-1", "+5", " 5", "5 ", "5\n", "0x10", "010", "00", "1e3", "1.0",
                          "18446744073709551616", "99999999999999999999999", "abc", "-"}) {
    Result<uint64_t> r = ParseUnsigned(bad, "sequence id");
    EXPECT_FALSE(r.ok()) << "'" << bad << "' -> " << (r.ok() ? std::to_string(*r) : "");
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
      EXPECT_NE(r.status().message().find("invalid sequence id"), std::string::npos);
    }
  }
  for (const char* bad : {"", "-0", "+1", " -1", "--1", "0x1", "-01", "2147483648", "-2147483649"}) {
    EXPECT_FALSE(ParseSigned(bad, "priority", INT32_MIN, INT32_MAX).ok()) << bad;
  }
  EXPECT_FALSE(ParseUnsigned("11", "count", 10).ok());
  EXPECT_EQ(*ParseUnsigned("10", "count", 10), 10u);
}

TEST(NumberTest, MessageShowsControlBytesEscaped) {
  Result<uint64_t> r = ParseUnsigned("1\n2", "sequence id");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
}

TEST(NumberTest, ModesAreThreeOctalDigits) {
  EXPECT_EQ(*ParseMode("600"), 0600u);
  EXPECT_EQ(*ParseMode("0640"), 0640u);
  EXPECT_EQ(*ParseMode("777"), 0777u);
  for (const char* bad : {"", "8", "60", "0600 ", "1777", "0x1ff", "-600", "+600", "00600", "680"}) {
    EXPECT_FALSE(ParseMode(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace kvcache
