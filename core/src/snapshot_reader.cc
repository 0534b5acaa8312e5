// Reading snapshots: SnapshotReader::Validate checks a whole file in one sequential pass with
// large reads before anyone changes a pool; SnapshotReader then copies payloads straight
// into their destination and checks each record again.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "file_util.h"
#include "kvcache/prefix.h"
#include "snapshot_format.h"

namespace kvcache::snapshot {
namespace {

constexpr size_t kReadBuffer = 8u << 20;
// How far ahead of the reader the kernel is asked to read (cold files).
constexpr uint64_t kReadAhead = 64u << 20;
// Progress is reported about this often.
constexpr uint64_t kProgressStep = 64u << 20;

// ReadFullyAt, with a file that ended early (it shrank after it was measured) reported
// as Corruption naming `what`.
Status ReadSnapshotAt(int fd, uint64_t offset, std::span<std::byte> out, const std::string& what) {
  Status s = ReadFullyAt(fd, offset, out, what);
  if (s.ok()) return s;
  struct stat st;
  if (fstat(fd, &st) == 0 && offset + out.size() > static_cast<uint64_t>(st.st_size)) {
    return Status::Corruption(what + ": file shrank since it was measured");
  }
  return s;
}

// Sequential reader over a file of known size with one large buffer. Every call first
// checks that the bytes exist, so a truncated file is reported as such, at its offset.
class SequentialReader {
 public:
  SequentialReader(std::string path, int fd, uint64_t size,
                   const std::function<void(uint64_t, uint64_t)>& progress)
      : path_(std::move(path)), fd_(fd), size_(size), progress_(progress),
        buffer_(new std::byte[kReadBuffer]) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return size_ - offset_; }

  Status Corrupt(const std::string& what) const {
    return Status::Corruption("snapshot " + Quoted(path_) + ": " + what);
  }

  // Copies the next `len` bytes into `out` (and into `hash` when given).
  Status Read(void* out, size_t len, XXH3_state_t* hash, const char* what) {
    return Consume(len, hash, static_cast<std::byte*>(out), what);
  }
  // Feeds the next `len` bytes to `hash` without keeping them.
  Status Skip(uint64_t len, XXH3_state_t* hash, const char* what) {
    return Consume(len, hash, nullptr, what);
  }

 private:
  Status Consume(uint64_t len, XXH3_state_t* hash, std::byte* out, const char* what) {
    if (len > remaining()) {
      return Corrupt(std::string("truncated: ") + what + " at offset " +
                     std::to_string(offset_) + " needs " + std::to_string(len) +
                     " bytes, the file has " + std::to_string(remaining()) + " left");
    }
    while (len > 0) {
      if (pos_ == filled_) KVC_RETURN_IF_ERROR(Fill());
      size_t n = static_cast<size_t>(std::min<uint64_t>(len, filled_ - pos_));
      if (hash != nullptr) XXH3_64bits_update(hash, buffer_.get() + pos_, n);
      if (out != nullptr) {
        std::memcpy(out, buffer_.get() + pos_, n);
        out += n;
      }
      pos_ += n;
      offset_ += n;
      len -= n;
    }
    return Status::Ok();
  }

  Status Fill() {
    uint64_t file_pos = offset_;  // buffer is empty: offset_ is where the next read starts
    size_t want = static_cast<size_t>(std::min<uint64_t>(kReadBuffer, size_ - file_pos));
    KVC_RETURN_IF_ERROR(ReadSnapshotAt(fd_, file_pos, std::span(buffer_.get(), want),
                                       "snapshot " + Quoted(path_)));
    pos_ = 0;
    filled_ = want;
    // Keep the disk busy while this buffer is hashed: ask for the next window early.
    uint64_t next = file_pos + want;
    if (next < size_ && next + kReadAhead / 2 > prefetched_) {
      uint64_t from = std::max(prefetched_, next);
      uint64_t to = std::min(size_, next + kReadAhead);
      if (to > from) {
        posix_fadvise(fd_, static_cast<off_t>(from), static_cast<off_t>(to - from),
                      POSIX_FADV_WILLNEED);
        prefetched_ = to;
      }
    }
    if (progress_ && file_pos + want >= next_progress_) {
      progress_(file_pos + want, size_);
      next_progress_ = file_pos + want + kProgressStep;
    }
    return Status::Ok();
  }

  std::string path_;
  int fd_;
  uint64_t size_;
  const std::function<void(uint64_t, uint64_t)>& progress_;
  std::unique_ptr<std::byte[]> buffer_;
  size_t pos_ = 0;
  size_t filled_ = 0;
  uint64_t offset_ = 0;
  uint64_t next_progress_ = 0;
  uint64_t prefetched_ = 0;  // readahead requested up to here
};

using HashPtr = std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)>;

HashPtr NewHash() {
  HashPtr h(XXH3_createState(), &XXH3_freeState);
  if (h == nullptr) std::abort();
  XXH3_64bits_reset(h.get());
  return h;
}

// O_NONBLOCK: opening a FIFO (or a device) for reading would otherwise wait for a
// writer forever; such files are refused once fstat has said what they are.
Result<int> OpenForRead(const std::string& path, bool no_follow, struct stat* out) {
  int fd = open(path.c_str(),
                O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (no_follow ? O_NOFOLLOW : 0));
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("snapshot " + Quoted(path) + " does not exist");
    return ErrnoToStatus(errno, "open snapshot " + Quoted(path));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoToStatus(err, "stat snapshot " + Quoted(path));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument("snapshot " + Quoted(path) + " is not a regular file");
  }
  if (int flags = fcntl(fd, F_GETFL); flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    int err = errno;
    close(fd);
    return ErrnoToStatus(err, "open snapshot " + Quoted(path));
  }
  *out = st;
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return fd;
}

}  // namespace

SnapshotReader::SnapshotReader(std::string path, int fd, const struct stat& st)
    : path_(std::move(path)),
      fd_(fd),
      size_(static_cast<uint64_t>(st.st_size)),
      mtime_(st.st_mtim),
      ctime_(st.st_ctim) {}

Result<std::unique_ptr<SnapshotReader>> SnapshotReader::Open(const std::string& path,
                                                            bool no_follow) {
  struct stat st {};
  KVC_ASSIGN_OR_RETURN(int fd, OpenForRead(path, no_follow, &st));
  return std::unique_ptr<SnapshotReader>(new SnapshotReader(path, fd, st));
}

SnapshotReader::~SnapshotReader() { close(fd_); }

Result<SnapshotContents> SnapshotReader::Validate(
    const std::function<void(uint64_t, uint64_t)>& progress) {
  const std::string& path = path_;
  uint64_t file_size = size_;
  SequentialReader in(path, fd_, file_size, progress);

  // The magic first: a file of another kind is named as such, not as "truncated".
  char magic[sizeof(kFileMagic)] = {};
  size_t have = static_cast<size_t>(std::min<uint64_t>(file_size, sizeof(magic)));
  KVC_RETURN_IF_ERROR(in.Read(magic, have, nullptr, "file magic"));
  if (std::memcmp(magic, kFileMagic, have) != 0) {
    return in.Corrupt("not a kvcachefs snapshot (bad magic)");
  }
  FileHeader h{};
  std::memcpy(&h, magic, have);
  KVC_RETURN_IF_ERROR(in.Read(reinterpret_cast<std::byte*>(&h) + have, sizeof(h) - have,
                              nullptr, "file header"));
  // A newer writer may have changed everything after the version, checksum included.
  if (h.version > kSnapshotVersion) {
    return Status::NotSupported("snapshot " + Quoted(path) + ": format version " +
                                std::to_string(h.version) + " is newer than this build reads (" +
                                std::to_string(kSnapshotVersion) + ")");
  }
  if (!Sealed(h)) return in.Corrupt("file header checksum mismatch");
  if (h.version < kOldestSnapshotVersion) {
    return in.Corrupt("bad format version " + std::to_string(h.version));
  }
  // Version 1 is version 2 without chunk records (its chunk_count was reserved, 0).
  if (h.flags != 0 || (h.version < 2 && h.chunk_count != 0) ||
      h.header_size != sizeof(FileHeader) ||
      h.record_header_size != sizeof(RecordHeader)) {
    return in.Corrupt("file header has unknown flags or sizes");
  }
  if (h.config_length > kMaxConfigBytes) return in.Corrupt("config length out of range");

  SnapshotContents out;
  out.version = h.version;
  out.created = h.created;
  out.payload_bytes = h.payload_bytes;
  out.file_bytes = file_size;
  out.config_json.resize(h.config_length);
  KVC_RETURN_IF_ERROR(in.Read(out.config_json.data(), h.config_length, nullptr, "pool config"));
  if (XXH3_64bits(out.config_json.data(), out.config_json.size()) != h.config_checksum) {
    return in.Corrupt("pool config checksum mismatch");
  }
  // Every record takes at least a header and a checksum: a count beyond what the file
  // can hold is refused before anything is allocated for it.
  uint64_t min_record = sizeof(RecordHeader) + kRecordChecksumSize;
  static_assert(sizeof(ChunkRecordHeader) == sizeof(RecordHeader));
  if (h.entry_count > in.remaining() / min_record ||
      h.entry_count + h.chunk_count > in.remaining() / min_record) {
    return in.Corrupt("truncated: header says " + std::to_string(h.entry_count) +
                      " entries and " + std::to_string(h.chunk_count) +
                      " chunks, the file has " + std::to_string(in.remaining()) +
                      " bytes left");
  }
  out.records.reserve(static_cast<size_t>(h.entry_count));

  HashPtr records_hash = NewHash();
  HashPtr record_hash = NewHash();
  std::unordered_set<uint64_t> ids;
  ids.reserve(static_cast<size_t>(h.entry_count));
  uint64_t payload_total = 0;
  for (uint64_t i = 0; i < h.entry_count; ++i) {
    XXH3_state_t* rh = record_hash.get();
    XXH3_64bits_reset(rh);
    RecordEntry rec;
    rec.record_offset = in.offset();
    RecordHeader r{};
    KVC_RETURN_IF_ERROR(in.Read(&r, sizeof(r), rh, "record header"));
    std::string where = "record " + std::to_string(i) + " at offset " +
                        std::to_string(rec.record_offset) + ": ";
    if (r.magic != kRecordMagic) return in.Corrupt(where + "bad record magic");
    if (!Sealed(r)) return in.Corrupt(where + "record header checksum mismatch");
    if (r.flags != 0 || r.reserved0 != 0) return in.Corrupt(where + "unknown record flags");
    uint64_t body = uint64_t{r.prefix_length} * sizeof(uint32_t) + r.metadata_length + r.size +
                    kRecordChecksumSize;
    if (r.size > in.remaining() || r.metadata_length > kMaxMetadataBytes ||
        body > in.remaining()) {
      return in.Corrupt("truncated: " + where + "claims " + std::to_string(body) +
                        " more bytes, the file has " + std::to_string(in.remaining()) +
                        " left");
    }
    if (!ids.insert(r.sequence_id).second) {
      return in.Corrupt(where + "sequence id " + std::to_string(r.sequence_id) + " repeated");
    }
    rec.meta = {r.sequence_id, r.size,          r.token_count, r.priority,
                r.created,     r.last_accessed, r.access_count};
    rec.prefix_tokens.resize(r.prefix_length);
    KVC_RETURN_IF_ERROR(in.Read(rec.prefix_tokens.data(), r.prefix_length * sizeof(uint32_t),
                                rh, "prefix tokens"));
    rec.metadata.resize(r.metadata_length);
    KVC_RETURN_IF_ERROR(in.Read(rec.metadata.data(), r.metadata_length, rh, "metadata"));
    rec.payload_offset = in.offset();
    KVC_RETURN_IF_ERROR(in.Skip(r.size, rh, "payload"));
    uint64_t stored = 0;
    KVC_RETURN_IF_ERROR(in.Read(&stored, sizeof(stored), nullptr, "record checksum"));
    rec.record_checksum = XXH3_64bits_digest(rh);
    if (stored != rec.record_checksum) return in.Corrupt(where + "record checksum mismatch");
    XXH3_64bits_update(records_hash.get(), &stored, sizeof(stored));
    payload_total += r.size;
    out.records.push_back(std::move(rec));
  }

  // Chunks: each one's hash must be its tokens chained to its parent, and its parent
  // the namespace's seed or an earlier chunk one position before, of the same namespace.
  struct Seen {
    uint32_t position;
    size_t index;
  };
  std::unordered_map<uint64_t, Seen> chunks;
  chunks.reserve(h.chunk_count);
  out.chunks.reserve(h.chunk_count);
  for (uint64_t i = 0; i < h.chunk_count; ++i) {
    XXH3_state_t* rh = record_hash.get();
    XXH3_64bits_reset(rh);
    ChunkEntry chunk;
    chunk.record_offset = in.offset();
    ChunkRecordHeader r{};
    KVC_RETURN_IF_ERROR(in.Read(&r, sizeof(r), rh, "chunk record header"));
    std::string where = "chunk record " + std::to_string(i) + " at offset " +
                        std::to_string(chunk.record_offset) + ": ";
    if (r.magic != kChunkRecordMagic) return in.Corrupt(where + "bad chunk record magic");
    if (!Sealed(r)) return in.Corrupt(where + "chunk record header checksum mismatch");
    if (r.flags != 0 || r.reserved0 != 0) return in.Corrupt(where + "unknown record flags");
    if (r.token_count == 0 || r.token_count > kMaxChunkTokens || r.position == 0 ||
        r.namespace_length > kMaxNamespaceBytes) {
      return in.Corrupt(where + "token count, position or namespace length out of range");
    }
    uint64_t body = uint64_t{r.token_count} * sizeof(uint32_t) + r.namespace_length + r.size +
                    kRecordChecksumSize;
    if (r.size > in.remaining() || body > in.remaining()) {
      return in.Corrupt("truncated: " + where + "claims " + std::to_string(body) +
                        " more bytes, the file has " + std::to_string(in.remaining()) +
                        " left");
    }
    chunk.meta = {r.hash, r.parent_hash, r.size, r.position, r.created, r.last_accessed,
                  r.access_count};
    chunk.tokens.resize(r.token_count);
    KVC_RETURN_IF_ERROR(in.Read(chunk.tokens.data(), r.token_count * sizeof(uint32_t), rh,
                                "chunk tokens"));
    chunk.name_space.resize(r.namespace_length);
    KVC_RETURN_IF_ERROR(in.Read(chunk.name_space.data(), r.namespace_length, rh, "namespace"));
    chunk.payload_offset = in.offset();
    KVC_RETURN_IF_ERROR(in.Skip(r.size, rh, "chunk payload"));
    uint64_t stored = 0;
    KVC_RETURN_IF_ERROR(in.Read(&stored, sizeof(stored), nullptr, "record checksum"));
    chunk.record_checksum = XXH3_64bits_digest(rh);
    if (stored != chunk.record_checksum) return in.Corrupt(where + "record checksum mismatch");
    XXH3_64bits_update(records_hash.get(), &stored, sizeof(stored));
    if (ChainHash(r.parent_hash, chunk.tokens) != r.hash) {
      return in.Corrupt(where + "hash is not the chained hash of its tokens");
    }
    if (r.position == 1) {
      if (r.parent_hash != ChunkChainSeed(chunk.name_space)) {
        return in.Corrupt(where + "first chunk of a chain is not under its namespace's seed");
      }
    } else {
      auto parent = chunks.find(r.parent_hash);
      if (parent == chunks.end() || parent->second.position + 1 != r.position ||
          out.chunks[parent->second.index].name_space != chunk.name_space) {
        return in.Corrupt(where + "its parent is not an earlier chunk of its chain");
      }
    }
    if (!chunks.emplace(r.hash, Seen{r.position, out.chunks.size()}).second) {
      return in.Corrupt(where + "chunk hash repeated");
    }
    payload_total += r.size;
    out.chunks.push_back(std::move(chunk));
  }

  Footer f{};
  if (in.remaining() < sizeof(Footer)) {
    return in.Corrupt("truncated: footer at offset " + std::to_string(in.offset()) +
                      " needs " + std::to_string(sizeof(Footer)) + " bytes, the file has " +
                      std::to_string(in.remaining()) + " left");
  }
  if (in.remaining() > sizeof(Footer)) {
    return in.Corrupt(std::to_string(in.remaining() - sizeof(Footer)) +
                      " unexpected bytes before the footer at offset " +
                      std::to_string(in.offset()));
  }
  KVC_RETURN_IF_ERROR(in.Read(&f, sizeof(f), nullptr, "footer"));
  if (std::memcmp(f.magic, kFooterMagic, sizeof(f.magic)) != 0) {
    return in.Corrupt("bad footer magic");
  }
  if (!Sealed(f)) return in.Corrupt("footer checksum mismatch");
  if (f.entry_count != h.entry_count || f.payload_bytes != h.payload_bytes ||
      payload_total != h.payload_bytes || f.file_bytes != file_size) {
    return in.Corrupt("footer counts do not match the file (entries " +
                      std::to_string(f.entry_count) + ", payload bytes " +
                      std::to_string(f.payload_bytes) + ", file bytes " +
                      std::to_string(f.file_bytes) + ")");
  }
  if (f.records_checksum != XXH3_64bits_digest(records_hash.get())) {
    return in.Corrupt("footer records checksum mismatch");
  }
  if (progress) progress(file_size, file_size);
  return out;
}

Status SnapshotReader::ReadPayload(const RecordEntry& record, std::span<std::byte> out) {
  if (out.size() != record.meta.size) {
    return Status::InvalidArgument("destination size does not match the record");
  }
  return ReadChecked(record.record_offset, record.payload_offset, record.record_checksum,
                     "record of entry " + std::to_string(record.meta.sequence_id), out);
}

Status SnapshotReader::ReadPayload(const ChunkEntry& chunk, std::span<std::byte> out) {
  if (out.size() != chunk.meta.size) {
    return Status::InvalidArgument("destination size does not match the chunk record");
  }
  return ReadChecked(chunk.record_offset, chunk.payload_offset, chunk.record_checksum,
                     "record of chunk " + PrefixHashToHex(chunk.meta.hash), out);
}

Status SnapshotReader::ReadChecked(uint64_t record_offset, uint64_t payload_offset,
                                   uint64_t checksum, const std::string& record,
                                   std::span<std::byte> out) {
  // The header, tokens and metadata are small: read them back to re-hash the record.
  size_t front = static_cast<size_t>(payload_offset - record_offset);
  std::vector<std::byte> head(front);
  std::string what = "snapshot " + Quoted(path_) + ": " + record;
  KVC_RETURN_IF_ERROR(ReadSnapshotAt(fd_, record_offset, head, what));
  KVC_RETURN_IF_ERROR(ReadSnapshotAt(fd_, payload_offset, out, what));
  HashPtr h = NewHash();
  XXH3_64bits_update(h.get(), head.data(), head.size());
  XXH3_64bits_update(h.get(), out.data(), out.size());
  if (XXH3_64bits_digest(h.get()) != checksum) {
    return Status::Corruption(what + ": changed since it was validated");
  }
  return Status::Ok();
}

Status SnapshotReader::CheckUnchanged() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) return ErrnoToStatus(errno, "stat snapshot " + Quoted(path_));
  if (static_cast<uint64_t>(st.st_size) != size_ || st.st_mtim.tv_sec != mtime_.tv_sec ||
      st.st_mtim.tv_nsec != mtime_.tv_nsec || st.st_ctim.tv_sec != ctime_.tv_sec ||
      st.st_ctim.tv_nsec != ctime_.tv_nsec) {
    return Status::Corruption("snapshot " + Quoted(path_) + " changed since it was validated");
  }
  return Status::Ok();
}

Status SnapshotReader::CopyPayload(const RecordEntry& record, int out_fd, uint64_t out_offset) {
  std::string what = "snapshot " + Quoted(path_) + ": record of entry " +
                     std::to_string(record.meta.sequence_id);
  // Explicit offsets on both sides: the pool's descriptor is shared by every thread of
  // the process, so its file position must not carry where this copy goes.
  Status copied = CopyFileRange(fd_, record.payload_offset, out_fd, out_offset, record.meta.size,
                                what);
  if (!copied.ok()) {
    // A snapshot that changed under the copy is Corruption, whatever the copy saw.
    KVC_RETURN_IF_ERROR(CheckUnchanged());
    return Status(copied.code(), "restore " + copied.message());
  }
  return CheckUnchanged();
}

}  // namespace kvcache::snapshot
