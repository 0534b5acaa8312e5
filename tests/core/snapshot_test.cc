// Snapshots: round trips of every field, restore targets (missing, live, merge), a live
// pool persisted while another process puts, killed persists, and files that must be
// refused (truncated, flipped bits, foreign, newer version, missing) with nothing changed.
#include "kvcache/snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "snapshot_format.h"  // white-box: both payload copy paths
#include "kvcache/catalog.h"
#include "kvcache/prefix.h"
#include "manager_internals.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using ::kvcache::testing::IsolatedTest;
using ::kvcache::testing::Pattern;

constexpr uint64_t kMiB = 1 << 20;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::string> TempFilesIn(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (std::strstr(e->d_name, ".tmp.") != nullptr) out.push_back(e->d_name);
  }
  closedir(d);
  return out;
}

// One entry as put, with what it must look like after a restore.
struct Expected {
  EntryInfo info;
  std::vector<uint32_t> prefix;
  std::vector<std::byte> bytes;
};

// Everything observable about an entry except where it lives and its generation.
void ExpectSameEntry(const EntryInfo& want, const EntryInfo& got) {
  EXPECT_EQ(want.sequence_id, got.sequence_id);
  EXPECT_EQ(want.size_bytes, got.size_bytes) << want.sequence_id;
  EXPECT_EQ(want.token_count, got.token_count) << want.sequence_id;
  EXPECT_EQ(want.prefix_hash, got.prefix_hash) << want.sequence_id;
  EXPECT_EQ(want.prefix_length, got.prefix_length) << want.sequence_id;
  EXPECT_EQ(want.priority, got.priority) << want.sequence_id;
  EXPECT_EQ(want.created, got.created) << want.sequence_id;
  EXPECT_EQ(want.last_accessed, got.last_accessed) << want.sequence_id;
  EXPECT_EQ(want.access_count, got.access_count) << want.sequence_id;
  EXPECT_EQ(want.metadata, got.metadata) << want.sequence_id;
}

class SnapshotTest : public IsolatedTest {
 protected:
  // Puts `n` entries of random sizes, prefixes, priorities and metadata, reads a few
  // of them (so access statistics differ), and returns what the pool holds.
  std::map<uint64_t, Expected> PutRandom(const std::string& pool, uint64_t seed, int n,
                                         size_t max_size) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < n; ++i) {
      uint64_t seq = rng() % 1000000;
      size_t size = 1 + rng() % max_size;
      PutOptions opts;
      size_t prefix_len = rng() % 3 == 0 ? 0 : rng() % 64;
      for (size_t t = 0; t < prefix_len; ++t) opts.prefix_tokens.push_back(rng() % 50000);
      opts.priority = static_cast<int32_t>(rng() % 21) - 10;
      if (rng() % 2 == 0) opts.metadata = "{\"model\":\"m" + std::to_string(rng() % 100) + "\"}";
      Status s = manager().Put(pool, seq, Pattern(seq ^ seed, size), rng() % 4096, opts);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    std::map<uint64_t, Expected> out;
    auto entries = manager().Entries(pool);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    for (const EntryInfo& info : *entries) {
      if (rng() % 3 == 0) {
        EXPECT_TRUE(manager().Get(pool, info.sequence_id).ok());
      }
    }
    entries = manager().Entries(pool);
    for (const EntryInfo& info : *entries) {
      auto view = manager().View(pool, info.sequence_id);  // counts a hit: stats after
      EXPECT_TRUE(view.ok());
      Expected e;
      e.prefix = view->prefix_tokens();
      e.bytes.assign(view->data().begin(), view->data().end());
      e.info = info;
      out[info.sequence_id] = std::move(e);
    }
    // Stats as they are now, after the views above.
    auto after = manager().Entries(pool);
    EXPECT_TRUE(after.ok());
    for (const EntryInfo& info : *after) out[info.sequence_id].info = info;
    return out;
  }

  // Every field, the bytes and the prefix tokens (via Stat, then a view and a prefix
  // lookup, which count accesses: so compare the statistics first).
  void ExpectPoolHolds(const std::string& pool, const std::map<uint64_t, Expected>& want) {
    auto entries = manager().Entries(pool);
    ASSERT_TRUE(entries.ok()) << entries.status().ToString();
    ASSERT_EQ(entries->size(), want.size());
    for (const EntryInfo& got : *entries) {
      auto it = want.find(got.sequence_id);
      ASSERT_NE(it, want.end()) << got.sequence_id;
      ExpectSameEntry(it->second.info, got);
    }
    for (const auto& [seq, e] : want) {
      auto view = manager().View(pool, seq);
      ASSERT_TRUE(view.ok()) << view.status().ToString();
      EXPECT_TRUE(std::equal(view->data().begin(), view->data().end(), e.bytes.begin(),
                             e.bytes.end()))
          << "bytes of " << seq;
      EXPECT_EQ(view->prefix_tokens(), e.prefix) << seq;
      if (!e.prefix.empty()) {
        auto found = manager().GetByPrefix(pool, e.prefix);
        ASSERT_TRUE(found.ok()) << found.status().ToString();
        // A copy: C++20 lambdas may not capture structured bindings (clang 14 refuses).
        uint64_t id = seq;
        bool has = std::any_of(found->begin(), found->end(), [id](const EntryView& v) {
          return v.info().sequence_id == id;
        });
        EXPECT_TRUE(has) << "get_by_prefix does not find " << seq;
      }
    }
  }

  // Ids and generations: any change to the pool changes these.
  std::vector<std::pair<uint64_t, uint64_t>> Fingerprint(const std::string& pool) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    auto entries = manager().Entries(pool);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    if (entries.ok()) {
      for (const EntryInfo& e : *entries) out.emplace_back(e.sequence_id, e.generation);
    }
    return out;
  }

  std::string SnapshotPath(const std::string& name) { return home_->Join(name + ".cache"); }
};

TEST_F(SnapshotTest, RoundTripRestoresEveryFieldIntoAMissingPool) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE(seed);
    CreatePool("rt", 32 * kMiB, Policy::kLfu, 500);
    auto want = PutRandom("rt", seed, 60, seed == 4 ? 2 * kMiB : 64 * 1024);
    auto config = manager().GetConfig("rt");
    ASSERT_TRUE(config.ok());

    auto persisted = PersistPool(manager(), "rt");
    ASSERT_TRUE(persisted.ok()) << persisted.status().ToString();
    EXPECT_EQ(persisted->path, manager().DefaultSnapshotPath("rt"));
    EXPECT_EQ(persisted->entries, want.size());
    uint64_t bytes = 0;
    for (const auto& [seq, e] : want) bytes += e.bytes.size();
    EXPECT_EQ(persisted->bytes, bytes);

    ASSERT_TRUE(manager().DestroyPool("rt").ok());
    auto restored = RestorePool(manager(), "rt");
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    EXPECT_TRUE(restored->created_pool);
    EXPECT_FALSE(restored->replaced);
    EXPECT_EQ(restored->entries, want.size());
    EXPECT_EQ(restored->bytes, bytes);
    auto now = manager().GetConfig("rt");
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(now->ToJson(), config->ToJson());
    ExpectPoolHolds("rt", want);
    ASSERT_TRUE(manager().DestroyPool("rt").ok());
  }
}

TEST_F(SnapshotTest, RestoreUnderAnotherNameCreatesThatPoolWithTheSnapshotConfig) {
  CreatePool("src", 16 * kMiB, Policy::kPriority, 300);
  auto want = PutRandom("src", 7, 30, 32 * 1024);
  PersistOptions popts;
  popts.path = SnapshotPath("src");
  ASSERT_TRUE(PersistPool(manager(), "src", popts).ok());

  RestoreOptions ropts;
  ropts.path = popts.path;
  auto restored = RestorePool(manager(), "copy", ropts);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->created_pool);
  auto config = manager().GetConfig("copy");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->name, "copy");
  EXPECT_EQ(config->size_bytes, 16 * kMiB);
  EXPECT_EQ(config->policy, Policy::kPriority);
  EXPECT_EQ(config->max_sequences, 300u);
  ExpectPoolHolds("copy", want);
}

TEST_F(SnapshotTest, RestoreIntoALivePoolReplacesItsEntries) {
  CreatePool("live", 16 * kMiB);
  auto want = PutRandom("live", 11, 20, 16 * 1024);
  ASSERT_TRUE(PersistPool(manager(), "live").ok());
  ASSERT_TRUE(manager().Put("live", 5000001, Pattern(1, 1000), 10).ok());
  ASSERT_TRUE(manager().Remove("live", want.begin()->first).ok());

  auto restored = RestorePool(manager(), "live");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->replaced);
  EXPECT_FALSE(restored->created_pool);
  ExpectPoolHolds("live", want);
  EXPECT_EQ(manager().Stat("live", 5000001).status().code(), Code::kNotFound);
}

TEST_F(SnapshotTest, MergeKeepsTheLivePoolsOtherEntries) {
  CreatePool("live", 16 * kMiB);
  auto want = PutRandom("live", 12, 20, 16 * 1024);
  ASSERT_TRUE(PersistPool(manager(), "live").ok());
  uint64_t first = want.begin()->first;
  ASSERT_TRUE(manager().Put("live", first, Pattern(99, 77), 1).ok());  // overwritten
  ASSERT_TRUE(manager().Put("live", 5000001, Pattern(1, 1000), 10).ok());

  RestoreOptions opts;
  opts.merge = true;
  auto restored = RestorePool(manager(), "live", opts);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_FALSE(restored->replaced);
  EXPECT_EQ(restored->entries, want.size());
  auto other = manager().Get("live", 5000001);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, Pattern(1, 1000));
  auto again = manager().Get("live", first);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, want[first].bytes);
}

TEST_F(SnapshotTest, RestoreIntoALivePoolTooSmallIsRefusedAndChangesNothing) {
  CreatePool("big", 16 * kMiB);
  PutRandom("big", 13, 10, 1 * kMiB);
  ASSERT_TRUE(PersistPool(manager(), "big").ok());
  CreatePool("small", 1 * kMiB);
  ASSERT_TRUE(manager().Put("small", 1, Pattern(1, 100), 1).ok());
  auto before = Fingerprint("small");
  RestoreOptions opts;
  opts.path = manager().DefaultSnapshotPath("big");
  auto restored = RestorePool(manager(), "small", opts);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Code::kNoSpace) << restored.status().ToString();
  EXPECT_NE(restored.status().message().find(opts.path), std::string::npos);
  EXPECT_EQ(Fingerprint("small"), before);
}

TEST_F(SnapshotTest, PersistRecordsTheManifestInTheCatalog) {
  CreatePool("m", 8 * kMiB);
  auto want = PutRandom("m", 14, 15, 8 * 1024);
  ASSERT_TRUE(PersistPool(manager(), "m").ok());
  auto catalog = ManagerInternals::catalog(manager());
  ASSERT_TRUE(catalog.ok());
  auto rows = (*catalog)->GetEntries("m");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), want.size());
  for (const EntryRecord& row : *rows) {
    const EntryInfo& info = want.at(static_cast<uint64_t>(row.sequence_id)).info;
    EXPECT_EQ(row.size_bytes, static_cast<int64_t>(info.size_bytes));
    EXPECT_EQ(row.token_count, static_cast<int64_t>(info.token_count));
    EXPECT_EQ(row.prefix_hash, info.prefix_hash);
    EXPECT_EQ(row.priority, info.priority);
    EXPECT_EQ(row.metadata, info.metadata);
  }
}

TEST_F(SnapshotTest, SnapshotFileIsCreated0600WhateverTheUmask) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 4096), 1).ok());
  mode_t old = umask(0);
  auto persisted = PersistPool(manager(), "p");
  umask(old);
  ASSERT_TRUE(persisted.ok()) << persisted.status().ToString();
  struct stat st;
  ASSERT_EQ(stat(persisted->path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(SnapshotTest, MissingPathIsNotFoundNamingIt) {
  std::string path = home_->Join("no/such.cache");
  RestoreOptions opts;
  opts.path = path;
  auto restored = RestorePool(manager(), "p", opts);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Code::kNotFound);
  EXPECT_NE(restored.status().message().find(path), std::string::npos);
  EXPECT_EQ(manager().Stats("p").status().code(), Code::kNotFound);
  EXPECT_EQ(PersistPool(manager(), "nope").status().code(), Code::kNotFound);
}

TEST_F(SnapshotTest, ForeignFilesAreRefusedNamingTheFile) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  auto before = Fingerprint("p");
  std::string path = home_->Join("foreign.cache");
  for (std::string bytes : {std::string("not a snapshot, just text\n"), std::string(),
                            std::string(4096, '\0'), std::string("KVCSNA")}) {
    WriteFile(path, bytes);
    RestoreOptions opts;
    opts.path = path;
    for (std::string pool : {"p", "absent"}) {
      auto restored = RestorePool(manager(), pool, opts);
      ASSERT_FALSE(restored.ok());
      EXPECT_EQ(restored.status().code(), Code::kCorruption) << restored.status().ToString();
      EXPECT_NE(restored.status().message().find(path), std::string::npos);
    }
  }
  EXPECT_EQ(Fingerprint("p"), before);
  EXPECT_EQ(manager().Stats("absent").status().code(), Code::kNotFound);
}

TEST_F(SnapshotTest, NewerFormatVersionIsNotSupported) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  std::string path = manager().DefaultSnapshotPath("p");
  std::string bytes = ReadFile(path);
  // The next version at offset 8, header resealed: a well-formed file from a newer build.
  uint32_t version = snapshot::kSnapshotVersion + 1;
  std::memcpy(bytes.data() + 8, &version, sizeof(version));
  uint64_t sum = XXH3_64bits(bytes.data(), 64);
  std::memcpy(bytes.data() + 64, &sum, sizeof(sum));
  WriteFile(path, bytes);
  ASSERT_TRUE(manager().Put("p", 2, Pattern(2, 100), 1).ok());
  auto before = Fingerprint("p");
  auto restored = RestorePool(manager(), "p");
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Code::kNotSupported) << restored.status().ToString();
  EXPECT_NE(restored.status().message().find(path), std::string::npos);
  EXPECT_NE(restored.status().message().find("version " + std::to_string(version)),
            std::string::npos);
  EXPECT_EQ(Fingerprint("p"), before);
}

TEST_F(SnapshotTest, EveryTruncationIsRefusedAndChangesNothing) {
  CreatePool("p", 4 * kMiB);
  PutOptions opts;
  opts.prefix_tokens = {1, 2, 3, 4, 5};
  opts.priority = 3;
  opts.metadata = "{\"a\":1}";
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 10, opts).ok());
  ASSERT_TRUE(manager().Put("p", 2, Pattern(2, 37), 5).ok());
  ASSERT_TRUE(manager().Put("p", 3, Pattern(3, 1), 1, opts).ok());
  PersistOptions popts;
  popts.path = SnapshotPath("small");
  ASSERT_TRUE(PersistPool(manager(), "p", popts).ok());
  std::string whole = ReadFile(popts.path);
  ASSERT_GT(whole.size(), 300u);

  ASSERT_TRUE(manager().Put("p", 4, Pattern(4, 10), 1).ok());
  auto before = Fingerprint("p");
  std::string path = SnapshotPath("cut");
  RestoreOptions ropts;
  ropts.path = path;
  for (size_t len = 0; len < whole.size(); ++len) {
    WriteFile(path, std::string_view(whole).substr(0, len));
    auto restored = RestorePool(manager(), "p", ropts);
    ASSERT_FALSE(restored.ok()) << "length " << len;
    ASSERT_EQ(restored.status().code(), Code::kCorruption) << restored.status().ToString();
    ASSERT_NE(restored.status().message().find(path), std::string::npos);
    auto fresh = RestorePool(manager(), "fresh", ropts);
    ASSERT_FALSE(fresh.ok()) << "length " << len;
  }
  EXPECT_EQ(Fingerprint("p"), before);
  EXPECT_EQ(manager().Stats("fresh").status().code(), Code::kNotFound);
  // The whole file, and trailing garbage.
  WriteFile(path, whole + "x");
  EXPECT_EQ(RestorePool(manager(), "p", ropts).status().code(), Code::kCorruption);
  WriteFile(path, whole);
  EXPECT_TRUE(RestorePool(manager(), "fresh", ropts).ok());
}

TEST_F(SnapshotTest, RandomBitFlipsAnywhereAreRefusedAndChangeNothing) {
  CreatePool("p", 16 * kMiB);
  PutRandom("p", 21, 40, 64 * 1024);
  PersistOptions popts;
  popts.path = SnapshotPath("large");
  ASSERT_TRUE(PersistPool(manager(), "p", popts).ok());
  std::string whole = ReadFile(popts.path);
  auto before = Fingerprint("p");
  std::string path = SnapshotPath("flipped");
  RestoreOptions ropts;
  ropts.path = path;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 300; ++i) {
    std::string bytes = whole;
    // Half anywhere, half in the first 4 KiB where the headers are.
    size_t pos = i % 2 == 0 ? rng() % bytes.size() : rng() % 4096;
    bytes[pos] = static_cast<char>(bytes[pos] ^ (1 << (rng() % 8)));
    WriteFile(path, bytes);
    auto restored = RestorePool(manager(), "p", ropts);
    ASSERT_FALSE(restored.ok()) << "flip at " << pos;
    EXPECT_TRUE(restored.status().code() == Code::kCorruption ||
                restored.status().code() == Code::kNotSupported)
        << restored.status().ToString();
    EXPECT_NE(restored.status().message().find(path), std::string::npos);
  }
  EXPECT_EQ(Fingerprint("p"), before);
}

// Payload bytes are Pattern(seed) where the seed is in the entry's metadata: an entry
// whose bytes and metadata come from different puts is caught.
std::string SeedMetadata(uint64_t seed) { return "{\"seed\":" + std::to_string(seed) + "}"; }

bool SelfConsistent(const EntryInfo& info, std::span<const std::byte> bytes) {
  uint64_t seed = 0;
  if (std::sscanf(info.metadata.c_str(), "{\"seed\":%lu}", &seed) != 1) return false;
  size_t size = 1024 + seed % 7 * 4096;
  if (bytes.size() != size) return false;
  auto want = Pattern(seed, size);
  return std::equal(bytes.begin(), bytes.end(), want.begin());
}

// Child process body: puts self-checking entries until killed.
[[noreturn]] void PutForever(const ManagerOptions& options, const std::string& pool) {
  Manager m(options);
  for (uint64_t n = 0;; ++n) {
    uint64_t seq = n % 300;
    uint64_t seed = n * 1000003 + 17;
    PutOptions opts;
    opts.metadata = SeedMetadata(seed);
    opts.prefix_tokens = {static_cast<uint32_t>(seq), 7};
    if (!m.Put(pool, seq, Pattern(seed, 1024 + seed % 7 * 4096), seq, opts).ok()) _exit(3);
  }
}

TEST_F(SnapshotTest, PersistOfALivePoolIsConsistentWhileAnotherProcessPuts) {
  CreatePool("hot", 64 * kMiB, Policy::kLru, 1000);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) PutForever(options(), "hot");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  RestoreOptions ropts;
  ropts.path = SnapshotPath("hot");
  PersistOptions popts;
  popts.path = ropts.path;
  for (int round = 0; round < 5; ++round) {
    auto persisted = PersistPool(manager(), "hot", popts);
    ASSERT_TRUE(persisted.ok()) << persisted.status().ToString();
    EXPECT_GT(persisted->entries, 0u);
    auto restored = RestorePool(manager(), "copy", ropts);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    EXPECT_EQ(restored->entries, persisted->entries);
    auto entries = manager().Entries("copy");
    ASSERT_TRUE(entries.ok());
    EXPECT_EQ(entries->size(), persisted->entries);
    for (const EntryInfo& info : *entries) {
      auto view = manager().View("copy", info.sequence_id);
      ASSERT_TRUE(view.ok());
      EXPECT_TRUE(SelfConsistent(info, view->data())) << "entry " << info.sequence_id;
    }
  }
  int status = 0;
  EXPECT_EQ(waitpid(child, &status, WNOHANG), 0) << "the putting process stopped early";
  kill(child, SIGKILL);
  waitpid(child, &status, 0);
}

TEST_F(SnapshotTest, PersistKilledAtRandomMomentsLeavesThePreviousSnapshotLoadable) {
  CreatePool("k", 96 * kMiB, Policy::kLru, 2000);
  auto old_entries = PutRandom("k", 31, 40, 256 * 1024);
  std::string path = manager().DefaultSnapshotPath("k");
  ASSERT_TRUE(PersistPool(manager(), "k").ok());
  // A bigger pool now, so a new persist takes a while and can be cut anywhere.
  for (uint64_t i = 0; i < 40; ++i) {
    ASSERT_TRUE(manager().Put("k", 2000000 + i, Pattern(i, 2 * kMiB), 1).ok());
  }
  size_t new_count = old_entries.size() + 40;
  // Kill times spread over a whole persist (timed here, in a child like the ones below)
  // and a bit beyond, so some kills land after it completed.
  auto start = std::chrono::steady_clock::now();
  pid_t timed = fork();
  ASSERT_GE(timed, 0);
  if (timed == 0) {
    Manager m(options());
    PersistOptions other;
    other.path = SnapshotPath("timing");
    _exit(PersistPool(m, "k", other).ok() ? 0 : 1);
  }
  int timed_status = 0;
  waitpid(timed, &timed_status, 0);
  ASSERT_TRUE(WIFEXITED(timed_status) && WEXITSTATUS(timed_status) == 0);
  auto persist_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start).count();
  std::mt19937_64 rng(9);
  RestoreOptions ropts;
  ropts.path = path;
  // Each round adds an entry, so the file holds either the previous snapshot (the kill
  // came first) or this round's (the persist finished): never anything else.
  size_t in_file = old_entries.size();
  size_t in_pool = new_count;
  int completed = 0;
  for (int round = 0; round < 16; ++round) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      Manager m(options());
      _exit(PersistPool(m, "k").ok() ? 0 : 1);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % (persist_us * 13 / 10 + 1)));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    auto restored = RestorePool(manager(), "check", ropts);
    ASSERT_TRUE(restored.ok()) << "round " << round << ": " << restored.status().ToString();
    ASSERT_TRUE(restored->entries == in_file || restored->entries == in_pool)
        << "round " << round << ": " << restored->entries << " entries, expected " << in_file
        << " or " << in_pool;
    if (restored->entries == in_pool) ++completed;
    in_file = restored->entries;
    ASSERT_TRUE(manager().DestroyPool("check").ok());
    ASSERT_TRUE(manager().Put("k", 3000000 + round, Pattern(round, 4096), 1).ok());
    ++in_pool;
  }
  // The next persist clears what the killed ones left behind.
  ASSERT_TRUE(PersistPool(manager(), "k").ok());
  EXPECT_TRUE(TempFilesIn(path.substr(0, path.rfind('/'))).empty());
  RecordProperty("persist_us", static_cast<int>(persist_us));
  RecordProperty("rounds_where_the_persist_completed", completed);
}

// A persist running in another PID namespace names its temp file with a pid that means
// nothing here; its lock on the file, not the pid, keeps a sweep from removing it.
TEST_F(SnapshotTest, SweepKeepsTheTempFileOfALiveWriterWhosePidIsNotOurs) {
  CreatePool("n", 4 * kMiB);
  ASSERT_TRUE(manager().Put("n", 1, Pattern(1, 1000), 1).ok());
  std::string path = manager().DefaultSnapshotPath("n");
  ASSERT_TRUE(PersistPool(manager(), "n").ok());
  pid_t gone = fork();  // a pid that exists in no namespace we can see once reaped
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);
  std::string temp = path + ".tmp." + std::to_string(gone) + ".Ab12Cd";
  int ready[2], release[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(release), 0);
  pid_t writer = fork();
  if (writer == 0) {
    int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) _exit(1);
    char c = 0;
    if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) != 1) _exit(2);
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_TRUE(PersistPool(manager(), "n").ok());
  EXPECT_EQ(TempFilesIn(path.substr(0, path.rfind('/'))).size(), 1u) << "a live writer's file";
  ASSERT_EQ(write(release[1], &c, 1), 1);
  int status = 0;
  waitpid(writer, &status, 0);
  EXPECT_EQ(status, 0);
  ASSERT_TRUE(PersistPool(manager(), "n").ok());
  EXPECT_TRUE(TempFilesIn(path.substr(0, path.rfind('/'))).empty()) << "its writer is gone";
  for (int fd : {ready[0], ready[1], release[0], release[1]}) close(fd);
}

TEST_F(SnapshotTest, FailedPersistRemovesItsTempFileAndKeepsTheOldSnapshot) {
  CreatePool("f", 16 * kMiB);
  ASSERT_TRUE(manager().Put("f", 1, Pattern(1, 1000), 1).ok());
  std::string path = manager().DefaultSnapshotPath("f");
  ASSERT_TRUE(PersistPool(manager(), "f").ok());
  std::string old_bytes = ReadFile(path);
  ASSERT_TRUE(manager().Put("f", 2, Pattern(2, 4 * kMiB), 1).ok());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A file size limit makes the write fail as a full disk would (EFBIG, not a signal).
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {256 * 1024, 256 * 1024};
    setrlimit(RLIMIT_FSIZE, &limit);
    Manager m(options());
    auto r = PersistPool(m, "f");
    if (r.ok()) _exit(1);
    if (r.status().message().find(path) == std::string::npos) _exit(2);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadFile(path), old_bytes);
  EXPECT_TRUE(TempFilesIn(path.substr(0, path.rfind('/'))).empty());
}

TEST_F(SnapshotTest, RestoreMissingPoolsBringsBackPoolsWhoseSegmentIsGone) {
  CreatePool("a", 8 * kMiB);
  CreatePool("b", 8 * kMiB);
  CreatePool("c", 8 * kMiB);
  auto want = PutRandom("a", 41, 10, 8 * 1024);
  ASSERT_TRUE(PersistPool(manager(), "a").ok());
  ASSERT_TRUE(manager().Put("c", 1, Pattern(1, 10), 1).ok());
  ASSERT_TRUE(PersistPool(manager(), "c").ok());
  // A reboot: segments of a and b gone, catalog kept; c stays live.
  manager_.reset();
  ::unlink(("/dev/shm/" + shm_prefix_ + "a").c_str());
  ::unlink(("/dev/shm/" + shm_prefix_ + "b").c_str());
  manager_ = std::make_unique<Manager>(options());
  auto stats = manager().Stats("a");
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_FALSE(stats->loaded);

  auto results = RestoreMissingPools(manager());
  ASSERT_EQ(results.size(), 1u);  // b has no snapshot, c is live
  EXPECT_EQ(results[0].first, "a");
  ASSERT_TRUE(results[0].second.ok()) << results[0].second.status().ToString();
  EXPECT_TRUE(results[0].second->created_pool);
  ExpectPoolHolds("a", want);
  EXPECT_FALSE(manager().Stats("b")->loaded);
}

// Restore copies payloads through the pool's file when it can (CopyPayload) and through
// memory otherwise (ReadPayload); both must give the bytes back and both must notice a
// snapshot written in place after it was validated.
TEST_F(SnapshotTest, BothPayloadCopyPathsReturnTheBytesAndCatchInPlaceChanges) {
  CreatePool("p", 4 * kMiB);
  auto bytes = Pattern(3, 300000);
  ASSERT_TRUE(manager().Put("p", 9, bytes, 1).ok());
  PersistOptions popts;
  popts.path = SnapshotPath("w");
  ASSERT_TRUE(PersistPool(manager(), "p", popts).ok());

  auto reader = snapshot::SnapshotReader::Open(popts.path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto contents = (*reader)->Validate(nullptr);
  ASSERT_TRUE(contents.ok()) << contents.status().ToString();
  ASSERT_EQ(contents->records.size(), 1u);
  const snapshot::RecordEntry& rec = contents->records[0];

  std::vector<std::byte> out(bytes.size());
  ASSERT_TRUE((*reader)->ReadPayload(rec, out).ok());
  EXPECT_EQ(out, bytes);
  std::string dest = home_->Join("dest");
  int fd = open(dest.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE((*reader)->CopyPayload(rec, fd, 4096).ok());
  std::string copied = ReadFile(dest);
  ASSERT_EQ(copied.size(), 4096 + bytes.size());
  EXPECT_EQ(std::memcmp(copied.data() + 4096, bytes.data(), bytes.size()), 0);

  // Timestamps are coarse: let the clock move before writing in place.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int snap = open(popts.path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(snap, 0);
  char flipped = static_cast<char>(~static_cast<unsigned char>(bytes[100]));
  ASSERT_EQ(pwrite(snap, &flipped, 1, static_cast<off_t>(rec.payload_offset + 100)), 1);
  close(snap);
  auto read_again = (*reader)->ReadPayload(rec, out);
  EXPECT_EQ(read_again.code(), Code::kCorruption) << read_again.ToString();
  auto copy_again = (*reader)->CopyPayload(rec, fd, 4096);
  EXPECT_EQ(copy_again.code(), Code::kCorruption) << copy_again.ToString();
  EXPECT_NE(copy_again.message().find(popts.path), std::string::npos);
  close(fd);
}

// Restores copy into the pool's one shared descriptor, from any number of threads of a
// process: each copy must land at its own offset, never where another thread's copy
// moved a shared file position to.
TEST_F(SnapshotTest, PayloadCopiesFromManyThreadsIntoOneDescriptorLandAtTheirOffsets) {
  constexpr size_t kSize = 64 * 1024;
  constexpr int kCopies = 400;  // per thread
  CreatePool("p", 4 * kMiB);
  auto bytes = Pattern(5, kSize);
  ASSERT_TRUE(manager().Put("p", 9, bytes, 1).ok());
  PersistOptions popts;
  popts.path = SnapshotPath("w");
  ASSERT_TRUE(PersistPool(manager(), "p", popts).ok());

  std::string dest = home_->Join("dest");
  int fd = open(dest.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  Status results[2];
  std::thread threads[2];
  std::atomic<int> ready{0};
  for (int t = 0; t < 2; ++t) {
    threads[t] = std::thread([&, t] {
      auto reader = snapshot::SnapshotReader::Open(popts.path);
      if (!reader.ok()) {
        results[t] = reader.status();
        ready.fetch_add(1);
        return;
      }
      auto contents = (*reader)->Validate(nullptr);
      if (!contents.ok()) {
        results[t] = contents.status();
        ready.fetch_add(1);
        return;
      }
      // Both threads copy at the same time.
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      for (int i = 0; i < kCopies && results[t].ok(); ++i) {
        uint64_t slot = 2 * static_cast<uint64_t>(i) + static_cast<uint64_t>(t);
        results[t] = (*reader)->CopyPayload(contents->records[0], fd, slot * kSize);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  close(fd);
  for (const Status& s : results) ASSERT_TRUE(s.ok()) << s.ToString();
  std::string copied = ReadFile(dest);
  ASSERT_EQ(copied.size(), 2 * kCopies * kSize);
  int misplaced = 0;
  for (size_t slot = 0; slot < 2 * kCopies; ++slot) {
    if (std::memcmp(copied.data() + slot * kSize, bytes.data(), kSize) != 0) ++misplaced;
  }
  EXPECT_EQ(misplaced, 0) << "of " << 2 * kCopies << " copies";
}

TEST_F(SnapshotTest, ProgressIsReportedUpToTheTotal) {
  CreatePool("p", 16 * kMiB);
  PutRandom("p", 51, 20, 256 * 1024);
  uint64_t last_done = 0, last_total = 0;
  bool monotonic = true;
  PersistOptions popts;
  popts.progress = [&](uint64_t done, uint64_t total) {
    monotonic = monotonic && done >= last_done && done <= total;
    last_done = done;
    last_total = total;
  };
  ASSERT_TRUE(PersistPool(manager(), "p", popts).ok());
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(last_done, last_total);
  last_done = 0;
  RestoreOptions ropts;
  ropts.progress = popts.progress;
  ASSERT_TRUE(RestorePool(manager(), "p", ropts).ok());
  EXPECT_TRUE(monotonic);
  EXPECT_GT(last_total, 0u);
  EXPECT_EQ(last_done, last_total);
}

// ---------------------------------------------------------------- token chunks

std::vector<uint32_t> Tokens(size_t n, uint32_t from) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = from + static_cast<uint32_t>(i);
  return v;
}

class SnapshotChunkTest : public SnapshotTest {
 protected:
  // Stores the whole 16-token chunks of `tokens` under `ns`, chunk i's bytes
  // Pattern(H_i, size).
  void Store(const std::string& pool, std::string_view ns, const std::vector<uint32_t>& tokens,
             size_t size) {
    std::vector<std::vector<std::byte>> bytes;
    uint64_t h = ChunkChainSeed(ns);
    for (size_t c = 0; c + 16 <= tokens.size(); c += 16) {
      h = ChainHash(h, std::span<const uint32_t>(tokens).subspan(c, 16));
      bytes.push_back(Pattern(h, size));
    }
    std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
    auto r = manager().StoreChunks(pool, ns, tokens, spans);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // Every field of every chunk, in hash order (generations aside).
  std::vector<std::string> Describe(const std::string& pool) {
    std::vector<std::string> out;
    auto chunks = manager().Chunks(pool);
    EXPECT_TRUE(chunks.ok()) << chunks.status().ToString();
    if (!chunks.ok()) return out;
    for (const ChunkInfo& c : *chunks) {
      auto pinned = manager().PinChunk(pool, c.hash);
      EXPECT_TRUE(pinned.ok());
      auto data = pinned->view.data();
      out.push_back(PrefixHashToHex(c.hash) + " parent " + PrefixHashToHex(c.parent_hash) +
                    " at " + std::to_string(c.position) + " ns '" + c.name_space + "' size " +
                    std::to_string(c.size_bytes) + " created " + std::to_string(c.created) +
                    " accessed " + std::to_string(c.last_accessed) + " x" +
                    std::to_string(c.access_count) + " tokens " +
                    FormatTokenList(pinned->view.prefix_tokens()) + " bytes " +
                    std::to_string(XXH3_64bits(data.data(), data.size())));
    }
    return out;
  }

  // The matched tokens and the bytes of each matched chunk, for each prompt.
  std::vector<std::string> Answers(const std::string& pool) {
    std::vector<std::string> out;
    const std::pair<const char*, std::vector<uint32_t>> asks[] = {
        {"model-a", Tokens(200, 1)},       {"model-a", Tokens(100, 1)},
        {"model-b", Tokens(200, 1)},       {"model-a", Tokens(48, 5000)},
        {"", Tokens(64, 7)},
    };
    for (const auto& [ns, tokens] : asks) {
      auto m = manager().Match(pool, ns, tokens);
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      std::string line = std::string(ns) + ": " + std::to_string(m->matched_tokens);
      for (const MatchedChunk& v : m->chunks) {
        line += " " + std::to_string(XXH3_64bits(v.data().data(), v.data().size()));
      }
      out.push_back(line);
    }
    return out;
  }

  void Fill(const std::string& pool) {
    ASSERT_TRUE(manager().Put(pool, 7, Pattern(7, 5000), 10).ok());
    Store(pool, "model-a", Tokens(160, 1), 3000);   // 10 chunks
    // A branch sharing the first two chunks of the chain above.
    std::vector<uint32_t> branch = Tokens(32, 1);
    for (uint32_t t : Tokens(48, 5000)) branch.push_back(t);
    Store(pool, "model-a", branch, 3000);            // 3 more chunks
    Store(pool, "model-b", Tokens(96, 1), 100000);  // 6 chunks, same tokens, other ns
    Store(pool, "", Tokens(64, 7), 10);             // 4 chunks, the empty namespace
    // Access statistics that differ between chunks.
    ASSERT_TRUE(manager().Match(pool, "model-a", Tokens(64, 1)).ok());
  }
};

TEST_F(SnapshotChunkTest, ChunksComeBackWithTheirChainsAndMatchTheSameTokens) {
  PoolConfig c;
  c.name = "p";
  c.size_bytes = 16 * kMiB;
  ASSERT_TRUE(manager().CreatePool(c).ok());
  Fill("p");
  auto described = Describe("p");
  ASSERT_EQ(described.size(), 23u);

  auto persisted = PersistPool(manager(), "p");
  ASSERT_TRUE(persisted.ok()) << persisted.status().ToString();
  EXPECT_EQ(persisted->entries, 1u);
  EXPECT_EQ(persisted->chunks, 23u);
  EXPECT_EQ(persisted->bytes, 5000u + 13 * 3000u + 6 * 100000u + 4 * 10u);

  // Into a missing pool...
  ASSERT_TRUE(manager().DestroyPool("p").ok());
  auto restored = RestorePool(manager(), "p");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->created_pool);
  EXPECT_EQ(restored->entries, 1u);
  EXPECT_EQ(restored->chunks, 23u);
  EXPECT_EQ(Describe("p"), described);
  EXPECT_TRUE(manager().Get("p", 7).ok());
  auto health = manager().Health("p");
  ASSERT_TRUE(health.ok());
  for (const auto& problem : health->problems) ADD_FAILURE() << problem;
  auto answers = Answers("p");
  EXPECT_EQ(answers[0].substr(0, 13), "model-a: 160 ");
  EXPECT_EQ(answers[1].substr(0, 12), "model-a: 96 ");
  EXPECT_EQ(answers[2].substr(0, 12), "model-b: 96 ");
  EXPECT_EQ(answers[3], "model-a: 0");  // the branch's tail alone has no first chunk
  EXPECT_EQ(answers[4].substr(0, 5), ": 64 ");

  // ...and into a live pool, replacing what it holds, under another name too.
  ASSERT_TRUE(manager().Clear("p").ok());
  Store("p", "model-a", Tokens(32, 900), 10);
  restored = RestorePool(manager(), "p");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->replaced);
  EXPECT_EQ(Describe("p").size(), 23u);
  RestoreOptions other;
  other.path = manager().DefaultSnapshotPath("p");
  ASSERT_TRUE(RestorePool(manager(), "q", other).ok());
  EXPECT_EQ(Answers("q"), Answers("p"));
}

TEST_F(SnapshotChunkTest, MergeKeepsChunksAlreadyCachedAndAddsTheRest) {
  PoolConfig c;
  c.name = "p";
  c.size_bytes = 16 * kMiB;
  ASSERT_TRUE(manager().CreatePool(c).ok());
  Fill("p");
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  ASSERT_TRUE(manager().Evict("p", 50).ok());
  auto before = manager().Stats("p");
  ASSERT_LT(before->chunk_count, 23u);
  RestoreOptions merge;
  merge.merge = true;
  auto restored = RestorePool(manager(), "p", merge);
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->chunks, 23u);
  EXPECT_EQ(manager().Stats("p")->chunk_count, 23u);
  auto health = manager().Health("p");
  for (const auto& problem : health->problems) ADD_FAILURE() << problem;
}

TEST_F(SnapshotChunkTest, ChunksOfAnotherSizeAreRefusedAndChangeNothing) {
  PoolConfig c;
  c.name = "p";
  c.size_bytes = 16 * kMiB;
  ASSERT_TRUE(manager().CreatePool(c).ok());
  Fill("p");
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  c.name = "wide";
  c.prefix_block_tokens = 32;
  ASSERT_TRUE(manager().CreatePool(c).ok());
  ASSERT_TRUE(manager().Put("wide", 1, Pattern(1, 10), 1).ok());
  auto before = Fingerprint("wide");
  RestoreOptions from;
  from.path = manager().DefaultSnapshotPath("p");
  auto restored = RestorePool(manager(), "wide", from);
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), Code::kInvalidArgument) << restored.status().ToString();
  EXPECT_NE(restored.status().message().find("chunks of 16 tokens"), std::string::npos);
  EXPECT_EQ(Fingerprint("wide"), before);
  EXPECT_TRUE(manager().Chunks("wide")->empty());
}

TEST_F(SnapshotChunkTest, AVersionOneSnapshotStillRestores) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  ASSERT_TRUE(PersistPool(manager(), "p").ok());
  std::string path = manager().DefaultSnapshotPath("p");
  std::string bytes = ReadFile(path);
  // Version 1 is version 2 without chunk records: the same bytes but the version.
  auto reseal = [&](uint32_t version, uint32_t chunk_count) {
    std::memcpy(bytes.data() + 8, &version, sizeof(version));
    std::memcpy(bytes.data() + 28, &chunk_count, sizeof(chunk_count));
    uint64_t sum = XXH3_64bits(bytes.data(), 64);
    std::memcpy(bytes.data() + 64, &sum, sizeof(sum));
    WriteFile(path, bytes);
  };
  reseal(1, 0);
  ASSERT_TRUE(manager().Remove("p", 1).ok());
  auto restored = RestorePool(manager(), "p");
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(manager().Get("p", 1).ok());
  // A version 1 file claiming chunks is not one this build ever wrote.
  reseal(1, 1);
  restored = RestorePool(manager(), "p");
  EXPECT_EQ(restored.status().code(), Code::kCorruption) << restored.status().ToString();
}

TEST_F(SnapshotChunkTest, ChunkRecordsThatBreakTheirChainAreRefusedAndChangeNothing) {
  CreatePool("p", 4 * kMiB);
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 100), 1).ok());
  auto before = Fingerprint("p");
  std::vector<uint32_t> tokens = Tokens(16, 1), other = Tokens(16, 100);
  const uint64_t seed = ChunkChainSeed("m");
  const uint64_t h1 = ChainHash(seed, tokens);
  std::vector<std::byte> payload = Pattern(3, 64);
  struct Case {
    const char* what;
    snapshot::ChunkMeta first;
    std::string ns;
    std::vector<uint32_t> first_tokens;
    bool with_second;
  };
  const Case cases[] = {
      {"a hash that is not its tokens'", {h1 ^ 1, seed, 64, 1, 0, 0, 0}, "m", tokens, false},
      {"a first chunk under another seed", {ChainHash(seed ^ 1, tokens), seed ^ 1, 64, 1, 0, 0, 0},
       "m", tokens, false},
      {"a chunk in another namespace's chain", {h1, seed, 64, 1, 0, 0, 0}, "n", tokens, false},
      {"an orphan", {ChainHash(h1, other), h1, 64, 2, 0, 0, 0}, "m", other, false},
      {"a child of the wrong position", {h1, seed, 64, 1, 0, 0, 0}, "m", tokens, true},
  };
  std::string path = home_->Join("bad.cache");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    uint32_t n = c.with_second ? 2 : 1;
    auto w = snapshot::SnapshotWriter::Create(path, manager().GetConfig("p")->ToJson(), 0,
                                              n * payload.size(), 0, n);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->AddChunk(c.first, c.first_tokens, c.ns, payload).ok());
    if (c.with_second) {
      snapshot::ChunkMeta second{ChainHash(h1, other), h1, 64, 3, 0, 0, 0};
      ASSERT_TRUE((*w)->AddChunk(second, other, c.ns, payload).ok());
    }
    ASSERT_TRUE((*w)->Finish().ok());
    RestoreOptions from;
    from.path = path;
    auto restored = RestorePool(manager(), "p", from);
    EXPECT_EQ(restored.status().code(), Code::kCorruption) << restored.status().ToString();
    EXPECT_EQ(Fingerprint("p"), before);
    EXPECT_TRUE(manager().Chunks("p")->empty());
  }
}

}  // namespace
}  // namespace kvcache
