#include "file_util.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace kvcache {

std::string DirName(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, "create directory " + Quoted(part));
    }
  }
  return Status::Ok();
}

std::string DescribeUid(uid_t uid) {
  std::string out = "uid " + std::to_string(uid);
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != nullptr) {
    out += " (" + std::string(found->pw_name) + ")";
  }
  return out;
}

namespace {

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0%03o", static_cast<unsigned>(mode & 0777));
  return buf;
}

// Owner and write bits: the checks shared by directories and files.
Status CheckOwnerAndMode(const struct stat& st, const std::string& what,
                         const std::string& path) {
  if (st.st_uid != geteuid()) {
    return Status::PermissionDenied("refusing " + what + " " + Quoted(path) + ": it is owned by " +
                                    DescribeUid(st.st_uid) + ", not by " +
                                    DescribeUid(geteuid()));
  }
  if ((st.st_mode & 022) != 0) {
    return Status::PermissionDenied("refusing " + what + " " + Quoted(path) + ": mode " +
                                    Octal(st.st_mode) + " lets " +
                                    ((st.st_mode & 002) != 0 ? "every user" : "its group") +
                                    " change it (chmod go-w " + path + ")");
  }
  return Status::Ok();
}

}  // namespace

Status CheckTrustedDir(const std::string& dir) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) return ErrnoToStatus(errno, "stat directory " + Quoted(dir));
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(Quoted(dir) + " is not a directory");
  }
  return CheckOwnerAndMode(st, "directory", dir);
}

Status MakeTrustedDir(const std::string& dir) {
  KVC_RETURN_IF_ERROR(MakeDirs(dir));
  return CheckTrustedDir(dir);
}

Status CheckTrustedFile(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return ErrnoToStatus(errno, "stat " + Quoted(path));
  }
  if (S_ISLNK(st.st_mode)) {
    return Status::PermissionDenied("refusing " + Quoted(path) + ": it is a symbolic link, owned by " +
                                    DescribeUid(st.st_uid));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::PermissionDenied("refusing " + Quoted(path) + ": it is not a regular file");
  }
  return CheckOwnerAndMode(st, "file", path);
}

}  // namespace kvcache
