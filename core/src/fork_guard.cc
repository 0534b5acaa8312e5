#include "fork_guard.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <vector>

namespace kvcache {
namespace {

struct Registered {
  void* lock;
  bool shared;  // a SharedMutex, else a Mutex
  ForkRank rank;
};

// The registry's own lock is taken first by a fork and by a Hold, so it is held across
// the fork with the rest.
struct Registry {
  Mutex mu;
  std::vector<Registered> locks GUARDED_BY(mu);  // kept in rank order
};

Registry& TheRegistry() {
  static Registry* registry = new Registry;  // never destroyed: used from destructors
  return *registry;
}

// How many Holds this thread is in: registering inside one must not take the lock again.
thread_local int hold_depth = 0;

// The three handlers take and release a dynamic set of locks across separate calls,
// which the analysis cannot follow (it checks one function at a time); they are the only
// code that does, and they keep the rank order by walking the sorted list.
void Prepare() NO_THREAD_SAFETY_ANALYSIS {
  Registry& r = TheRegistry();
  r.mu.Lock();
  for (const Registered& l : r.locks) {
    if (l.shared) {
      static_cast<SharedMutex*>(l.lock)->Lock();
    } else {
      static_cast<Mutex*>(l.lock)->Lock();
    }
  }
}

void ReleaseInParent() NO_THREAD_SAFETY_ANALYSIS {
  Registry& r = TheRegistry();
  for (auto it = r.locks.rbegin(); it != r.locks.rend(); ++it) {
    if (it->shared) {
      static_cast<SharedMutex*>(it->lock)->Unlock();
    } else {
      static_cast<Mutex*>(it->lock)->Unlock();
    }
  }
  r.mu.Unlock();
}

// The parent's threads that waited on these locks may have left waiter marks in them
// (a reader/writer lock counts its waiting readers in the lock word): the child starts
// each afresh instead of unlocking it.
void ResetInChild() NO_THREAD_SAFETY_ANALYSIS {
  Registry& r = TheRegistry();
  for (const Registered& l : r.locks) {
    if (l.shared) {
      static_cast<SharedMutex*>(l.lock)->ResetInForkChild();
    } else {
      static_cast<Mutex*>(l.lock)->ResetInForkChild();
    }
  }
  r.mu.ResetInForkChild();
}

void InstallHandlers() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(Prepare, ReleaseInParent, ResetInChild); });
}

void Add(Registered entry) NO_THREAD_SAFETY_ANALYSIS {  // registry lock held or taken
  InstallHandlers();
  Registry& r = TheRegistry();
  if (hold_depth == 0) r.mu.Lock();
  auto at = std::upper_bound(r.locks.begin(), r.locks.end(), entry.rank,
                             [](ForkRank rank, const Registered& l) { return rank < l.rank; });
  r.locks.insert(at, entry);
  if (hold_depth == 0) r.mu.Unlock();
}

}  // namespace

ForkGuard::Hold::Hold() NO_THREAD_SAFETY_ANALYSIS {
  InstallHandlers();
  TheRegistry().mu.Lock();
  ++hold_depth;
}

ForkGuard::Hold::~Hold() NO_THREAD_SAFETY_ANALYSIS {
  --hold_depth;
  TheRegistry().mu.Unlock();
}

ForkGuard::ForkGuard(Mutex* mu, ForkRank rank) : lock_(mu) { Add({mu, false, rank}); }

ForkGuard::ForkGuard(SharedMutex* mu, ForkRank rank) : lock_(mu) { Add({mu, true, rank}); }

ForkGuard::~ForkGuard() NO_THREAD_SAFETY_ANALYSIS {  // registry lock held or taken
  Registry& r = TheRegistry();
  if (hold_depth == 0) r.mu.Lock();
  auto it = std::find_if(r.locks.begin(), r.locks.end(),
                         [this](const Registered& l) { return l.lock == lock_; });
  if (it != r.locks.end()) r.locks.erase(it);
  if (hold_depth == 0) r.mu.Unlock();
}

}  // namespace kvcache
