// What a reader without the pool lock (PoolHandle::ReadEach) is handed of a published
// entry, and what it learns about the read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

namespace kvcache {

// An entry as published with one generation: `prefix_tokens` are its u32 tokens as
// stored (native order, possibly unaligned). Every span points into the pool.
struct PublishedEntry {
  uint64_t token_count = 0;
  int32_t priority = 0;
  std::span<const std::byte> prefix_tokens;
  std::string_view metadata;
  std::span<const std::byte> data;
};

// An entry id and the generation it was published with.
struct EntryRef {
  uint64_t seq = 0;
  uint64_t generation = 0;
};

enum class ReadOutcome {
  kRead,      // what the reader made of the entry is of that generation, whole
  kReplaced,  // the id is cached with another generation now
  kUnsure,    // gone, or changing under the reader: ask under the pool lock
};

// Called with the index of the EntryRef and the entry. It may be called more than once
// for one index, and over bytes a writer is changing at that moment: what it makes
// counts only when the outcome for that index is kRead.
using PublishedReader = std::function<void(size_t k, const PublishedEntry& entry)>;

}  // namespace kvcache
