#include "fuzz_env.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace kvcache::fuzz {

FuzzHome::FuzzHome() {
  char tmpl[] = "/tmp/kvc-fuzz-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  dir_ = tmpl;
  // The home's unique suffix too: pids wrap, and an earlier run's leftovers are not ours.
  shm_prefix_ = "kvcf_" + std::to_string(getpid()) + "_" + dir_.substr(dir_.size() - 6) + "_";
}

FuzzHome::~FuzzHome() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) {
      std::string_view name = e->d_name;
      if (name.substr(0, shm_prefix_.size()) == shm_prefix_) {
        unlink(("/dev/shm/" + std::string(name)).c_str());
      }
    }
    closedir(d);
  }
}

std::string FuzzHome::SegmentPath(std::string_view pool) const {
  return "/dev/shm/" + shm_prefix_ + std::string(pool);
}

FuzzHome& Home() {
  // Destroyed at exit(), which libFuzzer calls when its time is up.
  static FuzzHome home;
  return home;
}

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  std::abort();
}

void CheckOk(const Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "fuzz set-up failed: %s: %s\n", what, s.ToString().c_str());
  std::abort();
}

std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace kvcache::fuzz
