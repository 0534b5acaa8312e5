#include "support/test_user.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "support/child_process.h"

namespace kvcache::testing {
namespace {

// useradd and userdel lock /etc/passwd; suites running at once may find it busy.
bool RunRetrying(const std::vector<std::string>& argv) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (Run(argv) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

TestUser::TestUser() {
  static std::atomic<int> counter{0};
  // With a random part: pids wrap, and a user an earlier process failed to delete must
  // not make this one's useradd fail.
  name_ = fmt::format("kvct{}u{}r{:04x}", getpid(), counter++, std::random_device{}() & 0xffff);
  if (geteuid() != 0 || access("/usr/sbin/useradd", X_OK) != 0) return;
  if (!RunRetrying({"/usr/sbin/useradd", "--no-create-home", "--user-group", "--shell",
                    "/usr/sbin/nologin", name_})) {
    ADD_FAILURE() << "useradd " << name_ << " failed";
    return;
  }
  struct passwd* pw = getpwnam(name_.c_str());
  if (pw == nullptr) {
    ADD_FAILURE() << "user " << name_ << " was not created";
    return;
  }
  uid_ = pw->pw_uid;
  gid_ = pw->pw_gid;
  ok_ = true;
}

TestUser::~TestUser() {
  std::error_code ec;
  for (const std::string& dir : dirs_) std::filesystem::remove_all(dir, ec);
  if (!ok_) return;
  // The tests wait for every process they start as the user, so none is left.
  if (!RunRetrying({"/usr/sbin/userdel", name_})) ADD_FAILURE() << "userdel " << name_ << " failed";
}

std::vector<std::string> TestUser::Command(const std::vector<std::string>& argv,
                                           const std::vector<std::string>& env) const {
  std::vector<std::string> out = {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid_),
                                  "--regid=" + std::to_string(gid_), "--clear-groups", "--",
                                  "/usr/bin/env"};
  out.insert(out.end(), env.begin(), env.end());
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string TestUser::MakeDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "kvct-user-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return templ;
  }
  if (chown(templ.c_str(), uid_, gid_) != 0) ADD_FAILURE() << "chown " << templ << " failed";
  dirs_.push_back(templ);
  return templ;
}

}  // namespace kvcache::testing
