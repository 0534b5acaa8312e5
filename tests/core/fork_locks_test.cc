// A process may fork() at any moment, also while its other threads are inside a Manager
// or a catalog call (engines fork workers while a remote tier records its counts into
// the catalog every second). The child must find every Manager lock free and the
// catalog usable, through the inherited Manager and through new ones. Real forks, real
// processes; a child that does not finish in time is killed and counted as hung.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "sanitizers.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Pattern;

// The exit code of `pid`, or -1 if it has not exited by `deadline` (it is then killed).
int WaitOrKill(pid_t pid, Clock::time_point deadline) {
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (Clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

class ForkLocksTest : public testing::IsolatedTest {
 protected:
  void SetUp() override {
#if defined(KVC_TSAN)
    GTEST_SKIP() << "ThreadSanitizer does not support a child of a threaded fork going on";
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
    // clang 14's ASan allocator takes no lock around fork(): a child forked while
    // another thread allocates waits forever in malloc (LLVM added the fork handler in
    // version 18), whatever the code under test does.
    GTEST_SKIP() << "the ASan runtime of this compiler is not fork-safe for threaded forks";
#endif
#endif
    IsolatedTest::SetUp();
  }

  // Forks `children` times while `busy` runs over and over on another thread; each child
  // runs `child` (its return value is the exit code). Expects every child to exit 0
  // within a few seconds.
  template <typename Busy, typename Child>
  void ForkWhileBusy(int children, Busy busy, Child child) {
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> rounds{0};
    std::thread worker([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        busy();
        rounds.fetch_add(1, std::memory_order_relaxed);
      }
    });
    while (rounds.load() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    int hung = 0, failed = 0;
    for (int i = 0; i < children; ++i) {
      pid_t pid = fork();
      if (pid == 0) _exit(child());
      int code = WaitOrKill(pid, Clock::now() + std::chrono::seconds(10));
      if (code == -1) ++hung;
      if (code > 0) ++failed;
      if (hung > 0) break;  // one is proof enough; each costs the whole wait
    }
    stop = true;
    worker.join();
    EXPECT_EQ(hung, 0) << "children forked while another thread used the Manager hung";
    EXPECT_EQ(failed, 0);
  }
};

TEST_F(ForkLocksTest, AChildForkedWhileTheCatalogIsWrittenUsesItsManager) {
  CreatePool("p", 1 << 20);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());
  ForkWhileBusy(
      40,
      [&] {
        (void)manager().RecordStats("p");  // a catalog write
        (void)manager().ListPools();       // a catalog read
      },
      [&] {
        if (!manager().ListPools().ok()) return 1;
        if (!manager().RecordStats("p").ok()) return 2;
        if (!manager().Put("p", 100 + getpid() % 1000, Pattern(2, 4096), 1).ok()) return 3;
        return 0;
      });
}

TEST_F(ForkLocksTest, AChildForkedWhilePoolsOpenAndCloseMakesItsOwnManagers) {
  CreatePool("p", 1 << 20);
  ForkWhileBusy(
      40,
      [&] {
        Manager other(options());  // opens and closes a catalog and a pool each time
        (void)other.Stats("p");
      },
      [&] {
        Manager mine(options());
        if (!mine.ListPools().ok()) return 1;
        if (!mine.Put("p", 7, Pattern(7, 4096), 1).ok()) return 2;
        return 0;
      });
}

TEST_F(ForkLocksTest, AChildForkedWhileACatalogIsOpenedOpensItsOwn) {
  const std::string path = options().home + "/fork.db";
  ASSERT_TRUE(Catalog::Open(path).ok());
  ForkWhileBusy(
      40,
      [&] {
        auto cat = Catalog::Open(path);
        if (cat.ok()) (void)(*cat)->ListPools();
      },
      [&] {
        auto cat = Catalog::Open(path);
        return cat.ok() && (*cat)->ListPools().ok() ? 0 : 1;
      });
}

}  // namespace
}  // namespace kvcache
