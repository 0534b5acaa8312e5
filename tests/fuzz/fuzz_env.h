// What every fuzz target shares: a private CORTEX_HOME and shm prefix for the life of
// the process (removed at exit), and a check that aborts with a message, which
// libFuzzer reports as a crash with the input that caused it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvcache/manager.h"

namespace kvcache::fuzz {

// A temp directory used as CORTEX_HOME and a shm prefix "kvcf_<pid>_", both unique to
// this process; at exit the directory and every segment with the prefix are removed.
class FuzzHome {
 public:
  FuzzHome();
  ~FuzzHome();
  FuzzHome(const FuzzHome&) = delete;
  FuzzHome& operator=(const FuzzHome&) = delete;

  const std::string& dir() const { return dir_; }
  const std::string& shm_prefix() const { return shm_prefix_; }
  ManagerOptions options() const { return {dir_, shm_prefix_}; }
  std::string SegmentPath(std::string_view pool) const;

 private:
  std::string dir_;
  std::string shm_prefix_;
};

// The one FuzzHome of this process, made on first use.
FuzzHome& Home();

// Aborts with `what` when `ok` is false: a broken invariant is a finding.
void Check(bool ok, const char* what);
// Aborts when `s` is not OK: for set-up steps that must work.
void CheckOk(const Status& s, const char* what);

std::string_view AsText(const uint8_t* data, size_t size);

}  // namespace kvcache::fuzz
