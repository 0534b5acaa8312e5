// The values a pool stores in its remote (docs/formats.md, "Remote values").
//
// An entry is one *record*: a 32-byte record header, the prefix tokens (u32 each), the
// metadata bytes, then the payload. The record is cut into pieces of at most
// piece_bytes; piece i is stored under PieceKey(base, i) as a 64-byte piece header
// followed by its bytes. Every piece names the entry it belongs to (a hash of its base
// key), the record's length and checksum, its index and the piece count, so a reader
// refuses a value that is damaged, foreign (another entry's, another program's) or
// mixed from two writes of the same entry.
//
// A token chunk is stored the same way, as a *chunk record* (a 48-byte chunk record
// header, its tokens, its namespace, then its KV bytes) under ChunkKey: the piece
// header is the same, the key tells which record a value holds.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvcache/status.h"

namespace kvcache::remote {

static_assert(std::endian::native == std::endian::little, "remote format assumes LE host");

inline constexpr uint32_t kPieceMagic = 0x5452564B;  // "KVRT" in file order
inline constexpr uint16_t kFormatVersion = 1;         // bump when a layout here changes
// Redis refuses bulk strings over 512 MB by default; pieces stay far below.
inline constexpr uint64_t kDefaultPieceBytes = 4ull << 20;
inline constexpr uint64_t kMaxRecordBytes = 1ull << 40;

struct PieceHeader {
  uint32_t magic;            // @0  kPieceMagic
  uint16_t version;          // @4  kFormatVersion
  uint16_t header_bytes;     // @6  sizeof(PieceHeader)
  uint64_t key_hash;         // @8  XXH3-64 of the entry's base key
  uint64_t record_bytes;     // @16 length of the whole record
  uint64_t record_checksum;  // @24 XXH3-64 of the whole record
  uint32_t piece_index;      // @32
  uint32_t piece_count;      // @36
  uint64_t piece_bytes;      // @40 bytes after this header
  uint64_t piece_checksum;   // @48 XXH3-64 of those bytes
  uint64_t header_checksum;  // @56 XXH3-64 of bytes [0, 56) of this header
};
static_assert(sizeof(PieceHeader) == 64);
static_assert(offsetof(PieceHeader, key_hash) == 8);
static_assert(offsetof(PieceHeader, record_bytes) == 16);
static_assert(offsetof(PieceHeader, record_checksum) == 24);
static_assert(offsetof(PieceHeader, piece_index) == 32);
static_assert(offsetof(PieceHeader, piece_count) == 36);
static_assert(offsetof(PieceHeader, piece_bytes) == 40);
static_assert(offsetof(PieceHeader, piece_checksum) == 48);
static_assert(offsetof(PieceHeader, header_checksum) == 56);

struct RecordHeader {
  uint64_t token_count;   // @0
  int32_t priority;       // @8
  uint32_t prefix_len;    // @12 tokens after this header
  uint32_t metadata_len;  // @16 bytes after the tokens
  uint32_t reserved;      // @20 zero
  uint64_t data_bytes;    // @24 payload bytes after the metadata
};
static_assert(sizeof(RecordHeader) == 32);
static_assert(offsetof(RecordHeader, priority) == 8);
static_assert(offsetof(RecordHeader, prefix_len) == 12);
static_assert(offsetof(RecordHeader, metadata_len) == 16);
static_assert(offsetof(RecordHeader, data_bytes) == 24);

// A chunk record (Manager::StoreChunks): everything a reader needs to check that a
// value is the chunk it asked for, not only an intact one.
inline constexpr uint32_t kChunkRecordMagic = 0x4B43564B;  // "KVCK" in file order

struct ChunkRecordHeader {
  uint32_t magic;          // @0  kChunkRecordMagic
  uint32_t position;       // @4  1-based position in its chain (chain_blocks)
  uint64_t chain_hash;     // @8  H_i
  uint64_t parent_hash;    // @16 H_{i-1}; the namespace's seed for position 1
  uint32_t token_count;    // @24 tokens after this header
  uint32_t namespace_len;  // @28 namespace bytes after the tokens
  uint64_t data_bytes;     // @32 KV bytes after the namespace
  uint64_t reserved;       // @40 zero
};
static_assert(sizeof(ChunkRecordHeader) == 48);
static_assert(offsetof(ChunkRecordHeader, position) == 4);
static_assert(offsetof(ChunkRecordHeader, chain_hash) == 8);
static_assert(offsetof(ChunkRecordHeader, parent_hash) == 16);
static_assert(offsetof(ChunkRecordHeader, token_count) == 24);
static_assert(offsetof(ChunkRecordHeader, namespace_len) == 28);
static_assert(offsetof(ChunkRecordHeader, data_bytes) == 32);
static_assert(offsetof(ChunkRecordHeader, reserved) == 40);

// "kvc:{<namespace>:<seq>}": the braces are the Redis Cluster hash tag, so every piece
// of an entry lands on the same slot while different entries spread over the cluster.
std::string EntryKey(std::string_view name_space, uint64_t seq);
// "kvc:{<namespace>:chunk:<seed>:<hash>}": `name_space` is the pool's remote namespace,
// `seed` the chunk namespace's chain seed (ChunkChainSeed) and `chain_hash` the chunk's
// H_i, both as 16 hex digits. Each chunk is a hash tag of its own, so the chunks of a
// prompt spread over a cluster.
std::string ChunkKey(std::string_view name_space, uint64_t seed, uint64_t chain_hash);
// Piece 0 is the base key itself; piece i > 0 is "<base>:<i>".
std::string PieceKey(std::string_view base, uint32_t index);

// An entry as stored remotely.
struct Record {
  uint64_t token_count = 0;
  int32_t priority = 0;
  std::vector<uint32_t> prefix_tokens;
  std::string metadata;
  std::vector<std::byte> data;
};

// The pieces of an entry, each a complete value (header and bytes). `prefix_tokens`
// are the u32 LE tokens as bytes.
std::vector<std::string> EncodePieces(std::string_view base_key, uint64_t token_count,
                                      int32_t priority,
                                      std::span<const std::byte> prefix_tokens,
                                      std::string_view metadata,
                                      std::span<const std::byte> data, uint64_t piece_bytes);

// A token chunk as stored remotely.
struct ChunkRecord {
  uint64_t chain_hash = 0;
  uint64_t parent_hash = 0;
  uint32_t position = 0;
  std::vector<uint32_t> tokens;
  std::string name_space;
  std::vector<std::byte> data;
};

// The pieces of a chunk. `tokens` are the u32 LE tokens as bytes.
std::vector<std::string> EncodeChunkPieces(std::string_view base_key, uint64_t chain_hash,
                                           uint64_t parent_hash, uint32_t position,
                                           std::span<const std::byte> tokens,
                                           std::string_view name_space,
                                           std::span<const std::byte> data,
                                           uint64_t piece_bytes);

// Checks piece 0 (its header, its bytes, that it belongs to `base_key`) and returns
// its header: how many pieces to fetch. Corruption naming what is wrong otherwise.
Result<PieceHeader> CheckFirstPiece(std::string_view base_key, std::string_view value);
// Checks piece `index`'s header (its first sizeof(PieceHeader) bytes in `header`) of a
// value of `value_bytes` bytes in all: everything CheckFirstPiece checks but the
// checksum of its bytes, which the caller computes as they arrive.
Result<PieceHeader> CheckPieceHeader(std::string_view base_key,
                                     std::span<const std::byte> header, uint64_t value_bytes,
                                     uint32_t index);
// Checks a record's header (its first sizeof(RecordHeader) bytes in `header`) against
// the record's length: Corruption when its lengths do not add up to it.
Result<RecordHeader> CheckRecordHeader(std::string_view base_key,
                                       std::span<const std::byte> header,
                                       uint64_t record_bytes);
// Checks every piece against the first's header and reassembles the record.
// Corruption naming the first thing wrong.
Result<Record> DecodePieces(std::string_view base_key, const std::vector<std::string>& pieces);
// The same for a chunk record. Only the record is checked here: whether it is the chunk
// the reader asked for (hash, parent, position, tokens, namespace) is the reader's check.
Result<ChunkRecord> DecodeChunkPieces(std::string_view base_key,
                                      const std::vector<std::string>& pieces);
// Checks every piece and returns the record they hold (without piece headers).
Result<std::string> JoinPieces(std::string_view base_key, const std::vector<std::string>& pieces);

}  // namespace kvcache::remote
