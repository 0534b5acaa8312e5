// Command-line helpers shared by the benchmark programs.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace kvcache::bench {

// The value of option argv[i], which is argv[i + 1]: advances i past it. Exits with
// status 2 and a message naming the option when there is none.
inline std::string NextArg(int& i, int argc, char** argv) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s needs a value\n", argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

}  // namespace kvcache::bench
