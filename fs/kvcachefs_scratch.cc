// Scratch files and renames: how an engine publishes atomically the way it would on
// any other filesystem (write "<id>.tmp" or ".name", rename it onto "<id>"), moves an
// entry to another id, and attaches a prefix of any length ("<id>.tokens").
//
// Scratch files live in the daemon only, are never listed, and outlive their handles
// until renamed or unlinked; their bytes count against the pool's size like any file
// being written.
#include <fcntl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "errno_map.h"
#include "kvcache/prefix.h"
#include "kvcachefs.h"
#include "kvcachefs_internal.h"

namespace kvcache::fs {
namespace {

bool Writing(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

std::string TokensName(uint64_t seq) {
  return std::to_string(seq) + std::string(kTokensSuffix);
}

// Little-endian u32 tokens; nullopt when the length is not a multiple of 4.
std::optional<std::vector<uint32_t>> DecodeTokens(std::span<const std::byte> raw) {
  if (raw.size() % 4 != 0) return std::nullopt;
  std::vector<uint32_t> tokens(raw.size() / 4);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto* b = reinterpret_cast<const unsigned char*>(raw.data()) + 4 * i;
    tokens[i] = uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 |
                uint32_t{b[3]} << 24;
  }
  return tokens;
}

}  // namespace

int KvcacheFs::OpenScratch(Ino ino, const std::shared_ptr<WriteState>& state, int flags,
                           OpenResult* out) {
  if ((flags & O_TRUNC) && Writing(flags)) {
    ChangeLock lock(*state);
    if (!state->staging.Resize(0)) return ENOMEM;
    state->ShrankTo(0);
    state->error = 0;
    state->dirty = true;
  }
  {
    MutexLock lock(&writes_mu_);
    state->handles++;
  }
  auto handle = std::make_unique<FileHandle>();
  handle->ino = ino;
  handle->kind = FileHandle::Kind::kWrite;
  handle->write = state;
  out->direct_io = true;
  out->handle = handle.release();
  return 0;
}

int KvcacheFs::CreateScratch(const std::string& pool, std::string_view name,
                             ScratchName scratch, int flags, fuse_entry_param* entry,
                             OpenResult* out, pid_t pid) {
  std::string key(name);
  std::shared_ptr<WriteState> state;
  {
    MutexLock lock(&writes_mu_);
    auto it = scratch_.find({pool, key});
    if (it != scratch_.end()) state = it->second;
  }
  if (state) {
    if (flags & O_EXCL) return EEXIST;
    if (!inodes_.Ref(state->ino)) return ESTALE;
    int err = OpenScratch(state->ino, state, flags, out);
    if (err != 0) {
      inodes_.Unref(state->ino);
      return err;
    }
    uint64_t size;
    {
      MutexLock lock(&state->mu);
      size = state->staging.size();
    }
    struct stat attr;
    FileAttr(state->ino, 0644, size, &attr);
    // Never cached: renamed and unlinked behind the kernel's back.
    FillEntry(state->ino, attr, entry, 0);
    return 0;
  }
  Ino ino = inodes_.CreateScratch(pool, key);
  Result<std::shared_ptr<WriteState>> write =
      NewWrite(ino, pool, scratch.seq, scratch.kind, ThreadGroupOf(pid));
  if (!write.ok()) {
    inodes_.Unref(ino);
    return ToErrno(write.status());
  }
  {
    MutexLock lock(&writes_mu_);
    scratch_[{pool, key}] = *write;
  }
  ReplyCreated(ino, std::move(write).value(), entry, out);
  return 0;
}

int KvcacheFs::LookupScratch(const std::string& pool, std::string_view name,
                             fuse_entry_param* entry) {
  std::shared_ptr<WriteState> state;
  {
    MutexLock lock(&writes_mu_);
    auto it = scratch_.find({pool, std::string(name)});
    if (it == scratch_.end()) return ENOENT;
    state = it->second;
  }
  if (!inodes_.Ref(state->ino)) return ENOENT;
  uint64_t size;
  {
    MutexLock lock(&state->mu);
    size = state->staging.size();
  }
  struct stat attr;
  FileAttr(state->ino, 0644, size, &attr);
  // Attributes change with every write, names with renames and unlinks: never cached.
  FillEntry(state->ino, attr, entry, 0);
  return 0;
}

int KvcacheFs::UnlinkScratch(const std::string& pool, std::string_view name) {
  std::shared_ptr<WriteState> state;
  {
    MutexLock lock(&writes_mu_);
    auto it = scratch_.find({pool, std::string(name)});
    if (it == scratch_.end()) return ENOENT;
    state = it->second;
    scratch_.erase(it);
  }
  {
    MutexLock lock(&state->mu);
    state->error = ENOENT;  // handles still open publish nothing
  }
  DropWrite(state);
  return 0;
}

std::optional<std::vector<uint32_t>> KvcacheFs::CompanionTokens(const std::string& pool,
                                                                uint64_t seq) {
  std::shared_ptr<WriteState> state;
  {
    MutexLock lock(&writes_mu_);
    auto it = scratch_.find({pool, TokensName(seq)});
    if (it == scratch_.end()) return std::nullopt;
    state = it->second;
  }
  MutexLock lock(&state->mu);
  return DecodeTokens(state->staging.bytes());
}

void KvcacheFs::DropCompanion(const std::string& pool, uint64_t seq) {
  // Scratch names are never cached by the kernel: the next lookup finds it gone.
  UnlinkScratch(pool, TokensName(seq));
}

int KvcacheFs::ApplyCompanion(const std::shared_ptr<WriteState>& state) {
  std::optional<std::vector<uint32_t>> tokens;
  uint64_t seq;
  {
    MutexLock lock(&state->mu);
    if (state->error != 0) return state->error;
    tokens = DecodeTokens(state->staging.bytes());
    seq = state->seq;
  }
  if (!tokens) return EINVAL;
  // Being written: the tokens go out with that publish.
  if (FindWriter(state->pool, seq, 0)) return 0;
  Result<EntryInfo> info = manager_.Stat(state->pool, seq);
  if (!info.ok()) return 0;  // not published yet: kept for its publish
  EntryUpdate update;
  update.prefix_tokens = std::move(*tokens);
  Result<EntryInfo> updated = manager_.UpdateEntry(state->pool, seq, info->generation, update);
  if (!updated.ok()) {
    return updated.status().code() == Code::kNotFound ? 0 : ToErrno(updated.status());
  }
  DropCompanion(state->pool, seq);
  return 0;
}

// ---------------------------------------------------------------- renames

int KvcacheFs::RenameToSeq(const std::string& pool, std::string_view name, uint64_t target,
                           unsigned flags) {
  std::shared_ptr<WriteState> state;
  {
    MutexLock lock(&writes_mu_);
    auto it = scratch_.find({pool, std::string(name)});
    if (it == scratch_.end()) return ENOENT;
    state = it->second;
  }
  if (flags & RENAME_NOREPLACE) {
    if (manager_.Stat(pool, target).ok()) return EEXIST;
  }
  {
    ChangeLock lock(*state);
    // Published meanwhile by a concurrent rename of the same file: it is gone.
    if (state->scratch == ScratchKind::kNone) return ENOENT;
    if (state->scratch != ScratchKind::kTemp) return EINVAL;
    if (state->error != 0) return state->error;
    {
      // Renamed to another scratch name meanwhile: not under `name` any more.
      MutexLock map_lock(&writes_mu_);
      auto it = scratch_.find({pool, std::string(name)});
      if (it == scratch_.end() || it->second != state) return ENOENT;
    }
    state->scratch = ScratchKind::kNone;
    state->seq = target;
    state->dirty = true;  // whatever was staged becomes the entry
    if (int err = Publish(*state); err != 0) {
      state->scratch = ScratchKind::kTemp;
      state->seq = 0;
      return err;
    }
    // Still under `lock`: a rename of the same name waiting for it then finds it gone.
    MutexLock map_lock(&writes_mu_);
    scratch_.erase({pool, std::string(name)});
  }
  Result<EntryInfo> info = manager_.Stat(pool, target);
  if (info.ok()) inodes_.Renamed(state->ino, target, info->generation, AttrsOf(*info));
  {
    MutexLock lock(&writes_mu_);
    if (state->handles == 0) {
      auto [begin, end] = writes_.equal_range(state->ino);
      for (auto it = begin; it != end; ++it) {
        if (it->second == state) {
          writes_.erase(it);
          break;
        }
      }
    }
  }
  return 0;
}

int KvcacheFs::MoveSeq(const std::string& pool, uint64_t from, uint64_t to, unsigned flags) {
  if (from == to) return manager_.Stat(pool, from).ok() ? 0 : ENOENT;
  if ((flags & RENAME_NOREPLACE) && manager_.Stat(pool, to).ok()) return EEXIST;
  Result<EntryView> view = manager_.Pin(pool, from);
  if (!view.ok()) return ToErrno(view.status());
  const EntryInfo& info = view->info();
  PutOptions options;
  options.prefix_tokens = view->prefix_tokens();
  options.priority = info.priority;
  options.metadata = info.metadata;
  EntryStats stats{info.created, info.last_accessed, info.access_count};
  std::span<const std::byte> bytes = view->data();
  Result<PutReservation> reservation =
      manager_.Reserve(pool, to, bytes.size(), info.token_count, options, stats);
  if (!reservation.ok()) return ToErrno(reservation.status());
  if (!bytes.empty()) std::memcpy(reservation->data().data(), bytes.data(), bytes.size());
  if (Status s = reservation->Commit(); !s.ok()) return ToErrno(s);
  uint64_t moved_generation = info.generation;
  if (Status s = view->Release(); !s.ok()) return ToErrno(s);
  // The source goes only if it is still the version that was copied.
  Result<EntryInfo> source = manager_.Stat(pool, from);
  if (source.ok() && source->generation == moved_generation) {
    manager_.Remove(pool, from).IgnoreError();
  }
  // The kernel moves the source's dentry onto the target name: its inode now stands
  // for the target's new generation.
  std::optional<Ino> source_ino = inodes_.BoundSeq(pool, from);
  Result<EntryInfo> target = manager_.Stat(pool, to);
  inodes_.Unbind(pool, from);
  if (source_ino && target.ok()) {
    inodes_.Renamed(*source_ino, to, target->generation, AttrsOf(*target));
  } else {
    inodes_.Unbind(pool, to);
  }
  return 0;
}

int KvcacheFs::DoRename(Ino parent, std::string_view name, Ino new_parent,
                        std::string_view new_name, unsigned flags) {
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return EINVAL;
  std::optional<Node> from_dir = inodes_.Get(parent);
  std::optional<Node> to_dir = inodes_.Get(new_parent);
  if (!from_dir || !to_dir) return ESTALE;
  if (from_dir->kind != NodeKind::kPoolDir || to_dir->kind != NodeKind::kPoolDir) return EPERM;
  if (from_dir->pool != to_dir->pool) return EXDEV;
  if (name.size() > kMaxNameLength || new_name.size() > kMaxNameLength) return ENAMETOOLONG;
  const std::string& pool = from_dir->pool;
  auto fixed = [](std::string_view n) { return n == kByPrefixName || ParsePoolFile(n); };
  if (fixed(name) || fixed(new_name)) return EPERM;
  ScratchName from_scratch = ParseScratchName(name);
  ScratchName to_scratch = ParseScratchName(new_name);
  SeqName to_seq = ParseSeqName(new_name);

  if (from_scratch.kind != ScratchKind::kNone) {
    if (to_seq.error == 0) return RenameToSeq(pool, name, to_seq.seq, flags);
    if (to_scratch.kind == ScratchKind::kNone) return EINVAL;
    std::shared_ptr<WriteState> state;
    {
      MutexLock lock(&writes_mu_);
      auto it = scratch_.find({pool, std::string(name)});
      if (it == scratch_.end()) return ENOENT;
      state = it->second;
    }
    {
      // Lock order: the state's mu, then writes_mu_. A rename onto an id publishing
      // this file meanwhile is waited for; the file is then no longer under `name`.
      ChangeLock state_lock(*state);
      {
        MutexLock lock(&writes_mu_);
        auto it = scratch_.find({pool, std::string(name)});
        if (it == scratch_.end() || it->second != state) return ENOENT;
        if ((flags & RENAME_NOREPLACE) && scratch_.count({pool, std::string(new_name)})) {
          return EEXIST;
        }
        scratch_.erase(it);
        scratch_[{pool, std::string(new_name)}] = state;
      }
      state->scratch = to_scratch.kind;
      state->seq = to_scratch.seq;
    }
    inodes_.RenameScratch(state->ino, std::string(new_name));
    return 0;
  }
  SeqName from_seq = ParseSeqName(name);
  if (from_seq.error != 0) return from_seq.error;
  if (to_seq.error != 0) return to_scratch.kind != ScratchKind::kNone ? EINVAL : to_seq.error;
  return MoveSeq(pool, from_seq.seq, to_seq.seq, flags);
}

}  // namespace kvcache::fs
