// The requests the CLI and the control files share: parsing, and what applying one
// changes.
#include "kvcache/requests.h"

#include <gtest/gtest.h>

#include <string>

#include "kvcache/manager.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

TEST(RequestsTest, ParsePercentAcceptsNumbersPercentSignsAndWhitespace) {
  struct Case {
    const char* text;
    double want;
  } cases[] = {{"25", 25},   {"25%", 25},      {"12.5", 12.5}, {" 50 \n", 50},
               {"100", 100}, {"0.001", 0.001}, {"25 %", 25},   {"\t75%\n", 75}};
  for (const Case& c : cases) {
    Result<double> r = ParsePercent(c.text);
    ASSERT_TRUE(r.ok()) << "'" << c.text << "': " << r.status().ToString();
    EXPECT_DOUBLE_EQ(*r, c.want) << c.text;
  }
}

TEST(RequestsTest, ParsePercentRefusesOutOfRangeAndGarbageNamingTheInput) {
  for (const char* text : {"0", "-5", "100.5", "101", "abc", "", "  ", "%", "25%%", "1e2", "nan",
                           "inf", "25abc", "0x10"}) {
    Result<double> r = ParsePercent(text);
    ASSERT_FALSE(r.ok()) << "'" << text << "' was accepted";
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << text;
    EXPECT_NE(r.status().message().find("'" + std::string(text) + "'"), std::string::npos)
        << r.status().message();
  }
}

class ApplyRequestTest : public testing::IsolatedTest {};

TEST_F(ApplyRequestTest, EvictRequestEvictsItsShareAndSaysHowMany) {
  CreatePool("p", 8 << 20);
  for (uint64_t id = 0; id < 4; ++id) {
    ASSERT_TRUE(manager().Put("p", id, testing::Pattern(id, 100), 1).ok());
  }
  Result<std::string> message = ApplyEvictRequest(manager(), "p", " 50%\n");
  ASSERT_TRUE(message.ok()) << message.status().ToString();
  EXPECT_EQ(*message, "Evicted 2 entries from 'p'");
  EXPECT_EQ(manager().Entries("p")->size(), 2u);
}

TEST_F(ApplyRequestTest, MalformedEvictRequestEvictsNothing) {
  CreatePool("p", 8 << 20);
  for (uint64_t id = 0; id < 4; ++id) {
    ASSERT_TRUE(manager().Put("p", id, testing::Pattern(id, 100), 1).ok());
  }
  for (const char* text : {"", "abc", "0", "150", "25%%"}) {
    Result<std::string> message = ApplyEvictRequest(manager(), "p", text);
    ASSERT_FALSE(message.ok()) << "'" << text << "' was applied";
    EXPECT_EQ(message.status().code(), Code::kInvalidArgument) << text;
  }
  EXPECT_EQ(manager().Entries("p")->size(), 4u);
  Result<std::string> missing = ApplyEvictRequest(manager(), "nosuch", "50");
  EXPECT_FALSE(missing.ok());
}

}  // namespace
}  // namespace kvcache
