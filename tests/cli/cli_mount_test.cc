// `cortex cache mount | unmount`: kvcachefs started and stopped from the command line.
// Tests that need the daemon skip when kvcachefs has not been built.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

bool IsMountPoint(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string f, mount_point;
    for (int i = 0; i < 5 && fields >> f; ++i) mount_point = f;
    if (mount_point == dir) return true;
  }
  return false;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class CliMountTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    dir_ = std::filesystem::canonical(mnt_.path()).string();
  }
  void TearDown() override {
    // Never leave a mount behind, whatever the test did.
    for (const std::string& d : {dir_, home_->path() + "/mnt"}) {
      if (IsMountPoint(d)) {
        std::string cmd = "fusermount3 -u -z '" + d + "' 2>/dev/null";
        if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "could not unmount " << d;
      }
    }
    IsolatedTest::TearDown();
  }
  static bool HaveDaemon() { return access((BuildDir() + "/fs/kvcachefs").c_str(), X_OK) == 0; }

  TempDir mnt_;
  std::string dir_;
};

#define REQUIRE_DAEMON()                                                           \
  do {                                                                             \
    if (!HaveDaemon()) GTEST_SKIP() << "kvcachefs is not built in " << BuildDir(); \
  } while (0)

TEST_F(CliMountTest, MountAndUnmountRoundTrip) {
  REQUIRE_DAEMON();
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M"})));
  CliResult r = Cache({"mount", dir_});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out.rfind("Mounted kvcachefs at " + dir_ + " (pid ", 0), 0u) << r.out;
  pid_t daemon = std::atoi(r.out.c_str() + r.out.find("(pid ") + 5);
  ASSERT_GT(daemon, 0);
  ASSERT_TRUE(IsMountPoint(dir_));

  // The mount and the command render the same table through the same core function.
  CliResult status = Cache({"status"});
  ASSERT_TRUE(Succeeded(status));
  EXPECT_EQ(ReadFile(dir_ + "/status"), status.out);
  struct stat st {};
  EXPECT_EQ(stat((dir_ + "/p").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));

  r = Cache({"unmount", dir_});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Unmounted " + dir_ + "\n");
  EXPECT_FALSE(IsMountPoint(dir_));
  // unmount waits for the daemon: it is gone (or a zombie awaiting its reaper).
  bool gone = kill(daemon, 0) != 0;
  if (!gone) {
    std::string stat_line = ReadFile("/proc/" + std::to_string(daemon) + "/stat");
    gone = stat_line.find(") Z") != std::string::npos;
  }
  EXPECT_TRUE(gone) << "kvcachefs pid " << daemon << " still running";
}

// Names like Ollama's model tags are pool directories on the mount.
TEST_F(CliMountTest, PoolNamesWithColonAndAtAreDirectories) {
  REQUIRE_DAEMON();
  const std::string name = "team@llama2:7b";
  ASSERT_TRUE(Succeeded(Cache({"create", name, "--size", "4M"})));
  ASSERT_TRUE(manager().Put(name, 5, Pattern(5, 3000), 1).ok());
  ASSERT_TRUE(Succeeded(Cache({"mount", dir_})));
  struct stat st {};
  ASSERT_EQ(stat((dir_ + "/" + name).c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  std::vector<std::byte> want = Pattern(5, 3000);
  EXPECT_EQ(ReadFile(dir_ + "/" + name + "/5"),
            std::string(reinterpret_cast<const char*>(want.data()), want.size()));
  {
    std::ofstream out(dir_ + "/" + name + "/persist");
    out << "\n";
  }
  EXPECT_EQ(stat((home_->path() + "/kv_persist/" + name + ".cache").c_str(), &st), 0);
  ASSERT_TRUE(Succeeded(Cache({"unmount", dir_})));
}

TEST_F(CliMountTest, MountDefaultsToTheMntDirectoryUnderCortexHome) {
  REQUIRE_DAEMON();
  std::string dir = home_->path() + "/mnt";
  CliResult r = Cache({"mount"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_TRUE(IsMountPoint(std::filesystem::canonical(dir).string()));
  r = Cache({"unmount"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_FALSE(IsMountPoint(std::filesystem::canonical(dir).string()));
}

TEST_F(CliMountTest, ControlFileAndCommandGiveTheSameMessage) {
  REQUIRE_DAEMON();
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "4M"})));
  ASSERT_TRUE(Succeeded(Cache({"create", "q", "--size", "4M"})));
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(manager().Put("p", i, Pattern(i, 100), 1).ok());
    ASSERT_TRUE(manager().Put("q", i, Pattern(i, 100), 1).ok());
  }
  ASSERT_TRUE(Succeeded(Cache({"mount", dir_})));
  {
    std::ofstream evict(dir_ + "/p/evict");
    evict << "50\n";
  }
  std::string from_file = ReadFile(dir_ + "/p/evict");
  CliResult from_cli = Cache({"evict", "q", "--percent", "50"});
  ASSERT_TRUE(Succeeded(Cache({"unmount", dir_})));
  ASSERT_TRUE(Succeeded(from_cli));
  EXPECT_EQ(from_cli.out, "Evicted 2 entries from 'q'\n");
  EXPECT_NE(from_file.find("Evicted 2 entries from 'p'"), std::string::npos) << from_file;
  auto p = manager().Entries("p");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->size(), 2u);
}

TEST_F(CliMountTest, MountingTwiceFailsAndKeepsTheFirstMount) {
  REQUIRE_DAEMON();
  ASSERT_TRUE(Succeeded(Cache({"mount", dir_})));
  EXPECT_TRUE(FailedWith(Cache({"mount", dir_}), "already mounted"));
  struct stat st {};
  EXPECT_EQ(stat((dir_ + "/status").c_str(), &st), 0);
  ASSERT_TRUE(Succeeded(Cache({"unmount", dir_})));
}

TEST_F(CliMountTest, MountOnAMissingDirectoryFails) {
  std::string missing = mnt_.Join("missing");
  EXPECT_TRUE(FailedWith(Cache({"mount", missing}), missing));
  EXPECT_FALSE(IsMountPoint(missing));
}

TEST_F(CliMountTest, UnmountOfADirectoryThatIsNotMountedFails) {
  EXPECT_TRUE(FailedWith(Cache({"unmount", dir_}), dir_));
  EXPECT_TRUE(FailedWith(Cache({"unmount"}), "mnt"));
}

}  // namespace
}  // namespace kvcache::testing

namespace kvcache::testing {
namespace {

// Runs `command` with sh in a private mount namespace whose /dev holds only null: no
// /dev/fuse, as on a machine without the fuse module. Returns the exit code; stderr
// goes to `err`.
int RunWithoutDevFuse(const std::string& command, const std::string& err) {
  std::string script =
      "mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && exec " + command;
  std::string line = "unshare -m sh -c '" + script + "' 2>'" + err + "' >/dev/null";
  int status = std::system(line.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

TEST_F(CliMountTest, DaemonThatCannotMountExitsNonZeroAtOnceWithTheReason) {
  REQUIRE_DAEMON();
  TempDir scratch;
  std::string err = scratch.Join("err");
  auto start = std::chrono::steady_clock::now();
  int code = RunWithoutDevFuse(
      BuildDir() + "/fs/kvcachefs " + dir_ + " -f -o home=" + home_->path(), err);
  EXPECT_NE(code, 0) << ReadFile(err);
  EXPECT_NE(ReadFile(err).find("cannot mount"), std::string::npos) << ReadFile(err);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(IsMountPoint(dir_));
}

TEST_F(CliMountTest, MountCommandReportsWhyTheDaemonFailedWithoutWaiting) {
  REQUIRE_DAEMON();
  TempDir scratch;
  std::string err = scratch.Join("err");
  auto start = std::chrono::steady_clock::now();
  int code = RunWithoutDevFuse(CortexPath() + " cache mount " + dir_, err);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(code, 1) << ReadFile(err);
  std::string message = ReadFile(err);
  EXPECT_EQ(message.rfind("error: kvcachefs exited with status 1 before mounting", 0), 0u)
      << message;
  EXPECT_NE(message.find("fuse"), std::string::npos) << "the daemon's reason is shown: "
                                                      << message;
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_FALSE(IsMountPoint(dir_));
}

}  // namespace
}  // namespace kvcache::testing

namespace kvcache::testing {
namespace {

TEST_F(CliMountTest, MountNeverFollowsAPlantedLogSymlink) {
  REQUIRE_DAEMON();
  TempDir elsewhere;
  std::string target = elsewhere.Join("chosen-by-someone-else");
  ASSERT_EQ(symlink(target.c_str(), (home_->path() + "/kvcachefs.log").c_str()), 0);
  CliResult r = Cache({"mount", dir_});
  EXPECT_TRUE(FailedWith(r, "kvcachefs.log")) << Describe(r);
  struct stat st {};
  EXPECT_NE(stat(target.c_str(), &st), 0) << "the log symlink was followed";
  EXPECT_FALSE(IsMountPoint(dir_));
}

TEST_F(CliMountTest, MountRefusesAHomeOthersMayWrite) {
  REQUIRE_DAEMON();
  ASSERT_EQ(chmod(home_->path().c_str(), 0777), 0);
  CliResult r = Cache({"mount", dir_});
  EXPECT_TRUE(FailedWith(r, "every user")) << Describe(r);
  EXPECT_FALSE(IsMountPoint(dir_));
  ASSERT_EQ(chmod(home_->path().c_str(), 0700), 0);
}

}  // namespace
}  // namespace kvcache::testing
