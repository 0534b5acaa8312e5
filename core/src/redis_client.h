// RedisClient: synchronous connections to a Redis server, or to the nodes of a Redis
// Cluster, over hiredis, with a timeout on connecting and on every socket read and
// write, and a backoff after a failure so that a server that is down costs callers one
// failed attempt per backoff period, not one timeout per call.
//
// Cluster: the URL names any one node. A command whose key's hash slot lives elsewhere
// is answered `MOVED <slot> <host>:<port>`; the client then sends it there, remembers
// the slot's node for later calls, and keeps one connection per node. `ASK` (a slot
// being migrated) sends that one command to the named node once, preceded by ASKING,
// without changing the map. A plain server never redirects, so nothing changes for it.
// The keys of one entry share a hash tag (EntryKey), so an entry lives on one node.
//
// Not thread-safe: each user (the sender thread, the foreground fetcher) owns one.
#pragma once

#include <chrono>
#include <memory>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/remote.h"
#include "kvcache/status.h"

struct redisContext;
struct redisReply;

namespace kvcache::remote {

// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag
// (the bytes between the first `{` and the next `}`, when not empty), modulo 16384.
uint16_t KeyHashSlot(std::string_view key);

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

  // SET keys[i] values[i] for every i, pipelined. IOError when the connection failed
  // (then whether any was stored is unknown). Otherwise Ok, and (*refused)[i] holds the
  // server's words when it refused SET i (e.g. OOM when it is full), empty when it
  // stored it. The values are not copied but into the connection's output buffer.
  Status SetAll(std::span<const std::string_view> keys, std::span<const std::string_view> values,
                std::vector<std::string>* refused);
  // GET of every key, pipelined: nullopt where a key has no value. With a deadline,
  // connecting and each reply wait at most until then (and at most the timeout): a
  // caller making several calls bounds them all together.
  Result<std::vector<std::optional<std::string>>> GetAll(
      const std::vector<std::string>& keys,
      std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  Status Ping();

  // Where a value read by GetStreamed goes as it arrives. Into(offset) says where bytes
  // [offset, ...) of the value go: a span of at least one byte, of which the client
  // fills at most what is left of the value, then asks again from where it stopped. A
  // sink that does not want the bytes still takes them (into scratch), so that the
  // connection stays in step.
  class ValueSink {
   public:
    virtual ~ValueSink() = default;
    // The value's length, before any Into.
    virtual void Begin(uint64_t length) = 0;
    virtual std::span<std::byte> Into(uint64_t offset) = 0;
  };
  // GET `key`, its value read from the socket straight into `sink`: the client holds no
  // copy of it. *found is false when the key has no value. IOError as GetAll.
  Status GetStreamed(std::string_view key, ValueSink& sink, bool* found);

  // True while a failed connection waits for its backoff to pass: calls to that node
  // fail at once.
  bool backing_off() const;
  const Options& options() const { return options_; }

 private:
  // One node's connection. The URL's node has the key "".
  struct Node {
    std::string host;  // empty: the URL's own address (TCP or unix socket)
    uint16_t port = 0;
    redisContext* ctx = nullptr;
    std::chrono::steady_clock::time_point retry_at{};
    std::chrono::milliseconds backoff{0};
    std::chrono::milliseconds timeout{0};  // the socket's timeout as last set
  };
  // A command's argv; argv[1] is its key (none for PING).
  using Command = std::vector<std::string_view>;
  // Takes ownership of a reply.
  struct ReplyDeleter {
    void operator()(redisReply* r) const;
  };
  using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

  // Sends `commands` pipelined, following MOVED and ASK replies, and returns one reply
  // per command, in order. IOError when a connection fails, or a command is still
  // redirected after a few hops.
  Result<std::vector<Reply>> Run(const std::vector<Command>& commands);
  // Sends commands[i] for each i of `which` to `node` (each preceded by ASKING where
  // asking[i]) and stores their replies.
  Status RunOn(Node& node, const std::vector<Command>& commands, const std::vector<size_t>& which,
               const std::vector<bool>& asking, std::vector<Reply>& replies);
  // The node for `address` ("" or "host:port"), made on first use.
  Node& NodeAt(const std::string& address);
  std::string Describe(const Node& node) const;
  // Connects `node` unless connected; IOError while backing off or when it fails.
  Status Ensure(Node& node);
  // How long the next wait may take: the timeout, or less when the call's deadline is
  // nearer; zero when the deadline has passed.
  std::chrono::milliseconds WaitLimit() const;
  // Drops the node's connection and backs off (100 ms, doubling up to 2 s).
  Status Broken(Node& node, const std::string& what);

  Options options_;
  std::map<std::string, Node> nodes_;               // by address; "" is the URL's node
  std::map<uint16_t, std::string> slot_owner_;      // learned from MOVED replies
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // of the call running
};

}  // namespace kvcache::remote
