#include "test_hooks.h"

#include <signal.h>

#include <cstdlib>
#include <cstring>

namespace kvcache {

void CrashPoint(const char* name) {
  static const char* const crash_at = std::getenv("KVC_TEST_CRASH_AT");
  static const char* const stop_at = std::getenv("KVC_TEST_STOP_AT");
  if (crash_at != nullptr && std::strcmp(crash_at, name) == 0) raise(SIGKILL);
  if (stop_at != nullptr && std::strcmp(stop_at, name) == 0) raise(SIGSTOP);
}

bool FailPoint(const char* name) {
  const char* fail_at = std::getenv("KVC_TEST_FAIL_AT");
  return fail_at != nullptr && std::strcmp(fail_at, name) == 0;
}

}  // namespace kvcache
