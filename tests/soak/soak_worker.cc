// One process of scripts/soak.sh. Writers put self-checking payloads and keep a ledger
// of what they published; readers check every byte they read; `verify` checks at the
// end that every published entry is still there. Through the library (api-*) or through
// a kvcachefs mount (fs-*). Any of them may be SIGKILLed at any instruction: counters
// live in a mapped file and the ledger is appended with single write()s, so what a
// killed process did is still counted.
//
//   soak_worker api-writer DIR POOL WRITER      soak_worker fs-writer DIR MNT POOL WRITER
//   soak_worker api-reader DIR POOL WRITERS     soak_worker fs-reader DIR MNT POOL WRITERS
//   soak_worker verify DIR POOL WRITERS         prints "lost N corrupt N checked N"
//
// DIR/stats/<name>.<pid> holds a Counters; DIR/ledger/<writer> the lines "B id nonce"
// (before a put) and "O id nonce" (after it succeeded). Writer W owns ids
// (W+1)*1000000 + k, k < kIdsPerWriter. The pool must not need eviction.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kvcache/manager.h"

namespace {

constexpr uint64_t kIdsPerWriter = 64;
constexpr size_t kHeader = 32;

struct Counters {
  uint64_t puts;          // succeeded
  uint64_t put_errors;
  uint64_t gets;          // reads that found an entry
  uint64_t misses;
  uint64_t read_errors;   // other errors (e.g. the mount restarting)
  uint64_t corrupt;       // bytes that fail their self-check
  uint64_t wedges;        // operations that took over 1 s
  uint64_t max_op_us;
  uint64_t op_started_ns; // CLOCK_MONOTONIC of the operation in progress, 0 when idle
};

Counters* counters = nullptr;
std::atomic<bool> stop{false};

uint64_t MonoNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

void MapCounters(const std::string& dir, const std::string& name) {
  std::string path = dir + "/stats/" + name + "." + std::to_string(getpid());
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ftruncate(fd, sizeof(Counters)) != 0) {
    std::perror(path.c_str());
    std::exit(3);
  }
  void* p = mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) std::exit(3);
  close(fd);
  counters = static_cast<Counters*>(p);
}

// Times one operation; over 1 s is a wedge.
template <typename Fn>
auto Timed(Fn fn) {
  uint64_t t0 = MonoNs();
  counters->op_started_ns = t0;
  auto r = fn();
  uint64_t us = (MonoNs() - t0) / 1000;
  counters->op_started_ns = 0;
  if (us > counters->max_op_us) counters->max_op_us = us;
  if (us > 1000000) counters->wedges++;
  return r;
}

uint64_t WriterId(uint64_t writer, uint64_t k) { return (writer + 1) * 1000000 + k; }

// [id][writer][nonce][len] then bytes derived from the nonce.
std::vector<std::byte> Payload(uint64_t id, uint64_t writer, uint64_t nonce, size_t len) {
  std::vector<std::byte> out(kHeader + len);
  uint64_t h[4] = {id, writer, nonce, len};
  std::memcpy(out.data(), h, sizeof(h));
  uint64_t x = nonce | 1;
  for (size_t i = 0; i < len; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    out[kHeader + i] = static_cast<std::byte>(x);
  }
  return out;
}

// The nonce of a payload that checks out for `id`, or 0 when it does not.
uint64_t Check(uint64_t id, const std::byte* data, size_t size) {
  if (size < kHeader) return 0;
  uint64_t h[4];
  std::memcpy(h, data, sizeof(h));
  if (h[0] != id || h[3] + kHeader != size || h[2] == 0) return 0;
  std::vector<std::byte> want = Payload(h[0], h[1], h[2], h[3]);
  return std::memcmp(want.data(), data, size) == 0 ? h[2] : 0;
}

void Append(int fd, char kind, uint64_t id, uint64_t nonce) {
  char line[64];
  int n = std::snprintf(line, sizeof(line), "%c %llu %llu\n", kind,
                        static_cast<unsigned long long>(id), static_cast<unsigned long long>(nonce));
  if (write(fd, line, static_cast<size_t>(n)) != n) std::exit(3);
}

int LedgerFd(const std::string& dir, uint64_t writer) {
  std::string path = dir + "/ledger/" + std::to_string(writer);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) std::exit(3);
  return fd;
}

bool WriteWhole(const std::string& path, const std::vector<std::byte>& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = write(fd, data.data() + done, data.size() - done);
    if (w <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<size_t>(w);
  }
  return close(fd) == 0;
}

// 0 ok, ENOENT missing, other errno.
int ReadWhole(const std::string& path, std::vector<std::byte>* out) {
  out->clear();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  std::byte buf[65536];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r < 0) {
      int e = errno;
      close(fd);
      return e;
    }
    if (r == 0) break;
    out->insert(out->end(), buf, buf + r);
  }
  close(fd);
  return 0;
}

int Writer(const std::string& dir, const std::string& pool, uint64_t writer, const char* mnt) {
  int ledger = LedgerFd(dir, writer);
  std::mt19937_64 rng(std::random_device{}());
  kvcache::Manager m;
  while (!stop) {
    uint64_t id = WriterId(writer, rng() % kIdsPerWriter);
    uint64_t nonce = rng() | 1;
    std::vector<std::byte> data = Payload(id, writer, nonce, 1024 + rng() % (60 * 1024));
    Append(ledger, 'B', id, nonce);
    bool ok = Timed([&] {
      if (mnt != nullptr) return WriteWhole(std::string(mnt) + "/" + pool + "/" + std::to_string(id), data);
      return m.Put(pool, id, data, data.size() / 64).ok();
    });
    if (ok) {
      Append(ledger, 'O', id, nonce);
      counters->puts++;
    } else {
      counters->put_errors++;
      if (mnt != nullptr) usleep(20000);  // the mount may be restarting
    }
  }
  return 0;
}

int Reader(const std::string& pool, uint64_t writers, const char* mnt) {
  std::mt19937_64 rng(std::random_device{}());
  kvcache::Manager m;
  std::vector<std::byte> buf;
  while (!stop) {
    uint64_t id = WriterId(rng() % writers, rng() % kIdsPerWriter);
    int err = Timed([&] {
      if (mnt != nullptr) {
        return ReadWhole(std::string(mnt) + "/" + pool + "/" + std::to_string(id), &buf);
      }
      kvcache::Result<kvcache::EntryView> v = m.View(pool, id);
      if (!v.ok()) return v.status().code() == kvcache::Code::kNotFound ? ENOENT : EIO;
      buf.assign(v->data().begin(), v->data().end());
      return 0;
    });
    if (err == ENOENT) {
      counters->misses++;
    } else if (err != 0) {
      counters->read_errors++;
      if (mnt != nullptr) usleep(20000);
    } else {
      counters->gets++;
      if (Check(id, buf.data(), buf.size()) == 0) {
        counters->corrupt++;
        std::fprintf(stderr, "corrupt read of %llu (%zu bytes) through %s\n",
                     static_cast<unsigned long long>(id), buf.size(),
                     mnt != nullptr ? "the mount" : "the library");
      }
    }
  }
  return 0;
}

int Verify(const std::string& dir, const std::string& pool, uint64_t writers) {
  kvcache::Manager m;
  uint64_t lost = 0, corrupt = 0, checked = 0;
  for (uint64_t w = 0; w < writers; ++w) {
    // Per id: the nonces the entry may hold now (the last acknowledged put, or any put
    // begun after it, which may have committed before its writer was killed).
    std::map<uint64_t, std::set<uint64_t>> allowed;
    std::ifstream in(dir + "/ledger/" + std::to_string(w));
    std::string line;
    std::map<uint64_t, std::set<uint64_t>> pending;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      char kind;
      uint64_t id, nonce;
      if (!(f >> kind >> id >> nonce)) continue;  // a line cut by a kill
      if (kind == 'B') {
        pending[id].insert(nonce);
      } else if (kind == 'O') {
        allowed[id] = {nonce};
        pending[id].clear();
      }
    }
    for (auto& [id, nonces] : allowed) {
      nonces.insert(pending[id].begin(), pending[id].end());
      ++checked;
      kvcache::Result<kvcache::EntryView> v = m.Pin(pool, id);
      if (!v.ok()) {
        ++lost;
        std::fprintf(stderr, "lost: %llu (%s)\n", static_cast<unsigned long long>(id),
                     v.status().ToString().c_str());
        continue;
      }
      uint64_t nonce = Check(id, v->data().data(), v->data().size());
      if (nonce == 0) {
        ++corrupt;
        std::fprintf(stderr, "corrupt at rest: %llu\n", static_cast<unsigned long long>(id));
      } else if (!nonces.count(nonce)) {
        ++lost;
        std::fprintf(stderr, "lost: %llu holds an older version\n",
                     static_cast<unsigned long long>(id));
      }
    }
  }
  std::printf("lost %llu corrupt %llu checked %llu\n", static_cast<unsigned long long>(lost),
              static_cast<unsigned long long>(corrupt), static_cast<unsigned long long>(checked));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: see soak_worker.cc\n");
    return 3;
  }
  std::string mode = argv[1], dir = argv[2];
  signal(SIGTERM, [](int) { stop = true; });
  if (mode == "verify") return Verify(dir, argv[3], std::strtoull(argv[4], nullptr, 10));
  MapCounters(dir, mode);
  if (mode == "api-writer") return Writer(dir, argv[3], std::strtoull(argv[4], nullptr, 10), nullptr);
  if (mode == "api-reader") return Reader(argv[3], std::strtoull(argv[4], nullptr, 10), nullptr);
  if (argc < 6) return 3;
  if (mode == "fs-writer") return Writer(dir, argv[4], std::strtoull(argv[5], nullptr, 10), argv[3]);
  if (mode == "fs-reader") return Reader(argv[4], std::strtoull(argv[5], nullptr, 10), argv[3]);
  return 3;
}
