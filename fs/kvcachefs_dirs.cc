// KvcacheFs's directories: pools as directories (mkdir, rmdir, unlink of entries) and
// listings with stable cookies.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "errno_map.h"
#include "kvcache/prefix.h"
#include "kvcachefs.h"
#include "kvcachefs_internal.h"

namespace kvcache::fs {

namespace {
// Listings of at least this many ids give their memory back to the system when done.
constexpr size_t kTrimAfterListing = 4096;
}  // namespace

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
  FillEntry(ino, attr, entry, options_.dir_timeout);
  return 0;
}

int KvcacheFs::DoRmdir(Ino parent, std::string_view name) {
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  if (dir->kind == NodeKind::kPoolDir) {
    if (name == kByPrefixName || name == kChunksName) return EPERM;
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
  MutexLock lock(&pools_mu_);
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
  if (name == kByPrefixName || name == kChunksName) return EISDIR;
  if (ParsePoolFile(name)) return EPERM;
  if (ParseScratchName(name).kind != ScratchKind::kNone) return UnlinkScratch(dir->pool, name);
  SeqName seq = ParseSeqName(name);
  if (seq.error != 0) return seq.error;
  if (Status s = manager_.Remove(dir->pool, seq.seq); !s.ok()) return ToErrno(s);
  inodes_.Unbind(dir->pool, seq.seq);
  return 0;
}

// ---------------------------------------------------------------- directories

int KvcacheFs::ListDir(Ino ino, const Node& node, DirHandle* dir) {
  std::vector<DirEntry>* out = &dir->entries;
  out->clear();
  // shrink_to_fit: a listing done again must not keep the memory of a larger one.
  dir->seqs.clear();
  dir->seqs.shrink_to_fit();
  auto add_dot = [&](const char* name) {
    DirEntry d;
    d.name = name;
    d.self = ino;
    out->push_back(std::move(d));
  };
  auto add = [&](std::string name, Node n) {
    DirEntry d;
    d.name = std::move(name);
    d.node = std::move(n);
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
        MutexLock lock(&pools_mu_);
        known_pools_.insert(pools->begin(), pools->end());
      }
      for (const std::string& p : *pools) add(p, PoolNode(NodeKind::kPoolDir, p));
      return 0;
    }
    case NodeKind::kPoolDir: {
      manager_.ForgetIfReplaced(node.pool);
      if (int err = PoolExists(node.pool); err != 0) return err;
      add(std::string(kByPrefixName), PoolNode(NodeKind::kByPrefixDir, node.pool));
      add(std::string(kChunksName), PoolNode(NodeKind::kChunksDir, node.pool));
      for (PoolFile f : kAllPoolFiles) {
        Node n = PoolNode(NodeKind::kPoolFile, node.pool);
        n.pool_file = f;
        add(std::string(PoolFileName(f)), n);
      }
      // A pool in the catalog without a live segment lists only its fixed names.
      Result<std::vector<EntryInfo>> entries = manager_.Entries(node.pool);
      if (!entries.ok()) return 0;
      dir->pool = node.pool;
      dir->owner = OwnerOf(node.pool);
      dir->seqs.reserve(entries->size());
      for (const EntryInfo& e : *entries) {
        dir->seqs.push_back(SeqRow{e.sequence_id, e.generation, AttrsOf(e)});
      }
      std::sort(dir->seqs.begin(), dir->seqs.end(),
                [](const SeqRow& a, const SeqRow& b) { return a.seq < b.seq; });
      // Ids deleted behind our back lose their inode binding.
      for (const auto& [seq_ino, seq_node] : inodes_.SeqNodes(node.pool)) {
        auto it = std::lower_bound(
            dir->seqs.begin(), dir->seqs.end(), seq_node.seq,
            [](const SeqRow& row, uint64_t seq) { return row.seq < seq; });
        if (it == dir->seqs.end() || it->seq != seq_node.seq) {
          inodes_.Unbind(node.pool, seq_node.seq);
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
    case NodeKind::kChunksDir:
      return ListChunks(node.pool, out);
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
  if (int err = ListDir(ino, *node, dir.get()); err != 0) return err;
  *handle = dir.release();
  MutexLock lock(&handles_mu_);
  open_dirs_.insert(*handle);
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
    case NodeKind::kRootFile:
    case NodeKind::kPoolFile: {
      Ino ino = inodes_.Acquire(n);
      bool control = n.kind == NodeKind::kPoolFile && IsControlFile(n.pool_file);
      FileAttr(ino, control ? 0644 : 0444, 0, &attr);
      FillEntry(ino, attr, entry, 0);
      return 0;
    }
    case NodeKind::kChunkFile: {
      Ino ino = inodes_.Acquire(n);
      ChunkAttr(ino, d.chunk, &attr);
      FillEntry(ino, attr, entry, 0);
      return 0;
    }
    case NodeKind::kPrefixLink: {
      Ino ino = inodes_.Acquire(n);
      FileAttr(ino, 0777, ("../../" + std::to_string(n.seq)).size(), &attr);
      attr.st_mode = S_IFLNK | 0777;
      FillEntry(ino, attr, entry, 0);
      return 0;
    }
    default: {
      Ino ino = inodes_.Acquire(n);
      DirAttr(ino, n.kind == NodeKind::kPoolDir ? 0755 : 0555, &attr);
      FillEntry(ino, attr, entry, n.kind == NodeKind::kPrefixDir ? 0 : options_.dir_timeout);
      return 0;
    }
  }
}

void KvcacheFs::SeqEntryFor(const DirHandle& dir, const SeqRow& row, fuse_entry_param* entry) {
  Ino ino = inodes_.AcquireSeq(dir.pool, row.seq, row.generation, nullptr, row.attrs);
  struct stat attr;
  SeqAttr(ino, row.attrs, dir.owner, &attr);
  // The name is kept as long as a lookup's (FsOptions::seq_name_timeout; by default
  // never): then an entry removed or replaced by another process right after this
  // listing is gone or new at the next stat, and `ls -l` costs a LOOKUP per file, but
  // no GETATTR.
  FillEntry(ino, attr, entry, options_.seq_name_timeout);
  entry->attr_timeout = options_.seq_attr_timeout;
}

int KvcacheFs::DoReaddir(Ino ino, DirHandle* handle, off_t offset, bool plus,
                         const FillFn& fill) {
  if (offset == 0 && !handle->fresh) {
    // rewinddir: list afresh.
    std::optional<Node> node = inodes_.Get(ino);
    if (!node) return ESTALE;
    if (int err = ListDir(ino, *node, handle); err != 0) return err;
  }
  handle->fresh = false;
  if (offset < 0) return EINVAL;
  const size_t fixed = handle->entries.size();
  const size_t total = fixed + handle->seqs.size();
  std::string seq_name;
  for (size_t i = static_cast<size_t>(offset); i < total; ++i) {
    const off_t cookie = static_cast<off_t>(i + 1);
    fuse_entry_param entry{};
    bool counted = false;
    if (i >= fixed) {
      const SeqRow& row = handle->seqs[i - fixed];
      if (plus) {
        SeqEntryFor(*handle, row, &entry);
        counted = true;
      } else {
        entry.attr.st_ino = static_cast<ino_t>(cookie);
        entry.attr.st_mode = S_IFREG;
      }
      seq_name = std::to_string(row.seq);
      if (!fill(seq_name, entry, cookie)) {
        if (counted) inodes_.Unref(entry.ino);
        break;
      }
      continue;
    }
    const DirEntry& d = handle->entries[i];
    if (plus) {
      if (int err = EntryFor(d, &entry); err != 0) return err;
      counted = d.self == 0;
    } else {
      entry.attr.st_ino = d.self != 0 ? d.self : static_cast<ino_t>(cookie);
      entry.attr.st_mode = d.node.kind == NodeKind::kSeqFile ||
                                   d.node.kind == NodeKind::kRootFile ||
                                   d.node.kind == NodeKind::kPoolFile ||
                                   d.node.kind == NodeKind::kChunkFile
                               ? S_IFREG
                           : d.node.kind == NodeKind::kPrefixLink ? S_IFLNK
                                                                   : S_IFDIR;
    }
    if (!fill(d.name, entry, cookie)) {
      if (counted) inodes_.Unref(entry.ino);
      break;
    }
  }
  return 0;
}

void KvcacheFs::DoReleasedir(DirHandle* handle) {
  {
    MutexLock lock(&handles_mu_);
    open_dirs_.erase(handle);
  }
  bool large = handle->seqs.size() >= kTrimAfterListing;
  delete handle;
  // A large listing's memory (its rows, and the entry infos it was made from) is freed
  // in whichever malloc arena the listing threads used; without a trim each arena
  // keeps its high-water mark, and the daemon holds several copies of its largest
  // listing for good.
  if (large) malloc_trim(0);
}

}  // namespace kvcache::fs
