// EntryView, ChunkMatch and PutReservation: the handles the Manager gives out for
// pinned entries, matched chunks and in-place puts. A handle acts on the pool only in
// the process that made it.
#include "kvcache/entry_view.h"

#include <cstring>

#include "file_util.h"
#include "pool_handle.h"
#include "process_table.h"

namespace kvcache {

EntryView::EntryView(EntryView&& other) noexcept
    : pool_(std::move(other.pool_)),
      lease_(other.lease_),
      lease_generation_(other.lease_generation_),
      epoch_(other.epoch_),
      info_(std::move(other.info_)),
      extent_(other.extent_) {
  other.pool_ = nullptr;
}

EntryView& EntryView::operator=(EntryView&& other) noexcept {
  if (this != &other) {
    Release().IgnoreError();  // as the destructor
    pool_ = std::move(other.pool_);
    other.pool_ = nullptr;
    lease_ = other.lease_;
    lease_generation_ = other.lease_generation_;
    epoch_ = other.epoch_;
    info_ = std::move(other.info_);
    extent_ = other.extent_;
  }
  return *this;
}

// A destructor cannot report: a pin it fails to release (the pool lock is unusable) is
// dropped when the pool is repaired or this process's row is reaped.
EntryView::~EntryView() { Release().IgnoreError(); }

std::span<const std::byte> EntryView::data() const { return {extent_, info_.size_bytes}; }

std::vector<uint32_t> EntryView::prefix_tokens() const {
  std::vector<uint32_t> tokens(info_.prefix_length);
  if (!tokens.empty()) {
    std::memcpy(tokens.data(), extent_ + info_.size_bytes, tokens.size() * sizeof(uint32_t));
  }
  return tokens;
}

Status EntryView::CopyToFile(int fd, uint64_t offset) const {
  Result<std::pair<int, uint64_t>> range = pool_->OpenFileRange(extent_);
  if (!range.ok()) return WriteFullyAt(fd, offset, data(), "the output file");
  // The pin keeps these bytes unchanged until the copy has returned.
  return CopyFileRange(range->first, range->second, fd, offset, info_.size_bytes,
                       "entry " + std::to_string(info_.sequence_id));
}

Status EntryView::Release() {
  if (pool_ == nullptr) return Status::Ok();
  // A copy inherited across fork() is not this process's pin: only forget it. The
  // pool checks the owner as well, for a handle that reaches it anyway.
  Status s;
  if (epoch_ == ForkEpoch()) s = pool_->ReleaseLease(lease_, lease_generation_);
  pool_.reset();
  return s;
}

Status EntryView::ReleaseAll(std::span<EntryView> views) {
  Status first;
  for (size_t k = 0; k < views.size();) {
    if (!views[k].valid()) {
      ++k;
      continue;
    }
    // Held here: ReleaseViews empties the views, which may hold the last references.
    const std::shared_ptr<PoolHandle> pool = views[k].pool_;
    size_t end = k + 1;
    while (end < views.size() && (views[end].pool_ == pool || !views[end].valid())) ++end;
    Status s = pool->ReleaseViews(views.subspan(k, end - k));
    if (!s.ok() && first.ok()) first = std::move(s);
    k = end;
  }
  return first;
}

ChunkMatch::ChunkMatch(ChunkMatch&& other) noexcept
    : matched_tokens(other.matched_tokens),
      chunk_tokens(other.chunk_tokens),
      chunks(std::move(other.chunks)),
      pool_(std::move(other.pool_)),
      epoch_(other.epoch_),
      pins_(std::move(other.pins_)) {
  other.pool_ = nullptr;
  other.chunks.clear();
  other.pins_.clear();
  other.matched_tokens = 0;
}

ChunkMatch& ChunkMatch::operator=(ChunkMatch&& other) noexcept {
  if (this != &other) {
    Release().IgnoreError();  // as the destructor
    matched_tokens = other.matched_tokens;
    chunk_tokens = other.chunk_tokens;
    chunks = std::move(other.chunks);
    pool_ = std::move(other.pool_);
    epoch_ = other.epoch_;
    pins_ = std::move(other.pins_);
    other.pool_ = nullptr;
    other.chunks.clear();
    other.pins_.clear();
    other.matched_tokens = 0;
  }
  return *this;
}

// A pin the destructor fails to release (the pool lock is unusable) is dropped when
// the pool is repaired or this process's row is reaped.
ChunkMatch::~ChunkMatch() { Release().IgnoreError(); }

Status ChunkMatch::Release() {
  Status s;
  // A copy inherited across fork() holds no pin of this process: only forget it. The
  // pool checks each lease's owner as well.
  if (pool_ != nullptr && !pins_.empty() && epoch_ == ForkEpoch()) s = pool_->ReleaseMatch(*this);
  pool_.reset();
  pins_.clear();
  chunks.clear();
  matched_tokens = 0;
  return s;
}

std::vector<EntryView> ChunkMatch::TakeViews() {
  std::vector<EntryView> views;
  if (pool_ != nullptr && epoch_ == ForkEpoch()) views = pool_->ViewsOfMatch(*this);
  pool_.reset();
  pins_.clear();
  chunks.clear();
  matched_tokens = 0;
  return views;
}

PutReservation::PutReservation(PutReservation&& other) noexcept
    : pool_(std::move(other.pool_)),
      slot_(other.slot_),
      generation_(other.generation_),
      epoch_(other.epoch_),
      extent_(other.extent_),
      size_(other.size_),
      notify_(other.notify_) {
  other.pool_ = nullptr;
}

PutReservation& PutReservation::operator=(PutReservation&& other) noexcept {
  if (this != &other) {
    Abort().IgnoreError();  // as the destructor
    pool_ = std::move(other.pool_);
    other.pool_ = nullptr;
    slot_ = other.slot_;
    generation_ = other.generation_;
    epoch_ = other.epoch_;
    extent_ = other.extent_;
    size_ = other.size_;
    notify_ = other.notify_;
  }
  return *this;
}

// An abort that fails (the pool lock is unusable) leaves the slot WRITING; recovery
// frees it once this process is gone.
PutReservation::~PutReservation() { Abort().IgnoreError(); }

Status PutReservation::Commit() {
  if (pool_ == nullptr) return Status::InvalidArgument("reservation already used");
  if (epoch_ != ForkEpoch()) {
    pool_.reset();
    return Status::InvalidArgument("reservation was made by another process (before a fork)");
  }
  Status s = pool_->Commit(slot_, generation_, notify_);
  pool_.reset();
  return s;
}

Result<std::pair<int, uint64_t>> PutReservation::OpenFileRange() const {
  return pool_->OpenFileRange(extent_);
}

Status PutReservation::FillFromFile(int fd, uint64_t offset) {
  Result<std::pair<int, uint64_t>> range = OpenFileRange();
  if (!range.ok()) return ReadFullyAt(fd, offset, data(), "the input file");
  return CopyFileRange(fd, offset, range->first, range->second, size_, "the input file");
}

Status PutReservation::Abort() {
  if (pool_ == nullptr) return Status::Ok();
  Status s;
  if (epoch_ == ForkEpoch()) s = pool_->Abort(slot_, generation_);
  pool_.reset();
  return s;
}

}  // namespace kvcache
