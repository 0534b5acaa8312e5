#include "kvcachefs.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <map>

#include "errno_map.h"
#include "kvcachefs_internal.h"
#include "kvcache/prefix.h"

namespace kvcache::fs {

KvcacheFs::KvcacheFs(Manager& manager, FsOptions options)
    : manager_(manager),
      options_(std::move(options)),
      boot_generation_(NowGeneration()),
      uid_(geteuid()),
      gid_(getegid()),
      controls_(manager) {}

KvcacheFs::~KvcacheFs() {
  poller_.Stop();
  for (FileHandle* handle : open_files_) {
    if (handle->quota_held) pin_quota_.Release(handle->pool, handle->quota_uid);
    delete handle;  // an entry's view unpins it
  }
  for (DirHandle* handle : open_dirs_) delete handle;
}

namespace {

// What a node of a pool whose segment has bits `pool` shows: entries are never
// executable; directories are searchable where readable; what derives from entries
// (by-prefix) and the text files are read-only; control files are writable by the
// owner alone (they make the daemon read and write snapshot files).
mode_t PoolPerms(const Node& node, mode_t pool) {
  mode_t read = pool & 0444;
  switch (node.kind) {
    case NodeKind::kPoolDir:
      return (pool & 0666) | (read >> 2);
    case NodeKind::kByPrefixDir:
    case NodeKind::kPrefixDir:
    case NodeKind::kChunksDir:
      return read | (read >> 2);
    case NodeKind::kChunkFile:
      return read;
    case NodeKind::kSeqFile:
    case NodeKind::kScratchFile:
      return pool & 0666;
    case NodeKind::kPoolFile:
      // Asking for a match only reads the pool: whoever may read it may ask.
      if (node.pool_file == PoolFile::kMatch) return read | (read >> 1);
      return IsControlFile(node.pool_file) ? read | (pool & 0200) : read;
    case NodeKind::kPrefixLink:
      return 0777;
    default:
      return 0;
  }
}

}  // namespace

PoolOwner KvcacheFs::OwnerOf(const std::string& pool) {
  Result<PoolOwner> owner = manager_.Owner(pool);
  if (owner.ok()) return *owner;
  return PoolOwner{uid_, gid_, 0600};
}

bool KvcacheFs::IsPrivileged(const Caller& caller, const PoolOwner& owner) const {
  return caller.uid == 0 || caller.uid == uid_ || caller.uid == owner.uid;
}

void KvcacheFs::BaseAttr(Ino ino, mode_t mode, struct stat* attr, const PoolOwner* owner) {
  *attr = {};
  attr->st_ino = ino;
  attr->st_mode = mode;
  attr->st_mtim = attr->st_ctim = attr->st_atim = MountTime(boot_generation_);
  attr->st_nlink = S_ISDIR(mode) ? 2 : 1;
  attr->st_uid = uid_;
  attr->st_gid = gid_;
  attr->st_blksize = kBlockSize;
  std::optional<Node> node = inodes_.Get(ino);
  if (node && !node->pool.empty()) {
    PoolOwner pool_owner = owner != nullptr ? *owner : OwnerOf(node->pool);
    attr->st_uid = pool_owner.uid;
    attr->st_gid = pool_owner.gid;
    attr->st_mode = (mode & S_IFMT) | PoolPerms(*node, pool_owner.mode);
  }
}

void KvcacheFs::DirAttr(Ino ino, mode_t perms, struct stat* attr, const PoolOwner* owner) {
  BaseAttr(ino, S_IFDIR | perms, attr, owner);
}

void KvcacheFs::FileAttr(Ino ino, mode_t perms, uint64_t size, struct stat* attr,
                         const PoolOwner* owner) {
  BaseAttr(ino, S_IFREG | perms, attr, owner);
  attr->st_size = static_cast<off_t>(size);
  attr->st_blocks = static_cast<blkcnt_t>((size + 511) / 512);
}

void KvcacheFs::SeqAttr(Ino ino, const EntryInfo& info, struct stat* attr) {
  FileAttr(ino, 0644, info.size_bytes, attr);
  attr->st_mtim = ToTimespec(info.created);
  attr->st_ctim = attr->st_mtim;
  attr->st_atim = ToTimespec(info.last_accessed > 0 ? info.last_accessed : info.created);
}

void KvcacheFs::SeqAttr(Ino ino, const SeqAttrs& attrs, const PoolOwner& owner,
                        struct stat* attr) {
  // What BaseAttr, FileAttr and SeqAttr above give a sequence file, without asking the
  // inode table and the segment's owner again for each file of a listing.
  *attr = {};
  attr->st_ino = ino;
  attr->st_mode = S_IFREG | (owner.mode & 0666);  // PoolPerms of a kSeqFile
  attr->st_nlink = 1;
  attr->st_uid = owner.uid;
  attr->st_gid = owner.gid;
  attr->st_blksize = kBlockSize;
  attr->st_size = static_cast<off_t>(attrs.size);
  attr->st_blocks = static_cast<blkcnt_t>((attrs.size + 511) / 512);
  attr->st_mtim = ToTimespec(attrs.created);
  attr->st_ctim = attr->st_mtim;
  attr->st_atim = ToTimespec(attrs.last_accessed > 0 ? attrs.last_accessed : attrs.created);
}

void KvcacheFs::FillEntry(Ino ino, const struct stat& attr, fuse_entry_param* entry,
                          double timeout) {
  *entry = {};
  entry->ino = ino;
  entry->generation = boot_generation_;
  entry->attr = attr;
  entry->attr_timeout = timeout;
  entry->entry_timeout = timeout;
}

void KvcacheFs::NotePool(const std::string& pool) {
  MutexLock lock(&pools_mu_);
  known_pools_.insert(pool);
}

int KvcacheFs::PoolExists(const std::string& pool, std::optional<PoolOwner>* owner) {
  // The catalog alone says which pools exist: a name that is only a file in /dev/shm
  // (planted there by anyone) is never mapped. Once it has named the pool, the segment
  // mapped for it answers for it (one lstat instead of a catalog query, on every create
  // and every stat of the pool's directory): a pool destroyed, removed or made anew
  // since has not that segment any more, and the catalog is asked again.
  bool known;
  {
    MutexLock lock(&pools_mu_);
    known = known_pools_.count(pool) > 0;
  }
  if (known) {
    if (std::optional<PoolOwner> mapped = manager_.CheckMapping(pool)) {
      if (owner != nullptr) *owner = mapped;
      return 0;
    }
  }
  if (owner != nullptr) owner->reset();
  Result<std::vector<std::string>> pools = manager_.ListPools();
  if (!pools.ok()) return ToErrno(pools.status());
  if (!std::binary_search(pools->begin(), pools->end(), pool)) return ENOENT;
  NotePool(pool);
  return 0;
}

// ---------------------------------------------------------------- lookup

int KvcacheFs::DoLookup(const Caller& caller, Ino parent, std::string_view name,
                        fuse_entry_param* entry) {
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  switch (dir->kind) {
    case NodeKind::kRoot:
      return LookupInRoot(name, entry);
    case NodeKind::kPoolDir:
      return LookupInPool(caller, dir->pool, name, entry);
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
      FillEntry(ino, attr, entry, 0);
      return 0;
    }
    case NodeKind::kChunksDir:
      return LookupChunk(dir->pool, name, entry);
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
      FillEntry(ino, attr, entry, 0);
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
  FillEntry(ino, attr, entry, options_.dir_timeout);
  return 0;
}

int KvcacheFs::LookupInPool(const Caller& caller, const std::string& pool,
                            std::string_view name, fuse_entry_param* entry) {
  // Every path into a pool passes here (names of entries are never cached), so a
  // segment removed and made anew behind our back is noticed before it is used. The
  // same lstat gives the owner a sequence file shows.
  std::optional<PoolOwner> owner = manager_.CheckMapping(pool);
  struct stat attr;
  if (name == kByPrefixName || name == kChunksName) {
    Ino ino = inodes_.Acquire(PoolNode(
        name == kByPrefixName ? NodeKind::kByPrefixDir : NodeKind::kChunksDir, pool));
    DirAttr(ino, 0555, &attr);
    FillEntry(ino, attr, entry, options_.dir_timeout);
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
  if (ParseScratchName(name).kind != ScratchKind::kNone) return LookupScratch(pool, name, entry);
  SeqName seq = ParseSeqName(name);
  if (seq.error != 0) return seq.error;
  return LookupSeq(pool, seq.seq, caller.pid, entry, owner);
}

int KvcacheFs::LookupSeq(const std::string& pool, uint64_t seq, pid_t caller_pid,
                         fuse_entry_param* entry, const std::optional<PoolOwner>& owner) {
  // A writer replacing the id gets a new inode through CREATE (see OpenIntent::kReplace);
  // the published version's inode, which readers share, is never truncated.
  OpenIntent intent = OpenIntentOf(caller_pid);
  if (intent == OpenIntent::kReplace) return ENOENT;
  Result<EntryInfo> info = manager_.Stat(pool, seq);
  if (!info.ok()) {
    if (info.status().code() == Code::kNotFound && intent == OpenIntent::kRead) {
      // The kernel never sends an OPEN for a name its lookup refused, so a read of a
      // missing id is only ever seen here: count the miss the open would have
      // counted. A stat or `test -e` is not a read and counts nothing.
      Result<EntryView> view = manager_.View(pool, seq);
      if (view.ok()) info = view->info();
    }
    if (!info.ok()) return ToErrno(info.status());
  }
  Ino ino = inodes_.AcquireSeq(pool, seq, info->generation, nullptr, AttrsOf(*info));
  struct stat attr;
  if (owner) {
    SeqAttr(ino, AttrsOf(*info), *owner, &attr);
  } else {
    SeqAttr(ino, *info, &attr);
  }
  FillEntry(ino, attr, entry, options_.seq_name_timeout);
  entry->attr_timeout = options_.seq_attr_timeout;
  return 0;
}

void KvcacheFs::DoForget(Ino ino, uint64_t nlookup) {
  if (!inodes_.Forget(ino, nlookup)) return;
  // The kernel forgets the inodes of a large listing in bulk when it reclaims them,
  // from other threads (malloc arenas) than the ones that made them; trimmed now and
  // then, the next listing's inodes do not stack on top of the freed ones.
  if (forgotten_since_trim_.fetch_add(1, std::memory_order_relaxed) + 1 >= kTrimAfterForgets) {
    forgotten_since_trim_.store(0, std::memory_order_relaxed);
    malloc_trim(0);
  }
}

// ---------------------------------------------------------------- attributes

int KvcacheFs::DoGetattr(Ino ino, const FileHandle* handle, struct stat* attr,
                         double* timeout) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  *timeout = 0;
  switch (node->kind) {
    case NodeKind::kRoot:
      *timeout = options_.dir_timeout;
      DirAttr(ino, 0755, attr);
      return 0;
    case NodeKind::kPoolDir: {
      std::optional<PoolOwner> owner;
      if (int err = PoolExists(node->pool, &owner); err != 0) return err;
      *timeout = options_.dir_timeout;
      DirAttr(ino, 0755, attr, owner ? &*owner : nullptr);
      return 0;
    }
    case NodeKind::kByPrefixDir:
    case NodeKind::kChunksDir:
      *timeout = options_.dir_timeout;
      DirAttr(ino, 0555, attr);
      return 0;
    case NodeKind::kChunkFile:
      return GetChunkAttr(ino, *node, handle, attr);
    case NodeKind::kPrefixDir:
      DirAttr(ino, 0555, attr);
      return 0;
    case NodeKind::kPrefixLink:
      FileAttr(ino, 0777, ("../../" + std::to_string(node->seq)).size(), attr);
      attr->st_mode = S_IFLNK | 0777;
      return 0;
    case NodeKind::kRootFile:
      FileAttr(ino, 0444, 0, attr);
      return 0;
    case NodeKind::kPoolFile:
      FileAttr(ino, IsControlFile(node->pool_file) ? 0644 : 0444, 0, attr);
      return 0;
    case NodeKind::kSeqFile:
    case NodeKind::kScratchFile:
      break;
  }
  // An open file's attributes are its own version's, so the kernel's size for it never
  // changes under its readers.
  if (handle != nullptr && handle->kind == FileHandle::Kind::kEntry) {
    SeqAttr(ino, handle->view.info(), attr);
    *timeout = options_.seq_attr_timeout;
    return 0;
  }
  std::shared_ptr<WriteState> write;
  if (handle != nullptr && handle->write) {
    write = handle->write;
  } else if (node->kind == NodeKind::kScratchFile || node->generation == 0) {
    write = FindWrite(ino);
    if (!write) return ESTALE;
  }
  if (write) {
    *timeout = 0;
    MutexLock lock(&write->mu);
    FileAttr(ino, 0644, write->staging.size(), attr);
    return 0;
  }
  Result<EntryInfo> info = manager_.Stat(node->pool, node->seq);
  if (info.ok() && info->generation == node->generation) {
    SeqAttr(ino, *info, attr);
    *timeout = options_.seq_attr_timeout;
    return 0;
  }
  if (!info.ok() && info.status().code() != Code::kNotFound) return ToErrno(info.status());
  // Replaced or removed: this inode still stands for the version its open files read.
  EntryInfo old;
  old.size_bytes = node->attrs.size;
  old.created = node->attrs.created;
  old.last_accessed = node->attrs.last_accessed;
  SeqAttr(ino, old, attr);
  *timeout = options_.seq_attr_timeout;
  return 0;
}

int KvcacheFs::DoSetattr(Ino ino, const struct stat& attr, int to_set, FileHandle* handle,
                         struct stat* out, double* timeout) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) return EPERM;
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (node->kind == NodeKind::kSeqFile || node->kind == NodeKind::kScratchFile) {
      // Without a handle, only a file nobody else can see: the writer's own.
      std::shared_ptr<WriteState> write;
      if (handle != nullptr && handle->write) {
        write = handle->write;
      } else if (node->kind == NodeKind::kScratchFile || node->generation == 0) {
        write = FindWrite(ino);
      }
      // A published entry is write-once; only a file being written can be resized.
      if (!write) return EPERM;
      ChangeLock lock(*write);
      uint64_t size = static_cast<uint64_t>(attr.st_size);
      // Checked before any memory is touched: `truncate -s 1T` costs nothing.
      if (attr.st_size < 0) return EINVAL;
      if (write->scratch != ScratchKind::kTokens) {
        if (int err = CheckRoom(*write, size); err != 0) return err;
      } else if (size > write->limit) {
        return EFBIG;
      }
      if (!write->staging.Resize(size)) return ENOMEM;
      write->ShrankTo(size);
      write->dirty = true;
    } else if (!(node->kind == NodeKind::kPoolFile &&
                 (IsControlFile(node->pool_file) || node->pool_file == PoolFile::kMatch))) {
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

// ---------------------------------------------------------------- pools behind our back

void KvcacheFs::PollPools() {
  Result<std::vector<std::string>> pools = manager_.ListPools();
  if (!pools.ok()) return;
  std::set<std::string> now(pools->begin(), pools->end());
  std::vector<std::string> gone;
  {
    MutexLock lock(&pools_mu_);
    for (const std::string& p : known_pools_) {
      if (!now.count(p)) gone.push_back(p);
    }
    for (const std::string& p : gone) known_pools_.erase(p);
  }
  // Segments destroyed, removed or replaced: unmapped (once no open file pins them),
  // and mapped afresh on next use.
  for (const std::string& p : now) manager_.ForgetIfReplaced(p);
  for (const std::string& p : gone) {
    manager_.ForgetIfReplaced(p);
    inodes_.DropPool(p);
  }
}

}  // namespace kvcache::fs
