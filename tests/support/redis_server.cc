#include "support/redis_server.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "support/child_process.h"

namespace kvcache::testing {

uint16_t FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool RedisServer::Available() { return access("/usr/bin/redis-server", X_OK) == 0; }

RedisServer::RedisServer(Options options) : options_(std::move(options)) {
  if (options_.tcp) port_ = FreeLoopbackPort();
  if (options_.cluster) bus_port_ = FreeLoopbackPort();
}

RedisServer::~RedisServer() { Kill(); }

RedisServer::Launch RedisServer::TryStart() {
  Kill();
  std::vector<std::string> argv = {
      "/usr/bin/redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
      "--unixsocket", socket_path(), "--unixsocketperm", "700", "--save", "",
      "--appendonly", "no", "--dir", dir_.path(), "--logfile", dir_.Join("redis.log"),
      "--daemonize", "no"};
  if (!options_.password.empty()) {
    argv.push_back("--requirepass");
    argv.push_back(options_.password);
  }
  if (options_.cluster) {
    // The bus port is named: the default (port + 10000) may be taken, or past 65535.
    for (std::string a : {std::string("--cluster-enabled"), std::string("yes"),
                          std::string("--cluster-config-file"), std::string("nodes.conf"),
                          std::string("--cluster-node-timeout"), std::string("5000"),
                          std::string("--cluster-port"), std::to_string(bus_port_)}) {
      argv.push_back(std::move(a));
    }
  }
  pid_t parent = getpid();
  std::vector<char*> args = ExecArgv(argv);
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execv(args[0], args.data());
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    auto reply = Command({"PING"});
    if (reply.has_value()) return Launch::kUp;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Launch::kExited;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Launch::kSilent;
}

bool RedisServer::Start() {
  for (int attempt = 1;; ++attempt) {
    Launch launch = TryStart();
    if (launch == Launch::kUp) {
      started_ = true;
      return true;
    }
    if (launch == Launch::kSilent) {
      ADD_FAILURE() << "redis-server did not answer within 10 s";
      return false;
    }
    // A port found free a moment ago was taken meanwhile (tests run side by side): a
    // first start may move to other ports; a restart keeps the port clients know.
    if (options_.tcp && !started_ && attempt < 5) {
      port_ = FreeLoopbackPort();
      if (options_.cluster) bus_port_ = FreeLoopbackPort();
      continue;
    }
    ADD_FAILURE() << "redis-server exited at start; see " << dir_.Join("redis.log");
    return false;
  }
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  kill(pid_, SIGCONT);  // a stopped process dies only once it runs
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  unlink(socket_path().c_str());
}

void RedisServer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

std::optional<std::vector<std::optional<std::string>>> RedisServer::Command(
    const std::vector<std::string>& argv) {
  timeval tv{1, 0};
  redisContext* c = redisConnectUnixWithTimeout(socket_path().c_str(), tv);
  if (c == nullptr) return std::nullopt;
  if (c->err != 0) {
    redisFree(c);
    return std::nullopt;
  }
  auto run = [&](const std::vector<std::string>& args) -> redisReply* {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(ptrs.size()), ptrs.data(), lens.data()));
  };
  if (!options_.password.empty()) {
    redisReply* auth = run({"AUTH", options_.password});
    if (auth != nullptr) freeReplyObject(auth);
  }
  redisReply* r = run(argv);
  std::optional<std::vector<std::optional<std::string>>> out;
  if (r != nullptr && r->type != REDIS_REPLY_ERROR) {
    out.emplace();
    auto take = [](const redisReply* e) -> std::optional<std::string> {
      if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) {
        return std::string(e->str, e->len);
      }
      if (e->type == REDIS_REPLY_INTEGER) return std::to_string(e->integer);
      return std::nullopt;
    };
    if (r->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < r->elements; ++i) out->push_back(take(r->element[i]));
    } else {
      out->push_back(take(r));
    }
  }
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return out;
}

std::optional<std::string> RedisServer::Get(const std::string& key) {
  auto r = Command({"GET", key});
  if (!r.has_value() || r->empty()) return std::nullopt;
  return (*r)[0];
}

bool RedisServer::Set(const std::string& key, const std::string& value) {
  return Command({"SET", key, value}).has_value();
}

std::vector<std::string> RedisServer::Keys(const std::string& pattern) {
  std::vector<std::string> out;
  auto r = Command({"KEYS", pattern});
  if (!r.has_value()) return out;
  for (auto& k : *r) {
    if (k.has_value()) out.push_back(*k);
  }
  return out;
}

RedisCluster::RedisCluster(int nodes) {
  for (int i = 0; i < nodes; ++i) {
    nodes_.push_back(std::make_unique<RedisServer>(RedisServer::Options{.tcp = true, .cluster = true}));
  }
}

int RedisCluster::NodeOfSlot(uint16_t slot) const {
  return static_cast<int>(static_cast<size_t>(slot) * nodes_.size() / 16384);
}

bool RedisCluster::Start() {
  for (auto& n : nodes_) {
    if (!n->Start()) return false;
  }
  const size_t count = nodes_.size();
  for (size_t i = 0; i < count; ++i) {
    size_t first = i * 16384 / count, last = (i + 1) * 16384 / count - 1;
    if (!nodes_[i]->Command({"CLUSTER", "ADDSLOTSRANGE", std::to_string(first),
                             std::to_string(last)})) {
      ADD_FAILURE() << "CLUSTER ADDSLOTSRANGE failed on node " << i;
      return false;
    }
  }
  for (size_t i = 1; i < count; ++i) {
    if (!nodes_[0]->Command({"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes_[i]->port()),
                              std::to_string(nodes_[i]->bus_port())})) {
      ADD_FAILURE() << "CLUSTER MEET failed for node " << i;
      return false;
    }
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    bool ok = true;
    for (auto& n : nodes_) {
      auto info = n->Command({"CLUSTER", "INFO"});
      if (!info || info->empty() || !(*info)[0] ||
          (*info)[0]->find("cluster_state:ok") == std::string::npos ||
          (*info)[0]->find("cluster_known_nodes:" + std::to_string(count)) == std::string::npos) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "the cluster did not reach cluster_state:ok within 20 s";
  return false;
}

}  // namespace kvcache::testing
