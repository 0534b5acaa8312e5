// `cortex cache create | destroy | attach | detach | evict`: a pool's lifecycle.
#pragma once

#include <sys/types.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "kvcache/types.h"
#include "remote_commands.h"

namespace kvcache::cli {

struct CreateOptions {
  std::string name;
  std::string size;
  Policy policy = Policy::kLru;
  Tier tier = Tier::kCpu;
  uint32_t max_sequences = kDefaultMaxSequences;
  uint32_t chunk_tokens = kDefaultPrefixBlockTokens;
  RemoteOptions remote;  // remote.url empty: no remote
};

struct DestroyOptions {
  std::string name;
};

struct AttachOptions {
  std::string name;
  std::optional<pid_t> pid;  // default: the parent process (the calling shell)
};

struct EvictOptions {
  std::string name;
  std::string percent = "25";  // the original's default
};

void SetupPoolCommands(CLI::App& cache);

int RunCreate(const CreateOptions& opts);
int RunDestroy(const DestroyOptions& opts);
int RunAttach(const AttachOptions& opts);
int RunDetach(const AttachOptions& opts);
int RunEvict(const EvictOptions& opts);

}  // namespace kvcache::cli
