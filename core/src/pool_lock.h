// The pool lock: one robust, process-shared pthread mutex in the segment header.
// When its holder dies, the next locker learns it (EOWNERDEAD), repairs the
// metadata, and marks the mutex consistent again.
//
// Acquisition is bounded: the lock is held for short metadata updates only, so a wait
// longer than PoolLockTimeout() means the lock bytes are garbage or a process is stuck
// holding it, and the caller gets an error instead of hanging with it.
//
// Lock order (with the in-process locks, each of which says where it stands): the pool
// lock comes after the daemon's WriteState and MatchSession locks (a write's room check
// and a match ask the Manager while holding them) and is never taken while a lock of
// the Manager, the catalog, a SegmentFile registry or the daemon's maps is held. Under
// it, only RemoteHub::mu_ and then RemoteTier::mu_ may be taken (an eviction hands a
// copy to the remote tier), each briefly. Never two pool locks at once.
//
// It carries no clang capability annotation: PoolHandle::Locked takes it only when the
// header is sane (a failed acquisition is a Status, which the analysis cannot follow),
// and lock-free readers touch the same shared memory by design, so GUARDED_BY on the
// mapped structures would be false. PoolHandle keeps the rule by name instead: every
// member ending in "Locked" is called with it held.
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
