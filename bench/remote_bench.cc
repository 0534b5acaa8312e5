// remote_bench URL: what a remote tier costs and gives, as ratios measured in one run.
//   - local hits (4 KiB gets) of a pool with a write-through remote / of a pool without;
//   - 4 KiB puts into a pool with a write-through remote / into a pool without;
//   - 2 MiB entries warmed from the remote (read-through gets into an empty pool), per
//     second (bench/remote_bench.sh sets it beside redis-benchmark's GET of 2 MiB).
// Uses its own CORTEX_HOME (a temp dir) and shm prefix; removes both.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

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
  Check(m.CreatePool(c), "create");
  if (remote) Check(m.SetRemote(name, remote), "remote");
}

constexpr int kRounds = 7;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Gets per second over `ids` entries: one round of `n` gets.
double HitRate(Manager& m, const std::string& pool, uint64_t ids, uint64_t n) {
  std::vector<std::byte> out;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) Check(m.GetInto(pool, i % ids, out), "get");
  return static_cast<double>(n) / Seconds(t0);
}

// Puts per second: one round of `n` puts; the sender then catches up (not timed).
double PutRate(Manager& m, const std::string& pool, uint64_t ids, uint64_t n,
               const std::vector<std::byte>& data) {
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) Check(m.Put(pool, i % ids, data, 1), "put");
  double rate = static_cast<double>(n) / Seconds(t0);
  Check(m.FlushRemote(pool, 10000), "flush");
  return rate;
}

// Rounds of the two pools alternate, so that drift on a shared machine hits both.
std::pair<double, double> Alternating(const std::function<double(const std::string&)>& round) {
  std::vector<double> plain, remote;
  for (int r = 0; r < kRounds; ++r) {
    plain.push_back(round("plain"));
    remote.push_back(round("remote"));
  }
  return {Median(plain), Median(remote)};
}

void Row(const char* what, double got, double reference, const char* reference_name,
         const char* goal) {
  std::printf("| %s | %.0f/s | %s %.0f/s | %.3fx | %s |\n", what, got, reference_name,
              reference, got / reference, goal);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: remote_bench URL\n");
    return 2;
  }
  const std::string url = argv[1];
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

    std::vector<std::byte> small(4096, std::byte{7});
    const uint64_t ids = 2000;
    auto [put_plain, put_remote] = Alternating(
        [&](const std::string& pool) { return PutRate(a, pool, ids, 20000, small); });
    auto [hit_plain, hit_remote] = Alternating(
        [&](const std::string& pool) { return HitRate(a, pool, ids, 200000); });

    // 2 MiB entries: A sends them, B (another home and prefix) warms them.
    const uint64_t big_n = 48;
    std::vector<std::byte> big(2 << 20);
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 131);
    for (uint64_t i = 0; i < big_n; ++i) Check(a.Put("remote", 100000 + i, big, 1), "put big");
    Check(a.FlushRemote("remote", 30000), "flush big");
    auto st = a.GetRemoteStatus("remote");
    Manager b(b_opts);
    Check(b.CheckHome(), "home b");
    Make(b, "warm", 256 << 20, kvcache::RemoteConfig{url, kvcache::RemoteMode::kReadOnly,
                                                       "bench"});
    std::vector<double> warms;
    std::vector<std::byte> out;
    for (int round = 0; round < kRounds; ++round) {
      Check(b.Clear("warm").status(), "clear");
      auto t0 = Clock::now();
      for (uint64_t i = 0; i < big_n; ++i) Check(b.GetInto("warm", 100000 + i, out), "warm");
      warms.push_back(static_cast<double>(big_n) / Seconds(t0));
    }
    std::printf("| workload (median of %d rounds) | with a remote | reference | ratio | goal |\n",
                kRounds);
    std::printf("|---|---|---|---|---|\n");
    Row("4 KiB puts, write-through", put_remote, put_plain, "no remote", ">= 0.9x");
    Row("4 KiB local hits", hit_remote, hit_plain, "no remote", ">= 0.95x");
    std::printf("warm_2m_per_s %.1f\n", Median(warms));
    if (st.ok()) {
      std::printf("remote_sent %llu remote_dropped %llu\n",
                  static_cast<unsigned long long>(st->counters.sent),
                  static_cast<unsigned long long>(st->counters.dropped));
    }
    Check(a.DestroyPool("plain"), "destroy");
    Check(a.DestroyPool("remote"), "destroy");
    Check(b.DestroyPool("warm"), "destroy");
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return 0;
}
