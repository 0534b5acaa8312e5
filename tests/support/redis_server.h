// A real redis-server for a test: its own unix socket (and, if asked, a free loopback
// TCP port) and data directory in a temp dir, no persistence. Killed (SIGKILL) and reaped
// on destruction, and by the kernel if the test process dies first (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/test_env.h"

namespace kvcache::testing {

class RedisServer {
 public:
  struct Options {
    bool tcp = false;        // also listen on 127.0.0.1:<a free port>
    std::string password;    // requirepass, when not empty
    bool cluster = false;    // cluster-enabled (needs tcp), with no slots until given
  };
  RedisServer() : RedisServer(Options{}) {}
  explicit RedisServer(Options options);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // True once it answers PING. Fails the test (and returns false) if it does not
  // within 10 s.
  bool Start();
  void Kill();
  // SIGSTOP / SIGCONT: a server that accepts connections and never answers.
  void Pause();
  void Resume();
  bool running() const { return pid_ > 0; }

  std::string socket_path() const { return dir_.Join("redis.sock"); }
  uint16_t port() const { return port_; }
  uint16_t bus_port() const { return bus_port_; }
  // unix:///.../redis.sock
  std::string unix_url() const { return "unix://" + socket_path(); }
  // redis://127.0.0.1:<port>
  std::string tcp_url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  // One command over a fresh connection: the reply's string (integers as text) or array
  // elements, or nullopt for an error reply or no answer.
  std::optional<std::vector<std::optional<std::string>>> Command(
      const std::vector<std::string>& argv);
  // Direct access to the server's keys, for checking and damaging what is stored.
  std::optional<std::string> Get(const std::string& key);
  bool Set(const std::string& key, const std::string& value);
  std::vector<std::string> Keys(const std::string& pattern);
  // Whether the server binary is installed (tests skip with a message otherwise).
  static bool Available();

 private:
  enum class Launch { kUp, kExited, kSilent };
  Launch TryStart();

  Options options_;
  TempDir dir_;
  uint16_t port_ = 0;
  uint16_t bus_port_ = 0;  // cluster bus
  bool started_ = false;
  pid_t pid_ = -1;
};

// A Redis Cluster of `nodes` masters on loopback, the 16384 slots split evenly between
// them in order (node 0 has the lowest slots). Start() returns once every node says
// cluster_state:ok and knows every slot's owner.
class RedisCluster {
 public:
  explicit RedisCluster(int nodes = 3);
  bool Start();
  RedisServer& node(int i) { return *nodes_[static_cast<size_t>(i)]; }
  int size() const { return static_cast<int>(nodes_.size()); }
  // The node serving `slot`, by the split above.
  int NodeOfSlot(uint16_t slot) const;

 private:
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t FreeLoopbackPort();

}  // namespace kvcache::testing
