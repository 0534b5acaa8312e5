// Pieces every `cortex cache` command shares: how a command ends (exit codes), how an
// operational error is printed, and the progress bar of long operations.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvcache/status.h"

namespace kvcache::cli {

// Exit codes: 0 success, 1 operational error, 2 usage error (CLI11's parse errors).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Prints "error: <message>" as one line on stderr and returns kExitError.
int Fail(std::string_view message);
int Fail(const Status& status);

// Ends a subcommand callback with `code`: CLI11 callbacks cannot return a value, so a
// non-zero code travels to main as a CLI::RuntimeError (which CLI11 does not print).
void Finish(int code);

// Prints `line` and a newline on stdout.
void PrintLine(std::string_view line);
// Writes `text` to stdout as it is (renderings carry their own newlines).
void PrintText(std::string_view text);

// A one-line progress bar on stderr, drawn only when stderr is a terminal so that logs
// and pipes stay clean. Redraws at most a few times a second.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  bool enabled() const { return enabled_; }
  void Update(uint64_t done, uint64_t total);
  // Clears the bar's line (also done by the destructor).
  void Done();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  int last_permille_ = -1;
  int64_t last_draw_ns_ = 0;
};

}  // namespace kvcache::cli
