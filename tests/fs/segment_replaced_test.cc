// A pool's segment removed behind the mount's back (`rm`, systemd's RemoveIPC), then
// made anew by a create or a restore: the mount serves the new segment, never the
// unlinked one; and pools destroyed while mounted are unmapped by the daemon.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "kvcache/report.h"
#include "kvcache/snapshot.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class SegmentReplacedTest : public MountedTest {
 protected:
  std::string SegmentPath(const std::string& pool) { return "/dev/shm/" + shm_prefix_ + pool; }
  // True when the daemon has `path` mapped (also once it is unlinked: " (deleted)").
  bool DaemonMaps(const std::string& path) {
    std::ifstream maps("/proc/" + std::to_string(daemon_->pid()) + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.find(path) != std::string::npos) return true;
    }
    return false;
  }
  bool EventuallyUnmapped(const std::string& path) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!DaemonMaps(path)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
};

TEST_F(SegmentReplacedTest, MountFollowsASegmentRemovedAndRestored) {
  CreatePool("p", 16 << 20);
  ASSERT_EQ(WriteFile(Path("p/1"), Pattern(1, 5000)), 0);
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  ASSERT_EQ(WriteFile(Path("p/2"), Pattern(2, 5000)), 0);  // not in the snapshot

  // What RemoveIPC does, then a restore by another process makes a new segment.
  ASSERT_EQ(unlink(SegmentPath("p").c_str()), 0);
  manager_ = std::make_unique<Manager>(options());
  Result<RestoreResult> restored = RestorePool(manager(), "p");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();

  // The mount and the library agree: entry 1 is back, entry 2 went with the old segment.
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/1"), &back), 0);
  EXPECT_TRUE(back == Pattern(1, 5000));
  EXPECT_EQ(ReadFile(Path("p/2"), &back), ENOENT);
  std::string entries;
  ASSERT_EQ(ReadText(Path("p/entries"), &entries), 0);
  EXPECT_EQ(entries, FormatEntries("p", *manager().Entries("p")));

  // Writes through the mount land in the segment everyone else sees.
  ASSERT_EQ(WriteFile(Path("p/3"), Pattern(3, 7000)), 0);
  Result<std::vector<std::byte>> got = manager().Get("p", 3);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == Pattern(3, 7000));
  EXPECT_TRUE(EventuallyUnmapped(SegmentPath("p") + " (deleted)"));
}

TEST_F(SegmentReplacedTest, RemovedSegmentIsRefusedNotServed) {
  CreatePool("p", 16 << 20);
  ASSERT_EQ(WriteFile(Path("p/1"), Pattern(1, 5000)), 0);
  ASSERT_EQ(unlink(SegmentPath("p").c_str()), 0);
  std::vector<std::byte> back;
  EXPECT_NE(ReadFile(Path("p/1"), &back), 0);
  EXPECT_NE(WriteFile(Path("p/2"), Pattern(2, 10)), 0);
  EXPECT_TRUE(EventuallyUnmapped(SegmentPath("p")));
}

TEST_F(SegmentReplacedTest, PoolDestroyedWhileMountedIsUnmapped) {
  CreatePool("gone", 16 << 20);
  ASSERT_EQ(WriteFile(Path("gone/1"), Pattern(1, 5000)), 0);
  ASSERT_TRUE(DaemonMaps(SegmentPath("gone")));
  ASSERT_TRUE(manager().DestroyPool("gone").ok());
  EXPECT_TRUE(EventuallyUnmapped(SegmentPath("gone")));
  struct stat st;
  EXPECT_NE(stat(Path("gone/1").c_str(), &st), 0);
}

}  // namespace
}  // namespace kvcache::testing
