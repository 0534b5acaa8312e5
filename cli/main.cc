// cortex: the command line of kvcachefs. main only wires the command groups together
// and turns CLI11's outcomes into exit codes (0 ok, 1 operational error, 2 usage).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <exception>

#include "common.h"
#include "chunk_commands.h"
#include "entry_commands.h"
#include "mount_commands.h"
#include "pool_commands.h"
#include "remote_commands.h"
#include "snapshot_commands.h"
#include "status_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"cortex: KV-cache pools in shared memory, shared by every process", "cortex"};
  app.require_subcommand(1);
  CLI::App* cache =
      app.add_subcommand("cache", "Manage KV-cache pools (uses $CORTEX_HOME, default ~/.cortex)");
  cache->require_subcommand(1);
  kvcache::cli::SetupPoolCommands(*cache);
  kvcache::cli::SetupRemoteCommands(*cache);
  kvcache::cli::SetupStatusCommands(*cache);
  kvcache::cli::SetupSnapshotCommands(*cache);
  kvcache::cli::SetupEntryCommands(*cache);
  kvcache::cli::SetupChunkCommands(*cache);
  kvcache::cli::SetupMountCommands(*cache);

  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    // A command failed and has already said why.
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every other parse error is a usage error.
    return app.exit(e) == 0 ? kvcache::cli::kExitOk : kvcache::cli::kExitUsage;
  } catch (const std::exception& e) {
    return kvcache::cli::Fail(e.what());
  }
  return kvcache::cli::kExitOk;
}
