// Manager's remote tier: configuration, status and read-through.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "manager_impl.h"
#include "redis_client.h"
#include "remote_format.h"

namespace kvcache {

Status Manager::SetRemote(std::string_view pool, const std::optional<RemoteConfig>& remote) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  std::optional<RemoteConfig> canonical = remote;
  if (canonical.has_value()) {
    KVC_ASSIGN_OR_RETURN(RemoteUrl url, ParseRemoteUrl(canonical->url));
    canonical->url = url.ToString();
    if (!canonical->name_space.empty()) {
      KVC_RETURN_IF_ERROR(ValidateRemoteNamespace(canonical->name_space));
    } else {
      // The pool name is the default namespace; it must be a valid one as well.
      KVC_RETURN_IF_ERROR(ValidateRemoteNamespace(pool));
    }
  }
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  KVC_RETURN_IF_ERROR(cat->SetRemote(pool, canonical));
  impl_->hub->Invalidate(pool);
  return Status::Ok();
}

Result<RemoteStatus> Manager::GetRemoteStatus(std::string_view pool) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  KVC_ASSIGN_OR_RETURN(RemoteStatus st, cat->GetRemoteStatus(pool));
  if (st.configured && st.config.name_space.empty()) st.config.name_space = std::string(pool);
  std::pair<std::string, double> my_error;
  RemoteCounters mine = impl_->hub->Unrecorded(pool, &my_error);
  // This process's own failure, not recorded yet, is news to the catalog's reader too.
  if (!my_error.first.empty() && my_error.second >= st.last_error_at) {
    st.last_error = std::move(my_error.first);
    st.last_error_at = my_error.second;
  }
  st.counters.sent += mine.sent;
  st.counters.dropped += mine.dropped;
  st.counters.failures += mine.failures;
  st.counters.hits += mine.hits;
  st.counters.misses += mine.misses;
  st.counters.refused += mine.refused;
  return st;
}

Status Manager::FlushRemote(std::string_view pool, uint32_t timeout_ms) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  std::shared_ptr<remote::RemoteTier> tier = impl_->hub->TierFor(pool);
  if (tier != nullptr) {
    tier->Flush(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms));
  }
  return Status::Ok();
}

Status Manager::ReadThrough(std::string_view pool, PoolHandle& handle, uint64_t seq,
                            const Status& miss, std::vector<std::byte>* out) {
  std::shared_ptr<remote::RemoteTier> tier = impl_->hub->TierFor(pool);
  if (tier == nullptr) return miss;
  RemoteHub::Warming warming;  // what is stored here came from the remote
  // The payload goes from the socket into the reservation, which is committed only
  // once the value checks out (aborted otherwise: a refused value is never visible).
  std::optional<PutReservation> reservation;
  auto target = [&](const remote::RemoteTier::Head& head) -> std::span<std::byte> {
    PutOptions options;
    options.prefix_tokens = head.prefix_tokens;
    options.priority = head.priority;
    options.metadata = head.metadata;
    if (!ValidatePutOptions(options).ok()) return {};
    Result<PutReservation> r =
        handle.Reserve(seq, head.data_bytes, head.token_count, options, std::nullopt);
    if (!r.ok()) return {};  // no room here: the bytes are still served
    reservation.emplace(std::move(r).value());
    return reservation->data();
  };
  std::vector<std::byte> held;
  Result<remote::RemoteTier::Head> head = tier->FetchInto(seq, target, &held);
  if (!head.ok()) {
    if (reservation.has_value()) reservation->Abort().IgnoreError();
    return miss;  // not there, refused, or no answer in time
  }
  if (reservation.has_value() && reservation->data().size() == head->data_bytes) {
    if (out != nullptr) out->assign(reservation->data().begin(), reservation->data().end());
    reservation->Commit().IgnoreError();
  } else if (out != nullptr) {
    *out = std::move(held);
  }
  return Status::Ok();
}

void Manager::MatchThrough(std::string_view pool, PoolHandle& handle,
                           std::string_view name_space, std::span<const uint32_t> tokens,
                           ChunkMatch& match) {
  std::shared_ptr<remote::RemoteTier> tier = impl_->hub->TierFor(pool);
  if (tier == nullptr) return;
  const auto deadline = std::chrono::steady_clock::now() + tier->options().timeout;
  const uint32_t bt = match.chunk_tokens;
  const size_t whole = tokens.size() / bt;
  const uint64_t seed = ChunkChainSeed(name_space);
  // The hashes of the chunks past the match, continuing its chain.
  const size_t start = match.chunks.size();
  std::vector<uint64_t> hashes(whole - start);
  uint64_t h = start == 0 ? seed : match.chunks.back().hash;
  for (size_t c = start; c < whole; ++c) {
    hashes[c - start] = h = ChainHash(h, tokens.subspan(c * uint64_t{bt}, bt));
  }
  size_t next = start;
  // A first batch of a few chunks (most asks miss at once, or want a short run), then
  // batches of about kBatchBytes, as the first tells how large this pool's chunks are:
  // each batch is one pipelined round trip, stored before the next is asked for.
  constexpr size_t kFirstBatch = 32;
  constexpr uint64_t kBatchBytes = 64ull << 20;
  size_t batch = kFirstBatch;
  RemoteHub::Warming warming;  // what is stored here came from the remote
  while (next < whole) {
    // Out of time between batches: the answer is what came so far (not a failure).
    if (std::chrono::steady_clock::now() >= deadline) return;
    const size_t count = std::min(batch, whole - next);
    remote::RemoteTier::ChunkAsk ask;
    ask.name_space = name_space;
    ask.seed = seed;
    ask.parent = next == 0 ? seed : match.chunks.back().hash;
    ask.first_position = static_cast<uint32_t>(next + 1);
    ask.chunk_tokens = bt;
    ask.hashes = std::span<const uint64_t>(hashes).subspan(next - start, count);
    ask.tokens = tokens.subspan(next * uint64_t{bt}, count * uint64_t{bt});
    bool complete = false;
    std::vector<remote::ChunkRecord> got = tier->FetchChunks(ask, deadline, &complete);
    if (got.empty()) return;
    std::vector<std::span<const std::byte>> bytes;
    bytes.reserve(got.size());
    uint64_t largest = 1;
    for (const remote::ChunkRecord& r : got) {
      bytes.emplace_back(r.data);
      largest = std::max<uint64_t>(largest, r.data.size());
    }
    Result<size_t> added =
        handle.ExtendMatch(match, name_space, ask.tokens.first(got.size() * uint64_t{bt}), bytes);
    if (!added.ok() || *added < got.size() || !complete) return;  // no room, or the end
    next += got.size();
    batch = static_cast<size_t>(std::max<uint64_t>(1, kBatchBytes / largest));
  }
}

void ProbeRemote(RemoteStatus& status, uint32_t timeout_ms) {
  if (!status.configured) return;
  Result<RemoteUrl> url = ParseRemoteUrl(status.config.url);
  if (!url.ok()) {
    status.reachable = false;
    status.probe_error = url.status().message();
    return;
  }
  remote::RedisClient::Options o;
  o.url = *url;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  if (const char* pw = std::getenv(kRemotePasswordEnv); pw != nullptr) o.password = pw;
  remote::RedisClient client(o);
  Status s = client.Ping();
  status.reachable = s.ok();
  if (!s.ok()) status.probe_error = s.message();
}

}  // namespace kvcache
