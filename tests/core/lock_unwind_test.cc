// The pool lock is never left held by a live thread: recovering it after a holder died
// allocates nothing, and a failure (an exception) in work done under it releases it.
// Allocation failures are injected by replacing the global operator new in this test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <new>

#include "kvcache/manager.h"
#include "pool_handle.h"
#include "support/child_process.h"
#include "support/test_env.h"

namespace {
thread_local bool g_fail_allocations = false;
}  // namespace

// GCC cannot see that these replace the global pair together.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
  if (g_fail_allocations) throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace kvcache {
namespace {

using testing::Child;

class LockUnwindTest : public testing::IsolatedTest {
 protected:
  std::string Worker() { return testing::BuildDir() + "/tests/core/pool_worker"; }
  // Runs a put in a forked child that gives up after 5 s; its exit code.
  int PutFromAnotherProcess(const std::string& pool) {
    pid_t pid = fork();
    if (pid == 0) {
      alarm(5);
      Manager m(options());
      _exit(m.Put(pool, 2, testing::Pattern(2, 100), 1).ok() ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

TEST_F(LockUnwindTest, AllocationFailureWhileRecoveringTheLockDoesNotWedgeThePool) {
  CreatePool("wedge_pool_with_a_long_name", 1 << 20);
  ASSERT_TRUE(manager().Put("wedge_pool_with_a_long_name", 1, testing::Pattern(1, 100), 1).ok());
  Child holder({Worker(), "hold-lock", "wedge_pool_with_a_long_name"});
  ASSERT_TRUE(holder.WaitForLine("ready"));
  holder.Kill(SIGKILL);  // dies holding the lock: the next locker recovers it
  holder.Wait();
  auto pool = PoolHandle::Open("/dev/shm/" + manager().ShmName("wedge_pool_with_a_long_name"),
                               SegmentOwner{geteuid(), 0});
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  bool threw = false;
  g_fail_allocations = true;
  try {
    // Takes the lock (recovering it), then fails to allocate its report (the pool name
    // is too long to be stored without the heap).
    Result<PoolStats> st = (*pool)->Stats();
    (void)st;
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  g_fail_allocations = false;
  EXPECT_TRUE(threw);
  // Whatever failed, the lock is free and the pool intact for everyone else.
  EXPECT_EQ(PutFromAnotherProcess("wedge_pool_with_a_long_name"), 0);
  EXPECT_EQ(*manager().Get("wedge_pool_with_a_long_name", 1), testing::Pattern(1, 100));
  auto h = manager().Health("wedge_pool_with_a_long_name");
  ASSERT_TRUE(h.ok());
  for (const auto& p : h->problems) ADD_FAILURE() << p;
}

}  // namespace
}  // namespace kvcache
