// Manager behaviour on one pool, in one process: lifecycle, header fields, puts and
// gets, pins, prefixes, eviction under pressure, health and corruption.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "kvcache/catalog.h"
#include "kvcache/manager.h"
#include "manager_internals.h"
#include "pool_handle.h"
#include "kvcache/prefix.h"
#include "support/child_process.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Pattern;
constexpr uint64_t kMiB = 1024 * 1024;

class PoolTest : public testing::IsolatedTest {
 protected:
  std::string SegmentPath(const std::string& pool) {
    return "/dev/shm/" + manager().ShmName(pool);
  }
  // Reads `n` raw bytes of the segment at `offset`.
  std::vector<std::byte> RawBytes(const std::string& pool, size_t offset, size_t n) {
    std::vector<std::byte> out(n);
    int fd = open(SegmentPath(pool).c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(pread(fd, out.data(), n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
    close(fd);
    return out;
  }
  template <typename T>
  T RawField(const std::string& pool, size_t offset) {
    T v;
    auto bytes = RawBytes(pool, offset, sizeof(T));
    std::memcpy(&v, bytes.data(), sizeof(T));
    return v;
  }
  void ExpectHealthy(const std::string& pool) {
    auto h = manager().Health(pool);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_TRUE(h->healthy);
    for (const auto& p : h->problems) ADD_FAILURE() << p;
  }
};

TEST_F(PoolTest, CreateWritesSeedHeaderAtSeedOffsets) {
  CreatePool("hdr", 64 * kMiB, Policy::kLfu);
  EXPECT_EQ(RawField<uint32_t>("hdr", 0), 0x4B564341u);
  EXPECT_EQ(RawField<uint32_t>("hdr", 4), 4u);  // segment format version
  EXPECT_EQ(RawField<uint64_t>("hdr", 8), 64 * kMiB);
  EXPECT_EQ(RawField<uint64_t>("hdr", 16), 0u);
  EXPECT_EQ(RawField<uint64_t>("hdr", 24), 64 * kMiB);
  EXPECT_EQ(RawField<uint64_t>("hdr", 32), 64 * kMiB / 4096);
  EXPECT_EQ(RawField<uint8_t>("hdr", 80), 1u);  // lfu
  double created = RawField<double>("hdr", 64);
  EXPECT_NEAR(created, static_cast<double>(time(nullptr)), 5.0);

  ASSERT_TRUE(manager().Put("hdr", 1, Pattern(1, 5000), 10).ok());
  EXPECT_EQ(RawField<uint64_t>("hdr", 16), 8192u);  // two 4 KiB blocks
  EXPECT_EQ(RawField<uint64_t>("hdr", 40), 1u);
  ASSERT_TRUE(manager().Get("hdr", 1).ok());
  EXPECT_FALSE(manager().Get("hdr", 2).ok());
  // Lock-free gets count in their process's row until status folds them in.
  ASSERT_TRUE(manager().Stats("hdr").ok());
  EXPECT_EQ(RawField<uint64_t>("hdr", 48), 1u);  // hits
  EXPECT_EQ(RawField<uint64_t>("hdr", 56), 1u);  // misses
  ASSERT_TRUE(manager().Attach("hdr", getpid()).ok());
  EXPECT_EQ(RawField<uint32_t>("hdr", 81), 1u);
}

TEST_F(PoolTest, CreateExistingFailsAndKeepsThePool) {
  CreatePool("dup", 8 * kMiB);
  ASSERT_TRUE(manager().Put("dup", 5, Pattern(5, 100), 1).ok());
  PoolConfig c{.name = "dup", .size_bytes = 16 * kMiB};
  Status s = manager().CreatePool(c);
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_NE(s.message().find("dup"), std::string::npos);
  auto got = manager().Get("dup", 5);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, Pattern(5, 100));
  EXPECT_EQ(manager().Stats("dup")->size, 8 * kMiB);
}

TEST_F(PoolTest, BadConfigIsRefusedAndCreatesNothing) {
  PoolConfig c{.name = "a/b", .size_bytes = 8 * kMiB};
  EXPECT_EQ(manager().CreatePool(c).code(), Code::kInvalidArgument);
  c.name = "ok";
  c.size_bytes = 0;
  EXPECT_EQ(manager().CreatePool(c).code(), Code::kInvalidArgument);
  c.size_bytes = 8 * kMiB;
  c.tier = Tier::kGpu;
  EXPECT_EQ(manager().CreatePool(c).code(), Code::kNotSupported);
  EXPECT_TRUE(manager().ListPools()->empty());
  EXPECT_NE(access(SegmentPath("ok").c_str(), F_OK), 0);
}

TEST_F(PoolTest, PoolLargerThanShmIsRefusedWithNoSpace) {
  PoolConfig c{.name = "huge", .size_bytes = uint64_t{1} << 40};  // 1 TiB
  Status s = manager().CreatePool(c);
  EXPECT_EQ(s.code(), Code::kNoSpace) << s.ToString();
  EXPECT_NE(s.message().find("1.00 TB"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("huge"), std::string::npos) << s.message();
  EXPECT_TRUE(manager().ListPools()->empty());
  EXPECT_NE(access(SegmentPath("huge").c_str(), F_OK), 0);
}

TEST_F(PoolTest, PoolsAbove128MiBHaveABitmapForEveryBlock) {
  CreatePool("big", 512 * kMiB);
  auto st = manager().Stats("big");
  EXPECT_EQ(st->block_count, 512 * kMiB / 4096);
  // Fill it with 1 MiB entries: all 512 fit, the 513th evicts exactly one.
  for (uint64_t i = 0; i < 512; ++i) {
    ASSERT_TRUE(manager().Put("big", i, Pattern(i, kMiB), 1).ok()) << i;
  }
  EXPECT_EQ(manager().Stats("big")->free, 0u);
  EXPECT_EQ(manager().Stats("big")->evictions, 0u);
  ASSERT_TRUE(manager().Put("big", 999, Pattern(999, kMiB), 1).ok());
  EXPECT_EQ(manager().Stats("big")->evictions, 1u);
  EXPECT_EQ(*manager().Get("big", 511), Pattern(511, kMiB));
  ExpectHealthy("big");
}

TEST_F(PoolTest, DestroyRemovesSegmentAndCatalogRecord) {
  CreatePool("gone", 8 * kMiB);
  ASSERT_TRUE(manager().DestroyPool("gone").ok());
  EXPECT_NE(access(SegmentPath("gone").c_str(), F_OK), 0);
  EXPECT_TRUE(manager().ListPools()->empty());
  EXPECT_EQ(manager().DestroyPool("gone").code(), Code::kNotFound);
  EXPECT_EQ(manager().Put("gone", 1, Pattern(1, 10), 1).code(), Code::kNotFound);
}

TEST_F(PoolTest, CheckMappingGivesTheOwnerUntilTheSegmentGoes) {
  CreatePool("checked", 1 * kMiB);
  // Not mapped by this Manager yet: nothing to vouch for.
  Manager other(options());
  EXPECT_FALSE(other.CheckMapping("checked").has_value());
  ASSERT_TRUE(other.Put("checked", 1, Pattern(1, 100), 1).ok());
  std::optional<PoolOwner> owner = other.CheckMapping("checked");
  ASSERT_TRUE(owner.has_value());
  Result<PoolOwner> expected = other.Owner("checked");
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(owner->uid, expected->uid);
  EXPECT_EQ(owner->gid, expected->gid);
  EXPECT_EQ(owner->mode, expected->mode);
  ASSERT_EQ(chmod(SegmentPath("checked").c_str(), 0640), 0);
  ASSERT_TRUE(other.CheckMapping("checked").has_value());
  EXPECT_EQ(other.CheckMapping("checked")->mode, 0640u);
  // Destroyed by another process: the mapping is forgotten, and stays so.
  ASSERT_TRUE(manager().DestroyPool("checked").ok());
  EXPECT_FALSE(other.CheckMapping("checked").has_value());
  EXPECT_FALSE(other.ForgetIfReplaced("checked"));
  EXPECT_EQ(other.Stats("checked").status().code(), Code::kNotFound);
  EXPECT_FALSE(other.CheckMapping("nope").has_value());
}

TEST_F(PoolTest, NonexistentPoolIsNotFoundEverywhere) {
  std::vector<std::byte> buf;
  EXPECT_EQ(manager().Put("nope", 1, Pattern(1, 10), 1).code(), Code::kNotFound);
  EXPECT_EQ(manager().GetInto("nope", 1, buf).code(), Code::kNotFound);
  EXPECT_EQ(manager().Stats("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(manager().Evict("nope", 10).status().code(), Code::kNotFound);
  EXPECT_EQ(manager().Attach("nope", getpid()).code(), Code::kNotFound);
  EXPECT_EQ(manager().Health("nope").status().code(), Code::kNotFound);
  EXPECT_NE(manager().Stats("nope").status().message().find("'nope'"), std::string::npos);
}

TEST_F(PoolTest, PutGetReplaceRemoveRoundTrip) {
  CreatePool("rt", 16 * kMiB);
  PutOptions opts{.prefix_tokens = {1, 2, 3, 4, 5}, .priority = 7, .metadata = R"({"m":1})"};
  ASSERT_TRUE(manager().Put("rt", 42, Pattern(42, 3 * kMiB), 128, opts).ok());
  auto info = manager().Stat("rt", 42);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->size_bytes, 3 * kMiB);
  EXPECT_EQ(info->token_count, 128u);
  EXPECT_EQ(info->prefix_hash, "4f6addc9659d6fb9");
  EXPECT_EQ(info->priority, 7);
  EXPECT_EQ(info->metadata, R"({"m":1})");
  EXPECT_EQ(*manager().Get("rt", 42), Pattern(42, 3 * kMiB));

  uint64_t gen = info->generation;
  ASSERT_TRUE(manager().Put("rt", 42, Pattern(43, 100), 1).ok());
  EXPECT_EQ(*manager().Get("rt", 42), Pattern(43, 100));
  EXPECT_NE(manager().Stat("rt", 42)->generation, gen);
  EXPECT_EQ(manager().Stats("rt")->entry_count, 1u);

  ASSERT_TRUE(manager().Remove("rt", 42).ok());
  EXPECT_EQ(manager().Get("rt", 42).status().code(), Code::kNotFound);
  EXPECT_EQ(manager().Remove("rt", 42).code(), Code::kNotFound);
  EXPECT_EQ(manager().Stats("rt")->used, 0u);
  ExpectHealthy("rt");
}

TEST_F(PoolTest, EmptyAndTinyEntries) {
  CreatePool("tiny", 8 * kMiB);
  ASSERT_TRUE(manager().Put("tiny", 0, {}, 0).ok());
  ASSERT_TRUE(manager().Put("tiny", 1, Pattern(1, 1), 1).ok());
  EXPECT_TRUE(manager().Get("tiny", 0)->empty());
  EXPECT_EQ(*manager().Get("tiny", 1), Pattern(1, 1));
  EXPECT_EQ(manager().Stats("tiny")->used, 4096u);
  ExpectHealthy("tiny");
}

TEST_F(PoolTest, InvalidMetadataIsRefusedAndChangesNothing) {
  CreatePool("meta", 8 * kMiB);
  PutOptions opts{.metadata = "{not json"};
  EXPECT_EQ(manager().Put("meta", 1, Pattern(1, 10), 1, opts).code(), Code::kInvalidArgument);
  EXPECT_EQ(manager().Stats("meta")->entry_count, 0u);
  EXPECT_EQ(manager().Stats("meta")->used, 0u);
}

TEST_F(PoolTest, EntryLargerThanPoolFailsAtOnceAndEvictsNothing) {
  CreatePool("small", 1 * kMiB);
  ASSERT_TRUE(manager().Put("small", 1, Pattern(1, 1000), 1).ok());
  Status s = manager().Put("small", 2, Pattern(2, 2 * kMiB), 1);
  EXPECT_EQ(s.code(), Code::kNoSpace);
  EXPECT_NE(s.message().find("larger than pool 'small'"), std::string::npos) << s.message();
  EXPECT_EQ(manager().Stats("small")->entry_count, 1u);
  EXPECT_EQ(manager().Stats("small")->evictions, 0u);
}

TEST_F(PoolTest, PutUnderPressureEvictsJustEnoughBytes) {
  CreatePool("press", 1 * kMiB);  // 256 blocks
  for (uint64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(manager().Put("press", i, Pattern(i, 128 * 1024), 1).ok());  // 32 blocks each
  }
  EXPECT_EQ(manager().Stats("press")->free, 0u);
  // 200 KiB needs 50 blocks: the two oldest (LRU) go, nothing else.
  ASSERT_TRUE(manager().Put("press", 100, Pattern(100, 200 * 1024), 1).ok());
  EXPECT_EQ(manager().Stats("press")->evictions, 2u);
  EXPECT_FALSE(manager().Stat("press", 0).ok());
  EXPECT_FALSE(manager().Stat("press", 1).ok());
  for (uint64_t i = 2; i < 8; ++i) EXPECT_TRUE(manager().Stat("press", i).ok()) << i;
  ExpectHealthy("press");
}

TEST_F(PoolTest, MaxSequencesEvictsByCount) {
  CreatePool("count", 8 * kMiB, Policy::kFifo, /*max_sequences=*/3);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(manager().Put("count", i, Pattern(i, 10), 1).ok());
  auto entries = manager().Entries("count");
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].sequence_id, 2u);
  EXPECT_EQ(manager().Stats("count")->evictions, 2u);
  ExpectHealthy("count");
}

TEST_F(PoolTest, PinnedEntryIsNeverEvictedAndReplacementWaitsForLastPin) {
  CreatePool("pin", 1 * kMiB);
  ASSERT_TRUE(manager().Put("pin", 1, Pattern(1, 512 * 1024), 1).ok());
  auto view = manager().View("pin", 1);
  ASSERT_TRUE(view.ok());
  // Needs the pinned entry's space: refused, and the pinned bytes are intact.
  EXPECT_EQ(manager().Put("pin", 2, Pattern(2, 768 * 1024), 1).code(), Code::kNoSpace);
  EXPECT_EQ(*manager().Evict("pin", 100), 0u);
  // Replace it: the new bytes are visible at once, the old stay readable via the view.
  ASSERT_TRUE(manager().Put("pin", 1, Pattern(9, 256 * 1024), 1).ok());
  EXPECT_EQ(*manager().Get("pin", 1), Pattern(9, 256 * 1024));
  auto old = Pattern(1, 512 * 1024);
  EXPECT_TRUE(std::equal(old.begin(), old.end(), view->data().begin()));
  EXPECT_EQ(manager().Stats("pin")->used, 768u * 1024);
  ASSERT_TRUE(view->Release().ok());
  EXPECT_EQ(manager().Stats("pin")->used, 256u * 1024);
  ExpectHealthy("pin");
}

TEST_F(PoolTest, PinCountsNothingButHoldsTheBytes) {
  CreatePool("quiet", 1 * kMiB);
  ASSERT_TRUE(manager().Put("quiet", 1, Pattern(1, 4096), 1, {.prefix_tokens = {7, 8}}).ok());
  {
    auto pin = manager().Pin("quiet", 1);
    ASSERT_TRUE(pin.ok());
    EXPECT_EQ(pin->prefix_tokens(), (std::vector<uint32_t>{7, 8}));
    EXPECT_EQ(*manager().Evict("quiet", 100), 0u);
    EXPECT_EQ(manager().Pin("quiet", 2).status().code(), Code::kNotFound);
  }
  auto st = manager().Stats("quiet");
  EXPECT_EQ(st->hits, 0u);
  EXPECT_EQ(st->misses, 0u);
  EXPECT_EQ(manager().Stat("quiet", 1)->access_count, 0u);
}

// Pinning many entries in one hold of the lock (what the remote sender reads): each
// cached id is pinned as Pin would (no access counted, never evicted while held), a
// missing one gives a view that is not valid, and ReleaseAll lets them all go.
TEST_F(PoolTest, PinEachPinsWhatIsCachedAndReleaseAllLetsGo) {
  CreatePool("many", 1 * kMiB);
  for (uint64_t seq : {1, 2, 4}) {
    ASSERT_TRUE(manager().Put("many", seq, Pattern(seq, 4096), 1, {.prefix_tokens = {9}}).ok());
  }
  auto handle = ManagerInternals::Open(manager(), "many");
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  const std::vector<uint64_t> seqs = {4, 3, 1, 2, 4};
  auto views = (*handle)->PinEach(seqs);
  ASSERT_TRUE(views.ok()) << views.status().ToString();
  ASSERT_EQ(views->size(), seqs.size());
  for (size_t k = 0; k < seqs.size(); ++k) {
    if (seqs[k] == 3) {
      EXPECT_FALSE((*views)[k].valid());
      continue;
    }
    ASSERT_TRUE((*views)[k].valid()) << k;
    EXPECT_EQ((*views)[k].info().sequence_id, seqs[k]);
    EXPECT_EQ((*views)[k].prefix_tokens(), std::vector<uint32_t>{9});
    EXPECT_TRUE(std::memcmp((*views)[k].data().data(), Pattern(seqs[k], 4096).data(), 4096) == 0);
  }
  EXPECT_EQ(manager().Health("many")->pinned_entries, 3u);
  EXPECT_EQ(*manager().Evict("many", 100), 0u) << "a pinned entry was evicted";
  const uint64_t used = manager().Stats("many")->used;  // three entries of one size
  ASSERT_TRUE(manager().Remove("many", 2).ok());
  EXPECT_EQ(manager().Stats("many")->used, used) << "a removed pinned entry's bytes";

  ASSERT_TRUE(EntryView::ReleaseAll(*views).ok());
  for (const EntryView& v : *views) EXPECT_FALSE(v.valid());
  EXPECT_EQ(manager().Health("many")->pinned_entries, 0u);
  EXPECT_EQ(manager().Stats("many")->used, used / 3 * 2) << "freed at the last release";
  auto st = manager().Stats("many");
  EXPECT_EQ(st->hits, 0u);
  EXPECT_EQ(st->misses, 0u);
  EXPECT_EQ(*manager().Evict("many", 100), 2u);
  ExpectHealthy("many");
}

// The remote sender's read (ReadEach): an entry published with the generation asked
// for is read whole, with its attributes, without the pool lock (a process holds it
// throughout), pinning nothing and counting no access; another generation reads as
// replaced, a missing id as unsure (for the locked path to decide).
TEST_F(PoolTest, ReadEachReadsPublishedEntriesWithoutTheLock) {
  CreatePool("sender", 1 * kMiB);
  ASSERT_TRUE(manager()
                  .Put("sender", 1, Pattern(1, 4099), 77,
                       {.prefix_tokens = {9, 10, 11}, .priority = -3, .metadata = R"({"m":1})"})
                  .ok());
  ASSERT_TRUE(manager().Put("sender", 2, Pattern(2, 100), 1).ok());
  const uint64_t gen1 = manager().Stat("sender", 1)->generation;
  const uint64_t gen2 = manager().Stat("sender", 2)->generation;
  auto handle = ManagerInternals::Open(manager(), "sender");
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();

  testing::Child holder({testing::BuildDir() + "/tests/core/pool_worker", "hold-lock", "sender"});
  ASSERT_TRUE(holder.WaitForLine("ready"));
  const std::vector<EntryRef> refs = {{1, gen1}, {2, gen2 + 1}, {3, gen1}, {1, gen1}};
  std::vector<ReadOutcome> outcomes(refs.size());
  std::vector<PublishedEntry> seen(refs.size());
  std::vector<std::vector<std::byte>> data(refs.size()), tokens(refs.size());
  std::vector<std::string> meta(refs.size());
  const auto start = std::chrono::steady_clock::now();
  (*handle)->ReadEach(
      refs,
      [&](size_t k, const PublishedEntry& e) {
        seen[k] = e;
        data[k].assign(e.data.begin(), e.data.end());
        tokens[k].assign(e.prefix_tokens.begin(), e.prefix_tokens.end());
        meta[k] = e.metadata;
      },
      outcomes);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  holder.Kill(SIGKILL);
  holder.Wait();

  for (size_t k : {size_t{0}, size_t{3}}) {
    ASSERT_EQ(outcomes[k], ReadOutcome::kRead) << k;
    EXPECT_EQ(data[k], Pattern(1, 4099));
    const std::vector<uint32_t> want = {9, 10, 11};
    ASSERT_EQ(tokens[k].size(), want.size() * 4);
    EXPECT_EQ(std::memcmp(tokens[k].data(), want.data(), tokens[k].size()), 0);
    EXPECT_EQ(meta[k], R"({"m":1})");
    EXPECT_EQ(seen[k].token_count, 77u);
    EXPECT_EQ(seen[k].priority, -3);
  }
  EXPECT_EQ(outcomes[1], ReadOutcome::kReplaced);
  EXPECT_EQ(outcomes[2], ReadOutcome::kUnsure);
  auto st = manager().Stats("sender");
  EXPECT_EQ(st->hits, 0u);
  EXPECT_EQ(st->misses, 0u);
  EXPECT_EQ(manager().Health("sender")->pinned_entries, 0u);
  ExpectHealthy("sender");
}

TEST_F(PoolTest, RemoveOfPinnedEntryFreesOnRelease) {
  CreatePool("rmpin", 1 * kMiB);
  ASSERT_TRUE(manager().Put("rmpin", 1, Pattern(1, 4096), 1).ok());
  {
    auto view = manager().View("rmpin", 1);
    ASSERT_TRUE(manager().Remove("rmpin", 1).ok());
    EXPECT_EQ(manager().Stats("rmpin")->entry_count, 0u);
    EXPECT_EQ(manager().Stats("rmpin")->used, 4096u);
    ExpectHealthy("rmpin");
  }
  EXPECT_EQ(manager().Stats("rmpin")->used, 0u);
}

TEST_F(PoolTest, SpaceIsSizeAndFreeBytesABoundOfWhatPinsLeave) {
  CreatePool("space", 1 * kMiB);
  Result<PoolSpace> empty = manager().Space("space");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->size, 1 * kMiB);
  EXPECT_EQ(empty->free, 1 * kMiB);
  ASSERT_TRUE(manager().Put("space", 1, Pattern(1, 4096), 1).ok());
  ASSERT_TRUE(manager().Put("space", 2, Pattern(2, 8192), 1).ok());
  {
    auto view = manager().View("space", 1);
    ASSERT_TRUE(view.ok());
    // A removed entry still pinned keeps its bytes: they are not free.
    ASSERT_TRUE(manager().Remove("space", 1).ok());
    Result<PoolSpace> space = manager().Space("space");
    Result<PoolStats> stats = manager().Stats("space");
    ASSERT_TRUE(space.ok() && stats.ok());
    EXPECT_EQ(space->size, stats->size);
    EXPECT_EQ(space->free, stats->free);
    EXPECT_EQ(space->free, 1 * kMiB - 4096 - 8192);
    EXPECT_LE(space->free, stats->size - stats->pinned);
  }
  EXPECT_EQ(manager().Space("space")->free, 1 * kMiB - 8192);
  EXPECT_EQ(manager().Space("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(manager().Space("bad/name").status().code(), Code::kInvalidArgument);
}

TEST_F(PoolTest, ReservationIsInvisibleUntilCommitAndFreedOnAbort) {
  CreatePool("res", 1 * kMiB);
  {
    auto r = manager().Reserve("res", 3, 4096, 1);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(manager().Stat("res", 3).status().code(), Code::kNotFound);
  }  // aborted
  EXPECT_EQ(manager().Stats("res")->used, 0u);
  auto r = manager().Reserve("res", 3, 4096, 1);
  std::memset(r->data().data(), 7, 4096);
  ASSERT_TRUE(r->Commit().ok());
  EXPECT_EQ((*manager().Get("res", 3))[4095], std::byte{7});
  ExpectHealthy("res");
}

TEST_F(PoolTest, ReservationFillsFromAFileWithoutMovingItsPosition) {
  CreatePool("fill", 4 * kMiB);
  testing::TempDir dir;
  std::string path = dir.Join("in");
  auto data = Pattern(6, 2 * kMiB + 17);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(lseek(fd, 5, SEEK_SET), 5);
  auto r = manager().Reserve("fill", 6, data.size() - 100, 1);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->FillFromFile(fd, 100).ok());
  EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 5);
  ASSERT_TRUE(r->Commit().ok());
  EXPECT_TRUE(*manager().Get("fill", 6) == std::vector<std::byte>(data.begin() + 100, data.end()));

  // A file shorter than the reservation (it shrank): an error naming how far it got,
  // and nothing published once the reservation is dropped.
  auto short_r = manager().Reserve("fill", 7, data.size() + 10, 1);
  ASSERT_TRUE(short_r.ok());
  Status s = short_r->FillFromFile(fd, 0);
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_NE(s.message().find("ended after " + std::to_string(data.size()) + " of "),
            std::string::npos)
      << s.ToString();
  ASSERT_TRUE(short_r->Abort().ok());
  close(fd);
  EXPECT_EQ(manager().Stat("fill", 7).status().code(), Code::kNotFound);
  ExpectHealthy("fill");
}

TEST_F(PoolTest, ReservationCanBeFilledThroughTheSegmentFile) {
  CreatePool("file", 1 * kMiB);
  auto data = Pattern(5, 300000);
  auto r = manager().Reserve("file", 5, data.size(), 1);
  ASSERT_TRUE(r.ok());
  auto range = r->OpenFileRange();
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  ASSERT_EQ(pwrite(range->first, data.data(), data.size(), static_cast<off_t>(range->second)),
            static_cast<ssize_t>(data.size()));
  ASSERT_TRUE(r->Commit().ok());
  EXPECT_EQ(*manager().Get("file", 5), data);

  // Once the name points at another segment, the old mapping's file is not handed out.
  auto stale = manager().Reserve("file", 6, 100, 1);
  ASSERT_TRUE(manager().DestroyPool("file").ok());
  CreatePool("file", 1 * kMiB);
  EXPECT_EQ(stale->OpenFileRange().status().code(), Code::kNotFound);
}

TEST_F(PoolTest, PrefixLookupUsesSeedHash) {
  CreatePool("pfx", 8 * kMiB);
  std::vector<uint32_t> p1 = {1, 2, 3, 4, 5}, p2 = {42};
  ASSERT_TRUE(manager().Put("pfx", 1, Pattern(1, 10), 1, {.prefix_tokens = p1}).ok());
  ASSERT_TRUE(manager().Put("pfx", 2, Pattern(2, 10), 1, {.prefix_tokens = p1}).ok());
  ASSERT_TRUE(manager().Put("pfx", 3, Pattern(3, 10), 1, {.prefix_tokens = p2}).ok());
  ASSERT_TRUE(manager().Put("pfx", 4, Pattern(4, 10), 1).ok());
  auto matches = manager().GetByPrefix("pfx", p1);
  ASSERT_TRUE(matches.ok());
  ASSERT_EQ(matches->size(), 2u);
  EXPECT_EQ((*matches)[0].info().sequence_id, 1u);
  EXPECT_EQ((*matches)[1].info().sequence_id, 2u);
  EXPECT_TRUE(std::ranges::equal((*matches)[1].data(), Pattern(2, 10)));
  EXPECT_EQ((*matches)[0].prefix_tokens(), p1);
  auto by_hash = manager().FindByPrefixHash("pfx", "e8a4b2ee7ede79a3");
  ASSERT_EQ(by_hash->size(), 1u);
  EXPECT_EQ((*by_hash)[0].sequence_id, 3u);
  matches->clear();
  ASSERT_TRUE(manager().Remove("pfx", 1).ok());
  EXPECT_EQ(manager().GetByPrefix("pfx", p1)->size(), 1u);
  EXPECT_TRUE(manager().GetByPrefix("pfx", std::vector<uint32_t>{9})->empty());
  EXPECT_EQ(manager().FindByPrefixHash("pfx", "xyz").status().code(), Code::kInvalidArgument);
  ExpectHealthy("pfx");
}

TEST_F(PoolTest, LongestPrefixFindsTheDeepestSharedBlocks) {
  CreatePool("lp", 8 * kMiB);  // 16 tokens per block
  std::vector<uint32_t> base(100);
  for (uint32_t i = 0; i < 100; ++i) base[i] = i + 1;
  auto first = [&](size_t n) { return std::vector<uint32_t>(base.begin(), base.begin() + n); };
  ASSERT_TRUE(manager().Put("lp", 1, Pattern(1, 10), 1, {.prefix_tokens = first(32)}).ok());
  ASSERT_TRUE(manager().Put("lp", 2, Pattern(2, 10), 1, {.prefix_tokens = first(70)}).ok());
  std::vector<uint32_t> other = first(64);
  other[40] = 9999;
  ASSERT_TRUE(manager().Put("lp", 3, Pattern(3, 10), 1, {.prefix_tokens = other}).ok());

  auto m = manager().LongestPrefix("lp", base);  // shares 70 tokens with entry 2
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->entry.sequence_id, 2u);
  EXPECT_EQ(m->matched_tokens, 70u);
  auto m2 = manager().LongestPrefix("lp", first(40));
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(m2->entry.sequence_id, 1u);
  EXPECT_EQ(m2->matched_tokens, 32u);
  EXPECT_EQ(manager().LongestPrefix("lp", first(10)).status().code(), Code::kNotFound);
  ASSERT_TRUE(manager().Remove("lp", 2).ok());
  EXPECT_EQ(manager().LongestPrefix("lp", base)->entry.sequence_id, 1u);
  ExpectHealthy("lp");
}

TEST_F(PoolTest, ManualEvictFollowsSeedArithmetic) {
  CreatePool("ev", 8 * kMiB);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(manager().Put("ev", i, Pattern(i, 10), 1).ok());
  EXPECT_EQ(*manager().Evict("ev", 25), 2u);   // floor(10 * 0.25)
  EXPECT_EQ(*manager().Evict("ev", 1), 1u);    // max(1, floor(8 * 0.01))
  EXPECT_EQ(*manager().Evict("ev", 100), 7u);
  EXPECT_EQ(*manager().Evict("ev", 50), 0u);   // no entries
  EXPECT_EQ(manager().Evict("ev", 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(manager().Evict("ev", 101).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(manager().Stats("ev")->evictions, 10u);
}

TEST_F(PoolTest, ManyEntriesAndHitMissCounters) {
  CreatePool("many", 64 * kMiB);
  for (uint64_t i = 0; i < 5000; ++i) {
    ASSERT_TRUE(manager().Put("many", i * 7919, Pattern(i, 100 + i % 300), 1).ok());
  }
  std::vector<std::byte> buf;
  for (uint64_t i = 0; i < 5000; ++i) {
    ASSERT_TRUE(manager().GetInto("many", i * 7919, buf).ok());
    ASSERT_EQ(buf, Pattern(i, 100 + i % 300));
  }
  for (uint64_t i = 0; i < 100; ++i) EXPECT_FALSE(manager().GetInto("many", 1, buf).ok());
  auto st = manager().Stats("many");
  EXPECT_EQ(st->entry_count, 5000u);
  EXPECT_EQ(st->hits, 5000u);
  EXPECT_EQ(st->misses, 100u);
  EXPECT_NEAR(st->hit_rate(), 5000.0 / 5100.0, 1e-9);
  ExpectHealthy("many");
}

TEST_F(PoolTest, AttachDetachTracksProcesses) {
  CreatePool("att", 8 * kMiB);
  ASSERT_TRUE(manager().Attach("att", getpid()).ok());
  ASSERT_TRUE(manager().Attach("att", getppid()).ok());
  EXPECT_EQ(manager().Stats("att")->attached, 2u);
  ASSERT_TRUE(manager().Detach("att", getppid()).ok());
  EXPECT_EQ(manager().Stats("att")->attached, 1u);
  EXPECT_EQ(manager().Detach("att", getppid()).code(), Code::kNotFound);
  EXPECT_EQ(manager().Attach("att", 0x3FFFFFF0).code(), Code::kNotFound);
  auto rows = (*ManagerInternals::catalog(manager()))->ListAttachments("att");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->size(), 2u);
  auto health = manager().Health("att");
  ASSERT_EQ(health->processes.size(), 1u);
  EXPECT_EQ(health->processes[0].pid, getpid());
}

TEST_F(PoolTest, DeadAttachedProcessIsPruned) {
  CreatePool("prune", 8 * kMiB);
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  ASSERT_TRUE(manager().Attach("prune", child).ok());
  EXPECT_EQ(manager().Stats("prune")->attached, 1u);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(manager().Stats("prune")->attached, 0u);
  ExpectHealthy("prune");
}

// A put that must make room reaps dead processes and rebuilds the pool's derived
// state first. The slot it has just claimed still holds the sizes of its previous
// entry or chunk; the rebuild must not take that for damage and drop the put.
TEST_F(PoolTest, APutMakingRoomKeepsItsSlotThroughTheRebuildOfADeadProcess) {
  for (bool chunks : {false, true}) {
    SCOPED_TRACE(chunks ? "chunks" : "entries");
    PoolConfig c;
    c.name = chunks ? "reap-c" : "reap-e";
    c.size_bytes = kMiB;
    ASSERT_TRUE(manager().CreatePool(c).ok());
    ASSERT_TRUE(manager().Put(c.name, 2, Pattern(2, 900 * 1024), 1).ok());
    // A freed slot with stale sizes, at the head of the free list.
    ASSERT_TRUE(manager().Put(c.name, 1, Pattern(1, 60 * 1024), 1).ok());
    ASSERT_TRUE(manager().Remove(c.name, 1).ok());
    // A process that used the pool and died: the next allocation that needs room
    // reaps it (at most every 100 ms) and rebuilds.
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(manager().Put(c.name, 9, Pattern(9, 10), 1).ok() ? 0 : 1);
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_TRUE(manager().Remove(c.name, 9).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    if (chunks) {
      std::vector<uint32_t> tokens(16, 5);
      std::vector<std::byte> bytes = Pattern(3, 500 * 1024);
      std::vector<std::span<const std::byte>> spans = {bytes};
      auto stored = manager().StoreChunks(c.name, "m", tokens, spans);
      ASSERT_TRUE(stored.ok()) << stored.status().ToString();
      EXPECT_EQ(stored->stored, 1u);
    } else {
      Status s = manager().Put(c.name, 3, Pattern(3, 500 * 1024), 1);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_TRUE(manager().Get(c.name, 3).ok());
    }
    ExpectHealthy(c.name);
  }
}

TEST_F(PoolTest, CorruptSegmentIsRefusedNotCrashed) {
  CreatePool("bad", 8 * kMiB);
  Manager fresh(options());
  int fd = open(SegmentPath("bad").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t junk = 0xDEADBEEF;
  ASSERT_EQ(pwrite(fd, &junk, 4, 0), 4);  // magic
  Status s = fresh.Put("bad", 1, Pattern(1, 10), 1);
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("bad magic"), std::string::npos);
  uint32_t magic = 0x4B564341, version = 99;
  ASSERT_EQ(pwrite(fd, &magic, 4, 0), 4);
  ASSERT_EQ(pwrite(fd, &version, 4, 4), 4);
  EXPECT_EQ(fresh.Stats("bad").status().code(), Code::kCorruption);
  ASSERT_EQ(ftruncate(fd, 100), 0);
  EXPECT_EQ(fresh.Stats("bad").status().code(), Code::kCorruption);
  close(fd);
}

TEST_F(PoolTest, HeaderWhoseBlockCountWrapsIsCorruptionNotACrash) {
  CreatePool("wrap", 4 * kMiB);
  ASSERT_TRUE(manager().Put("wrap", 1, Pattern(1, 5000), 1).ok());
  // block_count + 2^52 blocks of 4 KiB: the product wraps to the real data size, so
  // every derived offset still matches the segment.
  uint64_t blocks = RawField<uint64_t>("wrap", 32) + (uint64_t{1} << 52);
  int fd = open(SegmentPath("wrap").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, &blocks, 8, 32), 8);
  close(fd);
  Manager fresh(options());
  for (const Status& s : {fresh.Stats("wrap").status(), fresh.Entries("wrap").status(),
                          fresh.Health("wrap").status(), fresh.Get("wrap", 1).status()}) {
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("block count"), std::string::npos) << s.ToString();
  }
}

TEST_F(PoolTest, SizesThatWrapAreRefusedAndChangeNothing) {
  CreatePool("huge", 1 * kMiB);
  PutOptions meta{.metadata = "\"" + std::string(198, 'x') + "\""};  // 200 bytes
  PutOptions prefix;
  prefix.prefix_tokens.assign(1000, 7);
  struct Case {
    size_t size;
    const PutOptions* options;
  } cases[] = {{SIZE_MAX - 100, &meta},  {SIZE_MAX, &meta},      {SIZE_MAX, nullptr},
               {SIZE_MAX - 4095, nullptr}, {SIZE_MAX - 3000, &prefix}, {2 * kMiB, nullptr},
               {kMiB - 100, &meta}};
  for (const Case& c : cases) {
    Result<PutReservation> r =
        manager().Reserve("huge", 1, c.size, 1, c.options != nullptr ? *c.options : PutOptions{});
    ASSERT_FALSE(r.ok()) << c.size << " bytes gave a span of " << r->data().size();
    EXPECT_EQ(r.status().code(), Code::kNoSpace) << r.status().ToString();
    EXPECT_NE(r.status().message().find("larger than pool 'huge'"), std::string::npos)
        << r.status().ToString();
  }
  EXPECT_EQ(manager().Stats("huge")->used, 0u);
  // The largest entry that fits still does.
  ASSERT_TRUE(manager().Reserve("huge", 1, kMiB - 200, 1, meta).ok());
  ExpectHealthy("huge");
}

TEST_F(PoolTest, RecordedStatsAccumulateAcrossSegments) {
  CreatePool("acc", 8 * kMiB);
  ASSERT_TRUE(manager().Put("acc", 1, Pattern(1, 10), 1).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(manager().Get("acc", 1).ok());
  EXPECT_FALSE(manager().Get("acc", 2).ok());
  ASSERT_TRUE(manager().RecordStats("acc").ok());
  ASSERT_TRUE(manager().RecordStats("acc").ok());  // nothing new: adds nothing
  Catalog* cat = *ManagerInternals::catalog(manager());
  EXPECT_EQ(cat->GetStats("acc")->hits, 3);
  EXPECT_EQ(cat->GetStats("acc")->misses, 1);
  // A reboot: the segment and its counters go, the catalog's totals stay.
  unlink(SegmentPath("acc").c_str());
  manager_ = std::make_unique<Manager>(options());
  ASSERT_TRUE(manager().LoadPool({.name = "acc", .size_bytes = 8 * kMiB}).ok());
  ASSERT_TRUE(manager().Put("acc", 1, Pattern(1, 10), 1).ok());
  ASSERT_TRUE(manager().Get("acc", 1).ok());
  ASSERT_TRUE(manager().RecordStats("acc").ok());
  EXPECT_EQ((*ManagerInternals::catalog(manager()))->GetStats("acc")->hits, 4);
}

TEST_F(PoolTest, GarbledIndexIsReportedNotFollowedOffTheMap) {
  CreatePool("garble", 8 * kMiB);
  for (uint64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(manager().Put("garble", i, Pattern(i, 100), 1, {.prefix_tokens = {1}}).ok());
  }
  // Point every id bucket and prefix bucket at slots far past the table.
  uint32_t bucket_count = RawField<uint32_t>("garble", 208);
  uint64_t id_buckets = RawField<uint64_t>("garble", 200);
  uint64_t prefix_buckets = RawField<uint64_t>("garble", 216);
  std::vector<uint32_t> junk(bucket_count, 0x7FFFFFF0u);
  int fd = open(SegmentPath("garble").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  size_t bytes = junk.size() * sizeof(uint32_t);
  ASSERT_EQ(pwrite(fd, junk.data(), bytes, static_cast<off_t>(id_buckets)),
            static_cast<ssize_t>(bytes));
  ASSERT_EQ(pwrite(fd, junk.data(), bytes, static_cast<off_t>(prefix_buckets)),
            static_cast<ssize_t>(bytes));
  close(fd);
  Manager fresh(options());
  EXPECT_EQ(fresh.Get("garble", 3).status().code(), Code::kNotFound);
  // A prefix chain that leads off the table cannot be trusted to list every match.
  Result<std::vector<EntryView>> by_prefix = fresh.GetByPrefix("garble", std::vector<uint32_t>{1});
  EXPECT_EQ(by_prefix.status().code(), Code::kCorruption);
  EXPECT_NE(by_prefix.status().message().find("pool 'garble'"), std::string::npos);
  auto h = fresh.Health("garble");
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(h->healthy);
  EXPECT_FALSE(h->problems.empty());
}

TEST_F(PoolTest, StatusOfPoolWithoutSegmentSaysNotLoaded) {
  CreatePool("lost", 8 * kMiB);
  unlink(SegmentPath("lost").c_str());  // what a reboot does
  Manager fresh(options());
  auto st = fresh.Stats("lost");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_FALSE(st->loaded);
  EXPECT_EQ(st->config.size_bytes, 8 * kMiB);
  auto all = fresh.StatsAll();
  ASSERT_EQ(all->size(), 1u);
  Status s = fresh.Put("lost", 1, Pattern(1, 1), 1);
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_NE(s.message().find("not loaded"), std::string::npos);
  EXPECT_EQ(fresh.CreatePool({.name = "lost", .size_bytes = 8 * kMiB}).code(),
            Code::kAlreadyExists);
  ASSERT_TRUE(fresh.LoadPool({.name = "lost", .size_bytes = 4 * kMiB}).ok());
  EXPECT_TRUE(fresh.Stats("lost")->loaded);
  EXPECT_EQ(fresh.GetConfig("lost")->size_bytes, 4 * kMiB);
}

TEST_F(PoolTest, DiskTierPoolSurvivesUnmapAndRemap) {
  PoolConfig c{.name = "disk", .size_bytes = 8 * kMiB, .tier = Tier::kDisk};
  ASSERT_TRUE(manager().CreatePool(c).ok());
  EXPECT_NE(access(SegmentPath("disk").c_str(), F_OK), 0);
  EXPECT_EQ(access(home_->Join("kv_disk/disk.pool").c_str(), F_OK), 0);
  ASSERT_TRUE(manager().Put("disk", 1, Pattern(1, 70000), 3).ok());
  manager_ = std::make_unique<Manager>(options());  // unmaps
  EXPECT_EQ(*manager().Get("disk", 1), Pattern(1, 70000));
  EXPECT_EQ(manager().Stats("disk")->config.tier, Tier::kDisk);
  ASSERT_TRUE(manager().DestroyPool("disk").ok());
  EXPECT_NE(access(home_->Join("kv_disk/disk.pool").c_str(), F_OK), 0);
}

TEST_F(PoolTest, SegmentAndCatalogAreCreated0600) {
  CreatePool("mode", 8 * kMiB);
  struct stat st {};
  ASSERT_EQ(stat(SegmentPath("mode").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(PoolTest, ConcurrentThreadsKeepThePoolConsistent) {
  CreatePool("threads", 4 * kMiB);  // small: eviction runs all the time
  std::atomic<bool> bad{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte> buf;
      for (int i = 0; i < 3000; ++i) {
        uint64_t seq = static_cast<uint64_t>((i * 31 + t) % 200);
        size_t size = 1000 + (seq * 97) % 60000;
        if (i % 3 == 0) {
          if (!manager().Put("threads", seq, Pattern(seq, size), 1).ok()) bad = true;
        } else if (manager().GetInto("threads", seq, buf).ok() && buf != Pattern(seq, size)) {
          bad = true;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(bad);
  ExpectHealthy("threads");
}

}  // namespace
}  // namespace kvcache
