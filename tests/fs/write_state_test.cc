// KvcacheFs's write handles driven directly, for request orders a real mount produces
// only under races: the kernel releasing a created file that no close ever flushed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "kvcachefs.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

class WriteStateTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    CreatePool("p", 4 << 20);
    fs_ = std::make_unique<fs::KvcacheFs>(manager(), fs::FsOptions{});
    fuse_entry_param e{};
    ASSERT_EQ(fs_->DoLookup(me_, fs::kRootIno, "p", &e), 0);
    pool_ino_ = e.ino;
  }
  void TearDown() override {
    fs_.reset();
    IsolatedTest::TearDown();
  }
  fs::FileHandle* Create(const std::string& name) {
    fuse_entry_param e{};
    fs::OpenResult open;
    EXPECT_EQ(fs_->DoCreate(me_, pool_ino_, name, O_WRONLY | O_CREAT | O_TRUNC, &e, &open), 0);
    return open.handle;
  }
  int Write(fs::FileHandle* h, const std::vector<std::byte>& data) {
    return fs_->DoWrite(h, 0, data);
  }

  const fs::Caller me_{};  // pid 0: no process to look at
  std::unique_ptr<fs::KvcacheFs> fs_;
  fs::Ino pool_ino_ = 0;
};

// A writer killed while its open(O_CREAT) was in flight: the kernel drops the file it
// never installed with a RELEASE and no FLUSH. Nothing the writer meant to save exists
// yet, so nothing is published (before: an empty entry under the id).
TEST_F(WriteStateTest, ReleaseOfACreateNoCloseFlushedPublishesNothing) {
  fs::FileHandle* h = Create("5");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(fs_->DoRelease(h), 0);
  EXPECT_EQ(manager().Stat("p", 5).status().code(), Code::kNotFound);
}

TEST_F(WriteStateTest, ReleaseOfAReplacementNoCloseFlushedKeepsThePublishedVersion) {
  std::vector<std::byte> old_data = Pattern(1, 5000);
  ASSERT_TRUE(manager().Put("p", 6, old_data, 0).ok());
  fs::FileHandle* h = Create("6");
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(Write(h, Pattern(2, 100)), 0);
  EXPECT_EQ(fs_->DoRelease(h), 0);
  EXPECT_TRUE(*manager().Get("p", 6) == old_data);
}

// The ordinary order: the writer's close flushes (publishes), then the release.
TEST_F(WriteStateTest, CloseByTheWriterPublishesEvenWhenEmpty) {
  fs::FileHandle* h = Create("7");
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(fs_->DoFlush(h, 0), 0);
  EXPECT_EQ(fs_->DoRelease(h), 0);
  Result<EntryInfo> info = manager().Stat("p", 7);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size_bytes, 0u);
}

}  // namespace
}  // namespace kvcache::testing
