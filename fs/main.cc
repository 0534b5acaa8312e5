// kvcachefs [SOURCE] MOUNTPOINT [-f] [-d] [-o options]: mounts the tree of KV-cache pools.
// SOURCE (any word, e.g. "kvcachefs") is what mount.fuse3 passes first for
// `mount -t fuse.kvcachefs kvcachefs DIR` and /etc/fstab lines; it is ignored.
//
//   -o home=DIR          catalog and snapshots (default $CORTEX_HOME, else ~/.cortex)
//   -o pool_size=SIZE    size of pools made with mkdir (default 1G)
//   -o policy=POLICY     their eviction policy: lru, lfu, fifo, priority (default lru)
//   -o restore           restore pools whose segments are gone from their snapshots
//   -o allow_other       let other users in (default_permissions is always on)
#include <fuse_lowlevel.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "fuse_adapters.h"
#include "kvcache/manager.h"
#include "kvcache/size.h"
#include "kvcache/snapshot.h"
#include "kvcachefs.h"
#include "mount_util.h"

namespace {

struct DaemonOptions {
  char* home = nullptr;
  char* pool_size = nullptr;
  char* policy = nullptr;
  char* name_timeout = nullptr;
  int restore = 0;
  // The arguments that are not options: [SOURCE] MOUNTPOINT.
  std::vector<std::string> positional;

  DaemonOptions() = default;
  DaemonOptions(const DaemonOptions&) = delete;
  DaemonOptions& operator=(const DaemonOptions&) = delete;
  // fuse_opt_parse strdup()s the values; freed on every return of Run.
  ~DaemonOptions() {
    free(home);
    free(pool_size);
    free(policy);
    free(name_timeout);
  }
};

// libfuse's parsed command line, freed on every return of Run.
struct ParsedArgs {
  fuse_args args;
  fuse_cmdline_opts cmdline{};

  ParsedArgs(int argc, char** argv) : args(FUSE_ARGS_INIT(argc, argv)) {}
  ParsedArgs(const ParsedArgs&) = delete;
  ParsedArgs& operator=(const ParsedArgs&) = delete;
  ~ParsedArgs() {
    free(cmdline.mountpoint);
    fuse_opt_free_args(&args);
  }
};

// Keeps the positional arguments out of fuse_parse_cmdline, which takes one only.
int CollectPositional(void* data, const char* arg, int key, fuse_args* /*outargs*/) {
  if (key != FUSE_OPT_KEY_NONOPT) return 1;  // any other option: keep it for libfuse
  static_cast<DaemonOptions*>(data)->positional.emplace_back(arg);
  return 0;
}

#define KVC_OPT(templ, field, value) {templ, offsetof(DaemonOptions, field), value}
const fuse_opt kDaemonOptionSpec[] = {
    KVC_OPT("home=%s", home, 0),
    KVC_OPT("pool_size=%s", pool_size, 0),
    KVC_OPT("policy=%s", policy, 0),
    KVC_OPT("name_timeout=%s", name_timeout, 0),
    KVC_OPT("restore", restore, 1),
    FUSE_OPT_END,
};
#undef KVC_OPT

constexpr unsigned kMaxThreads = 8;
constexpr unsigned kReadaheadKb = 1024;

void PrintUsage(const char* program) {
  std::printf(
      "usage: %s [SOURCE] MOUNTPOINT [-f] [-d] [-o options]\n\n"
      "kvcachefs options:\n"
      "    -o home=DIR            catalog and snapshots (default $CORTEX_HOME or ~/.cortex)\n"
      "    -o pool_size=SIZE      size of pools created with mkdir (default 1G)\n"
      "    -o policy=POLICY       their eviction policy: lru|lfu|fifo|priority (default lru)\n"
      "    -o restore             restore pools without a segment from their snapshots\n"
      "    -o name_timeout=SECS   how long the kernel may keep sequence files' names\n"
      "                           (default 0: never; faster ls -l and rm, while stat may\n"
      "                           show an entry another process changed for that long)\n"
      "    -o allow_other         allow access by other users\n\n",
      program);
  fuse_cmdline_help();
  fuse_lowlevel_help();
}

void RestorePools(kvcache::Manager& manager) {
  for (const auto& [pool, result] : kvcache::RestoreMissingPools(manager)) {
    if (result.ok()) {
      std::fprintf(stderr, "kvcachefs: restored %llu entries to '%s'\n",
                   static_cast<unsigned long long>(result->entries), pool.c_str());
    } else {
      std::fprintf(stderr, "kvcachefs: restore of '%s' failed: %s\n", pool.c_str(),
                   result.status().message().c_str());
    }
  }
}

int Run(int argc, char** argv) {
  ParsedArgs parsed(argc, argv);
  fuse_args& args = parsed.args;
  fuse_cmdline_opts& cmdline = parsed.cmdline;
  DaemonOptions daemon;
  if (fuse_opt_parse(&args, &daemon, kDaemonOptionSpec, CollectPositional) != 0) return 2;
  if (fuse_parse_cmdline(&args, &cmdline) != 0) return 2;
  if (cmdline.show_help) {
    PrintUsage(argv[0]);
    return 0;
  }
  if (cmdline.show_version) {
    std::printf("kvcachefs 0.1.0, FUSE library %s\n", fuse_pkgversion());
    return 0;
  }
  if (daemon.positional.empty()) {
    std::fprintf(stderr, "kvcachefs: no mount point given (see --help)\n");
    return 2;
  }
  if (daemon.positional.size() > 2) {
    std::fprintf(stderr, "kvcachefs: unexpected argument '%s' (usage: [SOURCE] MOUNTPOINT)\n",
                 daemon.positional[2].c_str());
    return 2;
  }
  std::string mountpoint = daemon.positional.back();

  kvcache::fs::FsOptions fs_options;
  fs_options.pool_defaults.size_bytes = uint64_t{1} << 30;
  if (daemon.pool_size != nullptr) {
    kvcache::Result<uint64_t> size = kvcache::ParseSize(daemon.pool_size);
    if (!size.ok()) {
      std::fprintf(stderr, "kvcachefs: pool_size: %s\n", size.status().message().c_str());
      return 2;
    }
    fs_options.pool_defaults.size_bytes = *size;
  }
  if (daemon.policy != nullptr) {
    kvcache::Result<kvcache::Policy> policy = kvcache::ParsePolicy(daemon.policy);
    if (!policy.ok()) {
      std::fprintf(stderr, "kvcachefs: policy: %s\n", policy.status().message().c_str());
      return 2;
    }
    fs_options.pool_defaults.policy = *policy;
  }

  if (daemon.name_timeout != nullptr) {
    char* end = nullptr;
    errno = 0;
    double seconds = std::strtod(daemon.name_timeout, &end);
    if (end == daemon.name_timeout || *end != '\0' || errno != 0 || !(seconds >= 0) ||
        seconds > 3600) {
      std::fprintf(stderr, "kvcachefs: name_timeout: '%s' is not a number of seconds from 0 to 3600\n",
                   daemon.name_timeout);
      return 2;
    }
    fs_options.seq_name_timeout = seconds;
  }

  std::string error;
  if (!kvcache::fs::CleanStaleMount(mountpoint, &error)) {
    std::fprintf(stderr, "kvcachefs: %s\n", error.c_str());
    return 1;
  }
  // Resolved before mounting: afterwards, resolving it would ask this very daemon.
  char resolved[PATH_MAX];
  std::string mount_path = realpath(mountpoint.c_str(), resolved) ? resolved : mountpoint;

  kvcache::ManagerOptions manager_options;
  if (daemon.home != nullptr) manager_options.home = daemon.home;
  kvcache::Manager manager(manager_options);

  fuse_opt_add_arg(&args,
                   "-odefault_permissions,fsname=kvcachefs,subtype=kvcachefs,max_read=1048576");
  kvcache::fs::KvcacheFs fs(manager, fs_options);
  const fuse_lowlevel_ops& ops = kvcache::fs::Operations();
  fuse_session* session = fuse_session_new(&args, &ops, sizeof(ops), &fs);
  if (session == nullptr) {
    std::fprintf(stderr, "kvcachefs: cannot start a FUSE session for '%s'\n",
                 mountpoint.c_str());
    return 1;
  }
  // `failed` says whether the daemon failed; `result` (the loop's return) is a signal
  // number after a requested exit, and SIGHUP is 1, so it cannot say so by itself.
  bool failed = true;
  int result = 0;
  if (fuse_set_signal_handlers(session) != 0) {
    std::fprintf(stderr, "kvcachefs: cannot install signal handlers\n");
  } else {
    if (fuse_session_mount(session, mountpoint.c_str()) != 0) {
      // libfuse has printed the cause (e.g. no /dev/fuse) just before this line.
      std::fprintf(stderr, "kvcachefs: cannot mount '%s'\n", mountpoint.c_str());
    } else {
      if (std::optional<std::string> dev = kvcache::fs::MountDevice(mount_path)) {
        if (!kvcache::fs::SetReadaheadKb(*dev, kReadaheadKb)) {
          std::fprintf(stderr, "kvcachefs: could not raise read_ahead_kb of %s\n", dev->c_str());
        }
      }
      fuse_daemonize(cmdline.foreground);
      // Only now, in the process that serves the mount: an SQLite connection must not
      // cross a fork (its file locks stay with the parent that exits). Requests wait
      // in the kernel until the loop starts, so nobody sees a pool half restored.
      if (daemon.restore) RestorePools(manager);
      fs.poller().Start([&fs] { fs.PollPools(); }, std::chrono::milliseconds(500));
      fuse_loop_config* config = fuse_loop_cfg_create();
      fuse_loop_cfg_set_max_threads(config, kMaxThreads);
      fuse_loop_cfg_set_idle_threads(config, kMaxThreads);
      fuse_loop_cfg_set_clone_fd(config, 0);
      result = cmdline.singlethread ? fuse_session_loop(session)
                                    : fuse_session_loop_mt(session, config);
      // The loop returns the number of a signal that ended it (SIGINT, SIGTERM,
      // SIGHUP): a requested, clean exit.
      failed = !(result == 0 || result == SIGINT || result == SIGTERM || result == SIGHUP);
      fuse_loop_cfg_destroy(config);
      fs.poller().Stop();
      fuse_session_unmount(session);
    }
    fuse_remove_signal_handlers(session);
  }
  fuse_session_destroy(session);
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
