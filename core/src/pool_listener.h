// PoolListener: what a Manager hears from the pools it mapped, to feed their remote
// tiers. A PoolHandle holds its listener weakly: views outlive their Manager.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kvcache {

class PoolListener {
 public:
  virtual ~PoolListener() = default;
  // Entry `seq` was published by this process with `generation`. Called without the
  // pool lock, on the thread that committed.
  virtual void Committed(const std::string& pool, uint64_t seq, uint64_t generation) = 0;
  // Entry `seq` is about to be evicted; its bytes (and its prefix tokens, u32 LE,
  // maybe unaligned) are valid for the call only. Called
  // UNDER THE POOL LOCK: must not block, throw, or touch the pool.
  virtual void Evicting(const std::string& pool, uint64_t seq, uint64_t token_count,
                        int32_t priority, std::span<const std::byte> prefix_tokens,
                        std::string_view metadata, std::span<const std::byte> data) noexcept = 0;
  // Token chunk `hash` (H_i at `position` under `parent`) is about to be evicted; its
  // tokens (u32 LE, maybe unaligned), namespace and bytes are valid for the call only.
  // Called UNDER THE POOL LOCK, as Evicting.
  virtual void EvictingChunk(const std::string& pool, uint64_t hash, uint64_t parent,
                             uint32_t position, std::span<const std::byte> tokens,
                             std::string_view name_space,
                             std::span<const std::byte> data) noexcept = 0;
};

}  // namespace kvcache
