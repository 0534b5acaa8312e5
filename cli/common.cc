#include "common.h"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "kvcache/number.h"
#include "kvcache/size.h"

namespace kvcache::cli {

int Fail(std::string_view message) {
  // One line, whatever the message holds, so scripts can rely on it.
  std::string line(message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  fmt::print(stderr, "error: {}\n", line);
  std::fflush(stderr);
  return kExitError;
}

int Fail(const Status& status) {
  return Fail(status.message().empty() ? status.ToString() : status.message());
}

void Finish(int code) {
  std::fflush(stdout);
  if (code != kExitOk) throw CLI::RuntimeError(code);
}

CLI::Option* AddParsed(CLI::App* app, const std::string& name,
                       std::function<Status(const std::string&)> parse,
                       const std::string& description) {
  return app->add_option_function<std::string>(
      name,
      [name, parse = std::move(parse)](const std::string& value) {
        if (Status s = parse(value); !s.ok()) throw CLI::ValidationError(name, s.message());
      },
      description);
}

CLI::Option* AddUnsigned(CLI::App* app, const std::string& name, std::string_view what,
                         uint64_t* out, const std::string& description) {
  return AddParsed(
      app, name,
      [what = std::string(what), out](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(*out, ParseUnsigned(v, what));
        return Status::Ok();
      },
      description);
}

CLI::Option* AddUnsigned32(CLI::App* app, const std::string& name, std::string_view what,
                           uint32_t* out, const std::string& description) {
  return AddParsed(
      app, name,
      [what = std::string(what), out](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(uint64_t n, ParseUnsigned(v, what, UINT32_MAX));
        *out = static_cast<uint32_t>(n);
        return Status::Ok();
      },
      description);
}

CLI::Option* AddSigned32(CLI::App* app, const std::string& name, std::string_view what,
                         int32_t* out, const std::string& description) {
  return AddParsed(
      app, name,
      [what = std::string(what), out](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(int64_t n, ParseSigned(v, what, INT32_MIN, INT32_MAX));
        *out = static_cast<int32_t>(n);
        return Status::Ok();
      },
      description);
}

void PrintLine(std::string_view line) { fmt::print("{}\n", line); }

void PrintText(std::string_view text) { fmt::print("{}", text); }

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), enabled_(isatty(STDERR_FILENO) == 1) {}

ProgressBar::~ProgressBar() { Done(); }

void ProgressBar::Update(uint64_t done, uint64_t total) {
  if (!enabled_ || total == 0) return;
  if (done > total) done = total;
  int permille = static_cast<int>(done * 1000 / total);
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  bool finished = done == total;
  if (permille == last_permille_ || (!finished && now - last_draw_ns_ < 100'000'000)) return;
  last_permille_ = permille;
  last_draw_ns_ = now;
  constexpr int kWidth = 30;
  int filled = permille * kWidth / 1000;
  fmt::print(stderr, "\r{} [{}{}] {:5.1f}% {}/{}\x1b[K", label_, std::string(filled, '#'),
             std::string(kWidth - filled, '.'), permille / 10.0, FormatSizeShort(done),
             FormatSizeShort(total));
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Done() {
  if (!drawn_) return;
  fmt::print(stderr, "\r\x1b[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace kvcache::cli
