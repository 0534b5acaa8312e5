#include "periodic_task.h"

namespace kvcache::fs {

void PeriodicTask::Start(std::function<void()> fn, std::chrono::milliseconds period) {
  fn_ = std::move(fn);
  period_ = period;
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void PeriodicTask::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PeriodicTask::Run() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, period_, [this] { return stop_; })) {
    lock.unlock();
    fn_();
    lock.lock();
  }
}

}  // namespace kvcache::fs
