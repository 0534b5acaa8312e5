#include "remote_tier.h"

#include <cstdlib>
#include <new>

#include "clock.h"

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

void RemoteTier::EnqueueEvicted(uint64_t seq, uint64_t token_count, int32_t priority,
                                std::span<const std::byte> prefix_tokens,
                                std::string_view metadata,
                                std::span<const std::byte> data) noexcept {
  const uint64_t bytes = data.size() + prefix_tokens.size() + metadata.size() + 64;
  {
    MutexLock lk(&mu_);
    if (stop_ || queue_.size() >= options_.queue_entries ||
        queued_bytes_ + bytes > options_.queue_bytes) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queued_bytes_ += bytes;  // held while encoding, so concurrent evictions stay bounded
  }
  Item item{seq, 0, {}, bytes};
  try {
    item.pieces = EncodePieces(EntryKey(base_prefix_, seq), token_count, priority,
                               prefix_tokens, metadata, data, options_.piece_bytes);
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

void RemoteTier::NoteFailure(const Status& s) {
  failures_.fetch_add(1, std::memory_order_relaxed);
  MutexLock lk(&error_mu_);
  last_error_ = s.message();
  last_error_at_ = NowSeconds();
}

Status RemoteTier::Send(Item& item, bool* retry) {
  *retry = false;
  const std::string base = EntryKey(base_prefix_, item.seq);
  std::vector<std::string> encoded;
  const std::vector<std::string>* pieces = &item.pieces;
  if (item.pieces.empty()) {
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
