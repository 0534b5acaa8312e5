// The mount with a pool that has a remote: a file another host put is read through from
// Redis on open, files written through the mount reach Redis from the daemon, and the
// match file continues a prompt with chunks another host stored.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <numeric>
#include <thread>

#include "kvcache/prefix.h"

#include "mount_fixture.h"
#include "support/redis_server.h"

namespace kvcache::testing {
namespace {

class MountRemoteTest : public MountedTest {
 protected:
  void SetUp() override {
    if (!RedisServer::Available()) GTEST_SKIP() << "redis-server is not installed";
    MountedTest::SetUp();
    redis_ = std::make_unique<RedisServer>();
    ASSERT_TRUE(redis_->Start());
    CreatePool("p", 16 << 20);
    ASSERT_TRUE(manager().SetRemote("p", RemoteConfig{redis_->unix_url()}).ok());
    a_prefix_ = shm_prefix_ + "a_";
  }
  void TearDown() override {
    a_.reset();
    UnlinkSegmentsWithPrefix(a_prefix_);
    MountedTest::TearDown();
    redis_.reset();
  }
  // Another host: its own home and prefix, the same Redis and namespace.
  Manager& A() {
    if (a_ == nullptr) {
      ManagerOptions o;
      o.home = a_home_.path();
      o.shm_prefix = a_prefix_;
      a_ = std::make_unique<Manager>(o);
      PoolConfig config;
      config.name = "p";
      config.size_bytes = 16 << 20;
      EXPECT_TRUE(a_->CreatePool(config).ok());
      EXPECT_TRUE(a_->SetRemote("p", RemoteConfig{redis_->unix_url()}).ok());
    }
    return *a_;
  }

  std::unique_ptr<RedisServer> redis_;
  TempDir a_home_;
  std::string a_prefix_;
  std::unique_ptr<Manager> a_;
};

TEST_F(MountRemoteTest, ReadingAFileAnotherHostPutServesItFromRedis) {
  std::vector<std::byte> data = Pattern(5, 200000);
  ASSERT_TRUE(A().Put("p", 5, data, 1).ok());
  ASSERT_TRUE(A().FlushRemote("p", 2000).ok());
  EXPECT_EQ(manager().Stat("p", 5).status().code(), Code::kNotFound);
  struct stat st;
  EXPECT_NE(stat(Path("p/5").c_str(), &st), 0) << "a stat does not fetch";
  std::vector<std::byte> back;
  ASSERT_EQ(ReadFile(Path("p/5"), &back), 0);
  EXPECT_TRUE(back == data);
  EXPECT_TRUE(manager().Stat("p", 5).ok()) << "now local";
  EXPECT_EQ(ReadFile(Path("p/6"), &back), ENOENT);
}

TEST_F(MountRemoteTest, TheDaemonSendsFilesWrittenThroughTheMount) {
  std::vector<std::byte> data = Pattern(6, 70000);
  ASSERT_EQ(WriteFile(Path("p/9"), data), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline && !redis_->Get("kvc:{p:9}").has_value()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(redis_->Get("kvc:{p:9}").has_value());
  auto got = A().Get("p", 9);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
}

TEST_F(MountRemoteTest, TheMatchFileServesChunksAnotherHostStored) {
  std::vector<uint32_t> prompt(1000);
  std::iota(prompt.begin(), prompt.end(), 5);
  std::vector<std::vector<std::byte>> bytes;
  for (int c = 0; c < 62; ++c) bytes.push_back(Pattern(700 + c, 2000));
  std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
  ASSERT_TRUE(A().StoreChunks("p", "model-a", prompt, spans).ok());
  ASSERT_TRUE(A().FlushRemote("p", 5000).ok());

  int fd = open(Path("p/match").c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << errno;
  const std::string request = "namespace=model-a\n" + FormatTokenList(prompt) + "\n";
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string answer(1 << 16, '\0');
  ssize_t n = pread(fd, answer.data(), answer.size(), 0);
  close(fd);
  ASSERT_GT(n, 0) << errno;
  answer.resize(static_cast<size_t>(n));
  EXPECT_EQ(answer.substr(0, answer.find("chunk ")),
            "matched_tokens 992\nasked_tokens 1000\nchunk_tokens 16\nchunks 62\n");
  // Served from Redis and kept: the daemon's pool holds them now, byte for byte.
  auto chunks = manager().Chunks("p");
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(chunks->size(), 62u);
  auto m = manager().Match("p", "model-a", prompt);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->chunks.size(), 62u);
  for (size_t c = 0; c < 62; ++c) {
    EXPECT_TRUE(std::ranges::equal(m->chunks[c].data(), bytes[c])) << c;
  }
}

}  // namespace
}  // namespace kvcache::testing
