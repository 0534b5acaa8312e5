// The reads of a lock-free get or send (segment_format.h, Slot): they may read bytes
// that a writer is overwriting at that moment, and the caller keeps what it read only
// when the slot's generation is unchanged afterwards. That race is the design, so a
// ThreadSanitizer build is told to ignore these reads (and only these).
#pragma once

#include <cstddef>
#include <cstring>

#include "sanitizers.h"


#ifdef KVC_TSAN
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
#endif

namespace kvcache {

// While one is alive, this thread may read bytes that another process or thread is
// writing (a ThreadSanitizer build ignores this thread's reads meanwhile). Whatever is
// read must be validated by the slot's generation afterwards.
class OptimisticReads {
 public:
#ifdef KVC_TSAN
  OptimisticReads() { AnnotateIgnoreReadsBegin(__FILE__, __LINE__); }
  ~OptimisticReads() { AnnotateIgnoreReadsEnd(__FILE__, __LINE__); }
#else
  // User-provided, so that a guard is never taken for an unused variable.
  OptimisticReads() {}
  ~OptimisticReads() {}
#endif
  OptimisticReads(const OptimisticReads&) = delete;
  OptimisticReads& operator=(const OptimisticReads&) = delete;
};

inline void CopyOptimistic(std::byte* dst, const std::byte* src, size_t n) {
  if (n == 0) return;
  OptimisticReads reads;
  std::memcpy(dst, src, n);
}

}  // namespace kvcache
