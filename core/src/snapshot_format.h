// The snapshot file format (docs/formats.md, "Snapshot format"), and the two private
// pieces that speak it: SnapshotWriter (streams a file into place atomically) and
// SnapshotReader (checks a whole file, then copies payloads out).
//
// Layout: FileHeader, config JSON, entry records (RecordHeader, prefix tokens u32 LE,
// metadata bytes, payload bytes, record checksum u64), chunk records (version 2:
// ChunkRecordHeader, tokens u32 LE, namespace bytes, payload bytes, record checksum u64),
// Footer. All integers and doubles little-endian; every struct is written exactly as
// laid out here.
#pragma once

#include <sys/stat.h>
// On x86-64, libxxhash's run-time dispatch picks the AVX2/AVX-512 XXH3 (2-3x the
// default SSE2 one, the same hash values): checksums are a third of a restore's CPU time.
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#else
#include <xxhash.h>
#endif

#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kvcache/status.h"

namespace kvcache::snapshot {

// The structs below are copied to and from the file byte for byte; that is their
// little-endian encoding only on a little-endian host. A big-endian port would byte-swap
// in EncodeX/DecodeX below, the one place that turns structs into bytes.
static_assert(std::endian::native == std::endian::little, "snapshot format assumes LE host");

// Bump kSnapshotVersion when you change any struct, constant or section order below,
// and record the change in docs/formats.md. Readers refuse newer versions.
inline constexpr uint32_t kSnapshotVersion = 2;
// The oldest version readers still accept: 1 is version 2 without chunk records.
inline constexpr uint32_t kOldestSnapshotVersion = 1;
inline constexpr char kFileMagic[8] = {'K', 'V', 'C', 'S', 'N', 'A', 'P', '\0'};
inline constexpr char kFooterMagic[8] = {'K', 'V', 'C', 'S', 'E', 'N', 'D', '\0'};
inline constexpr uint32_t kRecordMagic = 0x5243564B;  // "KVCR" as bytes in the file
inline constexpr uint32_t kChunkRecordMagic = 0x4B43564B;  // "KVCK" as bytes in the file
// Upper bounds that keep a corrupt length from asking for absurd allocations.
inline constexpr uint32_t kMaxConfigBytes = 1u << 20;
inline constexpr uint32_t kMaxMetadataBytes = 64u << 20;
inline constexpr uint32_t kMaxChunkTokens = 1u << 20;
inline constexpr uint32_t kMaxNamespaceBytes = 4096;  // kvcache::kMaxChunkNamespaceBytes

struct FileHeader {
  char magic[8];               // kFileMagic
  uint32_t version;            // kSnapshotVersion
  uint32_t flags;              // 0; readers refuse unknown bits
  uint32_t header_size;        // sizeof(FileHeader)
  uint32_t record_header_size; // sizeof(RecordHeader)
  uint32_t config_length;      // bytes of config JSON following this header
  uint32_t chunk_count;        // chunk records after the entry records (version 1: 0)
  uint64_t entry_count;        // entry records that follow the config
  uint64_t payload_bytes;      // sum of the payload sizes of all records
  double created;              // unix seconds when the snapshot was taken
  uint64_t config_checksum;    // XXH3-64 of the config JSON bytes
  uint64_t header_checksum;    // XXH3-64 of bytes [0, 64) of this header
};
static_assert(std::is_standard_layout_v<FileHeader>);
static_assert(sizeof(FileHeader) == 72);
static_assert(offsetof(FileHeader, version) == 8);
static_assert(offsetof(FileHeader, flags) == 12);
static_assert(offsetof(FileHeader, header_size) == 16);
static_assert(offsetof(FileHeader, record_header_size) == 20);
static_assert(offsetof(FileHeader, config_length) == 24);
static_assert(offsetof(FileHeader, chunk_count) == 28);
static_assert(offsetof(FileHeader, entry_count) == 32);
static_assert(offsetof(FileHeader, payload_bytes) == 40);
static_assert(offsetof(FileHeader, created) == 48);
static_assert(offsetof(FileHeader, config_checksum) == 56);
static_assert(offsetof(FileHeader, header_checksum) == 64);

struct RecordHeader {
  uint32_t magic;            // kRecordMagic
  uint32_t flags;            // 0; readers refuse unknown bits
  uint64_t sequence_id;
  uint64_t size;             // payload bytes
  uint64_t token_count;
  uint32_t prefix_length;    // prefix tokens (u32 each) following this header
  int32_t priority;
  uint32_t metadata_length;  // metadata bytes following the prefix tokens
  uint32_t reserved0;        // 0
  double created;            // unix seconds
  double last_accessed;      // unix seconds
  uint64_t access_count;
  uint64_t header_checksum;  // XXH3-64 of bytes [0, 72) of this header
};
static_assert(std::is_standard_layout_v<RecordHeader>);
static_assert(sizeof(RecordHeader) == 80);
static_assert(offsetof(RecordHeader, flags) == 4);
static_assert(offsetof(RecordHeader, sequence_id) == 8);
static_assert(offsetof(RecordHeader, size) == 16);
static_assert(offsetof(RecordHeader, token_count) == 24);
static_assert(offsetof(RecordHeader, prefix_length) == 32);
static_assert(offsetof(RecordHeader, priority) == 36);
static_assert(offsetof(RecordHeader, metadata_length) == 40);
static_assert(offsetof(RecordHeader, reserved0) == 44);
static_assert(offsetof(RecordHeader, created) == 48);
static_assert(offsetof(RecordHeader, last_accessed) == 56);
static_assert(offsetof(RecordHeader, access_count) == 64);
static_assert(offsetof(RecordHeader, header_checksum) == 72);

// A token chunk (version 2). Chunk records follow the entry records, parents before
// their children (each chunk's parent is an earlier record, unless position is 1).
struct ChunkRecordHeader {
  uint32_t magic;             // kChunkRecordMagic
  uint32_t flags;             // 0; readers refuse unknown bits
  uint64_t hash;              // H_i, the chunk's chained hash; unique within a file
  uint64_t parent_hash;       // H_{i-1}; for position 1 the namespace's seed
  uint64_t size;              // payload bytes
  uint32_t position;          // i, 1 for the first chunk of a chain
  uint32_t token_count;       // tokens (u32 each) following this header: the chunk size
  uint32_t namespace_length;  // namespace bytes following the tokens
  uint32_t reserved0;         // 0
  double created;             // unix seconds
  double last_accessed;       // unix seconds
  uint64_t access_count;
  uint64_t header_checksum;   // XXH3-64 of bytes [0, 72) of this header
};
static_assert(std::is_standard_layout_v<ChunkRecordHeader>);
static_assert(sizeof(ChunkRecordHeader) == 80);
static_assert(offsetof(ChunkRecordHeader, flags) == 4);
static_assert(offsetof(ChunkRecordHeader, hash) == 8);
static_assert(offsetof(ChunkRecordHeader, parent_hash) == 16);
static_assert(offsetof(ChunkRecordHeader, size) == 24);
static_assert(offsetof(ChunkRecordHeader, position) == 32);
static_assert(offsetof(ChunkRecordHeader, token_count) == 36);
static_assert(offsetof(ChunkRecordHeader, namespace_length) == 40);
static_assert(offsetof(ChunkRecordHeader, reserved0) == 44);
static_assert(offsetof(ChunkRecordHeader, created) == 48);
static_assert(offsetof(ChunkRecordHeader, last_accessed) == 56);
static_assert(offsetof(ChunkRecordHeader, access_count) == 64);
static_assert(offsetof(ChunkRecordHeader, header_checksum) == 72);

struct Footer {
  char magic[8];              // kFooterMagic
  uint64_t entry_count;       // records in the file (== FileHeader::entry_count)
  uint64_t payload_bytes;     // sum of payload sizes (== FileHeader::payload_bytes)
  uint64_t file_bytes;        // length of the whole file, footer included
  uint64_t records_checksum;  // XXH3-64 of all record checksums, as u64 LE, in order
  uint64_t footer_checksum;   // XXH3-64 of bytes [0, 40) of this footer
};
static_assert(std::is_standard_layout_v<Footer>);
static_assert(sizeof(Footer) == 48);
static_assert(offsetof(Footer, entry_count) == 8);
static_assert(offsetof(Footer, payload_bytes) == 16);
static_assert(offsetof(Footer, file_bytes) == 24);
static_assert(offsetof(Footer, records_checksum) == 32);
static_assert(offsetof(Footer, footer_checksum) == 40);

inline constexpr size_t kRecordChecksumSize = sizeof(uint64_t);

// XXH3-64 (seed 0) of the bytes of a header or footer before its trailing checksum.
template <typename T>
uint64_t ChecksumOf(const T& s) {
  static_assert(std::is_standard_layout_v<T>);
  return XXH3_64bits(&s, sizeof(T) - sizeof(uint64_t));
}
// Fill in / verify the trailing checksum of a header or footer.
inline void Seal(FileHeader& h) { h.header_checksum = ChecksumOf(h); }
inline void Seal(RecordHeader& h) { h.header_checksum = ChecksumOf(h); }
inline void Seal(ChunkRecordHeader& h) { h.header_checksum = ChecksumOf(h); }
inline void Seal(Footer& f) { f.footer_checksum = ChecksumOf(f); }
inline bool Sealed(const FileHeader& h) { return h.header_checksum == ChecksumOf(h); }
inline bool Sealed(const RecordHeader& h) { return h.header_checksum == ChecksumOf(h); }
inline bool Sealed(const ChunkRecordHeader& h) { return h.header_checksum == ChecksumOf(h); }
inline bool Sealed(const Footer& f) { return f.footer_checksum == ChecksumOf(f); }

// One entry as the writer takes it and the reader hands it back.
struct RecordMeta {
  uint64_t sequence_id = 0;
  uint64_t size = 0;
  uint64_t token_count = 0;
  int32_t priority = 0;
  double created = 0;
  double last_accessed = 0;
  uint64_t access_count = 0;
};

// One token chunk as the writer takes it and the reader hands it back.
struct ChunkMeta {
  uint64_t hash = 0;
  uint64_t parent_hash = 0;
  uint64_t size = 0;
  uint32_t position = 0;
  double created = 0;
  double last_accessed = 0;
  uint64_t access_count = 0;
};

// Streams a snapshot into a temp file next to `target` and renames it into place on
// Finish(). Destroying an unfinished writer removes the temp file, so the previous file
// at `target` is never touched unless Finish() succeeds. Not thread-safe.
class SnapshotWriter {
 public:
  // Creates <target>.tmp.<pid>.XXXXXX (O_EXCL, 0600) and writes the header and config.
  // `payload_bytes` counts the payloads of the entries and of the chunks.
  static Result<std::unique_ptr<SnapshotWriter>> Create(const std::string& target,
                                                        std::string_view config_json,
                                                        uint64_t entry_count,
                                                        uint64_t payload_bytes, double created,
                                                        uint32_t chunk_count = 0);
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // Appends one record. Large payloads go to the file straight from `payload`.
  Status AddRecord(const RecordMeta& meta, std::span<const uint32_t> prefix_tokens,
                   std::string_view metadata, std::span<const std::byte> payload);
  // Appends one chunk record. REQUIRES: every entry record was added (InvalidArgument
  // otherwise), and the chunk's parent before it.
  Status AddChunk(const ChunkMeta& meta, std::span<const uint32_t> tokens,
                  std::string_view name_space, std::span<const std::byte> payload);
  // Writes the footer, fsyncs, renames over the target and fsyncs the directory.
  // InvalidArgument when the records added differ from the header's counts.
  Status Finish();
  uint64_t bytes_written() const { return offset_ + buffered_; }

 private:
  SnapshotWriter(std::string target, std::string temp, int fd, uint64_t entry_count,
                 uint64_t payload_bytes, uint32_t chunk_count);
  Status Append(std::span<const std::byte> bytes);
  // Appends header | parts... | checksum of them all, and counts the record.
  Status AddHashed(std::initializer_list<std::span<const std::byte>> parts);
  Status Flush(std::span<const std::byte> extra = {});
  Status Fail(Status status);

  std::string target_;
  std::string temp_;
  int fd_ = -1;
  uint64_t expected_entries_;
  uint64_t expected_payload_;
  uint32_t expected_chunks_;
  uint64_t entries_ = 0;
  uint32_t chunks_ = 0;
  uint64_t payload_ = 0;
  uint64_t offset_ = 0;    // bytes already in the file
  size_t buffered_ = 0;    // bytes in buffer_ not yet written
  std::unique_ptr<std::byte[]> buffer_;
  // Hash of every record checksum so far (the footer's records_checksum).
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> records_hash_;
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> record_hash_;
  bool failed_ = false;
};

// A record found valid by SnapshotReader::Validate.
struct RecordEntry {
  RecordMeta meta;
  std::vector<uint32_t> prefix_tokens;
  std::string metadata;
  uint64_t payload_offset = 0;  // file offset of the payload bytes
  uint64_t record_checksum = 0;
  uint64_t record_offset = 0;   // file offset of the RecordHeader
};

// A chunk record found valid by SnapshotReader::Validate: its hash is the chained
// hash of its tokens under its parent, and its parent is the namespace's seed
// (position 1) or an earlier chunk record of the previous position.
struct ChunkEntry {
  ChunkMeta meta;
  std::vector<uint32_t> tokens;
  std::string name_space;
  uint64_t payload_offset = 0;
  uint64_t record_checksum = 0;
  uint64_t record_offset = 0;
};

struct SnapshotContents {
  uint32_t version = 0;
  std::string config_json;
  double created = 0;
  uint64_t payload_bytes = 0;
  uint64_t file_bytes = 0;
  std::vector<RecordEntry> records;  // file order (sequence id order as written)
  std::vector<ChunkEntry> chunks;    // file order (parents first)
};

// An open snapshot: validated as a whole first, then its payloads copied straight into
// caller memory (e.g. a pool reservation). Both passes use the same open file, so a
// snapshot renamed over this path meanwhile does not mix into the one being read.
class SnapshotReader {
 public:
  // NotFound (naming the path) when it does not exist; InvalidArgument, without
  // blocking, when it is not a regular file (a FIFO, a device). With `no_follow` a
  // symlink at `path` is refused too (for files inside $CORTEX_HOME).
  static Result<std::unique_ptr<SnapshotReader>> Open(const std::string& path,
                                                      bool no_follow = false);
  ~SnapshotReader();
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;

  // Reads the whole file once, sequentially with large reads, checking every checksum,
  // length and count. NotSupported for a newer version, Corruption for anything
  // malformed; the message starts with "snapshot '<path>'". `progress` gets bytes read.
  Result<SnapshotContents> Validate(const std::function<void(uint64_t, uint64_t)>& progress);

  // Reads the record's payload into `out` (record.meta.size bytes) and checks the record
  // checksum again, so a file changed in place since validation is noticed (Corruption).
  Status ReadPayload(const RecordEntry& record, std::span<std::byte> out);
  Status ReadPayload(const ChunkEntry& chunk, std::span<std::byte> out);
  // Copies the record's payload into the file `out_fd` at `out_offset` inside the kernel
  // (page cache to page cache, as cp does: no copy through user memory and no page
  // faults on a mapping of the destination). Instead of re-hashing, it checks that the
  // file was not changed in place since Open (size, mtime, ctime): Corruption if it was.
  Status CopyPayload(const RecordEntry& record, int out_fd, uint64_t out_offset);

 private:
  SnapshotReader(std::string path, int fd, const struct stat& st);
  Status CheckUnchanged() const;
  Status ReadChecked(uint64_t record_offset, uint64_t payload_offset, uint64_t checksum,
                     const std::string& what, std::span<std::byte> out);
  std::string path_;
  int fd_;
  uint64_t size_;
  struct timespec mtime_;
  struct timespec ctime_;
};

}  // namespace kvcache::snapshot
