// Entry metadata as extended attributes user.kvcache.*.
#include <sys/xattr.h>

#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstring>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "errno_map.h"
#include "kvcache/number.h"
#include "kvcache/prefix.h"
#include "kvcachefs.h"
#include "kvcachefs_internal.h"

namespace kvcache::fs {
namespace {

constexpr std::string_view kPrefix = "user.kvcache.";
// Settable first, then read-only.
constexpr std::string_view kNames[] = {"token_count", "priority",     "prefix_tokens",
                                       "metadata",    "prefix_hash",  "access_count",
                                       "created",     "last_accessed"};
constexpr size_t kSettable = 4;
// A chunk file's, all read-only (kvcachefs_chunks.cc).
constexpr std::string_view kChunkNames[] = {"namespace", "tokens", "parent", "position"};

// The short name ("priority") of a user.kvcache.* attribute, or "" when not ours.
std::string_view ShortName(std::string_view name) {
  if (name.substr(0, kPrefix.size()) != kPrefix) return {};
  std::string_view rest = name.substr(kPrefix.size());
  for (std::string_view n : kNames) {
    if (n == rest) return n;
  }
  return {};
}

// Attributes outside the user namespace (security.selinux, system.posix_acl_access, ...)
// are not supported at all. ENOTSUP rather than ENODATA: `ls -l` asks every file for
// those two and stops asking a filesystem once it answers ENOTSUP.
bool IsUnsupportedNamespace(std::string_view name) { return name.substr(0, 5) != "user."; }

bool IsSettable(std::string_view short_name) {
  for (size_t i = 0; i < kSettable; ++i) {
    if (kNames[i] == short_name) return true;
  }
  return false;
}

std::string Seconds(double t) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", t);
  return buf;
}

// A value written with `setfattr` or `echo` may end in one newline; the number itself
// follows the CLI's grammar (kvcache/number.h).
std::string_view WithoutNewline(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

// Applies one settable attribute to staged put attributes; EINVAL when malformed.
int Apply(std::string_view short_name, std::string_view value, uint64_t* token_count,
          PutOptions* options) {
  if (short_name == "token_count") {
    Result<uint64_t> n = ParseUnsigned(WithoutNewline(value), "token count");
    if (!n.ok()) return EINVAL;
    *token_count = *n;
    return 0;
  }
  if (short_name == "priority") {
    Result<int64_t> n = ParseSigned(WithoutNewline(value), "priority", INT32_MIN, INT32_MAX);
    if (!n.ok()) return EINVAL;
    options->priority = static_cast<int32_t>(n.value());
    return 0;
  }
  if (short_name == "prefix_tokens") {
    std::string_view v = value;
    while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    if (v.empty()) {
      options->prefix_tokens.clear();
      return 0;
    }
    Result<std::vector<uint32_t>> tokens = ParseTokenList(v);
    if (!tokens.ok()) return EINVAL;
    options->prefix_tokens = std::move(tokens).value();
    return 0;
  }
  if (short_name == "metadata") {
    if (!value.empty() && !nlohmann::json::accept(value)) return EINVAL;
    options->metadata = std::string(value);
    return 0;
  }
  return EPERM;
}

}  // namespace

int KvcacheFs::DoListxattr(Ino ino, std::string* names) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  names->clear();
  if (node->kind == NodeKind::kChunkFile) {
    for (std::string_view n : kChunkNames) {
      names->append(kPrefix);
      names->append(n);
      names->push_back('\0');
    }
    return 0;
  }
  if (node->kind != NodeKind::kSeqFile && node->kind != NodeKind::kScratchFile) return 0;
  for (std::string_view n : kNames) {
    names->append(kPrefix);
    names->append(n);
    names->push_back('\0');
  }
  return 0;
}

int KvcacheFs::DoGetxattr(Ino ino, std::string_view name, std::string* value) {
  if (IsUnsupportedNamespace(name)) return ENOTSUP;
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  if (node->kind == NodeKind::kChunkFile) {
    if (name.substr(0, kPrefix.size()) != kPrefix) return ENODATA;
    return ChunkXattr(*node, name.substr(kPrefix.size()), value);
  }
  std::string_view n = ShortName(name);
  bool file = node->kind == NodeKind::kSeqFile || node->kind == NodeKind::kScratchFile;
  if (!file || n.empty()) return ENODATA;

  if (node->kind == NodeKind::kScratchFile || node->generation == 0) {
    // Not published yet: the staged attributes.
    std::shared_ptr<WriteState> write = FindWrite(ino);
    if (!write) return ESTALE;
    MutexLock lock(&write->mu);
    if (n == "token_count") *value = std::to_string(write->token_count);
    else if (n == "priority") *value = std::to_string(write->options.priority);
    else if (n == "prefix_tokens") *value = FormatTokenList(write->options.prefix_tokens);
    else if (n == "metadata") *value = write->options.metadata;
    else if (n == "prefix_hash") {
      *value = write->options.prefix_tokens.empty() ? ""
                                                    : PrefixHash(write->options.prefix_tokens);
    } else {
      *value = n == "access_count" ? "0" : Seconds(0);
    }
    return 0;
  }

  Result<EntryInfo> info = manager_.Stat(node->pool, node->seq);
  if (!info.ok()) return ToErrno(info.status());
  if (n == "token_count") *value = std::to_string(info->token_count);
  else if (n == "priority") *value = std::to_string(info->priority);
  else if (n == "metadata") *value = info->metadata;
  else if (n == "prefix_hash") *value = info->prefix_hash;
  else if (n == "access_count") *value = std::to_string(info->access_count);
  else if (n == "created") *value = Seconds(info->created);
  else if (n == "last_accessed") *value = Seconds(info->last_accessed);
  else if (n == "prefix_tokens") {
    value->clear();
    if (info->prefix_length > 0) {
      // The tokens live beside the payload; reading them pins the entry briefly.
      Result<EntryView> view = manager_.Pin(node->pool, node->seq);
      if (!view.ok()) return ToErrno(view.status());
      *value = FormatTokenList(view->prefix_tokens());
    }
  }
  return 0;
}

int KvcacheFs::DoSetxattr(Ino ino, std::string_view name, std::string_view value, pid_t pid) {
  std::optional<Node> node = inodes_.Get(ino);
  if (!node) return ESTALE;
  if (node->kind != NodeKind::kSeqFile && node->kind != NodeKind::kScratchFile) return ENOTSUP;
  std::string_view n = ShortName(name);
  if (n.empty()) return ENOTSUP;
  if (!IsSettable(n)) return EPERM;
  std::shared_ptr<WriteState> write;
  if (node->kind == NodeKind::kScratchFile || node->generation == 0) {
    write = FindWrite(ino);
    if (!write) return ESTALE;
  } else if (pid != 0) {
    // The writer replacing this id sets the attributes of its own version.
    write = FindWriter(node->pool, node->seq, ThreadGroupOf(pid));
  }
  if (write) {
    // Being written: the attributes go out with the bytes when published.
    ChangeLock lock(*write);
    uint64_t tokens = write->token_count;
    PutOptions options = write->options;
    if (int err = Apply(n, value, &tokens, &options); err != 0) return err;
    write->token_count = tokens;
    write->options = std::move(options);
    write->dirty = true;
    return 0;
  }
  return UpdateInPlace(ino, *node, n, value);
}

int KvcacheFs::DoRemovexattr(Ino ino, std::string_view name, pid_t pid) {
  std::string_view n = ShortName(name);
  if (n == "token_count" || n == "priority") return DoSetxattr(ino, name, "0", pid);
  return DoSetxattr(ino, name, "", pid);
}

int KvcacheFs::UpdateInPlace(Ino ino, const Node& node, std::string_view name,
                             std::string_view value) {
  // Parsed against empty attributes: only the one being set is sent.
  uint64_t tokens = 0;
  PutOptions parsed;
  if (int err = Apply(name, value, &tokens, &parsed); err != 0) return err;
  EntryUpdate update;
  if (name == "token_count") update.token_count = tokens;
  if (name == "priority") update.priority = parsed.priority;
  if (name == "prefix_tokens") update.prefix_tokens = std::move(parsed.prefix_tokens);
  if (name == "metadata") update.metadata = std::move(parsed.metadata);
  // Only the version this inode stands for: a newer put is never reverted.
  Result<EntryInfo> updated =
      manager_.UpdateEntry(node.pool, node.seq, node.generation, update);
  if (updated.ok()) return 0;
  if (updated.status().code() == Code::kNotFound) return ESTALE;
  if (updated.status().code() != Code::kNoSpace) return ToErrno(updated.status());
  // No free blocks right after the payload for the new tail.
  return RepublishWithCopy(ino, node, name, value);
}

int KvcacheFs::RepublishWithCopy(Ino ino, const Node& node, std::string_view name,
                                 std::string_view value) {
  // Pin the bytes, put them again with the new attributes and the old statistics, in
  // place of the old entry, if it is still the version this inode stands for.
  Result<EntryView> view = manager_.Pin(node.pool, node.seq);
  if (!view.ok()) return view.status().code() == Code::kNotFound ? ESTALE
                                                                   : ToErrno(view.status());
  const EntryInfo& info = view->info();
  if (info.generation != node.generation) return ESTALE;
  uint64_t tokens = info.token_count;
  PutOptions options;
  options.prefix_tokens = view->prefix_tokens();
  options.priority = info.priority;
  options.metadata = info.metadata;
  if (int err = Apply(name, value, &tokens, &options); err != 0) return err;
  EntryStats stats{info.created, info.last_accessed, info.access_count};
  std::span<const std::byte> bytes = view->data();
  Result<PutReservation> reservation =
      manager_.Reserve(node.pool, node.seq, bytes.size(), tokens, options, stats);
  if (!reservation.ok()) return ToErrno(reservation.status());
  if (!bytes.empty()) std::memcpy(reservation->data().data(), bytes.data(), bytes.size());
  Result<EntryInfo> current = manager_.Stat(node.pool, node.seq);
  if (!current.ok() || current->generation != node.generation) {
    reservation->Abort().IgnoreError();  // ESTALE is the answer either way
    return ESTALE;
  }
  if (Status s = reservation->Commit(); !s.ok()) return ToErrno(s);
  if (Status s = view->Release(); !s.ok()) return ToErrno(s);
  Result<EntryInfo> after = manager_.Stat(node.pool, node.seq);
  // Same bytes: this inode's cached pages stay right under the new generation.
  if (after.ok()) inodes_.Rebound(ino, after->generation);
  return 0;
}

}  // namespace kvcache::fs
