// Test isolation: every test gets its own CORTEX_HOME, shm prefix and temp dir, so
// tests run side by side and never touch a user's pools.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

#include "kvcache/manager.h"

namespace kvcache::testing {

// A fresh temp directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Fixture base: home_ (a TempDir used as CORTEX_HOME), a unique shm prefix
// "kvct_<pid>_<n>_", both exported to the environment for child processes, and a
// Manager over them. TearDown unlinks every segment with the prefix.
class IsolatedTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  ManagerOptions options() const { return {home_->path(), shm_prefix_}; }
  Manager& manager() { return *manager_; }
  // Creates a pool with the given size and policy; fails the test on error.
  void CreatePool(const std::string& name, uint64_t size, Policy policy = Policy::kLru,
                  uint32_t max_sequences = kDefaultMaxSequences);

  std::unique_ptr<TempDir> home_;
  std::string shm_prefix_;
  std::unique_ptr<Manager> manager_;
};

// Removes /dev/shm/<prefix>* (best effort); an empty prefix removes nothing.
void UnlinkSegmentsWithPrefix(const std::string& prefix);

// Directory holding the built binaries (KVC_BUILD_DIR, set by CTest).
std::string BuildDir();

// Bytes 0..n-1 of a deterministic pattern derived from `seed`.
std::vector<std::byte> Pattern(uint64_t seed, size_t n);
// Pattern(seed, out.size()) written into `out`, for tests that must not allocate per piece.
void FillPattern(uint64_t seed, std::span<std::byte> out);

}  // namespace kvcache::testing
