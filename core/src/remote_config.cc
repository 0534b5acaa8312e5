// Parsing of what a user gives for a pool's remote: mode names, URLs, namespaces.
#include <charconv>
#include <string>

#include "kvcache/remote.h"

namespace kvcache {

Result<RemoteMode> ParseRemoteMode(std::string_view text) {
  if (text == "write-through") return RemoteMode::kWriteThrough;
  if (text == "write-back") return RemoteMode::kWriteBack;
  if (text == "read-only") return RemoteMode::kReadOnly;
  return Status::InvalidArgument("invalid remote mode '" + std::string(text.substr(0, 64)) +
                                 "': expected write-through, write-back or read-only");
}

std::string_view RemoteModeName(RemoteMode mode) {
  switch (mode) {
    case RemoteMode::kWriteThrough:
      return "write-through";
    case RemoteMode::kWriteBack:
      return "write-back";
    case RemoteMode::kReadOnly:
      return "read-only";
  }
  return "unknown";
}

std::string RemoteUrl::ToString() const {
  if (is_unix()) {
    return "unix://" + socket_path + (db != 0 ? "?db=" + std::to_string(db) : "");
  }
  bool v6 = host.find(':') != std::string::npos;
  return "redis://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) +
         (db != 0 ? "/" + std::to_string(db) : "");
}

namespace {

Status BadUrl(std::string_view text, std::string_view why) {
  // A user and password are never echoed (error messages end up in logs).
  std::string_view safe = text;
  std::string masked;
  size_t scheme = text.find("://");
  size_t at = text.rfind('@');
  if (scheme != std::string_view::npos && at != std::string_view::npos && at > scheme) {
    masked = std::string(text.substr(0, scheme + 3)) + "***" + std::string(text.substr(at));
    safe = masked;
  }
  std::string shown;
  for (char c : safe.substr(0, 200)) shown += (c < 0x20 || c == 0x7f) ? '?' : c;
  return Status::InvalidArgument("invalid remote URL '" + shown + "': " + std::string(why));
}

// Redis numbers its databases 0..15 by default; a server may allow more.
Result<uint32_t> ParseDb(std::string_view url, std::string_view digits) {
  uint32_t db = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), db);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
      db > 1'000'000) {
    return BadUrl(url, "the database must be a number");
  }
  return db;
}

constexpr std::string_view kSecretRefusal =
    "a user or password in the URL is refused (the URL is stored and shown); put the "
    "password in the environment variable CORTEX_REMOTE_PASSWORD";

}  // namespace

Result<RemoteUrl> ParseRemoteUrl(std::string_view text) {
  RemoteUrl url;
  constexpr std::string_view kUnix = "unix://";
  constexpr std::string_view kRedis = "redis://";
  if (text.substr(0, kUnix.size()) == kUnix) {
    std::string_view rest = text.substr(kUnix.size());
    size_t q = rest.find('?');
    std::string_view path = rest.substr(0, q);
    if (path.empty() || path.front() != '/') {
      return BadUrl(text, "a unix socket URL names an absolute path: unix:///path/to.sock");
    }
    if (path.find('@') != std::string_view::npos) return BadUrl(text, kSecretRefusal);
    if (path.size() > 107) return BadUrl(text, "the socket path is longer than 107 bytes");
    url.socket_path = std::string(path);
    if (q != std::string_view::npos) {
      std::string_view query = rest.substr(q + 1);
      if (query.substr(0, 3) != "db=") return BadUrl(text, "the only query is ?db=N");
      KVC_ASSIGN_OR_RETURN(url.db, ParseDb(text, query.substr(3)));
    }
    return url;
  }
  if (text.substr(0, kRedis.size()) != kRedis) {
    return BadUrl(text, "expected redis://HOST:PORT[/DB] or unix:///PATH[?db=N]");
  }
  std::string_view rest = text.substr(kRedis.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos) return BadUrl(text, kSecretRefusal);
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return BadUrl(text, "unclosed '[' in the host");
    host = authority.substr(1, close - 1);
    if (authority.substr(close + 1, 1) != ":") return BadUrl(text, "a port is required");
    port = authority.substr(close + 2);
  } else {
    size_t colon = authority.rfind(':');
    if (colon == std::string_view::npos) return BadUrl(text, "a port is required (HOST:PORT)");
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return BadUrl(text, "an IPv6 address goes in brackets: redis://[::1]:6379");
    }
  }
  if (host.empty() || host.size() > 253) return BadUrl(text, "the host is missing");
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':' || c == '_';
    if (!ok) return BadUrl(text, "the host has a character that is not allowed");
  }
  uint32_t port_number = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() ||
      port_number == 0 || port_number > 65535) {
    return BadUrl(text, "the port must be a number from 1 to 65535");
  }
  url.host = std::string(host);
  url.port = static_cast<uint16_t>(port_number);
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      KVC_ASSIGN_OR_RETURN(url.db, ParseDb(text, db));
    }
  }
  return url;
}

Status ValidateRemoteNamespace(std::string_view name_space) {
  if (name_space.empty() || name_space.size() > 128) {
    return Status::InvalidArgument("a remote namespace is 1 to 128 bytes");
  }
  for (char c : name_space) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '/' || c == '-';
    if (!ok) {
      return Status::InvalidArgument("invalid remote namespace '" +
                                     std::string(name_space.substr(0, 128)) +
                                     "': only letters, digits and . _ : @ / - are allowed");
    }
  }
  return Status::Ok();
}

}  // namespace kvcache
