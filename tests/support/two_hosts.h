// Two "hosts" sharing one Redis: host A is the fixture's own home and shm prefix, host
// B (B()) a Manager over another home and prefix on this machine, and redis_ a
// redis-server of the test's own, reachable over TCP and a unix socket. Skips when
// redis-server is not installed.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "kvcache/manager.h"
#include "support/redis_server.h"
#include "support/test_env.h"

namespace kvcache::testing {

class TwoHostsTest : public IsolatedTest {
 protected:
  void SetUp() override {
    if (!RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
    IsolatedTest::SetUp();
    redis_ = std::make_unique<RedisServer>(RedisServer::Options{.tcp = true});
    ASSERT_TRUE(redis_->Start());
    b_home_ = std::make_unique<TempDir>();
    b_prefix_ = shm_prefix_ + "b_";
  }
  void TearDown() override {
    b_.reset();
    UnlinkSegmentsWithPrefix(b_prefix_);
    b_home_.reset();
    IsolatedTest::TearDown();
    redis_.reset();
  }

  ManagerOptions BOptions() const {
    ManagerOptions o;
    o.home = b_home_->path();
    o.shm_prefix = b_prefix_;
    return o;
  }
  Manager& B() {
    if (b_ == nullptr) b_ = std::make_unique<Manager>(BOptions());
    return *b_;
  }

  // Creates pool `name` on `m` with a remote at `url` in `mode`, under `name_space`.
  void MakePool(Manager& m, const std::string& name, uint64_t size, RemoteMode mode,
                const std::string& url, const std::string& name_space = "model-x",
                uint32_t max_sequences = kDefaultMaxSequences) {
    PoolConfig config;
    config.name = name;
    config.size_bytes = size;
    config.max_sequences = max_sequences;
    Status s = m.CreatePool(config);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = m.SetRemote(name, RemoteConfig{url, mode, name_space});
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  RemoteCounters Counters(Manager& m, const std::string& pool) {
    auto st = m.GetRemoteStatus(pool);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? st->counters : RemoteCounters{};
  }

  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<TempDir> b_home_;
  std::string b_prefix_;
  std::unique_ptr<Manager> b_;
};

}  // namespace kvcache::testing
