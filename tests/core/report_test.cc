#include "kvcache/report.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>

namespace kvcache {
namespace {

using nlohmann::json;

constexpr uint64_t kGiB = 1024ull * 1024 * 1024;
constexpr char kHeader[] =
    "POOL                 SIZE         USED         ENTRIES    HIT RATE   POLICY\n";

PoolStats LoadedPool(const std::string& name, uint64_t size, Policy policy = Policy::kLru) {
  PoolStats s;
  s.config.name = name;
  s.config.size_bytes = size;
  s.config.policy = policy;
  s.shm_name = "cortex_kv_" + name;
  s.loaded = true;
  s.size = size;
  s.free = size;
  s.block_count = size / kDefaultBlockSize;
  return s;
}

PoolStats UnloadedPool(const std::string& name, uint64_t size) {
  PoolStats s;
  s.config.name = name;
  s.config.size_bytes = size;
  s.shm_name = "cortex_kv_" + name;
  return s;
}

// Pins the local time zone to UTC for the duration of a test.
class UtcTimeZone {
 public:
  UtcTimeZone() {
    const char* tz = std::getenv("TZ");
    had_ = tz != nullptr;
    if (had_) old_ = tz;
    setenv("TZ", "UTC", 1);
    tzset();
  }
  ~UtcTimeZone() {
    if (had_) {
      setenv("TZ", old_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST(ReportTest, StatusTableMatchesTheSeedExactly) {
  EXPECT_EQ(FormatStatusTable({LoadedPool("llama-cache", 16 * kGiB)}),
            std::string(kHeader) +
                "llama-cache          16.0G        0.0%         0          0.0%       lru\n");
}

TEST(ReportTest, EmptyListingsSayTheOriginalsWords) {
  EXPECT_EQ(FormatStatusTable({}), "No cache pools found\n");
  EXPECT_EQ(FormatEntries("llama", {}), "No entries in pool 'llama'\n");
}

TEST(ReportTest, StatusTableShowsUsedShareEntriesAndHitRate) {
  PoolStats s = LoadedPool("mistral-7b", 8 * kGiB, Policy::kLfu);
  s.used = 2 * kGiB;
  s.free = 6 * kGiB;
  s.entry_count = 1523;
  s.hits = 3;
  s.misses = 1;
  PoolStats t = LoadedPool("codellama", 512ull * 1024 * 1024, Policy::kPriority);
  EXPECT_EQ(FormatStatusTable({s, t}),
            std::string(kHeader) +
                "mistral-7b           8.0G         25.0%        1523       75.0%      lfu\n"
                "codellama            512.0M       0.0%         0          0.0%       priority\n");
}

TEST(ReportTest, StatusTableMarksPoolsWithoutSegmentAsNotLoaded) {
  EXPECT_EQ(FormatStatusTable({UnloadedPool("gone", 16 * kGiB)}),
            std::string(kHeader) +
                "gone                 16.0G        -            -          -          lru "
                "(not loaded)\n");
}

TEST(ReportTest, HealthyReportFollowsTheSeed) {
  HealthReport r;
  r.stats = LoadedPool("llama-cache", 16 * kGiB);
  r.healthy = true;
  r.processes = {{1234, 1.0}, {5678, 2.0}};
  std::string text = FormatHealth(r);
  EXPECT_EQ(text.rfind("Health check for 'llama-cache':\n"
                       "  Status: HEALTHY\n"
                       "  Shared Memory: cortex_kv_llama-cache\n"
                       "  Total Size: 16.00 GB\n",
                       0),
            0u)
      << text;
  EXPECT_NE(text.find("  Used: 0 B (0.0%)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Free: 16.00 GB\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Entries: 0 / 10000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Hit rate: 0.0% (0 hits, 0 misses)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Evictions: 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Attached processes: 2 (pids 1234, 5678)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Pinned entries: 0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("Problems"), std::string::npos) << text;
}

TEST(ReportTest, UnhealthyReportListsEveryProblem) {
  HealthReport r;
  r.stats = LoadedPool("p", kGiB);
  r.healthy = false;
  r.problems = {"bitmap marks 3 blocks no entry owns", "entry_count is 4, index holds 3"};
  std::string text = FormatHealth(r);
  EXPECT_NE(text.find("  Status: UNHEALTHY\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Attached processes: 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Problems:\n"
                      "    - bitmap marks 3 blocks no entry owns\n"
                      "    - entry_count is 4, index holds 3\n"),
            std::string::npos)
      << text;
}

TEST(ReportTest, EntriesTableShowsLastAccessInLocalTime) {
  UtcTimeZone utc;
  EntryInfo e;
  e.sequence_id = 42;
  e.token_count = 128;
  e.size_bytes = 2 * 1024 * 1024;
  e.access_count = 7;
  e.priority = -3;
  e.last_accessed = 1700000000.75;
  std::string text = FormatEntries("p", {e});
  EXPECT_EQ(
      text,
      "SEQ ID               TOKENS     SIZE       ACCESSES   PRIORITY   LAST ACCESS\n"
      "42                   128        2.0M       7          -3         2023-11-14 22:13:20\n");
}

TEST(ReportTest, ConfigListsEveryFieldOnePerLine) {
  PoolConfig c;
  c.name = "x";
  c.size_bytes = 16 * kGiB;
  c.policy = Policy::kFifo;
  c.tier = Tier::kDisk;
  c.max_sequences = 77;
  std::string text = FormatConfig(c);
  EXPECT_EQ(text,
            "name: x\n"
            "size: 16.00 GB\n"
            "size_bytes: 17179869184\n"
            "policy: fifo\n"
            "tier: disk\n"
            "max_sequences: 77\n"
            "block_size: 4096\n"
            "prefix_block_tokens: 16\n"
            "mode: 0600\n");
}

TEST(ReportTest, StatsJsonHasStableKeys) {
  PoolStats s = LoadedPool("llama-cache", 16 * kGiB);
  s.used = 4096;
  s.free = 16 * kGiB - 4096;
  s.entry_count = 1;
  s.hits = 1;
  s.misses = 3;
  s.evictions = 2;
  s.attached = 1;
  s.created = 100.5;
  json j = json::parse(StatsToJson(s));
  EXPECT_EQ(j["name"], "llama-cache");
  EXPECT_EQ(j["shm_name"], "cortex_kv_llama-cache");
  EXPECT_EQ(j["loaded"], true);
  EXPECT_EQ(j["size_bytes"], 16 * kGiB);
  EXPECT_EQ(j["used_bytes"], 4096u);
  EXPECT_EQ(j["free_bytes"], 16 * kGiB - 4096);
  EXPECT_EQ(j["block_count"], 16 * kGiB / 4096);
  EXPECT_EQ(j["entry_count"], 1u);
  EXPECT_EQ(j["hits"], 1u);
  EXPECT_EQ(j["misses"], 3u);
  EXPECT_EQ(j["evictions"], 2u);
  EXPECT_DOUBLE_EQ(j["hit_rate"].get<double>(), 0.25);
  EXPECT_EQ(j["policy"], "lru");
  EXPECT_EQ(j["tier"], "cpu");
  EXPECT_EQ(j["max_sequences"], 10000u);
  EXPECT_EQ(j["attached"], 1u);
  EXPECT_DOUBLE_EQ(j["created"].get<double>(), 100.5);
  EXPECT_TRUE(j.contains("modified"));
}

TEST(ReportTest, StatsListJsonIsAnArrayInOrder) {
  json j = json::parse(StatsListToJson({LoadedPool("a", kGiB), UnloadedPool("b", 2 * kGiB)}));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["name"], "a");
  EXPECT_EQ(j[1]["name"], "b");
  EXPECT_EQ(j[1]["loaded"], false);
  EXPECT_EQ(j[1]["size_bytes"], 2 * kGiB);
  EXPECT_TRUE(json::parse(StatsListToJson({})).empty());
}

TEST(ReportTest, HealthJsonCarriesProblemsAndProcesses) {
  HealthReport r;
  r.stats = LoadedPool("p", kGiB);
  r.problems = {"overlap at block 7"};
  r.processes = {{99, 5.0}};
  r.pinned_entries = 2;
  json j = json::parse(HealthToJson(r));
  EXPECT_EQ(j["name"], "p");
  EXPECT_EQ(j["healthy"], false);
  EXPECT_EQ(j["problems"], json::array({"overlap at block 7"}));
  EXPECT_EQ(j["processes"][0]["pid"], 99);
  EXPECT_EQ(j["pinned_entries"], 2u);
  EXPECT_EQ(j["stats"]["name"], "p");
}

TEST(ReportTest, EntriesJsonEmbedsMetadataAndNullsMissingPrefix) {
  EntryInfo a;
  a.sequence_id = 1;
  a.metadata = R"({"model":"llama","layers":32})";
  a.prefix_hash = "4f6addc9659d6fb9";
  a.prefix_length = 5;
  EntryInfo b;
  b.sequence_id = 2;
  b.metadata = "not json";
  EntryInfo c;
  c.sequence_id = 3;
  json j = json::parse(EntriesToJson({a, b, c}));
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["sequence_id"], 1u);
  EXPECT_EQ(j[0]["metadata"]["model"], "llama");
  EXPECT_EQ(j[0]["prefix_hash"], "4f6addc9659d6fb9");
  EXPECT_EQ(j[0]["prefix_length"], 5u);
  EXPECT_EQ(j[1]["metadata"], "not json");
  EXPECT_TRUE(j[1]["prefix_hash"].is_null());
  EXPECT_TRUE(j[2]["metadata"].is_null());
}

TEST(ReportTest, MetricsAreInPrometheusTextFormat) {
  PoolStats s = LoadedPool("a", kGiB);
  s.used = 100;
  s.hits = 5;
  s.attached = 2;
  std::string text = FormatMetrics({s, UnloadedPool("b", kGiB)});
  EXPECT_NE(text.find("# HELP kvcache_pool_bytes_used "), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE kvcache_pool_bytes_used gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE kvcache_pool_hits_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kvcache_pool_bytes_used{pool=\"a\"} 100\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kvcache_pool_hits_total{pool=\"a\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("kvcache_pool_attached_processes{pool=\"a\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("kvcache_pool_bytes_total{pool=\"a\"} 1073741824\n"), std::string::npos);
  EXPECT_NE(text.find("kvcache_pool_loaded{pool=\"a\"} 1\n"), std::string::npos);
  // A pool without a segment has a size and a loaded flag, but no usage to report.
  EXPECT_NE(text.find("kvcache_pool_loaded{pool=\"b\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("kvcache_pool_bytes_total{pool=\"b\"} 1073741824\n"), std::string::npos);
  EXPECT_EQ(text.find("kvcache_pool_bytes_used{pool=\"b\"}"), std::string::npos);
  for (const char* name : {"kvcache_pool_bytes_free", "kvcache_pool_entries",
                           "kvcache_pool_misses_total", "kvcache_pool_evictions_total"}) {
    EXPECT_NE(text.find(std::string(name) + "{pool=\"a\"} "), std::string::npos) << name;
  }
  EXPECT_EQ(text.back(), '\n');
}

TEST(ReportTest, MessagesMatchTheSeed) {
  PoolConfig c;
  c.name = "x";
  c.size_bytes = 16 * kGiB;
  EXPECT_EQ(CreatedMessage(c), "Created cache pool 'x' (16.00 GB, policy=lru)");
  c.policy = Policy::kPriority;
  c.size_bytes = 512ull * 1024 * 1024;
  EXPECT_EQ(CreatedMessage(c), "Created cache pool 'x' (512.00 MB, policy=priority)");
  EXPECT_EQ(EvictedMessage("x", 3), "Evicted 3 entries from 'x'");
  EXPECT_EQ(RestoredMessage("llama-cache", 1523), "Restored 1523 entries to 'llama-cache'");
  EXPECT_EQ(PersistedMessage("x", 2, "/tmp/x.cache"),
            "Persisted 2 entries from 'x' to /tmp/x.cache");
}

TEST(ReportTest, StatsJsonCountsChunksAndMatchedTokens) {
  PoolStats s = LoadedPool("llama-cache", 16 * kGiB);
  s.chunk_count = 62;
  s.chunk_tokens_asked = 2000;
  s.chunk_tokens_matched = 1500;
  json j = json::parse(StatsToJson(s));
  EXPECT_EQ(j["chunk_count"], 62u);
  EXPECT_EQ(j["chunk_tokens"], 16u);
  EXPECT_EQ(j["chunk_tokens_asked"], 2000u);
  EXPECT_EQ(j["chunk_tokens_matched"], 1500u);
  EXPECT_DOUBLE_EQ(j["chunk_token_hit_rate"].get<double>(), 0.75);
  s.chunk_tokens_asked = 0;
  s.chunk_tokens_matched = 0;
  EXPECT_DOUBLE_EQ(json::parse(StatsToJson(s))["chunk_token_hit_rate"].get<double>(), 0.0);
}

TEST(ReportTest, StatusTableAddsChunkColumnsOnlyWhenChunksAreUsed) {
  PoolStats plain = LoadedPool("plain", kGiB);
  PoolStats chunked = LoadedPool("llama-cache", 16 * kGiB);
  chunked.entry_count = 3;
  chunked.chunk_count = 62;
  chunked.chunk_bytes = 62 * 4096;
  chunked.chunk_tokens_asked = 2000;
  chunked.chunk_tokens_matched = 1500;
  // The original's table while no pool uses chunks.
  EXPECT_EQ(FormatStatusTable({plain}).substr(0, sizeof(kHeader) - 1), kHeader);
  std::string text = FormatStatusTable({plain, chunked});
  EXPECT_EQ(text,
            "POOL                 SIZE         USED         ENTRIES    HIT RATE   CHUNKS     "
            "CHUNK BYTES  TOKEN HIT  POLICY\n"
            "plain                1.0G         0.0%         0          0.0%       0          "
            "0B           0.0%       lru\n"
            "llama-cache          16.0G        0.0%         3          0.0%       62         "
            "248.0K       75.0%      lru\n");
}

TEST(ReportTest, MetricsCountChunksTheirBytesAndMatchedTokens) {
  PoolStats s = LoadedPool("a", kGiB);
  s.hits = 3;
  s.misses = 1;
  s.chunk_count = 62;
  s.chunk_bytes = 253952;
  s.chunk_tokens_asked = 2000;
  s.chunk_tokens_matched = 1500;
  std::string text = FormatMetrics({s, UnloadedPool("b", kGiB)});
  for (const char* line : {"kvcache_pool_chunks{pool=\"a\"} 62\n",
                           "kvcache_pool_chunk_bytes{pool=\"a\"} 253952\n",
                           "kvcache_pool_chunk_tokens_asked_total{pool=\"a\"} 2000\n",
                           "kvcache_pool_chunk_tokens_matched_total{pool=\"a\"} 1500\n",
                           "kvcache_pool_chunk_token_hit_ratio{pool=\"a\"} 0.750000\n",
                           "kvcache_pool_hit_ratio{pool=\"a\"} 0.750000\n",
                           "# TYPE kvcache_pool_chunk_tokens_matched_total counter\n",
                           "# TYPE kvcache_pool_chunk_token_hit_ratio gauge\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << text;
  }
  EXPECT_EQ(text.find("kvcache_pool_chunks{pool=\"b\"}"), std::string::npos) << text;
  EXPECT_EQ(json::parse(StatsToJson(s))["chunk_bytes"], 253952u);
  HealthReport r;
  r.stats = s;
  EXPECT_NE(FormatHealth(r).find("  Chunks: 62 of 16 tokens (248.00 KB)\n"), std::string::npos)
      << FormatHealth(r);
}

}  // namespace
}  // namespace kvcache
