#include "kvcache/manager.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "clock.h"
#include "file_util.h"
#include "kvcache/catalog.h"
#include "kvcache/prefix.h"
#include "pool_handle.h"
#include "process_table.h"
#include "manager_impl.h"
#include "shm_segment.h"
#include "thread_annotations.h"

namespace kvcache {

ManagerOptions ResolveOptions(ManagerOptions options) {
  if (options.home.empty()) {
    if (const char* env = std::getenv("CORTEX_HOME"); env != nullptr && *env != '\0') {
      options.home = env;
    } else {
      const char* home = std::getenv("HOME");
      options.home = std::string(home != nullptr && *home != '\0' ? home : "/root") + "/.cortex";
    }
  }
  if (options.shm_prefix.empty()) {
    const char* env = std::getenv("CORTEX_SHM_PREFIX");
    options.shm_prefix = env != nullptr && *env != '\0' ? env : "cortex_kv_";
  }
  if (options.catalog_path.empty()) options.catalog_path = options.home + "/kv_cache.db";
  return options;
}

Status ValidateShmPrefix(std::string_view prefix) {
  auto bad = [&](std::string_view why) {
    std::string shown;
    for (char c : prefix.substr(0, 80)) shown += (c < 0x20 || c == 0x7f) ? '?' : c;
    return Status::InvalidArgument("invalid shm prefix '" + shown + "' (CORTEX_SHM_PREFIX): " +
                                   std::string(why));
  };
  if (prefix.empty() || prefix.size() > kMaxShmPrefixLength) {
    return bad("must be 1 to " + std::to_string(kMaxShmPrefixLength) + " bytes");
  }
  for (char c : prefix) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return bad("only letters, digits, '.', '_' and '-' are allowed");
  }
  if (prefix.front() == '.' || prefix.front() == '-') {
    return bad("must start with a letter, a digit or '_'");
  }
  if (prefix.find("..") != std::string_view::npos) return bad("must not contain '..'");
  return Status::Ok();
}


namespace {

Status PoolNotFound(std::string_view pool) {
  return Status::NotFound("pool '" + std::string(pool) + "' not found");
}

}  // namespace

Manager::Manager(ManagerOptions options)
    : options_(ResolveOptions(std::move(options))), impl_(std::make_unique<Impl>()) {
  impl_->hub = std::make_shared<RemoteHub>(this, options_);
}

namespace {

// Leaves a catalog inherited across a fork open and untouched for good (closing a
// connection is a use of it). Held from a static, so it stays reachable.
// Called under no lock (the first call registers the list's lock with ForkGuard).
void Abandon(std::unique_ptr<Catalog> inherited) {
  if (inherited == nullptr) return;
  struct Abandoned {
    Mutex mu;
    std::vector<std::unique_ptr<Catalog>> catalogs GUARDED_BY(mu);
    ForkGuard mu_across_fork{&mu, ForkRank::kLeaf};
  };
  static auto* abandoned = new Abandoned;
  MutexLock lock(&abandoned->mu);
  abandoned->catalogs.push_back(std::move(inherited));
}

}  // namespace

Manager::~Manager() {
  // Sends what was queued for remotes (bounded by remote_flush_ms) while the catalog
  // and the pools are still here.
  impl_->hub.reset();
  std::unique_ptr<Catalog> inherited;
  {
    MutexLock lock(&impl_->catalog_mu);
    if (impl_->catalog_epoch != ForkEpoch()) inherited = std::move(impl_->catalog);
  }
  Abandon(std::move(inherited));
}

Status Manager::CheckOptions() const { return ValidateShmPrefix(options_.shm_prefix); }

std::string Manager::ShmName(std::string_view pool) const {
  return options_.shm_prefix + std::string(pool);
}

std::string Manager::DefaultSnapshotPath(std::string_view pool) const {
  return options_.home + "/kv_persist/" + std::string(pool) + ".cache";
}

namespace {

std::string ShmPath(const std::string& shm_name) { return "/dev/shm/" + shm_name; }

std::string DiskPath(const ManagerOptions& o, std::string_view pool) {
  return o.home + "/kv_disk/" + std::string(pool) + ".pool";
}

}  // namespace

Status Manager::CheckHome() {
  KVC_RETURN_IF_ERROR(CheckOptions());
  return MakeTrustedDir(options_.home);
}

Result<Catalog*> Manager::catalog() {
  KVC_RETURN_IF_ERROR(CheckOptions());
  const uint64_t epoch = ForkEpoch();
  std::unique_ptr<Catalog> inherited;
  {
    MutexLock lock(&impl_->catalog_mu);
    if (impl_->catalog != nullptr && impl_->catalog_epoch == epoch) return impl_->catalog.get();
    if (impl_->catalog != nullptr) inherited = std::move(impl_->catalog);
  }
  Abandon(std::move(inherited));
  // Opened outside catalog_mu: opening waits for forks to be out of the way, which
  // take catalog_mu (see fork_guard.h).
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<Catalog> opened, Catalog::Open(options_.catalog_path));
  std::unique_ptr<Catalog> extra;  // another thread opened one meanwhile: closed unused
  Catalog* cat;
  {
    MutexLock lock(&impl_->catalog_mu);
    if (impl_->catalog == nullptr || impl_->catalog_epoch != epoch) {
      inherited = std::move(impl_->catalog);  // from before a later fork
      impl_->catalog = std::move(opened);
      impl_->catalog_epoch = epoch;
    } else {
      extra = std::move(opened);
    }
    cat = impl_->catalog.get();
  }
  Abandon(std::move(inherited));
  return cat;
}

namespace {

std::string HexOf(const PoolHandle::PoolId& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : id) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// Whose the pool's segment must be: the recorded creator (the caller for records made
// before owners were recorded), writable by others only as the pool was created.
SegmentOwner OwnerOf(const PoolRecord& record, const PoolConfig& config) {
  SegmentOwner owner;
  owner.uid = record.owner_uid >= 0 ? static_cast<uid_t>(record.owner_uid) : geteuid();
  owner.allowed_write_bits = static_cast<mode_t>(config.mode) & 022;
  return owner;
}

// Why a file under a pool's segment name is not used: it is not a pool of this catalog.
Status Foreign(const std::string& path, std::string_view pool, const std::string& catalog) {
  struct stat st {};
  std::string whose;
  if (lstat(path.c_str(), &st) == 0) whose = " (owned by " + DescribeUid(st.st_uid) + ")";
  return Status::PermissionDenied("refusing segment " + path + whose + ": pool '" +
                                  std::string(pool) + "' is not in the catalog " + catalog +
                                  " (remove the file if it is not a pool of yours, or use "
                                  "another CORTEX_SHM_PREFIX)");
}

bool Exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace

Result<std::shared_ptr<PoolHandle>> Manager::Open(std::string_view pool) {
  {
    ReaderLock lock(&impl_->mu);
    auto it = impl_->pools.find(pool);
    if (it != impl_->pools.end() && !it->second->destroyed()) return it->second;
  }
  KVC_RETURN_IF_ERROR(CheckOptions());
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  std::string shm_path = ShmPath(ShmName(pool));
  std::string disk_path = DiskPath(options_, pool);
  Result<PoolRecord> record = cat->GetPool(pool);
  if (!record.ok()) {
    if (record.status().code() != Code::kNotFound) return record.status();
    // Only pools this catalog created are ever mapped: a file under the name is
    // someone else's (planted, or another home's pool).
    for (const std::string& path : {shm_path, disk_path}) {
      if (Exists(path)) return Foreign(path, pool, cat->path());
    }
    return PoolNotFound(pool);
  }
  KVC_ASSIGN_OR_RETURN(PoolConfig config, PoolConfig::FromJson(record->config_json));
  std::string path = config.tier == Tier::kDisk ? disk_path : shm_path;
  Result<std::shared_ptr<PoolHandle>> opened = PoolHandle::Open(path, OwnerOf(*record, config));
  if (!opened.ok()) {
    if (opened.status().code() != Code::kNotFound) return opened.status();
    return Status::NotFound("pool '" + std::string(pool) +
                            "' is not loaded (its memory is gone, e.g. after a reboot); "
                            "restore it with: cortex cache restore " + std::string(pool));
  }
  if (record->pool_id.empty() || HexOf((*opened)->pool_id()) != record->pool_id) {
    return Status::PermissionDenied(
        "refusing segment " + path + ": it is not the segment pool '" + std::string(pool) +
        "' was created with (its pool id differs from the catalog's" +
        (record->pool_id.empty() ? ", which recorded none" : "") +
        "): another catalog's pool of that name, or one made before this catalog knew it; "
        "remove the file if it is stale, then restore the pool from its snapshot");
  }
  if ((*opened)->name() != pool) {
    return Status::Corruption("segment for pool '" + std::string(pool) + "' names pool '" +
                              (*opened)->name() + "'");
  }
  (*opened)->set_listener(impl_->hub);
  WriterLock lock(&impl_->mu);
  impl_->pools[std::string(pool)] = *opened;
  return opened;
}

Status Manager::LoadPool(const PoolConfig& config) {
  KVC_RETURN_IF_ERROR(config.Validate());
  if (config.tier == Tier::kGpu) {
    return Status::NotSupported("tier 'gpu' needs GPU support, which this build does not have");
  }
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  std::string path = ShmPath(ShmName(config.name));
  if (config.tier == Tier::kDisk) {
    KVC_RETURN_IF_ERROR(MakeTrustedDir(options_.home + "/kv_disk"));
    path = DiskPath(options_, config.name);
  }
  for (const std::string& existing : {ShmPath(ShmName(config.name)),
                                      DiskPath(options_, config.name)}) {
    if (!Exists(existing)) continue;
    // Ours (a live pool of this catalog) or not, an existing file is never adopted.
    Result<std::shared_ptr<PoolHandle>> ours = Open(config.name);
    if (!ours.ok() && ours.status().code() == Code::kPermissionDenied) return ours.status();
    return Status::AlreadyExists("pool '" + config.name + "' already exists");
  }
  PoolHandle::PoolId id = PoolHandle::NewPoolId();
  Result<std::shared_ptr<PoolHandle>> created = PoolHandle::Create(path, config, id);
  if (!created.ok()) {
    if (created.status().code() == Code::kAlreadyExists) {
      return Status::AlreadyExists("pool '" + config.name + "' already exists");
    }
    return created.status();
  }
  double now = NowSeconds();
  PoolRecord record{config.name, config.ToJson(), ShmName(config.name), now, now, HexOf(id),
                    static_cast<int64_t>(geteuid())};
  Status s = cat->InsertPool(record);
  if (s.code() == Code::kAlreadyExists) {
    Result<PoolRecord> old = cat->GetPool(config.name);
    if (old.ok()) record.created_at = old->created_at;
    s = cat->UpdatePool(record);
  }
  if (!s.ok()) {
    (*created)->MarkDestroyed();
    unlink(path.c_str());
    return s;
  }
  (*created)->set_listener(impl_->hub);
  WriterLock lock(&impl_->mu);
  impl_->pools[config.name] = *created;
  return Status::Ok();
}

Status Manager::CreatePool(const PoolConfig& config) {
  KVC_RETURN_IF_ERROR(config.Validate());
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  if (cat->GetPool(config.name).ok()) {
    return Status::AlreadyExists("pool '" + config.name + "' already exists");
  }
  return LoadPool(config);
}

bool Manager::ForgetIfReplaced(std::string_view pool) {
  std::shared_ptr<PoolHandle> handle;
  {
    ReaderLock lock(&impl_->mu);
    auto it = impl_->pools.find(pool);
    if (it == impl_->pools.end()) return false;
    handle = it->second;
  }
  if (handle->IsCurrent()) return false;
  WriterLock lock(&impl_->mu);
  auto it = impl_->pools.find(pool);
  if (it == impl_->pools.end() || it->second != handle) return false;
  impl_->pools.erase(it);
  return true;
}

std::optional<PoolOwner> Manager::CheckMapping(std::string_view pool) {
  std::shared_ptr<PoolHandle> handle;
  {
    ReaderLock lock(&impl_->mu);
    auto it = impl_->pools.find(pool);
    if (it == impl_->pools.end()) return std::nullopt;
    handle = it->second;
  }
  struct stat st {};
  if (handle->IsCurrent(&st)) {
    return PoolOwner{st.st_uid, st.st_gid, static_cast<uint32_t>(st.st_mode & 07777)};
  }
  WriterLock lock(&impl_->mu);
  auto it = impl_->pools.find(pool);
  if (it != impl_->pools.end() && it->second == handle) impl_->pools.erase(it);
  return std::nullopt;
}

Result<PoolOwner> Manager::Owner(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  struct stat st {};
  if (lstat(handle->path().c_str(), &st) != 0) {
    return ErrnoToStatus(errno, "stat " + handle->path());
  }
  return PoolOwner{st.st_uid, st.st_gid, static_cast<uint32_t>(st.st_mode & 07777)};
}

Status Manager::DestroyPool(std::string_view pool) {
  KVC_RETURN_IF_ERROR(CheckOptions());
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  Result<PoolRecord> record = cat->GetPool(pool);
  if (!record.ok() && record.status().code() != Code::kNotFound) return record.status();
  // The segment files to remove, each checked first: a file that is not ours is left
  // alone (and nothing else changes). Without a record, only the caller's own files.
  SegmentOwner owner{geteuid(), 0};
  if (record.ok()) {
    if (Result<PoolConfig> config = PoolConfig::FromJson(record->config_json); config.ok()) {
      owner = OwnerOf(*record, *config);
    }
  }
  std::vector<std::string> ours;
  for (const std::string& path : {ShmPath(ShmName(pool)), DiskPath(options_, pool)}) {
    Status s = CheckSegmentPath(path, owner);
    if (s.code() == Code::kNotFound) continue;
    if (!s.ok()) return s;
    ours.push_back(path);
  }
  bool found = false;
  for (const std::string& path : ours) {
    Result<std::shared_ptr<PoolHandle>> handle = PoolHandle::Open(path, owner);
    if (handle.ok()) (*handle)->MarkDestroyed();
    if (unlink(path.c_str()) == 0) {
      found = true;
    } else if (errno != ENOENT) {
      return ErrnoToStatus(errno, "remove " + path);
    }
  }
  {
    WriterLock lock(&impl_->mu);
    if (auto it = impl_->pools.find(pool); it != impl_->pools.end()) impl_->pools.erase(it);
  }
  Status s = cat->DeletePool(pool);
  if (s.ok()) found = true;
  if (!s.ok() && s.code() != Code::kNotFound) return s;
  return found ? Status::Ok() : PoolNotFound(pool);
}

Status Manager::Attach(std::string_view pool, pid_t pid) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  KVC_RETURN_IF_ERROR(handle->Attach(pid));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  return cat->RecordAttach(pool, pid, NowSeconds());
}

Status Manager::Detach(std::string_view pool, pid_t pid) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  KVC_RETURN_IF_ERROR(handle->Detach(pid));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  Status s = cat->RecordDetach(pool, pid, NowSeconds());
  return s.code() == Code::kNotFound ? Status::Ok() : s;
}

Result<std::vector<std::string>> Manager::ListPools() {
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  KVC_ASSIGN_OR_RETURN(std::vector<PoolRecord> records, cat->ListPools());
  std::vector<std::string> names;
  names.reserve(records.size());
  for (const PoolRecord& r : records) names.push_back(r.name);
  return names;
}

Result<PoolConfig> Manager::GetConfig(std::string_view pool) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  Result<PoolRecord> record = cat->GetPool(pool);
  if (record.ok()) return PoolConfig::FromJson(record->config_json);
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  KVC_ASSIGN_OR_RETURN(PoolStats stats, handle->Stats());
  return stats.config;
}

Status Manager::Put(std::string_view pool, uint64_t seq, std::span<const std::byte> data,
                    uint64_t token_count, const PutOptions& options) {
  KVC_RETURN_IF_ERROR(ValidatePutOptions(options));
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  // As Reserve. The commit follows a copy later, well within the second for which the
  // hub keeps its answer, so without a write-through tier here the commit does not
  // ask again: the lookup (a mutex, a map, a clock read) was a tenth of a small put.
  std::shared_ptr<remote::RemoteTier> tier = impl_->hub->TierFor(pool);
  const bool writes_through =
      tier != nullptr && tier->options().config.mode == RemoteMode::kWriteThrough;
  KVC_ASSIGN_OR_RETURN(PutReservation r, handle->Reserve(seq, data.size(), token_count, options,
                                                         std::nullopt, writes_through));
  if (!data.empty()) std::memcpy(r.data().data(), data.data(), data.size());
  RemoteHub::Known known(pool, tier.get());  // the commit sends to it without asking again
  return r.Commit();
}

Result<PutReservation> Manager::Reserve(std::string_view pool, uint64_t seq, size_t size,
                                        uint64_t token_count, const PutOptions& options,
                                        const std::optional<EntryStats>& stats) {
  KVC_RETURN_IF_ERROR(ValidatePutOptions(options));
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  // The tier must be known before the reservation evicts (write-back hears evictions
  // under the pool lock, where the catalog is not read).
  impl_->hub->TierFor(pool);
  return handle->Reserve(seq, size, token_count, options, stats);
}

Result<std::vector<std::byte>> Manager::Get(std::string_view pool, uint64_t seq) {
  std::vector<std::byte> out;
  KVC_RETURN_IF_ERROR(GetInto(pool, seq, out));
  return out;
}

Status Manager::GetInto(std::string_view pool, uint64_t seq, std::vector<std::byte>& out) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  Status s = handle->GetInto(seq, out);
  if (s.code() != Code::kNotFound) return s;
  return ReadThrough(pool, *handle, seq, s, &out);
}

Result<EntryView> Manager::View(std::string_view pool, uint64_t seq) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  Result<EntryView> view = handle->View(seq);
  if (view.status().code() != Code::kNotFound) return view;
  KVC_RETURN_IF_ERROR(ReadThrough(pool, *handle, seq, view.status(), nullptr));
  // Stored locally by the read-through; its miss is counted already.
  Result<EntryView> warmed = handle->View(seq, /*count_access=*/false);
  if (!warmed.ok()) return view.status();  // no room for it here, or evicted at once
  return warmed;
}

Result<EntryView> Manager::Pin(std::string_view pool, uint64_t seq) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->View(seq, /*count_access=*/false);
}

Result<EntryInfo> Manager::Stat(std::string_view pool, uint64_t seq) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->Stat(seq);
}

Result<std::vector<EntryView>> Manager::GetByPrefix(std::string_view pool,
                                                     std::span<const uint32_t> tokens) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->ViewByPrefix(PrefixHashValue(tokens));
}

Result<std::vector<EntryInfo>> Manager::FindByPrefixHash(std::string_view pool,
                                                          std::string_view hash) {
  KVC_ASSIGN_OR_RETURN(uint64_t value, ParsePrefixHash(hash));
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->InfoByPrefix(value);
}

Result<PrefixMatch> Manager::LongestPrefix(std::string_view pool,
                                           std::span<const uint32_t> tokens) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->LongestPrefix(tokens);
}

Result<ChunkStoreResult> Manager::StoreChunks(std::string_view pool, std::string_view name_space,
                                              std::span<const uint32_t> tokens,
                                              std::span<const std::span<const std::byte>> chunks) {
  if (name_space.size() > kMaxChunkNamespaceBytes) {
    return Status::InvalidArgument("namespace of " + std::to_string(name_space.size()) +
                                   " bytes is longer than the limit of " +
                                   std::to_string(kMaxChunkNamespaceBytes));
  }
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  // Known before anything is evicted (see Reserve); a write-through tier sends each
  // chunk newly stored, chunks cached already were sent by whoever stored them.
  std::shared_ptr<remote::RemoteTier> tier = impl_->hub->TierFor(pool);
  const bool writes_through =
      tier != nullptr && tier->options().config.mode == RemoteMode::kWriteThrough;
  std::vector<std::pair<uint64_t, uint64_t>> stored;
  Result<ChunkStoreResult> result =
      handle->StoreChunks(name_space, tokens, chunks, writes_through ? &stored : nullptr);
  // Chunks stored before a failure stay stored: they are sent as well.
  for (const auto& [hash, generation] : stored) tier->EnqueueChunk(hash, generation);
  return result;
}

Result<ChunkMatch> Manager::Match(std::string_view pool, std::string_view name_space,
                                  std::span<const uint32_t> tokens) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  KVC_ASSIGN_OR_RETURN(ChunkMatch match, handle->MatchChunks(ChunkChainSeed(name_space), tokens));
  if (match.chunk_tokens != 0 && match.chunks.size() < tokens.size() / match.chunk_tokens) {
    MatchThrough(pool, *handle, name_space, tokens, match);
  }
  return match;
}

Result<std::vector<ChunkInfo>> Manager::Chunks(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->Chunks();
}

Result<ChunkInfo> Manager::StatChunk(std::string_view pool, uint64_t hash) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->StatChunk(hash);
}

Result<PinnedChunk> Manager::PinChunk(std::string_view pool, uint64_t hash) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->PinChunk(hash);
}

Status Manager::Remove(std::string_view pool, uint64_t seq) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->Remove(seq);
}

Result<EntryInfo> Manager::UpdateEntry(std::string_view pool, uint64_t seq, uint64_t generation,
                                       const EntryUpdate& update) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->Update(seq, generation, update);
}

Result<uint64_t> Manager::Clear(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->Clear();
}

Result<uint64_t> Manager::Evict(std::string_view pool, double percent) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  impl_->hub->TierFor(pool);  // see Reserve
  return handle->Evict(percent);
}

Result<std::vector<EntryInfo>> Manager::Entries(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->Entries();
}

Result<std::vector<EntryView>> Manager::PinAll(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  return handle->PinAll();
}

Result<PoolStats> Manager::Stats(std::string_view pool) {
  Result<std::shared_ptr<PoolHandle>> handle = Open(pool);
  if (handle.ok()) {
    KVC_ASSIGN_OR_RETURN(PoolStats st, (*handle)->Stats());
    st.shm_name = ShmName(pool);
    if (Result<PoolConfig> config = GetConfig(pool); config.ok()) st.config.mode = config->mode;
    if (Result<RemoteStatus> remote = GetRemoteStatus(pool); remote.ok()) st.remote = *remote;
    return st;
  }
  if (handle.status().code() != Code::kNotFound) return handle.status();
  // Known to the catalog but without a segment: report it as not loaded.
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  Result<PoolRecord> record = cat->GetPool(pool);
  if (!record.ok()) return handle.status();
  PoolStats st;
  KVC_ASSIGN_OR_RETURN(st.config, PoolConfig::FromJson(record->config_json));
  st.shm_name = record->shm_name;
  st.loaded = false;
  st.size = st.config.size_bytes;
  st.created = record->created_at;
  st.modified = record->last_modified;
  if (Result<RemoteStatus> remote = GetRemoteStatus(pool); remote.ok()) st.remote = *remote;
  return st;
}

Result<PoolSpace> Manager::Space(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<PoolHandle> handle, Open(pool));
  return handle->Space();
}

Result<std::vector<PoolStats>> Manager::StatsAll() {
  KVC_ASSIGN_OR_RETURN(std::vector<std::string> names, ListPools());
  std::vector<PoolStats> out;
  out.reserve(names.size());
  for (const std::string& name : names) {
    Result<PoolStats> st = Stats(name);
    if (st.ok()) {
      out.push_back(std::move(st).value());
      continue;
    }
    PoolStats row;
    row.config.name = name;
    row.shm_name = ShmName(name);
    row.error = st.status().message();
    if (Result<Catalog*> cat = catalog(); cat.ok()) {
      if (Result<PoolRecord> record = (*cat)->GetPool(name); record.ok()) {
        if (Result<PoolConfig> config = PoolConfig::FromJson(record->config_json); config.ok()) {
          row.config = *config;
        }
        row.shm_name = record->shm_name;
        row.created = record->created_at;
        row.modified = record->last_modified;
      }
    }
    row.size = row.config.size_bytes;
    out.push_back(std::move(row));
  }
  return out;
}

Status Manager::RecordStats(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  KVC_ASSIGN_OR_RETURN(Catalog * cat, catalog());
  KVC_ASSIGN_OR_RETURN(PoolHandle::CounterDelta d, handle->TakeUnrecorded());
  Status s = cat->AddStats(pool, static_cast<int64_t>(d.hits), static_cast<int64_t>(d.misses),
                           static_cast<int64_t>(d.evictions));
  if (!s.ok()) {
    // The counters stay unrecorded for the next call; if even that fails, say both.
    if (Status back = handle->GiveBack(d); !back.ok()) {
      return Status(s.code(), s.message() + "; and " + back.message());
    }
  }
  return s;
}

Result<HealthReport> Manager::Health(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(auto handle, Open(pool));
  KVC_ASSIGN_OR_RETURN(HealthReport report, handle->Health());
  report.stats.shm_name = ShmName(pool);
  if (Result<RemoteStatus> remote = GetRemoteStatus(pool); remote.ok()) {
    report.stats.remote = *remote;
    ProbeRemote(report.stats.remote, options_.remote_timeout_ms);
  }
  return report;
}

}  // namespace kvcache
