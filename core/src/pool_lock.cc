#include "pool_lock.h"

#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "sanitizers.h"

namespace kvcache {
namespace {

constexpr int64_t kDefaultTimeoutMs = 5000;

std::atomic<int64_t> g_timeout_ms{-1};  // -1: not read from the environment yet

Status Unusable(std::string why) { return Status::Corruption("pool lock unusable: " + why); }

pthread_mutexattr_t* PoolMutexAttr() {
  static pthread_mutexattr_t* attr = [] {
    static pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0) {
      std::abort();  // both are required of every POSIX system this builds on
    }
    return &a;
  }();
  return attr;
}

// Whether the mutex's type is the one InitPoolMutex gives it. glibc decides how to lock
// from the type word (__data.__kind, fixed at init): garbage there selects other
// algorithms (elided, priority-inheriting, ...) that execute instructions this CPU may
// not have or follow what the other bytes say, and died with SIGILL inside
// pthread_mutex_trylock on the segment fuzzer's input. So the type is compared with
// that of a mutex made with the same attributes before any pthread call touches it.
// Other C libraries: no check (their layouts are not known here).
bool TypeIntact(const pthread_mutex_t* mutex) {
#if defined(__GLIBC__)
  static const int expected = [] {
    pthread_mutex_t reference;
    if (pthread_mutex_init(&reference, PoolMutexAttr()) != 0) std::abort();
    int kind = reference.__data.__kind;
    pthread_mutex_destroy(&reference);
    return kind;
  }();
  // Atomic: another process may be writing garbage over it right now.
  return __atomic_load_n(&mutex->__data.__kind, __ATOMIC_RELAXED) == expected;
#else
  (void)mutex;
  return true;
#endif
}

// Waits for the lock until `deadline` on kLockClock. The monotonic clock, so that a
// change of the wall clock neither cuts a wait short nor stretches it. ThreadSanitizer
// (LLVM 14) does not intercept pthread_mutex_clocklock: a lock taken through it is
// invisible to it, and every access under it is reported as a race and its unlock as
// an unlock of an unlocked mutex. Its builds wait on the wall clock through the
// intercepted pthread_mutex_timedlock instead.
#if defined(KVC_TSAN)
constexpr clockid_t kLockClock = CLOCK_REALTIME;
int TimedLock(pthread_mutex_t* mutex, const timespec& deadline) {
  return pthread_mutex_timedlock(mutex, &deadline);
}
#else
constexpr clockid_t kLockClock = CLOCK_MONOTONIC;
int TimedLock(pthread_mutex_t* mutex, const timespec& deadline) {
  return pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &deadline);
}
#endif

}  // namespace

std::chrono::milliseconds PoolLockTimeout() {
  int64_t ms = g_timeout_ms.load(std::memory_order_relaxed);
  if (ms < 0) {
    ms = kDefaultTimeoutMs;
    if (const char* env = std::getenv("CORTEX_LOCK_TIMEOUT_MS"); env != nullptr) {
      char* end = nullptr;
      long long v = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && v > 0) ms = v;
    }
    g_timeout_ms.store(ms, std::memory_order_relaxed);
  }
  return std::chrono::milliseconds(ms);
}

void SetPoolLockTimeout(std::chrono::milliseconds timeout) {
  g_timeout_ms.store(timeout.count() > 0 ? timeout.count() : 1, std::memory_order_relaxed);
}

Status InitPoolMutex(pthread_mutex_t* mutex) {
  int err = pthread_mutex_init(mutex, PoolMutexAttr());
  return err == 0 ? Status::Ok() : ErrnoToStatus(err, "initialize pool lock");
}

Result<LockOutcome> LockPoolMutex(pthread_mutex_t* mutex) {
  if (!TypeIntact(mutex)) return Unusable("its bytes are not a valid mutex (its type changed)");
  // Uncontended: no clock read.
  int err = pthread_mutex_trylock(mutex);
  if (err == EBUSY) {
    std::chrono::milliseconds limit = PoolLockTimeout();
    timespec deadline;
    clock_gettime(kLockClock, &deadline);
    int64_t ns = deadline.tv_nsec + (limit.count() % 1000) * 1000000;
    deadline.tv_sec += static_cast<time_t>(limit.count() / 1000 + ns / 1000000000);
    deadline.tv_nsec = static_cast<long>(ns % 1000000000);
    err = TimedLock(mutex, deadline);
    if (err == ETIMEDOUT) {
      return Status::Busy("pool lock unusable: not acquired within " +
                          std::to_string(limit.count()) +
                          " ms (a process is stuck holding it, or its bytes are garbage)");
    }
  }
  if (err == 0) return LockOutcome::kAcquired;
  if (err == EOWNERDEAD) return LockOutcome::kOwnerDied;
  if (err == ENOTRECOVERABLE) return Unusable("unrecoverable (a process died holding it)");
  if (err == EINVAL) return Unusable("its bytes are not a valid mutex");
  return Unusable(ErrnoToStatus(err, "lock").message());
}

void MarkConsistent(pthread_mutex_t* mutex) {
  if (TypeIntact(mutex)) pthread_mutex_consistent(mutex);
}

void UnlockPoolMutex(pthread_mutex_t* mutex) {
  // Fails only when someone overwrote the lock bytes while we held them: nothing to
  // undo here, and the next LockPoolMutex reports the lock as unusable. A garbled type
  // is not handed to pthread at all (see TypeIntact).
  if (TypeIntact(mutex)) (void)pthread_mutex_unlock(mutex);
}

}  // namespace kvcache
