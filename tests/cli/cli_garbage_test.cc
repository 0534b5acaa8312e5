// Hostile bytes in a pool's segment: random bytes written at random offsets of each
// region (header, lock, process table, leases, bitmap, slots, buckets, heap), then
// every `cortex cache` command run against the pool as a separate process. No command
// may crash or hang: a bad value is an error (Corruption, naming the pool), a lock that
// cannot be taken is "pool lock unusable", and health says what is wrong.
//
// In even rounds a reader died holding a pin, so the first command that reaps it
// rebuilds everything derived (the repair path meets the garbage); in odd rounds no
// process died, so the garbage stays for every command to meet, and when a read-only
// command (status, entries) reports the pool corrupt, health must find it unhealthy.
//
// Deterministic (seeded per region and round) and bounded: KVC_GARBAGE_ROUNDS rounds
// per region (default 16, about 200 command runs per region) for a longer search.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include "cli_runner.h"
#include "segment_format.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

struct Region {
  const char* name;
  uint64_t begin;
  uint64_t end;
};

class CliGarbageTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    setenv("CORTEX_LOCK_TIMEOUT_MS", "500", 1);
  }
  void TearDown() override {
    unsetenv("CORTEX_LOCK_TIMEOUT_MS");
    IsolatedTest::TearDown();
  }

  std::string SegmentPath(const std::string& pool) { return "/dev/shm/" + manager().ShmName(pool); }

  // A pool with entries (with prefixes, so every index is in use) and, if
  // `dead_reader`, one entry pinned by a child process that is killed before the
  // commands run, as a crashed reader would leave it.
  void MakePool(const std::string& pool, bool dead_reader = true) {
    CreatePool(pool, 1 << 20, Policy::kLru, /*max_sequences=*/32);
    for (uint64_t seq = 1; seq <= 20; ++seq) {
      PutOptions put;
      for (uint32_t t = 0; t < 16 + seq % 3 * 16; ++t) put.prefix_tokens.push_back(t + seq % 4);
      put.priority = static_cast<int32_t>(seq % 5);
      put.metadata = "{\"seq\":" + std::to_string(seq) + "}";
      Status s = manager().Put(pool, seq, Pattern(seq, 1000 + seq * 1500), 8, put);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
    ASSERT_TRUE(manager().Get(pool, 3).ok());
    if (!dead_reader) return;
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
      Manager m(options());
      Result<EntryView> view = m.Pin(pool, 1);
      char c = view.ok() ? 'y' : 'n';
      (void)!write(ready[1], &c, 1);
      pause();
      _exit(0);
    }
    close(ready[1]);
    char c = 0;
    EXPECT_EQ(read(ready[0], &c, 1), 1);
    EXPECT_EQ(c, 'y');
    close(ready[0]);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }

  std::vector<Region> Regions(const std::string& pool) {
    std::vector<std::byte> raw(seg::kHeaderSize);
    int fd = open(SegmentPath(pool).c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(pread(fd, raw.data(), raw.size(), 0), static_cast<ssize_t>(raw.size()));
    close(fd);
    seg::Header h;
    std::memcpy(static_cast<void*>(&h), raw.data(), sizeof(h));
    uint64_t lock = offsetof(seg::Header, lock);
    return {
        {"header", 0, lock},
        {"lock", lock, lock + sizeof(pthread_mutex_t)},
        {"processes", h.process_offset, h.process_offset + 8 * sizeof(seg::ProcessSlot)},
        {"leases", h.lease_offset, h.lease_offset + 64 * sizeof(seg::Lease)},
        {"bitmap", h.bitmap_offset, h.bitmap_offset + (h.block_count + 7) / 8},
        {"slots", h.slot_offset, h.slot_offset + 24 * sizeof(seg::Slot)},
        {"id buckets", h.id_bucket_offset, h.id_bucket_offset + 4 * h.id_bucket_count},
        {"prefix buckets", h.prefix_bucket_offset,
         h.prefix_bucket_offset + 4 * h.prefix_bucket_count},
        {"chain buckets", h.chain_bucket_offset, h.chain_bucket_offset + 4 * h.chain_bucket_count},
        {"heap", h.heap_offset, h.heap_offset + 4 * 24},
    };
  }

  // Writes 1 to 4 bursts of garbage into [region.begin, region.end): plain random
  // bytes, or an aligned word that is small (an index just out of range), all ones or
  // random.
  void Scribble(const std::string& pool, const Region& region, std::mt19937_64& rng) {
    int fd = open(SegmentPath(pool).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint64_t len = region.end - region.begin;
    int bursts = 1 + static_cast<int>(rng() % 4);
    for (int b = 0; b < bursts; ++b) {
      unsigned char bytes[8];
      size_t n;
      uint64_t at;
      if (rng() % 2 == 0) {
        n = 1 + rng() % 8;
        for (size_t k = 0; k < n; ++k) bytes[k] = static_cast<unsigned char>(rng());
        at = region.begin + rng() % len;
      } else {
        n = rng() % 2 == 0 ? 4 : 8;
        uint64_t choice = rng() % 3;
        uint64_t v = choice == 0 ? rng() % 1024 : choice == 1 ? ~uint64_t{0} : rng();
        std::memcpy(bytes, &v, n);
        at = region.begin + (rng() % len) / n * n;
      }
      n = std::min<uint64_t>(n, region.end - at);
      ASSERT_EQ(pwrite(fd, bytes, n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
    }
    close(fd);
  }
};

TEST_F(CliGarbageTest, NoCommandCrashesOrHangsOnGarbageInAnyRegion) {
  int rounds = 16;
  if (const char* env = std::getenv("KVC_GARBAGE_ROUNDS"); env != nullptr) rounds = std::atoi(env);
  std::string snapshot = home_->Join("garbage.cache");
  std::vector<std::string> failures;
  int runs = 0;
  MakePool("probe");
  const std::vector<Region> regions = Regions("probe");
  ASSERT_TRUE(manager().DestroyPool("probe").ok());
  for (size_t r = 0; r < regions.size(); ++r) {
    const Region& region = regions[r];
    for (int round = 0; round < rounds; ++round) {
      std::string pool = "g" + std::to_string(r) + "_" + std::to_string(round);
      MakePool(pool, /*dead_reader=*/round % 2 == 0);
      if (::testing::Test::HasFatalFailure()) return;
      // Nothing repairs the pool between the first read-only commands and health.
      bool checks_health = round % 2 == 1;
      std::string read_said_corrupt;
      std::mt19937_64 rng(r * 1000003 + static_cast<uint64_t>(round));
      Scribble(pool, region, rng);
      const std::vector<std::vector<std::string>> commands = {
          {"status"},
          {"status", pool, "--json"},
          {"entries", pool},
          {"health", pool},
          {"get", pool, "3", "-o", "/dev/null"},
          {"put", pool, "21", "--prefix", "1,2,3", "--tokens", "3"},
          {"rm", pool, "5"},
          {"evict", pool, "--percent", "30"},
          {"attach", pool, "--pid", std::to_string(getpid())},
          {"detach", pool, "--pid", std::to_string(getpid())},
          {"persist", pool, "--path", snapshot},
          {"restore", pool, "--path", snapshot, "--merge"},
          {"entries", pool, "--json"},
          {"destroy", pool},
      };
      for (const auto& args : commands) {
        CliResult res = RunCortexWithin(
            [&] {
              std::vector<std::string> a = {"cache"};
              a.insert(a.end(), args.begin(), args.end());
              return a;
            }(),
            args[0] == "put" ? "payload" : "", std::chrono::seconds(20));
        ++runs;
        std::string what;
        if (res.timed_out) {
          what = "hung";
        } else if (res.exit_code >= 128) {
          what = "died with signal " + std::to_string(res.exit_code - 128);
        } else if (res.exit_code != 0 && res.err.rfind("error: ", 0) != 0) {
          what = "failed without a message: " + Describe(res);
        }
        bool read_only = args[0] == "status" || args[0] == "entries";
        if (checks_health && read_only && read_said_corrupt.empty() &&
            res.err.find("corrupt") != std::string::npos) {
          read_said_corrupt = res.err;
        }
        if (checks_health && args[0] == "health" && !read_said_corrupt.empty() &&
            res.exit_code == 0) {
          what = "said healthy after: " + read_said_corrupt;
        }
        if (!what.empty()) {
          std::string line = "region " + std::string(region.name) + " round " +
                             std::to_string(round) + ": cortex cache";
          for (const auto& a : args) line += " " + a;
          failures.push_back(line + " " + what);
        }
      }
      // The segment may be past saving: remove it without mapping it here.
      unlink(SegmentPath(pool).c_str());
      Status gone = manager().DestroyPool(pool);
      EXPECT_TRUE(gone.ok() || gone.code() == Code::kNotFound) << gone.ToString();
    }
  }
  std::string report;
  for (size_t k = 0; k < failures.size() && k < 40; ++k) report += failures[k] + "\n";
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << runs
                                << " command runs crashed, hung or failed silently:\n"
                                << report;
}

}  // namespace
}  // namespace kvcache::testing
