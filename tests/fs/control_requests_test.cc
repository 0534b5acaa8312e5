// Control-file requests without a mount: who may name a snapshot path.
#include <unistd.h>

#include <cerrno>

#include "control_files.h"
#include "support/test_env.h"

namespace kvcache::fs {
namespace {

class ControlRequestsTest : public testing::IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    CreatePool("p", 8 << 20);
    ASSERT_TRUE(manager().Put("p", 1, testing::Pattern(1, 100), 1).ok());
  }
};

// The daemon reads and writes snapshot files with its own rights: only root or its own
// user may choose one; others get the pool's own snapshot or nothing.
TEST_F(ControlRequestsTest, OnlyTrustedWritersNameASnapshotPath) {
  ControlFiles controls(manager());
  testing::TempDir dir;
  std::string path = dir.Join("x.cache");
  for (PoolFile file : {PoolFile::kPersist, PoolFile::kRestore}) {
    EXPECT_EQ(controls.Run("p", file, path + "\n", /*trusted=*/false), EINVAL);
    EXPECT_NE(controls.LastResult("p", file).find("empty line"), std::string::npos);
    EXPECT_EQ(controls.Run("p", file, "other.cache\n", /*trusted=*/false), EINVAL);
  }
  EXPECT_NE(access(path.c_str(), F_OK), 0);
  EXPECT_EQ(controls.Run("p", PoolFile::kPersist, "\n", /*trusted=*/false), 0);
  EXPECT_EQ(access(manager().DefaultSnapshotPath("p").c_str(), F_OK), 0);
  EXPECT_EQ(controls.Run("p", PoolFile::kPersist, path + "\n", /*trusted=*/true), 0);
  EXPECT_EQ(access(path.c_str(), F_OK), 0);
  EXPECT_EQ(controls.Run("p", PoolFile::kEvict, "100\n", /*trusted=*/false), 0);
  EXPECT_EQ(manager().Entries("p")->size(), 0u);
}

}  // namespace
}  // namespace kvcache::fs
