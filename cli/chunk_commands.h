// `cortex cache match | put-chunks`: a prompt's cached prefix of token chunks, and
// storing a file as the consecutive chunks of a token sequence.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace kvcache::cli {

// Where a command's tokens come from: exactly one of the two.
struct TokenSource {
  std::string tokens;       // "1,2,3"
  std::string tokens_file;  // a file holding such a list
};

struct MatchCommandOptions {
  std::string name;
  TokenSource source;
  std::string name_space;
  bool json = false;
};

struct PutChunksCommandOptions {
  std::string name;
  TokenSource source;
  std::string file;  // the chunks' bytes, one after the other
  std::string name_space;
};

void SetupChunkCommands(CLI::App& cache);

int RunMatch(const MatchCommandOptions& opts);
// The file is cut into as many equal pieces as the tokens have whole chunks.
int RunPutChunks(const PutChunksCommandOptions& opts);

}  // namespace kvcache::cli
