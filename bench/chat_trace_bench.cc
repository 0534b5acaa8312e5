// Chat trace benchmark (issue "prefix chunks", Speed): how much of each prompt a pool
// of a fixed size serves from cache, for token chunks with leaves-first eviction
// against whole entries under plain LRU, on the same synthetic multi-turn chat trace.
//
// The trace (deterministic for a seed): a few system prompts of 500-2,000 tokens
// (one per application); many users, each holding one conversation with one system
// prompt (a skewed choice: the first prompts are the most used). A conversation is a
// number of turns (2-16); a turn's prompt is the system prompt, every earlier user
// message and reply, and the new user message (20-200 tokens). After the turn the
// reply (50-400 tokens) joins the conversation. About 64 conversations are open at a
// time and the next request comes from a random open one, so turns of different
// users interleave; a finished conversation is replaced by a new user's. Token values
// are random: two prompts share exactly the prefixes the model says they share.
//
// Each request is served as an engine does. Chunks: Match the prompt (the matched
// tokens are served from cache), release, then StoreChunks the prompt's whole chunks
// (those cached already are not copied again). Entries: LongestPrefix finds the
// longest stored prompt that is a prefix of this one (its whole blocks are served from
// cache), then the whole prompt is Put as one entry (keyed by its hash). Both store
// 128 bytes per token (KV plus the token ids), in pools of the same size and LRU
// policy. Matched tokens are counted in whole 16-token chunks for both.
//
// Printed per pool size: the matched-token hit rate of both, beside the hit rate of a
// pool too large to evict (the trace's ceiling), and the share of the chunk pool's
// bytes held by chunks that can never match (an ancestor gone), taken by walking the
// chains every tenth of the trace (goal: 0).
//
//   chat_trace_bench [--requests N] [--pool-mib M[,M...]] [--seed S]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bench_args.h"
#include "kvcache/manager.h"
#include "kvcache/prefix.h"

namespace {

using kvcache::Manager;

constexpr uint32_t kChunkTokens = 16;
// KV bytes per token, chosen so that a chunk's KV and its 16 token ids (64 bytes) fill
// four 512-byte blocks exactly, and an entry's KV and prefix take 128 bytes per token.
constexpr uint32_t kKvBytesPerToken = 124;
constexpr uint32_t kBlockSize = 512;

[[noreturn]] void Die(const std::string& what, const kvcache::Status& s) {
  std::fprintf(stderr, "chat_trace_bench: %s: %s\n", what.c_str(), s.ToString().c_str());
  std::exit(1);
}

// ---------------------------------------------------------------- the trace

struct Trace {
  std::vector<std::vector<uint32_t>> prompts;  // in request order
};

Trace MakeTrace(uint64_t requests, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](uint64_t lo, uint64_t hi) { return lo + rng() % (hi - lo + 1); };
  auto tokens = [&](std::vector<uint32_t>& out, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) out.push_back(static_cast<uint32_t>(rng() % 128000));
  };
  constexpr int kSystemPrompts = 8;
  constexpr size_t kOpen = 64;
  std::vector<std::vector<uint32_t>> system(kSystemPrompts);
  for (auto& s : system) tokens(s, uniform(500, 2000));
  struct Conversation {
    std::vector<uint32_t> history;
    uint64_t turns_left;
  };
  auto start = [&] {
    // Skewed: prompt k is chosen with weight 1 / (k + 1).
    std::discrete_distribution<int> pick({1.0, 1 / 2.0, 1 / 3.0, 1 / 4.0, 1 / 5.0, 1 / 6.0,
                                          1 / 7.0, 1 / 8.0});
    return Conversation{system[pick(rng)], uniform(2, 16)};
  };
  std::vector<Conversation> open;
  for (size_t i = 0; i < kOpen; ++i) open.push_back(start());
  Trace t;
  for (uint64_t r = 0; r < requests; ++r) {
    Conversation& c = open[rng() % open.size()];
    tokens(c.history, uniform(20, 200));  // the user's message
    t.prompts.push_back(c.history);
    tokens(c.history, uniform(50, 400));  // the reply
    if (--c.turns_left == 0) c = start();
  }
  return t;
}

// ---------------------------------------------------------------- replay

struct Result {
  uint64_t asked = 0;
  uint64_t matched = 0;
  double unreachable_share_max = 0;  // of the chunk bytes held, over all samples
  uint64_t unreachable_chunks_max = 0;
  uint64_t evictions = 0;
  double seconds = 0;
  double hit_rate() const {
    return asked == 0 ? 0 : static_cast<double>(matched) / static_cast<double>(asked);
  }
};

void CreatePool(Manager& m, const std::string& name, uint64_t bytes) {
  kvcache::PoolConfig c;
  c.name = name;
  c.size_bytes = bytes;
  c.block_size = kBlockSize;
  c.prefix_block_tokens = kChunkTokens;
  c.policy = kvcache::Policy::kLru;
  c.max_sequences = static_cast<uint32_t>(std::min<uint64_t>(bytes / 2048 + 1024, 1 << 24));
  if (kvcache::Status s = m.CreatePool(c); !s.ok()) Die("create pool " + name, s);
}

// The share of chunk bytes held by chunks that can never match: a chunk is reachable
// when it starts its chain, or its parent is a cached, reachable chunk.
void SampleUnreachable(Manager& m, const std::string& pool, Result& r) {
  auto chunks = m.Chunks(pool);
  if (!chunks.ok()) Die("chunks", chunks.status());
  std::sort(chunks->begin(), chunks->end(),
            [](const auto& a, const auto& b) { return a.position < b.position; });
  std::unordered_map<uint64_t, bool> reachable;
  reachable.reserve(chunks->size());
  uint64_t held = 0, stranded = 0, stranded_chunks = 0;
  for (const kvcache::ChunkInfo& c : *chunks) {
    bool ok = c.position == 1;
    if (!ok) {
      auto parent = reachable.find(c.parent_hash);
      ok = parent != reachable.end() && parent->second;
    }
    reachable[c.hash] = ok;
    held += c.size_bytes;
    if (!ok) {
      stranded += c.size_bytes;
      ++stranded_chunks;
    }
  }
  double share = held == 0 ? 0 : static_cast<double>(stranded) / static_cast<double>(held);
  r.unreachable_share_max = std::max(r.unreachable_share_max, share);
  r.unreachable_chunks_max = std::max(r.unreachable_chunks_max, stranded_chunks);
}

Result ReplayChunks(Manager& m, const Trace& t, uint64_t pool_bytes) {
  const std::string pool = "chat-chunks";
  CreatePool(m, pool, pool_bytes);
  std::vector<std::byte> kv(kKvBytesPerToken * kChunkTokens, std::byte{1});
  std::vector<std::span<const std::byte>> spans;
  Result r;
  auto t0 = std::chrono::steady_clock::now();
  const size_t sample_every = std::max<size_t>(1, t.prompts.size() / 10);
  for (size_t i = 0; i < t.prompts.size(); ++i) {
    const std::vector<uint32_t>& p = t.prompts[i];
    auto match = m.Match(pool, "", p);
    if (!match.ok()) Die("match", match.status());
    r.asked += p.size();
    r.matched += match->matched_tokens;
    if (kvcache::Status s = match->Release(); !s.ok()) Die("release", s);
    spans.assign(p.size() / kChunkTokens, kv);
    auto stored = m.StoreChunks(pool, "", p, spans);
    // A prompt longer than the pool stores what fits; that is not an error here.
    if (!stored.ok() && stored.status().code() != kvcache::Code::kNoSpace) {
      Die("store chunks", stored.status());
    }
    if ((i + 1) % sample_every == 0) SampleUnreachable(m, pool, r);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  SampleUnreachable(m, pool, r);
  r.evictions = m.Stats(pool)->evictions;
  if (kvcache::Status s = m.DestroyPool(pool); !s.ok()) Die("destroy pool", s);
  return r;
}

Result ReplayEntries(Manager& m, const Trace& t, uint64_t pool_bytes) {
  const std::string pool = "chat-entries";
  CreatePool(m, pool, pool_bytes);
  std::vector<std::byte> kv;
  Result r;
  auto t0 = std::chrono::steady_clock::now();
  for (const std::vector<uint32_t>& p : t.prompts) {
    r.asked += p.size();
    auto best = m.LongestPrefix(pool, p);
    if (best.ok()) {
      r.matched += best->matched_tokens / kChunkTokens * kChunkTokens;
    } else if (best.status().code() != kvcache::Code::kNotFound) {
      Die("longest prefix", best.status());
    }
    kv.assign(uint64_t{kKvBytesPerToken} * p.size(), std::byte{1});
    kvcache::PutOptions o;
    o.prefix_tokens = p;
    kvcache::Status s = m.Put(pool, kvcache::PrefixHashValue(p), kv, p.size(), o);
    if (!s.ok() && s.code() != kvcache::Code::kNoSpace) Die("put", s);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.evictions = m.Stats(pool)->evictions;
  if (kvcache::Status s = m.DestroyPool(pool); !s.ok()) Die("destroy pool", s);
  return r;
}

// The hit rate of a pool that never evicts: for each prompt, its leading whole chunks
// that some earlier prompt had (the trace's ceiling).
double CeilingHitRate(const Trace& t) {
  std::unordered_set<uint64_t> seen;
  uint64_t asked = 0, matched = 0;
  for (const std::vector<uint32_t>& p : t.prompts) {
    asked += p.size();
    uint64_t h = kvcache::ChunkChainSeed("");
    bool hit = true;
    for (size_t c = 0; c + kChunkTokens <= p.size(); c += kChunkTokens) {
      h = kvcache::ChainHash(h, std::span<const uint32_t>(p).subspan(c, kChunkTokens));
      hit = hit && seen.count(h) > 0;
      if (hit) matched += kChunkTokens;
      seen.insert(h);
    }
  }
  return asked == 0 ? 0 : static_cast<double>(matched) / static_cast<double>(asked);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t requests = 3000;
  uint64_t seed = 1;
  std::vector<uint64_t> pool_mib = {16, 64, 256};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return kvcache::bench::NextArg(i, argc, argv); };
    if (a == "--requests") {
      requests = std::stoull(next());
    } else if (a == "--seed") {
      seed = std::stoull(next());
    } else if (a == "--pool-mib") {
      pool_mib.clear();
      std::string v = next();
      for (size_t at = 0; at < v.size();) {
        size_t comma = v.find(',', at);
        if (comma == std::string::npos) comma = v.size();
        pool_mib.push_back(std::stoull(v.substr(at, comma - at)));
        at = comma + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: chat_trace_bench [--requests N] [--pool-mib M[,M...]] [--seed S]\n");
      return 2;
    }
  }
  std::string home = std::filesystem::temp_directory_path() /
                     ("chat_trace_bench." + std::to_string(getpid()));
  std::filesystem::create_directories(home);
  std::filesystem::permissions(home, std::filesystem::perms::owner_all);
  kvcache::ManagerOptions options;
  options.home = home;
  options.shm_prefix = "kvctb_" + std::to_string(getpid()) + "_";

  Trace t = MakeTrace(requests, seed);
  uint64_t tokens = 0, longest = 0;
  for (const auto& p : t.prompts) {
    tokens += p.size();
    longest = std::max<uint64_t>(longest, p.size());
  }
  std::printf("trace: %llu requests, %llu tokens asked (longest prompt %llu), seed %llu\n",
              static_cast<unsigned long long>(requests), static_cast<unsigned long long>(tokens),
              static_cast<unsigned long long>(longest), static_cast<unsigned long long>(seed));
  {
    Manager m(options);
    const double ceiling = CeilingHitRate(t);
    std::printf("ceiling (a pool that never evicts): %.1f%% of tokens matched\n\n",
                100 * ceiling);
    std::printf("  %8s  %-30s %9s %8s %10s %12s %8s\n", "pool", "policy", "hit rate",
                "vs ceil", "evictions", "unreachable", "time");
    for (uint64_t mib : pool_mib) {
      Result chunks = ReplayChunks(m, t, mib << 20);
      Result entries = ReplayEntries(m, t, mib << 20);
      std::printf("  %5llu MiB  %-30s %8.1f%% %7.2fx %10llu %11.4f%% %7.2fs\n",
                  static_cast<unsigned long long>(mib), "chunks, leaves-first LRU",
                  100 * chunks.hit_rate(), chunks.hit_rate() / ceiling,
                  static_cast<unsigned long long>(chunks.evictions),
                  100 * chunks.unreachable_share_max, chunks.seconds);
      std::printf("  %5llu MiB  %-30s %8.1f%% %7.2fx %10llu %12s %7.2fs\n",
                  static_cast<unsigned long long>(mib), "whole entries, LRU (ref)",
                  100 * entries.hit_rate(), entries.hit_rate() / ceiling,
                  static_cast<unsigned long long>(entries.evictions), "-", entries.seconds);
      std::printf("  %5llu MiB  chunks / entries hit rate: %.2fx; unreachable chunks (max "
                  "over samples): %llu, goal 0\n",
                  static_cast<unsigned long long>(mib),
                  entries.hit_rate() == 0 ? 0 : chunks.hit_rate() / entries.hit_rate(),
                  static_cast<unsigned long long>(chunks.unreachable_chunks_max));
    }
  }
  std::filesystem::remove_all(home);
  return 0;
}
