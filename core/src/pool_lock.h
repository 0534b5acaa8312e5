// The pool lock: one robust, process-shared pthread mutex in the segment header.
// When its holder dies, the next locker learns it (EOWNERDEAD), repairs the
// metadata, and marks the mutex consistent again.
//
// Acquisition is bounded: the lock is held for short metadata updates only, so a wait
// longer than PoolLockTimeout() means the lock bytes are garbage or a process is stuck
// holding it, and the caller gets an error instead of hanging with it.
#pragma once

#include <pthread.h>

#include <chrono>

#include "kvcache/status.h"

namespace kvcache {

// Initializes a robust, process-shared mutex in place.
Status InitPoolMutex(pthread_mutex_t* mutex);

enum class LockOutcome { kAcquired, kOwnerDied };

// Waits at most PoolLockTimeout() for the mutex. kOwnerDied: the caller holds it, must
// repair the data it guards and then call MarkConsistent. Busy when the wait timed out,
// Corruption when the mutex is unrecoverable or its bytes are not a mutex; the message
// starts with "pool lock unusable: ".
Result<LockOutcome> LockPoolMutex(pthread_mutex_t* mutex);
void MarkConsistent(pthread_mutex_t* mutex);
void UnlockPoolMutex(pthread_mutex_t* mutex);

// How long LockPoolMutex waits: $CORTEX_LOCK_TIMEOUT_MS (read once), else 5 s.
std::chrono::milliseconds PoolLockTimeout();
// Overrides the timeout for this process (tests).
void SetPoolLockTimeout(std::chrono::milliseconds timeout);

}  // namespace kvcache
