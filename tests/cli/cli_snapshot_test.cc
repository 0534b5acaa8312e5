// `cortex cache persist | restore`, and the seed's quick start run as separate processes.
#include <gtest/gtest.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

class CliSnapshotTest : public IsolatedTest {
 protected:
  void PutEntries(const std::string& pool, int n, uint64_t first = 0) {
    for (int i = 0; i < n; ++i) {
      uint64_t seq = first + static_cast<uint64_t>(i);
      Status s = manager().Put(pool, seq, Pattern(seq, 8192 + seq), 32);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }
  size_t EntryCount(const std::string& pool) {
    auto entries = manager().Entries(pool);
    EXPECT_TRUE(entries.ok()) << entries.status().ToString();
    return entries.ok() ? entries->size() : 0;
  }
  std::string DefaultSnapshot(const std::string& pool) {
    return home_->path() + "/kv_persist/" + pool + ".cache";
  }
};

TEST_F(CliSnapshotTest, QuickStartWorksAcrossSeparateInvocations) {
  CliResult r = Cache({"create", "llama-cache", "--size", "64M", "--policy", "lru"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Created cache pool 'llama-cache' (64.00 MB, policy=lru)\n");

  r = Cache({"status", "llama-cache"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_NE(
      r.out.find("\nllama-cache          64.0M        0.0%         0          0.0%       lru\n"),
      std::string::npos)
      << r.out;

  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(Succeeded(Cache({"put", "llama-cache", std::to_string(i), "--tokens", "16"},
                                "kv bytes of sequence " + std::to_string(i))));
  }

  r = Cache({"persist", "llama-cache"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out,
            "Persisted 8 entries from 'llama-cache' to " + DefaultSnapshot("llama-cache") + "\n");

  r = Cache({"restore", "llama-cache"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Restored 8 entries to 'llama-cache'\n(replaced the pool's previous entries)\n");

  r = Cache({"evict", "llama-cache", "--percent", "25"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Evicted 2 entries from 'llama-cache'\n");

  r = Cache({"get", "llama-cache", "7"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "kv bytes of sequence 7");

  r = Cache({"destroy", "llama-cache"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Destroyed cache pool 'llama-cache'\n");
  EXPECT_TRUE(FailedWith(Cache({"status", "llama-cache"}), "'llama-cache'"));
}

TEST_F(CliSnapshotTest, PersistToAPathAndRestoreRecreatesADestroyedPool) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "8M", "--policy", "lfu"})));
  PutEntries("p", 5);
  std::string path = home_->Join("custom.cache");
  CliResult r = Cache({"persist", "p", "--path", path});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Persisted 5 entries from 'p' to " + path + "\n");

  ASSERT_TRUE(Succeeded(Cache({"destroy", "p"})));
  r = Cache({"restore", "p", "--path", path});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out.rfind("Restored 5 entries to 'p'\n", 0), 0u) << r.out;
  EXPECT_EQ(EntryCount("p"), 5u);
  auto config = manager().GetConfig("p");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->policy, Policy::kLfu);
  for (uint64_t seq = 0; seq < 5; ++seq) {
    auto got = manager().Get("p", seq);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == Pattern(seq, 8192 + seq)) << "seq " << seq;
  }
}

TEST_F(CliSnapshotTest, RestoreMergeKeepsTheOtherEntries) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "8M"})));
  PutEntries("p", 2);
  ASSERT_TRUE(Succeeded(Cache({"persist", "p"})));
  PutEntries("p", 3, 100);
  CliResult r = Cache({"restore", "p", "--merge"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "Restored 2 entries to 'p'\n");
  EXPECT_EQ(EntryCount("p"), 5u);
}

TEST_F(CliSnapshotTest, PersistOfAMissingPoolFails) {
  EXPECT_TRUE(FailedWith(Cache({"persist", "nope"}), "'nope'"));
  EXPECT_TRUE(UsageError(Cache({"persist"})));
}

TEST_F(CliSnapshotTest, RestoreWithoutASnapshotFailsAndChangesNothing) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "8M"})));
  PutEntries("p", 3);
  EXPECT_TRUE(FailedWith(Cache({"restore", "p"}), "p.cache"));
  std::string missing = home_->Join("missing.cache");
  EXPECT_TRUE(FailedWith(Cache({"restore", "p", "--path", missing}), missing));
  EXPECT_EQ(EntryCount("p"), 3u);
}

TEST_F(CliSnapshotTest, RestoreOfACorruptSnapshotFailsAndChangesNothing) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "8M"})));
  PutEntries("p", 3);
  std::string path = home_->Join("bad.cache");
  ASSERT_TRUE(Succeeded(Cache({"persist", "p", "--path", path})));
  // Flip a byte in the middle of the file.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    auto size = static_cast<std::streamoff>(f.tellg());
    f.seekp(size / 2);
    char c = 0;
    f.seekg(size / 2);
    f.get(c);
    f.seekp(size / 2);
    f.put(static_cast<char>(c ^ 0x5a));
  }
  PutEntries("p", 1, 50);
  CliResult r = Cache({"restore", "p", "--path", path});
  EXPECT_TRUE(FailedWith(r, path));
  EXPECT_EQ(EntryCount("p"), 4u);

  std::string garbage = home_->Join("garbage.cache");
  std::ofstream(garbage) << "this is not a snapshot";
  EXPECT_TRUE(FailedWith(Cache({"restore", "p", "--path", garbage}), garbage));
  EXPECT_EQ(EntryCount("p"), 4u);
}

// Runs cortex on a pseudo-terminal (stdout and stderr both) and returns all it wrote.
std::string RunOnTerminal(const std::vector<std::string>& args) {
  std::vector<std::string> storage = {CortexPath()};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (pid < 0) {
    ADD_FAILURE() << "forkpty: " << strerror(errno);
    return {};
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(master, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EIO once the child has exited and closed the terminal
    }
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  return out;
}

TEST_F(CliSnapshotTest, ProgressIsDrawnOnATerminalOnly) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "8M"})));
  PutEntries("p", 4);
  std::string terminal = RunOnTerminal({"cache", "persist", "p"});
  EXPECT_NE(terminal.find("persist p ["), std::string::npos) << terminal;
  EXPECT_NE(terminal.find("100.0%"), std::string::npos) << terminal;
  EXPECT_NE(terminal.find("Persisted 4 entries from 'p'"), std::string::npos) << terminal;
  terminal = RunOnTerminal({"cache", "restore", "p"});
  EXPECT_NE(terminal.find("restore p ["), std::string::npos) << terminal;
  EXPECT_NE(terminal.find("Restored 4 entries to 'p'"), std::string::npos) << terminal;
  // Through pipes, as in a script: the messages only.
  CliResult piped = Cache({"persist", "p"});
  ASSERT_TRUE(Succeeded(piped));
  EXPECT_EQ(piped.out.find('['), std::string::npos) << piped.out;
}

}  // namespace
}  // namespace kvcache::testing
