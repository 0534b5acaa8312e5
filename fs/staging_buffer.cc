#include "staging_buffer.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "thread_annotations.h"

namespace kvcache::fs {
namespace {

// One released mapping kept for the next writer; its pages are already faulted in.
struct Recycled {
  Mutex mu;  // a leaf lock
  std::byte* base GUARDED_BY(mu) = nullptr;
  size_t capacity GUARDED_BY(mu) = 0;
};

Recycled& recycled() {
  static Recycled r;
  return r;
}

constexpr size_t kMinCapacity = size_t{1} << 20;

size_t RoundUp(size_t n) {
  size_t cap = kMinCapacity;
  while (cap < n) cap *= 2;
  return cap;
}

}  // namespace

StagingBuffer::~StagingBuffer() {
  if (base_ == nullptr) return;
  if (capacity_ <= kRecycleMaxBytes) {
    Recycled& r = recycled();
    MutexLock lock(&r.mu);
    if (r.capacity < capacity_) {
      std::swap(r.base, base_);
      std::swap(r.capacity, capacity_);
    }
  }
  if (base_ != nullptr) munmap(base_, capacity_);
}

bool StagingBuffer::Reserve(uint64_t capacity) {
  if (capacity <= capacity_) return true;
  if (base_ == nullptr) {
    Recycled& r = recycled();
    MutexLock lock(&r.mu);
    if (r.base != nullptr) {
      base_ = r.base;
      capacity_ = r.capacity;
      r.base = nullptr;
      r.capacity = 0;
    }
  }
  if (capacity <= capacity_) return true;
  size_t want = RoundUp(capacity);
  void* p;
  if (base_ == nullptr) {
    p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  } else {
    p = mremap(base_, capacity_, want, MREMAP_MAYMOVE);
  }
  if (p == MAP_FAILED) return false;
  base_ = static_cast<std::byte*>(p);
  capacity_ = want;
  return true;
}

bool StagingBuffer::WriteAt(uint64_t offset, std::span<const std::byte> data) {
  uint64_t end = offset + data.size();
  if (end < offset || !Reserve(end)) return false;
  // A recycled mapping holds old bytes: a gap must read as zeros.
  if (offset > size_) std::memset(base_ + size_, 0, offset - size_);
  std::memcpy(base_ + offset, data.data(), data.size());
  if (end > size_) size_ = end;
  return true;
}

bool StagingLedger::Charge(const std::string& pool, uint64_t bytes, uint64_t limit) {
  MutexLock lock(&mu_);
  uint64_t& total = staged_[pool];
  if (bytes > limit || total > limit - bytes) {
    if (total == 0) staged_.erase(pool);
    return false;
  }
  total += bytes;
  return true;
}

void StagingLedger::Refund(const std::string& pool, uint64_t bytes) {
  MutexLock lock(&mu_);
  auto it = staged_.find(pool);
  if (it == staged_.end()) return;
  it->second -= std::min(it->second, bytes);
  if (it->second == 0) staged_.erase(it);
}

bool StagingBuffer::Resize(uint64_t size) {
  if (size > size_) {
    if (!Reserve(size)) return false;
    std::memset(base_ + size_, 0, size - size_);
  }
  size_ = size;
  return true;
}

}  // namespace kvcache::fs
