// The pool segment, format version 4: every byte of shared state a pool has.
// docs/formats.md is the reference. Bump kFormatVersion when any layout here changes.
//
//   [Header 4 KiB][process table][lease table][bitmap][entry slots][id buckets]
//   [prefix buckets][chain buckets][eviction heap][data region]
//
// Every region starts on a 4 KiB boundary; the data region on a block boundary too.
// All fields are little-endian (the only byte order this is built for; see the
// static_assert below) and hold offsets or indexes, never pointers.
#pragma once

#include <pthread.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace kvcache::seg {

static_assert(std::endian::native == std::endian::little, "segment format is little-endian");

inline constexpr uint32_t kMagic = 0x4B564341;  // "KVCA" read as a little-endian u32
inline constexpr uint32_t kFormatVersion = 4;
inline constexpr uint64_t kHeaderSize = 4096;
inline constexpr uint64_t kRegionAlign = 4096;
inline constexpr uint32_t kNil = 0xFFFFFFFFu;
inline constexpr uint32_t kProcessCapacity = 256;
inline constexpr size_t kPoolIdBytes = 16;

// Slot states. A slot is FREE, WRITING (reserved by a put that has not published),
// LIVE (published and indexed), RETIRED (unindexed but still pinned by readers) or
// COMMITTING (complete, being published: the intent of a Commit, so that recovery
// publishes it if its committer dies between unpublishing the old entry and linking
// this one).
enum SlotState : uint32_t { kFree = 0, kWriting = 1, kLive = 2, kRetired = 3, kCommitting = 4 };

// What a slot holds (version 4). An entry is a whole sequence found by its id. A chunk
// is one fixed-size block of a token sequence, found by its chained hash
// H_i = ChainHash(H_{i-1}, tokens of block i) with H_0 = ChunkChainSeed(namespace): it
// is in the chain index only (chain_hash = H_i, chain_blocks = i), never in the id or
// prefix-hash index, and stores its own block of tokens after the payload (prefix_len
// tokens) so that a match is confirmed token by token. A chunk with live children is
// kept out of the eviction heap, so eviction takes chains from their leaves and the
// cached chunks of a namespace always form prefix-closed chains.
enum SlotKind : uint32_t { kEntrySlot = 0, kChunkSlot = 1 };

// The first 128 bytes are the seed's header table, at the seed's offsets.
struct Header {
  uint32_t magic;          // @0
  uint32_t version;        // @4
  uint64_t size;           // @8   data region bytes
  uint64_t used;           // @16  bytes of allocated blocks
  uint64_t free;           // @24
  uint64_t block_count;    // @32
  uint64_t entry_count;    // @40  live entries
  uint64_t hits;           // @48
  uint64_t misses;         // @56
  double created;          // @64  unix seconds
  double modified;         // @72
  uint8_t policy;          // @80  Policy
  uint8_t attached[4];     // @81  u32, unaligned: copy it, never take its address
  uint8_t reserved0[43];   // @85
  // ---- extension (offset 128) ----
  uint32_t header_size;        // @128
  uint32_t block_size;         // @132
  uint64_t segment_size;       // @136 whole mapping
  uint64_t process_offset;     // @144
  uint32_t process_capacity;   // @152
  uint32_t lease_capacity;     // @156
  uint64_t lease_offset;       // @160
  uint64_t bitmap_offset;      // @168
  uint64_t bitmap_bytes;       // @176
  uint64_t slot_offset;        // @184
  uint32_t slot_capacity;      // @192
  uint32_t max_sequences;      // @196
  uint64_t id_bucket_offset;   // @200
  uint32_t id_bucket_count;    // @208 power of two
  uint32_t prefix_bucket_count;  // @212 power of two
  uint64_t prefix_bucket_offset;  // @216
  uint64_t heap_offset;        // @224
  uint64_t data_offset;        // @232
  uint64_t evictions;          // @240
  uint64_t puts;               // @248
  uint64_t generation;         // @256 last generation handed out
  uint64_t tick;               // @264 logical clock ordering accesses and creations
  uint32_t heap_size;          // @272
  uint32_t free_slot_head;     // @276
  uint32_t free_lease_head;    // @280
  uint32_t tier;               // @284 Tier
  uint32_t destroyed;          // @288 set (atomically) before the segment is unlinked
  uint32_t lock_owner_pid;     // @292 pid holding the lock, 0 when free (diagnostic)
  uint64_t alloc_cursor;       // @296 next-fit hint (block index)
  uint32_t prefix_block_tokens;  // @304
  uint32_t live_pins;          // @308 leases held
  uint64_t recoveries;         // @312 dead processes cleaned up
  uint64_t instance_id;        // @320 random per creation: tells a recreated pool apart
  uint64_t chain_bucket_offset;  // @328 longest-prefix index (chain hash -> slot)
  uint32_t chain_bucket_count;   // @336 power of two
  uint32_t reserved_pad;       // @340
  double last_reap;            // @344 unix seconds of the last scan for dead processes
  uint64_t recorded_hits;      // @352 counters already added to the catalog's stats
  uint64_t recorded_misses;    // @360
  uint64_t recorded_evictions;  // @368
  uint8_t reserved1[8];        // @376
  pthread_mutex_t lock;        // @384 robust, process-shared; guards all metadata
  uint8_t reserved2[64 - sizeof(pthread_mutex_t)];  // @384 + 40
  char name[136];              // @448 pool name, NUL-terminated
  // Random at creation and recorded in the catalog: a segment whose id is not the one
  // the catalog holds for the pool is someone else's and is never used (version 3).
  uint8_t pool_id[16];         // @584
  // ---- token chunks (version 4) ----
  uint64_t chunk_count;        // @600 live chunks (also counted in entry_count)
  uint64_t chunk_tokens_asked;    // @608 tokens of the prompts given to Match
  uint64_t chunk_tokens_matched;  // @616 of those, tokens served from cached chunks
  uint8_t reserved3[kHeaderSize - 624];  // @624
};

static_assert(std::is_standard_layout_v<Header>);
static_assert(sizeof(pthread_mutex_t) <= 64);
static_assert(sizeof(Header) == kHeaderSize);
static_assert(offsetof(Header, magic) == 0);
static_assert(offsetof(Header, version) == 4);
static_assert(offsetof(Header, size) == 8);
static_assert(offsetof(Header, used) == 16);
static_assert(offsetof(Header, free) == 24);
static_assert(offsetof(Header, block_count) == 32);
static_assert(offsetof(Header, entry_count) == 40);
static_assert(offsetof(Header, hits) == 48);
static_assert(offsetof(Header, misses) == 56);
static_assert(offsetof(Header, created) == 64);
static_assert(offsetof(Header, modified) == 72);
static_assert(offsetof(Header, policy) == 80);
static_assert(offsetof(Header, attached) == 81);
static_assert(offsetof(Header, header_size) == 128);
static_assert(offsetof(Header, heap_size) == 272);
static_assert(offsetof(Header, instance_id) == 320);
static_assert(offsetof(Header, chain_bucket_offset) == 328);
static_assert(offsetof(Header, last_reap) == 344);
static_assert(offsetof(Header, recorded_evictions) == 368);
static_assert(offsetof(Header, lock) == 384);
static_assert(offsetof(Header, name) == 448);
static_assert(offsetof(Header, pool_id) == 584);
static_assert(offsetof(Header, chunk_count) == 600);
static_assert(offsetof(Header, chunk_tokens_asked) == 608);
static_assert(offsetof(Header, chunk_tokens_matched) == 616);
static_assert(offsetof(Header, reserved3) == 624);

// Process table rows. A kOwnRow belongs to a process that uses the pool through the
// library: it is alive exactly while that process holds the POSIX record lock on the
// first byte of the row in the segment file (see ProcessTable), which the kernel drops
// when the process dies, in whatever PID namespace it runs. A kAttachRow records a pid
// named to Attach (the `attach` command) and is judged by that pid; it holds no pins
// or reservations.
enum RowKind : uint32_t { kFreeRow = 0, kOwnRow = 1, kAttachRow = 2 };

// One process that has used the pool. Guarded by the pool lock.
struct ProcessSlot {
  int32_t pid;           // @0  pid as its registrar saw it (diagnostic for kOwnRow); 0: free
  uint32_t attach_refs;  // @4  explicit attaches not yet detached (kAttachRow)
  uint64_t start_time;   // @8  /proc/<pid>/stat starttime (kAttachRow): tells a reused pid apart
  double attached_at;    // @16 unix seconds of the first attach, 0 if never attached
  uint64_t hits;         // @24 gets served without the pool lock (atomic; only its process
                         //     adds), folded into the header's hits by status and reaping
  uint64_t generation;   // @32 header generation when the row was claimed: owners of
                         //     leases and reservations name it, so a reused row is not them
  uint32_t kind;         // @40 RowKind
  uint32_t reserved;     // @44
  uint8_t reserved2[16];  // @48
};
static_assert(std::is_standard_layout_v<ProcessSlot>);
static_assert(sizeof(ProcessSlot) == 64);
static_assert(offsetof(ProcessSlot, start_time) == 8);
static_assert(offsetof(ProcessSlot, hits) == 24);
static_assert(offsetof(ProcessSlot, generation) == 32);
static_assert(offsetof(ProcessSlot, kind) == 40);

// A pin on a slot held by a process. Guarded by the pool lock.
struct Lease {
  uint32_t slot;              // @0  kNil: free (then `next` links the free list)
  uint32_t process;           // @4  ProcessSlot index of the holder
  uint32_t next;              // @8
  uint32_t reserved;          // @12
  uint64_t owner_generation;  // @16 the holder's ProcessSlot::generation
  uint64_t generation;        // @24 header generation when taken: names this pin
};
static_assert(std::is_standard_layout_v<Lease>);
static_assert(sizeof(Lease) == 32);
static_assert(offsetof(Lease, owner_generation) == 16);
static_assert(offsetof(Lease, generation) == 24);

// One entry. Written only under the pool lock, except the access statistics.
//
// Lock-free gets (PoolHandle::FindUnlocked / GetInto) read a slot without the lock, so
// the fields they touch are accessed through std::atomic_ref, never plainly:
//   [L] read by lock-free gets: the id bucket heads, id_next, sequence_id, generation,
//       state, first_block, extent_blocks, size_bytes. Writers (all under the lock)
//       store them atomically; other lock holders may read them plainly.
//   [A] written by lock-free gets: access_count, last_accessed, access_tick. Every
//       access, locked or not, is atomic (relaxed: they are statistics).
// The protocol is a seqlock whose "odd" value is generation 0:
//   writer (under the lock), changing a slot a reader may be looking at:
//       generation.store(0, relaxed); atomic_thread_fence(release);
//       ...[L] fields stored relaxed...;
//       generation.store(new, release)             (only when publishing a new entry)
//   linking into an id chain (SlotIndex): id_next.store(head, relaxed); head.store(i, release)
//   unlinking: prev link.store(id_next, release)
//   reader: head/id_next loads acquire; gen = generation.load(acquire) (0: not there);
//       state.load(acquire) == LIVE; sequence_id, first_block, extent_blocks,
//       size_bytes relaxed; atomic_thread_fence(acquire); generation.load(relaxed) ==
//       gen, else what was read is discarded. After copying the payload (plain bytes a
//       writer may be overwriting), the same fence and generation check decide whether
//       the copy is kept: freeing a slot zeroes its generation before its blocks can be
//       reused. A reader that gives up falls back to the locked path.
struct Slot {
  uint64_t sequence_id;      // @0   [L]
  uint64_t generation;       // @8   [L] 0 while FREE or being changed
  uint64_t first_block;      // @16  [L]
  uint64_t extent_blocks;    // @24  [L]
  uint64_t size_bytes;       // @32  [L] payload bytes
  uint64_t token_count;      // @40
  uint64_t prefix_hash;      // @48  valid when prefix_len > 0
  double created;            // @56
  double last_accessed;      // @64  [A]
  uint64_t access_count;     // @72  [A]
  uint64_t access_tick;      // @80  [A] LRU order: MonotonicNs() of the last access
  uint64_t create_tick;      // @88  FIFO order
  uint32_t prefix_len;       // @96  tokens stored after the payload
  uint32_t metadata_len;     // @100 bytes stored after the tokens
  int32_t priority;          // @104
  uint32_t state;            // @108 [L] SlotState
  uint32_t pins;             // @112
  uint32_t owner;            // @116 ProcessSlot of the writer while WRITING
  uint32_t id_next;          // @120 [L] id bucket chain; free-list link when FREE
  uint32_t heap_pos;         // @124 index in the eviction heap, kNil if absent
  uint32_t prefix_next;      // @128 prefix bucket chain (doubly linked)
  uint32_t prefix_prev;      // @132
  uint64_t chain_hash;       // @136 ChainHash of the whole blocks of the prefix, 0 if none
  uint32_t chain_next;       // @144 chain bucket chain (doubly linked)
  uint32_t chain_prev;       // @148
  uint32_t chain_blocks;     // @152 whole prefix blocks hashed into chain_hash
  uint32_t reserved;         // @156
  // The access statistics the eviction heap last ordered this slot by. Accesses only
  // raise a slot's key, so the heap is fixed lazily when a stale top is popped.
  uint64_t key_count;        // @160 access_count when last placed
  uint64_t key_tick;         // @168 access_tick when last placed
  uint64_t owner_generation;  // @176 the writer's ProcessSlot::generation while WRITING
  uint64_t parent_hash;      // @184 chunk: H_{i-1} (the namespace seed for the first)
  uint32_t kind;             // @192 SlotKind
  uint32_t children;         // @196 chunk: live chunks whose parent this is (derived)
  uint8_t reserved2[56];     // @200
};
static_assert(std::is_standard_layout_v<Slot>);
static_assert(sizeof(Slot) == 256);
static_assert(offsetof(Slot, generation) == 8);
static_assert(offsetof(Slot, prefix_len) == 96);
static_assert(offsetof(Slot, state) == 108);
static_assert(offsetof(Slot, owner) == 116);
static_assert(offsetof(Slot, prefix_prev) == 132);
static_assert(offsetof(Slot, chain_hash) == 136);
static_assert(offsetof(Slot, chain_blocks) == 152);
static_assert(offsetof(Slot, key_tick) == 168);
static_assert(offsetof(Slot, owner_generation) == 176);
static_assert(offsetof(Slot, parent_hash) == 184);
static_assert(offsetof(Slot, kind) == 192);
static_assert(offsetof(Slot, children) == 196);

template <typename T>
inline std::atomic_ref<T> Atomic(T& field) {
  static_assert(std::atomic_ref<T>::is_always_lock_free);
  return std::atomic_ref<T>(field);
}
inline std::atomic_ref<uint64_t> AtomicGeneration(Slot& slot) { return Atomic(slot.generation); }

// Relaxed atomic access to a field that lock-free gets read or write ([L], [A] above).
template <typename T>
inline void StoreRelaxed(T& field, T value) {
  Atomic(field).store(value, std::memory_order_relaxed);
}
template <typename T>
inline T LoadRelaxed(const T& field) {
  return Atomic(const_cast<T&>(field)).load(std::memory_order_relaxed);
}

// The writer's opening of the seqlock (see Slot): readers that see any [L] store that
// follows fail their generation check. REQUIRES: the pool lock.
inline void BeginSlotChange(Slot& slot) {
  AtomicGeneration(slot).store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

// The region sizes of a segment, derived from its configuration.
struct Layout {
  uint64_t block_size = 0;
  uint64_t block_count = 0;
  uint32_t slot_capacity = 0;
  uint32_t lease_capacity = 0;
  uint32_t id_bucket_count = 0;
  uint32_t prefix_bucket_count = 0;
  uint64_t process_offset = 0;
  uint64_t lease_offset = 0;
  uint64_t bitmap_offset = 0;
  uint64_t bitmap_bytes = 0;
  uint64_t slot_offset = 0;
  uint64_t id_bucket_offset = 0;
  uint64_t prefix_bucket_offset = 0;
  uint64_t chain_bucket_offset = 0;
  uint64_t heap_offset = 0;
  uint64_t data_offset = 0;
  uint64_t segment_size = 0;
};

// Bucket of `key` in a table of `count` (a power of two) buckets.
inline uint32_t BucketOf(uint64_t key, uint32_t count) {
  return static_cast<uint32_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & (count - 1);
}

// Calls fn(i) for each slot of the chain that starts at `head` and links through Next,
// until fn returns false. Shared memory is checked, not trusted: the walk also stops at
// an index out of range and after `capacity` steps (a cycle), and then returns false
// (damage); it returns true when the chain ended or fn stopped it.
template <uint32_t Slot::*Next, typename Fn>
inline bool ForEachInChain(const Slot* slots, uint32_t capacity, uint32_t head, Fn&& fn) {
  uint32_t steps = 0;
  for (uint32_t i = head; i != kNil; i = slots[i].*Next) {
    if (i >= capacity || ++steps > capacity) return false;
    if (!fn(i)) return true;
  }
  return true;
}

// Whether the extent [first, first + blocks) lies inside a data region of
// `block_count` blocks. Safe for any values read from shared memory.
inline bool ExtentInBounds(uint64_t first, uint64_t blocks, uint64_t block_count) {
  return first <= block_count && blocks <= block_count - first;
}

// Whether a slot's extent lies inside the data region and holds its payload, prefix
// tokens and metadata: then every byte the slot describes is inside the segment.
// Safe for any field values; REQUIRES block_count * block_size not to wrap (checked
// when the segment is mapped).
inline bool SlotFits(const Slot& s, uint64_t block_count, uint64_t block_size) {
  if (!ExtentInBounds(s.first_block, s.extent_blocks, block_count)) return false;
  uint64_t bytes = s.extent_blocks * block_size;  // at most the data region's size
  return s.size_bytes <= bytes &&
         4 * uint64_t{s.prefix_len} + s.metadata_len <= bytes - s.size_bytes;
}

// REQUIRES: block_size a power of two >= 512, max_sequences >= 1.
Layout ComputeLayout(uint64_t data_bytes, uint64_t block_size, uint32_t max_sequences);

}  // namespace kvcache::seg
