// The payload copy of a lock-free get (segment_format.h, Slot): it may read bytes that
// a writer is overwriting at that moment, and the caller keeps the copy only when the
// slot's generation is unchanged afterwards. That race is the design, so a
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

inline void CopyOptimistic(std::byte* dst, const std::byte* src, size_t n) {
  if (n == 0) return;
#ifdef KVC_TSAN
  AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
  std::memcpy(dst, src, n);
  AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#else
  std::memcpy(dst, src, n);
#endif
}

}  // namespace kvcache
