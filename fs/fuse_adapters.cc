#include "fuse_adapters.h"

#include <sys/xattr.h>

#include <cerrno>
#include <string>
#include <vector>

#include "kvcachefs.h"

namespace kvcache::fs {
namespace {

constexpr unsigned kMaxIo = 1u << 20;

KvcacheFs& Fs(fuse_req_t req) { return *static_cast<KvcacheFs*>(fuse_req_userdata(req)); }

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid, ctx->pid};
}

FileHandle* Handle(const fuse_file_info* fi) {
  return fi == nullptr ? nullptr : reinterpret_cast<FileHandle*>(fi->fh);
}

void OpInit(void* /*userdata*/, fuse_conn_info* conn) {
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;  // must match the max_read mount option
  conn->max_readahead = kMaxIo;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  // Always plus: `ls -l` then needs no GETATTR per entry.
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  // Page cache validity is decided per open by entry generation, not by mtime.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param entry{};
  int err = Fs(req).DoLookup(CallerOf(req), parent, name, &entry);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else if (fuse_reply_entry(req, &entry) != 0) {
    Fs(req).DoForget(entry.ino, 1);
  }
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req).DoForget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req).DoForget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  struct stat attr{};
  double timeout = 0;
  int err = Fs(req).DoGetattr(ino, Handle(fi), &attr, &timeout);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &attr, timeout);
  }
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info* fi) {
  struct stat out{};
  double timeout = 0;
  int err = Fs(req).DoSetattr(ino, *attr, to_set, Handle(fi), &out, &timeout);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &out, timeout);
  }
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  std::string target;
  int err = Fs(req).DoReadlink(ino, &target);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_readlink(req, target.c_str());
  }
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t /*mode*/) {
  fuse_entry_param entry{};
  int err = Fs(req).DoMkdir(parent, name, &entry);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else if (fuse_reply_entry(req, &entry) != 0) {
    Fs(req).DoForget(entry.ino, 1);
  }
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Fs(req).DoRmdir(parent, name));
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Fs(req).DoUnlink(parent, name));
}

void SetOpenFlags(fuse_file_info* fi, const OpenResult& result) {
  fi->fh = reinterpret_cast<uint64_t>(result.handle);
  fi->direct_io = result.direct_io ? 1 : 0;
  fi->keep_cache = result.keep_cache ? 1 : 0;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpenResult result;
  int err = Fs(req).DoOpen(CallerOf(req), ino, fi->flags, &result);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  SetOpenFlags(fi, result);
  // The kernel did not get the handle (the opener was interrupted): no release follows.
  if (fuse_reply_open(req, fi) != 0) Fs(req).DoRelease(result.handle);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t /*mode*/,
              fuse_file_info* fi) {
  fuse_entry_param entry{};
  OpenResult result;
  int err = Fs(req).DoCreate(CallerOf(req), parent, name, fi->flags, &entry, &result);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  SetOpenFlags(fi, result);
  if (fuse_reply_create(req, &entry, fi) != 0) {
    Fs(req).DoRelease(result.handle);
    Fs(req).DoForget(entry.ino, 1);
  }
}

void OpRead(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t offset, fuse_file_info* fi) {
  std::span<const std::byte> bytes;
  std::vector<std::byte> scratch;
  int err = Fs(req).DoRead(Handle(fi), size, offset, &bytes, &scratch);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    // For entries this points into the pinned pool mapping: the kernel copies the
    // bytes straight from shared memory.
    fuse_reply_buf(req, reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
}

void OpWrite(fuse_req_t req, fuse_ino_t /*ino*/, const char* buf, size_t size, off_t offset,
             fuse_file_info* fi) {
  int err = Fs(req).DoWrite(Handle(fi), offset,
                            {reinterpret_cast<const std::byte*>(buf), size});
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_write(req, size);
  }
}

void OpFlush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  fuse_reply_err(req, Fs(req).DoFlush(Handle(fi), fuse_req_ctx(req)->pid));
}

void OpRelease(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  fuse_reply_err(req, Fs(req).DoRelease(Handle(fi)));
}

void OpFsync(fuse_req_t req, fuse_ino_t /*ino*/, int /*datasync*/, fuse_file_info* fi) {
  // Publishes a file being written; pools live in memory, so that is all there is.
  fuse_reply_err(req, Fs(req).DoFsync(Handle(fi)));
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
              const char* new_name, unsigned int flags) {
  fuse_reply_err(req, Fs(req).DoRename(parent, name, new_parent, new_name, flags));
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  KvcacheFs::DirHandle* dir = nullptr;
  int err = Fs(req).DoOpendir(ino, &dir);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(dir);
  if (fuse_reply_open(req, fi) != 0) Fs(req).DoReleasedir(dir);
}

void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
             bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  auto fill = [&](const std::string& name, const fuse_entry_param& entry, off_t next) {
    size_t need;
    if (plus) {
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &entry,
                                    next);
    } else {
      need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &entry.attr,
                               next);
    }
    if (need > size - used) return false;
    used += need;
    return true;
  };
  auto* dir = reinterpret_cast<KvcacheFs::DirHandle*>(fi->fh);
  int err = Fs(req).DoReaddir(ino, dir, offset, plus, fill);
  // Entries already filled have counted lookups: send them even if a later one failed.
  if (err != 0 && used == 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, buf.data(), used);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
  Readdir(req, ino, size, offset, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
                   fuse_file_info* fi) {
  Readdir(req, ino, size, offset, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  Fs(req).DoReleasedir(reinterpret_cast<KvcacheFs::DirHandle*>(fi->fh));
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  struct statvfs out{};
  int err = Fs(req).DoStatfs(&out);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_statfs(req, &out);
  }
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                size_t size, int /*flags*/) {
  fuse_reply_err(req, Fs(req).DoSetxattr(ino, name, std::string_view(value, size),
                                         fuse_req_ctx(req)->pid));
}

// Replies with the size when the caller asks for it (size 0), else with the bytes.
void ReplyXattr(fuse_req_t req, size_t size, const std::string& value) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (value.size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  std::string value;
  int err = Fs(req).DoGetxattr(ino, name, &value);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    ReplyXattr(req, size, value);
  }
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  std::string names;
  int err = Fs(req).DoListxattr(ino, &names);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    ReplyXattr(req, size, names);
  }
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  fuse_reply_err(req, Fs(req).DoRemovexattr(ino, name, fuse_req_ctx(req)->pid));
}

fuse_lowlevel_ops MakeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mkdir = OpMkdir;
  ops.rmdir = OpRmdir;
  ops.unlink = OpUnlink;
  ops.rename = OpRename;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& Operations() {
  static const fuse_lowlevel_ops ops = MakeOperations();
  return ops;
}

}  // namespace kvcache::fs
