// The pool lock: one robust, process-shared pthread mutex in the segment header.
// When its holder dies, the next locker learns it (EOWNERDEAD), repairs the
// metadata, and marks the mutex consistent again.
#pragma once

#include <pthread.h>

#include "kvcache/status.h"

namespace kvcache {

// Initializes a robust, process-shared mutex in place.
Status InitPoolMutex(pthread_mutex_t* mutex);

enum class LockOutcome { kAcquired, kOwnerDied };

// Blocks until the mutex is held. kOwnerDied: the caller holds it, must repair the
// data it guards and then call MarkConsistent. Corruption if it is unrecoverable.
Result<LockOutcome> LockPoolMutex(pthread_mutex_t* mutex);
void MarkConsistent(pthread_mutex_t* mutex);
void UnlockPoolMutex(pthread_mutex_t* mutex);

}  // namespace kvcache
