#include "cli_runner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "support/test_env.h"

namespace kvcache::testing {

std::string CortexPath() { return BuildDir() + "/cli/cortex"; }

CliResult RunCortex(const std::vector<std::string>& args, std::string_view input) {
  CliResult result = RunCortexWithin(args, input, std::chrono::seconds(60));
  if (result.timed_out) ADD_FAILURE() << "cortex timed out";
  return result;
}

CliResult RunCortexWithin(const std::vector<std::string>& args, std::string_view input,
                          std::chrono::milliseconds limit) {
  CliResult result;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << strerror(errno);
    return result;
  }
  std::string path = CortexPath();
  std::vector<std::string> argv_storage = {path};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    return result;
  }

  // Feed stdin and drain stdout/stderr together, so no pipe fills and blocks the child.
  signal(SIGPIPE, SIG_IGN);
  size_t written = 0;
  int in_fd = in[1];
  if (input.empty()) {
    close(in_fd);
    in_fd = -1;
  } else {
    fcntl(in_fd, F_SETFL, O_NONBLOCK);
  }
  auto deadline = std::chrono::steady_clock::now() + limit;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    pollfd fds[3];
    int n = 0;
    if (out_open) fds[n++] = {out[0], POLLIN, 0};
    if (err_open) fds[n++] = {err[0], POLLIN, 0};
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    int ready = poll(fds, n, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        ssize_t w = write(in_fd, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 || written == input.size()) {
          close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      std::string& sink = fds[i].fd == out[0] ? result.out : result.err;
      if (r > 0) {
        sink.append(buf, static_cast<size_t>(r));
      } else {
        (fds[i].fd == out[0] ? out_open : err_open) = false;
      }
    }
  }
  if (in_fd >= 0) close(in_fd);
  close(out[0]);
  close(err[0]);
  int status = 0;
  struct rusage usage {};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  result.max_rss_kb = usage.ru_maxrss;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

CliResult Cache(std::vector<std::string> args, std::string_view input) {
  args.insert(args.begin(), "cache");
  return RunCortex(args, input);
}

}  // namespace kvcache::testing

namespace kvcache::testing {

std::string Describe(const CliResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout:\n" + r.out + "\n--- stderr:\n" +
         r.err;
}

::testing::AssertionResult Succeeded(const CliResult& r) {
  if (r.exit_code == 0 && r.err.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected success, got " << Describe(r);
}

::testing::AssertionResult FailedWith(const CliResult& r, std::string_view needle) {
  bool one_line = !r.err.empty() && r.err.back() == '\n' && r.err.find('\n') == r.err.size() - 1;
  if (r.exit_code == 1 && r.out.empty() && one_line && r.err.rfind("error: ", 0) == 0 &&
      r.err.find(needle) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "expected exit 1 and one line 'error: ...' containing '"
                                       << needle << "', got " << Describe(r);
}

::testing::AssertionResult UsageError(const CliResult& r) {
  if (r.exit_code == 2 && !r.err.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "expected a usage error (exit 2), got " << Describe(r);
}

}  // namespace kvcache::testing
