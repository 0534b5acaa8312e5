#include "remote_format.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "kvcache/prefix.h"

namespace kvcache::remote {
namespace {

uint64_t HeaderChecksum(const PieceHeader& h) {
  return XXH3_64bits(&h, offsetof(PieceHeader, header_checksum));
}

Status Bad(std::string_view key, uint32_t piece, const std::string& why) {
  return Status::Corruption("remote value " + std::string(key) +
                            (piece == 0 ? "" : " piece " + std::to_string(piece)) + ": " + why);
}

// The record as a sequence of spans, read as one byte string without joining them.
class Gather {
 public:
  explicit Gather(std::vector<std::span<const std::byte>> parts) : parts_(std::move(parts)) {}
  uint64_t size() const {
    uint64_t n = 0;
    for (const auto& p : parts_) n += p.size();
    return n;
  }
  // Copies bytes [offset, offset + n) to `out`.
  void CopyOut(uint64_t offset, uint64_t n, char* out) const {
    for (const auto& p : parts_) {
      if (n == 0) return;
      if (offset >= p.size()) {
        offset -= p.size();
        continue;
      }
      uint64_t take = std::min<uint64_t>(n, p.size() - offset);
      std::memcpy(out, p.data() + offset, take);
      out += take;
      n -= take;
      offset = 0;
    }
  }
  uint64_t Checksum() const {
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (const auto& p : parts_) XXH3_64bits_update(st, p.data(), p.size());
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
  }

 private:
  std::vector<std::span<const std::byte>> parts_;
};

}  // namespace

std::string EntryKey(std::string_view name_space, uint64_t seq) {
  return "kvc:{" + std::string(name_space) + ":" + std::to_string(seq) + "}";
}

std::string PieceKey(std::string_view base, uint32_t index) {
  if (index == 0) return std::string(base);
  return std::string(base) + ":" + std::to_string(index);
}

namespace {

// Cuts `record` into pieces of at most piece_bytes, each behind its piece header.
std::vector<std::string> EncodeRecord(std::string_view base_key, const Gather& record,
                                      uint64_t piece_bytes) {
  const uint64_t total = record.size();
  const uint64_t checksum = record.Checksum();
  if (piece_bytes == 0) piece_bytes = kDefaultPieceBytes;
  const uint64_t count = std::max<uint64_t>(1, (total + piece_bytes - 1) / piece_bytes);
  const uint64_t key_hash = XXH3_64bits(base_key.data(), base_key.size());
  std::vector<std::string> pieces;
  pieces.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t offset = i * piece_bytes;
    uint64_t n = std::min(piece_bytes, total - offset);
    std::string value(sizeof(PieceHeader) + n, '\0');
    char* body = value.data() + sizeof(PieceHeader);
    record.CopyOut(offset, n, body);
    PieceHeader h{};
    h.magic = kPieceMagic;
    h.version = kFormatVersion;
    h.header_bytes = sizeof(PieceHeader);
    h.key_hash = key_hash;
    h.record_bytes = total;
    h.record_checksum = checksum;
    h.piece_index = static_cast<uint32_t>(i);
    h.piece_count = static_cast<uint32_t>(count);
    h.piece_bytes = n;
    // One piece holds the whole record: its checksum is the record's.
    h.piece_checksum = count == 1 ? checksum : XXH3_64bits(body, n);
    h.header_checksum = HeaderChecksum(h);
    std::memcpy(value.data(), &h, sizeof(h));
    pieces.push_back(std::move(value));
  }
  return pieces;
}

}  // namespace

std::vector<std::string> EncodePieces(std::string_view base_key, uint64_t token_count,
                                      int32_t priority,
                                      std::span<const std::byte> prefix_tokens,
                                      std::string_view metadata,
                                      std::span<const std::byte> data, uint64_t piece_bytes) {
  RecordHeader rh{};
  rh.token_count = token_count;
  rh.priority = priority;
  rh.prefix_len = static_cast<uint32_t>(prefix_tokens.size() / 4);
  rh.metadata_len = static_cast<uint32_t>(metadata.size());
  rh.data_bytes = data.size();
  Gather record({std::as_bytes(std::span(&rh, 1)), prefix_tokens,
                 std::as_bytes(std::span(metadata.data(), metadata.size())), data});
  return EncodeRecord(base_key, record, piece_bytes);
}

std::vector<std::string> EncodeChunkPieces(std::string_view base_key, uint64_t chain_hash,
                                           uint64_t parent_hash, uint32_t position,
                                           std::span<const std::byte> tokens,
                                           std::string_view name_space,
                                           std::span<const std::byte> data,
                                           uint64_t piece_bytes) {
  ChunkRecordHeader ch{};
  ch.magic = kChunkRecordMagic;
  ch.position = position;
  ch.chain_hash = chain_hash;
  ch.parent_hash = parent_hash;
  ch.token_count = static_cast<uint32_t>(tokens.size() / 4);
  ch.namespace_len = static_cast<uint32_t>(name_space.size());
  ch.data_bytes = data.size();
  Gather record({std::as_bytes(std::span(&ch, 1)), tokens,
                 std::as_bytes(std::span(name_space.data(), name_space.size())), data});
  return EncodeRecord(base_key, record, piece_bytes);
}

namespace {

Result<PieceHeader> CheckPiece(std::string_view base_key, std::string_view value,
                               uint32_t index) {
  if (value.size() < sizeof(PieceHeader)) {
    return Bad(base_key, index, "shorter (" + std::to_string(value.size()) +
                                    " bytes) than a piece header: not a kvcache value");
  }
  KVC_ASSIGN_OR_RETURN(
      PieceHeader h,
      CheckPieceHeader(base_key, std::as_bytes(std::span(value.data(), sizeof(PieceHeader))),
                       value.size(), index));
  if (XXH3_64bits(value.data() + sizeof(h), h.piece_bytes) != h.piece_checksum) {
    return Bad(base_key, index, "checksum mismatch");
  }
  return h;
}

}  // namespace

Result<PieceHeader> CheckPieceHeader(std::string_view base_key,
                                     std::span<const std::byte> header, uint64_t value_bytes,
                                     uint32_t index) {
  PieceHeader h{};
  if (header.size() < sizeof(h) || value_bytes < sizeof(h)) {
    return Bad(base_key, index, "shorter (" + std::to_string(value_bytes) +
                                    " bytes) than a piece header: not a kvcache value");
  }
  std::memcpy(&h, header.data(), sizeof(h));
  if (h.magic != kPieceMagic) return Bad(base_key, index, "bad magic: not a kvcache value");
  if (h.version != kFormatVersion) {
    return Bad(base_key, index, "format version " + std::to_string(h.version) + ", expected " +
                                    std::to_string(kFormatVersion));
  }
  if (h.header_bytes != sizeof(h) || h.header_checksum != HeaderChecksum(h)) {
    return Bad(base_key, index, "damaged header");
  }
  if (h.key_hash != XXH3_64bits(base_key.data(), base_key.size())) {
    return Bad(base_key, index, "belongs to another key");
  }
  if (h.piece_index != index) {
    return Bad(base_key, index, "holds piece " + std::to_string(h.piece_index));
  }
  if (h.piece_count == 0 || h.piece_index >= h.piece_count ||
      h.record_bytes < sizeof(RecordHeader) || h.record_bytes > kMaxRecordBytes ||
      h.piece_count > h.record_bytes) {
    return Bad(base_key, index, "impossible piece count or length");
  }
  if (h.piece_bytes != value_bytes - sizeof(h)) {
    return Bad(base_key, index, "length differs from its header's");
  }
  return h;
}

Result<RecordHeader> CheckRecordHeader(std::string_view base_key,
                                       std::span<const std::byte> header,
                                       uint64_t record_bytes) {
  RecordHeader rh{};
  if (header.size() < sizeof(rh) || record_bytes < sizeof(rh)) {
    return Bad(base_key, 0, "record too short");
  }
  std::memcpy(&rh, header.data(), sizeof(rh));
  uint64_t want = sizeof(rh) + uint64_t{rh.prefix_len} * 4 + rh.metadata_len + rh.data_bytes;
  if (rh.data_bytes > kMaxRecordBytes || want != record_bytes || rh.reserved != 0) {
    return Bad(base_key, 0, "record lengths do not add up");
  }
  return rh;
}

Result<PieceHeader> CheckFirstPiece(std::string_view base_key, std::string_view value) {
  return CheckPiece(base_key, value, 0);
}

Result<std::string> JoinPieces(std::string_view base_key, const std::vector<std::string>& pieces) {
  if (pieces.empty()) return Bad(base_key, 0, "no pieces");
  KVC_ASSIGN_OR_RETURN(PieceHeader first, CheckPiece(base_key, pieces[0], 0));
  if (pieces.size() != first.piece_count) {
    return Bad(base_key, 0, "expected " + std::to_string(first.piece_count) + " pieces");
  }
  uint64_t total = 0;
  for (uint32_t i = 0; i < pieces.size(); ++i) {
    KVC_ASSIGN_OR_RETURN(PieceHeader h, CheckPiece(base_key, pieces[i], i));
    if (h.record_bytes != first.record_bytes || h.record_checksum != first.record_checksum ||
        h.piece_count != first.piece_count) {
      return Bad(base_key, i, "from another write of the entry than piece 0");
    }
    total += h.piece_bytes;
  }
  if (total != first.record_bytes) return Bad(base_key, 0, "pieces do not add up to the record");
  // Join without the piece headers, then check the whole.
  std::string record;
  record.reserve(total);
  for (const std::string& p : pieces) record.append(p, sizeof(PieceHeader));
  if (XXH3_64bits(record.data(), record.size()) != first.record_checksum) {
    return Bad(base_key, 0, "record checksum mismatch");
  }
  return record;
}

namespace {

// Reads what follows a record's header, in this order: `token_count` u32 tokens,
// `text_len` bytes of text and `data_len` bytes of data. The caller has checked that
// they are all there.
void ReadRecordTail(const char* p, uint64_t token_count, uint64_t text_len, uint64_t data_len,
                    std::vector<uint32_t>& tokens, std::string& text,
                    std::vector<std::byte>& data) {
  // (memcpy only when there is something: an empty vector's data() may be null.)
  tokens.resize(token_count);
  if (token_count > 0) std::memcpy(tokens.data(), p, token_count * 4);
  p += token_count * 4;
  text.assign(p, text_len);
  p += text_len;
  data.resize(data_len);
  if (data_len > 0) std::memcpy(data.data(), p, data_len);
}

}  // namespace

Result<Record> DecodePieces(std::string_view base_key, const std::vector<std::string>& pieces) {
  KVC_ASSIGN_OR_RETURN(std::string record, JoinPieces(base_key, pieces));
  KVC_ASSIGN_OR_RETURN(RecordHeader rh,
                       CheckRecordHeader(base_key, std::as_bytes(std::span(record)),
                                         record.size()));
  Record out;
  out.token_count = rh.token_count;
  out.priority = rh.priority;
  ReadRecordTail(record.data() + sizeof(rh), rh.prefix_len, rh.metadata_len, rh.data_bytes,
                 out.prefix_tokens, out.metadata, out.data);
  return out;
}

Result<ChunkRecord> DecodeChunkPieces(std::string_view base_key,
                                      const std::vector<std::string>& pieces) {
  KVC_ASSIGN_OR_RETURN(std::string record, JoinPieces(base_key, pieces));
  ChunkRecordHeader ch{};
  if (record.size() < sizeof(ch)) return Bad(base_key, 0, "shorter than a chunk record header");
  std::memcpy(&ch, record.data(), sizeof(ch));
  if (ch.magic != kChunkRecordMagic) return Bad(base_key, 0, "not a chunk record");
  uint64_t want = sizeof(ch) + uint64_t{ch.token_count} * 4 + ch.namespace_len + ch.data_bytes;
  if (ch.data_bytes > kMaxRecordBytes || want != record.size() || ch.reserved != 0) {
    return Bad(base_key, 0, "chunk record lengths do not add up");
  }
  ChunkRecord out;
  out.chain_hash = ch.chain_hash;
  out.parent_hash = ch.parent_hash;
  out.position = ch.position;
  ReadRecordTail(record.data() + sizeof(ch), ch.token_count, ch.namespace_len, ch.data_bytes,
                 out.tokens, out.name_space, out.data);
  return out;
}

std::string ChunkKey(std::string_view name_space, uint64_t seed, uint64_t chain_hash) {
  return "kvc:{" + std::string(name_space) + ":chunk:" + PrefixHashToHex(seed) + ":" +
         PrefixHashToHex(chain_hash) + "}";
}

}  // namespace kvcache::remote
