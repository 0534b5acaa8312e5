// `cortex cache mount | unmount`: the kvcachefs view of every pool, as files.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace kvcache::cli {

struct MountOptions {
  std::string dir;  // empty: $CORTEX_HOME/mnt (~/.cortex/mnt)
};

void SetupMountCommands(CLI::App& cache);

// Starts kvcachefs in the background on the same CORTEX_HOME and returns once the
// mount is live (within 10 s), or fails having left nothing mounted or running.
int RunMount(const MountOptions& opts);
// Unmounts and waits until the mount is gone and its daemon has exited.
int RunUnmount(const MountOptions& opts);

}  // namespace kvcache::cli
