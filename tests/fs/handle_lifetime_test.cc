// The handles KvcacheFs gives out (open files, open directories) are its own until
// released. When the session loop ends with files still open the kernel sends no more
// releases, so destroying the KvcacheFs must free them: an entry left open must not
// stay pinned in a process that keeps running, and nothing may leak (the ASan stage
// runs this under LeakSanitizer).
#include <fcntl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

#include "kvcachefs.h"
#include "kvcachefs_internal.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

using fs::Caller;
using fs::Ino;
using fs::KvcacheFs;
using fs::OpenResult;

class HandleLifetimeTest : public IsolatedTest {};

TEST_F(HandleLifetimeTest, DestroyingTheFsReleasesWhatTheKernelLeftOpen) {
  CreatePool("p", 1 << 20);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 5000), 10).ok());
  {
    KvcacheFs fs(manager(), {});
    Caller caller{getuid(), getgid(), getpid()};
    fuse_entry_param e{};
    ASSERT_EQ(fs.DoLookup(caller, fs::kRootIno, "p", &e), 0);
    Ino pool = e.ino;
    ASSERT_EQ(fs.DoLookup(caller, pool, "1", &e), 0);
    OpenResult reader;
    ASSERT_EQ(fs.DoOpen(caller, e.ino, O_RDONLY, &reader), 0);
    KvcacheFs::DirHandle* dir = nullptr;
    ASSERT_EQ(fs.DoOpendir(pool, &dir), 0);
    OpenResult writer;
    ASSERT_EQ(fs.DoCreate(caller, pool, "2", O_WRONLY | O_CREAT | O_TRUNC, &e, &writer), 0);
    std::vector<std::byte> bytes = Pattern(2, 3000);
    ASSERT_EQ(fs.DoWrite(writer.handle, 0, bytes), 0);

    Result<HealthReport> open = manager().Health("p");
    ASSERT_TRUE(open.ok()) << open.status().ToString();
    ASSERT_EQ(open->pinned_entries, 1u) << "the open entry is pinned";
    // No release follows: the session ended with all three open.
  }
  Result<HealthReport> after = manager().Health("p");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(after->healthy);
  EXPECT_EQ(after->pinned_entries, 0u) << "a handle never released still pins its entry";
  EXPECT_EQ(after->recovered_processes, 0u);
  // The writer never closed its file: nothing of it is published.
  EXPECT_EQ(manager().Stat("p", 2).status().code(), Code::kNotFound);
  // Nothing holds entry 1 any more: removing it frees its bytes at once.
  ASSERT_TRUE(manager().Remove("p", 1).ok());
  Result<PoolStats> stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->used, 0u);
}


// The kernel sends a file's release after close() has returned, so an engine's atomic
// save (write a temp file, close, rename onto the id) has the release and the rename
// arrive together, on two daemon threads. Whichever comes first, the temp file's
// staging goes once both are done: none of its bytes stay counted against the pool,
// so save after save of more than half the pool keeps fitting.
TEST_F(HandleLifetimeTest, ATempFileReleasedWhileRenamedLeavesNothingStaged) {
  constexpr uint64_t kPool = 1 << 20;
  CreatePool("p", kPool);
  KvcacheFs fs(manager(), {});
  Caller caller{getuid(), getgid(), getpid()};
  fuse_entry_param e{};
  ASSERT_EQ(fs.DoLookup(caller, fs::kRootIno, "p", &e), 0);
  const Ino pool = e.ino;
  const std::vector<std::byte> bytes = Pattern(7, kPool * 6 / 10);
  for (int round = 0; round < 300; ++round) {
    OpenResult writer;
    ASSERT_EQ(fs.DoCreate(caller, pool, ".save.tmp", O_WRONLY | O_CREAT | O_TRUNC, &e, &writer),
              0) << "round " << round;
    ASSERT_EQ(fs.DoWrite(writer.handle, 0, bytes), 0)
        << "round " << round << ": an earlier save's staging is still counted";
    ASSERT_EQ(fs.DoFlush(writer.handle, getpid()), 0);
    std::atomic<int> ready{0};
    int renamed = -1;
    std::thread release([&] {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      fs.DoRelease(writer.handle);
    });
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    renamed = fs.DoRename(pool, ".save.tmp", pool, "1", 0);
    release.join();
    ASSERT_EQ(renamed, 0) << "round " << round;
    ASSERT_TRUE(manager().Remove("p", 1).ok()) << "round " << round;
  }
}

}  // namespace
}  // namespace kvcache::testing
