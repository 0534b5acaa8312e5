// Token chunks and the remote tier, against a real redis-server: chunks stored by one
// "host" (a home and shm prefix of its own) are matched by another through Redis,
// write-back sends evicted chunks, a damaged or foreign chunk value is refused and
// ends the match, and a remote that is down or silent leaves the local answer.
#include <gtest/gtest.h>

#include <chrono>
#include <numeric>
#include <thread>

#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "remote_format.h"
#include "support/redis_server.h"
#include "support/test_env.h"
#include "support/two_hosts.h"

namespace kvcache::testing {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kChunk = 16;  // the default chunk size, in tokens

std::vector<uint32_t> Prompt(size_t n, uint32_t from) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

// The KV bytes of chunk c of a prompt: distinct per chunk and per `seed`.
std::vector<std::vector<std::byte>> ChunkBytes(uint64_t seed, size_t chunks, size_t size) {
  std::vector<std::vector<std::byte>> out;
  for (size_t c = 0; c < chunks; ++c) out.push_back(Pattern(seed * 1000 + c, size));
  return out;
}

std::vector<std::span<const std::byte>> Spans(const std::vector<std::vector<std::byte>>& b) {
  return {b.begin(), b.end()};
}

TEST(RemoteChunkFormatTest, ChunkRecordsRoundTripInPiecesAndForeignValuesAreRefused) {
  std::vector<uint32_t> tokens(16);
  std::iota(tokens.begin(), tokens.end(), 40);
  const std::vector<std::byte> data = Pattern(77, 50000);
  const std::string key = remote::ChunkKey("m", 0x1234, 0xabcdef);
  EXPECT_EQ(key, "kvc:{m:chunk:0000000000001234:0000000000abcdef}");
  auto pieces = remote::EncodeChunkPieces(key, 0xabcdef, 0x99, 7, std::as_bytes(std::span(tokens)),
                                          "llama/fp16", data, 20000);
  ASSERT_EQ(pieces.size(), 3u);  // 48 + 64 + 10 + 50000 bytes in pieces of 20000
  auto chunk = remote::DecodeChunkPieces(key, pieces);
  ASSERT_TRUE(chunk.ok()) << chunk.status().ToString();
  EXPECT_EQ(chunk->chain_hash, 0xabcdefu);
  EXPECT_EQ(chunk->parent_hash, 0x99u);
  EXPECT_EQ(chunk->position, 7u);
  EXPECT_EQ(chunk->tokens, tokens);
  EXPECT_EQ(chunk->name_space, "llama/fp16");
  EXPECT_TRUE(chunk->data == data);

  // A damaged piece, another chunk's pieces, an entry's value: all refused.
  auto damaged = pieces;
  damaged[2][100] = static_cast<char>(damaged[2][100] ^ 4);
  EXPECT_EQ(remote::DecodeChunkPieces(key, damaged).status().code(), Code::kCorruption);
  const std::string other = remote::ChunkKey("m", 0x1234, 0xabcdee);
  EXPECT_EQ(remote::DecodeChunkPieces(other, pieces).status().code(), Code::kCorruption);
  auto entry = remote::EncodePieces(key, 16, 0, {}, "", data, 0);
  auto as_chunk = remote::DecodeChunkPieces(key, entry);
  ASSERT_FALSE(as_chunk.ok());
  EXPECT_NE(as_chunk.status().message().find("not a chunk record"), std::string::npos)
      << as_chunk.status().ToString();
}

class RemoteChunkTest : public TwoHostsTest {
 protected:
  // H_c of `tokens` under chunk namespace `ns`, and its Redis key.
  static uint64_t HashOf(std::string_view ns, std::span<const uint32_t> tokens, size_t c) {
    uint64_t h = ChunkChainSeed(ns);
    for (size_t i = 0; i <= c; ++i) h = ChainHash(h, tokens.subspan(i * kChunk, kChunk));
    return h;
  }
  static std::string KeyOf(std::string_view ns, std::span<const uint32_t> tokens, size_t c) {
    return remote::ChunkKey("model-x", ChunkChainSeed(ns), HashOf(ns, tokens, c));
  }
};

TEST_F(RemoteChunkTest, ChunksStoredOnOneHostAreMatchedOnAnotherThroughRedis) {
  const std::vector<uint32_t> prompt = Prompt(1000, 7);
  const auto bytes = ChunkBytes(1, 62, 3000);
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  auto stored = manager().StoreChunks("p", "llama/fp16", prompt, Spans(bytes));
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  EXPECT_EQ(Counters(manager(), "p").sent, 62u);
  EXPECT_EQ(redis_->Keys("kvc:{model-x:chunk:*").size(), 62u);
  EXPECT_TRUE(redis_->Get(KeyOf("llama/fp16", prompt, 61)).has_value());
  // Storing them again sends nothing: they were cached already.
  ASSERT_TRUE(manager().StoreChunks("p", "llama/fp16", prompt, Spans(bytes)).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  EXPECT_EQ(Counters(manager(), "p").sent, 62u);

  // Host B, read-only, over TCP. It holds the first 10 chunks itself already.
  MakePool(B(), "q", 8 << 20, RemoteMode::kReadOnly, redis_->tcp_url());
  std::vector<std::vector<std::byte>> first(bytes.begin(), bytes.begin() + 10);
  ASSERT_TRUE(B().StoreChunks("q", "llama/fp16", std::span(prompt).first(160), Spans(first)).ok());
  {
    auto m = B().Match("q", "llama/fp16", prompt);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->matched_tokens, 992u);
    ASSERT_EQ(m->chunks.size(), 62u);
    for (size_t c = 0; c < 62; ++c) {
      ASSERT_TRUE(std::ranges::equal(m->chunks[c].data(), bytes[c])) << "chunk " << c;
    }
  }
  RemoteCounters after = Counters(B(), "q");
  EXPECT_EQ(after.hits, 52u) << "chunks 10..61 came from Redis";
  EXPECT_EQ(after.refused, 0u);
  // Now local: another match asks nothing of the remote.
  auto chunks = B().Chunks("q");
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(chunks->size(), 62u);
  {
    auto again = B().Match("q", "llama/fp16", prompt);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->matched_tokens, 992u);
  }
  EXPECT_EQ(Counters(B(), "q").hits, 52u);
  EXPECT_EQ(Counters(B(), "q").misses, 0u);
  // A prompt sharing 500 tokens gets the 31 whole chunks it shares; under another
  // namespace the same tokens match nothing, here or in Redis.
  std::vector<uint32_t> half(prompt.begin(), prompt.begin() + 500);
  half.push_back(99999);
  EXPECT_EQ(B().Match("q", "llama/fp16", half)->matched_tokens, 496u);
  EXPECT_EQ(B().Match("q", "mistral", prompt)->matched_tokens, 0u);
  EXPECT_EQ(Counters(B(), "q").misses, 1u);
  EXPECT_EQ(Counters(B(), "q").sent, 0u) << "read-only sends nothing back";
}

TEST_F(RemoteChunkTest, AWriteThroughHostReadsChunksThroughAsWell) {
  const std::vector<uint32_t> prompt = Prompt(320, 1);
  const auto bytes = ChunkBytes(2, 20, 1000);
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  ASSERT_TRUE(manager().StoreChunks("p", "n", prompt, Spans(bytes)).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  MakePool(B(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  {
    auto m = B().Match("p", "n", prompt);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->matched_tokens, 320u);
  }
  ASSERT_TRUE(B().FlushRemote("p", 5000).ok());
  EXPECT_EQ(Counters(B(), "p").hits, 20u);
  EXPECT_EQ(Counters(B(), "p").sent, 0u) << "chunks read from the remote are not sent back";
}

TEST_F(RemoteChunkTest, ALongPromptStoredInChunksReachesAHealthyRemoteWithoutDrops) {
  // A 128k-token prompt in 16-token chunks is 8,192 chunks queued at once: every one is
  // sent, none dropped for want of room in the send queue.
  constexpr size_t kChunks = 8192;
  const std::vector<uint32_t> prompt = Prompt(kChunks * kChunk, 3);
  const auto bytes = ChunkBytes(9, kChunks, 256);
  MakePool(manager(), "p", 64 << 20, RemoteMode::kWriteThrough, redis_->unix_url(), "model-x",
           2 * kChunks);
  auto stored = manager().StoreChunks("p", "n", prompt, Spans(bytes));
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_TRUE(manager().FlushRemote("p", 30000).ok());
  RemoteCounters c = Counters(manager(), "p");
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(c.sent, kChunks);
  EXPECT_EQ(redis_->Keys("kvc:{model-x:chunk:*").size(), kChunks);
}

TEST_F(RemoteChunkTest, WriteBackSendsEvictedChunksWhichComeBackByteForByte) {
  // Room for about 60 chunks of 4 KiB.
  MakePool(manager(), "p", 256 << 10, RemoteMode::kWriteBack, redis_->unix_url());
  const std::vector<uint32_t> first = Prompt(320, 1);
  const auto first_bytes = ChunkBytes(3, 20, 4000);
  ASSERT_TRUE(manager().StoreChunks("p", "n", first, Spans(first_bytes)).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 2000).ok());
  EXPECT_TRUE(redis_->Keys("kvc:*").empty()) << "write-back sends nothing before eviction";
  // Other prompts push the first one out.
  for (uint32_t p = 0; p < 6; ++p) {
    const std::vector<uint32_t> other = Prompt(320, 100000 * (p + 1));
    ASSERT_TRUE(manager().StoreChunks("p", "n", other, Spans(ChunkBytes(10 + p, 20, 4000))).ok());
  }
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  auto stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  ASSERT_GT(stats->evictions, 20u);
  EXPECT_EQ(Counters(manager(), "p").sent, stats->evictions);
  EXPECT_EQ(Counters(manager(), "p").dropped, 0u);
  EXPECT_TRUE(redis_->Get(KeyOf("n", first, 0)).has_value());
  EXPECT_TRUE(redis_->Get(KeyOf("n", first, 19)).has_value());

  // The first prompt is matched whole again: what is gone locally comes from Redis.
  auto m = manager().Match("p", "n", first);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->matched_tokens, 320u);
  ASSERT_EQ(m->chunks.size(), 20u);
  for (size_t c = 0; c < 20; ++c) {
    EXPECT_TRUE(std::ranges::equal(m->chunks[c].data(), first_bytes[c])) << "chunk " << c;
  }
  EXPECT_GE(Counters(manager(), "p").hits, 1u);
}

TEST_F(RemoteChunkTest, ADamagedOrForeignChunkValueIsRefusedAndEndsTheMatch) {
  const std::vector<uint32_t> prompt = Prompt(160, 1);
  const auto bytes = ChunkBytes(4, 10, 2000);
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->unix_url());
  ASSERT_TRUE(manager().StoreChunks("p", "n", prompt, Spans(bytes)).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  const std::string key5 = KeyOf("n", prompt, 5);
  auto value5 = redis_->Get(key5);
  ASSERT_TRUE(value5.has_value());

  MakePool(B(), "p", 8 << 20, RemoteMode::kReadOnly, redis_->unix_url());
  auto match_b = [&] {
    auto m = B().Match("p", "n", prompt);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? m->matched_tokens : 0;
  };
  // One KV byte of chunk 5 flipped: chunks 0..4 are served, 5 is refused.
  std::string damaged = *value5;
  damaged[damaged.size() - 10] = static_cast<char>(damaged[damaged.size() - 10] ^ 1);
  ASSERT_TRUE(redis_->Set(key5, damaged));
  EXPECT_EQ(match_b(), 5u * kChunk);
  EXPECT_EQ(Counters(B(), "p").refused, 1u);
  EXPECT_EQ(Counters(B(), "p").hits, 5u);
  ASSERT_EQ(B().Chunks("p")->size(), 5u) << "the refused chunk is not stored";

  // Chunk 6's value under chunk 5's key: intact, but another key's.
  ASSERT_TRUE(redis_->Set(key5, *redis_->Get(KeyOf("n", prompt, 6))));
  EXPECT_EQ(match_b(), 5u * kChunk);
  EXPECT_EQ(Counters(B(), "p").refused, 2u);

  // A well-formed value made for chunk 5's key, but holding other tokens (a forged or
  // colliding chunk): refused too.
  std::vector<uint32_t> other(kChunk, 424242);
  auto forged = remote::EncodeChunkPieces(key5, HashOf("n", prompt, 5), HashOf("n", prompt, 4),
                                          6, std::as_bytes(std::span(other)), "n", bytes[5], 0);
  ASSERT_EQ(forged.size(), 1u);
  ASSERT_TRUE(redis_->Set(key5, forged[0]));
  EXPECT_EQ(match_b(), 5u * kChunk);
  EXPECT_EQ(Counters(B(), "p").refused, 3u);

  // Put back as it was, the rest is served.
  ASSERT_TRUE(redis_->Set(key5, *value5));
  EXPECT_EQ(match_b(), 10u * kChunk);
  EXPECT_EQ(Counters(B(), "p").hits, 10u);
}

TEST_F(RemoteChunkTest, ARemoteDownOrSilentLeavesTheLocalAnswerWithinTheTimeout) {
  const std::vector<uint32_t> prompt = Prompt(1000, 1);
  const auto bytes = ChunkBytes(5, 62, 1000);
  MakePool(manager(), "p", 8 << 20, RemoteMode::kWriteThrough, redis_->tcp_url());
  ASSERT_TRUE(manager().StoreChunks("p", "n", prompt, Spans(bytes)).ok());
  ASSERT_TRUE(manager().FlushRemote("p", 5000).ok());
  // Host B holds the first 8 chunks itself.
  MakePool(B(), "p", 8 << 20, RemoteMode::kReadOnly, redis_->tcp_url());
  std::vector<std::vector<std::byte>> first(bytes.begin(), bytes.begin() + 8);
  ASSERT_TRUE(B().StoreChunks("p", "n", std::span(prompt).first(128), Spans(first)).ok());

  auto timed_match = [&](std::span<const uint32_t> tokens, milliseconds* took) -> uint64_t {
    auto t0 = Clock::now();
    auto m = B().Match("p", "n", tokens);
    *took = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? m->matched_tokens : 0;
  };
  // Silent: connections are accepted, nothing answers. The match waits out the
  // timeout, then answers what is local.
  redis_->Pause();
  milliseconds took{0};
  EXPECT_EQ(timed_match(prompt, &took), 128u);
  RecordProperty("silent_ms", static_cast<int>(took.count()));
  EXPECT_LT(took.count(), 600) << "the whole ask is bounded by the 100 ms timeout";
  EXPECT_GE(took.count(), 90) << "the match did ask the remote";
  EXPECT_GE(Counters(B(), "p").failures, 1u);
  // Answering again: once the backoff has passed, the match reads through again.
  redis_->Resume();
  const std::span<const uint32_t> part = std::span(prompt).first(480);
  uint64_t matched = 0;
  for (auto until = Clock::now() + std::chrono::seconds(5); Clock::now() < until;) {
    matched = timed_match(part, &took);
    if (matched == 480) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(matched, 480u);
  // Down: the local answer (now 30 chunks), at once while backing off.
  redis_->Kill();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(timed_match(prompt, &took), 480u);
    EXPECT_LT(took.count(), 600);
  }
  EXPECT_EQ(B().Chunks("p")->size(), 30u);
}

}  // namespace
}  // namespace kvcache::testing
