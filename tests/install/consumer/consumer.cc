// An engine's view of the installed library: creates a pool, puts and gets an entry,
// destroys the pool. Built out of tree against an installed kvcache (pkg-config or
// find_package) by tests/install/install_test.sh.
#include <kvcache/manager.h>

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string pool = argc > 1 ? argv[1] : "consumer";
  kvcache::Manager manager;
  kvcache::PoolConfig config;
  config.name = pool;
  config.size_bytes = 1 << 20;
  if (kvcache::Status s = manager.CreatePool(config); !s.ok()) {
    std::fprintf(stderr, "create: %s\n", s.ToString().c_str());
    return 1;
  }
  std::vector<std::byte> bytes(10000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i * 7);
  int rc = 0;
  if (kvcache::Status s = manager.Put(pool, 42, bytes, 128); !s.ok()) {
    std::fprintf(stderr, "put: %s\n", s.ToString().c_str());
    rc = 1;
  } else if (kvcache::Result<std::vector<std::byte>> got = manager.Get(pool, 42);
             !got.ok() || *got != bytes) {
    std::fprintf(stderr, "get: %s\n", got.ok() ? "bytes differ" : got.status().ToString().c_str());
    rc = 1;
  } else if (kvcache::Result<std::vector<std::byte>> miss = manager.Get(pool, 43);
             miss.ok() || miss.status().code() != kvcache::Code::kNotFound) {
    std::fprintf(stderr, "get of a missing entry did not say NotFound\n");
    rc = 1;
  }
  if (kvcache::Status s = manager.DestroyPool(pool); !s.ok()) {
    std::fprintf(stderr, "destroy: %s\n", s.ToString().c_str());
    rc = 1;
  }
  if (rc == 0) std::printf("consumer: pool '%s' put, get, destroy ok\n", pool.c_str());
  return rc;
}
