// EntryView, ChunkMatch and PutReservation: the handles a Manager gives out for pinned
// entries, matched chunks and in-place puts.
//
// All belong to the process that made them. The pool records the owner of every pin
// and reservation (a row of its process table and that row's generation) and checks it
// on release: a handle that a fork()ed child inherits is inert in the child (releasing
// or destroying it there does nothing, committing it fails), so nothing a child does
// with its copy can unpin or free what the parent holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "kvcache/export.h"
#include "kvcache/status.h"
#include "kvcache/types.h"

namespace kvcache {

class PoolHandle;  // a mapped segment; private to core

// A pinned entry: its bytes stay valid and unchanged, and the entry is never evicted
// or freed, until the view is released or destroyed. Move-only. A replacement or delete
// of the id while a view is held frees the old bytes only when the last view goes.
class KVCACHE_EXPORT EntryView {
 public:
  EntryView() = default;
  EntryView(EntryView&& other) noexcept;
  EntryView& operator=(EntryView&& other) noexcept;
  EntryView(const EntryView&) = delete;
  EntryView& operator=(const EntryView&) = delete;
  ~EntryView();

  bool valid() const { return pool_ != nullptr; }
  const EntryInfo& info() const { return info_; }
  // The payload, mapped straight from the pool. REQUIRES: valid().
  std::span<const std::byte> data() const;
  std::vector<uint32_t> prefix_tokens() const;
  // Writes the payload into the file `fd` at `offset`, copied inside the kernel from the
  // pool's segment (as cp does: the pages are never faulted into this process, so a
  // large get costs no memory of its own). `fd`'s file position does not move.
  // REQUIRES: valid().
  Status CopyToFile(int fd, uint64_t offset = 0) const;
  // Releases the pin now (the destructor does it otherwise, dropping any error). In a
  // process other than the one that made the view, only forgets it. An error (the pool
  // lock unusable) leaves the pin held; the view is released anyway.
  Status Release();
  // Releases every view of `views` (as Release does each), those of one pool next to
  // each other in one hold of its lock. Returns the first error; every view is
  // released (not valid()) afterwards.
  static Status ReleaseAll(std::span<EntryView> views);

 private:
  friend class PoolHandle;
  std::shared_ptr<PoolHandle> pool_;
  uint32_t lease_ = 0;
  uint64_t lease_generation_ = 0;
  uint64_t epoch_ = 0;  // ForkEpoch() of the process that made it
  EntryInfo info_;
  const std::byte* extent_ = nullptr;  // payload, then prefix tokens, then metadata
};

// One chunk of a ChunkMatch: its chained hash and its KV bytes, mapped straight from
// the pool. Valid while the match that returned it holds its pins.
struct KVCACHE_EXPORT MatchedChunk {
  uint64_t hash = 0;        // H_i, the chunk's chained hash
  uint64_t generation = 0;  // the pool's generation of the chunk when it was stored
  const std::byte* bytes = nullptr;
  uint64_t size = 0;
  std::span<const std::byte> data() const { return {bytes, size}; }
};

// The cached prefix of a prompt (Manager::Match): its first matched_tokens tokens are
// held by `chunks` (chunk i holds tokens [i * chunk_tokens, (i + 1) * chunk_tokens)).
// Every chunk returned is pinned: its bytes stay readable and unchanged, and it is
// never evicted or freed, whatever any process removes, evicts or clears, until the
// match is released or destroyed. Releasing unpins them all in one hold of the pool
// lock (a match may hold thousands of chunks). Move-only; like EntryView, it belongs
// to the process that made it: a copy a fork()ed child inherits releases nothing.
class KVCACHE_EXPORT ChunkMatch {
 public:
  ChunkMatch() = default;
  ChunkMatch(ChunkMatch&& other) noexcept;
  ChunkMatch& operator=(ChunkMatch&& other) noexcept;
  ChunkMatch(const ChunkMatch&) = delete;
  ChunkMatch& operator=(const ChunkMatch&) = delete;
  ~ChunkMatch();

  uint64_t matched_tokens = 0;
  uint32_t chunk_tokens = 0;  // the pool's chunk size
  std::vector<MatchedChunk> chunks;

  // Unpins every chunk now (the destructor does it otherwise, dropping any error) and
  // empties the match. In a process other than the one that made it, only forgets the
  // pins. An error (the pool lock unusable) leaves them held; the match is emptied anyway.
  Status Release();
  // Hands each chunk's pin to a view of its own, in chunk order, for callers that let
  // chunks go one by one (each view unpins its chunk alone). The match is empty
  // afterwards. In a process other than the one that made it: no views.
  std::vector<EntryView> TakeViews();

 private:
  friend class PoolHandle;
  struct Pin {
    uint32_t lease = 0;
    uint64_t generation = 0;
  };
  std::shared_ptr<PoolHandle> pool_;
  uint64_t epoch_ = 0;     // ForkEpoch() of the process that made it
  std::vector<Pin> pins_;  // pins_[i] pins chunks[i]
};

// Space reserved for a put whose bytes the caller writes in place (zero copy).
// Nothing is visible to readers until Commit(); destroying an uncommitted
// reservation frees its space.
class KVCACHE_EXPORT PutReservation {
 public:
  PutReservation() = default;
  PutReservation(PutReservation&& other) noexcept;
  PutReservation& operator=(PutReservation&& other) noexcept;
  PutReservation(const PutReservation&) = delete;
  PutReservation& operator=(const PutReservation&) = delete;
  ~PutReservation();

  bool valid() const { return pool_ != nullptr; }
  // Where the payload goes. REQUIRES: valid().
  std::span<std::byte> data() const { return {extent_, size_}; }
  // A descriptor of the pool's segment file, open for writing, and the offset of
  // data() in it: for filling large payloads with copies inside the kernel (sendfile,
  // copy_file_range), which skips faulting fresh pages in through the mapping. The
  // descriptor belongs to the pool: do not close it (closing any descriptor of the
  // file would drop the record lock that tells other processes this one is alive).
  // Valid while the reservation is. NotFound when the segment file is gone.
  // REQUIRES: valid().
  Result<std::pair<int, uint64_t>> OpenFileRange() const;
  // Fills data() with the size() bytes of the file `fd` from `offset`, copied inside the
  // kernel into the pool's segment (as cp does: no page of the payload passes through
  // this process, so a large put costs no private memory). `fd`'s file position does not
  // move. IOError when the file ends first (it shrank while being read).
  // REQUIRES: valid().
  Status FillFromFile(int fd, uint64_t offset = 0);
  // Publishes the entry atomically: readers see the old entry or this one, whole.
  // InvalidArgument in a process other than the one that reserved it.
  Status Commit();
  // Frees the space without publishing (the destructor does it otherwise, dropping any
  // error). In a process other than the one that reserved it, only forgets the
  // reservation. The reservation is used up either way.
  Status Abort();

 private:
  friend class PoolHandle;
  std::shared_ptr<PoolHandle> pool_;
  uint32_t slot_ = 0;
  uint64_t generation_ = 0;
  uint64_t epoch_ = 0;  // ForkEpoch() of the process that made it
  std::byte* extent_ = nullptr;
  size_t size_ = 0;
  // False when the put was found, as it reserved, to have no remote tier to copy it
  // to: Commit then skips asking for one again.
  bool notify_ = true;
};

}  // namespace kvcache
