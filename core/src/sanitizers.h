// Which sanitizer this translation unit is built with, for the few places that must
// tell it what it cannot see for itself.
#pragma once

// KVC_TSAN: ThreadSanitizer (gcc defines __SANITIZE_THREAD__, clang has the feature).
#if defined(__SANITIZE_THREAD__)
#define KVC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KVC_TSAN 1
#endif
#endif
