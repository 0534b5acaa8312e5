// Allocation of contiguous runs of blocks over a bitmap that lives in the pool
// segment (one bit per block, 1 = allocated), so every process allocates from one
// map. Scans a 64-bit word at a time and jumps over runs with count-zero/one.
//
// Not synchronized: the caller holds the pool lock.
#pragma once

#include <cstdint>

namespace kvcache {

class BitmapAllocator {
 public:
  static constexpr uint64_t kNone = ~uint64_t{0};

  // `words` covers at least ceil(block_count / 64) words.
  BitmapAllocator(uint64_t* words, uint64_t block_count)
      : words_(words), block_count_(block_count) {}

  // Marks every block free and the padding bits past block_count as allocated.
  void Reset();
  // First block of a free run of `count` blocks, searched from `hint` then from 0;
  // kNone if there is none. Marks the run allocated. REQUIRES: count > 0.
  uint64_t Allocate(uint64_t count, uint64_t hint);
  // REQUIRES: the run is allocated.
  void Free(uint64_t first, uint64_t count);
  void Mark(uint64_t first, uint64_t count);
  bool IsSet(uint64_t block) const { return (words_[block >> 6] >> (block & 63)) & 1; }
  // True when every block of the run is allocated / free.
  bool AllSet(uint64_t first, uint64_t count) const;
  bool AllClear(uint64_t first, uint64_t count) const;
  // Allocated blocks below block_count.
  uint64_t CountAllocated() const;
  uint64_t word_count() const { return (block_count_ + 63) / 64; }

 private:
  uint64_t FindRun(uint64_t count, uint64_t begin, uint64_t end) const;
  uint64_t* words_;
  uint64_t block_count_;
};

}  // namespace kvcache
