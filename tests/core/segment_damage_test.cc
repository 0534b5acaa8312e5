// Damage in a pool's shared state, one structure at a time: every walk of the segment
// is bounds- and cycle-checked, a bad value is Corruption naming the pool (never a
// crash, a hang or a stray write), and health says what is wrong.
//
// Pool-level cases write the damage with pwrite into the segment file, which every
// mapping sees, as anyone who can write /dev/shm can. No process has died in them, so
// nothing is rebuilt before the damage is met (except where a test says so).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "eviction_heap.h"
#include "pool_lock.h"
#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "segment_format.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using seg::kNil;
using testing::Pattern;
constexpr uint64_t kMiB = 1024 * 1024;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------- the eviction heap

// A heap over exactly `kCap` slots, each index slot i holding key i (LRU ticks).
class HeapDamageTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kCap = 8;
  HeapDamageTest() : slots_(kCap), heap_(kCap, kNil) {
    for (uint32_t i = 0; i < kCap; ++i) {
      slots_[i].access_tick = slots_[i].key_tick = 100 + i;
      slots_[i].heap_pos = kNil;
    }
  }
  EvictionHeap Heap() { return EvictionHeap(Policy::kLru, heap_.data(), &size_, slots_.data(), kCap); }
  std::vector<seg::Slot> slots_;
  std::vector<uint32_t> heap_;
  uint32_t size_ = 0;
};

TEST_F(HeapDamageTest, IntactHeapOrdersAndVerifies) {
  EvictionHeap h = Heap();
  for (uint32_t i : {5u, 2u, 7u, 0u, 3u}) h.Push(i);
  EXPECT_TRUE(h.Verify());
  h.Remove(0);
  h.SettleTop();
  EXPECT_FALSE(h.damaged());
  EXPECT_EQ(h.Top(), 2u);
  EXPECT_EQ(slots_[0].heap_pos, kNil);
}

TEST_F(HeapDamageTest, ReplaceTakesThePlaceAndKeyOfTheOldSlot) {
  EvictionHeap h = Heap();
  for (uint32_t i : {5u, 2u, 7u, 0u, 3u}) {
    slots_[i].access_tick = 100 + i;
    h.Push(i);
  }
  uint32_t pos = slots_[2].heap_pos;
  slots_[6].access_tick = 1000;  // the successor was accessed last
  ASSERT_TRUE(h.Replace(2, 6));
  EXPECT_EQ(heap_[pos], 6u);
  EXPECT_EQ(slots_[6].heap_pos, pos);
  EXPECT_EQ(slots_[2].heap_pos, kNil);
  EXPECT_EQ(size_, 5u);
  EXPECT_TRUE(h.Verify());
  // Stale, the successor is refreshed when it comes to the top: it goes last.
  std::vector<uint32_t> order;
  for (h.SettleTop(); !h.empty(); h.SettleTop()) {
    order.push_back(h.Top());
    h.Remove(h.Top());
  }
  EXPECT_FALSE(h.damaged());
  EXPECT_EQ(order, (std::vector<uint32_t>{0, 3, 5, 7, 6}));
}

TEST_F(HeapDamageTest, ReplaceOfASlotNotWhereItSaysIsDamage) {
  EvictionHeap h = Heap();
  for (uint32_t i : {1u, 2u, 3u}) h.Push(i);
  std::vector<uint32_t> before(heap_.begin(), heap_.begin() + size_);
  slots_[3].heap_pos = slots_[1].heap_pos;  // says it is where slot 1 is
  EXPECT_FALSE(h.Replace(3, 4));
  EXPECT_TRUE(h.damaged());
  EXPECT_EQ(slots_[4].heap_pos, kNil);
  EXPECT_EQ(std::vector<uint32_t>(heap_.begin(), heap_.begin() + size_), before);
  h.ClearDamage();
  slots_[3].heap_pos = 2;
  EXPECT_FALSE(h.Replace(3, kCap));  // a successor out of range
  EXPECT_TRUE(h.damaged());
  EXPECT_EQ(std::vector<uint32_t>(heap_.begin(), heap_.begin() + size_), before);
}

TEST_F(HeapDamageTest, IndexOutOfRangeStopsEveryOperation) {
  EvictionHeap h = Heap();
  for (uint32_t i : {1u, 2u, 3u, 4u}) h.Push(i);
  heap_[0] = 0x7FFFFFF0u;  // garbage where the top was
  EXPECT_FALSE(h.Verify());
  h.SettleTop();
  EXPECT_TRUE(h.damaged());
  h.ClearDamage();
  heap_[0] = 1;
  heap_[3] = kCap;  // just past the table, as the last element
  h.Remove(2);      // moves the last element: it is checked first
  EXPECT_TRUE(h.damaged());
  EXPECT_EQ(size_, 4u) << "a damaged remove changes nothing";
  EXPECT_EQ(slots_[2].heap_pos, 1u);
}

TEST_F(HeapDamageTest, SizeBeyondCapacityIsDamageNotAWriteOffTheEnd) {
  EvictionHeap h = Heap();
  h.Push(1);
  size_ = 0xFFFFFFF0u;
  h.Push(2);  // would write heap_[size_]
  EXPECT_TRUE(h.damaged());
  EXPECT_EQ(slots_[2].heap_pos, kNil);
  EXPECT_FALSE(h.Verify());
  h.ClearDamage();
  size_ = kCap + 1;
  h.SettleTop();
  EXPECT_TRUE(h.damaged());
}

TEST_F(HeapDamageTest, PositionThatNamesAnotherSlotIsDamage) {
  EvictionHeap h = Heap();
  for (uint32_t i : {1u, 2u, 3u}) h.Push(i);
  std::vector<uint32_t> before(heap_.begin(), heap_.begin() + size_);
  slots_[3].heap_pos = slots_[1].heap_pos;  // says it is where slot 1 is
  h.Remove(3);
  EXPECT_TRUE(h.damaged());
  EXPECT_EQ(std::vector<uint32_t>(heap_.begin(), heap_.begin() + size_), before);
  h.ClearDamage();
  slots_[2].heap_pos = 0x40000000u;  // far past the heap
  h.Update(2);
  EXPECT_TRUE(h.damaged());
  EXPECT_FALSE(h.Verify());
}

// ---------------------------------------------------------------- pools

class SegmentDamageTest : public testing::IsolatedTest {
 protected:
  std::string SegmentPath(const std::string& pool) { return "/dev/shm/" + manager().ShmName(pool); }

  seg::Header ReadHeader(const std::string& pool) {
    seg::Header h;
    int fd = open(SegmentPath(pool).c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(pread(fd, &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
    close(fd);
    return h;
  }
  template <typename T>
  T Read(const std::string& pool, uint64_t offset) {
    T v{};
    int fd = open(SegmentPath(pool).c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(pread(fd, &v, sizeof(v), static_cast<off_t>(offset)), static_cast<ssize_t>(sizeof(v)));
    close(fd);
    return v;
  }
  template <typename T>
  void Write(const std::string& pool, uint64_t offset, const T& v) {
    int fd = open(SegmentPath(pool).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &v, sizeof(v), static_cast<off_t>(offset)), static_cast<ssize_t>(sizeof(v)));
    close(fd);
  }
  // Offset of the slot holding live entry `seq`.
  uint64_t SlotOf(const std::string& pool, uint64_t seq) {
    seg::Header h = ReadHeader(pool);
    for (uint32_t i = 0; i < h.slot_capacity; ++i) {
      uint64_t at = h.slot_offset + uint64_t{i} * sizeof(seg::Slot);
      seg::Slot s = Read<seg::Slot>(pool, at);
      if (s.state == seg::kLive && s.sequence_id == seq) return at;
    }
    ADD_FAILURE() << "entry " << seq << " not found";
    return 0;
  }
  // A pool of 4 MiB with entries 1..n, each with a 32-token prefix and metadata.
  void MakePool(const std::string& pool, uint64_t n = 8) {
    CreatePool(pool, 4 * kMiB);
    for (uint64_t seq = 1; seq <= n; ++seq) {
      PutOptions o;
      for (uint32_t t = 0; t < 32; ++t) o.prefix_tokens.push_back(t + static_cast<uint32_t>(seq % 2));
      o.metadata = "{\"seq\":" + std::to_string(seq) + "}";
      ASSERT_TRUE(manager().Put(pool, seq, Pattern(seq, 3000 + seq * 100), 1, o).ok());
    }
  }
  void ExpectCorrupt(const Status& s, const std::string& pool, const std::string& what) {
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "pool '" + pool + "'")) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), what)) << s.ToString() << " lacks: " << what;
  }
  // Health's problems, which must include one containing `what`.
  void ExpectHealthSays(const std::string& pool, const std::string& what) {
    Result<HealthReport> h = manager().Health(pool);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    EXPECT_FALSE(h->healthy);
    std::string all;
    for (const std::string& p : h->problems) all += p + "\n";
    EXPECT_TRUE(Contains(all, what)) << "problems:\n" << all << "lack: " << what;
  }
};

// A live slot whose sizes put its payload, tokens or metadata past its extent (and past
// the mapping): every reader of its bytes refuses it. These reads crashed before.
TEST_F(SegmentDamageTest, SlotSizesPastItsExtentAreCorruptionForEveryReader) {
  MakePool("sizes");
  uint64_t at = SlotOf("sizes", 7);
  uint64_t generation = Read<uint64_t>("sizes", at + offsetof(seg::Slot, generation));
  Write<uint32_t>("sizes", at + offsetof(seg::Slot, metadata_len), 0xFFFFFFF0u);
  // An update keeps the tail it does not change: it would copy 4 GiB of "metadata".
  ExpectCorrupt(manager().UpdateEntry("sizes", 7, generation, {.token_count = 5}).status(),
                "sizes", "entry 7");
  ExpectCorrupt(manager().Entries("sizes").status(), "sizes", "entry 7 (slot");
  ExpectCorrupt(manager().Stat("sizes", 7).status(), "sizes", "do not fit");
  ExpectCorrupt(manager().Pin("sizes", 7).status(), "sizes", "entry 7");
  ExpectCorrupt(manager().PinAll("sizes").status(), "sizes", "entry 7");
  std::vector<uint32_t> prefix(32);
  for (uint32_t t = 0; t < 32; ++t) prefix[t] = t + 1;  // odd ids' prefix; 7 put last
  ExpectCorrupt(manager().GetByPrefix("sizes", prefix).status(), "sizes", "entry 7");
  ExpectCorrupt(manager().LongestPrefix("sizes", prefix).status(), "sizes", "entry 7");
  ExpectHealthSays("sizes", "entry 7 (slot");
  // The other entries are still served.
  EXPECT_EQ(*manager().Get("sizes", 2), Pattern(2, 3200));

  Write<uint32_t>("sizes", at + offsetof(seg::Slot, metadata_len), 8);
  Write<uint64_t>("sizes", at + offsetof(seg::Slot, size_bytes), ~uint64_t{0} - 100);
  ExpectCorrupt(manager().Stat("sizes", 7).status(), "sizes", "entry 7");
  std::vector<std::byte> out;
  EXPECT_FALSE(manager().GetInto("sizes", 7, out).ok());
  EXPECT_LT(out.size(), 1 * kMiB) << "no copy of a size read from garbage";
}

TEST_F(SegmentDamageTest, ExtentOutsideTheDataRegionIsNeverReadOrFreed) {
  MakePool("extent");
  seg::Header h = ReadHeader("extent");
  uint64_t at = SlotOf("extent", 4);
  // first + count wraps to a small number: only an overflow-safe check refuses it.
  Write<uint64_t>("extent", at + offsetof(seg::Slot, first_block), ~uint64_t{0} - 1);
  Write<uint64_t>("extent", at + offsetof(seg::Slot, extent_blocks), 4);
  std::vector<std::byte> out;
  Status get = manager().GetInto("extent", 4, out);  // the lock-free path refuses, then locked
  ExpectCorrupt(get, "extent", "entry 4");
  ExpectCorrupt(manager().Pin("extent", 4).status(), "extent", "entry 4");
  ExpectHealthSays("extent", "entry 4 (slot");
  // Removing it must not free blocks it never had (the bitmap stays as it was).
  std::vector<uint64_t> bitmap_before(h.bitmap_bytes / 8);
  for (size_t w = 0; w < bitmap_before.size(); ++w) {
    bitmap_before[w] = Read<uint64_t>("extent", h.bitmap_offset + 8 * w);
  }
  uint64_t used_before = ReadHeader("extent").used;
  EXPECT_TRUE(manager().Remove("extent", 4).ok());
  for (size_t w = 0; w < bitmap_before.size(); ++w) {
    EXPECT_EQ(Read<uint64_t>("extent", h.bitmap_offset + 8 * w), bitmap_before[w]) << w;
  }
  EXPECT_EQ(ReadHeader("extent").used, used_before);
  // An extent that starts just past the last block.
  MakePool("extent2", 2);
  uint64_t at2 = SlotOf("extent2", 1);
  Write<uint64_t>("extent2", at2 + offsetof(seg::Slot, first_block), h.block_count);
  Write<uint64_t>("extent2", at2 + offsetof(seg::Slot, extent_blocks), 1);
  ExpectCorrupt(manager().Entries("extent2").status(), "extent2", "entry 1");
}

TEST_F(SegmentDamageTest, EvictionOrderOutOfRangeIsCorruptionAndEvictsNothingWrong) {
  MakePool("heap");
  seg::Header h = ReadHeader("heap");
  Write<uint32_t>("heap", h.heap_offset, 0x7FFFFFF0u);  // the top names no slot
  ExpectCorrupt(manager().Evict("heap", 50).status(), "heap", "eviction order");
  EXPECT_EQ(manager().Entries("heap")->size(), 8u);
  ExpectHealthSays("heap", "eviction order is out of order");
  // A put that must evict to fit says why it cannot.
  ExpectCorrupt(manager().Put("heap", 99, Pattern(99, 4 * kMiB - 16 * 1024), 1), "heap",
                "eviction order");
}

TEST_F(SegmentDamageTest, HeapPositionOfAnotherSlotIsCorruptionNotAWrongVictim) {
  MakePool("pos");
  uint64_t at3 = SlotOf("pos", 3), at5 = SlotOf("pos", 5);
  // Entry 3 claims entry 5's place in the eviction order.
  Write<uint32_t>("pos", at3 + offsetof(seg::Slot, heap_pos),
                  Read<uint32_t>("pos", at5 + offsetof(seg::Slot, heap_pos)));
  ExpectCorrupt(manager().Remove("pos", 3), "pos", "eviction order");
  EXPECT_EQ(*manager().Get("pos", 5), Pattern(5, 3500)) << "entry 5 was not taken out for 3";
  ExpectHealthSays("pos", "eviction order");
}

TEST_F(SegmentDamageTest, VictimThatIsNotAnEntryIsCorruption) {
  MakePool("victim");
  seg::Header h = ReadHeader("victim");
  // Every slot the order names is made free: none of them may be evicted (freed twice).
  for (uint32_t pos = 0; pos < h.heap_size; ++pos) {
    uint32_t slot = Read<uint32_t>("victim", h.heap_offset + 4 * pos);
    Write<uint32_t>("victim", h.slot_offset + uint64_t{slot} * sizeof(seg::Slot) +
                                  offsetof(seg::Slot, state),
                    uint32_t{seg::kFree});
  }
  uint64_t used = ReadHeader("victim").used;
  ExpectCorrupt(manager().Evict("victim", 100).status(), "victim", "eviction order");
  EXPECT_EQ(ReadHeader("victim").used, used);
}

TEST_F(SegmentDamageTest, ChainLinksOutOfRangeAndCyclesAreNeverFollowed) {
  MakePool("chains");
  seg::Header h = ReadHeader("chains");
  uint64_t at2 = SlotOf("chains", 2), at4 = SlotOf("chains", 4);
  // Prefix and block-prefix links far past the table, on entries that are then removed
  // (unlinking writes through both neighbours).
  Write<uint32_t>("chains", at2 + offsetof(seg::Slot, prefix_next), 0x7FFFFFF0u);
  Write<uint32_t>("chains", at2 + offsetof(seg::Slot, prefix_prev), 0x7FFFFFF1u);
  Write<uint32_t>("chains", at2 + offsetof(seg::Slot, chain_next), 0x7FFFFFF2u);
  Write<uint32_t>("chains", at2 + offsetof(seg::Slot, chain_prev), 0x7FFFFFF3u);
  EXPECT_TRUE(manager().Remove("chains", 2).ok());
  // A cycle in an id chain: entry 4 links to itself. Looking up an id that hashes to
  // its bucket but is absent walks the cycle: it must end, locked and lock-free.
  uint32_t slot4 = static_cast<uint32_t>((at4 - h.slot_offset) / sizeof(seg::Slot));
  Write<uint32_t>("chains", at4 + offsetof(seg::Slot, id_next), slot4);
  uint64_t absent = 1000;
  while (seg::BucketOf(absent, h.id_bucket_count) != seg::BucketOf(4, h.id_bucket_count)) ++absent;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(manager().Get("chains", absent).status().code(), Code::kNotFound);
  EXPECT_EQ(manager().Stat("chains", absent).status().code(), Code::kNotFound);
  EXPECT_EQ(*manager().Get("chains", 4), Pattern(4, 3400));
  // A prefix chain cycle through two entries.
  uint64_t at6 = SlotOf("chains", 6), at8 = SlotOf("chains", 8);
  uint32_t slot6 = static_cast<uint32_t>((at6 - h.slot_offset) / sizeof(seg::Slot));
  uint32_t slot8 = static_cast<uint32_t>((at8 - h.slot_offset) / sizeof(seg::Slot));
  Write<uint32_t>("chains", at6 + offsetof(seg::Slot, prefix_next), slot8);
  Write<uint32_t>("chains", at8 + offsetof(seg::Slot, prefix_next), slot6);
  std::vector<uint32_t> even(32);
  for (uint32_t t = 0; t < 32; ++t) even[t] = t;
  ExpectCorrupt(manager().GetByPrefix("chains", even).status(), "chains", "prefix index");
  ExpectCorrupt(manager().FindByPrefixHash("chains", PrefixHashToHex(PrefixHashValue(even)))
                    .status(),
                "chains", "prefix index");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ExpectHealthSays("chains", "id index has a cycle");
  ExpectHealthSays("chains", "prefix index has a cycle");
}

TEST_F(SegmentDamageTest, HeaderCountsAndListHeadsOutOfRangeAreCorruption) {
  struct Case {
    size_t offset;
    uint64_t value;
    int bytes;
    const char* what;
  } cases[] = {
      {offsetof(seg::Header, entry_count), uint64_t{1} << 40, 8, "entry count"},
      {offsetof(seg::Header, heap_size), 0xFFFFFFF0u, 4, "eviction order size"},
      {offsetof(seg::Header, free_slot_head), 0x7FFFFFF0u, 4, "free slot list head"},
      {offsetof(seg::Header, free_lease_head), 0x7FFFFFF0u, 4, "free lease list head"},
      {offsetof(seg::Header, live_pins), 0xFFFFFFF0u, 4, "pin count"},
      {offsetof(seg::Header, used), 4096, 8, "bytes used"},
  };
  int n = 0;
  for (const Case& c : cases) {
    std::string pool = "hdr" + std::to_string(n++);
    MakePool(pool, 3);
    if (c.bytes == 8) {
      Write<uint64_t>(pool, c.offset, c.value);
    } else {
      Write<uint32_t>(pool, c.offset, static_cast<uint32_t>(c.value));
    }
    // entry_count sized a reservation before: 2^40 entries threw from under the lock.
    ExpectCorrupt(manager().Entries(pool).status(), pool, c.what);
    ExpectCorrupt(manager().Put(pool, 9, Pattern(9, 100), 1), pool, c.what);
    ExpectCorrupt(manager().Stats(pool).status(), pool, c.what);
    ExpectHealthSays(pool, c.what);
  }
}

// The geometry is validated once, when a segment is mapped, and cached: a header
// rewritten under a long-lived mapping is caught at the next lock, not trusted.
TEST_F(SegmentDamageTest, GeometryChangedUnderAMappingIsCorruption) {
  MakePool("geo", 2);
  seg::Header h = ReadHeader("geo");
  ASSERT_TRUE(manager().Get("geo", 1).ok());  // mapped, and the lock-free path enabled
  Write<uint64_t>("geo", offsetof(seg::Header, block_count), h.block_count + (uint64_t{1} << 52));
  ExpectCorrupt(manager().Stats("geo").status(), "geo", "block count");
  ExpectCorrupt(manager().Put("geo", 3, Pattern(3, 100), 1), "geo", "block count");
  // A lock-free get sizes nothing from the header: it still reads entry 1 correctly.
  EXPECT_EQ(*manager().Get("geo", 1), Pattern(1, 3100));
  ExpectHealthSays("geo", "block count");
  Write<uint64_t>("geo", offsetof(seg::Header, block_count), h.block_count);
  Write<uint32_t>("geo", offsetof(seg::Header, slot_capacity), h.slot_capacity * 64);
  ExpectCorrupt(manager().Entries("geo").status(), "geo", "slot capacity");
  Write<uint32_t>("geo", offsetof(seg::Header, slot_capacity), h.slot_capacity);
  EXPECT_TRUE(manager().Entries("geo").ok());
}

// Repair: when a process dies, everything derived is rebuilt from the slot table,
// sized by the cached geometry; entries that do not fit their extents are dropped.
TEST_F(SegmentDamageTest, RecoveryRebuildsDamagedDerivedState) {
  MakePool("mend");
  seg::Header h = ReadHeader("mend");
  Write<uint32_t>("mend", h.heap_offset, 0x7FFFFFF0u);
  Write<uint32_t>("mend", h.id_bucket_offset, 0x7FFFFFF0u);
  uint64_t at = SlotOf("mend", 7);
  Write<uint32_t>("mend", at + offsetof(seg::Slot, metadata_len), 0xFFFFFFF0u);
  // A reader that dies holding a pin: the next reap rebuilds the pool.
  pid_t child = fork();
  if (child == 0) {
    Manager m(options());
    Result<EntryView> v = m.Pin("mend", 1);
    _exit(v.ok() ? 0 : 1);  // exits holding the pin
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  Result<HealthReport> report = manager().Health("mend");
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->recovered_processes, 1u);
  for (const std::string& p : report->problems) ADD_FAILURE() << p;
  Result<std::vector<EntryInfo>> entries = manager().Entries("mend");
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  EXPECT_EQ(entries->size(), 7u) << "entry 7, which did not fit its extent, is dropped";
  Result<uint64_t> evicted = manager().Evict("mend", 50);
  ASSERT_TRUE(evicted.ok()) << evicted.status().ToString();
  EXPECT_EQ(*evicted, 3u);
}

// ---------------------------------------------------------------- fuzz findings

// Every input the segment fuzzer (tests/fuzz/segment_fuzzer.cc) ever found is kept in
// tests/fuzz/findings/segment_fuzzer/ and replayed here the way the fuzzer runs it: the
// patches applied to the same template pool, then health, stats, entries, a view of
// each entry (every byte touched) and gets. Each replay runs in a child process, so a
// crash or a hang is reported with the finding's name instead of ending the suite.
class SegmentFuzzFindingsTest : public SegmentDamageTest {
 protected:
  static constexpr const char* kPool = "seg";
  static constexpr uint64_t kIds[] = {1, 2, 3, 42, 1000};
  // The lock timeout segment_fuzzer.cc sets (CORTEX_LOCK_TIMEOUT_MS).
  static constexpr int kFuzzLockTimeoutMs = 20;

  // The fuzzer's template: a 64 KiB pool with five entries sharing a prefix.
  void MakeTemplate() {
    PoolConfig config;
    config.name = kPool;
    config.size_bytes = 64 * 1024;
    config.max_sequences = 16;
    config.prefix_block_tokens = 2;
    ASSERT_TRUE(manager().CreatePool(config).ok());
    std::vector<std::byte> payload(3000, std::byte{0x5a});
    for (uint64_t id : kIds) {
      PutOptions options;
      options.prefix_tokens = {1, 2, static_cast<uint32_t>(id)};
      options.priority = static_cast<int32_t>(id);
      options.metadata = R"({"id":)" + std::to_string(id) + "}";
      ASSERT_TRUE(manager().Put(kPool, id, payload, id * 10, options).ok());
    }
  }

  // The fuzzer's input format: { u32 offset (LE, modulo the size); u8 length; bytes }*.
  void ApplyPatches(const std::vector<uint8_t>& data) {
    int fd = open(SegmentPath(kPool).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    off_t size = lseek(fd, 0, SEEK_END);
    size_t i = 0;
    while (i + 5 <= data.size()) {
      uint32_t offset;
      std::memcpy(&offset, data.data() + i, 4);
      size_t len = std::min<size_t>(data[i + 4], data.size() - i - 5);
      i += 5;
      uint64_t at = offset % static_cast<uint64_t>(size);
      len = std::min<uint64_t>(len, static_cast<uint64_t>(size) - at);
      ASSERT_EQ(pwrite(fd, data.data() + i, len, static_cast<off_t>(at)),
                static_cast<ssize_t>(len));
      i += len;
    }
    close(fd);
  }

  // What the fuzzer runs on the damaged pool, in a fresh Manager.
  static void Exercise(const ManagerOptions& options) {
    Manager m(options);
    (void)m.Health(kPool);
    (void)m.Stats(kPool);
    if (Result<std::vector<EntryInfo>> entries = m.Entries(kPool); entries.ok()) {
      for (const EntryInfo& e : *entries) {
        if (Result<EntryView> v = m.View(kPool, e.sequence_id); v.ok()) {
          volatile unsigned sum = 0;
          for (std::byte b : v->data()) sum = sum + static_cast<unsigned>(b);
          (void)v->prefix_tokens();
        }
      }
    }
    for (uint64_t id : kIds) (void)m.Get(kPool, id);
  }
};

TEST_F(SegmentFuzzFindingsTest, EveryFindingReplaysWithoutCrashOrHang) {
  const std::string dir = std::string(KVC_SOURCE_DIR) + "/tests/fuzz/findings/segment_fuzzer";
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str()); d != nullptr) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  ASSERT_FALSE(names.empty()) << "no findings in " << dir;
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    MakeTemplate();
    if (HasFatalFailure()) return;
    ApplyPatches(data);
    auto start = std::chrono::steady_clock::now();
    pid_t child = fork();
    if (child == 0) {
      alarm(20);  // a hang ends as SIGALRM
      // As the fuzzer runs: a lock whose bytes are garbage looks held forever, and each
      // operation gives up on it after this bounded wait ("pool lock unusable").
      SetPoolLockTimeout(std::chrono::milliseconds(kFuzzLockTimeoutMs));
      Exercise(options());
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "replay died" << (WIFSIGNALED(status) ? " with signal " + std::to_string(WTERMSIG(status)) : "");
    // The fuzzer gives an input 10 s: the replay must finish well inside it.
    EXPECT_LT(seconds, 5.0) << "replay took " << seconds << " s";
    unlink(SegmentPath(kPool).c_str());
    Status gone = manager().DestroyPool(kPool);
    EXPECT_TRUE(gone.ok() || gone.code() == Code::kNotFound) << gone.ToString();
  }
}

}  // namespace
}  // namespace kvcache
