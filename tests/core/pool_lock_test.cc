// A pool whose lock cannot be taken: every operation says so, naming the pool, and
// none waits forever or answers with empty or default values.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "pool_lock.h"
#include "segment_format.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Pattern;
constexpr uint64_t kMiB = 1024 * 1024;

class PoolLockTest : public testing::IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    CreatePool("p", 4 * kMiB);
    PutOptions put;
    put.prefix_tokens = {1, 2, 3, 4};
    ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 5000), 4, put).ok());
  }
  void TearDown() override {
    SetPoolLockTimeout(std::chrono::milliseconds(5000));
    IsolatedTest::TearDown();
  }
  // Overwrites the pool's lock bytes in the segment with `fill`.
  void ScribbleOnLock(const void* fill, size_t n) {
    int fd = open(("/dev/shm/" + manager().ShmName("p")).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    void* map = mmap(nullptr, seg::kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    ASSERT_NE(map, MAP_FAILED);
    std::memcpy(static_cast<char*>(map) + offsetof(seg::Header, lock), fill, n);
    munmap(map, seg::kHeaderSize);
  }
};

// EXPECTs that `status` is an error that names the pool and says why.
void ExpectLockError(const Status& status, const char* what) {
  EXPECT_FALSE(status.ok()) << what;
  EXPECT_NE(status.message().find("pool 'p'"), std::string::npos) << what << ": " << status.ToString();
  EXPECT_NE(status.message().find("pool lock unusable"), std::string::npos)
      << what << ": " << status.ToString();
}

TEST_F(PoolLockTest, GarbageInTheLockIsAnErrorNamingThePoolEverywhere) {
  Result<EntryView> view = manager().Pin("p", 1);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  Result<PutReservation> reservation = manager().Reserve("p", 2, 100, 1);
  ASSERT_TRUE(reservation.ok()) << reservation.status().ToString();

  std::vector<unsigned char> garbage(sizeof(pthread_mutex_t), 0xFF);
  ScribbleOnLock(garbage.data(), garbage.size());

  ExpectLockError(manager().Stats("p").status(), "Stats");
  // The table of every pool keeps its other rows and says what is wrong with this one.
  Result<std::vector<PoolStats>> all = manager().StatsAll();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_NE((*all)[0].error.find("pool lock unusable"), std::string::npos) << (*all)[0].error;
  ExpectLockError(manager().Entries("p").status(), "Entries");
  ExpectLockError(manager().Clear("p").status(), "Clear");
  ExpectLockError(manager().RecordStats("p"), "RecordStats");
  ExpectLockError(manager().Health("p").status(), "Health");
  ExpectLockError(manager().FindByPrefixHash("p", PrefixHash(std::vector<uint32_t>{1, 2, 3, 4})).status(),
                  "FindByPrefixHash");
  // A get of a live entry needs no lock (segment_format.h): it still works. A miss is
  // counted under the lock.
  EXPECT_EQ(*manager().Get("p", 1), Pattern(1, 5000));
  ExpectLockError(manager().Get("p", 99).status(), "Get of a missing id");
  ExpectLockError(manager().Put("p", 3, Pattern(3, 100), 1), "Put");
  ExpectLockError(manager().Stat("p", 1).status(), "Stat");
  ExpectLockError(manager().Remove("p", 1), "Remove");
  ExpectLockError(manager().Evict("p", 50).status(), "Evict");
  ExpectLockError(manager().PinAll("p").status(), "PinAll");
  ExpectLockError(view->Release(), "EntryView::Release");
  ExpectLockError(reservation->Abort(), "PutReservation::Abort");
}

#if defined(__GLIBC__)
// glibc picks the locking algorithm from the mutex's type word: garbage there once
// made pthread_mutex_trylock execute transactional-memory instructions this CPU lacks
// (SIGILL, found by the segment fuzzer). The type is checked before pthread sees it.
TEST_F(PoolLockTest, LockWhoseTypeIsGarbageIsUnusableNotACrash) {
  for (int kind : {0x00230000, 0x100, 0x20, -1}) {
    SCOPED_TRACE(kind);
    int fd = open(("/dev/shm/" + manager().ShmName("p")).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    off_t at = static_cast<off_t>(offsetof(seg::Header, lock) +
                                  offsetof(pthread_mutex_t, __data.__kind));
    int was = 0;
    ASSERT_EQ(pread(fd, &was, sizeof(was), at), static_cast<ssize_t>(sizeof(was)));
    ASSERT_EQ(pwrite(fd, &kind, sizeof(kind), at), static_cast<ssize_t>(sizeof(kind)));
    ExpectLockError(manager().Stats("p").status(), "Stats");
    EXPECT_NE(manager().Stats("p").status().message().find("not a valid mutex"),
              std::string::npos);
    ExpectLockError(manager().Put("p", 2, Pattern(2, 100), 1), "Put");
    ExpectLockError(manager().Health("p").status(), "Health");
    // Restored, the pool works again: nothing was changed meanwhile.
    ASSERT_EQ(pwrite(fd, &was, sizeof(was), at), static_cast<ssize_t>(sizeof(was)));
    close(fd);
    EXPECT_TRUE(manager().Stats("p").ok());
    EXPECT_EQ(*manager().Get("p", 1), Pattern(1, 5000));
  }
}
#endif

TEST_F(PoolLockTest, LockHeldByNoLivingThreadTimesOutInsteadOfHanging) {
  // A robust mutex "held" by a thread id that does not exist: the kernel never marks
  // it dead, so an unbounded lock would wait forever.
  int32_t owner = 0x3FFFFFF0;
  ScribbleOnLock(&owner, sizeof(owner));
  SetPoolLockTimeout(std::chrono::milliseconds(300));
  auto start = std::chrono::steady_clock::now();
  Result<PoolStats> stats = manager().Stats("p");
  auto waited = std::chrono::steady_clock::now() - start;
  ExpectLockError(stats.status(), "Stats");
  EXPECT_EQ(stats.status().code(), Code::kBusy);
  EXPECT_NE(stats.status().message().find("300 ms"), std::string::npos) << stats.status().ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  EXPECT_LT(waited, std::chrono::seconds(3));
  ExpectLockError(manager().Put("p", 2, Pattern(2, 100), 1), "Put");
}

}  // namespace
}  // namespace kvcache
