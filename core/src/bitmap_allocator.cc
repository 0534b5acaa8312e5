#include "bitmap_allocator.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace kvcache {
namespace {

// Bits [lo, hi) of a word, 0 <= lo < hi <= 64.
uint64_t Mask(unsigned lo, unsigned hi) {
  uint64_t upper = hi == 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1;
  return upper & ~((uint64_t{1} << lo) - 1);
}

// Calls fn(word_index, mask) for the words covering blocks [first, first + count).
template <typename Fn>
void ForEachWord(uint64_t first, uint64_t count, Fn fn) {
  uint64_t end = first + count;
  while (first < end) {
    uint64_t w = first >> 6;
    unsigned lo = static_cast<unsigned>(first & 63);
    unsigned hi = static_cast<unsigned>(std::min<uint64_t>(64, end - (w << 6)));
    fn(w, Mask(lo, hi));
    first = (w + 1) << 6;
  }
}

}  // namespace

void BitmapAllocator::Reset() {
  uint64_t words = word_count();
  std::memset(words_, 0, words * sizeof(uint64_t));
  if (unsigned tail = block_count_ & 63; tail != 0) words_[words - 1] = Mask(tail, 64);
}

uint64_t BitmapAllocator::FindRun(uint64_t count, uint64_t begin, uint64_t end) const {
  uint64_t run_start = 0;
  uint64_t run_len = 0;
  uint64_t pos = begin;
  while (pos < end) {
    uint64_t w = words_[pos >> 6] >> (pos & 63);
    uint64_t avail = 64 - (pos & 63);
    uint64_t zeros = w == 0 ? avail : static_cast<uint64_t>(std::countr_zero(w));
    if (zeros > 0) {
      if (run_len == 0) run_start = pos;
      run_len += zeros;
      pos += zeros;
      if (run_len >= count) return run_start + count <= end ? run_start : kNone;
      if (zeros == avail) continue;
    }
    // Skip the allocated bits that follow.
    uint64_t ones = static_cast<uint64_t>(std::countr_one(words_[pos >> 6] >> (pos & 63)));
    ones = std::min<uint64_t>(ones, 64 - (pos & 63));
    pos += ones;
    run_len = 0;
  }
  return kNone;
}

uint64_t BitmapAllocator::Allocate(uint64_t count, uint64_t hint) {
  if (count == 0 || count > block_count_) return kNone;
  if (hint >= block_count_) hint = 0;
  uint64_t first = FindRun(count, hint, block_count_);
  if (first == kNone && hint != 0) first = FindRun(count, 0, std::min(block_count_, hint + count));
  if (first != kNone) Mark(first, count);
  return first;
}

void BitmapAllocator::Free(uint64_t first, uint64_t count) {
  ForEachWord(first, count, [&](uint64_t w, uint64_t m) { words_[w] &= ~m; });
}

void BitmapAllocator::Mark(uint64_t first, uint64_t count) {
  ForEachWord(first, count, [&](uint64_t w, uint64_t m) { words_[w] |= m; });
}

bool BitmapAllocator::AllSet(uint64_t first, uint64_t count) const {
  bool all = true;
  ForEachWord(first, count, [&](uint64_t w, uint64_t m) { all &= (words_[w] & m) == m; });
  return all;
}

bool BitmapAllocator::AllClear(uint64_t first, uint64_t count) const {
  bool clear = true;
  ForEachWord(first, count, [&](uint64_t w, uint64_t m) { clear &= (words_[w] & m) == 0; });
  return clear;
}

uint64_t BitmapAllocator::CountAllocated() const {
  uint64_t words = word_count();
  uint64_t n = 0;
  for (uint64_t i = 0; i < words; ++i) n += static_cast<uint64_t>(std::popcount(words_[i]));
  if (unsigned tail = block_count_ & 63; tail != 0) n -= 64 - tail;
  return n;
}

}  // namespace kvcache
