#include "periodic_task.h"

namespace kvcache::fs {

void PeriodicTask::Start(std::function<void()> fn, std::chrono::milliseconds period) {
  fn_ = std::move(fn);
  period_ = period;
  {
    MutexLock lock(&mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void PeriodicTask::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

void PeriodicTask::Run() {
  MutexLock lock(&mu_);
  for (;;) {
    const auto deadline = std::chrono::steady_clock::now() + period_;
    // Until stopped, or the period is over (a wake-up before either waits again).
    while (!stop_ && cv_.WaitUntil(&mu_, deadline)) {
    }
    if (stop_) return;
    lock.Unlock();
    fn_();
    lock.Lock();
  }
}

}  // namespace kvcache::fs
