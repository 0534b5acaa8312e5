// A FIFO named in the persist or restore control file is refused at once: the daemon
// never blocks opening it, so the writer never hangs in the kernel.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

class FifoPathTest : public MountedTest {};

// Writes `text` to the control file from a child process. Returns the errno the write
// got, or -1 when it was still blocked after 10 s (the FIFO is then opened for writing
// to release the daemon, so the child and the mount can finish).
int WriteFromChild(const std::string& control, const std::string& text, const std::string& fifo) {
  pid_t pid = fork();
  if (pid == 0) _exit(WriteText(control, text));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0) close(fd);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

TEST_F(FifoPathTest, RestoreAndPersistRefuseAFifoWithoutBlocking) {
  CreatePool("p", 4 << 20);
  ASSERT_TRUE(manager().Put("p", 1, Bytes("entry"), 1).ok());
  std::string fifo = dir_->Join("snap.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  int restore = WriteFromChild(Path("p/restore"), fifo + "\n", fifo);
  EXPECT_GT(restore, 0) << "restore from a FIFO: -1 is a hang, 0 success";
  std::string reply;
  ASSERT_EQ(ReadText(Path("p/restore"), &reply), 0);
  EXPECT_NE(reply.find("not a regular file"), std::string::npos) << reply;
  int persist = WriteFromChild(Path("p/persist"), fifo + "\n", fifo);
  EXPECT_GT(persist, 0) << "persist to a FIFO: -1 is a hang, 0 success";
  struct stat st {};
  ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_TRUE(manager().Stat("p", 1).ok());
}

}  // namespace
}  // namespace kvcache::testing
