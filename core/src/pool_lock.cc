#include "pool_lock.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace kvcache {

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
  int err = pthread_mutex_lock(mutex);
  if (err == 0) return LockOutcome::kAcquired;
  if (err == EOWNERDEAD) return LockOutcome::kOwnerDied;
  if (err == ENOTRECOVERABLE) {
    return Status::Corruption("pool lock is unrecoverable (a process died holding it)");
  }
  return ErrnoToStatus(err, "lock pool");
}

void MarkConsistent(pthread_mutex_t* mutex) { pthread_mutex_consistent(mutex); }

void UnlockPoolMutex(pthread_mutex_t* mutex) {
  int err = pthread_mutex_unlock(mutex);
  if (err != 0) {
    std::fprintf(stderr, "kvcache: unlock of pool lock failed (%d)\n", err);
    std::abort();
  }
}

}  // namespace kvcache
