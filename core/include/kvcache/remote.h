// A pool's remote tier: a Redis server (or cluster) shared by many machines, behind the
// local pool. Entries go there (write-through or write-back) and a local miss is served
// from there, warming the local pool. Local correctness never depends on it: every call
// to it has a timeout, and a remote that is down only costs misses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kvcache/export.h"
#include "kvcache/status.h"

namespace kvcache {

// Catalog values are these names; never rename.
enum class RemoteMode : uint8_t {
  kWriteThrough = 0,  // every put is also sent, in the background
  kWriteBack = 1,     // an entry is sent when it is evicted locally
  kReadOnly = 2,      // local misses are served from the remote; nothing is sent
};

// "write-through", "write-back", "read-only" -> RemoteMode.
KVCACHE_EXPORT Result<RemoteMode> ParseRemoteMode(std::string_view text);
KVCACHE_EXPORT std::string_view RemoteModeName(RemoteMode mode);

// The environment variable holding the remote's password (Redis AUTH). A password is
// never part of a URL: URLs are shown by status and stored in the catalog.
inline constexpr const char* kRemotePasswordEnv = "CORTEX_REMOTE_PASSWORD";

// Where the remote is: redis://HOST:PORT[/DB] (HOST a name, an IPv4 address or an IPv6
// address in brackets) or unix:///PATH[?db=N].
struct KVCACHE_EXPORT RemoteUrl {
  std::string host;         // empty for a unix socket
  uint16_t port = 0;
  std::string socket_path;  // empty for TCP
  uint32_t db = 0;

  bool is_unix() const { return !socket_path.empty(); }
  // The canonical text of the URL.
  std::string ToString() const;
};

// InvalidArgument naming what is wrong: an unknown scheme, a missing or bad port, a
// password or user name in the URL, a bad database number.
KVCACHE_EXPORT Result<RemoteUrl> ParseRemoteUrl(std::string_view text);

// A namespace is 1..128 bytes of [A-Za-z0-9._:@/-]: it goes into every remote key, so
// that hosts sharing a Redis share the entries of the same model and never others'.
KVCACHE_EXPORT Status ValidateRemoteNamespace(std::string_view name_space);

// A pool's remote, as the catalog records it.
struct KVCACHE_EXPORT RemoteConfig {
  std::string url;  // canonical RemoteUrl text
  RemoteMode mode = RemoteMode::kWriteThrough;
  std::string name_space;  // empty: the pool's name
};

// What the remote tier did for a pool, added up over every process (each process adds
// its counts to the catalog about once a second and when it exits). Token chunks are
// counted with entries: one each sent, dropped, served or refused.
struct KVCACHE_EXPORT RemoteCounters {
  uint64_t sent = 0;      // entries stored in the remote
  uint64_t dropped = 0;   // entries that were to be sent and never were (queue full,
                          // remote down until the deadline, evicted before sending)
  uint64_t failures = 0;  // calls that failed: connection, timeout, error reply
  uint64_t hits = 0;      // local misses served from the remote
  uint64_t misses = 0;    // local misses the remote did not have either (for a chunk
                          // match: one per match the remote could not continue)
  uint64_t refused = 0;   // values read back that were corrupt or not ours
};

struct KVCACHE_EXPORT RemoteStatus {
  bool configured = false;
  RemoteConfig config;
  RemoteCounters counters;
  std::string last_error;   // the latest failure any process recorded, with its time
  double last_error_at = 0;
  // Set by Manager::Health only (it asks the remote): whether it answered in time.
  std::optional<bool> reachable;
  std::string probe_error;
};

}  // namespace kvcache
