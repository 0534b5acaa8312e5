// Opening, reading, writing and publishing files of the mounted tree.
//
// A file written through the mount is staged in the daemon (WriteState) and published
// whole, only by its writer: the process that opened it for writing closing it, fsync,
// the last close of its open file, or a rename onto an id. Other opens never see the
// staged bytes: a new id's file being written is not there for them (ENOENT), and a
// replaced id serves its published version until the replacement is published. Space is
// checked at every write, so a save that cannot fit fails at the write() that crosses
// the limit instead of at a close nobody looks at.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "errno_map.h"
#include "kvcachefs.h"
#include "kvcachefs_internal.h"

namespace kvcache::fs {
namespace {

bool Writing(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

std::span<const std::byte> Slice(std::span<const std::byte> all, size_t size, off_t offset) {
  if (offset < 0 || static_cast<uint64_t>(offset) >= all.size()) return {};
  return all.subspan(static_cast<size_t>(offset),
                     std::min(size, all.size() - static_cast<size_t>(offset)));
}

std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

namespace {

// Reads /proc/<tid>/<file> into buf (NUL-terminated); its length, or -1.
ssize_t ReadProc(pid_t tid, const char* file, char* buf, size_t size) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/%s", static_cast<int>(tid), file);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = ::read(fd, buf, size - 1);
  ::close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return n;
}

}  // namespace

pid_t ThreadGroupOf(pid_t tid) {
  if (tid <= 0) return tid;
  // A thread-group leader is its own group, and pidfd_open accepts only leaders: one
  // system call answers for the main thread of a process (most writers), where
  // /proc/<tid>/status costs the rendering of the whole file.
  int fd = static_cast<int>(syscall(SYS_pidfd_open, tid, 0));
  if (fd >= 0) {
    ::close(fd);
    return tid;
  }
  char buf[4096];
  if (ReadProc(tid, "status", buf, sizeof(buf)) < 0) return tid;
  const char* line = std::strstr(buf, "\nTgid:");
  if (line == nullptr) return tid;
  long tgid = std::strtol(line + 6, nullptr, 10);
  return tgid > 0 ? static_cast<pid_t>(tgid) : tid;
}

bool DyingBySignal(pid_t tid) {
  if (tid <= 0) return false;
  char buf[1024];
  if (ReadProc(tid, "stat", buf, sizeof(buf)) < 0) return false;
  const char* paren = std::strrchr(buf, ')');
  if (paren == nullptr) return false;
  // Fields after the command: state is field 3, flags 9, exit_code 52 (proc(5)).
  unsigned long flags = 0;
  long exit_code = 0;
  int field = 2;
  for (const char* p = paren + 1; *p != '\0' && field < 52;) {
    while (*p == ' ') ++p;
    if (*p == '\0' || *p == '\n') break;
    ++field;
    char* end = nullptr;
    if (field == 9) flags = std::strtoul(p, &end, 10);
    if (field == 52) exit_code = std::strtol(p, &end, 10);
    while (*p != ' ' && *p != '\0' && *p != '\n') ++p;
  }
  if (field < 52) return false;
  constexpr unsigned long kExiting = 0x4;  // PF_EXITING
  return (flags & kExiting) != 0 && (exit_code & 0x7f) != 0;
}

// ---------------------------------------------------------------- writers

std::shared_ptr<WriteState> KvcacheFs::FindWrite(Ino ino) {
  MutexLock lock(&writes_mu_);
  auto it = writes_.find(ino);
  return it == writes_.end() ? nullptr : it->second;
}

std::shared_ptr<WriteState> KvcacheFs::FindWriter(const std::string& pool, uint64_t seq,
                                                  pid_t owner) {
  // Lock order: a state's mu, then writes_mu_; never the other way.
  std::vector<std::shared_ptr<WriteState>> candidates;
  {
    MutexLock lock(&writes_mu_);
    for (auto& [ino, state] : writes_) {
      if (state->pool == pool && (owner == 0 || state->owner == owner)) {
        candidates.push_back(state);
      }
    }
  }
  for (std::shared_ptr<WriteState>& state : candidates) {
    MutexLock state_lock(&state->mu);
    if (state->scratch == ScratchKind::kNone && state->seq == seq) return state;
  }
  return nullptr;
}

Result<std::shared_ptr<WriteState>> KvcacheFs::NewWrite(Ino ino, const std::string& pool,
                                                        uint64_t seq, ScratchKind scratch,
                                                        pid_t owner) {
  // The free bytes are a lower bound of the room: CheckRoom looks at the pins (a scan
  // of every slot) only for a file that outgrows them.
  KVC_ASSIGN_OR_RETURN(PoolSpace space, manager_.Space(pool));
  auto state = std::make_shared<WriteState>();
  state->pool = pool;
  state->ino = ino;
  state->owner = owner;
  state->ledger = staging_ledger_;
  {
    MutexLock state_lock(&state->mu);  // not shared yet: never contended
    state->seq = seq;
    state->scratch = scratch;
    state->limit = space.size;
    state->room = space.free;
  }
  MutexLock lock(&writes_mu_);
  state->handles = 1;
  writes_.emplace(ino, state);
  return state;
}

void KvcacheFs::DropWrite(const std::shared_ptr<WriteState>& state) {
  MutexLock lock(&writes_mu_);
  auto [begin, end] = writes_.equal_range(state->ino);
  for (auto it = begin; it != end; ++it) {
    if (it->second == state) {
      writes_.erase(it);
      return;
    }
  }
}

int KvcacheFs::CheckRoom(WriteState& state, uint64_t end) {
  if (end > state.limit) return EFBIG;
  if (end > state.room) {
    // Pins come and go: look again before refusing.
    Result<PoolStats> stats = manager_.Stats(state.pool);
    if (!stats.ok()) return ToErrno(stats.status());
    state.room = stats->size > stats->pinned ? stats->size - stats->pinned : 0;
    if (end > state.room) return ENOSPC;
  }
  // With the other files being written into the pool, it must still fit the pool.
  if (end > state.charged) {
    if (!state.ledger->Charge(state.pool, end - state.charged, state.limit)) return ENOSPC;
    state.charged = end;
  }
  return 0;
}

int KvcacheFs::Publish(WriteState& state) {
  // Another handle of the same file may be publishing it: its result counts for us.
  state.WaitForPublish();
  if (state.error != 0) return state.error;
  if (!state.dirty) return 0;
  state.publishing = true;
  std::string pool = state.pool;
  uint64_t seq = state.seq;
  std::span<const std::byte> bytes = state.staging.bytes();
  uint64_t token_count = state.token_count;
  PutOptions options = state.options;
  // The caller's lock (a MutexLock or ChangeLock) still owns mu and finds it held again
  // on return.
  state.mu.Unlock();
  std::optional<std::vector<uint32_t>> companion = CompanionTokens(pool, seq);
  if (companion) options.prefix_tokens = std::move(*companion);
  manager_.ForgetIfReplaced(pool);  // never publish into an unlinked segment
  Status s = manager_.Put(pool, seq, bytes, token_count, options);
  if (s.ok()) {
    if (companion) DropCompanion(pool, seq);
    std::optional<Node> node = inodes_.Get(state.ino);
    Result<EntryInfo> info = manager_.Stat(pool, seq);
    if (!info.ok()) {
      inodes_.Unbind(pool, seq);
    } else if (node && node->kind == NodeKind::kSeqFile && node->generation != 0) {
      // Replaced in place: the inode keeps standing for the version its readers
      // opened; the next lookup of the id (names are never cached) makes one for the
      // new bytes.
      inodes_.Published(state.ino, info->generation);
    } else if (node && node->kind == NodeKind::kSeqFile) {
      inodes_.Published(state.ino, info->generation, AttrsOf(*info));
    }
  }
  state.mu.Lock();
  if (s.ok()) state.dirty = false;
  state.publishing = false;
  state.publish_done.SignalAll();
  return ToErrno(s);
}

// ---------------------------------------------------------------- opening

int KvcacheFs::OpenSeq(const Caller& caller, Ino ino, const Node& node, int flags,
                       OpenResult* out, const std::optional<PoolOwner>& owner) {
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  if (node.generation == 0) {
    // Being created by its writer: nobody else sees it. ESTALE makes the kernel look
    // the name up again, which finds the published version or nothing.
    return ESTALE;
  }
  if (Writing(flags)) {
    // Published bytes are write-once: only a whole replacement may be staged.
    if (!(flags & O_TRUNC)) return EPERM;
    // A replacement through a name the kernel kept (FsOptions::seq_name_timeout) opens
    // the published inode, which the kernel would then truncate under its readers.
    // ESTALE makes it look the name up again, which a replacement's lookup answers
    // with ENOENT, so that it creates a new inode, as without kept names.
    if (options_.seq_name_timeout > 0 && OpenIntentOf(caller.pid) == OpenIntent::kReplace) {
      return ESTALE;
    }
    Result<std::shared_ptr<WriteState>> write =
        NewWrite(ino, node.pool, node.seq, ScratchKind::kNone, ThreadGroupOf(caller.pid));
    if (!write.ok()) return ToErrno(write.status());
    handle->kind = FileHandle::Kind::kWrite;
    handle->write = std::move(write).value();
    out->direct_io = true;
    out->handle = handle.release();
    return 0;
  }
  Result<EntryInfo> info = manager_.Stat(node.pool, node.seq);
  if (!info.ok()) {
    if (info.status().code() != Code::kNotFound) return ToErrno(info.status());
    // Counts the miss; a put racing in is served if it wins.
    Result<EntryView> view = manager_.View(node.pool, node.seq);
    if (!view.ok()) {
      inodes_.Unbind(node.pool, node.seq);
      return ToErrno(view.status());
    }
    info = view->info();
  }
  if (info->generation != node.generation) {
    // New bytes under this id: the kernel must look the name up again and open the
    // new inode; this one's pages belong to the old bytes.
    return ESTALE;
  }
  if (!IsPrivileged(caller, owner ? *owner : OwnerOf(node.pool))) {
    Result<PoolConfig> config = manager_.GetConfig(node.pool);
    if (!config.ok()) return ToErrno(config.status());
    if (!pin_quota_.TryAcquire(node.pool, caller.uid, config->max_sequences)) return EMFILE;
    handle->quota_held = true;
    handle->quota_uid = caller.uid;
    handle->pool = node.pool;
  }
  auto unquota = [&] {
    if (handle->quota_held) pin_quota_.Release(node.pool, handle->quota_uid);
    handle->quota_held = false;
  };
  Result<EntryView> view = manager_.View(node.pool, node.seq);
  if (!view.ok()) {
    unquota();
    return ToErrno(view.status());
  }
  if (view->info().generation != node.generation) {
    unquota();
    return ESTALE;
  }
  handle->kind = FileHandle::Kind::kEntry;
  handle->view = std::move(view).value();
  out->keep_cache = inodes_.NoteOpen(ino, node.generation);
  out->handle = handle.release();
  return 0;
}

int KvcacheFs::DoOpen(const Caller& caller, Ino ino, int flags, OpenResult* out) {
  int err = OpenFile(caller, ino, flags, out);
  if (err == 0) {
    MutexLock lock(&handles_mu_);
    open_files_.insert(out->handle);
  }
  return err;
}

int KvcacheFs::DoCreate(const Caller& caller, Ino parent, std::string_view name, int flags,
                        fuse_entry_param* entry, OpenResult* out) {
  int err = CreateFile(caller, parent, name, flags, entry, out);
  if (err == 0) {
    MutexLock lock(&handles_mu_);
    open_files_.insert(out->handle);
  }
  return err;
}

int KvcacheFs::OpenFile(const Caller& caller, Ino ino, int flags, OpenResult* out) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  // A segment replaced behind our back is forgotten before it is used; the same lstat
  // gives the owner an open checks the caller against.
  std::optional<PoolOwner> owner;
  if (!node->pool.empty()) owner = manager_.CheckMapping(node->pool);
  switch (node->kind) {
    case NodeKind::kSeqFile:
      return OpenSeq(caller, ino, *node, flags, out, owner);
    case NodeKind::kScratchFile: {
      std::shared_ptr<WriteState> state = FindWrite(ino);
      if (!state) return ESTALE;
      return OpenScratch(ino, state, flags, out);
    }
    case NodeKind::kRootFile: {
      if (Writing(flags)) return EACCES;
      Result<std::string> text = RenderRootFile(manager_, node->root_file);
      if (!text.ok()) return ToErrno(text.status());
      handle->text = std::move(text).value();
      break;
    }
    case NodeKind::kChunkFile:
      return OpenChunk(caller, ino, *node, flags, out);
    case NodeKind::kPoolFile: {
      if (node->pool_file == PoolFile::kMatch) return OpenMatch(caller, *node, flags, out);
      if (IsControlFile(node->pool_file)) {
        if (int err = PoolExists(node->pool); err != 0) return err;
        handle->kind = FileHandle::Kind::kControl;
        handle->trusted = caller.uid == 0 || caller.uid == uid_;
        handle->pool = node->pool;
        handle->file = node->pool_file;
        break;
      }
      if (Writing(flags)) return EACCES;
      Result<std::string> text = RenderPoolFile(manager_, node->pool, node->pool_file);
      if (!text.ok()) return ToErrno(text.status());
      handle->text = std::move(text).value();
      break;
    }
    case NodeKind::kPrefixLink:
      return ELOOP;
    default:
      return EISDIR;
  }
  // Rendered text and control results change on every open: never cache them.
  out->direct_io = true;
  out->handle = handle.release();
  return 0;
}

int KvcacheFs::CreateFile(const Caller& caller, Ino parent, std::string_view name, int flags,
                          fuse_entry_param* entry, OpenResult* out) {
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  if (dir->kind != NodeKind::kPoolDir) return dir->kind == NodeKind::kRoot ? EPERM : EACCES;
  if (name == kByPrefixName || name == kChunksName || ParsePoolFile(name)) return EEXIST;
  const std::string& pool = dir->pool;
  if (ScratchName scratch = ParseScratchName(name); scratch.kind != ScratchKind::kNone) {
    if (int err = PoolExists(pool); err != 0) return err;
    return CreateScratch(pool, name, scratch, flags, entry, out, caller.pid);
  }
  SeqName seq = ParseSeqName(name);
  if (seq.error != 0) return seq.error;
  std::optional<PoolOwner> owner;
  if (int err = PoolExists(pool, &owner); err != 0) return err;

  Result<EntryInfo> info = manager_.Stat(pool, seq.seq);
  if (!info.ok() && info.status().code() != Code::kNotFound) return ToErrno(info.status());
  if (info.ok()) {
    if (flags & O_EXCL) return EEXIST;
    if (!Writing(flags) || !(flags & O_TRUNC)) {
      // An existing entry opened with O_CREAT: an ordinary open of it.
      if (int err = LookupSeq(pool, seq.seq, /*caller_pid=*/0, entry); err != 0) return err;
      std::optional<Node> node = inodes_.Get(entry->ino);
      int err = node ? OpenSeq(caller, entry->ino, *node, flags, out) : ESTALE;
      if (err != 0) inodes_.Unref(entry->ino);
      return err;
    }
  }
  // A new inode, bound to the id only when published: until then the id's published
  // version (if any) is what everyone else finds.
  Ino ino = inodes_.CreatePending(pool, seq.seq);
  Result<std::shared_ptr<WriteState>> write =
      NewWrite(ino, pool, seq.seq, ScratchKind::kNone, ThreadGroupOf(caller.pid));
  if (!write.ok()) {
    inodes_.Unref(ino);
    return ToErrno(write.status());
  }
  ReplyCreated(ino, std::move(write).value(), entry, out, owner ? &*owner : nullptr);
  // Nobody but the writer reaches this inode until it is published (no lookup finds
  // it), and the kernel keeps the size of what the writer writes itself: attributes it
  // may trust spare the GETATTR that opening the new file (its permission check) sends
  // otherwise.
  entry->attr_timeout = options_.seq_attr_timeout;
  // With kept names (FsOptions::seq_name_timeout), the new name is kept as a lookup's
  // would be, so that the writer's next open, stat or unlink of it (a save and then a
  // `rm`) needs no LOOKUP. Another process that reaches the pending inode through the
  // kept name before the publish is refused with ESTALE (OpenSeq) and looks the name
  // up again, which finds the published version or nothing; so does everyone after a
  // publish that failed.
  entry->entry_timeout = options_.seq_name_timeout;
  return 0;
}

void KvcacheFs::ReplyCreated(Ino ino, std::shared_ptr<WriteState> write,
                             fuse_entry_param* entry, OpenResult* out, const PoolOwner* owner) {
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  handle->kind = FileHandle::Kind::kWrite;
  handle->write = std::move(write);
  struct stat attr;
  FileAttr(ino, 0644, 0, &attr, owner);
  FillEntry(ino, attr, entry, 0);
  out->direct_io = true;
  out->handle = handle.release();
}

// ---------------------------------------------------------------- reading and writing

int KvcacheFs::DoRead(FileHandle* handle, size_t size, off_t offset,
                      std::span<const std::byte>* out, std::vector<std::byte>* scratch) {
  switch (handle->kind) {
    case FileHandle::Kind::kEntry:
      *out = Slice(handle->view.data(), size, offset);
      return 0;
    case FileHandle::Kind::kText:
      *out = Slice(AsBytes(handle->text), size, offset);
      return 0;
    case FileHandle::Kind::kControl: {
      std::string text = controls_.LastResult(handle->pool, handle->file);
      std::span<const std::byte> part = Slice(AsBytes(text), size, offset);
      scratch->assign(part.begin(), part.end());
      *out = *scratch;
      return 0;
    }
    case FileHandle::Kind::kMatch:
      // A conversation: the offset means nothing (match_file.h).
      if (int err = ReadMatch(handle, size, scratch); err != 0) return err;
      *out = *scratch;
      return 0;
    case FileHandle::Kind::kWrite: {
      MutexLock lock(&handle->write->mu);
      std::span<const std::byte> part = Slice(handle->write->staging.bytes(), size, offset);
      scratch->assign(part.begin(), part.end());
      *out = *scratch;
      return 0;
    }
  }
  return EBADF;
}

int KvcacheFs::DoWrite(FileHandle* handle, off_t offset, std::span<const std::byte> data) {
  switch (handle->kind) {
    case FileHandle::Kind::kControl:
      return controls_.Run(handle->pool, handle->file,
                           std::string_view(reinterpret_cast<const char*>(data.data()),
                                            data.size()),
                           handle->trusted);
    case FileHandle::Kind::kMatch:
      return handle->match->Write(
          std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
    case FileHandle::Kind::kWrite: {
      if (offset < 0) return EINVAL;
      WriteState& write = *handle->write;
      ChangeLock lock(write);
      if (write.error != 0) return write.error;
      uint64_t end = static_cast<uint64_t>(offset) + data.size();
      if (write.scratch != ScratchKind::kTokens) {
        if (int err = CheckRoom(write, end); err != 0) {
          // What was written cannot become the entry: the file is never published.
          write.error = err;
          return err;
        }
      } else if (end > write.limit) {
        return EFBIG;
      }
      if (!write.staging.WriteAt(static_cast<uint64_t>(offset), data)) return ENOMEM;
      write.dirty = true;
      return 0;
    }
    default:
      return EBADF;
  }
}

int KvcacheFs::DoFlush(FileHandle* handle, pid_t pid) {
  if (handle->kind != FileHandle::Kind::kWrite) return 0;
  WriteState& write = *handle->write;
  ScratchKind scratch;
  {
    MutexLock lock(&write.mu);
    scratch = write.scratch;
  }
  if (scratch == ScratchKind::kTokens) return ApplyCompanion(handle->write);
  // A close by a process that inherited the descriptor: the writer is not done.
  if (pid != 0 && pid != write.owner && ThreadGroupOf(pid) != write.owner) return 0;
  MutexLock lock(&write.mu);
  if (write.scratch != ScratchKind::kNone) return write.error;
  // The writer killed mid-save (its descriptors closed by its death): what it staged
  // is partial and is never published.
  if (DyingBySignal(pid)) {
    write.error = EIO;
    return EIO;
  }
  write.closed_by_owner = true;
  // Published at the writer's close, not at release, which the kernel sends after
  // close() has returned: a reader right after close must find the entry.
  return Publish(write);
}

int KvcacheFs::DoFsync(FileHandle* handle) {
  if (handle->kind != FileHandle::Kind::kWrite) return 0;
  WriteState& write = *handle->write;
  MutexLock lock(&write.mu);
  if (write.scratch != ScratchKind::kNone) return write.error;
  write.closed_by_owner = true;
  return Publish(write);
}

int KvcacheFs::DoRelease(FileHandle* handle) {
  {
    MutexLock lock(&handles_mu_);
    open_files_.erase(handle);
  }
  int err = 0;
  if (handle->kind == FileHandle::Kind::kWrite) {
    std::shared_ptr<WriteState> write = handle->write;
    bool drop;
    {
      MutexLock lock(&write->mu);
      // The last close of the writer's open file: what a process that inherited the
      // descriptor wrote after the writer's close goes out too. A file its writer
      // never closed (the kernel dropping an open that a kill cut short) holds
      // nothing the writer meant to save: it is never published.
      if (write->scratch == ScratchKind::kNone && write->closed_by_owner) {
        err = Publish(*write);
      }
      // Whether it is (still) a scratch file is read under the same locks as the count:
      // a rename publishing it (under mu) either ran before, and it is dropped here, or
      // runs after, and finds no handle left and drops it itself.
      const bool scratch = write->scratch != ScratchKind::kNone;
      MutexLock map_lock(&writes_mu_);
      drop = --write->handles == 0 && !scratch;
    }
    // Scratch files stay until renamed or unlinked.
    if (drop) DropWrite(write);
  }
  if (handle->quota_held) pin_quota_.Release(handle->pool, handle->quota_uid);
  delete handle;
  return err;
}

}  // namespace kvcache::fs
