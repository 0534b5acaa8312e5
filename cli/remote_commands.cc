#include "remote_commands.h"

#include <fmt/format.h>

#include <memory>

#include "common.h"
#include "kvcache/manager.h"
#include "kvcache/report.h"

namespace kvcache::cli {

void AddRemoteModeOptions(CLI::App* sub, RemoteOptions* opts, bool prefixed) {
  AddParsed(
      sub, prefixed ? "--remote-mode" : "--mode",
      [opts](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(RemoteMode mode, ParseRemoteMode(v));
        opts->mode = mode;
        return Status::Ok();
      },
      "Remote mode: write-through, write-back or read-only (default: write-through)");
  AddParsed(
      sub, prefixed ? "--remote-namespace" : "--namespace",
      [opts](const std::string& v) -> Status {
        KVC_RETURN_IF_ERROR(ValidateRemoteNamespace(v));
        opts->name_space = v;
        return Status::Ok();
      },
      "Namespace of the pool's keys in the remote: pools of the same model on other "
      "hosts share entries under the same namespace (default: the pool's name)");
}

Result<RemoteConfig> RemoteConfigOf(const RemoteOptions& opts) {
  RemoteConfig config;
  KVC_ASSIGN_OR_RETURN(RemoteUrl url, ParseRemoteUrl(opts.url));
  config.url = url.ToString();
  config.mode = opts.mode.value_or(RemoteMode::kWriteThrough);
  config.name_space = opts.name_space;
  if (config.name_space.empty()) KVC_RETURN_IF_ERROR(ValidateRemoteNamespace(opts.name));
  return config;
}

void SetupRemoteCommands(CLI::App& cache) {
  auto opts = std::make_shared<RemoteOptions>();
  CLI::App* sub = cache.add_subcommand(
      "remote", "Show, set or remove a pool's remote tier (a Redis server shared by hosts)");
  sub->add_option("name", opts->name, "Pool name")->required();
  sub->add_option("url", opts->url,
                  "redis://HOST:PORT[/DB] or unix:///PATH[?db=N], or none to remove it; "
                  "the password goes in $CORTEX_REMOTE_PASSWORD (default: show the remote)");
  AddRemoteModeOptions(sub, opts.get(), /*prefixed=*/false);
  sub->callback([opts] { Finish(RunRemote(*opts)); });
}

int RunRemote(const RemoteOptions& opts) {
  Manager manager;
  if (opts.url.empty()) {
    if (opts.mode.has_value() || !opts.name_space.empty()) {
      return Fail("--mode and --namespace need a URL");
    }
    Result<PoolStats> stats = manager.Stats(opts.name);
    if (!stats.ok()) return Fail(stats.status());
    PrintText(FormatRemote(stats->config.name, stats->remote));
    return kExitOk;
  }
  if (opts.url == "none") {
    if (opts.mode.has_value() || !opts.name_space.empty()) {
      return Fail("--mode and --namespace do not go with none");
    }
    Status s = manager.SetRemote(opts.name, std::nullopt);
    if (!s.ok()) return Fail(s);
    PrintLine(fmt::format("Pool '{}' has no remote now", opts.name));
    return kExitOk;
  }
  Result<RemoteConfig> config = RemoteConfigOf(opts);
  if (!config.ok()) return Fail(config.status());
  Status s = manager.SetRemote(opts.name, *config);
  if (!s.ok()) return Fail(s);
  PrintLine(RemoteSetMessage(opts.name, *config));
  return kExitOk;
}

}  // namespace kvcache::cli
