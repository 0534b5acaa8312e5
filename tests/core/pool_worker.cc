// A separate process for the multi-process tests. Reads CORTEX_HOME and
// CORTEX_SHM_PREFIX from the environment like any user of the library.
//
//   pool_worker put POOL SEQ SIZE SEED         put Pattern(SEED, SIZE), exit 0
//   pool_worker check POOL SEQ SIZE SEED       exit 0 iff the bytes equal Pattern(SEED, SIZE)
//   pool_worker stress POOL SECONDS WORKER IDS  random self-checking puts/gets/views
//   pool_worker hold-lock POOL                 take the pool lock, print "ready", sleep
//   pool_worker hold-pins POOL SEQ...          pin the entries, print "ready", sleep
//   pool_worker half-put POOL SEQ SIZE         reserve and half fill a put, print "ready", sleep
//   pool_worker crash-commit POOL SEQ SIZE SEED  put Pattern(SEED, SIZE), dying (SIGKILL) inside
//                                              Commit after the old entry is unpublished
//   pool_worker create POOL SIZE               create the pool (with the fault points the
//                                              environment names, see test_hooks.h)
//   pool_worker put-when POOL SEQ SIZE SEED FILE  reserve and fill, print "ready", commit once
//                                              FILE exists; exit 0 iff the commit succeeded
//   pool_worker chunks POOL SECONDS WORKER     store and match overlapping chat prompts as
//                                              16-token chunks, checking every matched byte
//
// Exit codes: 0 ok, 1 operation failed, 2 data check failed, 3 usage.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "segment_format.h"
#include "shm_segment.h"
#include "support/test_env.h"

namespace {

using kvcache::Manager;
using kvcache::testing::Pattern;

[[noreturn]] void Ready() {
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) pause();
}

// A self-describing payload: [seq u64][writer u64][nonce u64][len u64] then
// Pattern(nonce) bytes. Any torn or foreign byte fails Verify.
std::vector<std::byte> MakePayload(uint64_t seq, uint64_t writer, uint64_t nonce, size_t size) {
  std::vector<std::byte> out = Pattern(nonce, size + 32);
  uint64_t fields[4] = {seq, writer, nonce, size};
  std::memcpy(out.data(), fields, sizeof(fields));
  return out;
}

bool Verify(uint64_t seq, std::span<const std::byte> data) {
  if (data.size() < 32) return false;
  uint64_t fields[4];
  std::memcpy(fields, data.data(), sizeof(fields));
  if (fields[0] != seq || fields[3] + 32 != data.size()) return false;
  std::vector<std::byte> want = Pattern(fields[2], data.size());
  return std::memcmp(want.data() + 32, data.data() + 32, data.size() - 32) == 0;
}

int Fail(const char* what, const kvcache::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  return 1;
}

int Bad(const char* what, uint64_t seq, std::span<const std::byte> data) {
  uint64_t fields[4] = {};
  std::memcpy(fields, data.data(), std::min<size_t>(data.size(), sizeof(fields)));
  std::fprintf(stderr, "%s %llu: bad bytes: size %zu, header seq %llu writer %llu len %llu\n",
               what, static_cast<unsigned long long>(seq), data.size(),
               static_cast<unsigned long long>(fields[0]), static_cast<unsigned long long>(fields[1]),
               static_cast<unsigned long long>(fields[3]));
  return 2;
}

int Stress(Manager& m, const std::string& pool, double seconds, uint64_t worker, uint64_t ids) {
  std::mt19937_64 rng(worker * 7919 + 17);
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::byte> buf;
  uint64_t ops = 0;
  // Ids [0, ids) are shared by every worker; 1e6*(worker+1)+k, k < 256, are this
  // worker's own, and each must end holding the last version this worker put.
  constexpr uint64_t kOwn = 256;
  std::vector<uint64_t> last_nonce(kOwn, 0);
  while (std::chrono::steady_clock::now() < end) {
    uint64_t seq = rng() % ids;
    size_t size = 1 + rng() % (64 * 1024);
    switch (rng() % 4) {
      case 0: {
        auto payload = MakePayload(seq, worker, rng(), size);
        if (auto s = m.Put(pool, seq, payload, size / 4); !s.ok()) return Fail("put", s);
        break;
      }
      case 1: {
        kvcache::Status s = m.GetInto(pool, seq, buf);
        if (s.ok() && !Verify(seq, buf)) return Bad("get", seq, buf);
        if (!s.ok() && s.code() != kvcache::Code::kNotFound) return Fail("get", s);
        break;
      }
      case 2: {
        auto view = m.View(pool, seq);
        if (view.ok() && !Verify(seq, view->data())) return Bad("view", seq, view->data());
        break;
      }
      case 3: {
        uint64_t k = rng() % kOwn;
        uint64_t nonce = rng() | 1;
        uint64_t own = 1000000 * (worker + 1) + k;
        auto payload = MakePayload(own, worker, nonce, size);
        if (auto s = m.Put(pool, own, payload, 1); !s.ok()) return Fail("put own", s);
        last_nonce[k] = nonce;
        break;
      }
    }
    ++ops;
  }
  for (uint64_t k = 0; k < kOwn; ++k) {
    if (last_nonce[k] == 0) continue;
    uint64_t own = 1000000 * (worker + 1) + k;
    if (auto s = m.GetInto(pool, own, buf); !s.ok()) return Fail("get own", s);
    uint64_t fields[4];
    std::memcpy(fields, buf.data(), sizeof(fields));
    if (!Verify(own, buf)) return Bad("own", own, buf);
    if (fields[2] != last_nonce[k]) {
      std::fprintf(stderr, "own %llu: stale version\n", static_cast<unsigned long long>(own));
      return 2;
    }
  }
  std::printf("ops %llu\n", static_cast<unsigned long long>(ops));
  return 0;
}

// Chat-like prompts: one shared system prompt, then the turns of one of six
// conversations. Chunk bytes are Pattern(H_i, 2048), so every process stores the same
// bytes for the same chunk and can check what a match returns.
int Chunks(Manager& m, const std::string& pool, double seconds, uint64_t worker) {
  std::mt19937_64 rng(worker * 104729 + 3);
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto prompt = [&](uint32_t conv, uint32_t turns) {
    std::vector<uint32_t> p;
    for (uint32_t t = 0; t < 64; ++t) p.push_back(t + 1);
    for (uint32_t k = 0; k < turns; ++k) {
      for (uint32_t t = 0; t < 48; ++t) p.push_back(1000000 * (conv + 1) + 100 * k + t);
    }
    return p;
  };
  auto chain = [](const std::vector<uint32_t>& p) {
    std::vector<uint64_t> out;
    uint64_t h = kvcache::ChunkChainSeed("chat");
    for (size_t c = 0; c + 16 <= p.size(); c += 16) {
      out.push_back(h = kvcache::ChainHash(h, std::span<const uint32_t>(p).subspan(c, 16)));
    }
    return out;
  };
  uint64_t ops = 0;
  while (std::chrono::steady_clock::now() < end) {
    std::vector<uint32_t> p = prompt(rng() % 6, 1 + rng() % 8);
    std::vector<uint64_t> hashes = chain(p);
    std::vector<std::vector<std::byte>> bytes;
    for (uint64_t h : hashes) bytes.push_back(Pattern(h, 2048));
    std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
    auto stored = m.StoreChunks(pool, "chat", p, spans);
    // Pinned chunks (and their ancestors) cannot be evicted: a pool whose room is all
    // pinned by the other workers' matches says so, and the chunks stored stay whole.
    if (!stored.ok() && stored.status().code() != kvcache::Code::kNoSpace) {
      return Fail("store chunks", stored.status());
    }
    std::vector<uint32_t> q = prompt(rng() % 6, 1 + rng() % 8);
    std::vector<uint64_t> want = chain(q);
    auto match = m.Match(pool, "chat", q);
    if (!match.ok()) return Fail("match", match.status());
    if (match->matched_tokens != 16 * match->chunks.size() || match->chunks.size() > want.size()) {
      std::fprintf(stderr, "match: %llu tokens in %zu chunks\n",
                   static_cast<unsigned long long>(match->matched_tokens), match->chunks.size());
      return 2;
    }
    for (size_t c = 0; c < match->chunks.size(); ++c) {
      auto data = match->chunks[c].data();
      auto expect = Pattern(want[c], 2048);
      if (data.size() != expect.size() ||
          std::memcmp(data.data(), expect.data(), expect.size()) != 0) {
        std::fprintf(stderr, "match: chunk %zu holds the wrong bytes\n", c);
        return 2;
      }
    }
    ++ops;
  }
  std::printf("ops %llu\n", static_cast<unsigned long long>(ops));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 3;
  std::string cmd = argv[1];
  std::string pool = argv[2];
  Manager m;
  auto num = [&](int i) { return std::strtoull(argv[i], nullptr, 10); };
  if (cmd == "put" && argc == 6) {
    auto data = Pattern(num(5), num(4));
    kvcache::Status s = m.Put(pool, num(3), data, 7);
    if (!s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  if (cmd == "check" && argc == 6) {
    auto got = m.Get(pool, num(3));
    if (!got.ok()) return 1;
    return *got == Pattern(num(5), num(4)) ? 0 : 2;
  }
  if (cmd == "stress" && argc == 6) {
    return Stress(m, pool, std::strtod(argv[3], nullptr), num(4), num(5));
  }
  if (cmd == "chunks" && argc == 5) {
    return Chunks(m, pool, std::strtod(argv[3], nullptr), num(4));
  }
  if (cmd == "hold-lock") {
    auto seg = kvcache::MappedSegment::Open("/dev/shm/" + m.ShmName(pool),
                                            kvcache::SegmentOwner{geteuid(), 0});
    if (!seg.ok()) return 1;
    auto* header = reinterpret_cast<kvcache::seg::Header*>(seg->base());
    pthread_mutex_lock(&header->lock);
    Ready();
  }
  if (cmd == "hold-pins") {
    std::vector<kvcache::EntryView> views;
    for (int i = 3; i < argc; ++i) {
      auto v = m.View(pool, num(i));
      if (!v.ok()) return 1;
      views.push_back(std::move(*v));
    }
    Ready();
  }
  if (cmd == "create" && argc == 4) {
    kvcache::PoolConfig config;
    config.name = pool;
    config.size_bytes = num(3);
    kvcache::Status s = m.CreatePool(config);
    if (!s.ok()) return Fail("create", s);
    return 0;
  }
  if (cmd == "crash-commit" && argc == 6) {
    setenv("KVC_TEST_CRASH_AT", "commit-unpublished", 1);
    auto data = Pattern(num(5), num(4));
    kvcache::Status s = m.Put(pool, num(3), data, 7);
    std::fprintf(stderr, "survived the crash point: %s\n", s.ToString().c_str());
    return 1;
  }
  if (cmd == "put-when" && argc == 7) {
    auto data = Pattern(num(5), num(4));
    auto r = m.Reserve(pool, num(3), data.size(), 1);
    if (!r.ok()) return Fail("reserve", r.status());
    std::memcpy(r->data().data(), data.data(), data.size());
    std::printf("ready\n");
    std::fflush(stdout);
    while (access(argv[6], F_OK) != 0) usleep(10000);
    kvcache::Status s = r->Commit();
    if (!s.ok()) return Fail("commit", s);
    return 0;
  }
  if (cmd == "half-put" && argc == 5) {
    auto r = m.Reserve(pool, num(3), num(4), 1);
    if (!r.ok()) return 1;
    std::memset(r->data().data(), 0xAB, r->data().size() / 2);
    Ready();
  }
  return 3;
}
