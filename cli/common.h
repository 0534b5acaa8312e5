// Pieces every `cortex cache` command shares: how a command ends (exit codes), how an
// operational error is printed, and the progress bar of long operations.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
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

// Adds an option (or positional) whose value goes through one of core's parsers
// (kvcache/number.h, ParsePolicy, ...) instead of CLI11's own conversions, so the CLI
// accepts exactly what kvcachefs accepts. `parse` stores the value or returns why it
// is bad; a bad value is a usage error naming the option.
CLI::Option* AddParsed(CLI::App* app, const std::string& name,
                       std::function<Status(const std::string&)> parse,
                       const std::string& description);
// The common cases of AddParsed: a uint64 (at most `max`), a uint32 and an int32.
CLI::Option* AddUnsigned(CLI::App* app, const std::string& name, std::string_view what,
                         uint64_t* out, const std::string& description);
CLI::Option* AddUnsigned32(CLI::App* app, const std::string& name, std::string_view what,
                           uint32_t* out, const std::string& description);
CLI::Option* AddSigned32(CLI::App* app, const std::string& name, std::string_view what,
                         int32_t* out, const std::string& description);

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
