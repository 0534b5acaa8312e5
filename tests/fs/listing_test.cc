// Directory listings of a pool: every u64 id lists, once, and listing always ends.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class ListingTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 16 << 20);
  }

  // Names listed under `rel`, reading at most `cap` entries (a listing that never
  // ends fails the test instead of hanging it).
  std::vector<std::string> List(const std::string& rel, size_t cap = 10000) {
    std::vector<std::string> names;
    DIR* dir = opendir(Path(rel).c_str());
    if (dir == nullptr) {
      ADD_FAILURE() << "opendir " << rel << ": errno " << errno;
      return names;
    }
    while (dirent* e = readdir(dir)) {
      names.emplace_back(e->d_name);
      if (names.size() > cap) {
        ADD_FAILURE() << "listing of " << rel << " does not end";
        break;
      }
    }
    closedir(dir);
    return names;
  }
};

TEST_F(ListingTest, IdsNearTheTopOfTheU64RangeListOnce) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  constexpr uint64_t kHalf = uint64_t{1} << 63;
  std::vector<uint64_t> ids = {0, 7, kHalf - 18, kHalf - 17, kHalf - 1, kHalf, kHalf + 1,
                               kMax - 1, kMax};
  for (uint64_t id : ids) ASSERT_TRUE(manager().Put("p", id, Pattern(id, 100), 1).ok()) << id;

  std::vector<std::string> names = List("p");
  std::multiset<std::string> listed(names.begin(), names.end());
  for (uint64_t id : ids) EXPECT_EQ(listed.count(std::to_string(id)), 1u) << id;
  for (const char* fixed : {".", "..", "by-prefix", "chunks", "status", "evict", "restore",
                            "match"}) {
    EXPECT_EQ(listed.count(fixed), 1u) << fixed;
  }
  EXPECT_EQ(names.size(), ids.size() + 2 + 2 + 8);  // dots, by-prefix and chunks, fixed files

  // Each listed id opens and stats as itself.
  struct stat st;
  ASSERT_EQ(stat(Path("p/" + std::to_string(kMax)).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 100);
  EXPECT_EQ(Shell("ls '" + Path("p") + "' | grep -qx " + std::to_string(kMax)), 0);
}

TEST_F(ListingTest, ReadingInSmallPiecesResumesWhereItStopped) {
  // Many entries so the kernel asks for the listing in several pieces.
  constexpr uint64_t kHalf = uint64_t{1} << 63;
  std::set<std::string> want;
  for (uint64_t i = 0; i < 600; ++i) {
    uint64_t id = (i % 2 == 0) ? i : kHalf + i * 1000003;
    ASSERT_TRUE(manager().Put("p", id, Pattern(i, 10), 1).ok());
    want.insert(std::to_string(id));
  }
  std::vector<std::string> names = List("p");
  std::set<std::string> got;
  for (const std::string& n : names) {
    if (!n.empty() && n[0] >= '0' && n[0] <= '9') {
      EXPECT_TRUE(got.insert(n).second) << n;
    }
  }
  EXPECT_EQ(got, want);
}

// Anonymous memory of process `pid` in KiB (RssAnon: heap, not the pools' shared memory).
long RssAnonKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stol(line.substr(8));
  }
  return -1;
}

// The daemon is built with the same sanitizer as this test.
#if defined(__SANITIZE_ADDRESS__)
#define KVC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVC_TEST_ASAN 1
#endif
#endif

TEST_F(ListingTest, LargeListingsGiveTheirMemoryBack) {
#ifdef KVC_TEST_ASAN
  GTEST_SKIP() << "AddressSanitizer's allocator keeps freed memory in its quarantine on "
                  "purpose, so the daemon's resident memory does not show what glibc's does";
#endif
  constexpr uint64_t kEntries = 50000;
  constexpr uint64_t kFixed = 12;  // dots, by-prefix, chunks and the eight pool files
  CreatePool("big", 256 << 20, Policy::kLru, kEntries);
  std::vector<std::byte> one = Pattern(1, 1);
  for (uint64_t id = 1; id <= kEntries; ++id) {
    ASSERT_TRUE(manager().Put("big", id, one, 1).ok()) << id;
  }
  // The first listing makes the inodes the kernel keeps: memory that stays, rightly.
  // The kernel sends the release of a closed directory after closedir() returns, so
  // the daemon gets a moment to finish each listing.
  ASSERT_EQ(List("big", kEntries + 100).size(), kEntries + kFixed);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long before = RssAnonKb(daemon_->pid());
  ASSERT_GT(before, 0);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(List("big", kEntries + 100).size(), kEntries + kFixed);
  // Ten listings of 50,000 ids used to leave ~107 MB behind in malloc arenas, for good.
  // What a busy machine leaves in thread caches and arenas stays well under 32 MB.
  constexpr long kSlackKb = 32 * 1024;
  long after = 0;
  for (int wait = 0; wait < 20; ++wait) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = RssAnonKb(daemon_->pid());
    if (after - before < kSlackKb) break;
  }
  EXPECT_LT(after - before, kSlackKb) << before << " KiB before, " << after << " KiB after";
}

}  // namespace
}  // namespace kvcache::testing
