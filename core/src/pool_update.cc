// PoolHandle::Update: an entry's attributes changed where they are. The prefix tokens
// and metadata live right after the payload in the entry's extent; when the new ones
// need more room, the extent grows into the free blocks that follow it. The payload is
// never copied, so setting a prefix on a large entry costs what the prefix costs.
#include <cstring>

#include "clock.h"
#include "kvcache/prefix.h"
#include "pool_handle.h"

namespace kvcache {

using seg::kNil;

Result<EntryInfo> PoolHandle::Update(uint64_t seq, uint64_t generation,
                                     const EntryUpdate& update) {
  // The rules a put applies, to what is being changed.
  PutOptions changed;
  if (update.metadata) changed.metadata = *update.metadata;
  if (update.prefix_tokens) changed.prefix_tokens = *update.prefix_tokens;
  KVC_RETURN_IF_ERROR(ValidatePutOptions(changed));
  // Hashes computed before taking the lock.
  uint64_t prefix_hash = 0, chain_hash = 0;
  uint32_t chain_blocks = 0;
  if (update.prefix_tokens && !update.prefix_tokens->empty()) {
    const std::vector<uint32_t>& tokens = *update.prefix_tokens;
    prefix_hash = PrefixHashValue(tokens);
    uint32_t block_tokens = prefix_block_tokens_;
    chain_blocks = static_cast<uint32_t>(tokens.size() / block_tokens);
    for (uint32_t b = 0; b < chain_blocks; ++b) {
      chain_hash = ChainHash(chain_hash, std::span<const uint32_t>(tokens).subspan(
                                             uint64_t{b} * block_tokens, block_tokens));
    }
  }

  Locked lk(*this);
  KVC_RETURN_IF_ERROR(lk.status());
  uint32_t i = FindLocked(seq);
  if (i == kNil || slots_[i].generation != generation) {
    return Status::NotFound("sequence " + std::to_string(seq) + " of pool '" + name_ +
                            "' is no longer generation " + std::to_string(generation));
  }
  // Its sizes are read from the segment: the tail is read only once they fit the extent.
  KVC_RETURN_IF_ERROR(CheckSlotLocked(i));
  seg::Slot& s = slots_[i];
  std::byte* tail = Extent(s) + s.size_bytes;
  // The current tail, kept for what the update leaves alone.
  std::vector<uint32_t> tokens;
  if (update.prefix_tokens) {
    tokens = *update.prefix_tokens;
  } else {
    tokens.resize(s.prefix_len);
    if (!tokens.empty()) std::memcpy(tokens.data(), tail, 4 * tokens.size());
  }
  std::string metadata;
  if (update.metadata) {
    metadata = *update.metadata;
  } else {
    metadata.assign(reinterpret_cast<const char*>(tail) + 4 * uint64_t{s.prefix_len},
                    s.metadata_len);
  }

  const uint64_t bs = layout_.block_size;
  uint64_t total = s.size_bytes + 4 * uint64_t{tokens.size()} + metadata.size();
  uint64_t blocks = (total + bs - 1) / bs;
  if (blocks > s.extent_blocks) {
    uint64_t extra = blocks - s.extent_blocks;
    uint64_t next = s.first_block + s.extent_blocks;
    if (s.extent_blocks == 0 || extra > layout_.block_count - next ||
        !bitmap_->AllClear(next, extra)) {
      return Status::NoSpace("no free blocks after the payload of sequence " +
                             std::to_string(seq) + " in pool '" + name_ + "' for its " +
                             std::to_string(tokens.size()) + " prefix tokens and metadata");
    }
    bitmap_->Mark(next, extra);
    header_->used += extra * bs;
    header_->free -= extra * bs;
    seg::StoreRelaxed(s.extent_blocks, blocks);  // lock-free gets read it
  }

  if (update.prefix_tokens) {
    index_->UnlinkKeys(i);
    s.prefix_len = static_cast<uint32_t>(tokens.size());
    s.prefix_hash = prefix_hash;
    s.chain_hash = chain_hash;
    s.chain_blocks = chain_blocks;
    index_->LinkKeys(i);
  }
  for (size_t t = 0; t < tokens.size(); ++t) {
    uint32_t v = tokens[t];  // little-endian host (segment_format.h)
    std::memcpy(tail + 4 * t, &v, 4);
  }
  if (!metadata.empty()) std::memcpy(tail + 4 * tokens.size(), metadata.data(), metadata.size());
  s.metadata_len = static_cast<uint32_t>(metadata.size());
  if (update.token_count) s.token_count = *update.token_count;
  if (update.priority && *update.priority != s.priority) {
    s.priority = *update.priority;
    heap_->Update(i);  // the priority policy orders by it
  }
  header_->modified = StampSeconds();
  KVC_RETURN_IF_ERROR(HeapStatusLocked());  // updated, but the eviction order needs repair
  return InfoLocked(i);
}

}  // namespace kvcache
