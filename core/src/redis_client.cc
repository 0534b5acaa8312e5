#include "redis_client.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

namespace kvcache::remote {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

// A write to a connection the server closed raises SIGPIPE, which would kill the
// process; hiredis writes with write(2). For the span of a call, SIGPIPE is blocked in
// this thread, and one it raised is taken off the pending set before unblocking. (A
// SIGPIPE already pending when the call began is left for its owner.)
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        timespec zero{0, 0};
        while (sigtimedwait(&pipe, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
};

std::string ReplyText(const redisReply* r) {
  return r->str != nullptr ? std::string(r->str, r->len) : std::string();
}

}  // namespace

RedisClient::RedisClient(Options options) : options_(std::move(options)) {}

RedisClient::~RedisClient() {
  if (ctx_ != nullptr) redisFree(ctx_);
}

bool RedisClient::backing_off() const {
  return ctx_ == nullptr && std::chrono::steady_clock::now() < retry_at_;
}

Status RedisClient::Broken(const std::string& what) {
  std::string detail = what;
  if (ctx_ != nullptr) {
    if (ctx_->err != 0) detail += std::string(": ") + ctx_->errstr;
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  backoff_ = backoff_.count() == 0 ? kFirstBackoff : std::min(backoff_ * 2, kMaxBackoff);
  retry_at_ = std::chrono::steady_clock::now() + backoff_;
  return Status::IOError("remote " + options_.url.ToString() + ": " + detail);
}

Status RedisClient::Ensure() {
  if (ctx_ != nullptr) return Status::Ok();
  if (std::chrono::steady_clock::now() < retry_at_) {
    return Status::IOError("remote " + options_.url.ToString() +
                           " is down (retrying after a backoff)");
  }
  const timeval tv = ToTimeval(options_.timeout);
  ctx_ = options_.url.is_unix()
             ? redisConnectUnixWithTimeout(options_.url.socket_path.c_str(), tv)
             : redisConnectWithTimeout(options_.url.host.c_str(), options_.url.port, tv);
  if (ctx_ == nullptr) return Broken("cannot allocate a connection");
  if (ctx_->err != 0) return Broken("connect");
  if (redisSetTimeout(ctx_, tv) != REDIS_OK) return Broken("set timeout");
  SigpipeGuard guard;
  auto simple = [&](std::vector<std::string> argv, const char* what) -> Status {
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const std::string& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(args.size()), args.data(), lens.data()));
    if (reply == nullptr) return Broken(what);
    bool ok = reply->type != REDIS_REPLY_ERROR;
    std::string text = ReplyText(reply);
    freeReplyObject(reply);
    if (!ok) return Broken(std::string(what) + ": " + text);
    return Status::Ok();
  };
  if (!options_.password.empty()) {
    KVC_RETURN_IF_ERROR(simple({"AUTH", options_.password}, "AUTH"));
  }
  if (options_.url.db != 0) {
    KVC_RETURN_IF_ERROR(simple({"SELECT", std::to_string(options_.url.db)}, "SELECT"));
  }
  backoff_ = std::chrono::milliseconds(0);
  return Status::Ok();
}

Status RedisClient::RoundTrip(size_t commands, std::vector<redisReply*>& replies) {
  replies.clear();
  for (size_t i = 0; i < commands; ++i) {
    void* reply = nullptr;
    if (redisGetReply(ctx_, &reply) != REDIS_OK || reply == nullptr) {
      for (redisReply* r : replies) freeReplyObject(r);
      replies.clear();
      return Broken("no reply within the timeout, or the connection was lost");
    }
    replies.push_back(static_cast<redisReply*>(reply));
  }
  return Status::Ok();
}

Status RedisClient::SetAll(const std::vector<std::string>& keys,
                           const std::vector<std::string>& values) {
  KVC_RETURN_IF_ERROR(Ensure());
  SigpipeGuard guard;
  for (size_t i = 0; i < keys.size(); ++i) {
    const char* argv[] = {"SET", keys[i].data(), values[i].data()};
    const size_t lens[] = {3, keys[i].size(), values[i].size()};
    if (redisAppendCommandArgv(ctx_, 3, argv, lens) != REDIS_OK) return Broken("queue SET");
  }
  std::vector<redisReply*> replies;
  KVC_RETURN_IF_ERROR(RoundTrip(keys.size(), replies));
  std::string error;
  for (redisReply* r : replies) {
    if (r->type == REDIS_REPLY_ERROR && error.empty()) error = ReplyText(r);
    freeReplyObject(r);
  }
  if (!error.empty()) {
    return Status::IOError("remote " + options_.url.ToString() + " refused SET: " + error);
  }
  return Status::Ok();
}

Result<std::vector<std::optional<std::string>>> RedisClient::GetAll(
    const std::vector<std::string>& keys) {
  KVC_RETURN_IF_ERROR(Ensure());
  SigpipeGuard guard;
  for (const std::string& key : keys) {
    const char* argv[] = {"GET", key.data()};
    const size_t lens[] = {3, key.size()};
    if (redisAppendCommandArgv(ctx_, 2, argv, lens) != REDIS_OK) return Broken("queue GET");
  }
  std::vector<redisReply*> replies;
  KVC_RETURN_IF_ERROR(RoundTrip(keys.size(), replies));
  std::vector<std::optional<std::string>> out;
  std::string error;
  for (redisReply* r : replies) {
    if (r->type == REDIS_REPLY_STRING) {
      out.emplace_back(std::string(r->str, r->len));
    } else if (r->type == REDIS_REPLY_NIL) {
      out.emplace_back(std::nullopt);
    } else if (error.empty()) {
      error = r->type == REDIS_REPLY_ERROR ? ReplyText(r) : "unexpected reply type";
    }
    freeReplyObject(r);
  }
  if (!error.empty()) {
    return Status::IOError("remote " + options_.url.ToString() + " refused GET: " + error);
  }
  return out;
}

Status RedisClient::Ping() {
  KVC_RETURN_IF_ERROR(Ensure());
  SigpipeGuard guard;
  const char* argv[] = {"PING"};
  const size_t lens[] = {4};
  if (redisAppendCommandArgv(ctx_, 1, argv, lens) != REDIS_OK) return Broken("queue PING");
  std::vector<redisReply*> replies;
  KVC_RETURN_IF_ERROR(RoundTrip(1, replies));
  bool ok = replies[0]->type != REDIS_REPLY_ERROR;
  std::string text = ReplyText(replies[0]);
  freeReplyObject(replies[0]);
  if (!ok) return Status::IOError("remote " + options_.url.ToString() + ": PING: " + text);
  return Status::Ok();
}

}  // namespace kvcache::remote
