// null_fuse MOUNTPOINT [-f] [-o timeout=SECONDS] [-o writeback] [-o noxattr]
//           [-o distinct=MIB]: the do-nothing FUSE reference daemon.
//
// It answers every request a mount benchmark makes (lookup, getattr, mkdir, create,
// open, write, read, flush, release, readdir(plus), unlink, rmdir, statfs) from a tree
// held in memory, and does nothing else: written bytes are counted, not kept, and
// reads are answered from one static zero-filled buffer. What it reaches is what any
// FUSE filesystem can reach on this machine, so bench/mount_bench.sh reports
// kvcachefs as a ratio to it.
//
// To be a fair ceiling it is built and mounted exactly as kvcachefs is (fs/main.cc,
// fs/fuse_adapters.cc): the same libfuse API level, max_read/max_write/max_readahead
// of 1 MiB with the block device's read_ahead_kb raised to match, READDIRPLUS always,
// no writeback cache, no automatic page cache invalidation, and the same
// multi-threaded loop (8 threads, all kept idle, no cloned fd), and default_permissions
// (the kernel checks permissions itself, asking for attributes it holds no longer).
//
//   -o timeout=SECONDS  entry and attribute timeout given to the kernel (default 1.0,
//                       libfuse's default)
//   -o writeback        asks for the kernel's writeback cache (kvcachefs does not: a
//                       write must fail at once when the pool cannot hold it). Shows
//                       what buffering small writes in the page cache would reach.
//   -o noxattr          has no getxattr operation at all, so the kernel stops asking
//                       (kvcachefs serves user.kvcache.* attributes, so the kernel keeps
//                       asking it for security.capability before every cached write).
//   -o distinct=MIB     answers reads from a buffer of MIB MiB in memory instead of the
//                       static 1 MiB one, each file from its own place in it (file
//                       number i at i x 2 MiB, wrapping), so that reading many files
//                       copies as many distinct bytes as a filesystem serving real
//                       contents does: the ceiling for reads whose source is memory,
//                       not the cache (kvcachefs serves from the pool's shared memory).
#include <fuse_lowlevel.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "mount_util.h"

namespace {

constexpr unsigned kMaxIo = 1u << 20;
constexpr unsigned kMaxThreads = 8;
constexpr unsigned kReadaheadKb = 1024;

struct Node {
  fuse_ino_t ino = 0;
  bool dir = false;
  uint64_t size = 0;
  std::map<std::string, fuse_ino_t> children;  // dir only
};

// One tree, one lock: every request holds it for a map lookup or two.
class Tree {
 public:
  explicit Tree(double timeout) : timeout_(timeout) {
    auto root = std::make_unique<Node>();
    root->ino = FUSE_ROOT_ID;
    root->dir = true;
    nodes_[FUSE_ROOT_ID] = std::move(root);
  }

  double timeout() const { return timeout_; }

  void Attr(const Node& n, struct stat* st) const {
    *st = {};
    st->st_ino = n.ino;
    st->st_mode = n.dir ? (S_IFDIR | 0755) : (S_IFREG | 0644);
    st->st_nlink = n.dir ? 2 : 1;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_size = static_cast<off_t>(n.size);
    st->st_blocks = static_cast<blkcnt_t>((n.size + 511) / 512);
    st->st_blksize = kMaxIo;
  }

  void Entry(const Node& n, fuse_entry_param* e) const {
    *e = {};
    e->ino = n.ino;
    e->generation = 1;
    e->attr_timeout = timeout_;
    e->entry_timeout = timeout_;
    Attr(n, &e->attr);
  }

  // Returns 0 and fills *e, or an errno.
  int Lookup(fuse_ino_t parent, const char* name, fuse_entry_param* e) {
    std::lock_guard lock(mu_);
    Node* dir = Find(parent);
    if (dir == nullptr || !dir->dir) return ENOTDIR;
    auto it = dir->children.find(name);
    if (it == dir->children.end()) return ENOENT;
    Entry(*nodes_.at(it->second), e);
    return 0;
  }

  int Make(fuse_ino_t parent, const char* name, bool is_dir, bool exclusive,
           fuse_entry_param* e) {
    std::lock_guard lock(mu_);
    Node* dir = Find(parent);
    if (dir == nullptr || !dir->dir) return ENOTDIR;
    auto it = dir->children.find(name);
    if (it != dir->children.end()) {
      Node& n = *nodes_.at(it->second);
      if (exclusive || n.dir != is_dir) return EEXIST;
      n.size = 0;  // create of an existing file: O_TRUNC, as cp and shells ask
      Entry(n, e);
      return 0;
    }
    auto n = std::make_unique<Node>();
    n->ino = next_ino_++;
    n->dir = is_dir;
    dir->children.emplace(name, n->ino);
    Entry(*n, e);
    nodes_[n->ino] = std::move(n);
    return 0;
  }

  int Remove(fuse_ino_t parent, const char* name, bool is_dir) {
    std::lock_guard lock(mu_);
    Node* dir = Find(parent);
    if (dir == nullptr || !dir->dir) return ENOTDIR;
    auto it = dir->children.find(name);
    if (it == dir->children.end()) return ENOENT;
    Node& n = *nodes_.at(it->second);
    if (n.dir != is_dir) return is_dir ? ENOTDIR : EISDIR;
    if (is_dir && !n.children.empty()) return ENOTEMPTY;
    // The inode stays until the kernel forgets it; this daemon never reuses numbers,
    // so it is simply dropped from the directory and kept (a few bytes each).
    dir->children.erase(it);
    return 0;
  }

  int Getattr(fuse_ino_t ino, struct stat* st) {
    std::lock_guard lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return ENOENT;
    Attr(*n, st);
    return 0;
  }

  int Truncate(fuse_ino_t ino, uint64_t size, struct stat* st) {
    std::lock_guard lock(mu_);
    Node* n = Find(ino);
    if (n == nullptr) return ENOENT;
    if (n->dir) return EISDIR;
    n->size = size;
    Attr(*n, st);
    return 0;
  }

  void Grow(fuse_ino_t ino, uint64_t end) {
    std::lock_guard lock(mu_);
    if (Node* n = Find(ino)) n->size = std::max(n->size, end);
  }

  uint64_t Size(fuse_ino_t ino) {
    std::lock_guard lock(mu_);
    Node* n = Find(ino);
    return n == nullptr ? 0 : n->size;
  }

  struct Listed {
    std::string name;
    fuse_entry_param entry;
  };
  // The directory as it is now, "." and ".." first.
  int List(fuse_ino_t ino, std::vector<Listed>* out) {
    std::lock_guard lock(mu_);
    Node* dir = Find(ino);
    if (dir == nullptr || !dir->dir) return ENOTDIR;
    out->reserve(dir->children.size() + 2);
    for (const char* dot : {".", ".."}) {
      Listed l{dot, {}};
      l.entry.attr.st_ino = ino;
      l.entry.attr.st_mode = S_IFDIR;
      out->push_back(std::move(l));
    }
    for (const auto& [name, child] : dir->children) {
      Listed l{name, {}};
      Entry(*nodes_.at(child), &l.entry);
      out->push_back(std::move(l));
    }
    return 0;
  }

 private:
  Node* Find(fuse_ino_t ino) {
    auto it = nodes_.find(ino);
    return it == nodes_.end() ? nullptr : it->second.get();
  }

  const double timeout_;
  std::mutex mu_;
  std::unordered_map<fuse_ino_t, std::unique_ptr<Node>> nodes_;  // guarded by mu_
  fuse_ino_t next_ino_ = FUSE_ROOT_ID + 1;                      // guarded by mu_
};

Tree& T(fuse_req_t req) { return *static_cast<Tree*>(fuse_req_userdata(req)); }

const std::vector<char>& Zeros() {
  static const std::vector<char> zeros(kMaxIo, 0);
  return zeros;
}

// Set from -o distinct before the session starts: the buffer reads are served from
// (nullptr: Zeros()) and its usable length (a whole read fits past any start).
const char* g_distinct = nullptr;
uint64_t g_distinct_span = 0;
constexpr uint64_t kDistinctStride = 2u << 20;

// Set from -o writeback before the session starts; read by OpInit.
bool g_writeback = false;

void OpInit(void* /*userdata*/, fuse_conn_info* conn) {
  // As kvcachefs's OpInit (fs/fuse_adapters.cc), unless -o writeback.
  conn->max_write = kMaxIo;
  conn->max_read = kMaxIo;
  conn->max_readahead = kMaxIo;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  if (g_writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  }
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
}

void ReplyEntry(fuse_req_t req, int err, const fuse_entry_param& e) {
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e;
  ReplyEntry(req, T(req).Lookup(parent, name, &e), e);
}

void OpForget(fuse_req_t req, fuse_ino_t /*ino*/, uint64_t /*nlookup*/) {
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t /*count*/, fuse_forget_data* /*forgets*/) {
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  struct stat st;
  if (int err = T(req).Getattr(ino, &st); err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, T(req).timeout());
  }
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info* /*fi*/) {
  struct stat st;
  int err = (to_set & FUSE_SET_ATTR_SIZE)
                ? T(req).Truncate(ino, static_cast<uint64_t>(attr->st_size), &st)
                : T(req).Getattr(ino, &st);
  if (err != 0) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, T(req).timeout());
  }
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t /*mode*/) {
  fuse_entry_param e;
  ReplyEntry(req, T(req).Make(parent, name, true, true, &e), e);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, T(req).Remove(parent, name, true));
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, T(req).Remove(parent, name, false));
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t /*mode*/,
              fuse_file_info* fi) {
  fuse_entry_param e;
  if (int err = T(req).Make(parent, name, false, (fi->flags & O_EXCL) != 0, &e); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_reply_create(req, &e, fi);
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (fi->flags & O_TRUNC) {
    struct stat st;
    T(req).Truncate(ino, 0, &st);
  }
  fuse_reply_open(req, fi);
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
            fuse_file_info* /*fi*/) {
  uint64_t file_size = T(req).Size(ino);
  uint64_t off = static_cast<uint64_t>(offset);
  size_t n = off >= file_size ? 0 : static_cast<size_t>(std::min<uint64_t>(size, file_size - off));
  if (g_distinct != nullptr) {
    uint64_t at = (ino * kDistinctStride + off) % g_distinct_span;
    fuse_reply_buf(req, g_distinct + at, std::min<size_t>(n, kMaxIo));
    return;
  }
  fuse_reply_buf(req, Zeros().data(), std::min<size_t>(n, Zeros().size()));
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* /*buf*/, size_t size, off_t offset,
             fuse_file_info* /*fi*/) {
  T(req).Grow(ino, static_cast<uint64_t>(offset) + size);
  fuse_reply_write(req, size);
}

void OpFlush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);
}

void OpRelease(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t /*ino*/, int /*datasync*/, fuse_file_info* /*fi*/) {
  fuse_reply_err(req, 0);
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto listed = std::make_unique<std::vector<Tree::Listed>>();
  if (int err = T(req).List(ino, listed.get()); err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(listed.get());
  if (fuse_reply_open(req, fi) == 0) listed.release();
}

void Readdir(fuse_req_t req, size_t size, off_t offset, fuse_file_info* fi, bool plus) {
  const auto& listed = *reinterpret_cast<std::vector<Tree::Listed>*>(fi->fh);
  std::vector<char> buf(size);
  size_t used = 0;
  for (size_t i = static_cast<size_t>(offset); i < listed.size(); ++i) {
    const Tree::Listed& l = listed[i];
    off_t next = static_cast<off_t>(i + 1);
    size_t need = plus ? fuse_add_direntry_plus(req, buf.data() + used, size - used,
                                                l.name.c_str(), &l.entry, next)
                       : fuse_add_direntry(req, buf.data() + used, size - used,
                                           l.name.c_str(), &l.entry.attr, next);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OpReaddir(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t offset,
               fuse_file_info* fi) {
  Readdir(req, size, offset, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t offset,
                   fuse_file_info* fi) {
  Readdir(req, size, offset, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  delete reinterpret_cast<std::vector<Tree::Listed>*>(fi->fh);
  fuse_reply_err(req, 0);
}

void OpStatfs(fuse_req_t req, fuse_ino_t /*ino*/) {
  struct statvfs st{};
  st.f_bsize = kMaxIo;
  st.f_frsize = 4096;
  st.f_blocks = st.f_bfree = st.f_bavail = uint64_t{1} << 30;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

// As kvcachefs answers names outside user.*: unsupported, so `ls` stops asking.
void OpGetxattr(fuse_req_t req, fuse_ino_t /*ino*/, const char* /*name*/, size_t /*size*/) {
  fuse_reply_err(req, ENOTSUP);
}

fuse_lowlevel_ops MakeOperations(bool with_xattr) {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.mkdir = OpMkdir;
  ops.rmdir = OpRmdir;
  ops.unlink = OpUnlink;
  ops.create = OpCreate;
  ops.open = OpOpen;
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
  if (with_xattr) ops.getxattr = OpGetxattr;
  return ops;
}

struct Options {
  char* timeout = nullptr;
  int writeback = 0;
  int noxattr = 0;
  char* distinct = nullptr;
};

const fuse_opt kOptionSpec[] = {
    {"timeout=%s", offsetof(Options, timeout), 0},
    {"writeback", offsetof(Options, writeback), 1},
    {"noxattr", offsetof(Options, noxattr), 1},
    {"distinct=%s", offsetof(Options, distinct), 0},
    FUSE_OPT_END,
};

int Run(int argc, char** argv) {
  fuse_args args = FUSE_ARGS_INIT(argc, argv);
  Options options;
  if (fuse_opt_parse(&args, &options, kOptionSpec, nullptr) != 0) return 2;
  fuse_cmdline_opts cmdline{};
  if (fuse_parse_cmdline(&args, &cmdline) != 0) return 2;
  if (cmdline.show_help || cmdline.mountpoint == nullptr) {
    std::printf("usage: %s MOUNTPOINT [-f] [-o timeout=SECONDS] [-o writeback] [-o noxattr] "
                "[-o distinct=MIB]\n",
                argv[0]);
    return cmdline.show_help ? 0 : 2;
  }
  double timeout = 1.0;
  if (options.timeout != nullptr) {
    char* end = nullptr;
    timeout = std::strtod(options.timeout, &end);
    if (end == options.timeout || *end != '\0' || timeout < 0) {
      std::fprintf(stderr, "null_fuse: bad timeout '%s'\n", options.timeout);
      return 2;
    }
  }
  std::vector<char> distinct;
  if (options.distinct != nullptr) {
    char* end = nullptr;
    unsigned long long mib = std::strtoull(options.distinct, &end, 10);
    if (end == options.distinct || *end != '\0' || mib < 2 || mib > (1ull << 20)) {
      std::fprintf(stderr, "null_fuse: bad distinct '%s' (MiB, 2 or more)\n", options.distinct);
      return 2;
    }
    // Filled, so every page is really there before the first read.
    distinct.resize(mib << 20);
    for (size_t i = 0; i < distinct.size(); i += 4096) distinct[i] = static_cast<char>(i >> 12);
    g_distinct = distinct.data();
    g_distinct_span = distinct.size() - kMaxIo;
  }
  char resolved[PATH_MAX];
  std::string mount_path = realpath(cmdline.mountpoint, resolved) ? resolved : cmdline.mountpoint;

  fuse_opt_add_arg(&args, "-odefault_permissions,fsname=null_fuse,subtype=null_fuse,max_read=1048576");
  Tree tree(timeout);
  g_writeback = options.writeback != 0;
  const fuse_lowlevel_ops ops = MakeOperations(options.noxattr == 0);
  fuse_session* session = fuse_session_new(&args, &ops, sizeof(ops), &tree);
  if (session == nullptr) return 1;
  int rc = 1;
  if (fuse_set_signal_handlers(session) == 0) {
    if (fuse_session_mount(session, cmdline.mountpoint) == 0) {
      if (std::optional<std::string> dev = kvcache::fs::MountDevice(mount_path)) {
        if (!kvcache::fs::SetReadaheadKb(*dev, kReadaheadKb)) {
          std::fprintf(stderr, "null_fuse: could not raise read_ahead_kb of %s\n", dev->c_str());
        }
      }
      fuse_daemonize(cmdline.foreground);
      fuse_loop_config* config = fuse_loop_cfg_create();
      fuse_loop_cfg_set_max_threads(config, kMaxThreads);
      fuse_loop_cfg_set_idle_threads(config, kMaxThreads);
      fuse_loop_cfg_set_clone_fd(config, 0);
      int result = cmdline.singlethread ? fuse_session_loop(session)
                                        : fuse_session_loop_mt(session, config);
      rc = (result == 0 || result == SIGINT || result == SIGTERM || result == SIGHUP) ? 0 : 1;
      fuse_loop_cfg_destroy(config);
      fuse_session_unmount(session);
    }
    fuse_remove_signal_handlers(session);
  }
  fuse_session_destroy(session);
  free(cmdline.mountpoint);
  free(options.timeout);
  free(options.distinct);
  fuse_opt_free_args(&args);
  return rc;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
