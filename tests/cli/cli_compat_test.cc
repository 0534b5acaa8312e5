// A user of the original upgrades: its catalog, its defaults, its names and its words
// keep working, and the README's list of differences matches the commands we have.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

using nlohmann::json;

// The original's catalog, table for table as it creates it (no schema version).
constexpr char kOriginalSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    shm_name TEXT,
    created_at REAL DEFAULT (strftime('%s', 'now')),
    last_modified REAL DEFAULT (strftime('%s', 'now'))
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pool_name TEXT NOT NULL,
    sequence_id INTEGER NOT NULL,
    prefix_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_accessed REAL NOT NULL,
    access_count INTEGER DEFAULT 1,
    token_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    priority INTEGER DEFAULT 0,
    metadata TEXT,
    FOREIGN KEY (pool_name) REFERENCES pools(name),
    UNIQUE(pool_name, sequence_id)
);
CREATE TABLE IF NOT EXISTS stats (
    pool_name TEXT PRIMARY KEY,
    hits INTEGER DEFAULT 0,
    misses INTEGER DEFAULT 0,
    evictions INTEGER DEFAULT 0,
    FOREIGN KEY (pool_name) REFERENCES pools(name)
);
CREATE TABLE IF NOT EXISTS attachments (
    pool_name TEXT NOT NULL,
    pid INTEGER NOT NULL,
    attached_at REAL DEFAULT (strftime('%s', 'now')),
    PRIMARY KEY (pool_name, pid)
);
CREATE INDEX IF NOT EXISTS idx_entries_pool ON entries(pool_name);
CREATE INDEX IF NOT EXISTS idx_entries_prefix ON entries(prefix_hash);
CREATE INDEX IF NOT EXISTS idx_entries_lru ON entries(last_accessed);
CREATE INDEX IF NOT EXISTS idx_entries_lfu ON entries(access_count);
INSERT INTO pools (name, config, shm_name) VALUES ('legacy',
  '{"name": "legacy", "size_bytes": 1048576, "policy": "lfu", "tier": "cpu",
    "max_sequences": 10000, "block_size": 4096, "persist_path": null}', 'cortex_kv_legacy');
INSERT INTO entries (pool_name, sequence_id, prefix_hash, created_at, last_accessed,
  access_count, token_count, size_bytes, offset, priority, metadata)
  VALUES ('legacy', 7, '4f6addc9659d6fb9', 1700000000.5, 1700000001.5, 3, 128, 4096, 0, 2, '{}');
INSERT INTO stats (pool_name, hits, misses, evictions) VALUES ('legacy', 11, 4, 2);
INSERT INTO attachments (pool_name, pid) VALUES ('legacy', 4242);
)sql";

std::vector<std::string> Columns(SQLite::Database& db, const std::string& table) {
  std::vector<std::string> out;
  SQLite::Statement q(db, "SELECT name FROM pragma_table_info(?1)");
  q.bind(1, table);
  while (q.executeStep()) out.push_back(q.getColumn(0).getString());
  return out;
}

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

class CliCompatTest : public IsolatedTest {
 protected:
  std::string Catalog() const { return home_->path() + "/kv_cache.db"; }
  void WriteOriginalCatalog() {
    SQLite::Database db(Catalog(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(kOriginalSchema);
    chmod(Catalog().c_str(), 0600);
  }
};

TEST_F(CliCompatTest, EveryCommandWorksOnTheOriginalsCatalog) {
  WriteOriginalCatalog();
  // What failed on the original's catalog: create then attach ("no column named
  // detached_at"), persist ("no column named updated_at").
  ASSERT_TRUE(Succeeded(Cache({"create", "q", "--size", "1M"})));
  ASSERT_TRUE(Succeeded(Cache({"attach", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"attach", "q"})));  // again, same pid: the old key refused it
  ASSERT_TRUE(Succeeded(Cache({"put", "q", "1", "--file", "/dev/null"})));
  ASSERT_TRUE(Succeeded(Cache({"status"})));
  ASSERT_TRUE(Succeeded(Cache({"list"})));
  ASSERT_TRUE(Succeeded(Cache({"status", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"status", "legacy"})));
  ASSERT_TRUE(Succeeded(Cache({"entries", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"health", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"evict", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"persist", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"restore", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"detach", "q"})));
  ASSERT_TRUE(Succeeded(Cache({"destroy", "q"})));

  // The original's pool, its stats and its attachment survived the upgrade.
  CliResult legacy = Cache({"status", "legacy", "--json"});
  ASSERT_TRUE(Succeeded(legacy));
  json j = json::parse(legacy.out);
  EXPECT_EQ(j["policy"], "lfu");
  EXPECT_EQ(j["loaded"], false);  // its memory went with the original's process
  SQLite::Database db(Catalog(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(), 3);
  EXPECT_EQ(db.execAndGet("SELECT hits FROM stats WHERE pool_name = 'legacy'").getInt(), 11);
  EXPECT_EQ(db.execAndGet("SELECT token_count FROM entries WHERE pool_name = 'legacy'"
                          " AND sequence_id = 7").getInt(),
            128);
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM attachments WHERE pool_name = 'legacy'"
                          " AND pid = 4242 AND detached_at IS NULL").getInt(),
            1);
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM sqlite_master WHERE name LIKE "
                          "'%before_upgrade%'").getInt(),
            0);

  // A private copy of the catalog as the original left it sits beside it.
  const std::string backup = Catalog() + ".v0.bak";
  struct stat st {};
  ASSERT_EQ(stat(backup.c_str(), &st), 0) << backup;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  SQLite::Database old(backup, SQLite::OPEN_READONLY);
  EXPECT_EQ(old.execAndGet("PRAGMA user_version").getInt(), 0);
  EXPECT_FALSE(Has(Columns(old, "attachments"), "detached_at"));
  EXPECT_FALSE(Has(Columns(old, "stats"), "updated_at"));
  EXPECT_EQ(old.execAndGet("SELECT count(*) FROM entries").getInt(), 1);
}

TEST_F(CliCompatTest, ACatalogOfANewerVersionIsRefusedNamingBothVersions) {
  {
    SQLite::Database db(Catalog(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 7");
  }
  chmod(Catalog().c_str(), 0600);
  CliResult r = Cache({"status"});
  EXPECT_TRUE(FailedWith(r, "schema version 7 is newer than supported (3)")) << Describe(r);
}

TEST_F(CliCompatTest, EvictWithoutPercentEvictsAQuarter) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(manager().Put("p", static_cast<uint64_t>(i), Pattern(i, 100), 1).ok());
  }
  CliResult r = Cache({"evict", "p"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_NE(r.out.find("2"), std::string::npos) << r.out;
  EXPECT_EQ(manager().Entries("p")->size(), 6u);
}

TEST_F(CliCompatTest, PersistPathMakesMissingDirectoriesPrivate) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  ASSERT_TRUE(manager().Put("p", 1, Pattern(1, 5000), 1).ok());
  TempDir dir;
  const std::string path = dir.Join("a/b/p.cache");
  ASSERT_TRUE(Succeeded(Cache({"persist", "p", "--path", path})));
  for (const std::string& d : {dir.Join("a"), dir.Join("a/b")}) {
    struct stat st {};
    ASSERT_EQ(stat(d.c_str(), &st), 0) << d;
    EXPECT_EQ(st.st_mode & 0777, 0700u) << d;
  }
  ASSERT_TRUE(Succeeded(Cache({"destroy", "p"})));
  ASSERT_TRUE(Succeeded(Cache({"restore", "p", "--path", path})));
  EXPECT_EQ(manager().Entries("p")->size(), 1u);
}

TEST_F(CliCompatTest, PoolNamesWithColonAndAtWork) {
  for (const std::string name : {"llama2:7b", "team@qwen:0.5b"}) {
    ASSERT_TRUE(Succeeded(Cache({"create", name, "--size", "1M"}))) << name;
    ASSERT_TRUE(Succeeded(Cache({"put", name, "3", "--file", "/dev/null"})));
    ASSERT_TRUE(Succeeded(Cache({"persist", name})));
    struct stat st {};
    EXPECT_EQ(stat((home_->path() + "/kv_persist/" + name + ".cache").c_str(), &st), 0) << name;
    ASSERT_TRUE(Succeeded(Cache({"destroy", name})));
    ASSERT_TRUE(Succeeded(Cache({"restore", name})));
    EXPECT_EQ(manager().Entries(name)->size(), 1u);
  }
  for (const std::string bad : {".hidden", "a/b", "tab\there"}) {
    EXPECT_TRUE(FailedWith(Cache({"create", bad, "--size", "1M"}), "invalid pool name")) << bad;
  }
  EXPECT_TRUE(manager().ListPools()->size() == 2u);
}

TEST_F(CliCompatTest, AnEmptyPrefixHashesToNothingAndIsNotIndexed) {
  ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "1M"})));
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "1", "--file", "/dev/null", "--prefix", ""})));
  CliResult r = Cache({"entries", "p", "--json"});
  ASSERT_TRUE(Succeeded(r));
  EXPECT_TRUE(json::parse(r.out)[0]["prefix_hash"].is_null()) << r.out;
  EXPECT_TRUE(manager().GetByPrefix("p", std::vector<uint32_t>{})->empty());
}

// The README's table of commands lists exactly the commands `cortex cache --help` has.
TEST_F(CliCompatTest, TheReadmeListsEveryCommandAndNoOther) {
  std::ifstream in(std::string(KVC_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << KVC_SOURCE_DIR;
  std::string line;
  bool in_section = false;
  std::set<std::string> documented;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) in_section = line == "## Differences from the original";
    // Rows of the commands table start with "| `cortex cache NAME".
    const std::string row = "| `cortex cache ";
    if (!in_section || line.rfind(row, 0) != 0) continue;
    std::string rest = line.substr(row.size());
    documented.insert(rest.substr(0, rest.find_first_of(" `")));
  }
  CliResult help = Cache({"--help"});
  ASSERT_EQ(help.exit_code, 0) << Describe(help);
  std::set<std::string> commands;
  std::istringstream lines(help.out);
  bool in_commands = false;
  while (std::getline(lines, line)) {
    if (line.rfind("Subcommands:", 0) == 0) {
      in_commands = true;
      continue;
    }
    if (!in_commands || line.size() < 3 || line[0] != ' ') continue;
    // "  status, list      Show pools..." : the names, then two or more spaces.
    std::string names = line.substr(2, line.find("  ", 2) - 2);
    for (size_t start = 0; start < names.size();) {
      size_t comma = names.find(", ", start);
      commands.insert(names.substr(start, comma - start));
      start = comma == std::string::npos ? names.size() : comma + 2;
    }
  }
  ASSERT_FALSE(commands.empty()) << help.out;
  EXPECT_EQ(documented, commands);
}

}  // namespace
}  // namespace kvcache::testing
