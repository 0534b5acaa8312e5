// A real unprivileged user for multi-user tests: created with useradd when the test
// starts and removed with userdel when it ends (also when the test fails). The name is
// unique per process and test, so suites running side by side never collide.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace kvcache::testing {

class TestUser {
 public:
  TestUser();  // a failure to create the user is reported through ok()
  ~TestUser();
  TestUser(const TestUser&) = delete;
  TestUser& operator=(const TestUser&) = delete;

  // False when useradd failed (not root, or no useradd): the test should skip.
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  uid_t uid() const { return uid_; }
  gid_t gid() const { return gid_; }

  // argv that runs `argv` as this user (setpriv, no supplementary groups) with the
  // extra environment `env` ("NAME=value").
  std::vector<std::string> Command(const std::vector<std::string>& argv,
                                   const std::vector<std::string>& env = {}) const;
  // A new directory owned by this user, mode 0700 (e.g. its CORTEX_HOME). Removed when
  // the user is.
  std::string MakeDir();

 private:
  bool ok_ = false;
  std::string name_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::vector<std::string> dirs_;
};

}  // namespace kvcache::testing
