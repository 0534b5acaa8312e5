// KvcacheFs's token chunks: <pool>/chunks/<hash> files and the <pool>/match file.
//
// A chunk file is named by the 16 hex digits of the chunk's chained hash and reads as
// its KV bytes. Opening it pins the chunk, as opening an entry pins the entry: the
// bytes read are the chunk's own until close, whatever is evicted, cleared or stored
// meanwhile. A hash stored again after eviction may hold other bytes under the same
// name, so chunk files are always read with direct I/O: the kernel never serves pages
// cached from an earlier open. Attributes: user.kvcache.namespace, .tokens (the
// chunk's tokens, "1,2,3"), .parent (the parent's hash; for the first chunk of a chain
// the namespace seed), .position (1 for the first chunk).
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "errno_map.h"
#include "kvcache/prefix.h"
#include "kvcachefs.h"
#include "kvcachefs_internal.h"

namespace kvcache::fs {

int KvcacheFs::LookupChunk(const std::string& pool, std::string_view name,
                           fuse_entry_param* entry) {
  Result<uint64_t> hash = ParsePrefixHash(name);
  if (!hash.ok()) return ENOENT;
  Result<ChunkInfo> info = manager_.StatChunk(pool, *hash);
  if (!info.ok()) return ToErrno(info.status());
  Node node = PoolNode(NodeKind::kChunkFile, pool);
  node.hash = PrefixHashToHex(*hash);  // one inode whatever the case of the name
  Ino ino = inodes_.Acquire(node);
  struct stat attr;
  ChunkAttr(ino, *info, &attr);
  FillEntry(ino, attr, entry, 0);
  return 0;
}

void KvcacheFs::ChunkAttr(Ino ino, const ChunkInfo& info, struct stat* attr) {
  FileAttr(ino, 0444, info.size_bytes, attr);
  attr->st_mtim = ToTimespec(info.created);
  attr->st_ctim = attr->st_mtim;
  attr->st_atim = ToTimespec(info.last_accessed > 0 ? info.last_accessed : info.created);
}

int KvcacheFs::GetChunkAttr(Ino ino, const Node& node, const FileHandle* handle,
                            struct stat* attr) {
  if (handle != nullptr && handle->kind == FileHandle::Kind::kEntry) {
    // An open chunk's size is the size of the bytes it pinned.
    const EntryInfo& pinned = handle->view.info();
    ChunkInfo info;
    info.size_bytes = pinned.size_bytes;
    info.created = pinned.created;
    info.last_accessed = pinned.last_accessed;
    ChunkAttr(ino, info, attr);
    return 0;
  }
  Result<uint64_t> hash = ParsePrefixHash(node.hash);
  if (!hash.ok()) return ESTALE;
  Result<ChunkInfo> info = manager_.StatChunk(node.pool, *hash);
  if (!info.ok()) return ToErrno(info.status());
  ChunkAttr(ino, *info, attr);
  return 0;
}

int KvcacheFs::ListChunks(const std::string& pool, std::vector<DirEntry>* out) {
  Result<std::vector<ChunkInfo>> chunks = manager_.Chunks(pool);
  if (!chunks.ok()) return ToErrno(chunks.status());
  out->reserve(out->size() + chunks->size());
  for (ChunkInfo& c : *chunks) {
    DirEntry d;
    d.name = PrefixHashToHex(c.hash);
    d.node = PoolNode(NodeKind::kChunkFile, pool);
    d.node.hash = d.name;
    d.chunk = std::move(c);
    out->push_back(std::move(d));
  }
  return 0;
}

int KvcacheFs::OpenChunk(const Caller& caller, Ino ino, const Node& node, int flags,
                         OpenResult* out) {
  if ((flags & O_ACCMODE) != O_RDONLY) return EACCES;
  Result<uint64_t> hash = ParsePrefixHash(node.hash);
  if (!hash.ok()) return ESTALE;
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  if (!IsPrivileged(caller, OwnerOf(node.pool))) {
    Result<PoolConfig> config = manager_.GetConfig(node.pool);
    if (!config.ok()) return ToErrno(config.status());
    if (!pin_quota_.TryAcquire(node.pool, caller.uid, config->max_sequences)) return EMFILE;
    handle->quota_held = true;
    handle->quota_uid = caller.uid;
    handle->pool = node.pool;
  }
  Result<PinnedChunk> chunk = manager_.PinChunk(node.pool, *hash);
  if (!chunk.ok()) {
    if (handle->quota_held) pin_quota_.Release(node.pool, handle->quota_uid);
    return ToErrno(chunk.status());
  }
  handle->kind = FileHandle::Kind::kEntry;
  handle->view = std::move(chunk->view);
  out->direct_io = true;
  out->handle = handle.release();
  return 0;
}

int KvcacheFs::OpenMatch(const Caller& caller, const Node& node, int flags, OpenResult* out) {
  if (int err = PoolExists(node.pool); err != 0) return err;
  (void)flags;  // read-only opens read the usage; write-only ones ask and never hear
  auto handle = std::make_unique<FileHandle>();
  handle->kind = FileHandle::Kind::kMatch;
  handle->pool = node.pool;
  // Pins a match holds for a user other than the pool's owner count against that
  // user's pin quota, as open entries do; they are uncounted when the answer goes.
  bool privileged = IsPrivileged(caller, OwnerOf(node.pool));
  handle->quota_uid = caller.uid;
  handle->quota_held = false;
  handle->trusted = privileged;
  std::string pool = node.pool;
  uid_t uid = caller.uid;
  handle->match = std::make_unique<MatchSession>([this, pool, uid, privileged](
                                                     const ChunkMatch& dropped) {
    if (privileged) return;
    for (size_t k = 0; k < dropped.chunks.size(); ++k) pin_quota_.Release(pool, uid);
  });
  out->direct_io = true;
  out->handle = handle.release();
  return 0;
}

int KvcacheFs::ReadMatch(FileHandle* handle, size_t size, std::vector<std::byte>* scratch) {
  const std::string pool = handle->pool;
  const bool privileged = handle->trusted;
  const uid_t uid = handle->quota_uid;
  auto run = [&](std::string_view name_space,
                 std::span<const uint32_t> tokens) -> Result<ChunkMatch> {
    manager_.ForgetIfReplaced(pool);
    KVC_ASSIGN_OR_RETURN(ChunkMatch match, manager_.Match(pool, name_space, tokens));
    if (privileged || match.chunks.empty()) return match;
    KVC_ASSIGN_OR_RETURN(PoolConfig config, manager_.GetConfig(pool));
    for (size_t k = 0; k < match.chunks.size(); ++k) {
      if (!pin_quota_.TryAcquire(pool, uid, config.max_sequences)) {
        for (size_t j = 0; j < k; ++j) pin_quota_.Release(pool, uid);
        return Status::Busy("the " + std::to_string(match.chunks.size()) +
                            " chunks matched would exceed the pins user " +
                            std::to_string(uid) + " may hold in pool '" + pool +
                            "'; close other open files of the pool");
      }
    }
    return match;
  };
  std::string text;
  int err = handle->match->Read(size, run, &text);
  if (err != 0) return err;
  const auto* bytes = reinterpret_cast<const std::byte*>(text.data());
  scratch->assign(bytes, bytes + text.size());
  return 0;
}

int KvcacheFs::ChunkXattr(const Node& node, std::string_view short_name, std::string* value) {
  Result<uint64_t> hash = ParsePrefixHash(node.hash);
  if (!hash.ok()) return ESTALE;
  if (short_name == "tokens") {
    // The tokens live beside the bytes; reading them pins the chunk briefly.
    Result<PinnedChunk> chunk = manager_.PinChunk(node.pool, *hash);
    if (!chunk.ok()) return ToErrno(chunk.status());
    *value = FormatTokenList(chunk->view.prefix_tokens());
    return 0;
  }
  Result<ChunkInfo> info = manager_.StatChunk(node.pool, *hash);
  if (!info.ok()) return ToErrno(info.status());
  if (short_name == "namespace") {
    *value = info->name_space;
  } else if (short_name == "parent") {
    *value = PrefixHashToHex(info->parent_hash);
  } else if (short_name == "position") {
    *value = std::to_string(info->position);
  } else {
    return ENODATA;
  }
  return 0;
}

}  // namespace kvcache::fs
