#include "segment_format.h"

namespace kvcache::seg {
namespace {

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint32_t PowerOfTwoAtLeast(uint64_t v) {
  uint64_t p = 1;
  while (p < v) p <<= 1;
  return static_cast<uint32_t>(p);
}

}  // namespace

Layout ComputeLayout(uint64_t data_bytes, uint64_t block_size, uint32_t max_sequences) {
  Layout l;
  l.block_size = block_size;
  l.block_count = data_bytes / block_size;
  // Room beyond max_sequences for puts in flight and pinned entries already replaced.
  l.slot_capacity = max_sequences + 256 + max_sequences / 8;
  l.lease_capacity = 2 * max_sequences + 1024;
  l.id_bucket_count = PowerOfTwoAtLeast(l.slot_capacity);
  l.prefix_bucket_count = l.id_bucket_count;

  uint64_t off = kHeaderSize;
  l.process_offset = off;
  off = AlignUp(off + uint64_t{kProcessCapacity} * sizeof(ProcessSlot), kRegionAlign);
  l.lease_offset = off;
  off = AlignUp(off + uint64_t{l.lease_capacity} * sizeof(Lease), kRegionAlign);
  l.bitmap_offset = off;
  l.bitmap_bytes = AlignUp((l.block_count + 63) / 64 * 8, kRegionAlign);
  off += l.bitmap_bytes;
  l.slot_offset = off;
  off = AlignUp(off + uint64_t{l.slot_capacity} * sizeof(Slot), kRegionAlign);
  l.id_bucket_offset = off;
  off = AlignUp(off + uint64_t{l.id_bucket_count} * sizeof(uint32_t), kRegionAlign);
  l.prefix_bucket_offset = off;
  off = AlignUp(off + uint64_t{l.prefix_bucket_count} * sizeof(uint32_t), kRegionAlign);
  l.chain_bucket_offset = off;
  off = AlignUp(off + uint64_t{l.id_bucket_count} * sizeof(uint32_t), kRegionAlign);
  l.heap_offset = off;
  off = AlignUp(off + uint64_t{l.slot_capacity} * sizeof(uint32_t), kRegionAlign);
  l.data_offset = AlignUp(off, block_size > kRegionAlign ? block_size : kRegionAlign);
  l.segment_size = l.data_offset + l.block_count * block_size;
  return l;
}

}  // namespace kvcache::seg
