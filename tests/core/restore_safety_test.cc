// Restore and persist against hostile or unlucky inputs: the file never decides who
// may read the pool, a FIFO never hangs, and a restore that cannot finish changes
// nothing.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvcache/catalog.h"
#include "kvcache/snapshot.h"
#include "snapshot_format.h"  // white-box: snapshots a writer would never make
#include "support/test_env.h"

namespace kvcache {
namespace {

using ::kvcache::testing::IsolatedTest;
using ::kvcache::testing::Pattern;

constexpr uint64_t kMiB = 1 << 20;

// Runs `fn` in a forked child; returns its exit code, or -1 if it had not exited
// within `timeout` (it is then killed): a hang fails the test instead of wedging it.
int RunInChild(const std::function<int()>& fn, std::chrono::seconds timeout) {
  pid_t pid = fork();
  if (pid == 0) _exit(fn());
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

mode_t SegmentMode(const std::string& shm_name) {
  struct stat st {};
  if (stat(("/dev/shm/" + shm_name).c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class RestoreSafetyTest : public IsolatedTest {
 protected:
  // Ids and generations: any change to the pool changes these.
  std::vector<std::pair<uint64_t, uint64_t>> Fingerprint(const std::string& pool) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    Result<std::vector<EntryInfo>> entries = manager().Entries(pool);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    if (entries.ok()) {
      for (const EntryInfo& e : *entries) out.emplace_back(e.sequence_id, e.generation);
    }
    return out;
  }
  // A well-formed snapshot of `pool`'s config holding one record per metadata string.
  std::string WriteSnapshot(const std::string& pool, const std::vector<std::string>& metadata) {
    std::string path = home_->Join(pool + "-crafted.cache");
    Result<PoolConfig> config = manager().GetConfig(pool);
    EXPECT_TRUE(config.ok());
    std::vector<std::byte> payload = Pattern(9, 1000);
    auto writer = snapshot::SnapshotWriter::Create(path, config->ToJson(), metadata.size(),
                                                   payload.size() * metadata.size(), 1.0);
    EXPECT_TRUE(writer.ok()) << writer.status().ToString();
    uint64_t seq = 100;
    for (const std::string& m : metadata) {
      snapshot::RecordMeta meta{seq++, payload.size(), 1, 0, 1.0, 1.0, 0};
      Status s = (*writer)->AddRecord(meta, {}, m, payload);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    Status s = (*writer)->Finish();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return path;
  }
};

TEST_F(RestoreSafetyTest, SnapshotModeNeverDecidesTheNewPoolsMode) {
  PoolConfig config;
  config.name = "open";
  config.size_bytes = 4 * kMiB;
  config.mode = 0777;
  ASSERT_TRUE(manager().CreatePool(config).ok());
  ASSERT_TRUE(manager().Put("open", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(PersistPool(manager(), "open").ok());
  std::string path = manager().DefaultSnapshotPath("open");
  ASSERT_TRUE(manager().DestroyPool("open").ok());

  // Nothing in the catalog: the default mode, whatever the snapshot says.
  RestoreOptions opts;
  opts.path = path;
  ASSERT_TRUE(RestorePool(manager(), "fresh", opts).ok());
  EXPECT_EQ(SegmentMode(manager().ShmName("fresh")), 0600u);
  Result<PoolConfig> fresh = manager().GetConfig("fresh");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->mode, 0600u);

  // An explicit mode wins.
  opts.mode = 0640;
  ASSERT_TRUE(RestorePool(manager(), "shared", opts).ok());
  EXPECT_EQ(SegmentMode(manager().ShmName("shared")), 0640u);
}

TEST_F(RestoreSafetyTest, RestoreAfterRebootKeepsTheModeTheCatalogRecorded) {
  PoolConfig config;
  config.name = "p";
  config.size_bytes = 4 * kMiB;
  config.mode = 0640;
  ASSERT_TRUE(manager().CreatePool(config).ok());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  // A reboot: the segment is gone, the catalog stays.
  ASSERT_EQ(unlink(("/dev/shm/" + manager().ShmName("p")).c_str()), 0);
  Manager after_reboot(options());
  ASSERT_TRUE(RestorePool(after_reboot, "p").ok());
  EXPECT_EQ(SegmentMode(after_reboot.ShmName("p")), 0640u);
}

TEST_F(RestoreSafetyTest, FifoAsSnapshotPathIsRefusedWithoutBlocking) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  std::string fifo = home_->Join("snap.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  int restore = RunInChild(
      [&] {
        Manager m(options());
        RestoreOptions opts;
        opts.path = fifo;
        Result<RestoreResult> r = RestorePool(m, "p", opts);
        if (r.ok()) return 10;
        return r.status().message().find("not a regular file") != std::string::npos ? 0 : 11;
      },
      std::chrono::seconds(10));
  EXPECT_EQ(restore, 0) << "restore from a FIFO: -1 is a hang, 10 success, 11 wrong message";
  int persist = RunInChild(
      [&] {
        Manager m(options());
        PersistOptions opts;
        opts.path = fifo;
        Result<PersistResult> r = PersistPool(m, "p", opts);
        if (r.ok()) return 10;
        return r.status().message().find("not a regular file") != std::string::npos ? 0 : 11;
      },
      std::chrono::seconds(10));
  EXPECT_EQ(persist, 0) << "persist to a FIFO: -1 is a hang, 10 success, 11 wrong message";
  struct stat st {};
  ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  EXPECT_TRUE(manager().Stat("p", 1).ok());
}

TEST_F(RestoreSafetyTest, RecordsThePoolWouldRefuseStopTheRestoreBeforeAnythingChanges) {
  CreatePool("p", 4 * kMiB);
  for (uint64_t seq = 0; seq < 4; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 1000), 1).ok());
  }
  auto before = Fingerprint("p");
  for (std::string bad : {std::string("{not json"), "\"" + std::string(65 * 1024, 'x') + "\""}) {
    std::string path = WriteSnapshot("p", {"{\"ok\":1}", "{\"ok\":2}", bad});
    for (bool merge : {false, true}) {
      RestoreOptions opts;
      opts.path = path;
      opts.merge = merge;
      Result<RestoreResult> r = RestorePool(manager(), "p", opts);
      ASSERT_FALSE(r.ok()) << "merge=" << merge;
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
      EXPECT_NE(r.status().message().find("entry 102"), std::string::npos)
          << r.status().message();
      EXPECT_EQ(Fingerprint("p"), before) << "merge=" << merge;
    }
  }
}

TEST_F(RestoreSafetyTest, PinnedOldEntriesThatLeaveNoRoomFailTheRestoreUpFront) {
  CreatePool("p", 1 * kMiB);
  for (uint64_t seq = 0; seq < 3; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 300 * 1024), 1).ok());
  }
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  // Readers still hold two of the old entries: their 600 KiB stay in use after a clear.
  Result<EntryView> a = manager().View("p", 0);
  Result<EntryView> b = manager().View("p", 1);
  ASSERT_TRUE(a.ok() && b.ok());
  auto before = Fingerprint("p");
  Result<RestoreResult> r = RestorePool(manager(), "p");
  ASSERT_FALSE(r.ok()) << "restore claimed " << r->entries << " entries; the pool holds "
                       << manager().Entries("p")->size();
  EXPECT_EQ(r.status().code(), Code::kNoSpace) << r.status().ToString();
  EXPECT_NE(r.status().message().find("pinned"), std::string::npos) << r.status().message();
  EXPECT_EQ(Fingerprint("p"), before);
}

TEST_F(RestoreSafetyTest, RestoreAroundPinnedEntriesKeepsEveryRestoredEntry) {
  CreatePool("p", 2 * kMiB);
  for (uint64_t seq = 0; seq < 3; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 300 * 1024), 1).ok());
  }
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  Result<EntryView> pinned = manager().View("p", 0);
  ASSERT_TRUE(pinned.ok());
  Result<RestoreResult> r = RestorePool(manager(), "p");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries, 3u);
  EXPECT_EQ(manager().Entries("p")->size(), 3u);
  for (uint64_t seq = 0; seq < 3; ++seq) {
    EXPECT_TRUE(*manager().Get("p", seq) == Pattern(seq, 300 * 1024)) << seq;
  }
}

TEST_F(RestoreSafetyTest, MergeOfMoreThanThePoolHoldsIsRefusedBeforeAnythingChanges) {
  CreatePool("big", 2 * kMiB);
  for (uint64_t seq = 0; seq < 4; ++seq) {
    ASSERT_TRUE(manager().Put("big", seq, Pattern(seq, 300 * 1024), 1).ok());
  }
  ASSERT_TRUE(PersistPool(manager(), "big").ok());
  CreatePool("small", 1 * kMiB);  // room for three of the four
  ASSERT_TRUE(manager().Put("small", 99, Pattern(99, 100), 1).ok());
  auto before = Fingerprint("small");
  RestoreOptions opts;
  opts.path = manager().DefaultSnapshotPath("big");
  opts.merge = true;
  Result<RestoreResult> r = RestorePool(manager(), "small", opts);
  // Before: the entries evicted each other and restore claimed all four.
  ASSERT_FALSE(r.ok()) << "restore claimed " << r->entries << " entries; the pool holds "
                       << manager().Entries("small")->size();
  EXPECT_EQ(r.status().code(), Code::kNoSpace) << r.status().ToString();
  EXPECT_EQ(Fingerprint("small"), before);
}

TEST_F(RestoreSafetyTest, MergeEvictsOldEntriesNeverTheRestoredOnes) {
  CreatePool("src", 2 * kMiB);
  for (uint64_t seq = 10; seq < 13; ++seq) {
    ASSERT_TRUE(manager().Put("src", seq, Pattern(seq, 300 * 1024), 1).ok());
  }
  ASSERT_TRUE(PersistPool(manager(), "src").ok());
  CreatePool("p", 1 * kMiB);
  for (uint64_t seq = 0; seq < 3; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 300 * 1024), 1).ok());
  }
  RestoreOptions opts;
  opts.path = manager().DefaultSnapshotPath("src");
  opts.merge = true;
  Result<RestoreResult> r = RestorePool(manager(), "p", opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->entries, 3u);
  for (uint64_t seq = 10; seq < 13; ++seq) {
    EXPECT_TRUE(*manager().Get("p", seq) == Pattern(seq, 300 * 1024)) << seq;
  }
}

}  // namespace
}  // namespace kvcache
