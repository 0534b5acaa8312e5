#include "inode_table.h"

#include <gtest/gtest.h>

#include "staging_buffer.h"

namespace kvcache::fs {
namespace {

Node PoolDir(const std::string& pool) {
  Node n;
  n.kind = NodeKind::kPoolDir;
  n.pool = pool;
  return n;
}

TEST(InodeTableTest, SameNodeSameInodeUntilForgotten) {
  InodeTable t;
  Ino a = t.Acquire(PoolDir("x"));
  EXPECT_EQ(t.Acquire(PoolDir("x")), a);
  EXPECT_NE(t.Acquire(PoolDir("y")), a);
  EXPECT_FALSE(t.Forget(a, 1));
  EXPECT_TRUE(t.Forget(a, 1));
  EXPECT_FALSE(t.Get(a));
  EXPECT_NE(t.Acquire(PoolDir("x")), a) << "numbers are never reused";
}

TEST(InodeTableTest, NewGenerationGetsANewInode) {
  InodeTable t;
  std::optional<Ino> superseded;
  Ino first = t.AcquireSeq("p", 5, 10, &superseded);
  EXPECT_FALSE(superseded);
  EXPECT_EQ(t.AcquireSeq("p", 5, 10, &superseded), first);
  Ino second = t.AcquireSeq("p", 5, 11, &superseded);
  EXPECT_NE(second, first);
  ASSERT_TRUE(superseded);
  EXPECT_EQ(*superseded, first);
  EXPECT_EQ(t.Get(first)->generation, 10u) << "the old inode still serves its open files";
}

TEST(InodeTableTest, PendingInodeBecomesTheEntrysOnPublish) {
  InodeTable t;
  Ino pending = t.CreatePending("p", 3);
  EXPECT_EQ(t.Get(pending)->generation, 0u);
  t.Published(pending, 77);
  std::optional<Ino> superseded;
  EXPECT_EQ(t.AcquireSeq("p", 3, 77, &superseded), pending);
  // Rewriting a published inode does not keep it: its pages hold the old bytes.
  t.Published(pending, 78);
  EXPECT_NE(t.AcquireSeq("p", 3, 78, &superseded), pending);
}

TEST(InodeTableTest, KeepCacheOnlyWhileTheGenerationIsUnchanged) {
  InodeTable t;
  std::optional<Ino> superseded;
  Ino ino = t.AcquireSeq("p", 1, 5, &superseded);
  EXPECT_FALSE(t.NoteOpen(ino, 5));
  EXPECT_TRUE(t.NoteOpen(ino, 5));
  t.Rebound(ino, 6);  // same bytes, new attributes
  EXPECT_TRUE(t.NoteOpen(ino, 6));
  EXPECT_FALSE(t.NoteOpen(ino, 7));
}

TEST(InodeTableTest, DroppedPoolForgetsBindings) {
  InodeTable t;
  std::optional<Ino> superseded;
  Ino ino = t.AcquireSeq("p", 1, 5, &superseded);
  EXPECT_EQ(t.SeqNodes("p").size(), 1u);
  t.DropPool("p");
  EXPECT_TRUE(t.SeqNodes("p").empty());
  EXPECT_NE(t.AcquireSeq("p", 1, 5, &superseded), ino);
}

TEST(StagingBufferTest, WritesAnywhereAndGapsReadAsZeros) {
  StagingBuffer b;
  std::vector<std::byte> x(10, std::byte{7});
  ASSERT_TRUE(b.WriteAt(5, x));
  ASSERT_EQ(b.size(), 15u);
  EXPECT_EQ(b.bytes()[0], std::byte{0});
  EXPECT_EQ(b.bytes()[14], std::byte{7});
  ASSERT_TRUE(b.Resize(3));
  ASSERT_TRUE(b.Resize(8));
  EXPECT_EQ(b.bytes()[5], std::byte{0});
  std::vector<std::byte> big(5 << 20, std::byte{1});
  ASSERT_TRUE(b.WriteAt(0, big));
  EXPECT_EQ(b.size(), big.size());
}

TEST(StagingBufferTest, RecycledBufferStartsClean) {
  { StagingBuffer a; ASSERT_TRUE(a.WriteAt(0, std::vector<std::byte>(100, std::byte{9}))); }
  StagingBuffer b;
  ASSERT_TRUE(b.WriteAt(50, std::vector<std::byte>(1, std::byte{1})));
  EXPECT_EQ(b.bytes()[10], std::byte{0});
}

}  // namespace
}  // namespace kvcache::fs
