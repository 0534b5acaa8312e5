#include "kvcache/size.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvcache {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kKi = 1024;
constexpr uint64_t kMi = kKi * 1024;
constexpr uint64_t kGi = kMi * 1024;
constexpr uint64_t kTi = kGi * 1024;

TEST(ParseSizeTest, AcceptsTheUsualForms) {
  struct Case {
    const char* text;
    uint64_t bytes;
  };
  const Case cases[] = {
      {"16G", 16 * kGi},
      {"512M", 512 * kMi},
      {"1.5G", 1610612736},
      {"1024K", kMi},
      {"4096", 4096},
      {"1T", kTi},
      {"16GB", 16 * kGi},
      {"16g", 16 * kGi},
      {"16gb", 16 * kGi},
      {"16GiB", 16 * kGi},
      {"1.5K", 1536},
      {"0.5K", 512},
      {"100B", 100},
      {" 16G ", 16 * kGi},
      {"\t512M\n", 512 * kMi},
      {"1", 1},
      {"2.25M", 2359296},
      {"1.50G", 1610612736},
      {"9223372036854775807", 9223372036854775807ull},
      {"0.0009765625K", 1},
  };
  for (const Case& c : cases) {
    Result<uint64_t> r = ParseSize(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status().ToString();
    EXPECT_EQ(*r, c.bytes) << c.text;
  }
}

TEST(ParseSizeTest, RejectsBadInputNamingIt) {
  for (const char* bad : {"",
                          "   ",
                          "abc",
                          "0",
                          "0K",
                          "0.0G",
                          "-1G",
                          "16X",
                          "1.5",
                          "1.3K",
                          "2.5 G",
                          "16 G",
                          "G",
                          ".",
                          "1..5G",
                          "1GG",
                          "+1G",
                          "1e3",
                          "0x10",
                          "16G extra",
                          "8388608T",
                          "9223372036854775808",
                          "99999999999999999999999",
                          "16BB",
                          "1,5G"}) {
    Result<uint64_t> r = ParseSize(bad);
    ASSERT_FALSE(r.ok()) << bad << " parsed as " << *r;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("invalid size '" + std::string(bad) + "'"));
  }
}

TEST(ParseSizeTest, MessagesSayWhatIsWrong) {
  EXPECT_EQ(ParseSize("16X").status().message(),
            "invalid size '16X': expected a number with an optional K, M, G or T suffix");
  EXPECT_THAT(ParseSize("0").status().message(), HasSubstr("greater than zero"));
  EXPECT_THAT(ParseSize("1.5").status().message(), HasSubstr("whole number of bytes"));
  EXPECT_THAT(ParseSize("99999999999T").status().message(), HasSubstr("too large"));
}

TEST(FormatSizeTest, ShortFormHasOneDecimalAndAUnit) {
  EXPECT_EQ(FormatSizeShort(16 * kGi), "16.0G");
  EXPECT_EQ(FormatSizeShort(512 * kMi), "512.0M");
  EXPECT_EQ(FormatSizeShort(4096), "4.0K");
  EXPECT_EQ(FormatSizeShort(100), "100B");
  EXPECT_EQ(FormatSizeShort(0), "0B");
  EXPECT_EQ(FormatSizeShort(1023), "1023B");
  EXPECT_EQ(FormatSizeShort(1024), "1.0K");
  EXPECT_EQ(FormatSizeShort(1536), "1.5K");
  EXPECT_EQ(FormatSizeShort(kTi), "1.0T");
  EXPECT_EQ(FormatSizeShort(2048 * kTi), "2048.0T");
}

TEST(FormatSizeTest, LongFormHasTwoDecimalsAndASpacedUnit) {
  EXPECT_EQ(FormatSizeLong(16 * kGi), "16.00 GB");
  EXPECT_EQ(FormatSizeLong(512 * kMi), "512.00 MB");
  EXPECT_EQ(FormatSizeLong(4096), "4.00 KB");
  EXPECT_EQ(FormatSizeLong(100), "100 B");
  EXPECT_EQ(FormatSizeLong(0), "0 B");
  EXPECT_EQ(FormatSizeLong(1536), "1.50 KB");
  EXPECT_EQ(FormatSizeLong(3 * kTi), "3.00 TB");
}

TEST(FormatSizeTest, ShortFormParsesBackToTheSameSize) {
  for (uint64_t bytes : std::vector<uint64_t>{16 * kGi, 512 * kMi, 4 * kKi, 100, kTi, 1536}) {
    Result<uint64_t> back = ParseSize(FormatSizeShort(bytes));
    ASSERT_TRUE(back.ok()) << FormatSizeShort(bytes);
    EXPECT_EQ(*back, bytes);
  }
}

}  // namespace
}  // namespace kvcache
