// ForkGuard: the in-process locks no fork() may copy half-held.
//
// fork() copies one thread. A lock another thread held at that moment stays held in the
// child, by a thread the child does not have, and the child's first use of it waits
// forever. Engines fork workers at any moment (Python's multiprocessing, gunicorn-style
// servers) while a Manager's own threads run (a remote tier records its counts into the
// catalog every second), so the locks a child goes on to use are registered here: a
// pthread_atfork prepare handler takes every registered lock, in rank order, and the
// parent and child handlers release them. SQLite keeps process-wide state of its own (its
// file-lock bookkeeping, allocator statistics): every call into it runs under a
// registered catalog lock, or, for opening and closing a connection, under the guard's
// own lock (ForkGuard::Hold), so no fork copies SQLite in the middle of a call either.
//
// Rule for callers: never register, unregister or take a Hold while holding a registered
// lock, and never take a registered lock while holding one of a later rank. The fork
// waits for every registered lock to be free; these are all short holds (a pointer swap,
// one catalog statement).
#pragma once

#include <cstdint>

#include "thread_annotations.h"

namespace kvcache {

// The order in which a fork takes the registered locks: a lock may only be taken while
// holding locks of earlier ranks.
enum class ForkRank : uint8_t {
  kManagerCatalog,  // Manager::Impl::catalog_mu
  kManagerPools,    // Manager::Impl::mu
  kRemoteHub,       // RemoteHub::mu_
  kCatalog,         // Catalog::Impl::mu (one connection)
  kLeaf,            // process-wide leaf locks (segment registry, creating names, ...)
};

class ForkGuard {
 public:
  // Keeps forks out while alive: for work under no registered lock that a child must
  // not inherit half done (opening and closing a SQLite connection). Not reentrant.
  class Hold {
   public:
    Hold();
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
  };

  // A registration, for the registered lock's lifetime (the lock must outlive it). May
  // be made and dropped inside a Hold of the same thread.
  ForkGuard(Mutex* mu, ForkRank rank);
  ForkGuard(SharedMutex* mu, ForkRank rank);
  ~ForkGuard();
  ForkGuard(const ForkGuard&) = delete;
  ForkGuard& operator=(const ForkGuard&) = delete;


 private:
  void* const lock_;
};

}  // namespace kvcache
