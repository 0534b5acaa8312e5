// Runs a function now and then on a thread of its own, e.g. the check for pools that
// disappeared behind the mount's back.
//
// Stop() returns as soon as the function in progress (if any) returns: the function
// must never block for long. Nothing here talks to the kernel.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

#include "thread_annotations.h"

namespace kvcache::fs {

class PeriodicTask {
 public:
  PeriodicTask() = default;
  ~PeriodicTask() { Stop(); }
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Starts the thread: `fn` runs every `period`, not under any lock of ours.
  void Start(std::function<void()> fn, std::chrono::milliseconds period);
  // Stops and joins. Safe to call more than once, or without Start.
  void Stop();

 private:
  void Run();

  std::function<void()> fn_;
  std::chrono::milliseconds period_{500};
  Mutex mu_;  // a leaf lock; never held while fn_ runs
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kvcache::fs
