#include "file_util.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>

namespace kvcache {

std::string DirName(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
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

namespace {

Status EndedEarly(std::string_view what, uint64_t done, uint64_t len) {
  return Status::IOError(std::string(what) + " ended after " + std::to_string(done) + " of " +
                         std::to_string(len) + " bytes (it changed while being read)");
}

// The buffered fallback: 256 KiB stays in the cache between the read and the write.
Status CopyThroughBuffer(int in, uint64_t in_offset, int out, uint64_t out_offset,
                         uint64_t len, uint64_t done, std::string_view what) {
  constexpr size_t kBuffer = 256u << 10;
  auto buffer = std::make_unique_for_overwrite<std::byte[]>(kBuffer);
  while (done < len) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kBuffer, len - done));
    ssize_t n = pread(in, buffer.get(), want, static_cast<off_t>(in_offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "read " + std::string(what));
    }
    if (n == 0) return EndedEarly(what, done, len);
    KVC_RETURN_IF_ERROR(WriteFullyAt(out, out_offset + done,
                                     std::span(buffer.get(), static_cast<size_t>(n)), what));
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

struct Pipe {
  int fd[2] = {-1, -1};
  ~Pipe() {
    if (fd[0] >= 0) close(fd[0]);
    if (fd[1] >= 0) close(fd[1]);
  }
};

}  // namespace

Status CopyFileRange(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t len,
                     std::string_view what) {
  Pipe pipe;
  if (len == 0) return Status::Ok();
  if (pipe2(pipe.fd, O_CLOEXEC) != 0) {
    return CopyThroughBuffer(in, in_offset, out, out_offset, len, 0, what);
  }
  // A bigger pipe means fewer splices; the default (64 KiB) works too.
  int capacity = fcntl(pipe.fd[1], F_SETPIPE_SZ, 1 << 20);
  if (capacity <= 0) capacity = fcntl(pipe.fd[1], F_GETPIPE_SZ);
  if (capacity <= 0) capacity = 64 << 10;
  uint64_t done = 0;
  while (done < len) {
    auto src = static_cast<loff_t>(in_offset + done);
    size_t want = static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(capacity), len - done));
    ssize_t n = splice(in, &src, pipe.fd[1], nullptr, want, SPLICE_F_MOVE);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Nothing is in the pipe: the rest can go through the buffer instead.
      if (errno == EINVAL || errno == ENOSYS) {
        return CopyThroughBuffer(in, in_offset, out, out_offset, len, done, what);
      }
      return ErrnoToStatus(errno, "read " + std::string(what));
    }
    if (n == 0) return EndedEarly(what, done, len);
    for (ssize_t moved = 0; moved < n;) {
      auto dst = static_cast<loff_t>(out_offset + done + static_cast<uint64_t>(moved));
      ssize_t m = splice(pipe.fd[0], nullptr, out, &dst, static_cast<size_t>(n - moved),
                         SPLICE_F_MOVE);
      if (m < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, "copy " + std::string(what));
      }
      if (m == 0) return Status::IOError("copy " + std::string(what) + ": the destination took nothing");
      moved += m;
    }
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status WriteFullyAt(int fd, uint64_t offset, std::span<const std::byte> bytes,
                    std::string_view what) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = pwrite(fd, bytes.data() + done, bytes.size() - done,
                       static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "write " + std::string(what));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status ReadFullyAt(int fd, uint64_t offset, std::span<std::byte> into, std::string_view what) {
  size_t done = 0;
  while (done < into.size()) {
    ssize_t n = pread(fd, into.data() + done, into.size() - done,
                      static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "read " + std::string(what));
    }
    if (n == 0) return EndedEarly(what, done, into.size());
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace kvcache
