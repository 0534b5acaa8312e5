// Text and JSON renderings shared by the cortex CLI and kvcachefs. Every multi-line
// rendering ends with a newline; the one-line messages do not (the caller adds it).
#include <algorithm>
#include "kvcache/report.h"

#include <fmt/format.h>

#include <ctime>
#include <nlohmann/json.hpp>

#include "kvcache/size.h"

namespace kvcache {
namespace {

using nlohmann::json;

constexpr std::string_view kTableRow = "{:<20} {:<12} {:<12} {:<10} {:<10} {}\n";
// The same with the chunk columns, shown when any pool listed uses token chunks.
constexpr std::string_view kChunkTableRow =
    "{:<20} {:<12} {:<12} {:<10} {:<10} {:<10} {:<12} {:<10} {}\n";
constexpr std::string_view kEntriesRow = "{:<20} {:<10} {:<10} {:<10} {:<10} {}\n";

std::string Percent(double fraction) { return fmt::format("{:.1f}%", fraction * 100.0); }

// The data region size, from the live segment when there is one.
uint64_t DataSize(const PoolStats& stats) {
  return stats.loaded ? stats.size : stats.config.size_bytes;
}

// "YYYY-MM-DD HH:MM:SS" in local time; "-" for a zero timestamp.
std::string LocalTime(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm_local {};
  if (localtime_r(&t, &tm_local) == nullptr) return "-";
  char buf[32];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm_local);
  return n == 0 ? "-" : std::string(buf, n);
}

json RemoteJson(const RemoteStatus& r) {
  if (!r.configured) return nullptr;
  json j{
      {"url", r.config.url},
      {"mode", std::string(RemoteModeName(r.config.mode))},
      {"namespace", r.config.name_space},
      {"sent", r.counters.sent},
      {"dropped", r.counters.dropped},
      {"failures", r.counters.failures},
      {"hits", r.counters.hits},
      {"misses", r.counters.misses},
      {"refused", r.counters.refused},
      {"last_error", r.last_error.empty() ? json(nullptr) : json(r.last_error)},
      {"last_error_at", r.last_error_at},
  };
  if (r.reachable.has_value()) {
    j["reachable"] = *r.reachable;
    j["probe_error"] = r.probe_error.empty() ? json(nullptr) : json(r.probe_error);
  }
  return j;
}

// "sent 3, dropped 0, failures 0, hits 1, misses 0, refused 0"
std::string RemoteCounts(const RemoteCounters& c) {
  return fmt::format("sent {}, dropped {}, failures {}, hits {}, misses {}, refused {}", c.sent,
                     c.dropped, c.failures, c.hits, c.misses, c.refused);
}

std::string RemoteLine(const RemoteStatus& r) {
  return fmt::format("{} ({}, namespace {})", r.config.url, RemoteModeName(r.config.mode),
                     r.config.name_space);
}

json StatsJson(const PoolStats& s) {
  return json{
      {"remote", RemoteJson(s.remote)},
      {"name", s.config.name},
      {"shm_name", s.shm_name},
      {"loaded", s.loaded},
      {"size_bytes", DataSize(s)},
      {"used_bytes", s.used},
      {"free_bytes", s.free},
      {"block_count", s.block_count},
      {"block_size", s.config.block_size},
      {"entry_count", s.entry_count},
      {"hits", s.hits},
      {"misses", s.misses},
      {"evictions", s.evictions},
      {"puts", s.puts},
      {"hit_rate", s.hit_rate()},
      {"policy", std::string(PolicyName(s.config.policy))},
      {"tier", std::string(TierName(s.config.tier))},
      {"max_sequences", s.config.max_sequences},
      {"attached", s.attached},
      {"created", s.created},
      {"modified", s.modified},
      {"segment_bytes", s.segment_bytes},
      {"chunk_count", s.chunk_count},
      {"chunk_bytes", s.chunk_bytes},
      {"chunk_tokens", s.config.prefix_block_tokens},
      {"chunk_tokens_asked", s.chunk_tokens_asked},
      {"chunk_tokens_matched", s.chunk_tokens_matched},
      {"chunk_token_hit_rate", s.chunk_token_hit_rate()},
  };
}

// The pool's JSON, with "error" when it could not be read.
json StatsRowJson(const PoolStats& s) {
  json j = StatsJson(s);
  if (!s.error.empty()) j["error"] = s.error;
  return j;
}

// Metadata is JSON text by contract; embed it as JSON when it parses, else as a string
// so a malformed value is still visible rather than dropped.
json MetadataJson(const std::string& metadata) {
  if (metadata.empty()) return nullptr;
  json parsed = json::parse(metadata, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return metadata;
  return parsed;
}

std::string Dump(const json& j) { return j.dump(2) + "\n"; }

// Prometheus label values escape backslash, double quote and newline.
std::string LabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct Metric {
  std::string_view name;
  std::string_view type;
  std::string_view help;
  bool needs_segment;  // only meaningful for a loaded pool
  uint64_t (*value)(const PoolStats&);
};

constexpr Metric kMetrics[] = {
    {"kvcache_pool_bytes_total", "gauge", "Bytes in the pool's data region.", false,
     [](const PoolStats& s) { return DataSize(s); }},
    {"kvcache_pool_bytes_used", "gauge", "Bytes of the data region in use.", true,
     [](const PoolStats& s) { return s.used; }},
    {"kvcache_pool_bytes_free", "gauge", "Bytes of the data region free.", true,
     [](const PoolStats& s) { return s.free; }},
    {"kvcache_pool_entries", "gauge", "Entries stored in the pool.", true,
     [](const PoolStats& s) { return s.entry_count; }},
    {"kvcache_pool_hits_total", "counter", "Gets that found their entry.", true,
     [](const PoolStats& s) { return s.hits; }},
    {"kvcache_pool_misses_total", "counter", "Gets that found no entry.", true,
     [](const PoolStats& s) { return s.misses; }},
    {"kvcache_pool_evictions_total", "counter", "Entries evicted.", true,
     [](const PoolStats& s) { return s.evictions; }},
    {"kvcache_pool_attached_processes", "gauge", "Live processes attached to the pool.", true,
     [](const PoolStats& s) { return static_cast<uint64_t>(s.attached); }},
    {"kvcache_pool_loaded", "gauge", "1 when the pool's shared-memory segment exists.", false,
     [](const PoolStats& s) { return static_cast<uint64_t>(s.loaded ? 1 : 0); }},
    {"kvcache_pool_chunks", "gauge", "Token chunks stored in the pool.", true,
     [](const PoolStats& s) { return s.chunk_count; }},
    {"kvcache_pool_chunk_bytes", "gauge", "Bytes of the data region held by token chunks.", true,
     [](const PoolStats& s) { return s.chunk_bytes; }},
    {"kvcache_pool_chunk_tokens_asked_total", "counter",
     "Prompt tokens given to chunk matches.", true,
     [](const PoolStats& s) { return s.chunk_tokens_asked; }},
    {"kvcache_pool_chunk_tokens_matched_total", "counter",
     "Prompt tokens served from cached chunks.", true,
     [](const PoolStats& s) { return s.chunk_tokens_matched; }},
};

// Ratios, as Prometheus gauges in [0, 1].
struct RatioMetric {
  std::string_view name;
  std::string_view help;
  double (*value)(const PoolStats&);
};

constexpr RatioMetric kRatios[] = {
    {"kvcache_pool_hit_ratio", "Gets that found their entry / all gets (0 before any get).",
     [](const PoolStats& s) { return s.hit_rate(); }},
    {"kvcache_pool_chunk_token_hit_ratio",
     "Prompt tokens served from cached chunks / tokens asked (0 before any match).",
     [](const PoolStats& s) { return s.chunk_token_hit_rate(); }},
};

struct RemoteMetric {
  std::string_view name;
  std::string_view help;
  uint64_t RemoteCounters::*field;
};

constexpr RemoteMetric kRemoteMetrics[] = {
    {"kvcache_remote_sent_total", "Entries stored in the pool's remote.", &RemoteCounters::sent},
    {"kvcache_remote_dropped_total", "Entries that were to be sent to the remote and were not.",
     &RemoteCounters::dropped},
    {"kvcache_remote_failures_total", "Calls to the remote that failed or timed out.",
     &RemoteCounters::failures},
    {"kvcache_remote_hits_total", "Local misses served from the remote.", &RemoteCounters::hits},
    {"kvcache_remote_misses_total", "Local misses the remote did not have.",
     &RemoteCounters::misses},
    {"kvcache_remote_refused_total", "Remote values refused as corrupt or foreign.",
     &RemoteCounters::refused},
};

}  // namespace

std::string FormatStatusTable(const std::vector<PoolStats>& pools) {
  if (pools.empty()) return "No cache pools found\n";  // the original's words
  // The original's six columns, unless a pool holds or was asked for token chunks.
  bool chunks = std::any_of(pools.begin(), pools.end(), [](const PoolStats& s) {
    return s.chunk_count > 0 || s.chunk_tokens_asked > 0;
  });
  auto row = [chunks](std::string_view name, std::string_view size, std::string_view used,
                      std::string_view entries, std::string_view hit, std::string_view count,
                      std::string_view bytes, std::string_view token_hit,
                      std::string_view policy) {
    return chunks ? fmt::format(kChunkTableRow, name, size, used, entries, hit, count, bytes,
                                token_hit, policy)
                  : fmt::format(kTableRow, name, size, used, entries, hit, policy);
  };
  std::string out = row("POOL", "SIZE", "USED", "ENTRIES", "HIT RATE", "CHUNKS", "CHUNK BYTES",
                        "TOKEN HIT", "POLICY");
  for (const PoolStats& s : pools) {
    std::string size = FormatSizeShort(DataSize(s));
    std::string_view policy = PolicyName(s.config.policy);
    if (!s.error.empty()) {
      out += row(s.config.name, size, "-", "-", "-", "-", "-", "-",
                 fmt::format("{} (error: {})", policy, s.error));
    } else if (s.loaded) {
      out += row(s.config.name, size, Percent(s.used_fraction()), std::to_string(s.entry_count),
                 Percent(s.hit_rate()), std::to_string(s.chunk_count),
                 FormatSizeShort(s.chunk_bytes), Percent(s.chunk_token_hit_rate()), policy);
    } else {
      out += row(s.config.name, size, "-", "-", "-", "-", "-", "-",
                 fmt::format("{} (not loaded)", policy));
    }
  }
  // Remotes under the table, so that the seed's columns stay as they were.
  for (const PoolStats& s : pools) {
    if (!s.remote.configured) continue;
    out += fmt::format("{} remote: {}: {}\n", s.config.name, RemoteLine(s.remote),
                       RemoteCounts(s.remote.counters));
  }
  return out;
}

std::string FormatHealth(const HealthReport& report) {
  const PoolStats& s = report.stats;
  std::string out = fmt::format("Health check for '{}':\n", s.config.name);
  out += fmt::format("  Status: {}\n", report.healthy ? "HEALTHY" : "UNHEALTHY");
  out += fmt::format("  Shared Memory: {}{}\n", s.shm_name, s.loaded ? "" : " (not loaded)");
  out += fmt::format("  Total Size: {}\n", FormatSizeLong(DataSize(s)));
  if (s.loaded) {
    out += fmt::format("  Used: {} ({})\n", FormatSizeLong(s.used), Percent(s.used_fraction()));
    out += fmt::format("  Free: {}\n", FormatSizeLong(s.free));
    out += fmt::format("  Entries: {} / {}\n", s.entry_count, s.config.max_sequences);
    out += fmt::format("  Hit rate: {} ({} hits, {} misses)\n", Percent(s.hit_rate()), s.hits,
                       s.misses);
    out += fmt::format("  Evictions: {}\n", s.evictions);
    out += fmt::format("  Chunks: {} of {} tokens ({})\n", s.chunk_count,
                       s.config.prefix_block_tokens, FormatSizeLong(s.chunk_bytes));
    out += fmt::format("  Matched-token hit rate: {} ({} of {} tokens)\n",
                       Percent(s.chunk_token_hit_rate()), s.chunk_tokens_matched,
                       s.chunk_tokens_asked);
  }
  std::string pids;
  for (const AttachedProcess& p : report.processes) {
    pids += fmt::format("{}{}", pids.empty() ? "" : ", ", p.pid);
  }
  out += fmt::format("  Attached processes: {}{}\n", report.processes.size(),
                     pids.empty() ? "" : fmt::format(" (pids {})", pids));
  out += fmt::format("  Pinned entries: {}\n", report.pinned_entries);
  if (s.remote.configured) {
    std::string state = "not checked";
    if (s.remote.reachable.has_value()) {
      state = *s.remote.reachable ? "reachable"
                                  : fmt::format("UNREACHABLE ({})", s.remote.probe_error);
    }
    out += fmt::format("  Remote: {}: {}\n", RemoteLine(s.remote), state);
    out += fmt::format("  Remote counts: {}\n", RemoteCounts(s.remote.counters));
    if (!s.remote.last_error.empty()) {
      out += fmt::format("  Remote last failure: {} ({})\n", s.remote.last_error,
                         LocalTime(s.remote.last_error_at));
    }
  }
  if (report.recovered_processes > 0) {
    out += fmt::format("  Recovered dead processes: {}\n", report.recovered_processes);
  }
  if (!report.problems.empty()) {
    out += "  Problems:\n";
    for (const std::string& p : report.problems) out += fmt::format("    - {}\n", p);
  }
  return out;
}

std::string FormatRemote(std::string_view pool, const RemoteStatus& remote) {
  if (!remote.configured) return fmt::format("Pool '{}' has no remote\n", pool);
  std::string out = fmt::format("Remote of '{}': {}\n", pool, RemoteLine(remote));
  out += fmt::format("  {}\n", RemoteCounts(remote.counters));
  if (!remote.last_error.empty()) {
    out += fmt::format("  last failure: {} ({})\n", remote.last_error,
                       LocalTime(remote.last_error_at));
  }
  return out;
}

std::string RemoteSetMessage(std::string_view pool, const RemoteConfig& config) {
  return fmt::format("Pool '{}' uses remote {} ({}, namespace {})", pool, config.url,
                     RemoteModeName(config.mode),
                     config.name_space.empty() ? std::string(pool) : config.name_space);
}

std::string FormatEntries(std::string_view pool, const std::vector<EntryInfo>& entries) {
  if (entries.empty()) return fmt::format("No entries in pool '{}'\n", pool);  // the original's
  std::string out =
      fmt::format(kEntriesRow, "SEQ ID", "TOKENS", "SIZE", "ACCESSES", "PRIORITY", "LAST ACCESS");
  for (const EntryInfo& e : entries) {
    out += fmt::format(kEntriesRow, e.sequence_id, e.token_count, FormatSizeShort(e.size_bytes),
                       e.access_count, e.priority, LocalTime(e.last_accessed));
  }
  return out;
}

std::string FormatConfig(const PoolConfig& config) {
  std::string out;
  out += fmt::format("name: {}\n", config.name);
  out += fmt::format("size: {}\n", FormatSizeLong(config.size_bytes));
  out += fmt::format("size_bytes: {}\n", config.size_bytes);
  out += fmt::format("policy: {}\n", PolicyName(config.policy));
  out += fmt::format("tier: {}\n", TierName(config.tier));
  out += fmt::format("max_sequences: {}\n", config.max_sequences);
  out += fmt::format("block_size: {}\n", config.block_size);
  out += fmt::format("prefix_block_tokens: {}\n", config.prefix_block_tokens);
  out += fmt::format("mode: {:04o}\n", config.mode);
  return out;
}

std::string StatsToJson(const PoolStats& stats) { return Dump(StatsJson(stats)); }


std::string StatsListToJson(const std::vector<PoolStats>& pools) {
  json list = json::array();
  for (const PoolStats& s : pools) list.push_back(StatsRowJson(s));
  return Dump(list);
}

std::string HealthToJson(const HealthReport& report) {
  json processes = json::array();
  for (const AttachedProcess& p : report.processes) {
    processes.push_back({{"pid", p.pid}, {"attached_at", p.attached_at}});
  }
  json j{
      {"name", report.stats.config.name},
      {"healthy", report.healthy},
      {"problems", report.problems},
      {"processes", processes},
      {"pinned_entries", report.pinned_entries},
      {"recovered_processes", report.recovered_processes},
      {"stats", StatsJson(report.stats)},
  };
  return Dump(j);
}

std::string EntriesToJson(const std::vector<EntryInfo>& entries) {
  json list = json::array();
  for (const EntryInfo& e : entries) {
    list.push_back({
        {"sequence_id", e.sequence_id},
        {"token_count", e.token_count},
        {"size_bytes", e.size_bytes},
        {"prefix_hash", e.prefix_hash.empty() ? json(nullptr) : json(e.prefix_hash)},
        {"prefix_length", e.prefix_length},
        {"priority", e.priority},
        {"created", e.created},
        {"last_accessed", e.last_accessed},
        {"access_count", e.access_count},
        {"generation", e.generation},
        {"offset", e.offset},
        {"metadata", MetadataJson(e.metadata)},
    });
  }
  return Dump(list);
}

std::string FormatMetrics(const std::vector<PoolStats>& pools) {
  std::string out;
  for (const Metric& m : kMetrics) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name, m.type);
    for (const PoolStats& s : pools) {
      if (m.needs_segment && !s.loaded) continue;
      out += fmt::format("{}{{pool=\"{}\"}} {}\n", m.name, LabelValue(s.config.name), m.value(s));
    }
  }
  for (const RatioMetric& m : kRatios) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", m.name, m.help, m.name);
    for (const PoolStats& s : pools) {
      if (!s.loaded) continue;
      out += fmt::format("{}{{pool=\"{}\"}} {:.6f}\n", m.name, LabelValue(s.config.name),
                         m.value(s));
    }
  }
  for (const RemoteMetric& m : kRemoteMetrics) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n", m.name, m.help, m.name);
    for (const PoolStats& s : pools) {
      if (!s.remote.configured) continue;
      out += fmt::format("{}{{pool=\"{}\"}} {}\n", m.name, LabelValue(s.config.name),
                         s.remote.counters.*m.field);
    }
  }
  return out;
}

std::string CreatedMessage(const PoolConfig& config) {
  return fmt::format("Created cache pool '{}' ({}, policy={})", config.name,
                     FormatSizeLong(config.size_bytes), PolicyName(config.policy));
}

std::string EvictedMessage(std::string_view pool, uint64_t count) {
  return fmt::format("Evicted {} entries from '{}'", count, pool);
}

std::string RestoredMessage(std::string_view pool, uint64_t count) {
  return fmt::format("Restored {} entries to '{}'", count, pool);
}

std::string PersistedMessage(std::string_view pool, uint64_t count, std::string_view path) {
  return fmt::format("Persisted {} entries from '{}' to {}", count, pool, path);
}

std::string RestoreReport(std::string_view pool, const RestoreResult& result) {
  std::string text = RestoredMessage(pool, result.entries);
  if (result.created_pool) text += "\n(created the pool from the snapshot)";
  if (result.replaced) text += "\n(replaced the pool's previous entries)";
  if (result.chunks > 0) text += fmt::format("\n(and {} token chunks)", result.chunks);
  return text;
}

std::string PersistReport(std::string_view pool, const PersistResult& result) {
  std::string text = PersistedMessage(pool, result.entries, result.path);
  if (result.chunks > 0) text += fmt::format("\n(and {} token chunks)", result.chunks);
  return text;
}

}  // namespace kvcache
