// PersistPool / RestorePool / RestoreMissingPools: the Manager-facing side of snapshots.
// The byte format and the file handling live in snapshot_format.h and its .cc files.
#include "kvcache/snapshot.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>

#include "kvcache/catalog.h"
#include "kvcache/types.h"
#include "clock.h"
#include "file_util.h"
#include "manager_internals.h"
#include "pool_handle.h"
#include "snapshot_format.h"

namespace kvcache {
namespace {

// Payloads at least this large are restored with sendfile into the segment file.
constexpr uint64_t kKernelCopyMin = 64u << 10;

// Blocks an entry's extent takes in a pool: payload, then prefix tokens, then metadata.
uint64_t ExtentBlocks(const snapshot::RecordEntry& r, uint64_t block_size) {
  uint64_t bytes = r.meta.size + r.prefix_tokens.size() * sizeof(uint32_t) + r.metadata.size();
  return std::max<uint64_t>(1, (bytes + block_size - 1) / block_size);
}

// Blocks a put of `r` reserves in a pool of `block_size` (PoolHandle::Reserve's rule).
uint64_t PutBlocks(const snapshot::RecordEntry& r, uint64_t block_size) {
  uint64_t bytes = r.meta.size + r.prefix_tokens.size() * sizeof(uint32_t) + r.metadata.size();
  return (bytes + block_size - 1) / block_size;
}

PutOptions PutOptionsOf(const snapshot::RecordEntry& r) {
  PutOptions put;
  put.prefix_tokens = r.prefix_tokens;
  put.priority = r.meta.priority;
  put.metadata = r.metadata;
  return put;
}

// Every rule a put of each record will apply (ValidatePutOptions), checked before
// anything changes: a record the pool would refuse must not stop a restore midway.
Status CheckRecordsPuttable(const snapshot::SnapshotContents& contents, const std::string& path) {
  for (const auto& r : contents.records) {
    if (Status s = ValidatePutOptions(PutOptionsOf(r)); !s.ok()) {
      return Status::InvalidArgument("snapshot " + Quoted(path) + ": entry " +
                                     std::to_string(r.meta.sequence_id) +
                                     " cannot be restored: " + s.message() +
                                     " (nothing was changed)");
    }
  }
  return Status::Ok();
}

// How many of the first `n` records the pool holds now (same id and size): what a
// restore reports, so its message always matches the pool.
uint64_t CountPresent(Manager& manager, std::string_view pool,
                      const std::vector<snapshot::RecordEntry>& records, uint64_t n) {
  uint64_t present = 0;
  for (uint64_t i = 0; i < n && i < records.size(); ++i) {
    Result<EntryInfo> info = manager.Stat(pool, records[i].meta.sequence_id);
    if (info.ok() && info->size_bytes == records[i].meta.size) ++present;
  }
  return present;
}

// Blocks a chunk takes in a pool: payload, then tokens, then namespace.
uint64_t ChunkBlocks(const snapshot::ChunkEntry& c, uint64_t block_size) {
  uint64_t bytes = c.meta.size + c.tokens.size() * sizeof(uint32_t) + c.name_space.size();
  return (bytes + block_size - 1) / block_size;
}

// REQUIRES: config valid. NoSpace naming both sides when the entries and chunks cannot
// all fit; InvalidArgument when the chunks are not of the pool's chunk size.
Status CheckFits(const snapshot::SnapshotContents& contents, const PoolConfig& config,
                 const std::string& path) {
  for (const auto& c : contents.chunks) {
    if (c.tokens.size() != config.prefix_block_tokens) {
      return Status::InvalidArgument(
          "snapshot " + Quoted(path) + " holds chunks of " + std::to_string(c.tokens.size()) +
          " tokens; pool " + Quoted(config.name) + " holds chunks of " +
          std::to_string(config.prefix_block_tokens) + " (nothing was changed)");
    }
  }
  uint64_t blocks = 0;
  for (const auto& r : contents.records) blocks += ExtentBlocks(r, config.block_size);
  for (const auto& c : contents.chunks) blocks += ChunkBlocks(c, config.block_size);
  uint64_t capacity = config.size_bytes / config.block_size;
  uint64_t count = contents.records.size() + contents.chunks.size();
  if (count > config.max_sequences || blocks > capacity) {
    return Status::NoSpace("snapshot " + Quoted(path) + " holds " +
                           std::to_string(contents.records.size()) + " entries and " +
                           std::to_string(contents.chunks.size()) + " chunks in " +
                           std::to_string(blocks * config.block_size) + " bytes; pool " +
                           Quoted(config.name) + " has room for " +
                           std::to_string(config.max_sequences) + " entries in " +
                           std::to_string(capacity * config.block_size) + " bytes");
  }
  return Status::Ok();
}

// The pool config stored in the snapshot, renamed to the restore target.
Result<PoolConfig> SnapshotConfig(const snapshot::SnapshotContents& contents,
                                  std::string_view pool, const std::string& path) {
  Result<PoolConfig> config = PoolConfig::FromJson(contents.config_json);
  if (!config.ok()) {
    return Status::Corruption("snapshot " + Quoted(path) +
                              ": bad pool config: " + config.status().message());
  }
  config->name = std::string(pool);
  if (Status s = config->Validate(); !s.ok()) {
    return Status::Corruption("snapshot " + Quoted(path) + ": bad pool config: " + s.message());
  }
  for (const auto& r : contents.records) {
    if (r.meta.size > config->size_bytes) {
      return Status::Corruption("snapshot " + Quoted(path) + ": entry " +
                                std::to_string(r.meta.sequence_id) +
                                " is larger than the pool it came from");
    }
  }
  return config;
}

// Maps the pages of `bytes` writable in one call before a read() fills them: a fresh
// pool's pages are otherwise faulted in one at a time by the copy, which on this kind
// of machine costs more than the copy itself. Best effort (kernels before 5.14 lack it).
void PrefaultForWrite(std::span<std::byte> bytes) {
#ifdef MADV_POPULATE_WRITE
  if (bytes.size() < (256u << 10)) return;
  uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(bytes.data()) & ~(page - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(bytes.data()) + bytes.size();
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)bytes;
#endif
}

}  // namespace

Result<PersistResult> PersistPool(Manager& manager, std::string_view pool,
                                  const PersistOptions& options) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  PersistResult result;
  result.path = options.path.empty() ? manager.DefaultSnapshotPath(pool) : options.path;
  // The default directory must be private; a directory given with the path is made
  // (0700) when missing, as the original does.
  KVC_RETURN_IF_ERROR(options.path.empty() ? MakeTrustedDir(DirName(result.path))
                                           : MakeDirs(DirName(result.path)));

  KVC_ASSIGN_OR_RETURN(PoolConfig config, manager.GetConfig(pool));
  // Every entry pinned at one instant: puts and gets go on, these bytes stay put.
  KVC_ASSIGN_OR_RETURN(std::vector<EntryView> views, manager.PinAll(pool));
  std::sort(views.begin(), views.end(), [](const EntryView& a, const EntryView& b) {
    return a.info().sequence_id < b.info().sequence_id;
  });
  // The chunks too, pinned at one instant (a prefix-closed set), parents first.
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<PoolHandle> handle, ManagerInternals::Open(manager, pool));
  KVC_ASSIGN_OR_RETURN(std::vector<PinnedChunk> chunks, handle->PinAllChunks());
  uint64_t payload = 0;
  for (const EntryView& v : views) payload += v.info().size_bytes;
  for (const PinnedChunk& c : chunks) payload += c.info.size_bytes;

  KVC_ASSIGN_OR_RETURN(auto writer, snapshot::SnapshotWriter::Create(
                                        result.path, config.ToJson(), views.size(), payload,
                                        NowSeconds(), static_cast<uint32_t>(chunks.size())));
  std::vector<EntryRecord> manifest;
  manifest.reserve(views.size());
  uint64_t done = 0;
  uint64_t next_progress = 0;
  for (EntryView& v : views) {
    const EntryInfo& info = v.info();
    std::vector<uint32_t> tokens = v.prefix_tokens();
    snapshot::RecordMeta meta{info.sequence_id, info.size_bytes,    info.token_count,
                              info.priority,    info.created,       info.last_accessed,
                              info.access_count};
    KVC_RETURN_IF_ERROR(writer->AddRecord(meta, tokens, info.metadata, v.data()));
    EntryRecord rec;
    rec.pool_name = std::string(pool);
    rec.sequence_id = static_cast<int64_t>(info.sequence_id);
    rec.prefix_hash = info.prefix_hash;
    rec.created_at = info.created;
    rec.last_accessed = info.last_accessed;
    rec.access_count = static_cast<int64_t>(info.access_count);
    rec.token_count = static_cast<int64_t>(info.token_count);
    rec.size_bytes = static_cast<int64_t>(info.size_bytes);
    rec.offset = static_cast<int64_t>(info.offset);
    rec.priority = info.priority;
    rec.metadata = info.metadata;
    manifest.push_back(std::move(rec));
    done += info.size_bytes;
    // The bytes are in the file (or the writer's buffer) now: let eviction have them.
    KVC_RETURN_IF_ERROR(v.Release());
    if (options.progress && done >= next_progress) {
      options.progress(done, payload);
      next_progress = done + (64u << 20);
    }
  }
  for (PinnedChunk& c : chunks) {
    const ChunkInfo& info = c.info;
    snapshot::ChunkMeta meta{info.hash,    info.parent_hash,   info.size_bytes,
                             info.position, info.created,      info.last_accessed,
                             info.access_count};
    KVC_RETURN_IF_ERROR(
        writer->AddChunk(meta, c.view.prefix_tokens(), info.name_space, c.view.data()));
    done += info.size_bytes;
    KVC_RETURN_IF_ERROR(c.view.Release());
    if (options.progress && done >= next_progress) {
      options.progress(done, payload);
      next_progress = done + (64u << 20);
    }
  }
  KVC_RETURN_IF_ERROR(writer->Finish());
  result.entries = views.size();
  result.chunks = chunks.size();
  result.bytes = payload;
  if (options.progress) options.progress(payload, payload);

  KVC_ASSIGN_OR_RETURN(Catalog * catalog, ManagerInternals::catalog(manager));
  if (Status s = catalog->ReplaceEntries(pool, manifest); !s.ok()) {
    return Status(s.code(), "snapshot " + Quoted(result.path) +
                                " was written, but recording its manifest failed: " +
                                s.message());
  }
  if (Status s = manager.RecordStats(pool); !s.ok()) {
    return Status(s.code(), "snapshot " + Quoted(result.path) +
                                " was written, but recording the pool's stats failed: " +
                                s.message());
  }
  return result;
}

Result<RestoreResult> RestorePool(Manager& manager, std::string_view pool,
                                  const RestoreOptions& options) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(pool));
  RestoreResult result;
  result.path = options.path.empty() ? manager.DefaultSnapshotPath(pool) : options.path;

  // Pass 1: the whole file, every checksum, before anything changes.
  uint64_t file_bytes = 0;
  std::function<void(uint64_t, uint64_t)> validate_progress;
  if (options.progress) {
    validate_progress = [&](uint64_t done, uint64_t total) {
      file_bytes = total;
      options.progress(done, 2 * total);
    };
  }
  // The default path is inside $CORTEX_HOME: only from a directory nobody else can
  // write, and never through a symlink.
  if (options.path.empty()) {
    Status dir = CheckTrustedDir(DirName(result.path));
    if (!dir.ok() && dir.code() != Code::kNotFound) return dir;
  }
  KVC_ASSIGN_OR_RETURN(auto reader,
                       snapshot::SnapshotReader::Open(result.path, options.path.empty()));
  KVC_ASSIGN_OR_RETURN(snapshot::SnapshotContents contents,
                       reader->Validate(validate_progress));
  file_bytes = contents.file_bytes;
  KVC_ASSIGN_OR_RETURN(PoolConfig config, SnapshotConfig(contents, pool, result.path));
  KVC_RETURN_IF_ERROR(CheckRecordsPuttable(contents, result.path));

  // Where the entries go: a live pool, or one made from the snapshot's config.
  Result<PoolStats> stats = manager.Stats(pool);
  bool live = stats.ok() && stats->loaded;
  if (!stats.ok() && stats.status().code() != Code::kNotFound) return stats.status();
  if (live) {
    KVC_ASSIGN_OR_RETURN(PoolConfig current, manager.GetConfig(pool));
    // Entries that cannot all fit even in the empty pool would evict each other.
    KVC_RETURN_IF_ERROR(CheckFits(contents, current, result.path));
    if (!options.merge) {
      // Entries still pinned by readers keep their space through the clear below: the
      // new entries must fit around them, or nothing is changed.
      KVC_ASSIGN_OR_RETURN(std::shared_ptr<PoolHandle> handle, ManagerInternals::Open(manager, pool));
      std::vector<uint64_t> blocks;
      blocks.reserve(contents.records.size() + contents.chunks.size());
      for (const auto& r : contents.records) blocks.push_back(PutBlocks(r, current.block_size));
      for (const auto& c : contents.chunks) blocks.push_back(ChunkBlocks(c, current.block_size));
      if (Status s = handle->CheckRoomAfterClear(blocks); !s.ok()) {
        return Status(s.code(), "restore of " + Quoted(result.path) + ": " + s.message());
      }
    }
  } else {
    config.mode = PoolConfig{}.mode;
    if (options.mode) {
      config.mode = *options.mode;
    } else if (Result<Catalog*> cat = ManagerInternals::catalog(manager); cat.ok()) {
      if (Result<PoolRecord> record = (*cat)->GetPool(pool); record.ok()) {
        if (Result<PoolConfig> known = PoolConfig::FromJson(record->config_json); known.ok()) {
          config.mode = known->mode;
        }
      }
    }
    KVC_RETURN_IF_ERROR(config.Validate());
    KVC_RETURN_IF_ERROR(CheckFits(contents, config, result.path));
    // LoadPool keeps a catalog record left from before a reboot (its history) and
    // makes the segment from the snapshot's config.
    KVC_RETURN_IF_ERROR(manager.LoadPool(config));
    result.created_pool = true;
  }
  if (live && !options.merge) {
    KVC_ASSIGN_OR_RETURN(uint64_t cleared, manager.Clear(pool));
    (void)cleared;
    result.replaced = true;
  }

  // Pass 2: each payload read from the file straight into its reserved space.
  uint64_t done = 0;
  uint64_t next_progress = 0;
  for (const snapshot::RecordEntry& r : contents.records) {
    PutOptions put = PutOptionsOf(r);
    EntryStats entry_stats{r.meta.created, r.meta.last_accessed, r.meta.access_count};
    auto stopped = [&](const Status& s) {
      uint64_t present = CountPresent(manager, pool, contents.records, result.entries);
      return Status(s.code(), "restore of " + Quoted(result.path) + " into pool " +
                                  Quoted(pool) + " stopped after " +
                                  std::to_string(result.entries) + " of " +
                                  std::to_string(contents.records.size()) +
                                  " entries (the pool holds " + std::to_string(present) +
                                  " of them): " + s.message());
    };
    Result<PutReservation> reservation =
        manager.Reserve(pool, r.meta.sequence_id, r.meta.size, r.meta.token_count, put,
                        entry_stats);
    if (!reservation.ok()) {
      return stopped(reservation.status());
    }
    // Large payloads are copied file to file inside the kernel, as cp does: writing
    // through the mapping would fault its fresh pages in one at a time.
    Status copied;
    Result<std::pair<int, uint64_t>> range =
        r.meta.size >= kKernelCopyMin ? reservation->OpenFileRange()
                                      : Result<std::pair<int, uint64_t>>(Status::NotFound(""));
    if (range.ok()) {
      copied = reader->CopyPayload(r, range->first, range->second);
    } else {
      PrefaultForWrite(reservation->data());
      copied = reader->ReadPayload(r, reservation->data());
    }
    if (Status s = std::move(copied); !s.ok()) {
      if (Status aborted = reservation->Abort(); !aborted.ok()) {
        s = Status(s.code(), s.message() + "; and " + aborted.message());
      }
      return stopped(s);
    }
    if (Status s = reservation->Commit(); !s.ok()) return stopped(s);
    ++result.entries;
    result.bytes += r.meta.size;
    done += r.meta.size;
    if (options.progress && done >= next_progress) {
      uint64_t payload = std::max<uint64_t>(1, contents.payload_bytes);
      options.progress(file_bytes + done * file_bytes / payload, 2 * file_bytes);
      next_progress = done + (64u << 20);
    }
  }
  // Then the chunks, parents first (the file's order), each under its live parent.
  if (!contents.chunks.empty()) {
    KVC_ASSIGN_OR_RETURN(std::shared_ptr<PoolHandle> handle,
                         ManagerInternals::Open(manager, pool));
    for (const snapshot::ChunkEntry& c : contents.chunks) {
      ChunkInfo info;
      info.hash = c.meta.hash;
      info.parent_hash = c.meta.parent_hash;
      info.position = c.meta.position;
      info.token_count = static_cast<uint32_t>(c.tokens.size());
      info.size_bytes = c.meta.size;
      info.created = c.meta.created;
      info.last_accessed = c.meta.last_accessed;
      info.access_count = c.meta.access_count;
      info.name_space = c.name_space;
      auto fill = [&](std::span<std::byte> out) { return reader->ReadPayload(c, out); };
      Result<bool> stored = handle->RestoreChunk(info, c.tokens, fill);
      if (!stored.ok()) {
        return Status(stored.status().code(),
                      "restore of " + Quoted(result.path) + " into pool " + Quoted(pool) +
                          " stopped after all " + std::to_string(result.entries) +
                          " entries and " + std::to_string(result.chunks) + " of " +
                          std::to_string(contents.chunks.size()) +
                          " chunks: " + stored.status().message());
      }
      ++result.chunks;
      if (*stored) result.bytes += c.meta.size;
      done += c.meta.size;
      if (options.progress && done >= next_progress) {
        uint64_t payload = std::max<uint64_t>(1, contents.payload_bytes);
        options.progress(file_bytes + done * file_bytes / payload, 2 * file_bytes);
        next_progress = done + (64u << 20);
      }
    }
  }
  if (options.progress) options.progress(2 * file_bytes, 2 * file_bytes);
  // What the pool holds now, not what was written: a put that had to evict (another
  // process filled the pool meanwhile) may have pushed out an entry restored earlier.
  uint64_t present = CountPresent(manager, pool, contents.records, contents.records.size());
  if (present != contents.records.size()) {
    return Status::NoSpace("restore of " + Quoted(result.path) + " into pool " + Quoted(pool) +
                           " is incomplete: the pool holds " + std::to_string(present) + " of " +
                           std::to_string(contents.records.size()) +
                           " entries; the others were evicted to make room");
  }
  uint64_t chunks_present = 0;
  for (const snapshot::ChunkEntry& c : contents.chunks) {
    chunks_present += manager.StatChunk(pool, c.meta.hash).ok();
  }
  if (chunks_present != contents.chunks.size()) {
    return Status::NoSpace("restore of " + Quoted(result.path) + " into pool " + Quoted(pool) +
                           " is incomplete: the pool holds " + std::to_string(chunks_present) +
                           " of " + std::to_string(contents.chunks.size()) +
                           " chunks; the others were evicted to make room");
  }
  return result;
}

std::vector<std::pair<std::string, Result<RestoreResult>>> RestoreMissingPools(Manager& manager) {
  std::vector<std::pair<std::string, Result<RestoreResult>>> out;
  Result<Catalog*> catalog = ManagerInternals::catalog(manager);
  if (!catalog.ok()) {
    out.emplace_back("", catalog.status());
    return out;
  }
  Result<std::vector<PoolRecord>> pools = (*catalog)->ListPools();
  if (!pools.ok()) {
    out.emplace_back("", pools.status());
    return out;
  }
  for (const PoolRecord& record : *pools) {
    Result<PoolStats> stats = manager.Stats(record.name);
    if (!stats.ok()) {
      out.emplace_back(record.name, stats.status());
      continue;
    }
    if (stats->loaded) continue;
    std::string path = manager.DefaultSnapshotPath(record.name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) continue;  // nothing to restore it from
    out.emplace_back(record.name, RestorePool(manager, record.name));
  }
  return out;
}

}  // namespace kvcache
