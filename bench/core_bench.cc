// Core engine benchmark: put, copy-out get and zero-copy get of 4 KiB and 2 MiB
// entries, beside memcpy of the same bytes measured in the same run, and gets from one
// vs two processes. Prints medians of several repetitions and the ratios the design
// sets goals for (DESIGN section 9).
//
//   core_bench [--reps N] [--seconds S] [--only put|get|view|process|prefix]
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "kvcache/manager.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvcache::Manager;

int g_reps = 5;
double g_seconds = 0.4;
std::string g_only;  // run only the operations whose name contains this (for profiling)

bool Selected(const char* op) { return g_only.empty() || std::strstr(op, g_only.c_str()); }

// Runs `op` (one call = one operation) for about g_seconds, returns ops/s.
double Rate(const std::function<void(uint64_t)>& op) {
  uint64_t n = 0;
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(g_seconds);
  Clock::time_point now;
  do {
    for (int k = 0; k < 64; ++k) op(n++);
    now = Clock::now();
  } while (now < end);
  return static_cast<double>(n) / std::chrono::duration<double>(now - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double MedianRate(const std::function<void(uint64_t)>& op) {
  std::vector<double> r;
  for (int i = 0; i < g_reps; ++i) r.push_back(Rate(op));
  return Median(r);
}

std::string Human(double ops) {
  char buf[32];
  if (ops >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", ops / 1e6);
  } else if (ops >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", ops / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", ops);
  }
  return buf;
}

void Row(const char* op, const char* size, double ops, double bytes, const std::string& ref,
         const std::string& ratio, const char* goal) {
  std::printf("%-22s %-7s %10s/s %9.2f GB/s  %-22s %-8s %s\n", op, size, Human(ops).c_str(),
              ops * bytes / 1e9, ref.c_str(), ratio.c_str(), goal);
}

struct SizeCase {
  const char* label;
  size_t bytes;
  uint64_t entries;
};

// Gets of `sc` entries from `procs` processes at once; returns total ops/s.
double MultiProcessGets(Manager& m, const std::string& pool, const SizeCase& sc, int procs) {
  std::vector<int> pipes;
  std::vector<pid_t> pids;
  for (int p = 0; p < procs; ++p) {
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      Manager child(m.options());
      std::vector<std::byte> buf;
      double rate = MedianRate([&](uint64_t i) {
        (void)child.GetInto(pool, (i * 7 + static_cast<uint64_t>(p)) % sc.entries, buf);
      });
      if (write(fds[1], &rate, sizeof(rate)) != sizeof(rate)) _exit(1);
      _exit(0);
    }
    close(fds[1]);
    pipes.push_back(fds[0]);
    pids.push_back(pid);
  }
  double total = 0;
  for (int p = 0; p < procs; ++p) {
    double rate = 0;
    if (read(pipes[p], &rate, sizeof(rate)) != sizeof(rate)) std::abort();
    close(pipes[p]);
    waitpid(pids[p], nullptr, 0);
    total += rate;
  }
  return total;
}

// Longest-prefix lookup of a 32k-token query in a pool of 100k entries, each with a
// 256-token prefix; the query starts with the whole prefix of one of them.
int PrefixLookups(Manager& m) {
  constexpr uint32_t kEntries = 100000, kPrefix = 256, kQuery = 32768;
  kvcache::PoolConfig config{.name = "prefixes", .size_bytes = uint64_t{kEntries} * 2048 + (8 << 20),
                             .max_sequences = kEntries, .block_size = 2048};
  if (auto s = m.CreatePool(config); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
    return 1;
  }
  struct DestroyAtExit {
    Manager& m;
    ~DestroyAtExit() { (void)m.DestroyPool("prefixes"); }
  } destroy{m};
  std::vector<uint32_t> tokens(kPrefix);
  for (uint32_t e = 0; e < kEntries; ++e) {
    for (uint32_t t = 0; t < kPrefix; ++t) tokens[t] = e * 7919 + t * 31 + 1;
    if (!m.Put("prefixes", e, {}, kPrefix, {.prefix_tokens = tokens}).ok()) return 1;
  }
  std::vector<uint32_t> query(kQuery);
  const uint32_t target = kEntries / 2;
  for (uint32_t t = 0; t < kQuery; ++t) query[t] = t < kPrefix ? target * 7919 + t * 31 + 1 : 7;
  auto match = m.LongestPrefix("prefixes", query);
  if (!match.ok() || match->entry.sequence_id != target || match->matched_tokens != kPrefix) {
    std::fprintf(stderr, "error: longest-prefix lookup found the wrong entry\n");
    return 1;
  }
  double rate = MedianRate([&](uint64_t) { (void)m.LongestPrefix("prefixes", query); });
  char took[32];
  std::snprintf(took, sizeof(took), "%.1f us/lookup", 1e6 / rate);
  std::printf("%-22s %-7s %10s/s %14s  %-22s %-8s %s\n", "longest prefix", "32k tok",
              Human(rate).c_str(), took, "100k entries", "-", "<= 100 us");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--reps") == 0) g_reps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--seconds") == 0) g_seconds = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--only") == 0) g_only = argv[i + 1];
  }
  std::string home = std::filesystem::temp_directory_path() / ("kvc-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(home);
  std::string prefix = "kvcbench_" + std::to_string(getpid()) + "_";
  Manager m({home, prefix});

  std::printf("core_bench: median of %d runs of %.1f s each, one thread unless noted\n\n",
              g_reps, g_seconds);
  std::printf("%-22s %-7s %12s %14s  %-22s %-8s %s\n", "operation", "size", "ops", "throughput",
              "reference (same run)", "ratio", "goal");

  const SizeCase cases[] = {{"4 KiB", 4096, 10000}, {"2 MiB", 2 << 20, 64}};
  for (const SizeCase& sc : cases) {
    std::string pool = std::string("bench") + std::to_string(sc.bytes);
    kvcache::PoolConfig config{.name = pool, .size_bytes = sc.bytes * sc.entries + (8 << 20),
                               .max_sequences = static_cast<uint32_t>(sc.entries + 16)};
    if (auto s = m.CreatePool(config); !s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      return 1;
    }
    // Sources as many and as large as the pool's entries, pre-faulted.
    std::vector<std::vector<std::byte>> src(std::min<uint64_t>(sc.entries, 64));
    for (size_t k = 0; k < src.size(); ++k) src[k].assign(sc.bytes, std::byte(k + 1));
    std::vector<std::byte> dst(sc.bytes, std::byte{0});
    for (uint64_t i = 0; i < sc.entries; ++i) {  // pre-faults the whole pool
      if (!m.Put(pool, i, src[i % src.size()], 1).ok()) return 1;
    }
    // memcpy into a pool-sized destination, so caches favour neither side.
    std::vector<std::byte> big(sc.bytes * sc.entries, std::byte{1});
    double memcpy_rate = MedianRate([&](uint64_t i) {
      std::memcpy(big.data() + (i % sc.entries) * sc.bytes, src[i % src.size()].data(), sc.bytes);
    });
    big.clear();
    big.shrink_to_fit();
    auto ratio = [](double a, double b) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%.2fx", a / b);
      return std::string(buf);
    };
    char ref_w[40], ref_r[40];
    std::snprintf(ref_w, sizeof(ref_w), "memcpy %.2f GB/s", memcpy_rate * sc.bytes / 1e9);
    bool small = sc.bytes == 4096;
    if (Selected("put")) {
      double put = MedianRate([&](uint64_t i) {
        (void)m.Put(pool, i % sc.entries, src[i % src.size()], 1);
      });
      Row("put", sc.label, put, sc.bytes, ref_w, ratio(put, memcpy_rate),
          small ? ">= 500k ops/s" : ">= 0.8x memcpy");
    }
    if (Selected("get (copy out)")) {
      double get = MedianRate([&](uint64_t i) { (void)m.GetInto(pool, i % sc.entries, dst); });
      // The reference copies the very same bytes: the entries, pinned in the pool.
      std::vector<kvcache::EntryView> views;
      for (uint64_t i = 0; i < sc.entries; ++i) views.push_back(std::move(m.Pin(pool, i)).value());
      double memcpy_read = MedianRate([&](uint64_t i) {
        std::memcpy(dst.data(), views[i % sc.entries].data().data(), sc.bytes);
      });
      std::snprintf(ref_r, sizeof(ref_r), "memcpy %.2f GB/s", memcpy_read * sc.bytes / 1e9);
      Row("get (copy out)", sc.label, get, sc.bytes, ref_r, ratio(get, memcpy_read),
          small ? ">= 1M ops/s" : ">= 0.8x memcpy");
    }
    if (Selected("view")) {
      volatile uint8_t sink = 0;
      double view = MedianRate([&](uint64_t i) {
        auto v = m.View(pool, i % sc.entries);
        sink = sink + static_cast<uint8_t>(v->data()[0]);
      });
      Row("get (zero-copy view)", sc.label, view, sc.bytes, "-", "-", "-");
    }
    if (Selected("process")) {
      double one = MultiProcessGets(m, pool, sc, 1);
      double two = MultiProcessGets(m, pool, sc, 2);
      Row("get, 1 process", sc.label, one, sc.bytes, "-", "-", "-");
      Row("get, 2 processes", sc.label, two, sc.bytes, "1 process", ratio(two, one), ">= 1.6x");
    }
    (void)m.DestroyPool(pool);
  }
  if (Selected("prefix")) {
    if (int err = PrefixLookups(m); err != 0) return err;
  }
  std::filesystem::remove_all(home);
  return 0;
}
