// Core engine benchmark: put, copy-out get and zero-copy get of 4 KiB and 2 MiB
// entries, beside memcpy of the same bytes measured in the same run, and gets from one
// vs two processes, and puts from one vs two processes beside memcpy from one vs two
// processes, and a model of a put's two holds of one process-shared lock (LockModel).
// Prints medians of several repetitions and the ratios the design sets goals
// for (DESIGN section 9).
//
//   core_bench [--reps N] [--seconds S] [--only put|get|view|process|prefix]
//              [--size "4 KiB"|"2 MiB"]
//
// "--only process" runs the multi-process rows (gets and puts); "--only put" the puts
// of one and of two processes.
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kvcache/manager.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvcache::Manager;

int g_reps = 5;
double g_seconds = 0.4;
std::string g_only;  // run only the operations whose name contains this (for profiling)
std::string g_size;  // run only the entry sizes whose label contains this

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

// What InProcesses measured: the sum of the processes' median ops/s, and how many CPUs
// they kept busy on average while timed (their CPU time over the wall time). On a
// shared machine the second shows whether two processes had two CPUs to run on.
struct ProcessesRate {
  double ops = 0;
  double cpus = 0;
};

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec * 1e-6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// Runs the op `make_op(p)` returns in `procs` forked processes at once (the child
// builds it, e.g. with a Manager of its own); returns the sum of their median ops/s.
// Each child first runs its op `warmup` times (mapping the pool, faulting its pages),
// then the children start their repetitions together (they wait for one go signal),
// and every repetition lasts g_seconds, so repetition k of each overlaps the others'.
ProcessesRate InProcesses(int procs, uint64_t warmup,
                          const std::function<std::function<void(uint64_t)>(int)>& make_op) {
  std::vector<int> results, ready;
  std::vector<pid_t> pids;
  int go[2];
  if (pipe(go) != 0) std::abort();
  for (int p = 0; p < procs; ++p) {
    int res[2], rdy[2];
    if (pipe(res) != 0 || pipe(rdy) != 0) std::abort();
    pid_t pid = fork();
    if (pid < 0) std::abort();
    if (pid == 0) {
      // A session of its own, as a separately started engine process has: with the
      // kernel's autogroup scheduling, a session's processes share one CPU share, so
      // on a busy machine two processes of one session get no more CPU than one.
      setsid();
      close(res[0]);
      close(rdy[0]);
      close(go[1]);
      std::function<void(uint64_t)> op = make_op(p);
      for (uint64_t i = 0; i < warmup; ++i) op(i);
      char c = 1;
      if (write(rdy[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) _exit(1);
      double cpu0 = CpuSeconds();
      auto wall0 = Clock::now();
      ProcessesRate r;
      r.ops = MedianRate(op);
      r.cpus = (CpuSeconds() - cpu0) /
               std::chrono::duration<double>(Clock::now() - wall0).count();
      if (write(res[1], &r, sizeof(r)) != sizeof(r)) _exit(1);
      _exit(0);
    }
    close(res[1]);
    close(rdy[1]);
    results.push_back(res[0]);
    ready.push_back(rdy[0]);
    pids.push_back(pid);
  }
  close(go[0]);
  for (int fd : ready) {
    char c;
    if (read(fd, &c, 1) != 1) std::abort();
    close(fd);
  }
  std::vector<char> start(static_cast<size_t>(procs), 1);
  if (write(go[1], start.data(), start.size()) != static_cast<ssize_t>(start.size())) std::abort();
  close(go[1]);
  ProcessesRate total;
  bool failed = false;
  for (int p = 0; p < procs; ++p) {
    ProcessesRate r;
    if (read(results[p], &r, sizeof(r)) != sizeof(r)) failed = true;
    close(results[p]);
    int status = 0;
    waitpid(pids[p], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
    total.ops += r.ops;
    total.cpus += r.cpus;
  }
  if (failed) {
    std::fprintf(stderr, "error: a benchmark process failed\n");
    std::exit(1);
  }
  return total;
}

// Puts of `sc` entries from `procs` processes at once into `pool`, each process
// replacing its own share of the ids with its own sources (after one pass over them).
ProcessesRate MultiProcessPuts(Manager& m, const std::string& pool, const SizeCase& sc,
                               int procs) {
  return InProcesses(procs, sc.entries / static_cast<uint64_t>(procs), [&](int p) -> std::function<void(uint64_t)> {
    auto child = std::make_shared<Manager>(m.options());
    auto src = std::make_shared<std::vector<std::vector<std::byte>>>(
        std::min<uint64_t>(sc.entries, 64));
    for (size_t k = 0; k < src->size(); ++k) (*src)[k].assign(sc.bytes, std::byte(k + 1));
    const uint64_t share = sc.entries / static_cast<uint64_t>(procs);
    const uint64_t base = share * static_cast<uint64_t>(p);
    return [=](uint64_t i) {
      if (!child->Put(pool, base + i % share, (*src)[i % src->size()], 1).ok()) {
        std::fprintf(stderr, "error: put failed\n");
        _exit(1);
      }
    };
  });
}

// The reference for MultiProcessPuts: memcpy of the same sizes from `procs` processes
// at once, each into its own share of one shared mapping as large as the pool's
// entries, from its own pre-faulted sources.
ProcessesRate MultiProcessMemcpy(std::byte* shared, const SizeCase& sc, int procs) {
  return InProcesses(procs, sc.entries / static_cast<uint64_t>(procs), [&](int p) -> std::function<void(uint64_t)> {
    auto src = std::make_shared<std::vector<std::vector<std::byte>>>(
        std::min<uint64_t>(sc.entries, 64));
    for (size_t k = 0; k < src->size(); ++k) (*src)[k].assign(sc.bytes, std::byte(k + 1));
    const uint64_t share = sc.entries / static_cast<uint64_t>(procs);
    std::byte* base = shared + share * static_cast<uint64_t>(p) * sc.bytes;
    const size_t bytes = sc.bytes;
    return [=](uint64_t i) {
      std::memcpy(base + (i % share) * bytes, (*src)[i % src->size()].data(), bytes);
    };
  });
}

// What one process-shared lock costs puts, on this machine, with nothing else in the
// way: the shape of a put (hold the lock and write `kLines` shared cache lines, copy
// the bytes without it, hold it again and write the lines again) done on a robust,
// process-shared pthread mutex (as the pool lock is) and an array of counters in
// shared memory, from `procs` processes at once. Its 2-process / 1-process ratio is
// the most any put can scale to while each put takes the pool's one lock twice.
ProcessesRate LockModel(std::byte* shared, const SizeCase& sc, int procs) {
  constexpr int kLines = 8;
  struct alignas(64) Line {
    uint64_t v[8];
  };
  struct Shared {
    pthread_mutex_t mu;
    alignas(64) Line lines[kLines];
  };
  static_assert(sizeof(Shared) <= 4096);
  auto* sh = new (shared) Shared{};
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&sh->mu, &a);
  std::byte* data = shared + 4096;
  ProcessesRate r = InProcesses(procs, sc.entries / static_cast<uint64_t>(procs), [&](int p) -> std::function<void(uint64_t)> {
    auto src = std::make_shared<std::vector<std::byte>>(sc.bytes, std::byte(p + 1));
    const uint64_t share = sc.entries / static_cast<uint64_t>(procs);
    std::byte* base = data + share * static_cast<uint64_t>(p) * sc.bytes;
    const size_t bytes = sc.bytes;
    return [=](uint64_t i) {
      auto hold = [&] {
        pthread_mutex_lock(&sh->mu);
        for (Line& l : sh->lines) l.v[0] += i;
        pthread_mutex_unlock(&sh->mu);
      };
      hold();
      std::memcpy(base + (i % share) * bytes, src->data(), bytes);
      hold();
    };
  });
  pthread_mutex_destroy(&sh->mu);
  return r;
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
    if (std::strcmp(argv[i], "--size") == 0) g_size = argv[i + 1];
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
    if (!g_size.empty() && std::strstr(sc.label, g_size.c_str()) == nullptr) continue;
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
    if (Selected("put, processes") || Selected("process")) {
      // Puts and memcpy alternate, one process then two, so that load from elsewhere on
      // the machine falls on both sides alike.
      size_t region = sc.bytes * sc.entries + 4096;
      void* mapped = mmap(nullptr, region, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                          -1, 0);
      if (mapped == MAP_FAILED) std::abort();
      auto* shared = static_cast<std::byte*>(mapped);
      std::memset(shared, 1, region);  // pre-faulted, as the pool is
      ProcessesRate c1 = MultiProcessMemcpy(shared, sc, 1);
      ProcessesRate p1 = MultiProcessPuts(m, pool, sc, 1);
      ProcessesRate c2 = MultiProcessMemcpy(shared, sc, 2);
      ProcessesRate p2 = MultiProcessPuts(m, pool, sc, 2);
      ProcessesRate l1 = LockModel(shared, sc, 1);
      ProcessesRate l2 = LockModel(shared, sc, 2);
      munmap(mapped, region);
      double copy1 = c1.ops, put1 = p1.ops, copy2 = c2.ops, put2 = p2.ops;
      char ref1[40], ref2[40];
      std::snprintf(ref1, sizeof(ref1), "memcpy 1p %.2f GB/s", copy1 * sc.bytes / 1e9);
      std::snprintf(ref2, sizeof(ref2), "memcpy 2p %.2f GB/s", copy2 * sc.bytes / 1e9);
      Row("memcpy, 1 process", sc.label, copy1, sc.bytes, "-", "-", "-");
      Row("memcpy, 2 processes", sc.label, copy2, sc.bytes, "memcpy 1 process",
          ratio(copy2, copy1), "(reference)");
      Row("put, 1 process", sc.label, put1, sc.bytes, ref1, ratio(put1, copy1),
          small ? ">= 0.5x memcpy" : "-");
      Row("put, 2 processes", sc.label, put2, sc.bytes, ref2, ratio(put2, copy2), "-");
      Row("put, 2 vs 1 process", sc.label, put2, sc.bytes, "put 1 process", ratio(put2, put1),
          ">= 1.6x");
      Row("lock model, 1 process", sc.label, l1.ops, sc.bytes, "-", "-", "-");
      Row("lock model, 2 vs 1", sc.label, l2.ops, sc.bytes, "model 1 process",
          ratio(l2.ops, l1.ops), "(ceiling)");
      std::printf("%-22s %-7s CPUs busy: memcpy %.2f / %.2f, put %.2f / %.2f, model %.2f / %.2f "
                  "(1 / 2 processes)\n",
                  "", sc.label, c1.cpus, c2.cpus, p1.cpus, p2.cpus, l1.cpus, l2.cpus);
    }
    (void)m.DestroyPool(pool);
  }
  if (Selected("prefix")) {
    if (int err = PrefixLookups(m); err != 0) return err;
  }
  std::filesystem::remove_all(home);
  return 0;
}
