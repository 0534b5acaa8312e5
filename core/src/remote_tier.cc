#include "remote_tier.h"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "clock.h"
#include "kvcache/prefix.h"

namespace kvcache::remote {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::seconds kRecordEvery{1};

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
  {
    MutexLock lk(&mu_);
    if (stop_ || queue_.size() >= options_.queue_entries) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(Item{seq, generation, {}, 0});
  }
  wake_.Signal();
}

void RemoteTier::EnqueueChunk(uint64_t hash, uint64_t generation) {
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
  }
  wake_.Signal();
}

template <typename Encode>
void RemoteTier::EnqueueEncoded(Item item, Encode encode) noexcept {
  const uint64_t bytes = item.bytes;
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
  }
  wake_.Signal();
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

Status RemoteTier::Send(Item& item, bool* retry) {
  *retry = false;
  std::string base = item.chunk ? item.key : EntryKey(base_prefix_, item.seq);
  std::vector<std::string> encoded;
  const std::vector<std::string>* pieces = &item.pieces;
  if (item.pieces.empty() && item.chunk) {
    if (!EncodeChunkRef(item, &base, &encoded)) return Status::Ok();
    pieces = &encoded;
  } else if (item.pieces.empty()) {
    Result<EntryView> view = hooks_.pin(item.seq);
    if (!view.ok()) {
      // Gone (evicted or removed) before its turn came.
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return Status::Ok();
    }
    const EntryInfo& info = view->info();
    if (info.generation != item.generation) return Status::Ok();  // replaced: sent in its turn
    std::vector<uint32_t> prefix = view->prefix_tokens();
    encoded = EncodePieces(base, info.token_count, info.priority, std::as_bytes(std::span(prefix)),
                           info.metadata, view->data(), options_.piece_bytes);
    view->Release().IgnoreError();
    pieces = &encoded;
  }
  // Piece 0 goes last: a reader that finds it finds every other piece of that write
  // (unless Redis evicted some since, which reads as a miss).
  std::vector<std::string> keys;
  std::vector<std::string> values;
  for (uint32_t i = 1; i < pieces->size(); ++i) {
    keys.push_back(PieceKey(base, i));
    values.push_back((*pieces)[i]);
  }
  keys.push_back(base);
  values.push_back((*pieces)[0]);
  Status s = sender_client_.SetAll(keys, values);
  if (s.ok()) {
    sent_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  NoteFailure(s);
  *retry = sender_client_.backing_off();
  if (!*retry) dropped_.fetch_add(1, std::memory_order_relaxed);  // refused, e.g. full
  return s;
}

void RemoteTier::Run() {
  Clock::time_point last_record = Clock::now();
  MutexLock lk(&mu_);
  for (;;) {
    // Until there is work, a stop, or the time to record.
    const Clock::time_point record_at = last_record + kRecordEvery;
    while (queue_.empty() && !stop_ && wake_.WaitUntil(&mu_, record_at)) {
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
    if (sender_client_.backing_off()) {
      // A flush (a process on its way out) does not wait for the remote to come back.
      if (flushers_ > 0 || stop_) {
        DropQueuedLocked();
        idle_.SignalAll();
        continue;
      }
      wake_.WaitUntil(&mu_, Clock::now() + std::chrono::milliseconds(20));
      continue;
    }
    Item item = std::move(queue_.front());
    queue_.pop_front();
    sending_ = true;
    lk.Unlock();
    bool retry = false;
    Status s = Send(item, &retry);
    lk.Lock();
    sending_ = false;
    queued_bytes_ -= item.bytes;
    if (!s.ok() && retry) {
      if (stop_) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
      } else {
        queued_bytes_ += item.bytes;
        queue_.push_front(std::move(item));
      }
    }
    if (queue_.empty()) idle_.SignalAll();
  }
}

void RemoteTier::Flush(Clock::time_point deadline) {
  MutexLock lk(&mu_);
  ++flushers_;
  wake_.SignalAll();
  while (!(queue_.empty() && !sending_) && idle_.WaitUntil(&mu_, deadline)) {
  }
  --flushers_;
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
  MutexLock lk(&fetch_mu_);
  Result<std::vector<std::optional<std::string>>> first = fetch_client_.GetAll({base});
  if (!first.ok()) {
    NoteFailure(first.status());
    return first.status();
  }
  auto miss = [&]() -> Status {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return Status::NotFound("remote has no entry " + base);
  };
  if (!(*first)[0].has_value()) return miss();
  std::vector<std::string> pieces;
  pieces.push_back(std::move(*(*first)[0]));
  Result<PieceHeader> header = CheckFirstPiece(base, pieces[0]);
  if (!header.ok()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return header.status();
  }
  if (header->piece_count > 1) {
    std::vector<std::string> keys;
    for (uint32_t i = 1; i < header->piece_count; ++i) keys.push_back(PieceKey(base, i));
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
