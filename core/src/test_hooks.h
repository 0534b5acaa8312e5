// Fault points for the tests of crash safety and failure handling. A point costs a
// load of a cached flag when its variable is unset.
//
//   KVC_TEST_CRASH_AT=<name>  the process SIGKILLs itself on reaching CrashPoint(<name>)
//   KVC_TEST_STOP_AT=<name>   the process SIGSTOPs itself there (to be resumed by SIGCONT)
//   KVC_TEST_FAIL_AT=<name>   FailPoint(<name>) returns true
#pragma once

namespace kvcache {

// Kills the process with SIGKILL when $KVC_TEST_CRASH_AT names this point, or stops it
// when $KVC_TEST_STOP_AT does (both read once).
void CrashPoint(const char* name);
// True when $KVC_TEST_FAIL_AT names this point (read on every call).
bool FailPoint(const char* name);

}  // namespace kvcache
