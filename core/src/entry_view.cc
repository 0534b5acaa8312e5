// EntryView and PutReservation: the handles the Manager gives out for pinned entries
// and in-place puts. A handle acts on the pool only in the process that made it.
#include "kvcache/entry_view.h"

#include <cstring>

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
    Release();
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

EntryView::~EntryView() { Release(); }

std::span<const std::byte> EntryView::data() const { return {extent_, info_.size_bytes}; }

std::vector<uint32_t> EntryView::prefix_tokens() const {
  std::vector<uint32_t> tokens(info_.prefix_length);
  if (!tokens.empty()) {
    std::memcpy(tokens.data(), extent_ + info_.size_bytes, tokens.size() * sizeof(uint32_t));
  }
  return tokens;
}

void EntryView::Release() {
  if (pool_ == nullptr) return;
  // A copy inherited across fork() is not this process's pin: only forget it. The
  // pool checks the owner as well, for a handle that reaches it anyway.
  if (epoch_ == ForkEpoch()) pool_->ReleaseLease(lease_, lease_generation_).IgnoreError();
  pool_.reset();
}

PutReservation::PutReservation(PutReservation&& other) noexcept
    : pool_(std::move(other.pool_)),
      slot_(other.slot_),
      generation_(other.generation_),
      epoch_(other.epoch_),
      extent_(other.extent_),
      size_(other.size_) {
  other.pool_ = nullptr;
}

PutReservation& PutReservation::operator=(PutReservation&& other) noexcept {
  if (this != &other) {
    Abort();
    pool_ = std::move(other.pool_);
    other.pool_ = nullptr;
    slot_ = other.slot_;
    generation_ = other.generation_;
    epoch_ = other.epoch_;
    extent_ = other.extent_;
    size_ = other.size_;
  }
  return *this;
}

PutReservation::~PutReservation() { Abort(); }

Status PutReservation::Commit() {
  if (pool_ == nullptr) return Status::InvalidArgument("reservation already used");
  if (epoch_ != ForkEpoch()) {
    pool_.reset();
    return Status::InvalidArgument("reservation was made by another process (before a fork)");
  }
  Status s = pool_->Commit(slot_, generation_);
  pool_.reset();
  return s;
}

Result<std::pair<int, uint64_t>> PutReservation::OpenFileRange() const {
  return pool_->OpenFileRange(extent_);
}

void PutReservation::Abort() {
  if (pool_ == nullptr) return;
  if (epoch_ == ForkEpoch()) pool_->Abort(slot_, generation_).IgnoreError();
  pool_.reset();
}

}  // namespace kvcache
