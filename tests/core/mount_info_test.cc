#include "mount_info.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "support/test_env.h"

namespace kvcache {
namespace {

TEST(MountInfoTest, ParsesALineWithoutOptionalFields) {
  std::optional<MountInfo> m = ParseMountInfoLine(
      "62 24 0:53 / /tmp/kvc/mnt rw,nosuid,nodev,relatime - fuse.kvcachefs kvcachefs "
      "rw,user_id=1000,group_id=1000");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->device, "0:53");
  EXPECT_EQ(m->mount_point, "/tmp/kvc/mnt");
  EXPECT_EQ(m->fstype, "fuse.kvcachefs");
  EXPECT_EQ(m->source, "kvcachefs");
}

TEST(MountInfoTest, SkipsOptionalFieldsUpToTheSeparator) {
  std::optional<MountInfo> m = ParseMountInfoLine(
      "36 35 98:0 /mnt1 /mnt2 rw,noatime shared:1 master:2 propagate_from:3 unbindable - "
      "ext3 /dev/root rw,errors=continue");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->device, "98:0");
  EXPECT_EQ(m->mount_point, "/mnt2");
  EXPECT_EQ(m->fstype, "ext3");
  EXPECT_EQ(m->source, "/dev/root");
}

TEST(MountInfoTest, UnescapesOctalInTheMountPointAndSource) {
  std::optional<MountInfo> m = ParseMountInfoLine(
      "70 24 0:60 / /tmp/a\\040b\\011c\\134d\\012e rw - fuse.kvcachefs my\\040source rw");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->mount_point, "/tmp/a b\tc\\d\ne");
  EXPECT_EQ(m->source, "my source");
  // An escape at the very end of the field.
  EXPECT_EQ(ParseMountInfoLine("1 2 0:1 / /x\\040 rw - tmpfs t rw")->mount_point, "/x ");
}

TEST(MountInfoTest, KeepsBackslashesThatAreNotOctalEscapes) {
  EXPECT_EQ(UnescapeMountField("a\\08b"), "a\\08b");   // 8 is not octal
  EXPECT_EQ(UnescapeMountField("a\\04"), "a\\04");     // too short
  EXPECT_EQ(UnescapeMountField("\\\\040"), "\\ ");     // a backslash, then an escape
  EXPECT_EQ(UnescapeMountField(""), "");
}

TEST(MountInfoTest, RefusesLinesMissingFields) {
  EXPECT_FALSE(ParseMountInfoLine("").has_value());
  EXPECT_FALSE(ParseMountInfoLine("36 35 98:0 /mnt1 /mnt2").has_value());
  // No "-" separator.
  EXPECT_FALSE(ParseMountInfoLine("36 35 98:0 /mnt1 /mnt2 rw ext3 /dev/root rw").has_value());
  // Nothing after the separator but the type.
  EXPECT_FALSE(ParseMountInfoLine("36 35 98:0 /mnt1 /mnt2 rw - ext3").has_value());
  // A "-" among the fixed fields is not the separator.
  EXPECT_FALSE(ParseMountInfoLine("36 35 98:0 / - rw").has_value());
}

TEST(MountInfoTest, ReadsAFileInOrderSkippingBadLines) {
  testing::TempDir dir;
  std::string path = dir.Join("mountinfo");
  {
    std::ofstream out(path);
    out << "1 0 0:1 / / rw - rootfs rootfs rw\n"
        << "garbage\n"
        << "2 1 0:2 / /m rw shared:5 - tmpfs one rw\n"
        << "3 2 0:3 / /m rw - fuse.kvcachefs kvcachefs rw\n";
  }
  std::vector<MountInfo> mounts = ReadMountInfo(path);
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0].mount_point, "/");
  EXPECT_EQ(mounts[1].source, "one");
  // Two mounts at /m: the topmost is the last.
  EXPECT_EQ(mounts[2].mount_point, "/m");
  EXPECT_EQ(mounts[2].fstype, "fuse.kvcachefs");
  EXPECT_TRUE(ReadMountInfo(dir.Join("missing")).empty());
}

TEST(MountInfoTest, ThisProcessSeesItsRoot) {
  bool root = false;
  for (const MountInfo& m : ReadMountInfo()) root |= m.mount_point == "/";
  EXPECT_TRUE(root);
}

}  // namespace
}  // namespace kvcache
