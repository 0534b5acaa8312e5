#include "kvcachefs.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <map>

#include "errno_map.h"
#include "kvcache/prefix.h"

namespace kvcache::fs {
namespace {

// Cookies of sequence files are derived from their ids, so an offset handed out
// stays meaningful whatever is added or removed meanwhile.
constexpr off_t kSeqCookieBase = 16;
constexpr uint32_t kBlockSize = 1 << 20;  // st_blksize: tools then do 1 MiB I/O

struct timespec ToTimespec(double seconds) {
  struct timespec ts{};
  if (seconds <= 0) return ts;
  double whole = std::floor(seconds);
  ts.tv_sec = static_cast<time_t>(whole);
  ts.tv_nsec = static_cast<long>((seconds - whole) * 1e9);
  return ts;
}

// Times of the nodes that are not entries: when the daemon started.
struct timespec MountTime(uint64_t boot_ns) {
  struct timespec ts{};
  ts.tv_sec = static_cast<time_t>(boot_ns / 1000000000);
  ts.tv_nsec = static_cast<long>(boot_ns % 1000000000);
  return ts;
}

uint64_t NowGeneration() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Node PoolNode(NodeKind kind, const std::string& pool) {
  Node n;
  n.kind = kind;
  n.pool = pool;
  return n;
}

}  // namespace

struct KvcacheFs::DirEntry {
  std::string name;
  Node node;
  EntryInfo info;  // kSeqFile only
  off_t cookie = 0;
  Ino self = 0;    // "." and "..": no lookup is counted for them
};

struct KvcacheFs::DirHandle {
  std::vector<DirEntry> entries;  // sorted by cookie
  bool fresh = true;              // listed by opendir, not yet read
};

KvcacheFs::KvcacheFs(Manager& manager, FsOptions options)
    : manager_(manager),
      options_(std::move(options)),
      boot_generation_(NowGeneration()),
      uid_(geteuid()),
      gid_(getegid()),
      controls_(manager) {}

KvcacheFs::~KvcacheFs() { invalidator_.Stop(); }

void KvcacheFs::BaseAttr(Ino ino, mode_t mode, struct stat* attr) const {
  *attr = {};
  attr->st_ino = ino;
  attr->st_mode = mode;
  attr->st_mtim = attr->st_ctim = attr->st_atim = MountTime(boot_generation_);
  attr->st_nlink = S_ISDIR(mode) ? 2 : 1;
  attr->st_uid = uid_;
  attr->st_gid = gid_;
  attr->st_blksize = kBlockSize;
}

void KvcacheFs::DirAttr(Ino ino, mode_t perms, struct stat* attr) const {
  BaseAttr(ino, S_IFDIR | perms, attr);
}

void KvcacheFs::FileAttr(Ino ino, mode_t perms, uint64_t size, struct stat* attr) const {
  BaseAttr(ino, S_IFREG | perms, attr);
  attr->st_size = static_cast<off_t>(size);
  attr->st_blocks = static_cast<blkcnt_t>((size + 511) / 512);
}

void KvcacheFs::SeqAttr(Ino ino, const EntryInfo& info, struct stat* attr) const {
  FileAttr(ino, 0644, info.size_bytes, attr);
  attr->st_mtim = ToTimespec(info.created);
  attr->st_ctim = attr->st_mtim;
  attr->st_atim = ToTimespec(info.last_accessed > 0 ? info.last_accessed : info.created);
}

void KvcacheFs::FillEntry(Ino ino, const struct stat& attr, fuse_entry_param* entry,
                          double timeout) {
  *entry = {};
  entry->ino = ino;
  entry->generation = boot_generation_;
  entry->attr = attr;
  entry->attr_timeout = timeout;
  entry->entry_timeout = options_.entry_timeout;
}

void KvcacheFs::NotePool(const std::string& pool) {
  std::lock_guard lock(pools_mu_);
  known_pools_.insert(pool);
}

int KvcacheFs::PoolExists(const std::string& pool) {
  Result<PoolConfig> config = manager_.GetConfig(pool);
  if (!config.ok()) return ToErrno(config.status());
  NotePool(pool);
  return 0;
}

void KvcacheFs::StaleSeqInode(Ino ino, const Node& node) {
  invalidator_.InvalidateInode(ino);
  if (std::optional<Ino> dir = inodes_.Find(PoolNode(NodeKind::kPoolDir, node.pool))) {
    invalidator_.InvalidateEntry(*dir, std::to_string(node.seq));
  }
}

// ---------------------------------------------------------------- lookup

int KvcacheFs::DoLookup(Ino parent, std::string_view name, fuse_entry_param* entry) {
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  switch (dir->kind) {
    case NodeKind::kRoot:
      return LookupInRoot(name, entry);
    case NodeKind::kPoolDir:
      return LookupInPool(dir->pool, name, entry);
    case NodeKind::kByPrefixDir: {
      Result<uint64_t> value = ParsePrefixHash(name);
      if (!value.ok()) return EINVAL;
      std::string hash = PrefixHashToHex(*value);
      Result<std::vector<EntryInfo>> found = manager_.FindByPrefixHash(dir->pool, hash);
      if (!found.ok()) return ToErrno(found.status());
      if (found->empty()) return ENOENT;
      Node node = PoolNode(NodeKind::kPrefixDir, dir->pool);
      node.hash = hash;
      struct stat attr;
      Ino ino = inodes_.Acquire(node);
      DirAttr(ino, 0555, &attr);
      FillEntry(ino, attr, entry, options_.attr_timeout);
      return 0;
    }
    case NodeKind::kPrefixDir: {
      SeqName seq = ParseSeqName(name);
      if (seq.error != 0) return seq.error;
      Result<std::vector<EntryInfo>> found = manager_.FindByPrefixHash(dir->pool, dir->hash);
      if (!found.ok()) return ToErrno(found.status());
      bool present = std::any_of(found->begin(), found->end(), [&](const EntryInfo& e) {
        return e.sequence_id == seq.seq;
      });
      if (!present) return ENOENT;
      Node node = PoolNode(NodeKind::kPrefixLink, dir->pool);
      node.hash = dir->hash;
      node.seq = seq.seq;
      struct stat attr;
      Ino ino = inodes_.Acquire(node);
      FileAttr(ino, 0777, ("../../" + std::to_string(seq.seq)).size(), &attr);
      attr.st_mode = S_IFLNK | 0777;
      FillEntry(ino, attr, entry, options_.attr_timeout);
      return 0;
    }
    default:
      return ENOTDIR;
  }
}

int KvcacheFs::LookupInRoot(std::string_view name, fuse_entry_param* entry) {
  struct stat attr;
  if (std::optional<RootFile> file = ParseRootFile(name)) {
    Node node;
    node.kind = NodeKind::kRootFile;
    node.root_file = *file;
    Ino ino = inodes_.Acquire(node);
    FileAttr(ino, 0444, 0, &attr);
    FillEntry(ino, attr, entry, 0);
    return 0;
  }
  std::string pool(name);
  if (!ValidatePoolName(pool).ok()) return ENOENT;
  if (int err = PoolExists(pool); err != 0) return err;
  Ino ino = inodes_.Acquire(PoolNode(NodeKind::kPoolDir, pool));
  DirAttr(ino, 0755, &attr);
  FillEntry(ino, attr, entry, options_.attr_timeout);
  return 0;
}

int KvcacheFs::LookupInPool(const std::string& pool, std::string_view name,
                            fuse_entry_param* entry) {
  struct stat attr;
  if (name == kByPrefixName) {
    Ino ino = inodes_.Acquire(PoolNode(NodeKind::kByPrefixDir, pool));
    DirAttr(ino, 0555, &attr);
    FillEntry(ino, attr, entry, options_.attr_timeout);
    return 0;
  }
  if (std::optional<PoolFile> file = ParsePoolFile(name)) {
    Node node = PoolNode(NodeKind::kPoolFile, pool);
    node.pool_file = *file;
    Ino ino = inodes_.Acquire(node);
    FileAttr(ino, IsControlFile(*file) ? 0644 : 0444, 0, &attr);
    FillEntry(ino, attr, entry, 0);
    return 0;
  }
  SeqName seq = ParseSeqName(name);
  if (seq.error != 0) return seq.error;
  return LookupSeq(pool, seq.seq, entry);
}

int KvcacheFs::LookupSeq(const std::string& pool, uint64_t seq, fuse_entry_param* entry) {
  Result<EntryInfo> info = manager_.Stat(pool, seq);
  if (!info.ok()) {
    if (info.status().code() == Code::kNotFound) {
      // The kernel looks a name up before opening it, so a missing id is only ever
      // seen here: count the miss the open would have counted.
      Result<EntryView> view = manager_.View(pool, seq);
      if (view.ok()) info = view->info();
    }
    if (!info.ok()) return ToErrno(info.status());
  }
  std::optional<Ino> superseded;
  Ino ino = inodes_.AcquireSeq(pool, seq, info->generation, &superseded);
  if (superseded) invalidator_.InvalidateInode(*superseded);
  struct stat attr;
  SeqAttr(ino, *info, &attr);
  FillEntry(ino, attr, entry, options_.attr_timeout);
  return 0;
}

void KvcacheFs::DoForget(Ino ino, uint64_t nlookup) { inodes_.Forget(ino, nlookup); }

// ---------------------------------------------------------------- attributes

int KvcacheFs::DoGetattr(Ino ino, const FileHandle* handle, struct stat* attr,
                         double* timeout) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  *timeout = options_.attr_timeout;
  switch (node->kind) {
    case NodeKind::kRoot:
      DirAttr(ino, 0755, attr);
      return 0;
    case NodeKind::kPoolDir:
      if (int err = PoolExists(node->pool); err != 0) return err;
      DirAttr(ino, 0755, attr);
      return 0;
    case NodeKind::kByPrefixDir:
    case NodeKind::kPrefixDir:
      DirAttr(ino, 0555, attr);
      return 0;
    case NodeKind::kPrefixLink:
      FileAttr(ino, 0777, ("../../" + std::to_string(node->seq)).size(), attr);
      attr->st_mode = S_IFLNK | 0777;
      return 0;
    case NodeKind::kRootFile:
      *timeout = 0;
      FileAttr(ino, 0444, 0, attr);
      return 0;
    case NodeKind::kPoolFile:
      *timeout = 0;
      FileAttr(ino, IsControlFile(node->pool_file) ? 0644 : 0444, 0, attr);
      return 0;
    case NodeKind::kSeqFile:
      break;
  }
  if (handle != nullptr && handle->kind == FileHandle::Kind::kEntry) {
    SeqAttr(ino, handle->view.info(), attr);
    return 0;
  }
  std::shared_ptr<WriteState> write =
      handle != nullptr && handle->write ? handle->write : FindWrite(ino);
  if (write) {
    std::lock_guard lock(write->mu);
    FileAttr(ino, 0644, write->staging.size(), attr);
    return 0;
  }
  Result<EntryInfo> info = manager_.Stat(node->pool, node->seq);
  if (!info.ok()) return ToErrno(info.status());
  if (info->generation != node->generation) StaleSeqInode(ino, *node);
  SeqAttr(ino, *info, attr);
  return 0;
}

int KvcacheFs::DoSetattr(Ino ino, const struct stat& attr, int to_set, FileHandle* handle,
                         struct stat* out, double* timeout) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) return EPERM;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (node->kind == NodeKind::kSeqFile) {
      std::shared_ptr<WriteState> write =
          handle != nullptr && handle->write ? handle->write : FindWrite(ino);
      // A published entry is write-once; only a file being written can be resized.
      if (!write) return EPERM;
      std::lock_guard lock(write->mu);
      if (!write->staging.Resize(static_cast<uint64_t>(attr.st_size))) return ENOMEM;
      write->dirty = true;
    } else if (!(node->kind == NodeKind::kPoolFile && IsControlFile(node->pool_file))) {
      return EACCES;
    }
  }
  // Times and mode are not stored: accepted so that touch, cp and install work.
  return DoGetattr(ino, handle, out, timeout);
}

int KvcacheFs::DoReadlink(Ino ino, std::string* target) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  if (node->kind != NodeKind::kPrefixLink) return EINVAL;
  *target = "../../" + std::to_string(node->seq);
  return 0;
}

int KvcacheFs::DoStatfs(struct statvfs* out) {
  *out = {};
  out->f_bsize = kBlockSize;
  out->f_frsize = 4096;
  out->f_namemax = kMaxNameLength;
  Result<std::vector<PoolStats>> pools = manager_.StatsAll();
  if (!pools.ok()) return 0;
  uint64_t size = 0, free = 0, files = 0;
  for (const PoolStats& p : *pools) {
    size += p.size;
    free += p.free;
    files += p.entry_count;
  }
  out->f_blocks = size / 4096;
  out->f_bfree = out->f_bavail = free / 4096;
  out->f_files = files;
  return 0;
}

// ---------------------------------------------------------------- pools as directories

int KvcacheFs::DoMkdir(Ino parent, std::string_view name, fuse_entry_param* entry) {
  if (parent != kRootIno) return EPERM;
  if (int err = CheckPoolDirName(name); err != 0) return err;
  PoolConfig config = options_.pool_defaults;
  config.name = std::string(name);
  if (Status s = manager_.CreatePool(config); !s.ok()) return ToErrno(s);
  NotePool(config.name);
  Ino ino = inodes_.Acquire(PoolNode(NodeKind::kPoolDir, config.name));
  struct stat attr;
  DirAttr(ino, 0755, &attr);
  FillEntry(ino, attr, entry, options_.attr_timeout);
  return 0;
}

int KvcacheFs::DoRmdir(Ino parent, std::string_view name) {
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  if (dir->kind == NodeKind::kPoolDir) {
    if (name == kByPrefixName) return EPERM;
    return ParsePoolFile(name) ? ENOTDIR : EINVAL;
  }
  if (dir->kind != NodeKind::kRoot) return EPERM;
  if (ParseRootFile(name)) return ENOTDIR;
  std::string pool(name);
  if (!ValidatePoolName(pool).ok()) return EINVAL;
  Result<PoolStats> stats = manager_.Stats(pool);
  if (!stats.ok()) return ToErrno(stats.status());
  if (stats->entry_count > 0) return ENOTEMPTY;
  if (Status s = manager_.DestroyPool(pool); !s.ok()) return ToErrno(s);
  inodes_.DropPool(pool);
  std::lock_guard lock(pools_mu_);
  known_pools_.erase(pool);
  return 0;
}

int KvcacheFs::DoUnlink(Ino parent, std::string_view name) {
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  if (dir->kind == NodeKind::kRoot) {
    if (ParseRootFile(name)) return EPERM;
    return CheckPoolDirName(name) != 0 ? CheckPoolDirName(name) : EISDIR;
  }
  if (dir->kind != NodeKind::kPoolDir) return EPERM;
  if (name == kByPrefixName) return EISDIR;
  if (ParsePoolFile(name)) return EPERM;
  SeqName seq = ParseSeqName(name);
  if (seq.error != 0) return seq.error;
  if (Status s = manager_.Remove(dir->pool, seq.seq); !s.ok()) return ToErrno(s);
  inodes_.Unbind(dir->pool, seq.seq);
  return 0;
}

// ---------------------------------------------------------------- directories

int KvcacheFs::ListDir(Ino ino, const Node& node, std::vector<DirEntry>* out) {
  out->clear();
  off_t cookie = 0;
  auto add_dot = [&](const char* name) {
    DirEntry d;
    d.name = name;
    d.cookie = ++cookie;
    d.self = ino;
    out->push_back(std::move(d));
  };
  auto add = [&](std::string name, Node n) {
    DirEntry d;
    d.name = std::move(name);
    d.node = std::move(n);
    d.cookie = ++cookie;
    out->push_back(std::move(d));
  };
  add_dot(".");
  add_dot("..");
  switch (node.kind) {
    case NodeKind::kRoot: {
      for (RootFile f : {RootFile::kStatus, RootFile::kMetrics}) {
        Node n;
        n.kind = NodeKind::kRootFile;
        n.root_file = f;
        add(std::string(RootFileName(f)), n);
      }
      Result<std::vector<std::string>> pools = manager_.ListPools();
      if (!pools.ok()) return ToErrno(pools.status());
      {
        std::lock_guard lock(pools_mu_);
        known_pools_.insert(pools->begin(), pools->end());
      }
      for (const std::string& p : *pools) add(p, PoolNode(NodeKind::kPoolDir, p));
      return 0;
    }
    case NodeKind::kPoolDir: {
      if (int err = PoolExists(node.pool); err != 0) return err;
      add(std::string(kByPrefixName), PoolNode(NodeKind::kByPrefixDir, node.pool));
      for (PoolFile f : kAllPoolFiles) {
        Node n = PoolNode(NodeKind::kPoolFile, node.pool);
        n.pool_file = f;
        add(std::string(PoolFileName(f)), n);
      }
      // A pool in the catalog without a live segment lists only its fixed names.
      Result<std::vector<EntryInfo>> entries = manager_.Entries(node.pool);
      if (!entries.ok()) return 0;
      std::map<uint64_t, uint64_t> live;
      for (EntryInfo& e : *entries) {
        live[e.sequence_id] = e.generation;
        DirEntry d;
        d.name = std::to_string(e.sequence_id);
        d.node = PoolNode(NodeKind::kSeqFile, node.pool);
        d.node.seq = e.sequence_id;
        d.node.generation = e.generation;
        d.cookie = kSeqCookieBase + static_cast<off_t>(e.sequence_id) + 1;
        d.info = std::move(e);
        out->push_back(std::move(d));
      }
      // Names the kernel may hold for entries deleted or replaced behind our back.
      for (const auto& [seq_ino, seq_node] : inodes_.SeqNodes(node.pool)) {
        auto it = live.find(seq_node.seq);
        if (it == live.end() || it->second != seq_node.generation) {
          invalidator_.InvalidateInode(seq_ino);
          invalidator_.InvalidateEntry(ino, std::to_string(seq_node.seq));
          if (it == live.end()) inodes_.Unbind(node.pool, seq_node.seq);
        }
      }
      return 0;
    }
    case NodeKind::kByPrefixDir: {
      Result<std::vector<EntryInfo>> entries = manager_.Entries(node.pool);
      if (!entries.ok()) return ToErrno(entries.status());
      std::set<std::string> hashes;
      for (const EntryInfo& e : *entries) {
        if (!e.prefix_hash.empty()) hashes.insert(e.prefix_hash);
      }
      for (const std::string& h : hashes) {
        Node n = PoolNode(NodeKind::kPrefixDir, node.pool);
        n.hash = h;
        add(h, n);
      }
      return 0;
    }
    case NodeKind::kPrefixDir: {
      Result<std::vector<EntryInfo>> found = manager_.FindByPrefixHash(node.pool, node.hash);
      if (!found.ok()) return ToErrno(found.status());
      std::sort(found->begin(), found->end(), [](const EntryInfo& a, const EntryInfo& b) {
        return a.sequence_id < b.sequence_id;
      });
      for (const EntryInfo& e : *found) {
        Node n = PoolNode(NodeKind::kPrefixLink, node.pool);
        n.hash = node.hash;
        n.seq = e.sequence_id;
        add(std::to_string(e.sequence_id), n);
      }
      return 0;
    }
    default:
      return ENOTDIR;
  }
}

int KvcacheFs::DoOpendir(Ino ino, DirHandle** handle) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  auto dir = std::make_unique<DirHandle>();
  if (int err = ListDir(ino, *node, &dir->entries); err != 0) return err;
  *handle = dir.release();
  return 0;
}

int KvcacheFs::EntryFor(const DirEntry& d, fuse_entry_param* entry) {
  struct stat attr;
  if (d.self != 0) {
    *entry = {};
    entry->attr.st_ino = d.self;
    entry->attr.st_mode = S_IFDIR;
    return 0;
  }
  const Node& n = d.node;
  switch (n.kind) {
    case NodeKind::kSeqFile: {
      std::optional<Ino> superseded;
      Ino ino = inodes_.AcquireSeq(n.pool, n.seq, n.generation, &superseded);
      if (superseded) invalidator_.InvalidateInode(*superseded);
      SeqAttr(ino, d.info, &attr);
      FillEntry(ino, attr, entry, options_.attr_timeout);
      return 0;
    }
    case NodeKind::kRootFile:
    case NodeKind::kPoolFile: {
      Ino ino = inodes_.Acquire(n);
      bool control = n.kind == NodeKind::kPoolFile && IsControlFile(n.pool_file);
      FileAttr(ino, control ? 0644 : 0444, 0, &attr);
      FillEntry(ino, attr, entry, 0);
      return 0;
    }
    case NodeKind::kPrefixLink: {
      Ino ino = inodes_.Acquire(n);
      FileAttr(ino, 0777, ("../../" + std::to_string(n.seq)).size(), &attr);
      attr.st_mode = S_IFLNK | 0777;
      FillEntry(ino, attr, entry, options_.attr_timeout);
      return 0;
    }
    default: {
      Ino ino = inodes_.Acquire(n);
      DirAttr(ino, n.kind == NodeKind::kPoolDir ? 0755 : 0555, &attr);
      FillEntry(ino, attr, entry, options_.attr_timeout);
      return 0;
    }
  }
}

int KvcacheFs::DoReaddir(Ino ino, DirHandle* handle, off_t offset, bool plus,
                         const FillFn& fill) {
  if (offset == 0 && !handle->fresh) {
    // rewinddir: list afresh.
    std::optional<Node> node = inodes_.Get(ino);
    if (!node) return ESTALE;
    if (int err = ListDir(ino, *node, &handle->entries); err != 0) return err;
  }
  handle->fresh = false;
  auto& entries = handle->entries;
  auto it = std::upper_bound(entries.begin(), entries.end(), offset,
                             [](off_t off, const DirEntry& d) { return off < d.cookie; });
  for (; it != entries.end(); ++it) {
    fuse_entry_param entry{};
    bool counted = false;
    if (plus) {
      if (int err = EntryFor(*it, &entry); err != 0) return err;
      counted = it->self == 0;
    } else {
      entry.attr.st_ino = it->self != 0 ? it->self : static_cast<ino_t>(it->cookie);
      entry.attr.st_mode = it->node.kind == NodeKind::kSeqFile ||
                                   it->node.kind == NodeKind::kRootFile ||
                                   it->node.kind == NodeKind::kPoolFile
                               ? S_IFREG
                           : it->node.kind == NodeKind::kPrefixLink ? S_IFLNK
                                                                     : S_IFDIR;
    }
    if (!fill(it->name, entry, it->cookie)) {
      if (counted) inodes_.Unref(entry.ino);
      break;
    }
  }
  return 0;
}

void KvcacheFs::DoReleasedir(DirHandle* handle) { delete handle; }

// ---------------------------------------------------------------- pools behind our back

void KvcacheFs::PollPools() {
  Result<std::vector<std::string>> pools = manager_.ListPools();
  if (!pools.ok()) return;
  std::set<std::string> now(pools->begin(), pools->end());
  std::vector<std::string> gone;
  {
    std::lock_guard lock(pools_mu_);
    for (const std::string& p : known_pools_) {
      if (!now.count(p)) gone.push_back(p);
    }
    for (const std::string& p : gone) known_pools_.erase(p);
  }
  for (const std::string& p : gone) {
    for (const auto& [seq_ino, seq_node] : inodes_.SeqNodes(p)) {
      invalidator_.InvalidateInode(seq_ino);
    }
    inodes_.DropPool(p);
    invalidator_.InvalidateEntry(kRootIno, p);
  }
}

}  // namespace kvcache::fs
