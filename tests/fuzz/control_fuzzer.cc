// Requests written to a pool's control files (evict, persist, restore) as the mount
// passes them to ControlFiles::Run. The first input byte picks the file; the rest is
// the request. A request either succeeds (0, and the file reads as the outcome) or is
// refused with an errno and the file reads "error: ...", never a crash.
//
// Persist and restore requests are paths: so that the fuzzer writes nowhere else, a
// path request is taken relative to the fuzzer's own directory and never holds "..".
#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control_files.h"
#include "fuzz_env.h"
#include "kvcache/manager.h"

namespace {

using kvcache::fuzz::Check;
using kvcache::fuzz::CheckOk;
using kvcache::fs::PoolFile;

constexpr const char* kPool = "ctl";

kvcache::Manager& TheManager() {
  static kvcache::Manager* m = [] {
    auto* manager = new kvcache::Manager(kvcache::fuzz::Home().options());
    kvcache::PoolConfig config;
    config.name = kPool;
    config.size_bytes = 256 * 1024;
    config.max_sequences = 64;
    CheckOk(manager->CreatePool(config), "create the pool");
    return manager;
  }();
  return *m;
}

// Keeps a few entries in the pool, so evictions and snapshots have work to do.
void Refill(kvcache::Manager& m) {
  std::vector<std::byte> payload(2000, std::byte{0x33});
  for (uint64_t id = 1; id <= 4; ++id) {
    if (m.Stat(kPool, id).ok()) continue;
    kvcache::PutOptions options;
    options.prefix_tokens = {7, static_cast<uint32_t>(id)};
    (void)m.Put(kPool, id, payload, 16, options);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  kvcache::Manager& m = TheManager();
  static kvcache::fs::ControlFiles controls(m);
  Refill(m);

  const PoolFile files[] = {PoolFile::kEvict, PoolFile::kPersist, PoolFile::kRestore};
  PoolFile file = files[data[0] % 3];
  std::string request(kvcache::fuzz::AsText(data + 1, size - 1));
  if (file != PoolFile::kEvict && request.find_first_not_of(" \t\r\n") != std::string::npos) {
    if (request.find("..") != std::string::npos) return 0;
    request = kvcache::fuzz::Home().dir() + "/snap/" + request;
  }
  int err = controls.Run(kPool, file, request, /*trusted=*/true);
  std::string result = controls.LastResult(kPool, file);
  bool says_error = result.rfind("error: ", 0) == 0;
  Check(err >= 0, "Run returns 0 or an errno");
  Check((err == 0) != says_error, "the control file's text matches Run's result");
  Check(!result.empty() && result.back() == '\n', "the control file's text ends a line");
  return 0;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)TheManager();
  std::string snap = kvcache::fuzz::Home().dir() + "/snap";
  Check(mkdir(snap.c_str(), 0700) == 0, "make the snapshot directory");
  return 0;
}
