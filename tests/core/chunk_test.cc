// Token chunks: chained hashes under namespaces, longest cached prefix, leaves-first
// eviction under every policy, and real processes storing and matching at once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "support/child_process.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Pattern;

// The bytes a test stores for the chunk whose chained hash is `hash`: any process can
// recompute them, so a match is checked byte for byte.
std::vector<std::byte> ChunkBytes(uint64_t hash, size_t size) { return Pattern(hash, size); }

// The chained hashes of the whole chunks of `tokens`.
std::vector<uint64_t> Chain(std::string_view ns, const std::vector<uint32_t>& tokens,
                            uint32_t chunk_tokens) {
  std::vector<uint64_t> out;
  uint64_t h = ChunkChainSeed(ns);
  for (size_t c = 0; c + chunk_tokens <= tokens.size(); c += chunk_tokens) {
    h = ChainHash(h, std::span<const uint32_t>(tokens).subspan(c, chunk_tokens));
    out.push_back(h);
  }
  return out;
}

class ChunkTest : public testing::IsolatedTest {
 protected:
  void CreateChunkPool(const std::string& name, uint64_t size, uint32_t chunk_tokens,
                       Policy policy = Policy::kLru) {
    PoolConfig c;
    c.name = name;
    c.size_bytes = size;
    c.policy = policy;
    c.prefix_block_tokens = chunk_tokens;
    ASSERT_TRUE(manager().CreatePool(c).ok());
  }

  // Stores every whole chunk of `tokens` with ChunkBytes of `size` bytes each.
  Result<ChunkStoreResult> Store(const std::string& pool, std::string_view ns,
                                 const std::vector<uint32_t>& tokens, uint32_t chunk_tokens,
                                 size_t size = 1024) {
    std::vector<std::vector<std::byte>> bytes;
    for (uint64_t h : Chain(ns, tokens, chunk_tokens)) bytes.push_back(ChunkBytes(h, size));
    std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
    return manager().StoreChunks(pool, ns, tokens, spans);
  }

  // Matches and checks the chunks returned hold the bytes stored for the query's chain.
  uint64_t MatchChecked(const std::string& pool, std::string_view ns,
                        const std::vector<uint32_t>& tokens, uint32_t chunk_tokens,
                        size_t size = 1024) {
    auto m = manager().Match(pool, ns, tokens);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return ~uint64_t{0};
    EXPECT_EQ(m->chunk_tokens, chunk_tokens);
    EXPECT_EQ(m->chunks.size() * chunk_tokens, m->matched_tokens);
    std::vector<uint64_t> chain = Chain(ns, tokens, chunk_tokens);
    for (size_t c = 0; c < m->chunks.size(); ++c) {
      auto data = m->chunks[c].data();
      EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[c], size))
          << "chunk " << c;
    }
    return m->matched_tokens;
  }

  void ExpectHealthy(const std::string& pool) {
    auto h = manager().Health(pool);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_TRUE(h->healthy);
    for (const auto& p : h->problems) ADD_FAILURE() << p;
  }
};

std::vector<uint32_t> Iota(size_t n, uint32_t from) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

// The first `shared` tokens of `base`, then tokens `base` never has, to `length`.
std::vector<uint32_t> Sharing(const std::vector<uint32_t>& base, size_t shared, size_t length) {
  std::vector<uint32_t> v(base.begin(), base.begin() + static_cast<long>(shared));
  while (v.size() < length) v.push_back(900000 + static_cast<uint32_t>(v.size()));
  return v;
}

TEST_F(ChunkTest, AThousandTokenChainMatchesWholeChunksOfSharedPrefixes) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(1000, 1);
  auto stored = Store("p", "model-a", prompt, 16);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->chunks, 62u);  // 1000 = 62 * 16 + 8: the last 8 tokens are no chunk
  EXPECT_EQ(stored->stored, 62u);
  EXPECT_EQ(stored->present, 0u);

  EXPECT_EQ(MatchChecked("p", "model-a", Sharing(prompt, 0, 1000), 16), 0u);
  EXPECT_EQ(MatchChecked("p", "model-a", Sharing(prompt, 15, 1000), 16), 0u);
  EXPECT_EQ(MatchChecked("p", "model-a", Sharing(prompt, 16, 1000), 16), 16u);
  EXPECT_EQ(MatchChecked("p", "model-a", Sharing(prompt, 500, 1000), 16), 496u);
  EXPECT_EQ(MatchChecked("p", "model-a", prompt, 16), 992u);
  EXPECT_EQ(MatchChecked("p", "model-a", Sharing(prompt, 1000, 1200), 16), 992u);
  // A prompt shorter than a chunk has no whole chunk to match.
  EXPECT_EQ(MatchChecked("p", "model-a", Sharing(prompt, 15, 15), 16), 0u);

  auto st = manager().Stats("p");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->chunk_count, 62u);
  EXPECT_EQ(st->entry_count, 0u);
  EXPECT_EQ(st->chunk_tokens_asked, 5 * 1000u + 1200u + 15u);
  EXPECT_EQ(st->chunk_tokens_matched, 16u + 496u + 992u + 992u);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, ChunksAlreadyCachedAreNotCopiedAgain) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(1000, 1);
  ASSERT_TRUE(Store("p", "m", Sharing(prompt, 500, 500), 16).ok());
  uint64_t used = manager().Stats("p")->used;
  uint64_t puts = manager().Stats("p")->puts;
  auto again = Store("p", "m", prompt, 16);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->present, 31u);  // the first 496 tokens
  EXPECT_EQ(again->stored, 31u);
  EXPECT_EQ(manager().Stats("p")->puts, puts + 31);
  EXPECT_GT(manager().Stats("p")->used, used);
  auto third = Store("p", "m", prompt, 16);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->present, 62u);
  EXPECT_EQ(third->stored, 0u);
  EXPECT_EQ(manager().Stats("p")->chunk_count, 62u);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, TwoHundredFiftySixTokenChunksWork) {
  CreateChunkPool("big", 16 << 20, 256);
  std::vector<uint32_t> prompt = Iota(1000, 7);
  auto stored = Store("big", "m", prompt, 256, 8192);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->chunks, 3u);
  EXPECT_EQ(MatchChecked("big", "m", prompt, 256, 8192), 768u);
  EXPECT_EQ(MatchChecked("big", "m", Sharing(prompt, 600, 1000), 256, 8192), 512u);
  EXPECT_EQ(MatchChecked("big", "m", Sharing(prompt, 255, 1000), 256, 8192), 0u);
}

TEST_F(ChunkTest, NamespacesNeverMatchEachOther) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(320, 1);
  ASSERT_TRUE(Store("p", "llama-3-8b/fp16/tp0", prompt, 16).ok());
  EXPECT_EQ(MatchChecked("p", "llama-3-8b/fp16/tp1", prompt, 16), 0u);
  EXPECT_EQ(MatchChecked("p", "", prompt, 16), 0u);
  EXPECT_EQ(MatchChecked("p", "llama-3-8b/fp16/tp0", prompt, 16), 320u);
  // The same tokens under the other namespace are new chunks, not cached ones.
  auto other = Store("p", "llama-3-8b/fp16/tp1", prompt, 16);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->stored, 20u);
  EXPECT_EQ(other->present, 0u);
  EXPECT_EQ(MatchChecked("p", "llama-3-8b/fp16/tp1", prompt, 16), 320u);
  EXPECT_EQ(manager().Stats("p")->chunk_count, 40u);
}

TEST_F(ChunkTest, BadInputIsRefusedAndChangesNothing) {
  CreateChunkPool("p", 1 << 20, 16);
  std::vector<uint32_t> prompt = Iota(40, 1);  // 2 whole chunks
  std::vector<std::byte> one(64);
  std::vector<std::span<const std::byte>> three(3, std::span<const std::byte>(one));
  auto r = manager().StoreChunks("p", "m", prompt, three);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("2 whole chunks"), std::string::npos)
      << r.status().ToString();
  std::vector<std::byte> huge(2 << 20);
  std::vector<std::span<const std::byte>> two{std::span<const std::byte>(one),
                                              std::span<const std::byte>(huge)};
  r = manager().StoreChunks("p", "m", prompt, two);
  EXPECT_EQ(r.status().code(), Code::kNoSpace);
  EXPECT_EQ(manager().Stats("p")->chunk_count, 0u);
  EXPECT_EQ(manager().Stats("p")->used, 0u);
  EXPECT_EQ(manager().Match("nope", "m", prompt).status().code(), Code::kNotFound);
}

TEST_F(ChunkTest, EntriesAndTheirPrefixLookupsKeepWorkingBesideChunks) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(64, 1);
  ASSERT_TRUE(Store("p", "", prompt, 16).ok());
  PutOptions o;
  o.prefix_tokens = prompt;
  std::vector<std::byte> bytes = Pattern(5, 3000);
  ASSERT_TRUE(manager().Put("p", 5, bytes, 64, o).ok());
  auto entries = manager().Entries("p");
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 1u);  // chunks are not entries
  EXPECT_EQ((*entries)[0].sequence_id, 5u);
  auto lp = manager().LongestPrefix("p", prompt);
  ASSERT_TRUE(lp.ok()) << lp.status().ToString();
  EXPECT_EQ(lp->entry.sequence_id, 5u);
  EXPECT_EQ(lp->matched_tokens, 64u);
  auto by_prefix = manager().GetByPrefix("p", prompt);
  ASSERT_TRUE(by_prefix.ok());
  ASSERT_EQ(by_prefix->size(), 1u);
  EXPECT_EQ((*by_prefix)[0].info().sequence_id, 5u);
  EXPECT_EQ(*manager().Get("p", 5), bytes);
  auto st = manager().Stats("p");
  EXPECT_EQ(st->entry_count, 1u);
  EXPECT_EQ(st->chunk_count, 4u);
  EXPECT_EQ(*manager().Clear("p"), 5u);
  EXPECT_EQ(manager().Stats("p")->chunk_count, 0u);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, ASegmentOfTheFormatBeforeChunksIsRefusedWithAClearMessage) {
  CreateChunkPool("old", 1 << 20, 16);
  std::string path = "/dev/shm/" + manager().ShmName("old");
  manager_ = std::make_unique<Manager>(options());  // maps nothing yet
  // Version 3 had 192-byte slots and no chunk fields: its layout cannot be read as 4.
  int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  uint32_t version = 3;
  ASSERT_EQ(pwrite(fd, &version, sizeof(version), 4), static_cast<ssize_t>(sizeof(version)));
  close(fd);
  auto st = manager().Stats("old");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.status().message().find("format version 3, expected 4"), std::string::npos)
      << st.status().ToString();
  EXPECT_FALSE(manager().Match("old", "m", Iota(32, 1)).ok());
}

// A chain whose chunks are not in consecutive slots (stored one chunk at a time,
// alternating with another chain) is matched as one that is: the slot after a chunk's
// is tried first and, holding another chain's chunk, is passed over for the index.
TEST_F(ChunkTest, AChainInScatteredSlotsMatchesLikeOneInConsecutiveSlots) {
  CreateChunkPool("p", 16 << 20, 16);
  const std::vector<uint32_t> a = Iota(1000, 1);
  const std::vector<uint32_t> b = Sharing(a, 48, 1000);  // forks from a after 3 chunks
  const std::vector<uint32_t> c = Iota(1000, 5000);
  for (size_t len = 16; len <= 1000; len += 16) {
    for (const auto* p : {&a, &b, &c}) {
      std::vector<uint32_t> head(p->begin(), p->begin() + static_cast<long>(len));
      ASSERT_TRUE(Store("p", "m", head, 16).ok());
    }
  }
  EXPECT_EQ(MatchChecked("p", "m", a, 16), 992u);
  EXPECT_EQ(MatchChecked("p", "m", b, 16), 992u);
  EXPECT_EQ(MatchChecked("p", "m", c, 16), 992u);
  EXPECT_EQ(MatchChecked("p", "m", Sharing(a, 500, 1000), 16), 496u);
  EXPECT_EQ(MatchChecked("p", "m", Sharing(c, 17, 1000), 16), 16u);
  EXPECT_EQ(MatchChecked("p", "m", a, 16, 1024), 992u);
  EXPECT_EQ(MatchChecked("p", "other", a, 16), 0u);
  ExpectHealthy("p");
  EXPECT_EQ(manager().Health("p")->pinned_entries, 0u);  // every match released its pins
  // After a clear, chains stored in one go sit in descending slots.
  ASSERT_TRUE(manager().Clear("p").ok());
  for (const auto* p : {&c, &a, &b}) ASSERT_TRUE(Store("p", "m", *p, 16).ok());
  EXPECT_EQ(MatchChecked("p", "m", a, 16), 992u);
  EXPECT_EQ(MatchChecked("p", "m", b, 16), 992u);
  EXPECT_EQ(MatchChecked("p", "m", Sharing(c, 700, 1000), 16), 688u);
  ExpectHealthy("p");
}

// A long prompt is matched in runs of growing length, each looked up in blocks: a
// prompt that leaves the cached chain at any chunk, on either side of a run's or a
// block's edge, matches exactly the chunks before it and pins exactly those.
TEST_F(ChunkTest, ALongPromptMatchesUpToWhereItLeavesTheChainWhereverThatIs) {
  CreateChunkPool("p", 16 << 20, 16);
  const std::vector<uint32_t> prompt = Iota(300 * 16, 1);
  ASSERT_TRUE(Store("p", "m", prompt, 16, 64).ok());
  uint64_t asked = 0, matched = 0;
  for (size_t chunks : {0, 1, 31, 32, 33, 63, 64, 95, 96, 97, 160, 223, 224, 225, 299, 300}) {
    SCOPED_TRACE("leaves the chain after chunk " + std::to_string(chunks));
    std::vector<uint32_t> asking = Sharing(prompt, chunks * 16, 300 * 16 + 5);
    {
      auto m = manager().Match("p", "m", asking);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      EXPECT_EQ(m->matched_tokens, chunks * 16);
      ASSERT_EQ(m->chunks.size(), chunks);
      std::vector<uint64_t> chain = Chain("m", prompt, 16);
      for (size_t c = 0; c < chunks; ++c) ASSERT_EQ(m->chunks[c].hash, chain[c]) << c;
      EXPECT_EQ(manager().Stats("p")->pinned, chunks * 4096);
    }
    EXPECT_EQ(manager().Stats("p")->pinned, 0u);
    asked += asking.size();
    matched += chunks * 16;
  }
  auto st = manager().Stats("p");
  EXPECT_EQ(st->chunk_tokens_asked, asked);
  EXPECT_EQ(st->chunk_tokens_matched, matched);
  ExpectHealthy("p");
}

// Tokens stored under a chunk's hash that are not the prompt's (a hash collision, or
// tokens written under a forged hash) end the match before that chunk, in whichever
// run it falls, and the pins of the chunks after it are let go.
TEST_F(ChunkTest, AChunkWhoseTokensAreNotThePromptsEndsTheMatchThere) {
  CreateChunkPool("p", 16 << 20, 16);
  const std::vector<uint32_t> prompt = Iota(300 * 16, 1);
  ASSERT_TRUE(Store("p", "m", prompt, 16, 64).ok());
  const std::vector<uint64_t> chain = Chain("m", prompt, 16);
  uint64_t matched = 0;
  for (size_t bad : {150, 40, 0}) {  // each earlier than the one before
    SCOPED_TRACE("chunk " + std::to_string(bad) + " holds other tokens");
    {
      // The chunk's tokens follow its 64 bytes of KV in the shared segment, mapped
      // writable in this process: change one.
      auto pinned = manager().PinChunk("p", chain[bad]);
      ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
      auto* tokens = const_cast<std::byte*>(pinned->view.data().data()) + 64;
      uint32_t other = 7777777;
      std::memcpy(tokens + 4 * 5, &other, sizeof other);
    }
    {
      auto m = manager().Match("p", "m", prompt);
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      EXPECT_EQ(m->matched_tokens, bad * 16);
      EXPECT_EQ(m->chunks.size(), bad);
      EXPECT_EQ(manager().Stats("p")->pinned, bad * 4096);
    }
    EXPECT_EQ(manager().Stats("p")->pinned, 0u);
    matched += bad * 16;
    EXPECT_EQ(manager().Stats("p")->chunk_tokens_matched, matched);
  }
}

TEST_F(ChunkTest, AMatchPinsItsChunksUntilReleased) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(64, 1);
  ASSERT_TRUE(Store("p", "m", prompt, 16).ok());
  {
    auto m = manager().Match("p", "m", prompt);
    ASSERT_TRUE(m.ok());
    ASSERT_EQ(m->chunks.size(), 4u);
    EXPECT_EQ(manager().Stats("p")->pinned, 4u * 4096);
    // Pinned chunks are not evicted: only what is unpinned can go.
    EXPECT_EQ(*manager().Evict("p", 100), 0u);
    EXPECT_EQ(manager().Stats("p")->chunk_count, 4u);
  }
  EXPECT_EQ(manager().Stats("p")->pinned, 0u);
  ExpectHealthy("p");
}

// Runs `fn` in a forked child (a real process with a Manager of its own on the same
// home and segments) and returns its exit code, fn's return value.
template <typename Fn>
int InChild(const ManagerOptions& options, Fn fn) {
  pid_t pid = fork();
  if (pid == 0) {
    Manager other(options);
    _exit(fn(other));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST_F(ChunkTest, AMatchKeepsItsChunksWhileAnotherProcessClearsEvictsAndRefills) {
  // 64 blocks of 4 KiB; the matched chain takes 32 of them.
  CreateChunkPool("p", 256 << 10, 16);
  const std::vector<uint32_t> prompt = Iota(32 * 16, 1);
  const std::vector<uint64_t> chain = Chain("m", prompt, 16);
  ASSERT_TRUE(Store("p", "m", prompt, 16, 3000).ok());
  auto m = manager().Match("p", "m", prompt);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->chunks.size(), 32u);
  EXPECT_EQ(manager().Stats("p")->pinned, 32u * 4096);

  // Another process clears the pool, evicts everything it can and then stores as
  // many other chunks as fit: if the matched chunks were not pinned, their blocks
  // would be free and overwritten now.
  const std::vector<uint32_t> other = Iota(64 * 16, 500000);
  int code = InChild(options(), [&](Manager& o) {
    if (!o.Clear("p").ok()) return 1;
    if (!o.Evict("p", 100).ok()) return 2;
    std::vector<std::vector<std::byte>> bytes;
    for (uint64_t h : Chain("m", other, 16)) bytes.push_back(Pattern(~h, 3000));
    std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
    auto stored = o.StoreChunks("p", "m", other, spans);
    // The 32 free blocks fill up; the pinned 32 are not given out.
    if (stored.ok() || stored.status().code() != Code::kNoSpace) return 3;
    auto st = o.Stats("p");
    if (!st.ok() || st->chunk_count != 32) return 4;
    return 0;
  });
  ASSERT_EQ(code, 0);

  // Every matched chunk still holds its own bytes, and the match still pins them.
  for (size_t c = 0; c < m->chunks.size(); ++c) {
    auto data = m->chunks[c].data();
    ASSERT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[c], 3000))
        << "chunk " << c;
    EXPECT_EQ(m->chunks[c].hash, chain[c]);
  }
  EXPECT_EQ(manager().Stats("p")->pinned, 32u * 4096);
  // Cleared: no longer matched by anyone, though this match still holds them.
  EXPECT_EQ(manager().Match("p", "m", prompt)->matched_tokens, 0u);
  ExpectHealthy("p");

  // Releasing frees the cleared chunks' blocks at once: the other chain fits now.
  ASSERT_TRUE(m->Release().ok());
  EXPECT_TRUE(m->chunks.empty());
  EXPECT_EQ(m->matched_tokens, 0u);
  auto st = manager().Stats("p");
  EXPECT_EQ(st->pinned, 0u);
  EXPECT_EQ(st->used, 32u * 4096);  // the other process's 32 chunks only
  EXPECT_TRUE(m->Release().ok());   // a second release does nothing
  std::vector<std::vector<std::byte>> bytes;
  for (uint64_t h : Chain("m", other, 16)) bytes.push_back(Pattern(~h, 3000));
  std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
  auto stored = manager().StoreChunks("p", "m", other, spans);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->stored, 32u);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, AMatchDestroyedInAForkedChildKeepsTheParentsPins) {
  CreateChunkPool("p", 64 << 10, 16);  // 16 blocks: the chain takes 8
  const std::vector<uint32_t> prompt = Iota(8 * 16, 1);
  ASSERT_TRUE(Store("p", "m", prompt, 16, 3000).ok());
  auto m = manager().Match("p", "m", prompt);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->chunks.size(), 8u);
  int code = 0;
  {
    pid_t pid = fork();
    if (pid == 0) {
      // The child has a row of its own in the pool (its own match), so only the
      // owner checks keep the inherited match from releasing the parent's leases.
      auto mine = manager().Match("p", "m", prompt);
      if (!mine.ok() || mine->chunks.size() != 8) _exit(1);
      if (!mine->Release().ok()) _exit(2);
      ChunkMatch inherited = std::move(*m);
      if (!inherited.Release().ok()) _exit(3);  // only forgets it: nothing to fail
      ChunkMatch again = std::move(*m);          // moved-from: empty
      if (!again.TakeViews().empty()) _exit(4);
      _exit(0);  // and whatever else it held is dropped with the process
    }
    int status = 0;
    waitpid(pid, &status, 0);
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  ASSERT_EQ(code, 0);
  // The parent's eight pins hold: clearing and refilling the pool cannot reuse them.
  EXPECT_EQ(manager().Health("p")->pinned_entries, 8u);
  ASSERT_TRUE(manager().Clear("p").ok());
  const std::vector<uint32_t> other = Iota(16 * 16, 700000);
  EXPECT_EQ(Store("p", "m", other, 16, 3000).status().code(), Code::kNoSpace);
  const std::vector<uint64_t> chain = Chain("m", prompt, 16);
  for (size_t c = 0; c < 8; ++c) {
    auto data = m->chunks[c].data();
    ASSERT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[c], 3000));
  }
  ASSERT_TRUE(m->Release().ok());
  EXPECT_EQ(manager().Health("p")->pinned_entries, 0u);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, TakeViewsHandsEachChunkItsOwnPin) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(64, 1);
  ASSERT_TRUE(Store("p", "m", prompt, 16).ok());
  auto m = manager().Match("p", "m", prompt);
  ASSERT_TRUE(m.ok());
  std::vector<EntryView> views = m->TakeViews();
  EXPECT_TRUE(m->chunks.empty());
  ASSERT_TRUE(m->Release().ok());  // holds nothing any more
  ASSERT_EQ(views.size(), 4u);
  EXPECT_EQ(manager().Stats("p")->pinned, 4u * 4096);
  std::vector<uint64_t> chain = Chain("m", prompt, 16);
  for (size_t c = 0; c < views.size(); ++c) {
    EXPECT_EQ(views[c].info().sequence_id, chain[c]);
    auto data = views[c].data();
    EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[c], 1024));
  }
  ASSERT_TRUE(views[3].Release().ok());
  EXPECT_EQ(manager().Stats("p")->pinned, 3u * 4096);
  views.clear();
  EXPECT_EQ(manager().Stats("p")->pinned, 0u);
  ExpectHealthy("p");
}

// Under pressure with each policy: eviction takes chains from their leaves, so every
// cached chunk keeps its parent (Health checks it) and a match returns a shorter but
// correct prefix.
class ChunkEvictionTest : public ChunkTest, public ::testing::WithParamInterface<Policy> {};

TEST_P(ChunkEvictionTest, NoChunkIsLeftWithoutItsParent) {
  // 1 MiB holds about 240 chunks of 4 KiB blocks; 30 prompts of 24 chunks do not fit.
  CreateChunkPool("tight", 1 << 20, 16, GetParam());
  std::vector<uint32_t> system = Iota(128, 1);  // 8 chunks every prompt shares
  std::vector<std::vector<uint32_t>> prompts;
  for (uint32_t u = 0; u < 30; ++u) {
    std::vector<uint32_t> p = system;
    for (uint32_t t = 0; t < 256; ++t) p.push_back(100000 * (u + 1) + t);
    prompts.push_back(p);
    auto r = Store("tight", "m", p, 16, 3000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (u % 3 == 0) MatchChecked("tight", "m", prompts[u / 2], 16, 3000);
    ExpectHealthy("tight");
  }
  EXPECT_GT(manager().Stats("tight")->evictions, 0u);
  // The latest prompt is whole; every earlier one matches a prefix of whole chunks.
  EXPECT_EQ(MatchChecked("tight", "m", prompts.back(), 16, 3000), 384u);
  for (const auto& p : prompts) {
    uint64_t matched = MatchChecked("tight", "m", p, 16, 3000);
    EXPECT_LE(matched, 384u);
    EXPECT_EQ(matched % 16, 0u);
  }
  // Evicting by percent also takes leaves only.
  ASSERT_TRUE(manager().Evict("tight", 50).ok());
  ExpectHealthy("tight");
  ASSERT_TRUE(manager().Evict("tight", 100).ok());
  ExpectHealthy("tight");
}

INSTANTIATE_TEST_SUITE_P(Policies, ChunkEvictionTest,
                         ::testing::Values(Policy::kLru, Policy::kLfu, Policy::kFifo,
                                           Policy::kPriority),
                         [](const auto& p) { return std::string(PolicyName(p.param)); });

TEST_F(ChunkTest, FourProcessesStoreAndMatchOverlappingPromptsWithEviction) {
  // 128 blocks for the 148 distinct chunks of the workers' prompts: they evict each
  // other's chunks all along.
  CreateChunkPool("shared", 512 << 10, 16);
  std::string worker = testing::BuildDir() + "/tests/core/pool_worker";
  std::vector<std::unique_ptr<testing::Child>> workers;
  for (int w = 0; w < 4; ++w) {
    workers.push_back(std::make_unique<testing::Child>(
        std::vector<std::string>{worker, "chunks", "shared", "2", std::to_string(w)}));
  }
  for (auto& w : workers) EXPECT_EQ(w->Wait(), 0) << w->output();
  auto st = manager().Stats("shared");
  ASSERT_TRUE(st.ok());
  EXPECT_GT(st->evictions, 0u);
  EXPECT_GT(st->chunk_tokens_matched, 0u);
  ExpectHealthy("shared");
}

TEST_F(ChunkTest, ChunksAreListedWithTheirNamespaceParentAndTokens) {
  CreateChunkPool("p", 16 << 20, 16);
  std::vector<uint32_t> prompt = Iota(40, 1);  // two whole chunks
  ASSERT_TRUE(Store("p", "llama-3-8b/fp16/tp0", prompt, 16, 700).ok());
  ASSERT_TRUE(Store("p", "", Iota(16, 500), 16, 300).ok());
  std::vector<uint64_t> chain = Chain("llama-3-8b/fp16/tp0", prompt, 16);

  auto chunks = manager().Chunks("p");
  ASSERT_TRUE(chunks.ok()) << chunks.status().ToString();
  ASSERT_EQ(chunks->size(), 3u);
  EXPECT_TRUE(std::is_sorted(chunks->begin(), chunks->end(),
                             [](const ChunkInfo& a, const ChunkInfo& b) { return a.hash < b.hash; }));
  EXPECT_TRUE(manager().Entries("p")->empty());  // chunks are not entries

  auto second = manager().StatChunk("p", chain[1]);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->hash, chain[1]);
  EXPECT_EQ(second->parent_hash, chain[0]);
  EXPECT_EQ(second->position, 2u);
  EXPECT_EQ(second->token_count, 16u);
  EXPECT_EQ(second->size_bytes, 700u);
  EXPECT_EQ(second->name_space, "llama-3-8b/fp16/tp0");
  auto first = manager().StatChunk("p", chain[0]);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->parent_hash, ChunkChainSeed("llama-3-8b/fp16/tp0"));
  EXPECT_EQ(first->position, 1u);

  auto pinned = manager().PinChunk("p", chain[1]);
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_EQ(pinned->info.hash, chain[1]);
  auto data = pinned->view.data();
  EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[1], 700));
  EXPECT_EQ(pinned->view.prefix_tokens(), Iota(16, 17));
  // Pinned: not even a clear frees its bytes before the view goes.
  ASSERT_TRUE(manager().Clear("p").ok());
  EXPECT_EQ(manager().StatChunk("p", chain[1]).status().code(), Code::kNotFound);
  data = pinned->view.data();
  EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[1], 700));
  ASSERT_TRUE(pinned->view.Release().ok());
  EXPECT_EQ(manager().PinChunk("p", chain[1]).status().code(), Code::kNotFound);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, ANamespaceOverTheLimitIsRefusedAndStoresNothing) {
  CreateChunkPool("p", 16 << 20, 16);
  std::string ns(kMaxChunkNamespaceBytes + 1, 'x');
  auto r = Store("p", ns, Iota(32, 1), 16);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(manager().Chunks("p")->empty());
  ns.pop_back();
  ASSERT_TRUE(Store("p", ns, Iota(32, 1), 16).ok());
  EXPECT_EQ(manager().Chunks("p")->front().name_space, ns);
  EXPECT_EQ(MatchChecked("p", ns, Iota(32, 1), 16), 32u);
  ExpectHealthy("p");
}

TEST_F(ChunkTest, StatsCountTheBytesChunksHoldAndTheMatchedTokens) {
  CreateChunkPool("p", 16 << 20, 16);
  ASSERT_TRUE(manager().Put("p", 1, ChunkBytes(1, 10000), 1).ok());
  // 3 chunks of 5000 bytes + 64 bytes of tokens + 1 byte of namespace: 2 blocks each.
  ASSERT_TRUE(Store("p", "m", Iota(48, 1), 16, 5000).ok());
  auto st = manager().Stats("p");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->chunk_count, 3u);
  EXPECT_EQ(st->chunk_bytes, 3u * 2 * 4096);
  EXPECT_EQ(st->used, st->chunk_bytes + 3 * 4096);  // the entry's 10000 bytes: 3 blocks
  EXPECT_EQ(MatchChecked("p", "m", Iota(40, 1), 16, 5000), 32u);
  st = manager().Stats("p");
  EXPECT_EQ(st->chunk_tokens_asked, 40u);
  EXPECT_EQ(st->chunk_tokens_matched, 32u);
  EXPECT_DOUBLE_EQ(st->chunk_token_hit_rate(), 0.8);
  ASSERT_TRUE(manager().Clear("p").ok());
  EXPECT_EQ(manager().Stats("p")->chunk_bytes, 0u);
}

// When the lease table runs out in the middle of a block of lookups, the match ends at
// the chunks it could pin: a shorter prefix, correct, with exactly the pinned chunks
// reported, and nothing left pinned once everything is released.
TEST_F(ChunkTest, AMatchThatRunsOutOfLeasesMidBlockReturnsThePrefixItPinned) {
  PoolConfig c;
  c.name = "p";
  c.size_bytes = 1 << 20;
  c.max_sequences = 16;  // a small lease table: 2 * 16 + 1024 leases
  c.prefix_block_tokens = 16;
  ASSERT_TRUE(manager().CreatePool(c).ok());
  const std::vector<uint32_t> prompt = Iota(16 * 16, 1);  // 16 chunks: one block
  ASSERT_TRUE(Store("p", "m", prompt, 16).ok());
  const std::vector<uint64_t> chain = Chain("m", prompt, 16);
  // Every lease taken, on the first chunk, then 5 given back.
  std::vector<PinnedChunk> held;
  for (;;) {
    auto pinned = manager().PinChunk("p", chain[0]);
    if (!pinned.ok()) {
      ASSERT_EQ(pinned.status().code(), Code::kBusy) << pinned.status().ToString();
      break;
    }
    held.push_back(std::move(*pinned));
  }
  ASSERT_GT(held.size(), 1000u);
  held.resize(held.size() - 5);

  auto m = manager().Match("p", "m", prompt);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->matched_tokens, 5u * 16);
  ASSERT_EQ(m->chunks.size(), 5u);
  for (size_t k = 0; k < m->chunks.size(); ++k) {
    auto data = m->chunks[k].data();
    EXPECT_EQ(std::vector<std::byte>(data.begin(), data.end()), ChunkBytes(chain[k], 1024))
        << "chunk " << k;
  }
  // Only those five are pinned by the match: the table is full again.
  EXPECT_EQ(manager().PinChunk("p", chain[0]).status().code(), Code::kBusy);
  EXPECT_TRUE(m->Release().ok());
  held.clear();
  auto h = manager().Health("p");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_TRUE(h->healthy);
  EXPECT_EQ(h->pinned_entries, 0u);
  // With the leases back, the whole prompt matches.
  EXPECT_EQ(MatchChecked("p", "m", prompt, 16), 16u * 16);
}

}  // namespace
}  // namespace kvcache
