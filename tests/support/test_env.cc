#include "support/test_env.h"

#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <fmt/format.h>

namespace kvcache::testing {

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "kvct-XXXXXX").string();
  char* made = mkdtemp(templ.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    std::abort();
  }
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void UnlinkSegmentsWithPrefix(const std::string& prefix) {
  // An empty prefix is a fixture whose SetUp never ran (it skipped first): every name in
  // /dev/shm starts with it, a user's pools and other tests' segments alike.
  if (prefix.empty()) return;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name.rfind(prefix, 0) == 0) shm_unlink(("/" + name).c_str());
  }
  closedir(dir);
}

void IsolatedTest::SetUp() {
  static std::atomic<int> counter{0};
  home_ = std::make_unique<TempDir>();
  // The pid alone is not unique over a run: pids wrap (pid_max is often 32768), and a
  // segment some earlier process left behind must never be taken for this test's.
  shm_prefix_ = fmt::format("kvct_{}_{}_{:08x}_", getpid(), counter++, std::random_device{}());
  setenv("CORTEX_HOME", home_->path().c_str(), 1);
  setenv("CORTEX_SHM_PREFIX", shm_prefix_.c_str(), 1);
  manager_ = std::make_unique<Manager>(options());
}

void IsolatedTest::TearDown() {
  manager_.reset();
  UnlinkSegmentsWithPrefix(shm_prefix_);
  home_.reset();
}

void IsolatedTest::CreatePool(const std::string& name, uint64_t size, Policy policy,
                              uint32_t max_sequences) {
  PoolConfig config;
  config.name = name;
  config.size_bytes = size;
  config.policy = policy;
  config.max_sequences = max_sequences;
  Status s = manager_->CreatePool(config);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

std::string BuildDir() {
  const char* dir = std::getenv("KVC_BUILD_DIR");
  return dir != nullptr ? dir : ".";
}

void FillPattern(uint64_t seed, std::span<std::byte> out) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::byte& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
}

std::vector<std::byte> Pattern(uint64_t seed, size_t n) {
  std::vector<std::byte> out(n);
  FillPattern(seed, out);
  return out;
}

}  // namespace kvcache::testing
