// Tells the kernel to drop cached names, attributes and pages, from its own thread.
//
// fuse_lowlevel_notify_inval_* may block until the kernel has finished with the
// inode or directory, which can wait on a request a handler is serving: calling it
// inside a handler, or under a lock a handler needs, can deadlock. Handlers only
// queue; this thread makes the calls. It also runs a periodic check (pools that
// disappeared behind the mount's back) supplied by the filesystem.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

struct fuse_session;

namespace kvcache::fs {

class Invalidator {
 public:
  using PeriodicFn = std::function<void()>;

  Invalidator() = default;
  ~Invalidator() { Stop(); }
  Invalidator(const Invalidator&) = delete;
  Invalidator& operator=(const Invalidator&) = delete;

  // Starts the thread. `periodic` runs every `period` (not under any lock of ours).
  void Start(fuse_session* session, PeriodicFn periodic, std::chrono::milliseconds period);
  // Stops and joins; queued work is dropped. Must run before the session is destroyed.
  void Stop();

  // Drops the inode's cached attributes and pages.
  void InvalidateInode(uint64_t ino);
  // Drops the cached name `name` in directory `parent`.
  void InvalidateEntry(uint64_t parent, std::string name);

 private:
  struct Item {
    uint64_t ino = 0;  // parent directory for a name
    std::string name;  // empty: the inode itself
  };
  void Run();

  fuse_session* session_ = nullptr;
  PeriodicFn periodic_;
  std::chrono::milliseconds period_{500};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;  // guarded by mu_
  bool stop_ = false;       // guarded by mu_
  std::thread thread_;
};

}  // namespace kvcache::fs
