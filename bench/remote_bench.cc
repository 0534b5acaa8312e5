// remote_bench URL [--only puts,hits,warm] [--rounds N]: what a remote tier costs and
// gives, as ratios measured in one run.
//   - local hits (4 KiB gets) of a pool with a write-through remote / of a pool without;
//   - 4 KiB puts into a pool with a write-through remote / into a pool without;
//   - 2 MiB entries warmed from the remote (read-through gets into an empty pool), per
//     second, served by a copy (GetInto) and by a view (bench/remote_bench.sh sets them
//     beside redis-benchmark's GET of 2 MiB).
// The rounds of the two pools alternate, so that drift on a shared machine hits both;
// each row gives the median and range over the rounds, and the ratio of the medians with
// the range of the per-round ratios.
// Uses its own CORTEX_HOME (a temp dir) and shm prefix; removes both.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "bench_args.h"
#include "kvcache/manager.h"

namespace {

using kvcache::Manager;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void Check(const kvcache::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

void Make(Manager& m, const std::string& name, uint64_t size,
          std::optional<kvcache::RemoteConfig> remote) {
  kvcache::PoolConfig c;
  c.name = name;
  c.size_bytes = size;
  c.max_sequences = 65536;
  Check(m.CreatePool(c), "create");
  if (remote) Check(m.SetRemote(name, remote), "remote");
}

int rounds = 7;

struct Spread {
  double median = 0, low = 0, high = 0;
};

Spread Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// Gets per second over `ids` entries: one round of `n` gets.
double HitRate(Manager& m, const std::string& pool, uint64_t ids, uint64_t n) {
  std::vector<std::byte> out;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) Check(m.GetInto(pool, i % ids, out), "get");
  return static_cast<double>(n) / Seconds(t0);
}

// This thread's context switches so far: waits (voluntary) and preemptions.
struct Switches {
  long waits = 0, preempted = 0;
};
Switches ThreadSwitches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return {u.ru_nvcsw, u.ru_nivcsw};
}
std::map<std::string, Switches> put_switches;  // by pool, over the timed put rounds

std::map<std::string, uint64_t> next_id;  // by pool

// Puts per second: one round of `n` puts, of ids that follow the last round's (modulo
// `ids`, at least twice `n`: every put of a round is sent, none replaced by a later one
// before its turn); the sender then catches up (not timed).
double PutRate(Manager& m, const std::string& pool, uint64_t ids, uint64_t n,
               const std::vector<std::byte>& data) {
  const Switches s0 = ThreadSwitches();
  uint64_t& id = next_id[pool];
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) Check(m.Put(pool, id++ % ids, data, 1), "put");
  double rate = static_cast<double>(n) / Seconds(t0);
  const Switches s1 = ThreadSwitches();
  put_switches[pool].waits += s1.waits - s0.waits;
  put_switches[pool].preempted += s1.preempted - s0.preempted;
  Check(m.FlushRemote(pool, 10000), "flush");
  return rate;
}

// Rounds of the two pools alternate (which goes first alternates too), after two
// untimed rounds of each (the pools' first touch of their pages).
struct Paired {
  Spread plain, remote, ratio;
};
Paired Alternating(const std::function<double(const std::string&)>& round) {
  for (int i = 0; i < 2; ++i) {
    round("plain");
    round("remote");
  }
  std::vector<double> plain(rounds), remote(rounds), ratio(rounds);
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) {
      plain[r] = round("plain");
      remote[r] = round("remote");
    } else {
      remote[r] = round("remote");
      plain[r] = round("plain");
    }
    ratio[r] = remote[r] / plain[r];
  }
  return {Summarize(plain), Summarize(remote), Summarize(ratio)};
}

void Row(const char* what, const Paired& p, const char* goal) {
  std::printf("| %s | %.0f/s (%.0f-%.0f) | %.0f/s (%.0f-%.0f) | %.3fx (%.3f-%.3f) | %s |\n",
              what, p.plain.median, p.plain.low, p.plain.high, p.remote.median, p.remote.low,
              p.remote.high, p.remote.median / p.plain.median, p.ratio.low, p.ratio.high, goal);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: remote_bench URL [--only puts,hits,warm] [--rounds N]\n");
    return 2;
  }
  const std::string url = argv[1];
  std::string only = "puts,hits,warm";
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--only") {
      only = kvcache::bench::NextArg(i, argc, argv);
    } else if (a == "--rounds") {
      rounds = std::max(1, std::atoi(kvcache::bench::NextArg(i, argc, argv).c_str()));
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  auto wanted = [&](const char* what) { return only.find(what) != std::string::npos; };
  char tmpl[] = "/tmp/kvc-remote-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string prefix = "kvcb_" + std::to_string(getpid()) + "_";
  kvcache::ManagerOptions a_opts{std::string(tmpl) + "/a", prefix + "a_"};
  kvcache::ManagerOptions b_opts{std::string(tmpl) + "/b", prefix + "b_"};
  {
    Manager a(a_opts);
    Check(a.CheckHome(), "home");
    kvcache::RemoteConfig wt{url, kvcache::RemoteMode::kWriteThrough, "bench"};
    Make(a, "plain", 256 << 20, std::nullopt);
    Make(a, "remote", 256 << 20, wt);

    std::printf("| workload (%d rounds, median (range)) | no remote | with a remote | ratio "
                "(per-round range) | goal |\n",
                rounds);
    std::printf("|---|---|---|---|---|\n");
    std::vector<std::byte> small(4096, std::byte{7});
    const uint64_t ids = 40000;
    if (wanted("puts") || wanted("hits")) {
      // The hits read what the puts stored.
      Paired puts = Alternating(
          [&](const std::string& pool) { return PutRate(a, pool, ids, 20000, small); });
      if (wanted("puts")) {
        Row("4 KiB puts, write-through", puts, ">= 0.9x");
        for (const auto& [pool, sw] : put_switches) {
          std::printf("put_switches %s waits %ld preempted %ld\n", pool.c_str(), sw.waits,
                      sw.preempted);
        }
      }
    }
    if (wanted("hits")) {
      Row("4 KiB local hits",
          Alternating([&](const std::string& pool) { return HitRate(a, pool, ids, 400000); }),
          ">= 0.95x");
    }
    if (auto st = a.GetRemoteStatus("remote"); st.ok() && (wanted("puts") || wanted("hits"))) {
      std::printf("remote_sent %llu remote_dropped %llu\n",
                  static_cast<unsigned long long>(st->counters.sent),
                  static_cast<unsigned long long>(st->counters.dropped));
    }

    if (wanted("warm")) {
      // 2 MiB entries: A sends them, B (another home and prefix) warms them.
      const uint64_t big_n = 48;
      std::vector<std::byte> big(2 << 20);
      for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 131);
      for (uint64_t i = 0; i < big_n; ++i) Check(a.Put("remote", 100000 + i, big, 1), "put big");
      Check(a.FlushRemote("remote", 30000), "flush big");
      Manager b(b_opts);
      Check(b.CheckHome(), "home b");
      Make(b, "warm", 256 << 20,
           kvcache::RemoteConfig{url, kvcache::RemoteMode::kReadOnly, "bench"});
      std::vector<double> copies, views;
      std::vector<std::byte> out;
      // Untimed: B's pool is filled once through, so that the timed rounds find its
      // pages touched, as a pool in use does (a first touch of shared memory costs a page
      // fault and the zeroing of the page, which no later warming pays).
      for (int pass = 0; pass < 3; ++pass) {
        Check(b.Clear("warm").status(), "clear");
        for (uint64_t i = 0; i < big_n; ++i) Check(b.GetInto("warm", 100000 + i, out), "warm");
      }
      for (int round = 0; round < rounds; ++round) {
        Check(b.Clear("warm").status(), "clear");
        auto t0 = Clock::now();
        for (uint64_t i = 0; i < big_n; ++i) Check(b.GetInto("warm", 100000 + i, out), "warm");
        copies.push_back(static_cast<double>(big_n) / Seconds(t0));
        Check(b.Clear("warm").status(), "clear");
        t0 = Clock::now();
        for (uint64_t i = 0; i < big_n; ++i) {
          auto view = b.View("warm", 100000 + i);
          Check(view.status(), "warm view");
          if (view->data().size() != big.size()) Check(kvcache::Status::Corruption("size"), "warm");
          Check(view->Release(), "release");
        }
        views.push_back(static_cast<double>(big_n) / Seconds(t0));
        if (round == 0) {
          auto got = b.Get("warm", 100000);
          if (!got.ok() || *got != big) Check(kvcache::Status::Corruption("bytes"), "warm");
        }
      }
      Spread c = Summarize(copies), v = Summarize(views);
      std::printf("warm_2m_get_per_s %.1f %.1f %.1f\n", c.median, c.low, c.high);
      std::printf("warm_2m_view_per_s %.1f %.1f %.1f\n", v.median, v.low, v.high);
      Check(b.DestroyPool("warm"), "destroy");
    }
    Check(a.DestroyPool("plain"), "destroy");
    Check(a.DestroyPool("remote"), "destroy");
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return 0;
}
