// `cortex cache create --remote`, `cortex cache remote`, and what status and health say
// about a pool's remote, with a real redis-server and real cortex processes.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "support/redis_server.h"
#include "support/test_env.h"
#include "support/two_hosts.h"

namespace kvcache::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Points the cortex processes this test runs at another home and shm prefix (another
// "host") until destroyed.
class OtherHost {
 public:
  OtherHost(const std::string& home, const std::string& prefix)
      : home_(getenv("CORTEX_HOME")), prefix_(getenv("CORTEX_SHM_PREFIX")) {
    setenv("CORTEX_HOME", home.c_str(), 1);
    setenv("CORTEX_SHM_PREFIX", prefix.c_str(), 1);
  }
  ~OtherHost() {
    setenv("CORTEX_HOME", home_.c_str(), 1);
    setenv("CORTEX_SHM_PREFIX", prefix_.c_str(), 1);
  }

 private:
  std::string home_;
  std::string prefix_;
};

// Host A is the fixture's home and prefix; host B (OtherHost) has its own.
class CliRemoteTest : public TwoHostsTest {
 protected:
  TempDir files_;
};

TEST_F(CliRemoteTest, APutFromTheCliReachesRedisAndAnotherHostGetsIt) {
  CliResult create = Cache({"create", "p", "--size", "4M", "--remote", redis_->unix_url()});
  ASSERT_TRUE(Succeeded(create));
  EXPECT_EQ(create.out, "Created cache pool 'p' (4.00 MB, policy=lru)\nPool 'p' uses remote " +
                            redis_->unix_url() + " (write-through, namespace p)\n");
  std::string payload(100000, 'k');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 31);
  // cortex exits as soon as the put is done: its write-through must not be lost.
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "1", "--tokens", "64"}, payload)));
  EXPECT_TRUE(redis_->Get("kvc:{p:1}").has_value());

  std::string out = files_.Join("out.bin");
  {
    OtherHost b(b_home_->path(), b_prefix_);
    ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M", "--remote", redis_->tcp_url(),
                                 "--remote-mode", "read-only"})));
    ASSERT_TRUE(Succeeded(Cache({"get", "p", "1", "-o", out})));
    EXPECT_TRUE(ReadFile(out) == payload) << "bytes differ";
    CliResult entries = Cache({"entries", "p", "--json"});
    ASSERT_TRUE(Succeeded(entries));
    auto list = nlohmann::json::parse(entries.out);
    ASSERT_EQ(list.size(), 1u) << "the entry is local to host B now";
    EXPECT_EQ(list[0]["token_count"], 64);
    CliResult status = Cache({"status", "p", "--json"});
    ASSERT_TRUE(Succeeded(status));
    auto remote = nlohmann::json::parse(status.out)["remote"];
    EXPECT_EQ(remote["hits"], 1);
    EXPECT_EQ(remote["mode"], "read-only");
  }
  CliResult status = Cache({"status", "p", "--json"});
  ASSERT_TRUE(Succeeded(status));
  EXPECT_EQ(nlohmann::json::parse(status.out)["remote"]["sent"], 1);
}

TEST_F(CliRemoteTest, ChunksPutOnOneHostAreMatchedOnAnotherThroughRedis) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M", "--remote", redis_->unix_url()})));
  std::string tokens;
  for (int t = 1; t <= 1000; ++t) tokens += (t > 1 ? "," : "") + std::to_string(t * 3);
  std::string kv;
  for (int c = 0; c < 62; ++c) kv += std::string(100, static_cast<char>('A' + c % 26));
  {
    std::ofstream(files_.Join("prompt.txt")) << tokens;
    std::ofstream(files_.Join("kv.bin"), std::ios::binary) << kv;
  }
  // cortex exits as soon as the chunks are stored: their write-through is not lost.
  ASSERT_TRUE(Succeeded(Cache({"put-chunks", "p", "--tokens-file", files_.Join("prompt.txt"),
                               "--file", files_.Join("kv.bin"), "--namespace", "llama/fp16"})));
  EXPECT_EQ(redis_->Keys("kvc:{p:chunk:*").size(), 62u);

  OtherHost b(b_home_->path(), b_prefix_);
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M", "--remote", redis_->tcp_url(),
                               "--remote-mode", "read-only"})));
  const std::vector<std::string> match = {"match", "p", "--tokens-file", files_.Join("prompt.txt"),
                                          "--namespace", "llama/fp16"};
  CliResult first = Cache(match);
  ASSERT_TRUE(Succeeded(first));
  EXPECT_EQ(first.out, "Matched 992 of 1000 tokens in 'p' (62 chunks of 16 tokens)\n");
  CliResult status = Cache({"status", "p", "--json"});
  ASSERT_TRUE(Succeeded(status));
  EXPECT_EQ(nlohmann::json::parse(status.out)["remote"]["hits"], 62);
  // The chunks are host B's own now: with Redis gone, the answer is the same.
  redis_->Kill();
  CliResult local = Cache(match);
  ASSERT_TRUE(Succeeded(local));
  EXPECT_EQ(local.out, first.out);
}

TEST_F(CliRemoteTest, APasswordInTheUrlIsRefusedAndNothingIsCreated) {
  CliResult r = Cache({"create", "p", "--size", "1M", "--remote", "redis://:hunter2@127.0.0.1:1"});
  EXPECT_TRUE(FailedWith(r, "CORTEX_REMOTE_PASSWORD"));
  EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << "the password is echoed";
  EXPECT_EQ(Cache({"status"}).out, "No cache pools found\n");
  EXPECT_TRUE(FailedWith(Cache({"create", "p", "--size", "1M", "--remote-mode", "read-only"}),
                         "need --remote"));
  EXPECT_TRUE(UsageError(Cache({"create", "p", "--size", "1M", "--remote", redis_->unix_url(),
                                "--remote-mode", "sometimes"})));
  EXPECT_EQ(Cache({"status"}).out, "No cache pools found\n");
}

TEST_F(CliRemoteTest, RemoteCommandSetsShowsAndRemoves) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  CliResult none = Cache({"remote", "p"});
  ASSERT_TRUE(Succeeded(none));
  EXPECT_EQ(none.out, "Pool 'p' has no remote\n");

  CliResult set = Cache({"remote", "p", redis_->tcp_url(), "--mode", "write-back", "--namespace",
                         "llama-8b"});
  ASSERT_TRUE(Succeeded(set));
  EXPECT_EQ(set.out, "Pool 'p' uses remote " + redis_->tcp_url() +
                         " (write-back, namespace llama-8b)\n");
  CliResult show = Cache({"remote", "p"});
  ASSERT_TRUE(Succeeded(show));
  EXPECT_NE(show.out.find("write-back, namespace llama-8b"), std::string::npos) << show.out;
  CliResult status = Cache({"status"});
  ASSERT_TRUE(Succeeded(status));
  EXPECT_NE(status.out.find("p remote: " + redis_->tcp_url()), std::string::npos) << status.out;

  EXPECT_TRUE(FailedWith(Cache({"remote", "nope", redis_->tcp_url()}), "not found"));
  EXPECT_TRUE(FailedWith(Cache({"remote", "p", "redis://u:pw@h:1"}), "CORTEX_REMOTE_PASSWORD"));
  EXPECT_TRUE(UsageError(Cache({"remote", "p", redis_->tcp_url(), "--mode", "bogus"})));
  // Refused changes left the remote as it was.
  EXPECT_EQ(Cache({"remote", "p"}).out, show.out);

  CliResult removed = Cache({"remote", "p", "none"});
  ASSERT_TRUE(Succeeded(removed));
  EXPECT_EQ(removed.out, "Pool 'p' has no remote now\n");
  EXPECT_EQ(Cache({"remote", "p"}).out, "Pool 'p' has no remote\n");
}

TEST_F(CliRemoteTest, HealthReportsARemoteThatIsDownWhileLocalOperationsGoOn) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M", "--remote", redis_->tcp_url()})));
  CliResult up = Cache({"health", "p"});
  ASSERT_TRUE(Succeeded(up));
  EXPECT_NE(up.out.find("  Remote: " + redis_->tcp_url() + " (write-through, namespace p): "
                        "reachable\n"),
            std::string::npos)
      << up.out;
  redis_->Kill();
  CliResult put = RunCortexWithin({"cache", "put", "p", "2"}, "bytes",
                                  std::chrono::milliseconds(5000));
  ASSERT_TRUE(Succeeded(put));
  ASSERT_TRUE(Succeeded(Cache({"get", "p", "2"})));
  CliResult down = Cache({"health", "p"});
  ASSERT_TRUE(Succeeded(down)) << "the pool itself is healthy";
  EXPECT_NE(down.out.find("UNREACHABLE"), std::string::npos) << down.out;
  EXPECT_NE(down.out.find("Remote last failure:"), std::string::npos) << down.out;
  CliResult json = Cache({"health", "p", "--json"});
  ASSERT_TRUE(Succeeded(json));
  auto remote = nlohmann::json::parse(json.out)["stats"]["remote"];
  EXPECT_EQ(remote["reachable"], false);
  EXPECT_GE(remote["failures"].get<int>(), 1);
  EXPECT_GE(remote["dropped"].get<int>(), 1);
}

}  // namespace
}  // namespace kvcache::testing
