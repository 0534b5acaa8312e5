// The remote tier against a real redis-server: two "hosts" (two homes and shm
// prefixes on this machine) sharing one Redis, write-through, write-back, read-only,
// read-through, pieces, damaged values, a remote that dies and comes back, passwords.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "redis_client.h"
#include "remote_format.h"
#include "sanitizers.h"
#include "support/redis_server.h"
#include "support/test_env.h"
#include "support/two_hosts.h"

namespace kvcache::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- URLs and modes

TEST(RemoteUrlTest, AcceptsTcpAndUnixForms) {
  auto tcp = ParseRemoteUrl("redis://cache.example:6380/2");
  ASSERT_TRUE(tcp.ok()) << tcp.status().ToString();
  EXPECT_EQ(tcp->host, "cache.example");
  EXPECT_EQ(tcp->port, 6380);
  EXPECT_EQ(tcp->db, 2u);
  EXPECT_EQ(tcp->ToString(), "redis://cache.example:6380/2");

  auto v6 = ParseRemoteUrl("redis://[::1]:6379");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "redis://[::1]:6379");

  auto unix_url = ParseRemoteUrl("unix:///run/redis/redis.sock?db=3");
  ASSERT_TRUE(unix_url.ok()) << unix_url.status().ToString();
  EXPECT_EQ(unix_url->socket_path, "/run/redis/redis.sock");
  EXPECT_EQ(unix_url->db, 3u);
  EXPECT_EQ(unix_url->ToString(), "unix:///run/redis/redis.sock?db=3");
}

TEST(RemoteUrlTest, RefusesPasswordsAndBadForms) {
  for (const char* bad :
       {"redis://:secret@127.0.0.1:6379", "redis://user:secret@host:6379", "redis://host",
        "redis://host:0", "redis://host:70000", "redis://host:6379/x", "http://host:6379",
        "unix://relative.sock", "unix:///a.sock?db=x", "redis://::1:6379", "redis://:6379",
        "unix://user@/a.sock", ""}) {
    auto r = ParseRemoteUrl(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    }
  }
  auto secret = ParseRemoteUrl("redis://:hunter2@127.0.0.1:6379");
  ASSERT_FALSE(secret.ok());
  EXPECT_NE(secret.status().message().find("CORTEX_REMOTE_PASSWORD"), std::string::npos);
  EXPECT_EQ(secret.status().message().find("hunter2"), std::string::npos)
      << "the password is echoed: " << secret.status().message();
}

TEST(RemoteUrlTest, ModesAndNamespaces) {
  EXPECT_EQ(*ParseRemoteMode("write-through"), RemoteMode::kWriteThrough);
  EXPECT_EQ(*ParseRemoteMode("write-back"), RemoteMode::kWriteBack);
  EXPECT_EQ(*ParseRemoteMode("read-only"), RemoteMode::kReadOnly);
  EXPECT_FALSE(ParseRemoteMode("writeback").ok());
  EXPECT_TRUE(ValidateRemoteNamespace("llama-3.1-8b/q4").ok());
  EXPECT_FALSE(ValidateRemoteNamespace("a{b}").ok());  // braces would break the hash tag
  EXPECT_FALSE(ValidateRemoteNamespace("").ok());
}

// ---------------------------------------------------------------- value format

std::string AsString(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST(RemoteFormatTest, PiecesRoundTripWithAttributes) {
  std::vector<std::byte> data = Pattern(3, 100000);
  std::vector<uint32_t> prefix = {1, 2, 3, 4, 5};
  std::string base = remote::EntryKey("ns", 42);
  EXPECT_EQ(base, "kvc:{ns:42}");
  auto pieces = remote::EncodePieces(base, 77, -3, std::as_bytes(std::span(prefix)),
                                     R"({"m":1})", data, 30000);
  ASSERT_EQ(pieces.size(), 4u);  // 32 + 20 + 7 + 100000 bytes in pieces of 30000
  auto record = remote::DecodePieces(base, pieces);
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->token_count, 77u);
  EXPECT_EQ(record->priority, -3);
  EXPECT_EQ(record->prefix_tokens, prefix);
  EXPECT_EQ(record->metadata, R"({"m":1})");
  EXPECT_TRUE(record->data == data);
}

TEST(RemoteFormatTest, DamagedForeignOrMixedValuesAreRefused) {
  std::vector<std::byte> data = Pattern(4, 5000);
  std::string base = remote::EntryKey("ns", 1);
  auto pieces = remote::EncodePieces(base, 1, 0, {}, "", data, 2000);
  ASSERT_EQ(pieces.size(), 3u);
  for (size_t at : {size_t{0}, size_t{9}, size_t{40}, size_t{64}, pieces[1].size() - 1}) {
    auto damaged = pieces;
    damaged[1][at] = static_cast<char>(damaged[1][at] ^ 0x5a);
    auto r = remote::DecodePieces(base, damaged);
    ASSERT_FALSE(r.ok()) << "byte " << at;
    EXPECT_EQ(r.status().code(), Code::kCorruption);
  }
  // Another entry's value under this key.
  auto other = remote::EncodePieces(remote::EntryKey("ns", 2), 1, 0, {}, "", data, 2000);
  EXPECT_EQ(remote::DecodePieces(base, other).status().code(), Code::kCorruption);
  // A piece of another write of the same entry.
  auto newer = remote::EncodePieces(base, 1, 0, {}, "", Pattern(5, 5000), 2000);
  auto mixed = pieces;
  mixed[2] = newer[2];
  EXPECT_EQ(remote::DecodePieces(base, mixed).status().code(), Code::kCorruption);
  // Not ours at all, and truncated.
  EXPECT_EQ(remote::CheckFirstPiece(base, "hello").status().code(), Code::kCorruption);
  EXPECT_EQ(remote::CheckFirstPiece(base, pieces[0].substr(0, 100)).status().code(),
            Code::kCorruption);
}

// ---------------------------------------------------------------- against Redis

// Host A is the fixture's home and prefix; host B has its own.
class RemoteTierTest : public TwoHostsTest {};

TEST_F(RemoteTierTest, WriteThroughFromOneHostIsReadThroughOnAnother) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  std::vector<std::byte> data = Pattern(1, 300000);
  PutOptions po;
  po.prefix_tokens = {9, 8, 7};
  po.priority = 2;
  po.metadata = R"({"model":"x"})";
  ASSERT_TRUE(manager().Put("p", 5, data, 123, po).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  EXPECT_TRUE(redis_->Get("kvc:{model-x:5}").has_value());
  EXPECT_EQ(Counters(manager(), "p").sent, 1u);

  // Host B, over TCP this time, same namespace, pool of another name.
  MakePool(B(), "q", 8 << 20, RemoteMode::kReadOnly, redis_->tcp_url());
  EXPECT_EQ(B().Stat("q", 5).status().code(), Code::kNotFound);  // Stat never asks
  auto got = B().Get("q", 5);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
  // Now local to B, with the attributes A put.
  auto info = B().Stat("q", 5);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->token_count, 123u);
  EXPECT_EQ(info->priority, 2);
  EXPECT_EQ(info->metadata, R"({"model":"x"})");
  EXPECT_EQ(info->prefix_length, 3u);
  RemoteCounters c = Counters(B(), "q");
  EXPECT_EQ(c.hits, 1u);
  EXPECT_EQ(c.sent, 0u);  // read-only, and warmed entries are never sent back
  // A view after the copy is local: no second remote hit.
  auto view = B().View("q", 5);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(AsString(view->data()) == AsString(data));
  EXPECT_EQ(Counters(B(), "q").hits, 1u);
}

TEST_F(RemoteTierTest, ViewOfALocalMissIsServedFromTheRemote) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  std::vector<std::byte> data = Pattern(2, 5000);
  ASSERT_TRUE(manager().Put("p", 8, data, 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  MakePool(B(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  auto view = B().View("p", 8);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_TRUE(AsString(view->data()) == AsString(data));
  // An id nobody has: a miss on both tiers.
  EXPECT_EQ(B().View("p", 9).status().code(), Code::kNotFound);
  EXPECT_EQ(Counters(B(), "p").misses, 1u);
}

TEST_F(RemoteTierTest, NamespacesKeepModelsApart) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url(), "model-a");
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  MakePool(B(), "p", 8 << 20, RemoteMode::kReadOnly, redis_->unix_url(), "model-b");
  EXPECT_EQ(B().Get("p", 1).status().code(), Code::kNotFound);
}

TEST_F(RemoteTierTest, LargeEntriesAreCutIntoPiecesAndReassembled) {
  ManagerOptions small_pieces = options();
  small_pieces.remote_piece_bytes = 64 << 10;
  manager_ = std::make_unique<Manager>(small_pieces);
  MakePool(manager(), "p", 16 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  std::vector<std::byte> data = Pattern(7, (1 << 20) + 333);
  ASSERT_TRUE(manager().Put("p", 3, data, 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  EXPECT_EQ(redis_->Keys("kvc:{model-x:3}*").size(), 17u);  // 1 MiB + 365 bytes / 64 KiB
  MakePool(B(), "p", 16 << 20, RemoteMode::kReadOnly, redis_->unix_url());
  auto got = B().Get("p", 3);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == data);
  EXPECT_EQ(Counters(B(), "p").hits, 1u);
}

TEST_F(RemoteTierTest, ACorruptOrForeignValueIsRefusedAndCounted) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  std::vector<std::byte> data = Pattern(9, 10000);
  ASSERT_TRUE(manager().Put("p", 1, data, 1).ok());
  ASSERT_TRUE(manager().Put("p", 2, data, 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  auto stored = redis_->Get("kvc:{model-x:1}");
  ASSERT_TRUE(stored.has_value());
  std::string damaged = *stored;
  damaged[5000] = static_cast<char>(damaged[5000] ^ 1);
  ASSERT_TRUE(redis_->Set("kvc:{model-x:1}", damaged));
  ASSERT_TRUE(redis_->Set("kvc:{model-x:2}", "not a kvcache value"));
  // Entry 1's value under entry 3's key: well formed, but not entry 3's.
  ASSERT_TRUE(redis_->Set("kvc:{model-x:3}", *stored));
  // Cut short, and damaged in its record header: refused before or after the payload
  // was read into a reservation, which is then never published.
  ASSERT_TRUE(redis_->Set("kvc:{model-x:4}", stored->substr(0, 6000)));
  std::string bad_header = *stored;
  bad_header[64 + 8] = static_cast<char>(bad_header[64 + 8] ^ 1);  // the priority
  ASSERT_TRUE(redis_->Set("kvc:{model-x:5}", bad_header));

  MakePool(B(), "p", 8 << 20, RemoteMode::kReadOnly, redis_->unix_url());
  for (uint64_t seq : {1, 2, 3, 4, 5}) {
    EXPECT_EQ(B().Get("p", seq).status().code(), Code::kNotFound) << seq;
    EXPECT_EQ(B().View("p", seq).status().code(), Code::kNotFound) << seq;
    EXPECT_EQ(B().Stat("p", seq).status().code(), Code::kNotFound) << "stored " << seq;
  }
  EXPECT_EQ(Counters(B(), "p").refused, 10u);
  EXPECT_EQ(Counters(B(), "p").hits, 0u);
}

// A one-piece value of several MiB is read from the socket straight into the pool:
// intact, GetInto hands out the same bytes as the pool then holds; damaged near its
// start or its end, it is refused and the pool never holds it.
TEST_F(RemoteTierTest, ALargeOnePieceValueIsServedOrRefusedWhole) {
  MakePool(manager(), "p", 32 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  const std::vector<std::byte> data = Pattern(11, (3 << 20) + 4321);
  for (uint64_t seq : {1, 2, 3}) ASSERT_TRUE(manager().Put("p", seq, data, 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  auto stored = redis_->Get("kvc:{model-x:2}");
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(redis_->Keys("kvc:{model-x:2}*").size(), 1u) << "meant as one piece";
  for (auto [seq, at] : {std::pair<uint64_t, size_t>{2, 200}, {3, stored->size() - 10}}) {
    std::string damaged = *stored;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x40);
    ASSERT_TRUE(redis_->Set("kvc:{model-x:" + std::to_string(seq) + "}", damaged));
  }

  MakePool(B(), "p", 32 << 20, RemoteMode::kReadOnly, redis_->unix_url());
  std::vector<std::byte> out(100, std::byte{1});
  ASSERT_TRUE(B().GetInto("p", 1, out).ok());
  EXPECT_TRUE(out == data);
  auto view = B().View("p", 1);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), view->data().begin(), view->data().end()));
  for (uint64_t seq : {2, 3}) {
    EXPECT_EQ(B().GetInto("p", seq, out).code(), Code::kNotFound) << seq;
    EXPECT_EQ(B().Stat("p", seq).status().code(), Code::kNotFound) << "stored " << seq;
  }
  EXPECT_EQ(Counters(B(), "p").refused, 2u);
  EXPECT_EQ(Counters(B(), "p").hits, 1u);
}

TEST_F(RemoteTierTest, AProcessThatPutsAndExitsAtOnceStillSends) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  std::vector<std::byte> data = Pattern(11, 4096);
  pid_t pid = fork();
  if (pid == 0) {
    bool ok = false;
    {
      Manager child(options());
      ok = child.Put("p", 77, data, 1).ok();
    }  // no flush call: the Manager's destruction sends
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(redis_->Get("kvc:{model-x:77}").has_value());
  EXPECT_EQ(Counters(manager(), "p").sent, 1u);  // the child recorded its count
}

TEST_F(RemoteTierTest, AForkedChildSendsThroughATierOfItsOwn) {
#ifdef KVC_TSAN
  GTEST_SKIP() << "ThreadSanitizer does not support threads started after a threaded fork";
#endif
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());  // the parent's tier runs
  // Its thread stays, idle: sent, and the count recorded (fork_locks_test covers forks
  // amid busy threads; here a busy one could hold a sanitizer runtime's allocator lock,
  // which older runtimes do not take around fork()).
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  {
    Manager reader(options());
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Counters(reader, "p").sent < 1 && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(20));
    }
    ASSERT_EQ(Counters(reader, "p").sent, 1u) << "the parent's tier never recorded its count";
  }
  pid_t pid = fork();
  if (pid == 0) {
    bool ok = manager().Put("p", 2, Pattern(2, 4096), 1).ok();
    manager_.reset();  // flushes the child's tier; the parent's is not waited on
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(redis_->Get("kvc:{model-x:2}").has_value());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  EXPECT_TRUE(redis_->Get("kvc:{model-x:1}").has_value());
}

TEST_F(RemoteTierTest, WriteBackSendsEntriesAsTheyAreEvicted) {
  MakePool(manager(), "p", 64 << 10, RemoteMode::kWriteBack, redis_->unix_url());
  ASSERT_TRUE(manager().Put("p", 0, Pattern(100, 4096), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  EXPECT_TRUE(redis_->Keys("kvc:*").empty()) << "write-back sends nothing before eviction";
  for (uint64_t seq = 1; seq < 40; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(100 + seq, 4096), seq).ok());
  }
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  auto stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  ASSERT_GT(stats->evictions, 20u);
  EXPECT_EQ(Counters(manager(), "p").sent, stats->evictions);
  // Every evicted entry comes back, byte for byte, from the remote.
  for (uint64_t seq = 0; seq < 10; ++seq) {
    ASSERT_EQ(manager().Stat("p", seq).status().code(), Code::kNotFound) << seq;
    auto got = manager().Get("p", seq);
    ASSERT_TRUE(got.ok()) << seq << ": " << got.status().ToString();
    EXPECT_TRUE(*got == Pattern(100 + seq, 4096)) << seq;
  }
}

TEST_F(RemoteTierTest, ReadOnlyNeverSends) {
  MakePool(manager(), "p", 64 << 10, RemoteMode::kReadOnly, redis_->unix_url());
  for (uint64_t seq = 0; seq < 40; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 4096), 1).ok());
  }
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  EXPECT_TRUE(redis_->Keys("*").empty());
  EXPECT_EQ(Counters(manager(), "p").sent, 0u);
}

// A put asks for the pool's remote once, as it reserves; it is sent exactly when that
// remote writes through, whether the put copies (Put) or is filled in place (Reserve).
TEST_F(RemoteTierTest, PutsAreSentExactlyWhileTheRemoteWritesThrough) {
  CreatePool("p", 1 << 20);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());  // no remote yet
  ASSERT_TRUE(manager().SetRemote("p", RemoteConfig{redis_->unix_url(),
                                                    RemoteMode::kWriteThrough, "m"}).ok());
  ASSERT_TRUE(manager().Put("p", 2, Pattern(2, 4096), 1).ok());
  auto r = manager().Reserve("p", 3, 4096, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<std::byte> three = Pattern(3, 4096);
  std::memcpy(r->data().data(), three.data(), three.size());
  ASSERT_TRUE(r->Commit().ok());
  ASSERT_TRUE(manager().SetRemote("p", RemoteConfig{redis_->unix_url(),
                                                    RemoteMode::kReadOnly, "m"}).ok());
  ASSERT_TRUE(manager().Put("p", 4, Pattern(4, 4096), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  EXPECT_FALSE(redis_->Get("kvc:{m:1}").has_value());
  EXPECT_TRUE(redis_->Get("kvc:{m:2}").has_value());
  EXPECT_TRUE(redis_->Get("kvc:{m:3}").has_value());
  EXPECT_FALSE(redis_->Get("kvc:{m:4}").has_value());
}

TEST_F(RemoteTierTest, ARemoteThatDiesNeverSlowsLocalOperationsAndIsUsedAgainWhenBack) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->tcp_url());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  redis_->Kill();

  // Puts, hits and misses go on; none takes longer than the timeout (plus slack for a
  // loaded machine).
  milliseconds slowest{0};
  for (uint64_t seq = 10; seq < 60; ++seq) {
    auto t0 = Clock::now();
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 4096), 1).ok());
    ASSERT_TRUE(manager().Get("p", seq).ok());
    EXPECT_EQ(manager().Get("p", 1000 + seq).status().code(), Code::kNotFound);
    slowest = std::max(slowest, std::chrono::duration_cast<milliseconds>(Clock::now() - t0));
  }
  RecordProperty("slowest_ms", static_cast<int>(slowest.count()));
  EXPECT_LT(slowest.count(), 600) << "a local operation waited on the dead remote";
  auto health = manager().Health("p");
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(health->healthy);  // the pool itself is fine
  ASSERT_TRUE(health->stats.remote.reachable.has_value());
  EXPECT_FALSE(*health->stats.remote.reachable);
  EXPECT_GT(health->stats.remote.counters.failures, 0u);

  // Back on the same port: traffic resumes by itself, after the backoff.
  ASSERT_TRUE(redis_->Start());
  auto deadline = Clock::now() + std::chrono::seconds(10);
  bool sent = false;
  for (uint64_t seq = 100; Clock::now() < deadline && !sent; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 4096), 1).ok());
    std::this_thread::sleep_for(milliseconds(100));
    sent = redis_->Get("kvc:{model-x:" + std::to_string(seq) + "}").has_value();
  }
  EXPECT_TRUE(sent) << "puts did not reach the restarted remote";
  health = manager().Health("p");
  ASSERT_TRUE(health.ok());
  EXPECT_TRUE(health->stats.remote.reachable.value_or(false));
}

TEST_F(RemoteTierTest, ARemoteThatStopsAnsweringCostsAtMostTheTimeout) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->tcp_url());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  redis_->Pause();  // connections are accepted by the kernel; nothing answers
  milliseconds slowest{0};
  for (uint64_t seq = 10; seq < 40; ++seq) {
    auto t0 = Clock::now();
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 4096), 1).ok());
    EXPECT_EQ(manager().Get("p", 1000 + seq).status().code(), Code::kNotFound);
    slowest = std::max(slowest, std::chrono::duration_cast<milliseconds>(Clock::now() - t0));
  }
  // One miss waits out the 100 ms timeout; the next ones fail at once during the backoff.
  // (The bound leaves room for a loaded machine; a call without a timeout never returns.)
  RecordProperty("slowest_ms", static_cast<int>(slowest.count()));
  EXPECT_LT(slowest.count(), 600);
  EXPECT_GE(slowest.count(), 90) << "the first miss did ask the remote";
  auto health = manager().Health("p");
  ASSERT_TRUE(health.ok());
  EXPECT_FALSE(health->stats.remote.reachable.value_or(true));
  redis_->Resume();
  // Paused while 30 puts were queued: they are sent once it answers again.
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline && !redis_->Get("kvc:{model-x:39}").has_value()) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(redis_->Get("kvc:{model-x:39}").has_value());
}

// A flush while the remote is down returns at once (nothing waits for the remote to come
// back), and what was queued stays queued: the sender sends it when the remote is back.
TEST_F(RemoteTierTest, AFlushWhileTheRemoteIsDownKeepsWhatIsQueued) {
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->tcp_url());
  redis_->Kill();  // refused at once: the sender backs off without waiting out a timeout
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 4096), 1).ok());
  }
  auto down = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < down && Counters(manager(), "p").failures == 0) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_GT(Counters(manager(), "p").failures, 0u);
  auto t0 = Clock::now();
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  EXPECT_LT(std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count(), 600)
      << "a flush waited for a remote that is down";
  EXPECT_EQ(Counters(manager(), "p").dropped, 0u);

  ASSERT_TRUE(redis_->Start());
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline && !redis_->Get("kvc:{model-x:20}").has_value()) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  for (uint64_t seq = 1; seq <= 20; ++seq) {
    EXPECT_TRUE(redis_->Get("kvc:{model-x:" + std::to_string(seq) + "}").has_value()) << seq;
  }
}

TEST_F(RemoteTierTest, PasswordComesFromTheEnvironment) {
  RedisServer locked({.tcp = false, .password = "s3cret pass"});
  ASSERT_TRUE(locked.Start());
  unsetenv(kRemotePasswordEnv);
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, locked.unix_url());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 1000).ok());
  EXPECT_FALSE(locked.Get("kvc:{model-x:1}").has_value());
  EXPECT_GT(Counters(manager(), "p").failures, 0u);

  setenv(kRemotePasswordEnv, "s3cret pass", 1);
  Manager with_password(options());
  ASSERT_TRUE(with_password.Put("p", 2, Pattern(2, 100), 1).ok());
  ASSERT_TRUE(with_password.FlushRemote("p", 2000).ok());
  unsetenv(kRemotePasswordEnv);
  EXPECT_TRUE(locked.Get("kvc:{model-x:2}").has_value());
}

TEST_F(RemoteTierTest, RemoteSettingsLiveInTheCatalogAndFollowChanges) {
  CreatePool("p", 1 << 20);
  EXPECT_FALSE(manager().GetRemoteStatus("p")->configured);
  EXPECT_EQ(manager().SetRemote("p", RemoteConfig{"redis://:pw@h:1", RemoteMode::kReadOnly, ""})
                .code(),
            Code::kInvalidArgument);
  EXPECT_FALSE(manager().GetRemoteStatus("p")->configured);
  EXPECT_EQ(manager().SetRemote("nope", RemoteConfig{redis_->unix_url()}).code(),
            Code::kNotFound);
  ASSERT_TRUE(manager().SetRemote("p", RemoteConfig{redis_->unix_url(), RemoteMode::kWriteBack,
                                                    ""}).ok());
  auto st = manager().GetRemoteStatus("p");
  ASSERT_TRUE(st->configured);
  EXPECT_EQ(st->config.mode, RemoteMode::kWriteBack);
  EXPECT_EQ(st->config.name_space, "p");  // the default
  // Another process's view (a second Manager on the same home) sees it.
  Manager other(options());
  EXPECT_EQ(other.GetRemoteStatus("p")->config.url, redis_->unix_url());
  ASSERT_TRUE(manager().SetRemote("p", std::nullopt).ok());
  EXPECT_FALSE(other.GetRemoteStatus("p")->configured);
}

// A full Redis (maxmemory reached, noeviction) refuses SETs with OOM: local puts and
// gets go on untouched, each refused entry is counted as a failure and as dropped (it
// is not queued again), and health names the server's reason.
TEST_F(RemoteTierTest, AFullRemoteRefusesEntriesWhichAreCountedWhileLocalPutsGoOn) {
  ASSERT_TRUE(redis_->Command({"CONFIG", "SET", "maxmemory-policy", "noeviction"}));
  MakePool(manager(), "p", 16 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  // Full from here on: what is used now is all it may use.
  ASSERT_TRUE(redis_->Command({"CONFIG", "SET", "maxmemory", "1"}));
  constexpr uint64_t kEntries = 20;
  for (uint64_t seq = 10; seq < 10 + kEntries; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 200000), 1).ok());
  }
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  for (uint64_t seq = 10; seq < 10 + kEntries; ++seq) {
    auto got = manager().Get("p", seq);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == Pattern(seq, 200000));
    EXPECT_FALSE(redis_->Get("kvc:{model-x:" + std::to_string(seq) + "}").has_value());
  }
  RemoteCounters c = Counters(manager(), "p");
  EXPECT_EQ(c.sent, 1u);
  EXPECT_EQ(c.dropped, kEntries);
  EXPECT_GE(c.failures, kEntries);
  auto status = manager().GetRemoteStatus("p");
  ASSERT_TRUE(status.ok());
  EXPECT_NE(status->last_error.find("OOM"), std::string::npos) << status->last_error;
}

// ---------------------------------------------------------------- against a Redis Cluster

// Three masters on loopback; hosts A (the fixture) and B as in RemoteTierTest.
class RedisClusterTest : public RemoteTierTest {
 protected:
  void SetUp() override {
    RemoteTierTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    cluster_ = std::make_unique<RedisCluster>(3);
    ASSERT_TRUE(cluster_->Start());
  }
  void TearDown() override {
    cluster_.reset();
    RemoteTierTest::TearDown();
  }
  std::string NodeUrl(int i) { return cluster_->node(i).tcp_url(); }
  // The nodes whose own key space holds keys matching `pattern` (KEYS is per node).
  std::vector<int> NodesHolding(const std::string& pattern) {
    std::vector<int> out;
    for (int i = 0; i < cluster_->size(); ++i) {
      auto keys = cluster_->node(i).Command({"KEYS", pattern});
      if (keys && !keys->empty()) out.push_back(i);
    }
    return out;
  }
  std::string NodeId(int i) {
    auto id = cluster_->node(i).Command({"CLUSTER", "MYID"});
    return id && !id->empty() && (*id)[0] ? *(*id)[0] : std::string();
  }

  std::unique_ptr<RedisCluster> cluster_;
};

TEST_F(RedisClusterTest, KeyHashSlotAgreesWithTheCluster) {
  std::vector<std::string> keys = {"", "foo", "123456789", "{user1000}.following", "a{}b",
                                   "{}x", "x{y", "x}{y}", "kvc:{model-x:5}"};
  for (uint64_t seq = 0; seq < 50; ++seq) {
    std::string base = remote::EntryKey("m", seq * 7919);
    keys.push_back(base);
    keys.push_back(remote::PieceKey(base, 3));
  }
  for (const std::string& key : keys) {
    auto slot = cluster_->node(0).Command({"CLUSTER", "KEYSLOT", key});
    ASSERT_TRUE(slot && slot->size() == 1 && (*slot)[0]) << key;
    EXPECT_EQ(std::to_string(remote::KeyHashSlot(key)), *(*slot)[0]) << key;
  }
}

// Entries hash to slots on every node: each is stored whole on the node that serves
// its slot (following MOVED from the node the URL names), and another host pointed at
// a different node reads every one back.
TEST_F(RedisClusterTest, EntriesSpreadOverTheNodesAndAreReadThroughFromAnyNode) {
  ManagerOptions small_pieces = options();
  small_pieces.remote_piece_bytes = 64 << 10;  // several pieces per entry
  manager_ = std::make_unique<Manager>(small_pieces);
  MakePool(manager(), "p", 32 << 20, RemoteMode::kWriteThrough, NodeUrl(0));
  constexpr uint64_t kEntries = 24;
  for (uint64_t seq = 1; seq <= kEntries; ++seq) {
    ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 150000), seq).ok());
  }
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  RemoteCounters a = Counters(manager(), "p");
  EXPECT_EQ(a.sent, kEntries);
  EXPECT_EQ(a.failures, 0u);
  std::set<int> used;
  for (uint64_t seq = 1; seq <= kEntries; ++seq) {
    std::string base = remote::EntryKey("model-x", seq);
    std::vector<int> holders = NodesHolding(base + "*");
    ASSERT_EQ(holders.size(), 1u) << "entry " << seq << ": all its pieces on one node";
    EXPECT_EQ(holders[0], cluster_->NodeOfSlot(remote::KeyHashSlot(base))) << seq;
    used.insert(holders[0]);
  }
  EXPECT_EQ(used.size(), 3u) << "24 entries use every node";

  MakePool(B(), "q", 32 << 20, RemoteMode::kReadOnly, NodeUrl(2));
  for (uint64_t seq = 1; seq <= kEntries; ++seq) {
    auto got = B().Get("q", seq);
    ASSERT_TRUE(got.ok()) << seq << ": " << got.status().ToString();
    EXPECT_TRUE(*got == Pattern(seq, 150000)) << seq;
  }
  RemoteCounters b = Counters(B(), "q");
  EXPECT_EQ(b.hits, kEntries);
  EXPECT_EQ(b.failures, 0u);
  EXPECT_EQ(B().Get("q", kEntries + 1).status().code(), Code::kNotFound);
}

// Token chunks too: each chunk hashes to a slot of its own (its pieces with it), so a
// prompt's chunks spread over the nodes; a match on another host pointed at another
// node reads them all back in pipelines that follow MOVED, pieces and all.
TEST_F(RedisClusterTest, ChunksSpreadOverTheNodesAndAreMatchedFromAnyNode) {
  ManagerOptions small_pieces = options();
  small_pieces.remote_piece_bytes = 64 << 10;  // three pieces per chunk
  manager_ = std::make_unique<Manager>(small_pieces);
  MakePool(manager(), "p", 32 << 20, RemoteMode::kWriteThrough, NodeUrl(0));
  std::vector<uint32_t> prompt(480);
  for (size_t t = 0; t < prompt.size(); ++t) prompt[t] = static_cast<uint32_t>(t * 13 + 1);
  std::vector<std::vector<std::byte>> bytes;
  for (int c = 0; c < 30; ++c) bytes.push_back(Pattern(900 + c, 150000));
  std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
  ASSERT_TRUE(manager().StoreChunks("p", "m", prompt, spans).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  EXPECT_EQ(Counters(manager(), "p").sent, 30u);
  std::set<int> used;
  for (int i : NodesHolding("kvc:{model-x:chunk:*")) used.insert(i);
  EXPECT_EQ(used.size(), 3u) << "30 chunks use every node";

  ManagerOptions b = BOptions();
  b.remote_piece_bytes = 64 << 10;
  b.remote_timeout_ms = 2000;  // routing is tested here, not speed on a loaded machine
  b_ = std::make_unique<Manager>(b);
  MakePool(B(), "q", 32 << 20, RemoteMode::kReadOnly, NodeUrl(2));
  auto m = B().Match("q", "m", prompt);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->matched_tokens, 480u);
  ASSERT_EQ(m->chunks.size(), 30u);
  for (size_t c = 0; c < 30; ++c) {
    EXPECT_TRUE(std::ranges::equal(m->chunks[c].data(), bytes[c])) << c;
  }
  RemoteCounters got = Counters(B(), "q");
  EXPECT_EQ(got.hits, 30u);
  EXPECT_EQ(got.failures, 0u);
}

// A slot being migrated: its old node answers ASK for keys it does not hold, and the
// entry is stored on, and read back from, the node importing the slot.
TEST_F(RedisClusterTest, ASlotBeingMigratedIsFollowedThroughAsk) {
  uint64_t seq = 1;
  while (cluster_->NodeOfSlot(remote::KeyHashSlot(remote::EntryKey("model-x", seq))) != 0) ++seq;
  std::string base = remote::EntryKey("model-x", seq);
  std::string slot = std::to_string(remote::KeyHashSlot(base));
  ASSERT_TRUE(cluster_->node(1).Command({"CLUSTER", "SETSLOT", slot, "IMPORTING", NodeId(0)}));
  ASSERT_TRUE(cluster_->node(0).Command({"CLUSTER", "SETSLOT", slot, "MIGRATING", NodeId(1)}));

  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, NodeUrl(0));
  ASSERT_TRUE(manager().Put("p", seq, Pattern(seq, 5000), 1).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  EXPECT_EQ(Counters(manager(), "p").sent, 1u);
  EXPECT_EQ(NodesHolding(base + "*"), std::vector<int>{1});

  MakePool(B(), "q", 8 << 20, RemoteMode::kReadOnly, NodeUrl(0));
  auto got = B().Get("q", seq);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == Pattern(seq, 5000));
}

}  // namespace
}  // namespace kvcache::testing
