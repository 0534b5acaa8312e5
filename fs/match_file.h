// MOUNT/<pool>/match: a prompt's cached prefix, asked from a shell script.
//
// One open file handle is one conversation, like a pipe: the script writes a request,
// then reads the answer back from the same descriptor; the next write starts the next
// request. Reads and writes ignore the file offset (a read continues where the last
// read of the handle stopped), so `exec 3<>match; echo ... >&3; cat <&3` works. Each
// handle has its own request and answer: concurrent scripts never see each other's.
//
// Request (text; lines end in '\n'):
//   namespace=NS        optional, before any token: the namespace of the chunks (the
//                       rest of the line, as given; default the empty namespace)
//   1,2,3 4 5           the prompt's tokens, comma or space separated, on one or more
//                       lines (the CLI's --tokens syntax; a line may end in ',')
// Complete lines are checked as they are written: a bad one fails that write() with
// EINVAL and drops the request. The match runs at the first read after the request:
// then a request without tokens, or whose last line is bad, fails the read with
// EINVAL. Either way nothing in the pool changes (no match is counted), the handle's
// previous answer and its pins are dropped, and reading shows "error: <why>".
//
// Answer:
//   matched_tokens 32   leading tokens of the prompt cached, in whole chunks
//   asked_tokens 40     tokens in the request
//   chunk_tokens 16     the pool's chunk size
//   chunks 2            chunks holding the matched tokens, listed below in prompt order
//   chunk 9c0e...       one line per chunk: its name in <pool>/chunks/
//
// The chunks of the answer stay pinned until the handle is closed or its next answer
// replaces this one: while a script holds the descriptor open, `cat chunks/<name>`
// serves exactly the bytes that matched, and no eviction can take them.
//
// Thread-safe: one mutex per session; no Manager call is made while it is held by
// another thread's read (each read holds it for its whole match).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/manager.h"
#include "thread_annotations.h"

namespace kvcache::fs {

// Longest request text a handle accepts (EFBIG beyond): room for about 2M tokens.
inline constexpr size_t kMaxMatchRequestBytes = size_t{16} << 20;

class MatchSession {
 public:
  // Runs a match for a complete request; may refuse (e.g. a pin quota): its error is
  // the answer's.
  using Runner = std::function<Result<ChunkMatch>(std::string_view name_space,
                                                  std::span<const uint32_t> tokens)>;
  // Called with each answer that is dropped (replaced or at destruction), after its
  // pins are released.
  using Dropped = std::function<void(const ChunkMatch& match)>;

  // Until a request is answered, reading shows how to use the file.
  explicit MatchSession(Dropped dropped = {});
  ~MatchSession();
  MatchSession(const MatchSession&) = delete;
  MatchSession& operator=(const MatchSession&) = delete;

  // Adds written bytes to the request. 0; EINVAL for a bad line, EFBIG past
  // kMaxMatchRequestBytes: the request is dropped and the answer becomes the error.
  int Write(std::string_view bytes);
  // Up to `size` more bytes of the answer into *out. If a request was written since
  // the last answer, it is run first (by `run`): 0, or the errno of its failure (then
  // the answer is the error's text, readable next).
  int Read(size_t size, const Runner& run, std::string* out);

  // The text of an answer (see above).
  static std::string FormatAnswer(uint64_t asked_tokens, const ChunkMatch& match);

 private:
  // Parses one complete line of the request.
  Status TakeLineLocked(std::string_view line) REQUIRES(mu_);
  void DropRequestLocked() REQUIRES(mu_);
  void SetAnswerLocked(std::string text, ChunkMatch match) REQUIRES(mu_);

  Dropped dropped_;
  // Guards the session. A read holds it for its whole match, so it comes before every
  // lock the runner and `dropped_` take (the Manager's, a pool's, the pin quota's).
  Mutex mu_;
  bool requesting_ GUARDED_BY(mu_) = false;  // bytes written since the last answer
  std::string partial_ GUARDED_BY(mu_);      // the request's unfinished last line
  size_t request_bytes_ GUARDED_BY(mu_) = 0;
  bool has_namespace_ GUARDED_BY(mu_) = false;
  std::string name_space_ GUARDED_BY(mu_);
  std::vector<uint32_t> tokens_ GUARDED_BY(mu_);
  std::string answer_ GUARDED_BY(mu_);
  size_t cursor_ GUARDED_BY(mu_) = 0;  // bytes of answer_ already read
  ChunkMatch pins_ GUARDED_BY(mu_);     // the answer's chunks, pinned
};

}  // namespace kvcache::fs
