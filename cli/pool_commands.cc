#include "pool_commands.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "clock.h"
#include "common.h"
#include "kvcache/number.h"
#include "kvcache/manager.h"
#include "kvcache/report.h"
#include "kvcache/requests.h"
#include "kvcache/size.h"
#include "kvcache/types.h"

namespace kvcache::cli {
namespace {

// The process to record: --pid, else our parent, i.e. the shell or script that ran us
// (this process exits at once, so recording itself would be pointless).
Result<pid_t> TargetPid(const AttachOptions& opts) {
  pid_t pid = opts.pid.value_or(getppid());
  if (pid <= 0) return Status::InvalidArgument(fmt::format("invalid pid {}", pid));
  if (!PidExists(pid)) {
    return Status::NotFound(fmt::format("no process with pid {}", pid));
  }
  return pid;
}

// attach and detach take the same arguments: a pool and an optional --pid.
void AddAttachCommand(CLI::App& cache, const char* name, const char* description,
                      int (*run)(const AttachOptions&)) {
  auto opts = std::make_shared<AttachOptions>();
  CLI::App* sub = cache.add_subcommand(name, description);
  sub->add_option("name", opts->name, "Pool name")->required();
  AddParsed(
      sub, "--pid",
      [opts](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(uint64_t pid, ParseUnsigned(v, "pid", INT32_MAX));
        opts->pid = static_cast<pid_t>(pid);
        return Status::Ok();
      },
      "Process id (default: the calling shell or script)");
  sub->callback([opts, run] { Finish(run(*opts)); });
}

}  // namespace

void SetupPoolCommands(CLI::App& cache) {
  auto create = std::make_shared<CreateOptions>();
  CLI::App* sub = cache.add_subcommand("create", "Create a cache pool in shared memory");
  sub->add_option("name", create->name, "Pool name ([A-Za-z0-9._:@-], not starting with . or -, up to 128 bytes)")->required();
  sub->add_option("--size", create->size, "Data size: 16G, 512M, 1.5G, 4096 (powers of 1024)")
      ->required();
  AddParsed(
      sub, "--policy",
      [create](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(create->policy, ParsePolicy(v));
        return Status::Ok();
      },
      "Eviction policy: lru, lfu, fifo or priority (default: lru)");
  AddParsed(
      sub, "--tier",
      [create](const std::string& v) -> Status {
        KVC_ASSIGN_OR_RETURN(create->tier, ParseTier(v));
        return Status::Ok();
      },
      "Memory tier: cpu, gpu or disk (default: cpu)");
  AddUnsigned32(sub, "--max-sequences", "max sequences", &create->max_sequences,
                "Most entries the pool holds (default: 10000)");
  AddUnsigned32(sub, "--chunk-tokens", "chunk tokens", &create->chunk_tokens,
                "Tokens per chunk and per longest-prefix block (default: 16)");
  sub->add_option("--remote", create->remote.url,
                  "Remote tier: redis://HOST:PORT[/DB] or unix:///PATH[?db=N] (the password "
                  "goes in $CORTEX_REMOTE_PASSWORD)");
  AddRemoteModeOptions(sub, &create->remote, /*prefixed=*/true);
  sub->callback([create] { Finish(RunCreate(*create)); });

  auto destroy = std::make_shared<DestroyOptions>();
  sub = cache.add_subcommand("destroy", "Destroy a pool: its shared memory and its record");
  sub->add_option("name", destroy->name, "Pool name")->required();
  sub->callback([destroy] { Finish(RunDestroy(*destroy)); });

  AddAttachCommand(cache, "attach", "Record a process as using a pool until it exits",
                   RunAttach);
  AddAttachCommand(cache, "detach", "Remove a process's attachment to a pool", RunDetach);

  auto evict = std::make_shared<EvictOptions>();
  sub = cache.add_subcommand("evict", "Evict a share of a pool's entries by its policy");
  sub->add_option("name", evict->name, "Pool name")->required();
  sub->add_option("--percent", evict->percent,
                  "Share of the entries: 25, 25%, 12.5 (default: 25)");
  sub->callback([evict] { Finish(RunEvict(*evict)); });
}

int RunCreate(const CreateOptions& opts) {
  PoolConfig config;
  config.name = opts.name;
  Result<uint64_t> size = ParseSize(opts.size);
  if (!size.ok()) return Fail(size.status());
  config.size_bytes = *size;
  config.policy = opts.policy;
  if (opts.tier == Tier::kGpu) {
    return Fail("tier 'gpu' needs GPU support, which this build does not have");
  }
  config.tier = opts.tier;
  config.max_sequences = opts.max_sequences;
  config.prefix_block_tokens = opts.chunk_tokens;
  // The remote is checked before anything is created.
  std::optional<RemoteConfig> remote;
  if (!opts.remote.url.empty()) {
    RemoteOptions r = opts.remote;
    r.name = opts.name;
    Result<RemoteConfig> rc = RemoteConfigOf(r);
    if (!rc.ok()) return Fail(rc.status());
    remote = *rc;
  } else if (opts.remote.mode.has_value() || !opts.remote.name_space.empty()) {
    return Fail("--remote-mode and --remote-namespace need --remote");
  }

  Manager manager;
  Status s = manager.CreatePool(config);
  if (!s.ok()) return Fail(s);
  if (remote.has_value()) {
    s = manager.SetRemote(config.name, remote);
    if (!s.ok()) {
      manager.DestroyPool(config.name).IgnoreError();  // all or nothing
      return Fail(s);
    }
  }
  PrintLine(CreatedMessage(config));
  if (remote.has_value()) PrintLine(RemoteSetMessage(config.name, *remote));
  return kExitOk;
}

int RunDestroy(const DestroyOptions& opts) {
  Manager manager;
  Status s = manager.DestroyPool(opts.name);
  if (!s.ok()) return Fail(s);
  PrintLine(fmt::format("Destroyed cache pool '{}'", opts.name));
  return kExitOk;
}

int RunAttach(const AttachOptions& opts) {
  Result<pid_t> pid = TargetPid(opts);
  if (!pid.ok()) return Fail(pid.status());
  Manager manager;
  Status s = manager.Attach(opts.name, *pid);
  if (!s.ok()) return Fail(s);
  PrintLine(fmt::format("Attached process {} to '{}'", *pid, opts.name));
  return kExitOk;
}

int RunDetach(const AttachOptions& opts) {
  // A process that has already exited can still be detached, so only the form is checked.
  pid_t pid = opts.pid.value_or(getppid());
  if (pid <= 0) return Fail(fmt::format("invalid pid {}", pid));
  Manager manager;
  Status s = manager.Detach(opts.name, pid);
  if (!s.ok()) return Fail(s);
  PrintLine(fmt::format("Detached process {} from '{}'", pid, opts.name));
  return kExitOk;
}

int RunEvict(const EvictOptions& opts) {
  Manager manager;
  Result<std::string> message = ApplyEvictRequest(manager, opts.name, opts.percent);
  if (!message.ok()) return Fail(message.status());
  PrintLine(*message);
  return kExitOk;
}

}  // namespace kvcache::cli
