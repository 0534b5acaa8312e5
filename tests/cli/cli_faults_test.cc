// Operator faults that must stay local: one unreadable pool does not hide the others,
// and a full CORTEX_HOME does not stop the commands that only read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

// A small tmpfs mounted at `dir` for the life of the object (unmounted even when the
// test fails).
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size) : dir_(dir) {
    mkdir(dir.c_str(), 0700);
    std::string options = "size=" + size + ",mode=0700";
    mounted_ = mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~TmpfsMount() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Writes zeros until the filesystem holding `dir` is full.
void Fill(const std::string& dir) {
  int fd = open((dir + "/fill").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  char block[4096] = {};
  while (write(fd, block, sizeof(block)) > 0) {
  }
  close(fd);
}

class CliFaultsTest : public IsolatedTest {};

TEST_F(CliFaultsTest, OnePoolWithABadSegmentDoesNotHideTheOthers) {
  ASSERT_TRUE(Succeeded(Cache({"create", "good", "--size", "4M"})));
  ASSERT_TRUE(Succeeded(Cache({"create", "bad", "--size", "4M"})));
  ASSERT_TRUE(Succeeded(Cache({"put", "good", "1"}, "bytes")));
  {
    std::fstream seg("/dev/shm/" + shm_prefix_ + "bad",
                     std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(seg.good());
    seg.write("\0\0\0\0", 4);  // zero the magic
  }
  CliResult r = Cache({"status"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_NE(r.out.find("\ngood                 4.0M"), std::string::npos) << r.out;
  size_t bad_row = r.out.find("\nbad ");
  ASSERT_NE(bad_row, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bad magic", bad_row), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("pool 'bad'"), std::string::npos) << r.err;

  r = Cache({"status", "--json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("\"error\": \"segment"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"name\": \"good\""), std::string::npos) << r.out;
  // The good pool still works through every command.
  EXPECT_TRUE(Succeeded(Cache({"status", "good"})));
  EXPECT_TRUE(Succeeded(Cache({"get", "good", "1"})));
}

TEST_F(CliFaultsTest, ReadOnlyCommandsWorkWhenCortexHomeIsFull) {
  std::string home = home_->Join("full");
  TmpfsMount tmpfs(home, "512k");
  if (!tmpfs.mounted()) GTEST_SKIP() << "cannot mount tmpfs (needs root)";
  setenv("CORTEX_HOME", home.c_str(), 1);
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "7"}, "kv bytes")));
  Fill(home);

  CliResult r = Cache({"status"});
  EXPECT_TRUE(Succeeded(r));
  EXPECT_NE(r.out.find("\np "), std::string::npos) << r.out;
  EXPECT_TRUE(Succeeded(Cache({"list"})));
  EXPECT_TRUE(Succeeded(Cache({"status", "p", "--json"})));
  r = Cache({"entries", "p"});
  EXPECT_TRUE(Succeeded(r));
  EXPECT_NE(r.out.find("\n7 "), std::string::npos) << r.out;
  EXPECT_TRUE(Succeeded(Cache({"health", "p"})));
  r = Cache({"get", "p", "7"});
  EXPECT_TRUE(Succeeded(r));
  EXPECT_EQ(r.out, "kv bytes");
  // Writing the catalog fails, and says so.
  r = Cache({"create", "q", "--size", "1M"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  setenv("CORTEX_HOME", home_->path().c_str(), 1);
}

}  // namespace
}  // namespace kvcache::testing
