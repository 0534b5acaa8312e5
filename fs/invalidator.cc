#include "invalidator.h"

#include <fuse_lowlevel.h>

namespace kvcache::fs {

void Invalidator::Start(fuse_session* session, PeriodicFn periodic,
                        std::chrono::milliseconds period) {
  session_ = session;
  periodic_ = std::move(periodic);
  period_ = period;
  {
    std::lock_guard lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void Invalidator::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Invalidator::InvalidateInode(uint64_t ino) {
  {
    std::lock_guard lock(mu_);
    if (stop_ || !thread_.joinable()) return;
    queue_.push_back(Item{ino, {}});
  }
  cv_.notify_one();
}

void Invalidator::InvalidateEntry(uint64_t parent, std::string name) {
  {
    std::lock_guard lock(mu_);
    if (stop_ || !thread_.joinable()) return;
    queue_.push_back(Item{parent, std::move(name)});
  }
  cv_.notify_one();
}

void Invalidator::Run() {
  auto next_periodic = std::chrono::steady_clock::now() + period_;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_until(lock, next_periodic, [this] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    while (!queue_.empty() && !stop_) {
      Item item = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      // Errors (ENOENT: the kernel no longer knows the inode or name) are expected.
      if (item.name.empty()) {
        fuse_lowlevel_notify_inval_inode(session_, item.ino, 0, 0);
      } else {
        fuse_lowlevel_notify_inval_entry(session_, item.ino, item.name.c_str(),
                                         item.name.size());
      }
      lock.lock();
    }
    if (std::chrono::steady_clock::now() >= next_periodic) {
      lock.unlock();
      if (periodic_) periodic_();
      lock.lock();
      next_periodic = std::chrono::steady_clock::now() + period_;
    }
  }
}

}  // namespace kvcache::fs
