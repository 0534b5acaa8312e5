// The bytes of a sequence file being written through the mount, held in the daemon
// until the file is closed and the entry is published whole.
//
// Anonymous memory that grows with mremap (no copy on growth). Buffers up to
// kRecycleMaxBytes are kept for reuse when released, so the next write does not pay
// first-touch page faults again. Not thread-safe: the owner serializes access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>

#include "thread_annotations.h"

namespace kvcache::fs {

class StagingBuffer {
 public:
  static constexpr size_t kRecycleMaxBytes = size_t{1} << 30;

  StagingBuffer() = default;
  ~StagingBuffer();
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;

  // Copies `data` to `offset`, growing the buffer; a gap before `offset` reads as zeros.
  // Returns false when memory cannot be had (ENOMEM).
  [[nodiscard]] bool WriteAt(uint64_t offset, std::span<const std::byte> data);
  // Sets the size; growing fills with zeros.
  [[nodiscard]] bool Resize(uint64_t size);
  std::span<const std::byte> bytes() const { return {base_, size_}; }
  uint64_t size() const { return size_; }

 private:
  bool Reserve(uint64_t capacity);

  std::byte* base_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// Bytes staged per pool, over every file being written into it: charged before a
// staging grows and refunded when it shrinks or is freed, so that however many files
// are written at once, the daemon never stages more than the pool can hold.
// Thread-safe; mu_ is a leaf lock (taken under a WriteState's mu, never the reverse).
class StagingLedger {
 public:
  // Adds `bytes` to the pool's total, unless the total would pass `limit`.
  [[nodiscard]] bool Charge(const std::string& pool, uint64_t bytes, uint64_t limit);
  void Refund(const std::string& pool, uint64_t bytes);

 private:
  Mutex mu_;
  std::map<std::string, uint64_t, std::less<>> staged_ GUARDED_BY(mu_);  // no zero totals
};

}  // namespace kvcache::fs
