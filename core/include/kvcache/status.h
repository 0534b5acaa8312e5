// Status and Result<T>: how every core API reports failure. No exception
// crosses a core API; callers must look at what they get back.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "kvcache/export.h"

namespace kvcache {

enum class Code : int {
  kOk = 0,
  kNotFound,
  kAlreadyExists,
  kNoSpace,
  kInvalidArgument,
  kCorruption,
  kIOError,
  kBusy,
  kNotSupported,
  kPermissionDenied,  // the file or pool is not the caller's (or not trusted)
};

// Short stable name of a code, e.g. "NotFound".
KVCACHE_EXPORT std::string_view CodeName(Code code);

class [[nodiscard]] KVCACHE_EXPORT Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
  static Status NoSpace(std::string m) { return {Code::kNoSpace, std::move(m)}; }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status NotSupported(std::string m) { return {Code::kNotSupported, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {Code::kPermissionDenied, std::move(m)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  // Human readable, without the code name: "pool 'x' not found".
  const std::string& message() const { return message_; }
  // "NotFound: pool 'x' not found", or "OK".
  std::string ToString() const;

  // Explicitly drops a status the caller has decided not to act on.
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Maps an errno value to a Status whose message is "<context>: <strerror>".
KVCACHE_EXPORT Status ErrnoToStatus(int err, std::string_view context);

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(runtime/explicit)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(runtime/explicit)
    assert(!std::get<Status>(v_).ok() && "Result built from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  // REQUIRES: ok()
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kvcache

// Returns early from the enclosing function when `expr` is not OK.
#define KVC_RETURN_IF_ERROR(expr)          \
  do {                                     \
    ::kvcache::Status kvc_s_ = (expr);     \
    if (!kvc_s_.ok()) return kvc_s_;       \
  } while (0)

#define KVC_CONCAT_INNER_(a, b) a##b
#define KVC_CONCAT_(a, b) KVC_CONCAT_INNER_(a, b)
// `KVC_ASSIGN_OR_RETURN(auto x, Fn());` binds the value or returns the status.
#define KVC_ASSIGN_OR_RETURN(lhs, expr) \
  KVC_ASSIGN_OR_RETURN_IMPL_(KVC_CONCAT_(kvc_r_, __LINE__), lhs, expr)
#define KVC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
