// `cortex cache remote POOL [URL|none]`: a pool's remote tier (kvcache/remote.h); and
// the --remote options `cortex cache create` shares.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "kvcache/remote.h"
#include "kvcache/status.h"

namespace kvcache::cli {

struct RemoteOptions {
  std::string name;
  std::string url;  // empty: show; "none": remove
  std::optional<RemoteMode> mode;
  std::string name_space;
};

// Adds --remote-mode and --remote-namespace (create) or --mode and --namespace
// (remote) to `sub`, parsed into `opts`.
void AddRemoteModeOptions(CLI::App* sub, RemoteOptions* opts, bool prefixed);
// The RemoteConfig `opts` asks for (URL and namespace checked); InvalidArgument otherwise.
Result<RemoteConfig> RemoteConfigOf(const RemoteOptions& opts);

void SetupRemoteCommands(CLI::App& cache);
int RunRemote(const RemoteOptions& opts);

}  // namespace kvcache::cli
