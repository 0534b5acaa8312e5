// RedisClient: one synchronous connection to a Redis server over hiredis, with a
// timeout on connecting and on every socket read and write, and a backoff after a
// failure so that a server that is down costs callers one failed attempt per backoff
// period, not one timeout per call.
//
// Not thread-safe: each user (the sender thread, the foreground fetcher) owns one.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/remote.h"
#include "kvcache/status.h"

struct redisContext;
struct redisReply;

namespace kvcache::remote {

class RedisClient {
 public:
  struct Options {
    RemoteUrl url;
    std::string password;  // empty: no AUTH
    std::chrono::milliseconds timeout{100};
  };
  explicit RedisClient(Options options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // SET keys[i] values[i] for every i, pipelined. IOError (with the server's words for
  // an error reply, e.g. OOM when it is full) when any one failed.
  Status SetAll(const std::vector<std::string>& keys, const std::vector<std::string>& values);
  // GET of every key, pipelined: nullopt where a key has no value.
  Result<std::vector<std::optional<std::string>>> GetAll(const std::vector<std::string>& keys);
  Status Ping();

  // True while a failed connection waits for its backoff to pass: calls fail at once.
  bool backing_off() const;
  const Options& options() const { return options_; }

 private:
  // Connects unless connected; IOError while backing off or when it fails.
  Status Ensure();
  // Drops the connection and backs off (100 ms, doubling up to 2 s).
  Status Broken(const std::string& what);
  // Sends the commands appended to the context and reads one reply per command.
  Status RoundTrip(size_t commands, std::vector<redisReply*>& replies);

  Options options_;
  redisContext* ctx_ = nullptr;
  std::chrono::steady_clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{0};
};

}  // namespace kvcache::remote
