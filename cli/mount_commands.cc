#include "mount_commands.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "common.h"
#include "fuse_mount.h"
#include "kvcache/manager.h"

namespace kvcache::cli {
namespace {

namespace fs = std::filesystem;
constexpr std::chrono::milliseconds kMountTimeout{10'000};

std::string Home() { return ResolveOptions({}).home; }

std::string DefaultMountDir() { return (fs::path(Home()) / "mnt").string(); }

// The path as mountinfo lists it. canonical() fails on a mount whose daemon died
// (ENOTCONN), so fall back to the lexical form for unmount.
std::string MountPath(const std::string& dir) {
  std::error_code ec;
  fs::path p = fs::canonical(dir, ec);
  if (ec) p = fs::absolute(dir, ec).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

void SetupMountCommands(CLI::App& cache) {
  auto mount = std::make_shared<MountOptions>();
  CLI::App* sub =
      cache.add_subcommand("mount", "Mount kvcachefs (pools as files) and wait until it is live");
  sub->add_option("dir", mount->dir, "Mount point (default: $CORTEX_HOME/mnt, ~/.cortex/mnt)");
  sub->callback([mount] { Finish(RunMount(*mount)); });

  auto unmount = std::make_shared<MountOptions>();
  sub = cache.add_subcommand("unmount", "Unmount kvcachefs and wait for its daemon to exit");
  sub->add_option("dir", unmount->dir, "Mount point (default: $CORTEX_HOME/mnt, ~/.cortex/mnt)");
  sub->callback([unmount] { Finish(RunUnmount(*unmount)); });
}

int RunMount(const MountOptions& opts) {
  std::string home = Home();
  std::string dir = opts.dir.empty() ? DefaultMountDir() : opts.dir;
  // The daemon's log (and the default mount point) go in the home: only into one
  // nobody else can write.
  if (Status s = Manager().CheckHome(); !s.ok()) return Fail(s);
  std::error_code ec;
  if (opts.dir.empty()) fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) {
    return Fail(fmt::format("mount point '{}' is not a directory", dir));
  }
  std::string path = MountPath(dir);
  MountInfo existing;
  if (FindMount(path, &existing) && IsKvcachefs(existing)) {
    return Fail(fmt::format("'{}' is already mounted (kvcachefs)", path));
  }
  Result<std::string> daemon = FindDaemon();
  if (!daemon.ok()) return Fail(daemon.status());

  Result<pid_t> pid =
      StartDaemon(*daemon, path, home, (fs::path(home) / "kvcachefs.log").string(), kMountTimeout);
  if (!pid.ok()) return Fail(pid.status());
  PrintLine(fmt::format("Mounted kvcachefs at {} (pid {})", path, *pid));
  return kExitOk;
}

int RunUnmount(const MountOptions& opts) {
  std::string path = MountPath(opts.dir.empty() ? DefaultMountDir() : opts.dir);
  MountInfo mount;
  if (!FindMount(path, &mount) || !IsKvcachefs(mount)) {
    return Fail(fmt::format("'{}' is not a kvcachefs mount", path));
  }
  Status s = StopDaemon(path, kMountTimeout);
  if (!s.ok()) return Fail(s);
  PrintLine(fmt::format("Unmounted {}", path));
  return kExitOk;
}

}  // namespace kvcache::cli
