#include "remote_tier.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdlib>
#include <new>

#include "clock.h"
#include "kvcache/prefix.h"

namespace kvcache::remote {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kRecordEvery{1};
// The sender takes at most this many queued items at a time, and sends them in
// pipelines of at most kPipelineItems items or about kPipelineBytes: one round trip
// per pipeline rather than per item.
constexpr size_t kBatchItems = 1024;
constexpr size_t kPipelineItems = 256;
constexpr uint64_t kPipelineBytes = 8ull << 20;
// Puts' entries read (or, when that is unsure, pinned in one hold of the pool lock) at
// a time.
constexpr size_t kReadAhead = 64;

}  // namespace

Result<std::unique_ptr<RemoteTier>> RemoteTier::Start(TierOptions options, TierHooks hooks) {
  KVC_ASSIGN_OR_RETURN(RemoteUrl url, ParseRemoteUrl(options.config.url));
  KVC_RETURN_IF_ERROR(ValidateRemoteNamespace(options.config.name_space));
  RedisClient::Options client;
  client.url = url;
  client.timeout = options.timeout;
  if (const char* pw = std::getenv(kRemotePasswordEnv); pw != nullptr) client.password = pw;
  return std::unique_ptr<RemoteTier>(
      new RemoteTier(std::move(options), std::move(hooks), std::move(client)));
}

RemoteTier::RemoteTier(TierOptions options, TierHooks hooks, RedisClient::Options client)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      base_prefix_(options_.config.name_space),
      sender_client_(client),
      fetch_client_(client),
      client_options_(client) {
  sender_ = std::thread([this] { Run(); });
}

RemoteTier::~RemoteTier() {
  if (options_.config.mode != RemoteMode::kReadOnly) {
    Flush(Clock::now() + options_.flush_deadline);
  }
  {
    MutexLock lk(&mu_);
    stop_ = true;
    DropQueuedLocked();
  }
  wake_.SignalAll();
  sender_.join();
  RecordCounters();
}

void RemoteTier::DropQueuedLocked() {
  dropped_.fetch_add(queue_.size(), std::memory_order_relaxed);
  queue_.clear();
  queued_bytes_ = 0;
}

void RemoteTier::EnqueuePut(uint64_t seq, uint64_t generation) {
  bool wake = false;
  {
    MutexLock lk(&mu_);
    if (stop_ || queue_.size() >= options_.queue_entries) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(Item{seq, generation, {}, 0});
    wake = sender_waiting_;
  }
  if (wake) wake_.Signal();
}

void RemoteTier::EnqueueChunk(uint64_t hash, uint64_t generation) {
  bool wake = false;
  {
    MutexLock lk(&mu_);
    if (stop_ || queue_.size() >= options_.queue_entries) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    Item item;
    item.seq = hash;
    item.generation = generation;
    item.chunk = true;
    queue_.push_back(std::move(item));
    wake = sender_waiting_;
  }
  if (wake) wake_.Signal();
}

template <typename Encode>
void RemoteTier::EnqueueEncoded(Item item, Encode encode) noexcept {
  const uint64_t bytes = item.bytes;
  bool wake = false;
  {
    MutexLock lk(&mu_);
    if (stop_ || queue_.size() >= options_.queue_entries ||
        queued_bytes_ + bytes > options_.queue_bytes) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queued_bytes_ += bytes;  // held while encoding, so concurrent evictions stay bounded
  }
  try {
    encode(item);
  } catch (const std::bad_alloc&) {
    MutexLock lk(&mu_);
    queued_bytes_ -= bytes;
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  {
    MutexLock lk(&mu_);
    if (stop_) {
      queued_bytes_ -= bytes;
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    try {
      queue_.push_back(std::move(item));
    } catch (const std::bad_alloc&) {
      queued_bytes_ -= bytes;
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    wake = sender_waiting_;
  }
  if (wake) wake_.Signal();
}

void RemoteTier::EnqueueEvicted(uint64_t seq, uint64_t token_count, int32_t priority,
                                std::span<const std::byte> prefix_tokens,
                                std::string_view metadata,
                                std::span<const std::byte> data) noexcept {
  Item item;
  item.seq = seq;
  item.bytes = data.size() + prefix_tokens.size() + metadata.size() + 64;
  EnqueueEncoded(std::move(item), [&](Item& it) {
    it.pieces = EncodePieces(EntryKey(base_prefix_, seq), token_count, priority, prefix_tokens,
                             metadata, data, options_.piece_bytes);
  });
}

void RemoteTier::EnqueueEvictedChunk(uint64_t hash, uint64_t parent, uint32_t position,
                                     std::span<const std::byte> tokens,
                                     std::string_view name_space,
                                     std::span<const std::byte> data) noexcept {
  Item item;
  item.seq = hash;
  item.chunk = true;
  item.bytes = data.size() + tokens.size() + name_space.size() + 112;
  EnqueueEncoded(std::move(item), [&](Item& it) {
    it.key = ChunkKey(base_prefix_, ChunkChainSeed(name_space), hash);
    it.pieces = EncodeChunkPieces(it.key, hash, parent, position, tokens, name_space, data,
                                  options_.piece_bytes);
  });
}

void RemoteTier::NoteFailure(const Status& s) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  MutexLock lk(&error_mu_);
  last_error_ = s.message();
  last_error_at_ = NowSeconds();
}

RemoteTier::Ahead RemoteTier::ReadAhead(const std::vector<Item>& batch, size_t from) {
  const size_t to = std::min(batch.size(), from + kReadAhead);
  Ahead ahead;
  ahead.outcomes.assign(to - from, ReadOutcome::kUnsure);
  ahead.encoded.resize(to - from);
  ahead.views.resize(to - from);
  std::vector<EntryRef> refs;
  std::vector<size_t> at;  // the index in `ahead` of refs[j]
  for (size_t k = from; k < to; ++k) {
    if (batch[k].chunk || !batch[k].pieces.empty()) continue;
    refs.push_back({batch[k].seq, batch[k].generation});
    at.push_back(k - from);
  }
  if (refs.empty()) return ahead;
  std::vector<ReadOutcome> outcomes(refs.size(), ReadOutcome::kUnsure);
  if (hooks_.read_each) {
    const PublishedReader read = [&](size_t j, const PublishedEntry& e) {
      ahead.encoded[at[j]] =
          EncodePieces(EntryKey(base_prefix_, refs[j].seq), e.token_count, e.priority,
                       e.prefix_tokens, e.metadata, e.data, options_.piece_bytes);
    };
    hooks_.read_each(refs, read, outcomes).IgnoreError();  // what failed stays kUnsure
  }
  std::vector<uint64_t> unsure;
  std::vector<size_t> unsure_at;
  for (size_t j = 0; j < refs.size(); ++j) {
    ahead.outcomes[at[j]] = outcomes[j];
    if (outcomes[j] != ReadOutcome::kUnsure) continue;
    ahead.encoded[at[j]].clear();  // whatever a torn read made of it
    unsure.push_back(refs[j].seq);
    unsure_at.push_back(at[j]);
  }
  if (unsure.empty()) return ahead;
  // A pool that cannot be pinned (destroyed, or its lock unusable) has nothing to send:
  // its items read as gone.
  Result<std::vector<EntryView>> pinned = hooks_.pin_each
                                              ? hooks_.pin_each(unsure)
                                              : Result<std::vector<EntryView>>(Status::NotFound(""));
  if (pinned.ok()) {
    for (size_t j = 0; j < unsure.size(); ++j) ahead.views[unsure_at[j]] = std::move((*pinned)[j]);
  }
  return ahead;
}

bool RemoteTier::Prepare(Item& item, Ahead& ahead, size_t a, Outgoing* out) {
  out->encoded.clear();
  if (!item.pieces.empty()) {
    out->base = item.chunk ? item.key : EntryKey(base_prefix_, item.seq);
    out->own = &item.pieces;
    return true;
  }
  out->own = nullptr;
  if (item.chunk) return EncodeChunkRef(item, &out->base, &out->encoded);
  if (ahead.outcomes[a] == ReadOutcome::kReplaced) return false;  // sent in its own turn
  out->base = EntryKey(base_prefix_, item.seq);
  if (ahead.outcomes[a] == ReadOutcome::kRead) {
    out->encoded = std::move(ahead.encoded[a]);
    return true;
  }
  const EntryView& view = ahead.views[a];
  if (!view.valid()) {
    // Gone (evicted or removed) before its turn came.
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const EntryInfo& info = view.info();
  if (info.generation != item.generation) return false;  // replaced: sent in its own turn
  std::vector<uint32_t> prefix = view.prefix_tokens();
  out->encoded = EncodePieces(out->base, info.token_count, info.priority,
                              std::as_bytes(std::span(prefix)), info.metadata, view.data(),
                              options_.piece_bytes);
  return true;
}

size_t RemoteTier::SendSome(std::vector<Item>& batch, size_t first, bool* retry) {
  *retry = false;
  // The items' values, and for each item the range of its commands.
  std::vector<Outgoing> out;
  std::vector<std::pair<size_t, size_t>> commands;  // [begin, end) per prepared item
  std::vector<size_t> which;                        // the item each prepared one is
  std::vector<std::string> piece_keys;
  std::vector<std::string_view> keys, values;
  uint64_t bytes = 0;
  size_t end = first;
  out.reserve(std::min<size_t>(batch.size() - first, kPipelineItems));
  // Puts' entries are read kReadAhead at a time without the pool lock; the few that
  // could not be (changing meanwhile) are pinned in one hold of the lock, and let go
  // before anything is sent.
  Ahead ahead;
  size_t ahead_from = first;
  while (end < batch.size() && bytes < kPipelineBytes && out.size() < kPipelineItems) {
    if (end >= ahead_from + ahead.size()) {
      EntryView::ReleaseAll(ahead.views).IgnoreError();
      ahead = ReadAhead(batch, end);
      ahead_from = end;
    }
    Outgoing o;
    if (Prepare(batch[end], ahead, end - ahead_from, &o)) {
      for (const std::string& p : o.pieces()) bytes += p.size();
      out.push_back(std::move(o));
      which.push_back(end);
    }
    ++end;
  }
  EntryView::ReleaseAll(ahead.views).IgnoreError();
  // Piece keys are made before any view into them is taken (the vector may grow).
  for (const Outgoing& o : out) {
    for (uint32_t i = 1; i < o.pieces().size(); ++i) piece_keys.push_back(PieceKey(o.base, i));
  }
  size_t k = 0;
  for (const Outgoing& o : out) {
    const size_t begin = keys.size();
    // Piece 0 goes last: a reader that finds it finds every other piece of that write
    // (unless Redis evicted some since, which reads as a miss).
    for (uint32_t i = 1; i < o.pieces().size(); ++i) {
      keys.push_back(piece_keys[k++]);
      values.push_back((o.pieces())[i]);
    }
    keys.push_back(o.base);
    values.push_back((o.pieces())[0]);
    commands.emplace_back(begin, keys.size());
  }
  if (keys.empty()) return end;
  std::vector<std::string> refused;
  Status s = sender_client_.SetAll(keys, values, &refused);
  if (!s.ok()) {
    NoteFailure(s);
    *retry = sender_client_.backing_off();
    if (*retry) return first;
    dropped_.fetch_add(out.size(), std::memory_order_relaxed);
    return end;
  }
  for (size_t j = 0; j < out.size(); ++j) {
    const auto [begin, stop] = commands[j];
    auto bad = std::find_if(refused.begin() + static_cast<std::ptrdiff_t>(begin),
                            refused.begin() + static_cast<std::ptrdiff_t>(stop),
                            [](const std::string& e) { return !e.empty(); });
    if (bad == refused.begin() + static_cast<std::ptrdiff_t>(stop)) {
      sent_.fetch_add(1, std::memory_order_relaxed);
    } else {
      // Refused, e.g. full: counted, not retried.
      NoteFailure(Status::IOError(*bad));
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return end;
}

void RemoteTier::Run() {
  pthread_setname_np(pthread_self(), "kvc-remote-send");
  // Background work: the lowest priority, so that on a busy machine the sender (and
  // the remote server it wakes) take the time the local puts leave. A flush (a process
  // on its way out) sends from the flushing thread itself, at that thread's priority.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
  Clock::time_point last_record = Clock::now();
  std::vector<Item> batch;
  MutexLock lk(&mu_);
  for (;;) {
    // Until there is work, a stop, or the time to record.
    const Clock::time_point record_at = last_record + kRecordEvery;
    while (queue_.empty() && !stop_) {
      sender_waiting_ = true;
      const bool woken = wake_.WaitUntil(&mu_, record_at);
      sender_waiting_ = false;
      if (!woken) break;
    }
    if (Clock::now() >= last_record + kRecordEvery) {
      lk.Unlock();
      RecordCounters();
      lk.Lock();
      last_record = Clock::now();
    }
    if (queue_.empty()) {
      idle_.SignalAll();
      if (stop_) return;
      continue;
    }
    if (flushers_ > 0 || sending_) {
      // A flushing thread sends (see Flush); it wakes this one when it is done.
      wake_.WaitUntil(&mu_, record_at);
      continue;
    }
    if (sender_client_.backing_off()) {
      if (stop_) {
        DropQueuedLocked();
        idle_.SignalAll();
        continue;
      }
      wake_.WaitUntil(&mu_, Clock::now() + std::chrono::milliseconds(20));
      continue;
    }
    SendBatchLocked(batch);
    if (queue_.empty() || flushers_ > 0) idle_.SignalAll();
  }
}

void RemoteTier::SendBatchLocked(std::vector<Item>& batch) {
  // Everything queued so far, up to kBatchItems, goes out in pipelines.
  const size_t take = std::min(queue_.size(), kBatchItems);
  batch.clear();
  for (size_t i = 0; i < take; ++i) {
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  sending_ = true;
  mu_.Unlock();
  size_t done = 0;
  bool retry = false;
  while (done < batch.size()) {
    const size_t end = SendSome(batch, done, &retry);
    if (end == done) break;  // the connection broke: the rest waits for the backoff
    done = end;
  }
  mu_.Lock();
  sending_ = false;
  for (size_t i = 0; i < done; ++i) queued_bytes_ -= batch[i].bytes;
  // What was not sent goes back to the front, in order (or is dropped on a stop).
  for (size_t i = batch.size(); i-- > done;) {
    if (stop_) {
      queued_bytes_ -= batch[i].bytes;
      dropped_.fetch_add(1, std::memory_order_relaxed);
    } else {
      queue_.push_front(std::move(batch[i]));
    }
  }
  batch.clear();
}

void RemoteTier::Flush(Clock::time_point deadline) {
  std::vector<Item> batch;
  MutexLock lk(&mu_);
  ++flushers_;
  // This thread sends what is queued itself, at its own priority, rather than wait for
  // the sender thread at its lowest one. One sender at a time, the connection's user:
  // whoever set sending_ (under mu_); the others wait for it.
  while (!(queue_.empty() && !sending_) && Clock::now() < deadline) {
    if (sending_) {
      idle_.WaitUntil(&mu_, std::min(deadline, Clock::now() + std::chrono::milliseconds(20)));
      continue;
    }
    if (sender_client_.backing_off()) {
      // Nobody waits for the remote to come back. What is queued stays queued: the
      // sender thread sends it after the backoff (a tier being destroyed drops it).
      break;
    }
    SendBatchLocked(batch);
  }
  --flushers_;
  idle_.SignalAll();  // other flushers
  wake_.SignalAll();  // the sender thread, for what may be left
}

bool RemoteTier::EncodeChunkRef(Item& item, std::string* base,
                                std::vector<std::string>* pieces) {
  Result<PinnedChunk> chunk =
      hooks_.pin_chunk ? hooks_.pin_chunk(item.seq) : Result<PinnedChunk>(Status::NotFound(""));
  if (!chunk.ok()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);  // evicted before its turn
    return false;
  }
  const ChunkInfo& info = chunk->info;
  if (info.generation != item.generation) {  // removed and stored again: its own turn
    chunk->view.Release().IgnoreError();
    return false;
  }
  std::vector<uint32_t> tokens = chunk->view.prefix_tokens();
  *base = ChunkKey(base_prefix_, ChunkChainSeed(info.name_space), info.hash);
  *pieces = EncodeChunkPieces(*base, info.hash, info.parent_hash, info.position,
                              std::as_bytes(std::span(tokens)), info.name_space,
                              chunk->view.data(), options_.piece_bytes);
  chunk->view.Release().IgnoreError();
  return true;
}

std::vector<ChunkRecord> RemoteTier::FetchChunks(const ChunkAsk& ask,
                                                 Clock::time_point deadline, bool* complete) {
  *complete = false;
  std::vector<ChunkRecord> out;
  const size_t n = ask.hashes.size();
  if (n == 0) {
    *complete = true;
    return out;
  }
  std::vector<std::string> keys;
  keys.reserve(n);
  for (uint64_t h : ask.hashes) keys.push_back(ChunkKey(base_prefix_, ask.seed, h));
  MutexLock lk(&fetch_mu_);
  Result<std::vector<std::optional<std::string>>> first = fetch_client_.GetAll(keys, deadline);
  if (!first.ok()) {
    NoteFailure(first.status());
    return out;
  }
  // The leading run whose piece 0 is there and sound; the first gap ends it.
  std::vector<std::vector<std::string>> pieces;
  std::vector<uint32_t> counts;
  bool stopped = false;
  for (size_t j = 0; j < n; ++j) {
    std::optional<std::string>& v = (*first)[j];
    if (!v.has_value()) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      stopped = true;
      break;
    }
    Result<PieceHeader> header = CheckFirstPiece(keys[j], *v);
    if (!header.ok()) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      stopped = true;
      break;
    }
    counts.push_back(header->piece_count);
    pieces.emplace_back();
    pieces.back().push_back(std::move(*v));
  }
  // The other pieces of the chunks that have more, in a second pipeline.
  std::vector<std::string> rest_keys;
  for (size_t j = 0; j < counts.size(); ++j) {
    for (uint32_t i = 1; i < counts[j]; ++i) rest_keys.push_back(PieceKey(keys[j], i));
  }
  if (!rest_keys.empty()) {
    Result<std::vector<std::optional<std::string>>> rest =
        fetch_client_.GetAll(rest_keys, deadline);
    if (!rest.ok()) {
      NoteFailure(rest.status());
      return out;
    }
    size_t k = 0;
    for (size_t j = 0; j < counts.size(); ++j) {
      for (uint32_t i = 1; i < counts[j]; ++i) {
        std::optional<std::string>& v = (*rest)[k++];
        if (v.has_value()) pieces[j].push_back(std::move(*v));
      }
    }
  }
  for (size_t j = 0; j < pieces.size(); ++j) {
    if (pieces[j].size() != counts[j]) {  // a piece Redis evicted: the chunk is gone
      misses_.fetch_add(1, std::memory_order_relaxed);
      stopped = true;
      break;
    }
    Result<ChunkRecord> record = DecodeChunkPieces(keys[j], pieces[j]);
    Status wrong;
    if (!record.ok()) {
      wrong = record.status();
    } else {
      const uint64_t parent = j == 0 ? ask.parent : ask.hashes[j - 1];
      std::span<const uint32_t> block =
          ask.tokens.subspan(j * uint64_t{ask.chunk_tokens}, ask.chunk_tokens);
      const std::string what = "remote value " + keys[j] + ": ";
      if (record->chain_hash != ask.hashes[j] || record->parent_hash != parent ||
          record->position != ask.first_position + j) {
        wrong = Status::Corruption(what + "another chunk's (hash, parent or position)");
      } else if (record->name_space != ask.name_space) {
        wrong = Status::Corruption(what + "a chunk of another namespace");
      } else if (record->tokens.size() != block.size() ||
                 !std::equal(block.begin(), block.end(), record->tokens.begin())) {
        wrong = Status::Corruption(what + "holds other tokens than its hash names");
      }
    }
    if (!wrong.ok()) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      stopped = true;
      break;
    }
    out.push_back(std::move(record).value());
    pieces[j].clear();
    pieces[j].shrink_to_fit();
  }
  hits_.fetch_add(out.size(), std::memory_order_relaxed);
  *complete = !stopped && out.size() == n;
  return out;
}

Result<Record> RemoteTier::Fetch(uint64_t seq) {
  const std::string base = EntryKey(base_prefix_, seq);
  std::optional<std::string> first;
  {
    MutexLock lk(&fetch_mu_);
    Result<std::vector<std::optional<std::string>>> got = fetch_client_.GetAll({base});
    if (!got.ok()) {
      NoteFailure(got.status());
      return got.status();
    }
    first = std::move((*got)[0]);
  }
  if (!first.has_value()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound("remote has no entry " + base);
  }
  return FetchRest(base, std::move(*first));
}

Result<Record> RemoteTier::FetchRest(const std::string& base, std::string first) {
  auto miss = [&]() -> Status {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound("remote has no entry " + base);
  };
  std::vector<std::string> pieces;
  pieces.push_back(std::move(first));
  Result<PieceHeader> header = CheckFirstPiece(base, pieces[0]);
  if (!header.ok()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return header.status();
  }
  if (header->piece_count > 1) {
    std::vector<std::string> keys;
    for (uint32_t i = 1; i < header->piece_count; ++i) keys.push_back(PieceKey(base, i));
    MutexLock lk(&fetch_mu_);
    Result<std::vector<std::optional<std::string>>> rest = fetch_client_.GetAll(keys);
    if (!rest.ok()) {
      NoteFailure(rest.status());
      return rest.status();
    }
    for (std::optional<std::string>& v : *rest) {
      if (!v.has_value()) return miss();  // a piece Redis evicted: the entry is gone
      pieces.push_back(std::move(*v));
    }
  }
  Result<Record> record = DecodePieces(base, pieces);
  if (!record.ok()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return record.status();
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  return record;
}

namespace {

// Reads an entry's value as it arrives: piece and record headers, tokens and metadata
// into a buffer of its own, then the payload where the target says. A value in several
// pieces (or one not even a piece header long) is read whole instead, for Fetch's
// checks; one whose headers are wrong is read into scratch and refused.
class EntrySink final : public RedisClient::ValueSink {
 public:
  static constexpr uint64_t kHeads = sizeof(PieceHeader) + sizeof(RecordHeader);

  EntrySink(std::string_view base, const RemoteTier::PayloadTarget& target,
            std::vector<std::byte>* held)
      : base_(base), target_(target), held_(held) {}

  void Begin(uint64_t length) override {
    length_ = length;
    if (length < kHeads) whole_.resize(length);
    head_.resize(std::min(length, kHeads));
  }
  std::span<std::byte> Into(uint64_t offset) override {
    if (length_ < kHeads) return std::span(whole_).subspan(offset);
    if (offset < kHeads) return std::span(head_).subspan(offset);
    if (!parsed_) Parse();
    if (!error_.ok()) return std::span(scratch_);
    if (!whole_.empty()) return std::span(whole_).subspan(offset);
    if (offset < data_start_) return std::span(head_).subspan(offset);
    if (!targeted_) Target();
    return data_.subspan(offset - data_start_);
  }

  // After the read: Ok and the entry's head when it is sound, else what is wrong.
  // *whole is set (to the value) when it is to be checked as pieces instead.
  Result<RemoteTier::Head> Finish(std::string* whole) {
    if (length_ < kHeads || (parsed_ && error_.ok() && !whole_.empty())) {
      whole->assign(reinterpret_cast<const char*>(whole_.data()), whole_.size());
      return Status::NotFound("");  // not an error: see *whole
    }
    if (!parsed_) Parse();  // a value of exactly the two headers
    KVC_RETURN_IF_ERROR(error_);
    if (!targeted_) Target();
    XXH3_state_t* st = XXH3_createState();
    if (st == nullptr) return Status::IOError("out of memory for a checksum");
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, head_.data() + sizeof(PieceHeader), head_.size() - sizeof(PieceHeader));
    XXH3_64bits_update(st, data_.data(), data_.size());
    const uint64_t sum = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    if (sum != piece_.piece_checksum) {
      return Status::Corruption("remote value " + std::string(base_) + ": checksum mismatch");
    }
    return std::move(head_out_);
  }

 private:
  // The headers are in head_: checks them, and makes room for the tokens and metadata.
  void Parse() {
    parsed_ = true;
    Result<PieceHeader> piece = CheckPieceHeader(base_, head_, length_, 0);
    if (!piece.ok()) {
      error_ = piece.status();
      return;
    }
    piece_ = *piece;
    if (piece_.piece_count > 1) {
      whole_.resize(length_);
      std::memcpy(whole_.data(), head_.data(), kHeads);
      return;
    }
    // One piece holds the whole record, and its checksum is the record's.
    if (piece_.record_bytes != piece_.piece_bytes ||
        piece_.record_checksum != piece_.piece_checksum) {
      error_ = Status::Corruption("remote value " + std::string(base_) +
                                  ": its one piece is not its whole record");
      return;
    }
    Result<RecordHeader> record =
        CheckRecordHeader(base_, std::span(head_).subspan(sizeof(PieceHeader)),
                          piece_.record_bytes);
    if (!record.ok()) {
      error_ = record.status();
      return;
    }
    head_out_.token_count = record->token_count;
    head_out_.priority = record->priority;
    head_out_.data_bytes = record->data_bytes;
    prefix_len_ = record->prefix_len;
    metadata_len_ = record->metadata_len;
    data_start_ = kHeads + uint64_t{prefix_len_} * 4 + metadata_len_;
    head_.resize(data_start_);
  }
  // The tokens and metadata are in head_: asks the target where the payload goes.
  void Target() {
    targeted_ = true;
    const std::byte* p = head_.data() + kHeads;
    head_out_.prefix_tokens.resize(prefix_len_);
    if (prefix_len_ > 0) std::memcpy(head_out_.prefix_tokens.data(), p, prefix_len_ * 4ull);
    p += prefix_len_ * 4ull;
    head_out_.metadata.assign(reinterpret_cast<const char*>(p), metadata_len_);
    data_ = target_(head_out_);
    if (data_.size() != head_out_.data_bytes) {
      held_->resize(head_out_.data_bytes);
      data_ = std::span(*held_);
    }
  }

  const std::string_view base_;
  const RemoteTier::PayloadTarget& target_;
  std::vector<std::byte>* const held_;
  uint64_t length_ = 0;
  std::vector<std::byte> head_;   // the headers, then the tokens and metadata
  std::vector<std::byte> whole_;  // a value read whole
  std::array<std::byte, 64 << 10> scratch_;  // a refused value's bytes
  bool parsed_ = false, targeted_ = false;
  Status error_;
  PieceHeader piece_{};
  uint32_t prefix_len_ = 0, metadata_len_ = 0;
  uint64_t data_start_ = 0;
  RemoteTier::Head head_out_;
  std::span<std::byte> data_;
};

}  // namespace

Result<RemoteTier::Head> RemoteTier::FetchInto(uint64_t seq, const PayloadTarget& target,
                                               std::vector<std::byte>* held) {
  const std::string base = EntryKey(base_prefix_, seq);
  std::string whole;
  {
    auto sink = std::make_unique<EntrySink>(base, target, held);
    MutexLock lk(&fetch_mu_);
    bool found = false;
    Status s = fetch_client_.GetStreamed(base, *sink, &found);
    if (!s.ok()) {
      NoteFailure(s);
      return s;
    }
    if (!found) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return Status::NotFound("remote has no entry " + base);
    }
    Result<Head> head = sink->Finish(&whole);
    if (head.ok()) {
      hits_.fetch_add(1, std::memory_order_relaxed);
      return head;
    }
    if (head.status().code() != Code::kNotFound) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return head.status();
    }
  }
  // In several pieces: checked whole as Fetch does, then copied to the target.
  KVC_ASSIGN_OR_RETURN(Record record, FetchRest(base, std::move(whole)));
  Head head;
  head.token_count = record.token_count;
  head.priority = record.priority;
  head.prefix_tokens = std::move(record.prefix_tokens);
  head.metadata = std::move(record.metadata);
  head.data_bytes = record.data.size();
  std::span<std::byte> into = target(head);
  if (into.size() == record.data.size()) {
    if (!into.empty()) std::memcpy(into.data(), record.data.data(), into.size());
  } else {
    *held = std::move(record.data);
  }
  return head;
}

Status RemoteTier::Probe() {
  RedisClient probe(client_options_);
  return probe.Ping();
}

RemoteCounters RemoteTier::Unrecorded() const {
  RemoteCounters c;
  c.sent = sent_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  c.failures = failures_.load(std::memory_order_relaxed);
  c.hits = hits_.load(std::memory_order_relaxed);
  c.misses = misses_.load(std::memory_order_relaxed);
  c.refused = refused_.load(std::memory_order_relaxed);
  return c;
}

std::pair<std::string, double> RemoteTier::UnrecordedError() const {
  MutexLock lk(&error_mu_);
  return {last_error_, last_error_at_};
}

void RemoteTier::RecordCounters() {
  if (!hooks_.record) return;
  RemoteCounters d;
  d.sent = sent_.exchange(0, std::memory_order_relaxed);
  d.dropped = dropped_.exchange(0, std::memory_order_relaxed);
  d.failures = failures_.exchange(0, std::memory_order_relaxed);
  d.hits = hits_.exchange(0, std::memory_order_relaxed);
  d.misses = misses_.exchange(0, std::memory_order_relaxed);
  d.refused = refused_.exchange(0, std::memory_order_relaxed);
  std::string error;
  double error_at = 0;
  {
    MutexLock lk(&error_mu_);
    error.swap(last_error_);
    error_at = last_error_at_;
  }
  bool any = d.sent + d.dropped + d.failures + d.hits + d.misses + d.refused > 0;
  if (!any && error.empty()) return;
  if (!hooks_.record(d, error, error_at).ok()) {
    // Kept for the next try.
    sent_.fetch_add(d.sent, std::memory_order_relaxed);
    dropped_.fetch_add(d.dropped, std::memory_order_relaxed);
    failures_.fetch_add(d.failures, std::memory_order_relaxed);
    hits_.fetch_add(d.hits, std::memory_order_relaxed);
    misses_.fetch_add(d.misses, std::memory_order_relaxed);
    refused_.fetch_add(d.refused, std::memory_order_relaxed);
    MutexLock lk(&error_mu_);
    if (last_error_.empty()) last_error_ = error;
  }
}

}  // namespace kvcache::remote
