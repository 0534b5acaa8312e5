// Runs the real `cortex` binary as a separate process and captures what it did.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace kvcache::testing {

struct CliResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
  bool timed_out = false;  // killed at the time limit
  long max_rss_kb = 0;     // the process's peak resident memory (getrusage ru_maxrss)
};

// BuildDir()/cli/cortex
std::string CortexPath();

// Runs `cortex args...` with the test's environment (CORTEX_HOME, CORTEX_SHM_PREFIX),
// feeding `input` on stdin. A run longer than 60 s is killed and fails the test.
CliResult RunCortex(const std::vector<std::string>& args, std::string_view input = {});
// Like RunCortex with a time limit of `limit`; a run killed at the limit has timed_out
// set and does not fail the test by itself.
CliResult RunCortexWithin(const std::vector<std::string>& args, std::string_view input,
                          std::chrono::milliseconds limit);

// "cortex cache ..." shorthand.
CliResult Cache(std::vector<std::string> args, std::string_view input = {});

// Exit code, stdout and stderr, for failure messages.
std::string Describe(const CliResult& r);

// Exit 0 and nothing on stderr (progress bars only draw on a terminal).
::testing::AssertionResult Succeeded(const CliResult& r);
// Exit 1, nothing on stdout, exactly one stderr line "error: ..." containing `needle`.
::testing::AssertionResult FailedWith(const CliResult& r, std::string_view needle);
// Exit 2 with CLI11's message on stderr.
::testing::AssertionResult UsageError(const CliResult& r);

}  // namespace kvcache::testing
