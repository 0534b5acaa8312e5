// OpenIntentOf: what a thread blocked in a system call is about to do, asked again and
// again of the same threads (the daemon keeps their /proc files open between asks).
#include "caller.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "support/test_env.h"

namespace kvcache::testing {
namespace {

using fs::OpenIntent;
using fs::OpenIntentOf;

class CallerTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    fifo_ = home_->path() + "/fifo";
    ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
  }
  // Waits until thread `tid` is seen with `want` (it has reached its blocking call).
  static bool Eventually(pid_t tid, OpenIntent want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (OpenIntentOf(tid) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  std::string fifo_;
};

TEST_F(CallerTest, TheSameThreadIsSeenAnewAtEachCall) {
  std::atomic<pid_t> tid{0};
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  std::thread worker([&] {
    tid = gettid();
    // Blocks in openat until a writer opens the FIFO: an open to read.
    int fd = open(fifo_.c_str(), O_RDONLY);
    if (fd >= 0) close(fd);
    // Then blocks in read(2): no open at all.
    char c;
    (void)!read(pipe_fds[0], &c, 1);
    // Then in an open that replaces (O_CREAT | O_TRUNC for writing).
    fd = open(fifo_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) close(fd);
  });
  while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(Eventually(tid, OpenIntent::kRead));
  int writer = open(fifo_.c_str(), O_WRONLY);
  ASSERT_GE(writer, 0);
  close(writer);
  EXPECT_TRUE(Eventually(tid, OpenIntent::kNone));
  EXPECT_EQ(OpenIntentOf(tid), OpenIntent::kNone);
  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  EXPECT_TRUE(Eventually(tid, OpenIntent::kReplace));
  int reader = open(fifo_.c_str(), O_RDONLY);
  ASSERT_GE(reader, 0);
  close(reader);
  worker.join();
  // Gone: nothing can be told of it any more.
  EXPECT_EQ(OpenIntentOf(tid), OpenIntent::kNone);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST_F(CallerTest, ManyThreadsAndNoThreadAreAnswered) {
  EXPECT_EQ(OpenIntentOf(0), OpenIntent::kNone);
  EXPECT_EQ(OpenIntentOf(-1), OpenIntent::kNone);
  // More threads than the daemon keeps files for, each asked while blocked.
  for (int i = 0; i < 80; ++i) {
    std::atomic<pid_t> tid{0};
    std::thread worker([&] {
      tid = gettid();
      int fd = open(fifo_.c_str(), O_RDONLY);
      if (fd >= 0) close(fd);
    });
    while (tid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(Eventually(tid, OpenIntent::kRead)) << i;
    int writer = open(fifo_.c_str(), O_WRONLY);
    ASSERT_GE(writer, 0);
    close(writer);
    worker.join();
    EXPECT_EQ(OpenIntentOf(tid), OpenIntent::kNone) << i;
  }
}

}  // namespace
}  // namespace kvcache::testing
