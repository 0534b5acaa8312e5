#include "kvcache/catalog.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "file_util.h"
#include "fork_guard.h"
#include "thread_annotations.h"
#include "kvcache/types.h"

namespace kvcache {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// The columns of each table as of schema version 1 (the seed's implementation wrote the
// same), and how to create it.
struct TableShape {
  const char* name;
  const char* columns;  // comma-separated, in order
  const char* create;
};

constexpr TableShape kTablesV1[] = {
    {"pools", "name,config,shm_name,created_at,last_modified",
     "CREATE TABLE pools ("
     "  name TEXT PRIMARY KEY, config TEXT, shm_name TEXT,"
     "  created_at REAL, last_modified REAL)"},
    {"entries",
     "pool_name,sequence_id,prefix_hash,created_at,last_accessed,access_count,token_count,"
     "size_bytes,offset,priority,metadata",
     "CREATE TABLE entries ("
     "  pool_name TEXT, sequence_id INTEGER, prefix_hash TEXT,"
     "  created_at REAL, last_accessed REAL, access_count INTEGER, token_count INTEGER,"
     "  size_bytes INTEGER, \"offset\" INTEGER, priority INTEGER, metadata TEXT,"
     "  PRIMARY KEY (pool_name, sequence_id))"},
    {"stats", "pool_name,hits,misses,evictions,updated_at",
     "CREATE TABLE stats ("
     "  pool_name TEXT PRIMARY KEY, hits INTEGER DEFAULT 0, misses INTEGER DEFAULT 0,"
     "  evictions INTEGER DEFAULT 0, updated_at REAL)"},
    {"attachments", "id,pool_name,pid,attached_at,detached_at",
     "CREATE TABLE attachments ("
     "  id INTEGER PRIMARY KEY, pool_name TEXT, pid INTEGER,"
     "  attached_at REAL, detached_at REAL)"},
};

std::vector<std::string> ColumnsOf(SQLite::Database& db, const std::string& table) {
  std::vector<std::string> out;
  SQLite::Statement q(db, "SELECT name FROM pragma_table_info(?1)");
  q.bind(1, table);
  while (q.executeStep()) out.push_back(q.getColumn(0).getString());
  return out;
}

std::vector<std::string> SplitColumns(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    size_t comma = list.find(',');
    out.emplace_back(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return out;
}

// Gives `table` its version-1 shape. A table of another shape (the original Python
// implementation's: entries with an `id` and NOT NULL columns, stats without
// `updated_at`, attachments keyed by (pool_name, pid)) is rebuilt, keeping every row's
// values in the columns both shapes have.
void ReshapeTable(SQLite::Database& db, const TableShape& shape) {
  const std::string name = shape.name;
  std::vector<std::string> have = ColumnsOf(db, name);
  std::vector<std::string> want = SplitColumns(shape.columns);
  if (have.empty()) {
    db.exec(shape.create);
    return;
  }
  if (have == want) return;
  std::string common;
  for (const std::string& c : want) {
    if (std::find(have.begin(), have.end(), c) == have.end()) continue;
    if (!common.empty()) common += ", ";
    common += "\"" + c + "\"";
  }
  const std::string old = name + "_before_upgrade";
  db.exec("ALTER TABLE " + name + " RENAME TO " + old);
  db.exec(shape.create);
  if (!common.empty()) {
    db.exec("INSERT INTO " + name + " (" + common + ") SELECT " + common + " FROM " + old);
  }
  db.exec("DROP TABLE " + old);
}

// Migration i takes the schema from version i to i + 1. Each runs inside the
// IMMEDIATE transaction that also bumps user_version, so a crash or a second process
// opening at the same time never sees a half-migrated catalog. Version 0 is an empty
// file, a catalog of the seed's implementation (same tables), or the original Python
// implementation's catalog (other shapes; see ReshapeTable).
void MigrateTo1(SQLite::Database& db) {
  for (const TableShape& shape : kTablesV1) ReshapeTable(db, shape);
  db.exec("CREATE INDEX IF NOT EXISTS attachments_by_pool_pid ON attachments (pool_name, pid);");
}

// The segment identity of each pool: a segment is used only when its header carries
// the pool_id recorded here and its file belongs to owner_uid.
void MigrateTo2(SQLite::Database& db) {
  db.exec(
      "ALTER TABLE pools ADD COLUMN pool_id TEXT;"
      "ALTER TABLE pools ADD COLUMN owner_uid INTEGER;");
}

// Each pool's remote tier (its URL, mode and key namespace; NULL url: none) and the
// counters every process using it adds to.
void MigrateTo3(SQLite::Database& db) {
  db.exec(
      "ALTER TABLE pools ADD COLUMN remote_url TEXT;"
      "ALTER TABLE pools ADD COLUMN remote_mode TEXT;"
      "ALTER TABLE pools ADD COLUMN remote_namespace TEXT;"
      "CREATE TABLE remote_stats ("
      "  pool_name TEXT PRIMARY KEY, sent INTEGER DEFAULT 0, dropped INTEGER DEFAULT 0,"
      "  failures INTEGER DEFAULT 0, hits INTEGER DEFAULT 0, misses INTEGER DEFAULT 0,"
      "  refused INTEGER DEFAULT 0, last_error TEXT, last_error_at REAL, updated_at REAL);");
}

using Migration = void (*)(SQLite::Database&);
constexpr Migration kMigrations[] = {&MigrateTo1, &MigrateTo2, &MigrateTo3};
static_assert(std::size(kMigrations) == Catalog::kSchemaVersion,
              "one migration per schema version");

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int UserVersion(SQLite::Database& db) {
  SQLite::Statement q(db, "PRAGMA user_version");
  q.executeStep();
  return q.getColumn(0).getInt();
}

Code CodeForSqlite(int primary) {
  switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Code::kBusy;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Code::kCorruption;
    case SQLITE_FULL:
      return Code::kNoSpace;
    default:
      return Code::kIOError;
  }
}

// Creates the database file 0600 before SQLite does: SQLite would create it with
// 0644 & ~umask. SQLite gives the -wal and -shm files the main file's mode.
Status CreateFilePrivate(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return Status::Ok();
    return ErrnoToStatus(errno, "create catalog " + path);
  }
  Status s;
  if (fchmod(fd, 0600) != 0) s = ErrnoToStatus(errno, "chmod catalog " + path);
  close(fd);
  return s;
}

std::string OrEmpty(const SQLite::Column& c) { return c.isNull() ? std::string() : c.getString(); }

}  // namespace

struct Catalog::Impl {
  // Opening and closing run in a ForkGuard::Hold and every other use of the connection
  // under mu, which forks take: a child never inherits SQLite in the middle of a call.
  Impl(const std::string& path, int flags) {
    ForkGuard::Hold hold;
    {
      MutexLock lock(&mu);  // not shared yet: uncontended
      db.emplace(path, flags, kBusyTimeoutMs);
    }
    fork_guard.emplace(&mu, ForkRank::kCatalog);
  }
  ~Impl() {
    ForkGuard::Hold hold;
    fork_guard.reset();
    MutexLock lock(&mu);
    db.reset();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // A leaf lock: nothing else is taken while it is held.
  Mutex mu;
  // One connection, used by one thread at a time (Run hands it over under mu). Always
  // set between the constructor and the destructor.
  std::optional<SQLite::Database> db GUARDED_BY(mu);
  std::optional<ForkGuard> fork_guard;
  int schema_version = 0;
  // Why the catalog could only be opened read-only (e.g. its filesystem is full);
  // empty when it is writable. Set once in Open.
  std::string read_only_reason;
};

namespace {

Status FromException(const std::string& path, std::string_view what, const std::exception& e) {
  Code code = Code::kIOError;
  if (auto* se = dynamic_cast<const SQLite::Exception*>(&e)) {
    code = CodeForSqlite(se->getErrorCode());
  }
  return Status(code, "catalog " + path + ": " + std::string(what) + ": " + e.what());
}

// Runs `fn` on the connection under the mutex, turning exceptions into a Status.
template <typename R>
R Run(const std::string& path, Catalog::Impl& impl, std::string_view what,
      const std::function<R(SQLite::Database&)>& fn) {
  MutexLock lock(&impl.mu);
  try {
    return fn(*impl.db);
  } catch (const std::exception& e) {
    Status s = FromException(path, what, e);
    if (impl.read_only_reason.empty()) return s;
    return Status(s.code(), s.message() + " (the catalog is open read-only because " +
                                impl.read_only_reason + ")");
  }
}

// A URI that opens `path` read-only. `immutable` also skips the WAL index, which needs a
// writable -shm file: the last resort when the filesystem is full.
std::string ReadOnlyUri(const std::string& path, bool immutable) {
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c >= 0x7f) {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      uri += buf;
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri + (immutable ? "?mode=ro&immutable=1" : "?mode=ro");
}

}  // namespace

Catalog::Catalog(std::string path, std::unique_ptr<Impl> impl)
    : path_(std::move(path)), impl_(std::move(impl)) {}

Catalog::~Catalog() = default;

int Catalog::schema_version() const { return impl_->schema_version; }

namespace {

bool HasTables(SQLite::Database& db) {
  SQLite::Statement q(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'");
  q.executeStep();
  return q.getColumn(0).getInt() > 0;
}

// Before the first upgrade of a catalog that already holds tables (one written by the
// original implementation), a consistent copy of it goes beside it as `<path>.v0.bak`,
// private like the catalog. An existing backup is kept, never overwritten.
void BackUpBeforeUpgrade(SQLite::Database& db, const std::string& path) {
  if (!HasTables(db)) return;
  const std::string backup = path + ".v0.bak";
  int fd = open(backup.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return;
    throw SQLite::Exception("create " + backup + ": " + std::strerror(errno));
  }
  close(fd);
  try {
    SQLite::Statement q(db, "VACUUM INTO ?1");  // accepts an empty file
    q.bind(1, backup);
    q.exec();
  } catch (...) {
    unlink(backup.c_str());
    throw;
  }
}

// Puts a connection in WAL mode and brings its schema to kSchemaVersion; returns the
// version found. `step` names what was being done, for the error message.
int SetUp(SQLite::Database& db, const std::string& path, const char** step) {
  // journal_mode answers with the mode in force; a filesystem without shared-memory
  // support keeps the rollback journal, which is still correct, only slower.
  *step = "set WAL mode";
  {
    SQLite::Statement q(db, "PRAGMA journal_mode=WAL");
    q.executeStep();
  }
  *step = "set synchronous mode";
  db.exec("PRAGMA synchronous=NORMAL");
  *step = "read schema version";
  int version = UserVersion(db);
  if (version >= Catalog::kSchemaVersion) return version;
  if (version == 0) {
    *step = "back up the catalog before upgrading it";
    BackUpBeforeUpgrade(db, path);
  }
  *step = "migrate schema";
  SQLite::Transaction txn(db, SQLite::TransactionBehavior::IMMEDIATE);
  version = UserVersion(db);  // another process may have migrated meanwhile
  if (version >= Catalog::kSchemaVersion) return version;
  for (int v = version; v < Catalog::kSchemaVersion; ++v) kMigrations[v](db);
  db.exec("PRAGMA user_version = " + std::to_string(Catalog::kSchemaVersion));
  txn.commit();
  return Catalog::kSchemaVersion;
}

bool IsBusy(const std::exception& e) {
  auto* se = dynamic_cast<const SQLite::Exception*>(&e);
  return se != nullptr && CodeForSqlite(se->getErrorCode()) == Code::kBusy;
}

}  // namespace

Result<std::unique_ptr<Catalog>> Catalog::OpenReadOnly(const std::string& path,
                                                       const std::string& reason) {
  for (bool immutable : {false, true}) {
    try {
      auto impl = std::make_unique<Impl>(ReadOnlyUri(path, immutable),
                                         SQLite::OPEN_READONLY | SQLITE_OPEN_URI);
      int version;
      {
        // Not shared yet, so never contended; taken so every use of db is under mu.
        MutexLock lock(&impl->mu);
        version = UserVersion(*impl->db);
      }
      if (version != kSchemaVersion) continue;  // migrating needs a writable catalog
      impl->schema_version = version;
      impl->read_only_reason = reason;
      return std::unique_ptr<Catalog>(new Catalog(path, std::move(impl)));
    } catch (const std::exception&) {
      // try the next way, else report the read-write failure
    }
  }
  return Status::IOError(reason);
}

Result<std::unique_ptr<Catalog>> Catalog::Open(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("catalog path is empty");
  if (path.find('/') != std::string::npos) KVC_RETURN_IF_ERROR(MakeTrustedDir(DirName(path)));
  KVC_RETURN_IF_ERROR(CreateFilePrivate(path));
  // SQLite opens these by name, following symlinks: check them first. Nobody else can
  // add or swap one afterwards, since the directory is the caller's alone.
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    KVC_RETURN_IF_ERROR(CheckTrustedFile(path + suffix));
  }

  // Switching a new file to WAL takes an exclusive lock, and SQLite reports that
  // conflict (and some during WAL recovery) as SQLITE_BUSY without calling the busy
  // handler. Processes opening a fresh catalog at once hit it, so Open retries for as
  // long as the busy timeout would have waited.
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  for (int attempt = 0;; ++attempt) {
    const char* step = "open";
    try {
      auto impl = std::make_unique<Impl>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      int version;
      {
        MutexLock lock(&impl->mu);  // not shared yet: uncontended, see OpenReadOnly
        version = SetUp(*impl->db, path, &step);
      }
      if (version > kSchemaVersion) {
        return Status::NotSupported("catalog " + path + ": schema version " +
                                    std::to_string(version) + " is newer than supported (" +
                                    std::to_string(kSchemaVersion) + ")");
      }
      impl->schema_version = version;
      return std::unique_ptr<Catalog>(new Catalog(path, std::move(impl)));
    } catch (const std::exception& e) {
      if (!IsBusy(e) || Clock::now() >= deadline) {
        Status failed = FromException(path, step, e);
        // A full or read-only filesystem must not stop the commands that only read.
        if (failed.code() == Code::kIOError || failed.code() == Code::kNoSpace) {
          if (auto ro = OpenReadOnly(path, failed.message()); ro.ok()) return ro;
        }
        return failed;
      }
    }
    // Back off a little more each time, with jitter so racing processes spread out.
    std::this_thread::sleep_for(std::chrono::microseconds(
        (1000 << std::min(attempt, 5)) + (static_cast<unsigned>(getpid()) * 7919u) % 1000));
  }
}

namespace {

// Binds pool_id and owner_uid at `first` and first + 1 (NULL when unknown).
void BindIdentity(SQLite::Statement& q, int first, const PoolRecord& r) {
  if (r.pool_id.empty()) {
    q.bind(first);
  } else {
    q.bind(first, r.pool_id);
  }
  if (r.owner_uid < 0) {
    q.bind(first + 1);
  } else {
    q.bind(first + 1, r.owner_uid);
  }
}

}  // namespace

Status Catalog::InsertPool(const PoolRecord& r) {
  KVC_RETURN_IF_ERROR(ValidatePoolName(r.name));
  return Run<Status>(path_, *impl_, "insert pool", [&](SQLite::Database& db) -> Status {
    SQLite::Statement q(db,
                        "INSERT INTO pools (name, config, shm_name, created_at, last_modified,"
                        " pool_id, owner_uid)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING");
    q.bind(1, r.name);
    q.bind(2, r.config_json);
    q.bind(3, r.shm_name);
    q.bind(4, r.created_at);
    q.bind(5, r.last_modified);
    BindIdentity(q, 6, r);
    if (q.exec() == 0) return Status::AlreadyExists("pool '" + r.name + "' already exists");
    return Status::Ok();
  });
}

Status Catalog::UpdatePool(const PoolRecord& r) {
  return Run<Status>(path_, *impl_, "update pool", [&](SQLite::Database& db) -> Status {
    SQLite::Statement q(db,
                        "UPDATE pools SET config = ?, shm_name = ?, created_at = ?,"
                        " last_modified = ?, pool_id = ?, owner_uid = ? WHERE name = ?");
    q.bind(1, r.config_json);
    q.bind(2, r.shm_name);
    q.bind(3, r.created_at);
    q.bind(4, r.last_modified);
    BindIdentity(q, 5, r);
    q.bind(7, r.name);
    if (q.exec() == 0) return Status::NotFound("pool '" + r.name + "' not found");
    return Status::Ok();
  });
}

namespace {

PoolRecord ReadPool(SQLite::Statement& q) {
  PoolRecord r;
  r.name = OrEmpty(q.getColumn(0));
  r.config_json = OrEmpty(q.getColumn(1));
  r.shm_name = OrEmpty(q.getColumn(2));
  r.created_at = q.getColumn(3).getDouble();
  r.last_modified = q.getColumn(4).getDouble();
  r.pool_id = OrEmpty(q.getColumn(5));
  r.owner_uid = q.getColumn(6).isNull() ? -1 : q.getColumn(6).getInt64();
  return r;
}

}  // namespace

Result<PoolRecord> Catalog::GetPool(std::string_view name) {
  std::string key(name);
  return Run<Result<PoolRecord>>(path_, *impl_, "get pool", [&](SQLite::Database& db) -> Result<PoolRecord> {
    SQLite::Statement q(db,
                        "SELECT name, config, shm_name, created_at, last_modified, pool_id,"
                        " owner_uid FROM pools WHERE name = ?");
    q.bind(1, key);
    if (!q.executeStep()) return Status::NotFound("pool '" + key + "' not found");
    return ReadPool(q);
  });
}

Result<std::vector<PoolRecord>> Catalog::ListPools() {
  using R = Result<std::vector<PoolRecord>>;
  return Run<R>(path_, *impl_, "list pools", [&](SQLite::Database& db) -> R {
    SQLite::Statement q(db,
                        "SELECT name, config, shm_name, created_at, last_modified, pool_id,"
                        " owner_uid FROM pools ORDER BY name");
    std::vector<PoolRecord> out;
    while (q.executeStep()) out.push_back(ReadPool(q));
    return out;
  });
}

Status Catalog::DeletePool(std::string_view name) {
  std::string key(name);
  return Run<Status>(path_, *impl_, "delete pool", [&](SQLite::Database& db) -> Status {
    SQLite::Transaction txn(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement del(db, "DELETE FROM pools WHERE name = ?");
    del.bind(1, key);
    if (del.exec() == 0) return Status::NotFound("pool '" + key + "' not found");
    for (const char* sql :
         {"DELETE FROM entries WHERE pool_name = ?", "DELETE FROM stats WHERE pool_name = ?",
          "DELETE FROM attachments WHERE pool_name = ?",
          "DELETE FROM remote_stats WHERE pool_name = ?"}) {
      SQLite::Statement q(db, sql);
      q.bind(1, key);
      q.exec();
    }
    txn.commit();
    return Status::Ok();
  });
}

Status Catalog::ReplaceEntries(std::string_view pool, const std::vector<EntryRecord>& entries) {
  std::string key(pool);
  for (const EntryRecord& e : entries) {
    if (!e.pool_name.empty() && e.pool_name != key) {
      return Status::InvalidArgument("entry " + std::to_string(e.sequence_id) +
                                     " belongs to pool '" + e.pool_name + "', not '" + key + "'");
    }
  }
  return Run<Status>(path_, *impl_, "replace entries", [&](SQLite::Database& db) -> Status {
    SQLite::Transaction txn(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement del(db, "DELETE FROM entries WHERE pool_name = ?");
    del.bind(1, key);
    del.exec();
    // OR IGNORE plus a change count detects a repeated id without relying on the
    // exception's message; the transaction is then rolled back whole.
    SQLite::Statement ins(db,
                          "INSERT OR IGNORE INTO entries (pool_name, sequence_id, prefix_hash,"
                          " created_at, last_accessed, access_count, token_count, size_bytes,"
                          " \"offset\", priority, metadata)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const EntryRecord& e : entries) {
      ins.reset();
      ins.bind(1, key);
      ins.bind(2, static_cast<int64_t>(e.sequence_id));
      ins.bind(3, e.prefix_hash);
      ins.bind(4, e.created_at);
      ins.bind(5, e.last_accessed);
      ins.bind(6, static_cast<int64_t>(e.access_count));
      ins.bind(7, static_cast<int64_t>(e.token_count));
      ins.bind(8, static_cast<int64_t>(e.size_bytes));
      ins.bind(9, static_cast<int64_t>(e.offset));
      ins.bind(10, e.priority);
      ins.bind(11, e.metadata);
      if (ins.exec() == 0) {
        return Status::InvalidArgument("duplicate sequence id " + std::to_string(e.sequence_id) +
                                       " for pool '" + key + "'");  // txn's destructor rolls back
      }
    }
    txn.commit();
    return Status::Ok();
  });
}

Result<std::vector<EntryRecord>> Catalog::GetEntries(std::string_view pool) {
  std::string key(pool);
  using R = Result<std::vector<EntryRecord>>;
  return Run<R>(path_, *impl_, "get entries", [&](SQLite::Database& db) -> R {
    SQLite::Statement q(db,
                        "SELECT sequence_id, prefix_hash, created_at, last_accessed,"
                        " access_count, token_count, size_bytes, \"offset\", priority, metadata"
                        " FROM entries WHERE pool_name = ? ORDER BY sequence_id");
    q.bind(1, key);
    std::vector<EntryRecord> out;
    while (q.executeStep()) {
      EntryRecord e;
      e.pool_name = key;
      e.sequence_id = q.getColumn(0).getInt64();
      e.prefix_hash = OrEmpty(q.getColumn(1));
      e.created_at = q.getColumn(2).getDouble();
      e.last_accessed = q.getColumn(3).getDouble();
      e.access_count = q.getColumn(4).getInt64();
      e.token_count = q.getColumn(5).getInt64();
      e.size_bytes = q.getColumn(6).getInt64();
      e.offset = q.getColumn(7).getInt64();
      e.priority = q.getColumn(8).getInt();
      e.metadata = OrEmpty(q.getColumn(9));
      out.push_back(std::move(e));
    }
    return out;
  });
}

Status Catalog::AddStats(std::string_view pool, int64_t hits, int64_t misses, int64_t evictions) {
  std::string key(pool);
  return Run<Status>(path_, *impl_, "add stats", [&](SQLite::Database& db) -> Status {
    SQLite::Statement q(db,
                        "INSERT INTO stats (pool_name, hits, misses, evictions, updated_at)"
                        " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (pool_name) DO UPDATE SET"
                        " hits = hits + ?2, misses = misses + ?3, evictions = evictions + ?4,"
                        " updated_at = ?5");
    q.bind(1, key);
    q.bind(2, hits);
    q.bind(3, misses);
    q.bind(4, evictions);
    q.bind(5, Now());
    q.exec();
    return Status::Ok();
  });
}

Result<StatsRecord> Catalog::GetStats(std::string_view pool) {
  std::string key(pool);
  return Run<Result<StatsRecord>>(path_, *impl_, "get stats", [&](SQLite::Database& db) -> Result<StatsRecord> {
    SQLite::Statement q(db,
                        "SELECT hits, misses, evictions, updated_at FROM stats"
                        " WHERE pool_name = ?");
    q.bind(1, key);
    StatsRecord r;
    r.pool_name = key;
    if (q.executeStep()) {
      r.hits = q.getColumn(0).getInt64();
      r.misses = q.getColumn(1).getInt64();
      r.evictions = q.getColumn(2).getInt64();
      r.updated_at = q.getColumn(3).getDouble();
    }
    return r;
  });
}

Status Catalog::SetRemote(std::string_view pool, const std::optional<RemoteConfig>& remote) {
  std::string key(pool);
  return Run<Status>(path_, *impl_, "set remote", [&](SQLite::Database& db) -> Status {
    SQLite::Statement q(db,
                        "UPDATE pools SET remote_url = ?1, remote_mode = ?2,"
                        " remote_namespace = ?3 WHERE name = ?4");
    if (remote.has_value()) {
      q.bind(1, remote->url);
      q.bind(2, std::string(RemoteModeName(remote->mode)));
      q.bind(3, remote->name_space);
    }  // unbound parameters are NULL
    q.bind(4, key);
    if (q.exec() == 0) return Status::NotFound("pool '" + key + "' not found");
    return Status::Ok();
  });
}

Result<std::optional<RemoteConfig>> Catalog::GetRemote(std::string_view pool) {
  std::string key(pool);
  using R = Result<std::optional<RemoteConfig>>;
  return Run<R>(path_, *impl_, "get remote", [&](SQLite::Database& db) -> R {
    SQLite::Statement q(db,
                        "SELECT remote_url, remote_mode, remote_namespace FROM pools"
                        " WHERE name = ?");
    q.bind(1, key);
    if (!q.executeStep()) return Status::NotFound("pool '" + key + "' not found");
    if (q.getColumn(0).isNull()) return std::optional<RemoteConfig>();
    RemoteConfig c;
    c.url = q.getColumn(0).getString();
    Result<RemoteMode> mode = ParseRemoteMode(OrEmpty(q.getColumn(1)));
    if (!mode.ok()) {
      return Status::Corruption("catalog " + path_ + ": pool '" + key + "': " +
                                mode.status().message());
    }
    c.mode = *mode;
    c.name_space = OrEmpty(q.getColumn(2));
    return std::optional<RemoteConfig>(std::move(c));
  });
}

Status Catalog::AddRemoteStats(std::string_view pool, const RemoteCounters& d,
                               const std::string& last_error, double last_error_at) {
  std::string key(pool);
  return Run<Status>(path_, *impl_, "add remote stats", [&](SQLite::Database& db) -> Status {
    SQLite::Statement q(
        db,
        "INSERT INTO remote_stats (pool_name, sent, dropped, failures, hits, misses, refused,"
        " last_error, last_error_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        " ON CONFLICT (pool_name) DO UPDATE SET sent = sent + ?2, dropped = dropped + ?3,"
        " failures = failures + ?4, hits = hits + ?5, misses = misses + ?6,"
        " refused = refused + ?7, last_error = coalesce(?8, last_error),"
        " last_error_at = coalesce(?9, last_error_at), updated_at = ?10");
    q.bind(1, key);
    q.bind(2, static_cast<int64_t>(d.sent));
    q.bind(3, static_cast<int64_t>(d.dropped));
    q.bind(4, static_cast<int64_t>(d.failures));
    q.bind(5, static_cast<int64_t>(d.hits));
    q.bind(6, static_cast<int64_t>(d.misses));
    q.bind(7, static_cast<int64_t>(d.refused));
    if (!last_error.empty()) {
      q.bind(8, last_error);
      q.bind(9, last_error_at);
    }
    q.bind(10, Now());
    q.exec();
    return Status::Ok();
  });
}

Result<RemoteStatus> Catalog::GetRemoteStatus(std::string_view pool) {
  KVC_ASSIGN_OR_RETURN(std::optional<RemoteConfig> config, GetRemote(pool));
  std::string key(pool);
  return Run<Result<RemoteStatus>>(path_, *impl_, "get remote stats", [&](SQLite::Database& db) -> Result<RemoteStatus> {
    RemoteStatus st;
    st.configured = config.has_value();
    if (config.has_value()) st.config = *config;
    SQLite::Statement q(db,
                        "SELECT sent, dropped, failures, hits, misses, refused, last_error,"
                        " last_error_at FROM remote_stats WHERE pool_name = ?");
    q.bind(1, key);
    if (q.executeStep()) {
      st.counters.sent = static_cast<uint64_t>(q.getColumn(0).getInt64());
      st.counters.dropped = static_cast<uint64_t>(q.getColumn(1).getInt64());
      st.counters.failures = static_cast<uint64_t>(q.getColumn(2).getInt64());
      st.counters.hits = static_cast<uint64_t>(q.getColumn(3).getInt64());
      st.counters.misses = static_cast<uint64_t>(q.getColumn(4).getInt64());
      st.counters.refused = static_cast<uint64_t>(q.getColumn(5).getInt64());
      st.last_error = OrEmpty(q.getColumn(6));
      st.last_error_at = q.getColumn(7).getDouble();
    }
    return st;
  });
}

Status Catalog::RecordAttach(std::string_view pool, int32_t pid, double when) {
  std::string key(pool);
  return Run<Status>(path_, *impl_, "record attach", [&](SQLite::Database& db) -> Status {
    SQLite::Statement q(db,
                        "INSERT INTO attachments (pool_name, pid, attached_at, detached_at)"
                        " VALUES (?, ?, ?, NULL)");
    q.bind(1, key);
    q.bind(2, pid);
    q.bind(3, when);
    q.exec();
    return Status::Ok();
  });
}

Status Catalog::RecordDetach(std::string_view pool, int32_t pid, double when) {
  std::string key(pool);
  return Run<Status>(path_, *impl_, "record detach", [&](SQLite::Database& db) -> Status {
    // An open attachment has detached_at NULL (or 0, as older writers stored it).
    SQLite::Statement q(db,
                        "UPDATE attachments SET detached_at = ?1 WHERE id = ("
                        " SELECT id FROM attachments WHERE pool_name = ?2 AND pid = ?3"
                        " AND (detached_at IS NULL OR detached_at = 0)"
                        " ORDER BY attached_at DESC, id DESC LIMIT 1)");
    q.bind(1, when);
    q.bind(2, key);
    q.bind(3, pid);
    if (q.exec() == 0) {
      return Status::NotFound("process " + std::to_string(pid) + " is not attached to pool '" +
                              key + "'");
    }
    return Status::Ok();
  });
}

Result<std::vector<AttachmentRecord>> Catalog::ListAttachments(std::string_view pool) {
  std::string key(pool);
  using R = Result<std::vector<AttachmentRecord>>;
  return Run<R>(path_, *impl_, "list attachments", [&](SQLite::Database& db) -> R {
    SQLite::Statement q(db,
                        "SELECT pid, attached_at, detached_at FROM attachments"
                        " WHERE pool_name = ? ORDER BY attached_at DESC, id DESC");
    q.bind(1, key);
    std::vector<AttachmentRecord> out;
    while (q.executeStep()) {
      AttachmentRecord a;
      a.pool_name = key;
      a.pid = q.getColumn(0).getInt();
      a.attached_at = q.getColumn(1).getDouble();
      a.detached_at = q.getColumn(2).getDouble();  // NULL reads as 0: still attached
      out.push_back(a);
    }
    return out;
  });
}

}  // namespace kvcache
