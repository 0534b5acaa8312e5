// Garbage in a pool's segment file, then a fresh Manager opens the pool and runs what
// `cortex cache health`, `entries` and `status` run, and reads every entry. The input
// is a list of patches applied to a valid segment made at start-up (a small pool with
// entries and prefixes), so mutations land in the header, slots, leases, heap and
// buckets alike rather than being refused at the magic:
//
//   repeated { u32 offset (LE, taken modulo the segment size); u8 length; bytes }
//
// Every bad value must come back as an error (Corruption, naming the pool), never a
// crash, a hang or an access outside the mapping. Garbage in the lock bytes makes the
// lock look held forever: every operation then waits the bounded lock timeout and
// reports "pool lock unusable". The timeout is cut to 20 ms here (it is 5 s for
// people), so such inputs cost milliseconds instead of tripping libFuzzer's per-input
// limit. Findings live in tests/fuzz/findings/segment_fuzzer/ and are replayed by
// SegmentFuzzFindingsTest (tests/core/segment_damage_test.cc).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_env.h"
#include "kvcache/manager.h"

namespace {

using kvcache::fuzz::Check;
using kvcache::fuzz::CheckOk;

constexpr const char* kPool = "seg";
constexpr uint64_t kIds[] = {1, 2, 3, 42, 1000};

std::vector<uint8_t> ReadAll(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  Check(fd >= 0, "open the template segment");
  struct stat st;
  Check(fstat(fd, &st) == 0, "stat the template segment");
  std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
  Check(pread(fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()),
        "read the template segment");
  close(fd);
  return out;
}

// A valid segment: a small pool with a few entries, some sharing a prefix.
const std::vector<uint8_t>& Template() {
  static const std::vector<uint8_t> bytes = [] {
    kvcache::Manager m(kvcache::fuzz::Home().options());
    kvcache::PoolConfig config;
    config.name = kPool;
    config.size_bytes = 64 * 1024;
    config.max_sequences = 16;
    config.prefix_block_tokens = 2;
    CheckOk(m.CreatePool(config), "create the template pool");
    std::vector<std::byte> payload(3000, std::byte{0x5a});
    for (uint64_t id : kIds) {
      kvcache::PutOptions options;
      options.prefix_tokens = {1, 2, static_cast<uint32_t>(id)};
      options.priority = static_cast<int32_t>(id);
      options.metadata = R"({"id":)" + std::to_string(id) + "}";
      CheckOk(m.Put(kPool, id, payload, id * 10, options), "put a template entry");
    }
    return ReadAll(kvcache::fuzz::Home().SegmentPath(kPool));
  }();
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("CORTEX_LOCK_TIMEOUT_MS", "20", 1);  // read at the first lock, below
  (void)Template();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> segment = Template();
  size_t i = 0;
  while (i + 5 <= size) {
    uint32_t offset;
    std::memcpy(&offset, data + i, 4);
    size_t len = data[i + 4];
    i += 5;
    len = std::min(len, size - i);
    size_t at = offset % segment.size();
    len = std::min(len, segment.size() - at);
    std::memcpy(segment.data() + at, data + i, len);
    i += len;
  }
  std::string path = kvcache::fuzz::Home().SegmentPath(kPool);
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  Check(fd >= 0, "open the segment");
  Check(pwrite(fd, segment.data(), segment.size(), 0) == static_cast<ssize_t>(segment.size()),
        "rewrite the segment");
  close(fd);

  kvcache::Manager m(kvcache::fuzz::Home().options());
  (void)m.Health(kPool);
  (void)m.Stats(kPool);
  if (kvcache::Result<std::vector<kvcache::EntryInfo>> entries = m.Entries(kPool); entries.ok()) {
    for (const kvcache::EntryInfo& e : *entries) {
      if (kvcache::Result<kvcache::EntryView> v = m.View(kPool, e.sequence_id); v.ok()) {
        // Touches every byte the view claims: a span outside the mapping faults here.
        unsigned sum = 0;
        for (std::byte b : v->data()) sum += static_cast<unsigned>(b);
        Check(sum != ~0u, "unreachable");
        (void)v->prefix_tokens();
      }
    }
  }
  for (uint64_t id : kIds) (void)m.Get(kPool, id);
  return 0;
}
