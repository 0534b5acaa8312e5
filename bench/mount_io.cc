// mount_io: the file workloads of bench/mount_bench.sh, timed in one process so that
// no fork per file hides the filesystem's own cost.
//
//   mount_io write DIR COUNT SIZE      creates DIR/1..DIR/COUNT, SIZE bytes each
//   mount_io read DIR COUNT READERS    reads DIR/1..DIR/COUNT whole, READERS threads
//                                      taking files in turn
//
// Prints one line: "<elapsed ns> <files> <bytes>". Exits non-zero, naming the file and
// the error, on any failure (a short read included: the bench must not time errors).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kBuffer = 1 << 20;

bool ParseCount(const char* text, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') return false;
  *out = v;
  return true;
}

bool Fail(const std::string& path, const char* what) {
  std::fprintf(stderr, "mount_io: %s %s: %s\n", what, path.c_str(), std::strerror(errno));
  return false;
}

bool WriteFile(const std::string& path, const std::vector<char>& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return Fail(path, "create");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, std::min(kBuffer, data.size() - done));
    if (n < 0) {
      ::close(fd);
      return Fail(path, "write");
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return Fail(path, "close");
  return true;
}

// Reads the whole file; the byte count through *bytes.
bool ReadFile(const std::string& path, std::vector<char>& buf, uint64_t* bytes) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return Fail(path, "open");
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      ::close(fd);
      return Fail(path, "read");
    }
    if (n == 0) break;
    *bytes += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return true;
}

int Usage() {
  std::fprintf(stderr,
               "usage: mount_io write DIR COUNT SIZE\n"
               "       mount_io read DIR COUNT READERS\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return Usage();
  std::string mode = argv[1], dir = argv[2];
  uint64_t count = 0, arg = 0;
  if (!ParseCount(argv[3], &count) || !ParseCount(argv[4], &arg)) return Usage();
  auto path = [&](uint64_t i) { return dir + "/" + std::to_string(i); };
  auto t0 = std::chrono::steady_clock::now();
  uint64_t bytes = 0;
  if (mode == "write") {
    std::vector<char> data(arg);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
    for (uint64_t i = 1; i <= count; ++i) {
      if (!WriteFile(path(i), data)) return 1;
    }
    bytes = count * arg;
  } else if (mode == "read") {
    if (arg == 0) return Usage();
    std::atomic<uint64_t> next{1}, total{0};
    std::atomic<bool> failed{false};
    std::vector<std::thread> readers;
    for (uint64_t r = 0; r < arg; ++r) {
      readers.emplace_back([&] {
        std::vector<char> buf(kBuffer);
        uint64_t mine = 0;
        for (uint64_t i = next++; i <= count && !failed; i = next++) {
          if (!ReadFile(path(i), buf, &mine)) failed = true;
        }
        total += mine;
      });
    }
    for (std::thread& t : readers) t.join();
    if (failed) return 1;
    bytes = total;
  } else {
    return Usage();
  }
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  std::printf("%lld %llu %llu\n", static_cast<long long>(ns),
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(bytes));
  return 0;
}
