#include "pool_lock.h"

#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace kvcache {
namespace {

constexpr int64_t kDefaultTimeoutMs = 5000;

std::atomic<int64_t> g_timeout_ms{-1};  // -1: not read from the environment yet

Status Unusable(std::string why) { return Status::Corruption("pool lock unusable: " + why); }

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
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  int err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (err == 0) err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (err == 0) err = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  return err == 0 ? Status::Ok() : ErrnoToStatus(err, "initialize pool lock");
}

Result<LockOutcome> LockPoolMutex(pthread_mutex_t* mutex) {
  // Uncontended: no clock read.
  int err = pthread_mutex_trylock(mutex);
  if (err == EBUSY) {
    std::chrono::milliseconds limit = PoolLockTimeout();
    timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int64_t ns = deadline.tv_nsec + (limit.count() % 1000) * 1000000;
    deadline.tv_sec += static_cast<time_t>(limit.count() / 1000 + ns / 1000000000);
    deadline.tv_nsec = static_cast<long>(ns % 1000000000);
    err = pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &deadline);
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

void MarkConsistent(pthread_mutex_t* mutex) { pthread_mutex_consistent(mutex); }

void UnlockPoolMutex(pthread_mutex_t* mutex) {
  // Fails only when someone overwrote the lock bytes while we held them: nothing to
  // undo here, and the next LockPoolMutex reports the lock as unusable.
  (void)pthread_mutex_unlock(mutex);
}

}  // namespace kvcache
