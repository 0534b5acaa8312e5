#include "snapshot_commands.h"

#include <memory>

#include "common.h"
#include "kvcache/number.h"
#include "kvcache/manager.h"
#include "kvcache/report.h"
#include "kvcache/snapshot.h"

namespace kvcache::cli {

void SetupSnapshotCommands(CLI::App& cache) {
  auto persist = std::make_shared<PersistCommandOptions>();
  CLI::App* sub = cache.add_subcommand("persist", "Save a pool's entries to a snapshot file");
  sub->add_option("name", persist->name, "Pool name")->required();
  sub->add_option("--path", persist->path,
                  "Snapshot file (default: $CORTEX_HOME/kv_persist/<name>.cache)");
  sub->callback([persist] { Finish(RunPersist(*persist)); });

  auto restore = std::make_shared<RestoreCommandOptions>();
  sub = cache.add_subcommand(
      "restore",
      "Load a snapshot into a pool (created from the snapshot if it has no shared memory)");
  sub->add_option("name", restore->name, "Pool name")->required();
  sub->add_option("--path", restore->path,
                  "Snapshot file (default: $CORTEX_HOME/kv_persist/<name>.cache)");
  sub->add_flag("--merge", restore->merge,
                "Keep the pool's other entries instead of replacing them");
  AddParsed(
      sub, "--mode",
      [restore](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(restore->mode, ParseMode(v));
        return Status::Ok();
      },
      "Permission bits of a pool restore creates, e.g. 0640 (default: the pool's recorded "
      "mode, else 0600; never the snapshot's)");
  sub->callback([restore] { Finish(RunRestore(*restore)); });
}

int RunPersist(const PersistCommandOptions& opts) {
  Manager manager;
  ProgressBar bar("persist " + opts.name);
  PersistOptions options;
  options.path = opts.path;
  if (bar.enabled())
    options.progress = [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); };
  Result<PersistResult> result = PersistPool(manager, opts.name, options);
  bar.Done();
  if (!result.ok()) return Fail(result.status());
  PrintLine(PersistReport(opts.name, *result));
  return kExitOk;
}

int RunRestore(const RestoreCommandOptions& opts) {
  Manager manager;
  ProgressBar bar("restore " + opts.name);
  RestoreOptions options;
  options.path = opts.path;
  options.merge = opts.merge;
  options.mode = opts.mode;
  if (bar.enabled())
    options.progress = [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); };
  Result<RestoreResult> result = RestorePool(manager, opts.name, options);
  bar.Done();
  if (!result.ok()) return Fail(result.status());
  PrintLine(RestoreReport(opts.name, *result));
  return kExitOk;
}

}  // namespace kvcache::cli
