// `cortex cache create | destroy | attach | detach | status | list | entries | health |
// evict`, each run as a separate process, with good and bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

using nlohmann::json;

constexpr char kHeader[] =
    "POOL                 SIZE         USED         ENTRIES    HIT RATE   POLICY\n";

class CliPoolTest : public IsolatedTest {
 protected:
  void PutEntries(const std::string& pool, int n, size_t bytes = 4096) {
    for (int i = 0; i < n; ++i) {
      Status s = manager().Put(pool, static_cast<uint64_t>(i), Pattern(i, bytes), 16);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
  size_t EntryCount(const std::string& pool) {
    auto entries = manager().Entries(pool);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    return entries.ok() ? entries->size() : 0;
  }
  std::vector<std::string> Pools() {
    auto pools = manager().ListPools();
    EXPECT_TRUE(pools.ok()) << pools.status().ToString();
    return pools.ok() ? *pools : std::vector<std::string>{};
  }
};

// ---- usage errors: CLI11's message, exit 2 ----

TEST_F(CliPoolTest, NoCommandIsAUsageError) {
  EXPECT_TRUE(UsageError(RunCortex({})));
  EXPECT_TRUE(UsageError(RunCortex({"cache"})));
}

TEST_F(CliPoolTest, UnknownCommandIsAUsageError) {
  EXPECT_TRUE(UsageError(Cache({"frobnicate"})));
  EXPECT_TRUE(UsageError(RunCortex({"kache", "status"})));
}

TEST_F(CliPoolTest, HelpExitsZeroAndListsTheCommands) {
  CliResult top = RunCortex({"--help"});
  EXPECT_EQ(top.exit_code, 0) << Describe(top);
  EXPECT_NE(top.out.find("cache"), std::string::npos) << top.out;
  CliResult cache = Cache({"--help"});
  EXPECT_EQ(cache.exit_code, 0) << Describe(cache);
  for (const char* cmd : {"create", "destroy", "attach", "detach", "status", "entries", "health",
                          "evict", "persist", "restore", "mount", "unmount", "put", "get", "rm"}) {
    EXPECT_NE(cache.out.find(cmd), std::string::npos) << cmd << "\n" << cache.out;
  }
  CliResult create = Cache({"create", "--help"});
  EXPECT_EQ(create.exit_code, 0) << Describe(create);
  EXPECT_NE(create.out.find("--max-sequences"), std::string::npos) << create.out;
}

TEST_F(CliPoolTest, CreateWithoutSizeIsAUsageErrorAndCreatesNothing) {
  EXPECT_TRUE(UsageError(Cache({"create", "p"})));
  EXPECT_TRUE(UsageError(Cache({"create", "--size", "1M"})));
  EXPECT_TRUE(Pools().empty());
}

TEST_F(CliPoolTest, CreateWithUnknownPolicyOrTierIsAUsageError) {
  EXPECT_TRUE(UsageError(Cache({"create", "p", "--size", "1M", "--policy", "mru"})));
  EXPECT_TRUE(UsageError(Cache({"create", "p", "--size", "1M", "--tier", "tpu"})));
  EXPECT_TRUE(UsageError(Cache({"create", "p", "--size", "1M", "--max-sequences", "many"})));
  EXPECT_TRUE(UsageError(Cache({"create", "p", "--size", "1M", "--bogus"})));
  EXPECT_TRUE(Pools().empty());
}

// ---- create ----

TEST_F(CliPoolTest, CreatePrintsTheSeedMessageAndThePoolOutlivesTheProcess) {
  CliResult r = Cache({"create", "llama-cache", "--size", "64M", "--policy", "lru"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Created cache pool 'llama-cache' (64.00 MB, policy=lru)\n");

  CliResult status = Cache({"status", "llama-cache"});
  ASSERT_TRUE(Succeeded(status));
  EXPECT_EQ(status.out,
            std::string(kHeader) +
                "llama-cache          64.0M        0.0%         0          0.0%       lru\n");
}

TEST_F(CliPoolTest, CreateAcceptsEveryPolicyInAnyCase) {
  EXPECT_TRUE(Succeeded(Cache({"create", "a", "--size", "1M", "--policy", "LFU"})));
  EXPECT_TRUE(Succeeded(Cache({"create", "b", "--size", "1M", "--policy", "fifo"})));
  CliResult r = Cache({"create", "c", "--size", "1.5M", "--policy", "priority"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Created cache pool 'c' (1.50 MB, policy=priority)\n");
  auto a = manager().GetConfig("a");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->policy, Policy::kLfu);
  auto b = manager().GetConfig("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->policy, Policy::kFifo);
}

TEST_F(CliPoolTest, CreateRecordsMaxSequences) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M", "--max-sequences", "7"})));
  auto config = manager().GetConfig("p");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->max_sequences, 7u);
  EXPECT_EQ(config->size_bytes, 1024u * 1024);
}

TEST_F(CliPoolTest, CreateWithBadSizeNamesTheInputAndCreatesNothing) {
  for (const char* size : {"abc", "0", "16X", ""}) {
    EXPECT_TRUE(FailedWith(Cache({"create", "p", "--size", size}), std::string("'") + size + "'"))
        << size;
  }
  EXPECT_TRUE(FailedWith(Cache({"create", "p", "--size=-1G"}), "'-1G'"));
  EXPECT_TRUE(Pools().empty());
}

TEST_F(CliPoolTest, CreateWithBadNameFailsAndCreatesNothing) {
  EXPECT_TRUE(FailedWith(Cache({"create", "a/b", "--size", "1M"}), "a/b"));
  EXPECT_TRUE(FailedWith(Cache({"create", "..", "--size", "1M"}), ".."));
  EXPECT_TRUE(FailedWith(Cache({"create", std::string(129, 'n'), "--size", "1M"}), "nnnn"));
  EXPECT_TRUE(Pools().empty());
}

TEST_F(CliPoolTest, CreateWithZeroMaxSequencesFails) {
  CliResult r = Cache({"create", "p", "--size", "1M", "--max-sequences", "0"});
  EXPECT_TRUE(FailedWith(r, "max_sequences")) << Describe(r);
  EXPECT_TRUE(Pools().empty());
}

TEST_F(CliPoolTest, CreateOnGpuTierExplainsAndCreatesNothing) {
  EXPECT_TRUE(FailedWith(Cache({"create", "p", "--size", "1M", "--tier", "gpu"}),
                         "tier 'gpu' needs GPU support, which this build does not have"));
  EXPECT_TRUE(Pools().empty());
}

TEST_F(CliPoolTest, CreateOnDiskTierMakesAUsablePool) {
  CliResult r = Cache({"create", "d", "--size", "4M", "--tier", "disk"});
  ASSERT_TRUE(Succeeded(r));
  auto config = manager().GetConfig("d");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->tier, Tier::kDisk);
  EXPECT_TRUE(Succeeded(Cache({"put", "d", "1"}, "hello")));
  CliResult get = Cache({"get", "d", "1"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_EQ(get.out, "hello");
}

TEST_F(CliPoolTest, CreateOfAnExistingPoolFailsAndKeepsItWithItsEntries) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "8M"})));
  PutEntries("p", 3);
  EXPECT_TRUE(FailedWith(Cache({"create", "p", "--size", "16M", "--policy", "fifo"}), "'p'"));
  EXPECT_EQ(EntryCount("p"), 3u);
  auto config = manager().GetConfig("p");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->size_bytes, 8u * 1024 * 1024);
  EXPECT_EQ(config->policy, Policy::kLru);
  auto got = manager().Get("p", 1);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, Pattern(1, 4096));
}

// ---- destroy ----

TEST_F(CliPoolTest, DestroyRemovesThePool) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  CliResult r = Cache({"destroy", "p"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Destroyed cache pool 'p'\n");
  EXPECT_TRUE(Pools().empty());
  EXPECT_TRUE(FailedWith(Cache({"status", "p"}), "'p'"));
}

TEST_F(CliPoolTest, DestroyOfAMissingPoolFails) {
  ASSERT_TRUE(Succeeded(Cache({"create", "other", "--size", "1M"})));
  EXPECT_TRUE(FailedWith(Cache({"destroy", "nope"}), "'nope'"));
  EXPECT_TRUE(UsageError(Cache({"destroy"})));
  EXPECT_EQ(Pools(), std::vector<std::string>{"other"});
}

// ---- attach / detach ----

TEST_F(CliPoolTest, AttachRecordsTheCallingProcessByDefault) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  // The test process is cortex's parent, as a shell would be.
  std::string pid = std::to_string(getpid());
  CliResult r = Cache({"attach", "p"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Attached process " + pid + " to 'p'\n");

  CliResult health = Cache({"health", "p"});
  ASSERT_TRUE(Succeeded(health));
  EXPECT_NE(health.out.find("Attached processes: 1 (pids " + pid + ")"), std::string::npos)
      << health.out;
  auto stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->attached, 1u);

  CliResult detach = Cache({"detach", "p"});
  ASSERT_TRUE(Succeeded(detach));
  EXPECT_EQ(detach.out, "Detached process " + pid + " from 'p'\n");
  stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->attached, 0u);
}

TEST_F(CliPoolTest, AttachAnExplicitPid) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  std::string pid = std::to_string(getpid());
  CliResult r = Cache({"attach", "p", "--pid", pid});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Attached process " + pid + " to 'p'\n");
  CliResult detach = Cache({"detach", "p", "--pid", pid});
  ASSERT_TRUE(Succeeded(detach));
  EXPECT_EQ(detach.out, "Detached process " + pid + " from 'p'\n");
}

TEST_F(CliPoolTest, AttachRefusesMissingPoolsAndBadPids) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  EXPECT_TRUE(FailedWith(Cache({"attach", "nope"}), "'nope'"));
  EXPECT_TRUE(FailedWith(Cache({"attach", "p", "--pid=0"}), "pid 0"));
  EXPECT_TRUE(UsageError(Cache({"attach", "p", "--pid", "abc"})));

  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(
      FailedWith(Cache({"attach", "p", "--pid", std::to_string(child)}), std::to_string(child)));
  auto stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->attached, 0u);
}

TEST_F(CliPoolTest, DetachFromAMissingPoolFails) {
  EXPECT_TRUE(FailedWith(Cache({"detach", "nope"}), "'nope'"));
}

// ---- status / list ----

TEST_F(CliPoolTest, StatusWithoutANameListsEveryPoolAndListIsTheSame) {
  ASSERT_TRUE(Succeeded(Cache({"create", "a", "--size", "2M", "--policy", "lfu"})));
  ASSERT_TRUE(Succeeded(Cache({"create", "b", "--size", "64M", "--policy", "priority"})));
  CliResult status = Cache({"status"});
  ASSERT_TRUE(Succeeded(status));
  EXPECT_EQ(status.out,
            std::string(kHeader) +
                "a                    2.0M         0.0%         0          0.0%       lfu\n"
                "b                    64.0M        0.0%         0          0.0%       "
                "priority\n");
  CliResult list = Cache({"list"});
  ASSERT_TRUE(Succeeded(list));
  EXPECT_EQ(list.out, status.out);
}

TEST_F(CliPoolTest, EmptyListingsSayTheOriginalsWords) {
  CliResult r = Cache({"status"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "No cache pools found\n");
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  CliResult e = Cache({"entries", "p"});
  ASSERT_TRUE(Succeeded(e));
  EXPECT_EQ(e.out, "No entries in pool 'p'\n");
  CliResult j = Cache({"entries", "p", "--json"});
  ASSERT_TRUE(Succeeded(j));
  EXPECT_EQ(j.out, "[]\n");
}

TEST_F(CliPoolTest, StatusShowsUseAfterPuts) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  PutEntries("p", 4, 64 * 1024);  // a quarter of the pool
  CliResult r = Cache({"status", "p"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out,
            std::string(kHeader) +
                "p                    1.0M         25.0%        4          0.0%       lru\n");
}

TEST_F(CliPoolTest, StatusMarksAPoolWhoseMemoryIsGone) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M"})));
  UnlinkSegmentsWithPrefix(shm_prefix_);  // as after a reboot
  CliResult r = Cache({"status"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, std::string(kHeader) +
                       "p                    4.0M         -            -          -          lru "
                       "(not loaded)\n");
  CliResult j = Cache({"status", "--json"});
  ASSERT_TRUE(Succeeded(j));
  EXPECT_EQ(json::parse(j.out)[0]["loaded"], false);
  EXPECT_TRUE(FailedWith(Cache({"health", "p"}), "'p'"));
  EXPECT_TRUE(FailedWith(Cache({"entries", "p"}), "'p'"));
}

TEST_F(CliPoolTest, StatusJsonIsParseable) {
  ASSERT_TRUE(Succeeded(Cache({"create", "a", "--size", "2M"})));
  ASSERT_TRUE(Succeeded(Cache({"create", "b", "--size", "4M", "--policy", "fifo"})));
  CliResult one = Cache({"status", "b", "--json"});
  ASSERT_TRUE(Succeeded(one));
  json j = json::parse(one.out);
  EXPECT_EQ(j["name"], "b");
  EXPECT_EQ(j["policy"], "fifo");
  EXPECT_EQ(j["size_bytes"], 4u * 1024 * 1024);
  EXPECT_EQ(j["loaded"], true);
  EXPECT_EQ(j["shm_name"], shm_prefix_ + "b");

  CliResult all = Cache({"list", "--json"});
  ASSERT_TRUE(Succeeded(all));
  json list = json::parse(all.out);
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "a");
  EXPECT_EQ(list[1]["name"], "b");
}

TEST_F(CliPoolTest, StatusOfAMissingPoolFails) {
  EXPECT_TRUE(FailedWith(Cache({"status", "nope"}), "'nope'"));
  EXPECT_TRUE(FailedWith(Cache({"status", "nope", "--json"}), "'nope'"));
}

// ---- entries ----

TEST_F(CliPoolTest, EntriesListsEveryEntry) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M"})));
  PutEntries("p", 3);
  CliResult r = Cache({"entries", "p"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out.rfind("SEQ ID               TOKENS     SIZE       ACCESSES   PRIORITY   "
                        "LAST ACCESS\n",
                        0),
            0u)
      << r.out;
  EXPECT_NE(r.out.find("\n0                    16         4.0K       0"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\n2                    16         4.0K"), std::string::npos) << r.out;

  CliResult j = Cache({"entries", "p", "--json"});
  ASSERT_TRUE(Succeeded(j));
  json list = json::parse(j.out);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2]["sequence_id"], 2u);
  EXPECT_EQ(list[2]["size_bytes"], 4096u);
  EXPECT_EQ(list[2]["token_count"], 16u);
}

TEST_F(CliPoolTest, EntriesOfAMissingPoolFails) {
  EXPECT_TRUE(FailedWith(Cache({"entries", "nope"}), "'nope'"));
  EXPECT_TRUE(UsageError(Cache({"entries"})));
}

// ---- health ----

TEST_F(CliPoolTest, HealthOfAFreshPoolFollowsTheSeed) {
  ASSERT_TRUE(Succeeded(Cache({"create", "llama-cache", "--size", "16M"})));
  CliResult r = Cache({"health", "llama-cache"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out.rfind("Health check for 'llama-cache':\n"
                        "  Status: HEALTHY\n"
                        "  Shared Memory: " +
                            shm_prefix_ +
                            "llama-cache\n"
                            "  Total Size: 16.00 MB\n",
                        0),
            0u)
      << r.out;
  CliResult j = Cache({"health", "llama-cache", "--json"});
  ASSERT_TRUE(Succeeded(j));
  json report = json::parse(j.out);
  EXPECT_EQ(report["healthy"], true);
  EXPECT_TRUE(report["problems"].empty());
}

TEST_F(CliPoolTest, HealthOfAMissingPoolFails) {
  EXPECT_TRUE(FailedWith(Cache({"health", "nope"}), "'nope'"));
}

// ---- evict ----

TEST_F(CliPoolTest, EvictRemovesTheRequestedShareOfEntries) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M"})));
  PutEntries("p", 8);
  CliResult r = Cache({"evict", "p", "--percent", "25"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Evicted 2 entries from 'p'\n");
  EXPECT_EQ(EntryCount("p"), 6u);
  r = Cache({"evict", "p", "--percent", "50%"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Evicted 3 entries from 'p'\n");
  EXPECT_EQ(EntryCount("p"), 3u);
}

TEST_F(CliPoolTest, EvictFollowsThePolicy) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M", "--policy", "fifo"})));
  PutEntries("p", 4);
  ASSERT_TRUE(Succeeded(Cache({"evict", "p", "--percent", "50"})));
  // FIFO: the two oldest go.
  EXPECT_FALSE(manager().Stat("p", 0).ok());
  EXPECT_FALSE(manager().Stat("p", 1).ok());
  EXPECT_TRUE(manager().Stat("p", 2).ok());
  EXPECT_TRUE(manager().Stat("p", 3).ok());
}

TEST_F(CliPoolTest, EvictWithBadPercentNamesItAndEvictsNothing) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M"})));
  PutEntries("p", 4);
  for (const char* percent : {"0", "150", "abc", "", "25%%"}) {
    EXPECT_TRUE(
        FailedWith(Cache({"evict", "p", "--percent", percent}), std::string("'") + percent + "'"))
        << percent;
  }
  EXPECT_TRUE(FailedWith(Cache({"evict", "p", "--percent=-5"}), "'-5'"));
  EXPECT_TRUE(UsageError(Cache({"evict", "p", "--percent"})));
  EXPECT_EQ(EntryCount("p"), 4u);
}

TEST_F(CliPoolTest, EvictOfAMissingPoolFails) {
  EXPECT_TRUE(FailedWith(Cache({"evict", "nope", "--percent", "10"}), "'nope'"));
}

}  // namespace
}  // namespace kvcache::testing
