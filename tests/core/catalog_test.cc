#include "kvcache/catalog.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "support/test_env.h"

namespace kvcache {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

PoolRecord Pool(const std::string& name, double created = 100.0) {
  PoolRecord r;
  r.name = name;
  r.config_json = "{\"name\":\"" + name + "\"}";
  r.shm_name = "cortex_kv_" + name;
  r.created_at = created;
  r.last_modified = created + 1;
  return r;
}

EntryRecord Entry(int64_t id, int32_t priority = 0) {
  EntryRecord e;
  e.sequence_id = id;
  e.prefix_hash = "4f6addc9659d6fb9";
  e.created_at = 10.5;
  e.last_accessed = 11.25;
  e.access_count = 3;
  e.token_count = 128;
  e.size_bytes = 1 << 20;
  e.offset = 4096 * id;
  e.priority = priority;
  e.metadata = R"({"model":"llama"})";
  return e;
}

mode_t FileMode(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Join("kv_cache.db");
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(path_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(c).value();
  }

  std::vector<std::string> PoolNames() {
    Result<std::vector<PoolRecord>> pools = catalog_->ListPools();
    EXPECT_TRUE(pools.ok()) << pools.status().ToString();
    std::vector<std::string> names;
    if (pools.ok()) {
      for (const PoolRecord& p : *pools) names.push_back(p.name);
    }
    return names;
  }

  TempDir dir_;
  std::string path_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, FreshCatalogIsAtCurrentSchemaInWalMode) {
  EXPECT_EQ(catalog_->schema_version(), Catalog::kSchemaVersion);
  EXPECT_EQ(Catalog::kSchemaVersion, 3);
  EXPECT_EQ(catalog_->path(), path_);
  SQLite::Database raw(path_, SQLite::OPEN_READONLY);
  EXPECT_EQ(raw.execAndGet("PRAGMA user_version").getInt(), 3);
  EXPECT_EQ(raw.execAndGet("PRAGMA journal_mode").getString(), "wal");
  for (const char* table : {"pools", "entries", "stats", "attachments", "remote_stats"}) {
    EXPECT_TRUE(raw.tableExists(table)) << table;
  }
}

TEST_F(CatalogTest, FileIsPrivateWhateverTheUmask) {
  EXPECT_EQ(FileMode(path_), 0600u);
  std::string nested = dir_.Join("a/b/kv_cache.db");
  mode_t old = umask(0);
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(nested);
  umask(old);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(FileMode(nested), 0600u);
  EXPECT_EQ(FileMode(dir_.Join("a")), 0700u);
  EXPECT_EQ(FileMode(dir_.Join("a/b")), 0700u);
  ASSERT_TRUE((*c)->InsertPool(Pool("p")).ok());  // makes SQLite create -wal and -shm
  EXPECT_EQ(FileMode(nested + "-wal"), 0600u);
}

TEST_F(CatalogTest, OpenRejectsEmptyPathAndUnusableLocations) {
  EXPECT_EQ(Catalog::Open("").status().code(), Code::kInvalidArgument);
  std::ofstream(dir_.Join("plain")) << "x";
  Result<std::unique_ptr<Catalog>> r = Catalog::Open(dir_.Join("plain/kv_cache.db"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("plain"));
}

TEST_F(CatalogTest, GarbageFileIsCorruptionNamingThePath) {
  std::string bad = dir_.Join("garbage.db");
  {
    std::ofstream out(bad);
    for (int i = 0; i < 512; ++i) out << "this is not an sqlite database ";
  }
  Result<std::unique_ptr<Catalog>> r = Catalog::Open(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(bad));
}

TEST_F(CatalogTest, VersionZeroDatabaseIsMigrated) {
  std::string old = dir_.Join("old.db");
  {
    SQLite::Database raw(old, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    raw.exec(
        "CREATE TABLE pools (name TEXT PRIMARY KEY, config TEXT, shm_name TEXT,"
        " created_at REAL, last_modified REAL);"
        "INSERT INTO pools VALUES ('legacy', '{}', 'cortex_kv_legacy', 1.0, 2.0);");
  }
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(old);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->schema_version(), Catalog::kSchemaVersion);
  Result<PoolRecord> legacy = (*c)->GetPool("legacy");
  ASSERT_TRUE(legacy.ok());
  EXPECT_EQ(legacy->shm_name, "cortex_kv_legacy");
  EXPECT_TRUE((*c)->AddStats("legacy", 1, 0, 0).ok());
}

TEST_F(CatalogTest, NewerSchemaIsRefused) {
  std::string newer = dir_.Join("newer.db");
  {
    SQLite::Database raw(newer, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    raw.exec("PRAGMA user_version = 99");
  }
  Result<std::unique_ptr<Catalog>> r = Catalog::Open(newer);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotSupported);
  EXPECT_THAT(r.status().message(), HasSubstr("99"));
  EXPECT_THAT(r.status().message(), HasSubstr(newer));
}

TEST_F(CatalogTest, InsertedPoolCanBeReadBack) {
  ASSERT_TRUE(catalog_->InsertPool(Pool("llama-cache", 123.5)).ok());
  Result<PoolRecord> r = catalog_->GetPool("llama-cache");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "llama-cache");
  EXPECT_EQ(r->config_json, "{\"name\":\"llama-cache\"}");
  EXPECT_EQ(r->shm_name, "cortex_kv_llama-cache");
  EXPECT_DOUBLE_EQ(r->created_at, 123.5);
  EXPECT_DOUBLE_EQ(r->last_modified, 124.5);
}

TEST_F(CatalogTest, DuplicateInsertIsAlreadyExistsAndKeepsTheOriginal) {
  ASSERT_TRUE(catalog_->InsertPool(Pool("p", 1.0)).ok());
  PoolRecord other = Pool("p", 2.0);
  other.config_json = "{}";
  Status s = catalog_->InsertPool(other);
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("'p'"));
  EXPECT_DOUBLE_EQ(catalog_->GetPool("p")->created_at, 1.0);
  EXPECT_EQ(catalog_->GetPool("p")->config_json, "{\"name\":\"p\"}");
}

TEST_F(CatalogTest, InsertRejectsInvalidPoolNames) {
  EXPECT_EQ(catalog_->InsertPool(Pool("a/b")).code(), Code::kInvalidArgument);
  EXPECT_EQ(catalog_->InsertPool(Pool("..")).code(), Code::kInvalidArgument);
  EXPECT_TRUE(PoolNames().empty());
}

TEST_F(CatalogTest, MissingPoolIsNotFound) {
  Result<PoolRecord> r = catalog_->GetPool("nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message(), "pool 'nope' not found");
  EXPECT_EQ(catalog_->UpdatePool(Pool("nope")).code(), Code::kNotFound);
  EXPECT_EQ(catalog_->DeletePool("nope").code(), Code::kNotFound);
  EXPECT_TRUE(PoolNames().empty());
}

TEST_F(CatalogTest, UpdateReplacesTheRecord) {
  ASSERT_TRUE(catalog_->InsertPool(Pool("p", 1.0)).ok());
  PoolRecord changed = Pool("p", 1.0);
  changed.config_json = R"({"name":"p","size_bytes":2})";
  changed.last_modified = 50.0;
  ASSERT_TRUE(catalog_->UpdatePool(changed).ok());
  Result<PoolRecord> r = catalog_->GetPool("p");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->config_json, changed.config_json);
  EXPECT_DOUBLE_EQ(r->last_modified, 50.0);
}

TEST_F(CatalogTest, ListIsSortedByName) {
  for (const char* name : {"mistral-7b", "codellama", "llama-70b", "Zeta"}) {
    ASSERT_TRUE(catalog_->InsertPool(Pool(name)).ok());
  }
  EXPECT_EQ(PoolNames(),
            (std::vector<std::string>{"Zeta", "codellama", "llama-70b", "mistral-7b"}));
}

TEST_F(CatalogTest, DeleteRemovesThePoolAndEverythingAboutIt) {
  ASSERT_TRUE(catalog_->InsertPool(Pool("p")).ok());
  ASSERT_TRUE(catalog_->InsertPool(Pool("q")).ok());
  ASSERT_TRUE(catalog_->ReplaceEntries("p", {Entry(1), Entry(2)}).ok());
  ASSERT_TRUE(catalog_->ReplaceEntries("q", {Entry(1)}).ok());
  ASSERT_TRUE(catalog_->AddStats("p", 5, 6, 7).ok());
  ASSERT_TRUE(catalog_->AddStats("q", 1, 1, 1).ok());
  ASSERT_TRUE(catalog_->RecordAttach("p", 42, 1.0).ok());

  ASSERT_TRUE(catalog_->DeletePool("p").ok());
  EXPECT_EQ(catalog_->GetPool("p").status().code(), Code::kNotFound);
  EXPECT_TRUE(catalog_->GetEntries("p")->empty());
  EXPECT_EQ(catalog_->GetStats("p")->hits, 0);
  EXPECT_TRUE(catalog_->ListAttachments("p")->empty());
  // The other pool is untouched.
  EXPECT_EQ(PoolNames(), std::vector<std::string>{"q"});
  EXPECT_EQ(catalog_->GetEntries("q")->size(), 1u);
  EXPECT_EQ(catalog_->GetStats("q")->hits, 1);
}

TEST_F(CatalogTest, EntriesRoundTripSortedById) {
  std::vector<EntryRecord> in{Entry(30, 5), Entry(7, -2), Entry(9000000000000LL, 1)};
  in[1].prefix_hash = "";
  in[1].metadata = "";
  ASSERT_TRUE(catalog_->ReplaceEntries("p", in).ok());
  Result<std::vector<EntryRecord>> out = catalog_->GetEntries("p");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 3u);
  EXPECT_EQ((*out)[0].sequence_id, 7);
  EXPECT_EQ((*out)[1].sequence_id, 30);
  EXPECT_EQ((*out)[2].sequence_id, 9000000000000LL);
  const EntryRecord& e = (*out)[1];
  EXPECT_EQ(e.pool_name, "p");
  EXPECT_EQ(e.prefix_hash, "4f6addc9659d6fb9");
  EXPECT_DOUBLE_EQ(e.created_at, 10.5);
  EXPECT_DOUBLE_EQ(e.last_accessed, 11.25);
  EXPECT_EQ(e.access_count, 3);
  EXPECT_EQ(e.token_count, 128);
  EXPECT_EQ(e.size_bytes, 1 << 20);
  EXPECT_EQ(e.offset, 4096 * 30);
  EXPECT_EQ(e.priority, 5);
  EXPECT_EQ(e.metadata, R"({"model":"llama"})");
  EXPECT_EQ((*out)[0].priority, -2);
  EXPECT_EQ((*out)[0].prefix_hash, "");
  EXPECT_EQ((*out)[0].metadata, "");
}

TEST_F(CatalogTest, ReplaceEntriesReplacesOnlyThatPool) {
  ASSERT_TRUE(catalog_->ReplaceEntries("p", {Entry(1), Entry(2), Entry(3)}).ok());
  ASSERT_TRUE(catalog_->ReplaceEntries("q", {Entry(1)}).ok());
  ASSERT_TRUE(catalog_->ReplaceEntries("p", {Entry(4)}).ok());
  Result<std::vector<EntryRecord>> p = catalog_->GetEntries("p");
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].sequence_id, 4);
  EXPECT_EQ(catalog_->GetEntries("q")->size(), 1u);
  ASSERT_TRUE(catalog_->ReplaceEntries("p", {}).ok());
  EXPECT_TRUE(catalog_->GetEntries("p")->empty());
}

TEST_F(CatalogTest, FailedReplaceLeavesThePreviousManifest) {
  ASSERT_TRUE(catalog_->ReplaceEntries("p", {Entry(1), Entry(2)}).ok());
  Status dup = catalog_->ReplaceEntries("p", {Entry(5), Entry(6), Entry(5)});
  EXPECT_EQ(dup.code(), Code::kInvalidArgument);
  EXPECT_THAT(dup.message(), HasSubstr("5"));
  EntryRecord foreign = Entry(9);
  foreign.pool_name = "other";
  EXPECT_EQ(catalog_->ReplaceEntries("p", {foreign}).code(), Code::kInvalidArgument);
  Result<std::vector<EntryRecord>> p = catalog_->GetEntries("p");
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].sequence_id, 1);
  EXPECT_EQ((*p)[1].sequence_id, 2);
}

TEST_F(CatalogTest, StatsStartAtZeroAndAccumulate) {
  Result<StatsRecord> zero = catalog_->GetStats("p");
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->pool_name, "p");
  EXPECT_EQ(zero->hits, 0);
  EXPECT_EQ(zero->misses, 0);
  EXPECT_EQ(zero->evictions, 0);
  ASSERT_TRUE(catalog_->AddStats("p", 10, 2, 1).ok());
  ASSERT_TRUE(catalog_->AddStats("p", 5, 0, 3).ok());
  Result<StatsRecord> s = catalog_->GetStats("p");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hits, 15);
  EXPECT_EQ(s->misses, 2);
  EXPECT_EQ(s->evictions, 4);
  EXPECT_GT(s->updated_at, 1.6e9);  // a wall-clock time
}

TEST_F(CatalogTest, AttachDetachIsRecordedNewestFirst) {
  ASSERT_TRUE(catalog_->RecordAttach("p", 100, 1.0).ok());
  ASSERT_TRUE(catalog_->RecordAttach("p", 200, 2.0).ok());
  ASSERT_TRUE(catalog_->RecordAttach("q", 100, 3.0).ok());
  ASSERT_TRUE(catalog_->RecordDetach("p", 100, 4.0).ok());
  Result<std::vector<AttachmentRecord>> list = catalog_->ListAttachments("p");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].pid, 200);
  EXPECT_DOUBLE_EQ((*list)[0].detached_at, 0.0);
  EXPECT_EQ((*list)[1].pid, 100);
  EXPECT_DOUBLE_EQ((*list)[1].attached_at, 1.0);
  EXPECT_DOUBLE_EQ((*list)[1].detached_at, 4.0);
  EXPECT_EQ((*list)[1].pool_name, "p");
  // The attachment in the other pool is still open.
  EXPECT_DOUBLE_EQ((*catalog_->ListAttachments("q"))[0].detached_at, 0.0);
}

TEST_F(CatalogTest, DetachWithoutOpenAttachmentIsNotFound) {
  EXPECT_EQ(catalog_->RecordDetach("p", 100, 1.0).code(), Code::kNotFound);
  ASSERT_TRUE(catalog_->RecordAttach("p", 100, 1.0).ok());
  EXPECT_EQ(catalog_->RecordDetach("q", 100, 2.0).code(), Code::kNotFound);
  EXPECT_EQ(catalog_->RecordDetach("p", 101, 2.0).code(), Code::kNotFound);
  ASSERT_TRUE(catalog_->RecordDetach("p", 100, 2.0).ok());
  Status again = catalog_->RecordDetach("p", 100, 3.0);
  EXPECT_EQ(again.code(), Code::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("100"));
  EXPECT_DOUBLE_EQ((*catalog_->ListAttachments("p"))[0].detached_at, 2.0);
}

TEST_F(CatalogTest, DetachClosesTheLatestOpenAttachment) {
  ASSERT_TRUE(catalog_->RecordAttach("p", 7, 1.0).ok());
  ASSERT_TRUE(catalog_->RecordAttach("p", 7, 2.0).ok());
  ASSERT_TRUE(catalog_->RecordDetach("p", 7, 3.0).ok());
  Result<std::vector<AttachmentRecord>> list = catalog_->ListAttachments("p");
  ASSERT_EQ(list->size(), 2u);
  EXPECT_DOUBLE_EQ((*list)[0].attached_at, 2.0);
  EXPECT_DOUBLE_EQ((*list)[0].detached_at, 3.0);
  EXPECT_DOUBLE_EQ((*list)[1].detached_at, 0.0);
}

TEST_F(CatalogTest, VersionOneCatalogGainsPoolIdentityColumns) {
  std::string old = dir_.Join("v1.db");
  {
    SQLite::Database raw(old, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    raw.exec(
        "CREATE TABLE pools (name TEXT PRIMARY KEY, config TEXT, shm_name TEXT,"
        " created_at REAL, last_modified REAL);"
        "INSERT INTO pools VALUES ('old', '{}', 'cortex_kv_old', 1.0, 2.0);"
        "PRAGMA user_version = 1;");
  }
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(old);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->schema_version(), Catalog::kSchemaVersion);
  Result<PoolRecord> rec = (*c)->GetPool("old");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->pool_id, "");
  EXPECT_EQ(rec->owner_uid, -1);
  PoolRecord updated = *rec;
  updated.pool_id = std::string(32, 'a');
  updated.owner_uid = 1234;
  ASSERT_TRUE((*c)->UpdatePool(updated).ok());
  EXPECT_EQ((*c)->GetPool("old")->pool_id, std::string(32, 'a'));
  EXPECT_EQ((*c)->GetPool("old")->owner_uid, 1234);
}

TEST_F(CatalogTest, VersionTwoCatalogGainsRemoteColumnsKeepingItsPools) {
  std::string old = dir_.Join("v2.db");
  {
    SQLite::Database raw(old, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    raw.exec(
        "CREATE TABLE pools (name TEXT PRIMARY KEY, config TEXT, shm_name TEXT,"
        " created_at REAL, last_modified REAL, pool_id TEXT, owner_uid INTEGER);"
        "CREATE TABLE entries (pool_name TEXT, sequence_id INTEGER, prefix_hash TEXT,"
        " created_at REAL, last_accessed REAL, access_count INTEGER, token_count INTEGER,"
        " size_bytes INTEGER, \"offset\" INTEGER, priority INTEGER, metadata TEXT,"
        " PRIMARY KEY (pool_name, sequence_id));"
        "CREATE TABLE stats (pool_name TEXT PRIMARY KEY, hits INTEGER DEFAULT 0,"
        " misses INTEGER DEFAULT 0, evictions INTEGER DEFAULT 0, updated_at REAL);"
        "CREATE TABLE attachments (id INTEGER PRIMARY KEY, pool_name TEXT, pid INTEGER,"
        " attached_at REAL, detached_at REAL);"
        "INSERT INTO pools VALUES ('old', '{}', 'cortex_kv_old', 1.0, 2.0, 'ab', 7);"
        "INSERT INTO stats VALUES ('old', 5, 6, 7, 1.0);"
        "PRAGMA user_version = 2;");
  }
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(old);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->schema_version(), 3);
  Result<PoolRecord> rec = (*c)->GetPool("old");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->pool_id, "ab");
  EXPECT_EQ(rec->owner_uid, 7);
  EXPECT_EQ((*c)->GetStats("old")->hits, 5);
  Result<std::optional<RemoteConfig>> none = (*c)->GetRemote("old");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());

  RemoteConfig rc{"redis://h:6379", RemoteMode::kWriteBack, "ns"};
  ASSERT_TRUE((*c)->SetRemote("old", rc).ok());
  EXPECT_EQ((*c)->SetRemote("missing", rc).code(), Code::kNotFound);
  ASSERT_TRUE((*c)->AddRemoteStats("old", RemoteCounters{1, 2, 3, 4, 5, 6}, "boom", 9.0).ok());
  ASSERT_TRUE((*c)->AddRemoteStats("old", RemoteCounters{1, 0, 0, 0, 0, 0}, "", 0).ok());
  // A record update (as restore makes) keeps the remote.
  PoolRecord updated = *rec;
  updated.config_json = "{\"x\":1}";
  ASSERT_TRUE((*c)->UpdatePool(updated).ok());
  Result<RemoteStatus> st = (*c)->GetRemoteStatus("old");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_TRUE(st->configured);
  EXPECT_EQ(st->config.url, "redis://h:6379");
  EXPECT_EQ(st->config.mode, RemoteMode::kWriteBack);
  EXPECT_EQ(st->config.name_space, "ns");
  EXPECT_EQ(st->counters.sent, 2u);
  EXPECT_EQ(st->counters.refused, 6u);
  EXPECT_EQ(st->last_error, "boom");  // an empty error keeps the last one
  ASSERT_TRUE((*c)->SetRemote("old", std::nullopt).ok());
  EXPECT_FALSE((*c)->GetRemoteStatus("old")->configured);
  ASSERT_TRUE((*c)->DeletePool("old").ok());
  EXPECT_EQ((*c)->GetRemoteStatus("old").status().code(), Code::kNotFound);
}

TEST_F(CatalogTest, DataSurvivesReopen) {
  ASSERT_TRUE(catalog_->InsertPool(Pool("p")).ok());
  ASSERT_TRUE(catalog_->ReplaceEntries("p", {Entry(1)}).ok());
  ASSERT_TRUE(catalog_->AddStats("p", 3, 4, 5).ok());
  ASSERT_TRUE(catalog_->RecordAttach("p", 9, 1.0).ok());
  catalog_.reset();
  Result<std::unique_ptr<Catalog>> again = Catalog::Open(path_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  Catalog& c = **again;
  EXPECT_EQ(c.schema_version(), Catalog::kSchemaVersion);
  EXPECT_TRUE(c.GetPool("p").ok());
  EXPECT_EQ(c.GetEntries("p")->size(), 1u);
  EXPECT_EQ(c.GetStats("p")->misses, 4);
  EXPECT_EQ(c.ListAttachments("p")->size(), 1u);
}

TEST_F(CatalogTest, TwoCatalogsOnOneFileSeeEachOthersWrites) {
  Result<std::unique_ptr<Catalog>> other = Catalog::Open(path_);
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  ASSERT_TRUE(catalog_->InsertPool(Pool("a")).ok());
  ASSERT_TRUE((*other)->InsertPool(Pool("b")).ok());
  EXPECT_EQ((*other)->InsertPool(Pool("a")).code(), Code::kAlreadyExists);
  EXPECT_EQ(PoolNames(), (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE((*other)->DeletePool("a").ok());
  EXPECT_EQ(PoolNames(), std::vector<std::string>{"b"});
}

TEST_F(CatalogTest, ThreadsSharingOneCatalogLoseNoUpdates) {
  constexpr int kThreads = 4;
  constexpr int kAdds = 100;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAdds; ++i) {
        if (!catalog_->AddStats("p", 1, 0, 0).ok()) ++failures;
        if (!catalog_->RecordAttach("p", t, i).ok()) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(catalog_->GetStats("p")->hits, kThreads * kAdds);
  EXPECT_EQ(catalog_->ListAttachments("p")->size(), static_cast<size_t>(kThreads * kAdds));
}

TEST_F(CatalogTest, ChildProcessAndParentWriteConcurrently) {
  constexpr int kEach = 40;
  // SQLite connections must not cross fork(); each process opens its own.
  catalog_.reset();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A separate process opens its own connection, as another cortex would.
    int code = 0;
    Result<std::unique_ptr<Catalog>> c = Catalog::Open(path_);
    if (!c.ok()) _exit(10);
    for (int i = 0; i < kEach && code == 0; ++i) {
      if (!(*c)->InsertPool(Pool("child-" + std::to_string(i))).ok()) code = 11;
      if (!(*c)->AddStats("shared", 1, 0, 0).ok()) code = 12;
    }
    c->reset();
    _exit(code);
  }
  Result<std::unique_ptr<Catalog>> mine = Catalog::Open(path_);
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  for (int i = 0; i < kEach; ++i) {
    EXPECT_TRUE((*mine)->InsertPool(Pool("parent-" + std::to_string(i))).ok());
    EXPECT_TRUE((*mine)->AddStats("shared", 0, 1, 0).ok());
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  catalog_ = std::move(mine).value();
  std::vector<std::string> names = PoolNames();
  EXPECT_EQ(names.size(), static_cast<size_t>(2 * kEach));
  for (int i = 0; i < kEach; ++i) {
    EXPECT_TRUE(catalog_->GetPool("child-" + std::to_string(i)).ok()) << i;
    EXPECT_TRUE(catalog_->GetPool("parent-" + std::to_string(i)).ok()) << i;
  }
  Result<StatsRecord> s = catalog_->GetStats("shared");
  EXPECT_EQ(s->hits, kEach);
  EXPECT_EQ(s->misses, kEach);
}

TEST_F(CatalogTest, ProcessesOpeningAFreshCatalogAtOnceAllSucceed) {
  // Each child races to create, switch to WAL and migrate the same new file.
  constexpr int kChildren = 8;
  std::string fresh = dir_.Join("fresh/kv_cache.db");
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Result<std::unique_ptr<Catalog>> c = Catalog::Open(fresh);
      Status s = c.ok() ? (*c)->InsertPool(Pool("pool-" + std::to_string(i))) : c.status();
      if (!s.ok()) std::fprintf(stderr, "child %d: %s\n", i, s.ToString().c_str());
      if (c.ok()) c->reset();
      _exit(s.ok() ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << "child " << pid;
  }
  Result<std::unique_ptr<Catalog>> c = Catalog::Open(fresh);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->schema_version(), Catalog::kSchemaVersion);
  EXPECT_EQ((*c)->ListPools()->size(), static_cast<size_t>(kChildren));
}

}  // namespace
}  // namespace kvcache
