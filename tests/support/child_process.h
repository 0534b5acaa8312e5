// Real separate processes for tests: spawn a program, read what it prints, wait for
// it or kill it. A Child still running is SIGKILLed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace kvcache::testing {

class Child {
 public:
  // Starts argv[0] (a path) with the current environment; stdout is a pipe.
  explicit Child(const std::vector<std::string>& argv);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Reads stdout until a line equal to `line` arrives; false on EOF or timeout.
  bool WaitForLine(const std::string& line,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits for exit; returns the exit code, or 128 + signal.
  int Wait();
  void Kill(int sig);
  // Everything read from stdout so far (after Wait, all of it).
  const std::string& output() const { return out_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string out_;
  bool reaped_ = false;
  int status_ = 0;
};

// The argv of execv for `args`: pointers into `args` (which must outlive it), ending in
// nullptr. Made before fork(), so that the child allocates nothing until exec: a malloc
// in a child forked while another thread allocates may wait forever.
std::vector<char*> ExecArgv(const std::vector<std::string>& args);

// Runs argv to completion; returns its exit code (128 + signal if killed).
int Run(const std::vector<std::string>& argv, std::string* output = nullptr);

}  // namespace kvcache::testing
