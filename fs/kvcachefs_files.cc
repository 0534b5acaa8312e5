// Opening, reading, writing and publishing files of the mounted tree.
#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "errno_map.h"
#include "kvcachefs.h"

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

std::shared_ptr<WriteState> KvcacheFs::FindWrite(Ino ino) {
  std::lock_guard lock(writes_mu_);
  auto it = writes_.find(ino);
  return it == writes_.end() ? nullptr : it->second;
}

std::shared_ptr<WriteState> KvcacheFs::OpenWrite(Ino ino, const std::string& pool, uint64_t seq,
                                                 const EntryInfo* replaced) {
  // Attributes of the entry being replaced carry over, as xattrs do across O_TRUNC.
  PutOptions carried;
  uint64_t tokens = 0;
  if (replaced != nullptr) {
    tokens = replaced->token_count;
    carried.priority = replaced->priority;
    carried.metadata = replaced->metadata;
    if (replaced->prefix_length > 0) {
      Result<EntryView> view = manager_.Pin(pool, seq);
      if (view.ok()) carried.prefix_tokens = view->prefix_tokens();
    }
  }
  std::lock_guard lock(writes_mu_);
  std::shared_ptr<WriteState>& state = writes_[ino];
  if (!state) {
    state = std::make_shared<WriteState>();
    state->pool = pool;
    state->seq = seq;
    state->ino = ino;
    state->token_count = tokens;
    state->options = std::move(carried);
  }
  state->handles++;
  return state;
}

int KvcacheFs::Publish(WriteState& state, std::unique_lock<std::mutex>& lock) {
  // Another handle of the same file may be publishing it: its result counts for us.
  state.publish_done.wait(lock, [&] { return !state.publishing; });
  if (!state.dirty) return 0;
  state.dirty = false;
  state.publishing = true;
  std::span<const std::byte> bytes = state.staging.bytes();
  uint64_t token_count = state.token_count;
  PutOptions options = state.options;
  lock.unlock();
  manager_.ForgetIfReplaced(state.pool);  // never publish into an unlinked segment
  Status s = manager_.Put(state.pool, state.seq, bytes, token_count, options);
  if (s.ok()) {
    Result<EntryInfo> info = manager_.Stat(state.pool, state.seq);
    if (info.ok()) {
      inodes_.Published(state.ino, info->generation);
    } else {
      inodes_.Unbind(state.pool, state.seq);
    }
  }
  lock.lock();
  state.publishing = false;
  state.publish_done.notify_all();
  return ToErrno(s);
}

int KvcacheFs::OpenSeq(const Caller& caller, Ino ino, const Node& node, int flags,
                       OpenResult* out) {
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  if (Writing(flags)) {
    std::shared_ptr<WriteState> write = FindWrite(ino);
    if (write) {
      write = OpenWrite(ino, node.pool, node.seq, nullptr);
      if (flags & O_TRUNC) {
        auto lock = write->LockToChange();
        if (!write->staging.Resize(0)) return ENOMEM;
        write->dirty = true;
      }
    } else {
      // Published bytes are write-once: only a whole replacement may be staged.
      if (!(flags & O_TRUNC)) return EPERM;
      Result<EntryInfo> info = manager_.Stat(node.pool, node.seq);
      if (!info.ok() && info.status().code() != Code::kNotFound) return ToErrno(info.status());
      write = OpenWrite(ino, node.pool, node.seq, info.ok() ? &*info : nullptr);
    }
    handle->kind = FileHandle::Kind::kWrite;
    handle->write = std::move(write);
    out->direct_io = true;
    out->handle = handle.release();
    return 0;
  }
  if (node.generation == 0) {
    // Not published yet: only the writer's own file, read back from the staging.
    if (FindWrite(ino)) {
      handle->kind = FileHandle::Kind::kWrite;
      handle->write = OpenWrite(ino, node.pool, node.seq, nullptr);
      out->direct_io = true;
      out->handle = handle.release();
      return 0;
    }
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
  if (!IsPrivileged(caller, OwnerOf(node.pool))) {
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
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  if (!node->pool.empty()) manager_.ForgetIfReplaced(node->pool);
  switch (node->kind) {
    case NodeKind::kSeqFile:
      return OpenSeq(caller, ino, *node, flags, out);
    case NodeKind::kRootFile: {
      if (Writing(flags)) return EACCES;
      Result<std::string> text = RenderRootFile(manager_, node->root_file);
      if (!text.ok()) return ToErrno(text.status());
      handle->text = std::move(text).value();
      break;
    }
    case NodeKind::kPoolFile: {
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

int KvcacheFs::DoCreate(const Caller& caller, Ino parent, std::string_view name, int flags,
                        fuse_entry_param* entry, OpenResult* out) {
  std::optional<Node> dir = inodes_.Get(parent);
  if (!dir) return ESTALE;
  if (name.size() > kMaxNameLength) return ENAMETOOLONG;
  if (dir->kind != NodeKind::kPoolDir) return dir->kind == NodeKind::kRoot ? EPERM : EACCES;
  if (name == kByPrefixName || ParsePoolFile(name)) return EEXIST;
  SeqName seq = ParseSeqName(name);
  if (seq.error != 0) return seq.error;
  const std::string& pool = dir->pool;
  if (int err = PoolExists(pool); err != 0) return err;

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
  Ino ino = inodes_.CreatePending(pool, seq.seq);
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  handle->kind = FileHandle::Kind::kWrite;
  handle->write = OpenWrite(ino, pool, seq.seq, info.ok() ? &*info : nullptr);
  struct stat attr;
  FileAttr(ino, 0644, 0, &attr);
  FillEntry(ino, attr, entry, 0);
  out->direct_io = true;
  out->handle = handle.release();
  return 0;
}

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
    case FileHandle::Kind::kWrite: {
      std::lock_guard lock(handle->write->mu);
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
    case FileHandle::Kind::kWrite: {
      if (offset < 0) return EINVAL;
      auto lock = handle->write->LockToChange();
      if (!handle->write->staging.WriteAt(static_cast<uint64_t>(offset), data)) return ENOMEM;
      handle->write->dirty = true;
      return 0;
    }
    default:
      return EBADF;
  }
}

int KvcacheFs::DoFlush(FileHandle* handle) {
  if (handle->kind != FileHandle::Kind::kWrite) return 0;
  // Publishing at flush (close), not at release, which the kernel sends after
  // close() has returned: a reader right after close must find the entry.
  std::unique_lock lock(handle->write->mu);
  return Publish(*handle->write, lock);
}

int KvcacheFs::DoRelease(FileHandle* handle) {
  int err = 0;
  if (handle->kind == FileHandle::Kind::kWrite) {
    std::shared_ptr<WriteState> write = handle->write;
    {
      std::unique_lock lock(write->mu);
      err = Publish(*write, lock);
    }
    std::lock_guard lock(writes_mu_);
    if (--write->handles == 0) writes_.erase(write->ino);
  }
  if (handle->quota_held) pin_quota_.Release(handle->pool, handle->quota_uid);
  delete handle;
  return err;
}

}  // namespace kvcache::fs
