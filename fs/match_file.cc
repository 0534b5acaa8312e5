#include "match_file.h"

#include <cerrno>

#include "errno_map.h"
#include "kvcache/prefix.h"
#include "text.h"

namespace kvcache::fs {
namespace {

constexpr std::string_view kNamespaceKey = "namespace=";

constexpr std::string_view kUsage =
    "open read-write, write a prompt's tokens and read the answer from the same "
    "descriptor:\n"
    "  exec 3<>match; printf 'namespace=my-model\\n1,2,3,4\\n' >&3; cat <&3\n"
    "(the namespace line is optional; the chunks of the answer stay pinned until the "
    "descriptor is closed)\n";

}  // namespace

MatchSession::MatchSession(Dropped dropped)
    : dropped_(std::move(dropped)), answer_(kUsage) {}

MatchSession::~MatchSession() { SetAnswerLocked("", ChunkMatch{}); }

std::string MatchSession::FormatAnswer(uint64_t asked_tokens, const ChunkMatch& match) {
  std::string out;
  out.reserve(96 + 23 * match.chunks.size());
  out += "matched_tokens " + std::to_string(match.matched_tokens) + "\n";
  out += "asked_tokens " + std::to_string(asked_tokens) + "\n";
  out += "chunk_tokens " + std::to_string(match.chunk_tokens) + "\n";
  out += "chunks " + std::to_string(match.chunks.size()) + "\n";
  for (const MatchedChunk& chunk : match.chunks) {
    out += "chunk " + PrefixHashToHex(chunk.hash) + "\n";
  }
  return out;
}

Status MatchSession::TakeLineLocked(std::string_view line) {
  if (line.substr(0, kNamespaceKey.size()) == kNamespaceKey) {
    // The namespace is taken as written, spaces included; only the line end goes.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (has_namespace_) return Status::InvalidArgument("a second namespace= line");
    if (!tokens_.empty()) {
      return Status::InvalidArgument("namespace= must come before the tokens");
    }
    std::string_view ns = line.substr(kNamespaceKey.size());
    if (ns.size() > kMaxChunkNamespaceBytes) {
      return Status::InvalidArgument("namespace of " + std::to_string(ns.size()) +
                                     " bytes is longer than the limit of " +
                                     std::to_string(kMaxChunkNamespaceBytes));
    }
    has_namespace_ = true;
    name_space_ = std::string(ns);
    return Status::Ok();
  }
  // Lines are split at '\n', so this trims blanks and a '\r' (leading ones too: the
  // token parser would skip them anyway).
  line = TrimSpace(line, kLineBlankChars);
  // Lines of one list: "1,2,\n3" is 1,2,3.
  if (!line.empty() && line.back() == ',') line.remove_suffix(1);
  if (line.empty()) return Status::Ok();
  KVC_ASSIGN_OR_RETURN(std::vector<uint32_t> tokens, ParseTokenList(line));
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  return Status::Ok();
}

void MatchSession::DropRequestLocked() {
  requesting_ = false;
  partial_.clear();
  partial_.shrink_to_fit();
  request_bytes_ = 0;
  has_namespace_ = false;
  name_space_.clear();
  tokens_.clear();
  tokens_.shrink_to_fit();
}

void MatchSession::SetAnswerLocked(std::string text, ChunkMatch match) {
  ChunkMatch old = std::move(pins_);
  if (dropped_ && !old.chunks.empty()) dropped_(old);
  old.Release().IgnoreError();
  pins_ = std::move(match);
  answer_ = std::move(text);
  cursor_ = 0;
}

int MatchSession::Write(std::string_view bytes) {
  MutexLock lock(&mu_);
  if (!requesting_) {
    DropRequestLocked();
    requesting_ = true;
  }
  request_bytes_ += bytes.size();
  if (request_bytes_ > kMaxMatchRequestBytes) {
    DropRequestLocked();
    SetAnswerLocked("error: a match request may hold at most " +
                        std::to_string(kMaxMatchRequestBytes) + " bytes\n",
                    ChunkMatch{});
    return EFBIG;
  }
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(bytes);
      break;
    }
    Status s;
    if (partial_.empty()) {
      s = TakeLineLocked(bytes.substr(0, nl));
    } else {
      partial_.append(bytes.substr(0, nl));
      s = TakeLineLocked(partial_);
      partial_.clear();
    }
    if (!s.ok()) {
      DropRequestLocked();
      SetAnswerLocked("error: " + s.message() + "\n", ChunkMatch{});
      return EINVAL;
    }
    bytes.remove_prefix(nl + 1);
  }
  return 0;
}

int MatchSession::Read(size_t size, const Runner& run, std::string* out) {
  MutexLock lock(&mu_);
  int err = 0;
  if (requesting_) {
    Status s = partial_.empty() ? Status::Ok() : TakeLineLocked(partial_);
    if (s.ok() && tokens_.empty()) s = Status::InvalidArgument("no tokens given");
    Result<ChunkMatch> match = s.ok() ? run(name_space_, tokens_) : Result<ChunkMatch>(s);
    if (match.ok()) {
      std::string text = FormatAnswer(tokens_.size(), *match);
      SetAnswerLocked(std::move(text), std::move(match).value());
    } else {
      SetAnswerLocked("error: " + match.status().message() + "\n", ChunkMatch{});
      err = ToErrno(match.status());
    }
    DropRequestLocked();
    if (err != 0) return err;
  }
  const std::string& text = answer_;
  size_t from = std::min(cursor_, text.size());
  size_t n = std::min(size, text.size() - from);
  out->assign(text, from, n);
  cursor_ = from + n;
  return 0;
}

}  // namespace kvcache::fs
