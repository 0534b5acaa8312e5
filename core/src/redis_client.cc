#include "redis_client.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <string_view>

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

// A redirection from a cluster node: "MOVED <slot> <host>:<port>" or "ASK ...".
struct Redirect {
  bool ask = false;
  std::string address;  // "host:port"; an empty host means the replying node's host
};

std::optional<Redirect> RedirectOf(std::string_view text, const std::string& replying_host) {
  Redirect out;
  if (text.starts_with("MOVED ")) {
    text.remove_prefix(6);
  } else if (text.starts_with("ASK ")) {
    text.remove_prefix(4);
    out.ask = true;
  } else {
    return std::nullopt;
  }
  size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view address = text.substr(space + 1);
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) return std::nullopt;
  out.address = colon == 0 ? replying_host + std::string(address) : std::string(address);
  return out;
}

std::optional<Redirect> RedirectOf(const redisReply* r, const std::string& replying_host) {
  if (r->type != REDIS_REPLY_ERROR || r->str == nullptr) return std::nullopt;
  return RedirectOf(std::string_view(r->str, r->len), replying_host);
}

constexpr int kMaxHops = 5;

// Reads a reply from a socket by hand: its first line through a buffer, then a bulk
// string's bytes straight where they go. The socket's timeouts (SO_RCVTIMEO, set by
// hiredis) bound every read.
class RawReader {
 public:
  explicit RawReader(int fd) : fd_(fd) {}
  // The next line, without its CRLF. False when the connection failed or timed out.
  bool Line(std::string* line) {
    for (;;) {
      std::string_view have(buf_ + pos_, len_ - pos_);
      if (size_t eol = have.find("\r\n"); eol != std::string_view::npos) {
        line->assign(have.substr(0, eol));
        pos_ += eol + 2;
        return true;
      }
      if (len_ - pos_ == sizeof(buf_)) return false;  // no line this long in a reply
      std::memmove(buf_, buf_ + pos_, len_ - pos_);
      len_ -= pos_;
      pos_ = 0;
      ssize_t n = ReadSome(buf_ + len_, sizeof(buf_) - len_);
      if (n <= 0) return false;
      len_ += static_cast<size_t>(n);
    }
  }
  // Reads exactly `n` bytes to `out`: what is buffered first, then from the socket.
  bool Exactly(std::byte* out, size_t n) {
    const size_t buffered = std::min(n, len_ - pos_);
    std::memcpy(out, buf_ + pos_, buffered);
    pos_ += buffered;
    for (size_t got = buffered; got < n;) {
      ssize_t r = ReadSome(reinterpret_cast<char*>(out) + got, n - got);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }

 private:
  ssize_t ReadSome(char* out, size_t n) {
    for (;;) {
      ssize_t r = ::read(fd_, out, n);
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  }
  const int fd_;
  char buf_[4096];
  size_t pos_ = 0, len_ = 0;
};

}  // namespace

uint16_t KeyHashSlot(std::string_view key) {
  if (size_t open = key.find('{'); open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  uint16_t crc = 0;  // CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0
  for (char c : key) {
    crc ^= static_cast<uint16_t>(static_cast<uint8_t>(c) << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
  }
  return static_cast<uint16_t>(crc & 16383);
}

void RedisClient::ReplyDeleter::operator()(redisReply* r) const { freeReplyObject(r); }

RedisClient::RedisClient(Options options) : options_(std::move(options)) {}

RedisClient::~RedisClient() {
  for (auto& [address, node] : nodes_) {
    if (node.ctx != nullptr) redisFree(node.ctx);
  }
}

bool RedisClient::backing_off() const {
  auto now = std::chrono::steady_clock::now();
  return std::any_of(nodes_.begin(), nodes_.end(), [&](const auto& entry) {
    return entry.second.ctx == nullptr && now < entry.second.retry_at;
  });
}

RedisClient::Node& RedisClient::NodeAt(const std::string& address) {
  // The URL's own node keeps one connection, however a redirection spells it.
  const std::string url_address =
      options_.url.is_unix() ? std::string()
                             : options_.url.host + ":" + std::to_string(options_.url.port);
  const std::string& key = address == url_address ? std::string() : address;
  auto [it, made] = nodes_.try_emplace(key);
  if (made && !key.empty()) {
    size_t colon = key.rfind(':');
    it->second.host = key.substr(0, colon);
    it->second.port = static_cast<uint16_t>(std::stoul(key.substr(colon + 1)));
  }
  return it->second;
}

std::string RedisClient::Describe(const Node& node) const {
  if (node.host.empty()) return "remote " + options_.url.ToString();
  return "remote " + options_.url.ToString() + " (cluster node " + node.host + ":" +
         std::to_string(node.port) + ")";
}

Status RedisClient::Broken(Node& node, const std::string& what) {
  std::string detail = what;
  if (node.ctx != nullptr) {
    if (node.ctx->err != 0) detail += std::string(": ") + node.ctx->errstr;
    redisFree(node.ctx);
    node.ctx = nullptr;
  }
  node.backoff =
      node.backoff.count() == 0 ? kFirstBackoff : std::min(node.backoff * 2, kMaxBackoff);
  node.retry_at = std::chrono::steady_clock::now() + node.backoff;
  return Status::IOError(Describe(node) + ": " + detail);
}

std::chrono::milliseconds RedisClient::WaitLimit() const {
  if (!deadline_) return options_.timeout;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      *deadline_ - std::chrono::steady_clock::now());
  if (left.count() <= 0) return std::chrono::milliseconds(0);
  return std::min(left, options_.timeout);
}

Status RedisClient::Ensure(Node& node) {
  if (node.ctx != nullptr) return Status::Ok();
  if (std::chrono::steady_clock::now() < node.retry_at) {
    return Status::IOError(Describe(node) + " is down (retrying after a backoff)");
  }
  const std::chrono::milliseconds limit = WaitLimit();
  if (limit.count() == 0) return Status::IOError(Describe(node) + ": out of time to connect");
  const timeval tv = ToTimeval(limit);
  if (!node.host.empty()) {
    node.ctx = redisConnectWithTimeout(node.host.c_str(), node.port, tv);
  } else if (options_.url.is_unix()) {
    node.ctx = redisConnectUnixWithTimeout(options_.url.socket_path.c_str(), tv);
  } else {
    node.ctx = redisConnectWithTimeout(options_.url.host.c_str(), options_.url.port, tv);
  }
  if (node.ctx == nullptr) return Broken(node, "cannot allocate a connection");
  if (node.ctx->err != 0) return Broken(node, "connect");
  if (redisSetTimeout(node.ctx, tv) != REDIS_OK) return Broken(node, "set timeout");
  node.timeout = limit;
  SigpipeGuard guard;
  auto simple = [&](std::vector<std::string> argv, const char* what) -> Status {
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const std::string& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(node.ctx, static_cast<int>(args.size()), args.data(), lens.data()));
    if (reply == nullptr) return Broken(node, what);
    bool ok = reply->type != REDIS_REPLY_ERROR;
    std::string text = ReplyText(reply);
    freeReplyObject(reply);
    if (!ok) return Broken(node, std::string(what) + ": " + text);
    return Status::Ok();
  };
  if (!options_.password.empty()) {
    KVC_RETURN_IF_ERROR(simple({"AUTH", options_.password}, "AUTH"));
  }
  // A cluster has only database 0; a redirected node is never asked to SELECT.
  if (options_.url.db != 0 && node.host.empty()) {
    KVC_RETURN_IF_ERROR(simple({"SELECT", std::to_string(options_.url.db)}, "SELECT"));
  }
  node.backoff = std::chrono::milliseconds(0);
  return Status::Ok();
}

Status RedisClient::RunOn(Node& node, const std::vector<Command>& commands,
                          const std::vector<size_t>& which, const std::vector<bool>& asking,
                          std::vector<Reply>& replies) {
  KVC_RETURN_IF_ERROR(Ensure(node));
  // Nothing is sent yet: a call out of time leaves the connection as it is.
  const std::chrono::milliseconds limit = WaitLimit();
  if (limit.count() == 0) return Status::IOError(Describe(node) + ": out of time");
  if (limit != node.timeout) {
    if (redisSetTimeout(node.ctx, ToTimeval(limit)) != REDIS_OK) {
      return Broken(node, "set timeout");
    }
    node.timeout = limit;
  }
  SigpipeGuard guard;
  static constexpr std::string_view kAsking = "ASKING";
  for (size_t i : which) {
    if (asking[i]) {
      const char* argv[] = {kAsking.data()};
      const size_t lens[] = {kAsking.size()};
      if (redisAppendCommandArgv(node.ctx, 1, argv, lens) != REDIS_OK) {
        return Broken(node, "queue ASKING");
      }
    }
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (std::string_view a : commands[i]) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(node.ctx, static_cast<int>(argv.size()), argv.data(),
                               lens.data()) != REDIS_OK) {
      return Broken(node, "queue " + std::string(commands[i][0]));
    }
  }
  for (size_t i : which) {
    for (int part = asking[i] ? 2 : 1; part > 0; --part) {
      void* reply = nullptr;
      if (redisGetReply(node.ctx, &reply) != REDIS_OK || reply == nullptr) {
        return Broken(node, "no reply within the timeout, or the connection was lost");
      }
      // The reply to ASKING (+OK) is not kept.
      if (part == 1) replies[i].reset(static_cast<redisReply*>(reply));
      else freeReplyObject(reply);
    }
  }
  return Status::Ok();
}

Result<std::vector<RedisClient::Reply>> RedisClient::Run(const std::vector<Command>& commands) {
  std::vector<Reply> replies(commands.size());
  std::vector<std::string> target(commands.size());  // node address; "" is the URL's node
  std::vector<bool> asking(commands.size(), false);
  std::vector<uint16_t> slot(commands.size(), 0);
  std::vector<size_t> pending;
  for (size_t i = 0; i < commands.size(); ++i) {
    if (commands[i].size() > 1) {
      slot[i] = KeyHashSlot(commands[i][1]);
      if (auto it = slot_owner_.find(slot[i]); it != slot_owner_.end()) target[i] = it->second;
    }
    pending.push_back(i);
  }
  for (int hop = 0; !pending.empty(); ++hop) {
    if (hop > kMaxHops) {
      return Status::IOError("remote " + options_.url.ToString() + ": " +
                             std::string(commands[pending[0]][0]) + " still redirected after " +
                             std::to_string(kMaxHops) + " hops");
    }
    // One pipeline per node, in the order the nodes are first named.
    std::map<std::string, std::vector<size_t>> by_node;
    for (size_t i : pending) by_node[target[i]].push_back(i);
    pending.clear();
    for (auto& [address, which] : by_node) {
      Node& node = NodeAt(address);
      KVC_RETURN_IF_ERROR(RunOn(node, commands, which, asking, replies));
      const std::string& host = node.host.empty() ? options_.url.host : node.host;
      for (size_t i : which) {
        std::optional<Redirect> redirect = RedirectOf(replies[i].get(), host);
        if (!redirect) continue;
        replies[i].reset();
        target[i] = redirect->address;
        asking[i] = redirect->ask;
        // MOVED: the slot lives there from now on. ASK: only this command goes there.
        if (!redirect->ask) slot_owner_[slot[i]] = redirect->address;
        pending.push_back(i);
      }
    }
  }
  return replies;
}

Status RedisClient::SetAll(std::span<const std::string_view> keys,
                           std::span<const std::string_view> values,
                           std::vector<std::string>* refused) {
  std::vector<Command> commands;
  commands.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) commands.push_back({"SET", keys[i], values[i]});
  KVC_ASSIGN_OR_RETURN(std::vector<Reply> replies, Run(commands));
  refused->assign(replies.size(), std::string());
  for (size_t i = 0; i < replies.size(); ++i) {
    if (replies[i]->type == REDIS_REPLY_ERROR) {
      (*refused)[i] = "remote " + options_.url.ToString() + " refused SET: " +
                      ReplyText(replies[i].get());
    }
  }
  return Status::Ok();
}

Result<std::vector<std::optional<std::string>>> RedisClient::GetAll(
    const std::vector<std::string>& keys,
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  // For this call only.
  struct Scope {
    std::optional<std::chrono::steady_clock::time_point>* slot;
    ~Scope() { slot->reset(); }
  } scope{&deadline_};
  deadline_ = deadline;
  std::vector<Command> commands;
  commands.reserve(keys.size());
  for (const std::string& key : keys) commands.push_back({"GET", key});
  KVC_ASSIGN_OR_RETURN(std::vector<Reply> replies, Run(commands));
  std::vector<std::optional<std::string>> out;
  out.reserve(replies.size());
  for (const Reply& r : replies) {
    if (r->type == REDIS_REPLY_STRING) {
      out.emplace_back(std::string(r->str, r->len));
    } else if (r->type == REDIS_REPLY_NIL) {
      out.emplace_back(std::nullopt);
    } else {
      std::string error =
          r->type == REDIS_REPLY_ERROR ? ReplyText(r.get()) : "unexpected reply type";
      return Status::IOError("remote " + options_.url.ToString() + " refused GET: " + error);
    }
  }
  return out;
}

Status RedisClient::GetStreamed(std::string_view key, ValueSink& sink, bool* found) {
  *found = false;
  const uint16_t slot = KeyHashSlot(key);
  std::string target;
  if (auto it = slot_owner_.find(slot); it != slot_owner_.end()) target = it->second;
  bool asking = false;
  for (int hop = 0; hop <= kMaxHops; ++hop) {
    Node& node = NodeAt(target);
    KVC_RETURN_IF_ERROR(Ensure(node));
    if (options_.timeout != node.timeout) {
      if (redisSetTimeout(node.ctx, ToTimeval(options_.timeout)) != REDIS_OK) {
        return Broken(node, "set timeout");
      }
      node.timeout = options_.timeout;
    }
    SigpipeGuard guard;
    static constexpr std::string_view kAsking = "ASKING";
    static constexpr std::string_view kGet = "GET";
    if (asking) {
      const char* argv[] = {kAsking.data()};
      const size_t lens[] = {kAsking.size()};
      if (redisAppendCommandArgv(node.ctx, 1, argv, lens) != REDIS_OK) {
        return Broken(node, "queue ASKING");
      }
    }
    const char* argv[] = {kGet.data(), key.data()};
    const size_t lens[] = {kGet.size(), key.size()};
    if (redisAppendCommandArgv(node.ctx, 2, argv, lens) != REDIS_OK) {
      return Broken(node, "queue GET");
    }
    for (int done = 0; done == 0;) {
      if (redisBufferWrite(node.ctx, &done) != REDIS_OK) return Broken(node, "send GET");
    }
    RawReader in(node.ctx->fd);
    std::string line;
    const std::string lost = "no reply within the timeout, or the connection was lost";
    if (asking && !in.Line(&line)) return Broken(node, lost);  // ASKING's +OK
    if (!in.Line(&line) || line.empty()) return Broken(node, lost);
    if (line[0] == '-') {
      const std::string& host = node.host.empty() ? options_.url.host : node.host;
      std::optional<Redirect> redirect = RedirectOf(std::string_view(line).substr(1), host);
      if (!redirect) {
        return Status::IOError("remote " + options_.url.ToString() + " refused GET: " +
                               line.substr(1));
      }
      target = redirect->address;
      asking = redirect->ask;
      // MOVED: the slot lives there from now on. ASK: only this command goes there.
      if (!redirect->ask) slot_owner_[slot] = redirect->address;
      continue;
    }
    if (line[0] != '$') return Broken(node, "unexpected reply to GET: " + line);
    if (line == "$-1") return Status::Ok();  // no such key
    uint64_t length = 0;
    std::string_view digits = std::string_view(line).substr(1);
    if (digits.empty() || digits.size() > 19 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return Broken(node, "malformed reply to GET: " + line);
    }
    for (char c : digits) length = length * 10 + static_cast<uint64_t>(c - '0');
    sink.Begin(length);
    for (uint64_t offset = 0; offset < length;) {
      std::span<std::byte> into = sink.Into(offset);
      const size_t n = static_cast<size_t>(std::min<uint64_t>(into.size(), length - offset));
      if (!in.Exactly(into.data(), n)) return Broken(node, lost);
      offset += n;
    }
    std::byte crlf[2];
    if (!in.Exactly(crlf, 2) || crlf[0] != std::byte{'\r'} || crlf[1] != std::byte{'\n'}) {
      return Broken(node, "malformed reply to GET");
    }
    *found = true;
    return Status::Ok();
  }
  return Status::IOError("remote " + options_.url.ToString() + ": GET still redirected after " +
                         std::to_string(kMaxHops) + " hops");
}

Status RedisClient::Ping() {
  KVC_ASSIGN_OR_RETURN(std::vector<Reply> replies, Run({{"PING"}}));
  if (replies[0]->type == REDIS_REPLY_ERROR) {
    return Status::IOError("remote " + options_.url.ToString() + ": PING: " +
                           ReplyText(replies[0].get()));
  }
  return Status::Ok();
}

}  // namespace kvcache::remote
