// Pools shared by real separate processes (tests/core/pool_worker): pools outlive
// their creators, concurrent processes never see torn or foreign bytes, and a process
// killed at any point does not wedge or corrupt the pool.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <chrono>
#include <thread>

#include "clock.h"
#include "kvcache/manager.h"
#include "manager_internals.h"
#include "pool_handle.h"
#include "segment_format.h"
#include "shm_segment.h"
#include "support/child_process.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Child;
using testing::Pattern;

class MultiProcessTest : public testing::IsolatedTest {
 protected:
  std::string Worker() { return testing::BuildDir() + "/tests/core/pool_worker"; }
  void ExpectHealthy(const std::string& pool) {
    auto h = manager().Health(pool);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_TRUE(h->healthy);
    for (const auto& p : h->problems) ADD_FAILURE() << p;
  }
  // Runs `fn` and fails the test if it takes a second or more.
  template <typename Fn>
  void WithinASecond(Fn fn) {
    auto start = std::chrono::steady_clock::now();
    fn();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  }
};

TEST_F(MultiProcessTest, PoolOutlivesTheProcessThatFilledIt) {
  CreatePool("shared", 64 << 20);
  manager_.reset();  // this process holds nothing now
  ASSERT_EQ(testing::Run({Worker(), "put", "shared", "7", "3000000", "99"}), 0);
  ASSERT_EQ(testing::Run({Worker(), "check", "shared", "7", "3000000", "99"}), 0);
  ASSERT_EQ(testing::Run({Worker(), "check", "shared", "7", "3000000", "98"}), 2);
  manager_ = std::make_unique<Manager>(options());
  EXPECT_EQ(*manager().Get("shared", 7), Pattern(99, 3000000));
  EXPECT_EQ(manager().Stats("shared")->hits, 3u);
}

TEST_F(MultiProcessTest, ConcurrentProcessesSeeNoTornBytesAndLoseNothing) {
  CreatePool("stress", 256 << 20);
  std::vector<std::unique_ptr<Child>> workers;
  for (int w = 0; w < 4; ++w) {
    workers.push_back(std::make_unique<Child>(std::vector<std::string>{
        Worker(), "stress", "stress", "3", std::to_string(w), "64"}));
  }
  for (auto& w : workers) {
    EXPECT_EQ(w->Wait(), 0) << w->output();
  }
  ExpectHealthy("stress");
}

TEST_F(MultiProcessTest, LockFreeGetsRaceReplacementsOfAFewIds) {
  // Four ids replaced all the time by both processes: every lock-free get races a
  // replacement that frees and reuses slots and blocks.
  CreatePool("race", 64 << 20);
  Child a({Worker(), "stress", "race", "2", "0", "4"});
  Child b({Worker(), "stress", "race", "2", "1", "4"});
  EXPECT_EQ(a.Wait(), 0) << a.output();
  EXPECT_EQ(b.Wait(), 0) << b.output();
  ExpectHealthy("race");
}

TEST_F(MultiProcessTest, LockFreeSendReadsRaceReplacementsOfAFewIds) {
  // What the remote sender reads without the lock (ReadEach), racing two processes that
  // replace four ids all the time (pool_worker's self-describing payloads) in a pool
  // small enough that freed blocks are soon reused: a read it reports whole (kRead) is
  // one version of that id, never a mix or another id's bytes. The reader copies the
  // header, pauses (a sender preempted mid-copy), then copies the rest.
  CreatePool("send", 4 << 20);
  Child a({Worker(), "stress", "send", "2", "0", "4"});
  Child b({Worker(), "stress", "send", "2", "1", "4"});
  auto handle = ManagerInternals::Open(manager(), "send");
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  uint64_t whole = 0, bad = 0;
  std::vector<std::vector<std::byte>> copies(4);
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1800);
  while (std::chrono::steady_clock::now() < end) {
    std::vector<EntryRef> refs;
    for (uint64_t seq = 0; seq < 4; ++seq) {
      auto info = manager().Stat("send", seq);
      if (info.ok()) refs.push_back({seq, info->generation});
    }
    std::vector<ReadOutcome> outcomes(refs.size());
    (*handle)->ReadEach(
        refs,
        [&](size_t k, const PublishedEntry& e) {
          const size_t head = std::min<size_t>(e.data.size(), 32);
          copies[k].assign(e.data.begin(), e.data.begin() + static_cast<std::ptrdiff_t>(head));
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          copies[k].insert(copies[k].end(), e.data.begin() + static_cast<std::ptrdiff_t>(head),
                           e.data.end());
        },
        outcomes);
    for (size_t k = 0; k < refs.size(); ++k) {
      if (outcomes[k] != ReadOutcome::kRead) continue;
      ++whole;
      const std::vector<std::byte>& got = copies[k];
      uint64_t fields[4] = {};
      std::memcpy(fields, got.data(), std::min(got.size(), sizeof(fields)));
      const bool ok = got.size() >= 32 && fields[0] == refs[k].seq && fields[3] + 32 == got.size() &&
                      std::memcmp(Pattern(fields[2], got.size()).data() + 32, got.data() + 32,
                                  got.size() - 32) == 0;
      if (!ok) ++bad;
    }
  }
  // Their own entries may be evicted in a pool this small, so only data errors (2) fail.
  EXPECT_NE(a.Wait(), 2) << a.output();
  EXPECT_NE(b.Wait(), 2) << b.output();
  EXPECT_EQ(bad, 0u) << "of " << whole << " reads reported whole";
  EXPECT_GT(whole, 100u);
  ExpectHealthy("send");
}

TEST_F(MultiProcessTest, ConcurrentProcessesUnderEvictionPressure) {
  // Too small for the working set: evictions and frees race with reads all along.
  CreatePool("tight", 2 << 20);
  std::vector<std::unique_ptr<Child>> workers;
  for (int w = 0; w < 3; ++w) {
    workers.push_back(std::make_unique<Child>(std::vector<std::string>{
        Worker(), "stress", "tight", "2", std::to_string(w), "200"}));
  }
  // Own entries of a worker may be evicted here, so only data errors (2) fail.
  for (auto& w : workers) EXPECT_NE(w->Wait(), 2) << w->output();
  ExpectHealthy("tight");
}

TEST_F(MultiProcessTest, ProcessKilledHoldingTheLockDoesNotWedgeThePool) {
  CreatePool("lock", 8 << 20);
  ASSERT_TRUE(manager().Put("lock", 1, Pattern(1, 5000), 1).ok());
  Child holder({Worker(), "hold-lock", "lock"});
  ASSERT_TRUE(holder.WaitForLine("ready"));
  holder.Kill(SIGKILL);
  holder.Wait();
  WithinASecond([&] {
    ASSERT_TRUE(manager().Put("lock", 2, Pattern(2, 5000), 1).ok());
    EXPECT_EQ(*manager().Get("lock", 1), Pattern(1, 5000));
  });
  ExpectHealthy("lock");
}

TEST_F(MultiProcessTest, ProcessKilledHoldingPinsReleasesThem) {
  CreatePool("pins", 1 << 20);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(manager().Put("pins", i, Pattern(i, 256 * 1024 - 100), 1).ok());
  }
  Child holder({Worker(), "hold-pins", "pins", "0", "1", "2", "3"});
  ASSERT_TRUE(holder.WaitForLine("ready"));
  EXPECT_EQ(manager().Health("pins")->pinned_entries, 4u);
  EXPECT_EQ(manager().Put("pins", 9, Pattern(9, 4096), 1).code(), Code::kNoSpace);
  holder.Kill(SIGKILL);
  holder.Wait();
  WithinASecond([&] {
    ASSERT_TRUE(manager().Put("pins", 9, Pattern(9, 4096), 1).ok());
  });
  EXPECT_EQ(manager().Health("pins")->pinned_entries, 0u);
  ExpectHealthy("pins");
}

TEST_F(MultiProcessTest, ProcessKilledInsideCommitLeavesTheNewEntry) {
  CreatePool("commit", 1 << 20);
  ASSERT_TRUE(manager().Put("commit", 5, Pattern(1, 5000), 1).ok());
  auto old_view = manager().View("commit", 5);  // the old bytes stay readable through this
  ASSERT_TRUE(old_view.ok());
  // The worker dies after unpublishing the old entry and before linking its new one.
  Child writer({Worker(), "crash-commit", "commit", "5", "6000", "2"});
  ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
  WithinASecond([&] {
    auto got = manager().Get("commit", 5);
    ASSERT_TRUE(got.ok()) << got.status().ToString();  // never neither
    EXPECT_EQ(*got, Pattern(2, 6000));                   // recovery finished the commit
  });
  EXPECT_TRUE(std::equal(old_view->data().begin(), old_view->data().end(),
                         Pattern(1, 5000).begin()));
  EXPECT_EQ(manager().Stats("commit")->entry_count, 1u);
  ExpectHealthy("commit");
  ASSERT_TRUE(old_view->Release().ok());
  EXPECT_EQ(manager().Stats("commit")->used, 8192u);  // the old extent went with its pin
}

// A process in another PID namespace (its own /proc, as in a container sharing
// /dev/shm) is alive to the pool while it runs, and dead once it is killed.
class OtherNamespaceTest : public MultiProcessTest {
 protected:
  std::vector<std::string> InNamespace(std::vector<std::string> argv) {
    std::vector<std::string> out = {"/usr/bin/unshare", "--pid", "--mount-proc", "--kill-child"};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }
  // Every operation that reaps dead processes.
  void Reap(const std::string& pool) {
    ASSERT_TRUE(manager().Stats(pool).ok());
    auto h = manager().Health(pool);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->recovered_processes, 0u);
    ASSERT_TRUE(manager().Attach(pool, getpid()).ok());
    ASSERT_TRUE(manager().Detach(pool, getpid()).ok());
  }
  // Polls `done` for up to 5 s (a killed namespace's process dies asynchronously).
  template <typename Fn>
  bool Eventually(Fn done) {
    for (int i = 0; i < 500; ++i) {
      if (done()) return true;
      usleep(10000);
    }
    return false;
  }
  static constexpr size_t kEntry = 256 * 1024 - 100;  // four fill a 1 MiB pool
};

TEST_F(OtherNamespaceTest, PinsSurviveReapingAndGoWithTheProcess) {
  CreatePool("nspin", 1 << 20);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(manager().Put("nspin", i, Pattern(i, kEntry), 1).ok());
  }
  Child holder(InNamespace({Worker(), "hold-pins", "nspin", "0"}));
  ASSERT_TRUE(holder.WaitForLine("ready"));
  Reap("nspin");
  // A put that needs space evicts around the pin, never through it.
  ASSERT_TRUE(manager().Put("nspin", 9, Pattern(9, 3 * kEntry), 1).ok());
  EXPECT_EQ(manager().Put("nspin", 10, Pattern(10, 4 * kEntry), 1).code(), Code::kNoSpace);
  EXPECT_EQ(*manager().Get("nspin", 0), Pattern(0, kEntry));
  EXPECT_EQ(manager().Health("nspin")->pinned_entries, 1u);
  holder.Kill(SIGKILL);
  holder.Wait();
  EXPECT_TRUE(Eventually([&] { return manager().Health("nspin")->pinned_entries == 0; }));
  EXPECT_TRUE(manager().Put("nspin", 10, Pattern(10, 4 * kEntry - 4096), 1).ok());
  ExpectHealthy("nspin");
}

TEST_F(OtherNamespaceTest, PutInFlightSurvivesReapingAndIsReclaimedWhenKilled) {
  CreatePool("nsput", 1 << 20);
  testing::TempDir dir;
  std::string go = dir.Join("go");
  Child writer(InNamespace({Worker(), "put-when", "nsput", "5", "600000", "9", go}));
  ASSERT_TRUE(writer.WaitForLine("ready"));
  Reap("nsput");
  // The writer's reservation holds 600000 bytes: this put cannot have them.
  EXPECT_EQ(manager().Put("nsput", 6, Pattern(6, 500000), 1).code(), Code::kNoSpace);
  ASSERT_EQ(std::system(("touch " + go).c_str()), 0);
  ASSERT_EQ(writer.Wait(), 0);  // its commit found its reservation intact
  EXPECT_EQ(*manager().Get("nsput", 5), Pattern(9, 600000));

  // And once killed, its reservation goes back.
  ASSERT_TRUE(manager().Remove("nsput", 5).ok());
  Child doomed(InNamespace({Worker(), "put-when", "nsput", "7", "600000", "3", go + "-never"}));
  ASSERT_TRUE(doomed.WaitForLine("ready"));
  EXPECT_EQ(manager().Put("nsput", 6, Pattern(6, 500000), 1).code(), Code::kNoSpace);
  doomed.Kill(SIGKILL);
  doomed.Wait();
  EXPECT_TRUE(Eventually([&] { return manager().Put("nsput", 6, Pattern(6, 500000), 1).ok(); }));
  ExpectHealthy("nsput");
}

TEST_F(MultiProcessTest, ProcessKilledMidPutLeavesNoTrace) {
  CreatePool("half", 1 << 20);
  ASSERT_TRUE(manager().Put("half", 5, Pattern(5, 1000), 1).ok());
  Child writer({Worker(), "half-put", "half", "5", "900000"});
  ASSERT_TRUE(writer.WaitForLine("ready"));
  EXPECT_EQ(*manager().Get("half", 5), Pattern(5, 1000));  // old entry still served
  writer.Kill(SIGKILL);
  writer.Wait();
  WithinASecond([&] {
    // Needs the space the dead writer reserved.
    ASSERT_TRUE(manager().Put("half", 6, Pattern(6, 600000), 1).ok());
  });
  EXPECT_EQ(*manager().Get("half", 5), Pattern(5, 1000));
  auto health = manager().Health("half");
  EXPECT_TRUE(health->healthy);
  EXPECT_EQ(manager().Stats("half")->entry_count, 2u);
}

// The scan for dead processes is rate-limited by a wall-clock time in the header. A
// clock stepped back since the last scan (an NTP or VM clock correction), or a process
// whose clock reads earlier, must not hold the scan off: the dead writer's space still
// goes back before a live entry is evicted.
TEST_F(MultiProcessTest, AClockSteppedBackStillReapsBeforeEvicting) {
  CreatePool("half", 1 << 20);
  ASSERT_TRUE(manager().Put("half", 5, Pattern(5, 1000), 1).ok());
  Child writer({Worker(), "half-put", "half", "5", "900000"});
  ASSERT_TRUE(writer.WaitForLine("ready"));
  writer.Kill(SIGKILL);
  writer.Wait();
  {
    auto seg = MappedSegment::Open("/dev/shm/" + manager().ShmName("half"),
                                   SegmentOwner{geteuid(), 0});
    ASSERT_TRUE(seg.ok()) << seg.status().ToString();
    auto* header = reinterpret_cast<seg::Header*>(seg->base());
    pthread_mutex_lock(&header->lock);
    header->last_reap = NowSeconds() + 3600;  // the last scan, an hour "later"
    pthread_mutex_unlock(&header->lock);
  }
  ASSERT_TRUE(manager().Put("half", 6, Pattern(6, 600000), 1).ok());
  auto five = manager().Get("half", 5);
  ASSERT_TRUE(five.ok()) << "a live entry was evicted while a dead writer held the room: "
                         << five.status().ToString();
  EXPECT_EQ(*five, Pattern(5, 1000));
  EXPECT_EQ(manager().Stats("half")->entry_count, 2u);
}

TEST_F(MultiProcessTest, HealthRecoversDeadWritersAndReportsIt) {
  CreatePool("rec", 1 << 20);
  Child writer({Worker(), "half-put", "rec", "1", "4096"});
  ASSERT_TRUE(writer.WaitForLine("ready"));
  EXPECT_EQ(manager().Stats("rec")->used, 4096u);
  writer.Kill(SIGKILL);
  writer.Wait();
  auto h = manager().Health("rec");
  EXPECT_TRUE(h->healthy);
  EXPECT_EQ(h->recovered_processes, 1u);
  EXPECT_EQ(manager().Stats("rec")->used, 0u);
}

}  // namespace
}  // namespace kvcache
