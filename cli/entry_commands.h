// `cortex cache put | get | rm`: one entry's bytes, from and to files or pipes.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace kvcache::cli {

struct PutCommandOptions {
  std::string name;
  uint64_t seq = 0;
  std::string file = "-";  // "-": stdin
  uint64_t tokens = 0;
  std::string prefix;  // "1,2,3"
  int32_t priority = 0;
  std::string metadata;  // JSON text
};

struct GetCommandOptions {
  std::string name;
  uint64_t seq = 0;
  std::string output = "-";  // "-": stdout
};

struct RemoveCommandOptions {
  std::string name;
  uint64_t seq = 0;
};

void SetupEntryCommands(CLI::App& cache);

int RunPut(const PutCommandOptions& opts);
// Writes the bytes to a temp file beside the output and renames it into place, so a
// failed get leaves an existing output file as it was.
int RunGet(const GetCommandOptions& opts);
int RunRemove(const RemoveCommandOptions& opts);

}  // namespace kvcache::cli
