// persist_bench: persist and restore of a pool beside `cp` of the same bytes to and from
// the same disk, in one run, printing medians and ratios (DESIGN section 9).
//
//   persist_bench [--dir DIR] [--gib N] [--entry-mib M] [--runs R]
//
// DIR (default /tmp) holds the snapshot and cp's copy; the pool and cp's source and
// destination on the other side live in /dev/shm. The references are:
//   persist  vs  cp /dev/shm/ref DIR/copy && sync DIR/copy    (to disk, durable like fsync)
//   restore  vs  cp DIR/copy /dev/shm/out                     (from disk into memory)
// Restore is measured into a pool that does not exist yet (it is created, like cp creates
// its file) and into a live pool (replace). "cold" rows first drop the file's pages from
// the page cache (fdatasync + POSIX_FADV_DONTNEED on that file only) for both sides.
#include <fcntl.h>
#include <sys/stat.h>
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
#include "kvcache/snapshot.h"

namespace {

using kvcache::Manager;
using kvcache::Status;

constexpr uint64_t kMiB = 1 << 20;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "persist_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

double Seconds(const std::function<void()>& fn) {
  auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void Run(const std::string& command) {
  if (std::system(command.c_str()) != 0) Die("command failed: " + command);
}

// Drops one file's pages from the page cache, leaving every other file alone.
void DropFromCache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) Die("open " + path);
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

struct Row {
  std::string name;
  double ours;
  double reference;
};

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp";
  uint64_t gib = 1, entry_mib = 4;
  int runs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--dir") dir = argv[i + 1];
    else if (flag == "--gib") gib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--entry-mib") entry_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--runs") runs = std::atoi(argv[i + 1]);
    else Die("unknown flag " + flag);
  }
  if (gib == 0 || entry_mib == 0 || runs <= 0) Die("bad arguments");

  std::string work = dir + "/kvc-persist-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(work);
  std::string prefix = "kvcbench_" + std::to_string(getpid()) + "_";
  Manager manager({work + "/home", prefix});

  uint64_t total = gib << 30;
  uint64_t entries = total / (entry_mib * kMiB);
  kvcache::PoolConfig config;
  config.name = "bench";
  // Room for every payload plus each entry's prefix and metadata block.
  config.size_bytes = total + entries * 2 * kvcache::kDefaultBlockSize;
  config.max_sequences = static_cast<uint32_t>(entries + 16);
  Check(manager.CreatePool(config), "create pool");

  // The pool's entries and a tmpfs file with the same bytes, for cp.
  std::string ref = "/dev/shm/" + prefix + "ref";
  std::string shm_out = "/dev/shm/" + prefix + "out";
  std::string disk_copy = work + "/copy";
  std::string snapshot = work + "/bench.cache";
  {
    int fd = open(ref.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) Die("create " + ref);
    std::vector<std::byte> payload(entry_mib * kMiB);
    kvcache::PutOptions opts;
    for (uint32_t t = 0; t < 64; ++t) opts.prefix_tokens.push_back(t);
    opts.metadata = "{\"model\":\"bench\"}";
    for (uint64_t seq = 0; seq < entries; ++seq) {
      uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
      auto* words = reinterpret_cast<uint64_t*>(payload.data());
      for (size_t i = 0; i < payload.size() / 8; ++i) words[i] = x += 0x632BE59BD9B4E019ull;
      opts.prefix_tokens[0] = static_cast<uint32_t>(seq);
      Check(manager.Put("bench", seq, payload, 4096, opts), "put");
      if (write(fd, payload.data(), payload.size()) != static_cast<ssize_t>(payload.size())) {
        Die("write " + ref);
      }
    }
    close(fd);
  }

  std::vector<double> persist, cp_to, restore_new, restore_live, cp_from;
  std::vector<double> restore_new_cold, cp_from_cold;
  kvcache::PersistOptions popts;
  popts.path = snapshot;
  kvcache::RestoreOptions ropts;
  ropts.path = snapshot;
  for (int r = 0; r < runs; ++r) {
    // To disk. Both targets are removed first so both write a fresh file.
    unlink(disk_copy.c_str());
    cp_to.push_back(Seconds([&] { Run("cp " + ref + " " + disk_copy + " && sync " + disk_copy); }));
    unlink(snapshot.c_str());
    persist.push_back(Seconds([&] {
      auto p = kvcache::PersistPool(manager, "bench", popts);
      Check(p.status(), "persist");
    }));

    // From disk, page cache warm (both files were just written).
    unlink(shm_out.c_str());
    cp_from.push_back(Seconds([&] { Run("cp " + disk_copy + " " + shm_out); }));
    restore_new.push_back(Seconds([&] {
      auto p = kvcache::RestorePool(manager, "restored", ropts);
      Check(p.status(), "restore");
    }));
    restore_live.push_back(Seconds([&] {
      auto p = kvcache::RestorePool(manager, "restored", ropts);
      Check(p.status(), "restore live");
    }));
    Check(manager.DestroyPool("restored"), "destroy");

    // From disk, cold: the file's pages dropped first.
    unlink(shm_out.c_str());
    DropFromCache(disk_copy);
    cp_from_cold.push_back(Seconds([&] { Run("cp " + disk_copy + " " + shm_out); }));
    DropFromCache(snapshot);
    restore_new_cold.push_back(Seconds([&] {
      auto p = kvcache::RestorePool(manager, "restored", ropts);
      Check(p.status(), "restore cold");
    }));
    Check(manager.DestroyPool("restored"), "destroy");
    unlink(shm_out.c_str());
  }

  struct stat st;
  stat(snapshot.c_str(), &st);
  std::vector<Row> rows = {
      {"persist (fsync)          vs cp + sync", Median(persist), Median(cp_to)},
      {"restore, new pool, warm  vs cp", Median(restore_new), Median(cp_from)},
      {"restore, live pool, warm vs cp", Median(restore_live), Median(cp_from)},
      {"restore, new pool, cold  vs cp", Median(restore_new_cold), Median(cp_from_cold)},
  };
  double gb = static_cast<double>(total) / 1e9;
  std::printf("%llu GiB in %llu entries of %llu MiB, snapshot %.1f MiB in %s, median of %d\n",
              static_cast<unsigned long long>(gib), static_cast<unsigned long long>(entries),
              static_cast<unsigned long long>(entry_mib),
              static_cast<double>(st.st_size) / kMiB, dir.c_str(), runs);
  std::printf("%-40s %9s %9s %9s %9s %7s\n", "operation", "ours s", "cp s", "ours GB/s",
              "cp GB/s", "ratio");
  for (const Row& row : rows) {
    std::printf("%-40s %9.3f %9.3f %9.2f %9.2f %6.2fx\n", row.name.c_str(), row.ours,
                row.reference, gb / row.ours, gb / row.reference, row.reference / row.ours);
  }
  std::printf("ratio = cp time / our time (goal >= 0.80)\n");

  Check(manager.DestroyPool("bench"), "destroy");
  unlink(ref.c_str());
  unlink(shm_out.c_str());
  std::filesystem::remove_all(work);
  return 0;
}
