// Clang thread-safety annotations and the annotated mutexes the in-process locks use.
//
// Clang's -Wthread-safety checks at compile time that a field marked GUARDED_BY(mu_) is
// only touched with mu_ held, that a function marked REQUIRES(mu_) is only called with
// it held, and that locks are released on every path. The build turns these warnings
// into errors under clang (CMakeLists.txt); other compilers see empty macros and the
// classes below are plain wrappers of the standard ones.
//
// Internal to kvcachefs: never included from a public header, so the macro names
// cannot clash with an embedder's.
//
//   class Cache {
//     Mutex mu_;  // lock order: after Manager::Impl::mu
//     std::map<int, int> map_ GUARDED_BY(mu_);
//     void Touch(int k) REQUIRES(mu_);
//   };
//   { MutexLock lock(&mu_); Touch(1); }
//
// std::mutex itself is not annotated in libstdc++, so locks use Mutex/MutexLock (and
// SharedMutex with ReaderLock/WriterLock) from here instead.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <shared_mutex>

#if defined(__clang__)
#define KVC_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define KVC_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) KVC_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY KVC_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) KVC_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) KVC_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) KVC_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) KVC_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) KVC_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) KVC_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) KVC_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) KVC_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) KVC_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) KVC_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) KVC_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) KVC_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) KVC_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) KVC_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) KVC_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS KVC_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace kvcache {

// A std::mutex the analysis knows about. Deliberately not BasicLockable (no
// lock()/unlock()): std::lock_guard over it would hide the lock from the analysis.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds the lock (no run-time check).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}
  // For a fork's child, whose only thread holds the lock: makes it a fresh, free lock.
  // Unlocked first, so that a sanitizer tracking the lock sees it free (the constructor
  // initialises it statically, unseen), then made anew, since the parent's waiters may
  // have left marks in it that a later lock would trip on.
  void ResetInForkChild() RELEASE() {
    mu_.unlock();
    new (&mu_) std::mutex();
  }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for a scope; Unlock/Lock let a loop drop it around a blocking call.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() {
    if (held_) mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void Unlock() RELEASE() {
    mu_->Unlock();
    held_ = false;
  }
  void Lock() ACQUIRE() {
    mu_->Lock();
    held_ = true;
  }

 private:
  Mutex* const mu_;
  bool held_ = true;
};

// A condition variable over a Mutex the caller holds.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Atomically releases *mu and waits for a signal or `deadline`, then retakes *mu.
  // Returns false on timeout. May wake spuriously: callers loop on their condition.
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, const std::chrono::time_point<Clock, Duration>& deadline)
      REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    std::cv_status s = cv_.wait_until(lock, deadline);
    lock.release();  // still held; the caller's MutexLock owns it
    return s == std::cv_status::no_timeout;
  }
  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// A reader/writer lock the analysis knows about.
class CAPABILITY("shared mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  void LockShared() ACQUIRE_SHARED() { mu_.lock_shared(); }
  void UnlockShared() RELEASE_SHARED() { mu_.unlock_shared(); }
  // As Mutex::ResetInForkChild, for a lock the child holds exclusively.
  void ResetInForkChild() RELEASE() {
    mu_.unlock();
    new (&mu_) std::shared_mutex();
  }

 private:
  std::shared_mutex mu_;
};

class SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~WriterLock() RELEASE() { mu_->Unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex* const mu_;
};

class SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex* mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_->LockShared(); }
  ~ReaderLock() RELEASE() { mu_->UnlockShared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex* const mu_;
};

}  // namespace kvcache
