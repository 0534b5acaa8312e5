// PoolHandle::CheckRoomAfterClear: whether a replacing restore's entries will all fit,
// decided before the pool is changed at all.
#include <cstring>
#include <vector>

#include "kvcache/size.h"
#include "pool_handle.h"

namespace kvcache {

Status PoolHandle::CheckRoomAfterClear(std::span<const uint64_t> extent_blocks) {
  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  // A copy of the bitmap with every extent Clear would free (live, unpinned) freed;
  // pinned and retired entries and puts in flight keep theirs.
  std::vector<uint64_t> words(bitmap_->word_count());
  std::memcpy(words.data(), segment_.base() + layout_.bitmap_offset,
              words.size() * sizeof(uint64_t));
  BitmapAllocator after(words.data(), layout_.block_count);
  uint64_t kept_slots = 0;
  uint64_t pinned_bytes = 0;
  for (uint32_t i = 0; i < layout_.slot_capacity; ++i) {
    const seg::Slot& s = slots_[i];
    if (s.state == seg::kFree) continue;
    if (!seg::ExtentInBounds(s.first_block, s.extent_blocks, layout_.block_count)) {
      return Corrupt("entry " + std::to_string(s.sequence_id) + " (slot " + std::to_string(i) +
                     ") lies outside the data region");
    }
    if (s.state == seg::kLive && s.pins == 0) {
      if (s.extent_blocks > 0) after.Free(s.first_block, s.extent_blocks);
      continue;
    }
    ++kept_slots;
    if (s.pins > 0) pinned_bytes += s.extent_blocks * layout_.block_size;
  }
  auto no_room = [&](const std::string& what) {
    return Status::NoSpace("pool '" + name_ + "' has no room for the snapshot's " + what +
                           " while " + FormatSizeLong(pinned_bytes) +
                           " of its entries are pinned by readers (nothing was changed; "
                           "retry once they are released)");
  };
  if (kept_slots + extent_blocks.size() > layout_.slot_capacity) {
    return no_room(std::to_string(extent_blocks.size()) + " entries");
  }
  // Allocate as the puts will: next fit from the same cursor, in the same order.
  uint64_t cursor = header_->alloc_cursor;
  for (uint64_t blocks : extent_blocks) {
    if (blocks == 0) continue;
    uint64_t first = after.Allocate(blocks, cursor);
    if (first == BitmapAllocator::kNone) {
      return no_room(FormatSizeLong(blocks * layout_.block_size) + " entry");
    }
    cursor = first + blocks;
  }
  return Status::Ok();
}

}  // namespace kvcache
