// The path helpers that every dirname and basename in core and the daemon goes through.
#include "file_util.h"

#include <gtest/gtest.h>

namespace kvcache {
namespace {

TEST(FileUtilTest, DirNameKeepsWhatComesBeforeTheLastSlash) {
  EXPECT_EQ(DirName("/home/u/.cortex/catalog.db"), "/home/u/.cortex");
  EXPECT_EQ(DirName("a/b"), "a");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(DirName("b"), ".");
  EXPECT_EQ(DirName(""), ".");
}

TEST(FileUtilTest, BaseNameKeepsWhatComesAfterTheLastSlash) {
  EXPECT_EQ(BaseName("/home/u/.cortex/snapshots/p.cache"), "p.cache");
  EXPECT_EQ(BaseName("a/b"), "b");
  EXPECT_EQ(BaseName("b"), "b");
  EXPECT_EQ(BaseName("a/"), "");
  EXPECT_EQ(BaseName(""), "");
}

}  // namespace
}  // namespace kvcache
