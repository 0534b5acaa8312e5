// Manager's remote tier: configuration, status and read-through.
#include <cstdlib>
#include <cstring>

#include "kvcache/manager.h"
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

Result<std::vector<std::byte>> Manager::ReadThrough(std::string_view pool, PoolHandle& handle,
                                                    uint64_t seq, const Status& miss) {
  std::shared_ptr<remote::RemoteTier> tier = impl_->hub->TierFor(pool);
  if (tier == nullptr) return miss;
  Result<remote::Record> record = tier->Fetch(seq);
  if (!record.ok()) return miss;  // not there, refused, or no answer in time
  PutOptions options;
  options.prefix_tokens = std::move(record->prefix_tokens);
  options.priority = record->priority;
  options.metadata = std::move(record->metadata);
  if (ValidatePutOptions(options).ok()) {
    // Best effort: with no room here the bytes are still served.
    RemoteHub::Warming warming;
    Result<PutReservation> r =
        handle.Reserve(seq, record->data.size(), record->token_count, options, std::nullopt);
    if (r.ok()) {
      if (!record->data.empty()) {
        std::memcpy(r->data().data(), record->data.data(), record->data.size());
      }
      r->Commit().IgnoreError();
    }
  }
  return std::move(record->data);
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
