// SnapshotWriter: streams a snapshot into a temp file with large writes, then makes it
// the target with fsync + rename + directory fsync, so the target is always either the
// previous complete file or the new complete file.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "clock.h"
#include "file_util.h"
#include "snapshot_format.h"

namespace kvcache::snapshot {
namespace {

// Small pieces (headers, tokens, metadata, small payloads) are gathered into one buffer
// of this size; payloads at least kDirectWrite long go to the kernel straight from the
// caller's memory (the pinned pool bytes), next to whatever is buffered.
constexpr size_t kBufferSize = 8u << 20;
constexpr size_t kDirectWrite = 1u << 20;
// Writeback is started every this many bytes so the disk works while we keep writing
// and the final fsync has little left to do.
constexpr uint64_t kWritebackChunk = 64u << 20;

// Writes every byte of `iov` at `offset`, retrying short writes and EINTR.
int WriteAll(int fd, struct iovec* iov, int count, uint64_t offset) {
  while (count > 0) {
    ssize_t n = pwritev(fd, iov, count, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

// A persist killed mid-way leaves <target>.tmp.<pid>.XXXXXX behind; remove those whose
// writer is gone (never a live writer's file). A writer holds an flock on its temp file
// until it is done, and the lock goes with its death: that is what tells a live writer
// in another PID namespace (whose pid means nothing here) from a dead one.
void RemoveStaleTemps(const std::string& target) {
  std::string dir = DirName(target);
  std::string prefix = BaseName(target) + ".tmp.";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    pid_t pid = static_cast<pid_t>(atol(name.c_str() + prefix.size()));
    if (pid <= 0) continue;
    if (PidExists(pid)) continue;
    int fd = openat(dirfd(d), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) continue;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) unlinkat(dirfd(d), name.c_str(), 0);
    close(fd);
  }
  closedir(d);
}

using HashPtr = std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)>;

HashPtr NewHash() {
  HashPtr h(XXH3_createState(), &XXH3_freeState);
  if (h == nullptr) std::abort();  // allocation failure of a few hundred bytes
  XXH3_64bits_reset(h.get());
  return h;
}

}  // namespace

SnapshotWriter::SnapshotWriter(std::string target, std::string temp, int fd,
                               uint64_t entry_count, uint64_t payload_bytes,
                               uint32_t chunk_count)
    : target_(std::move(target)),
      temp_(std::move(temp)),
      fd_(fd),
      expected_entries_(entry_count),
      expected_payload_(payload_bytes),
      expected_chunks_(chunk_count),
      buffer_(new std::byte[kBufferSize]),
      records_hash_(NewHash()),
      record_hash_(NewHash()) {}

SnapshotWriter::~SnapshotWriter() {
  if (fd_ >= 0) close(fd_);
  if (!temp_.empty()) unlink(temp_.c_str());
}

Result<std::unique_ptr<SnapshotWriter>> SnapshotWriter::Create(const std::string& target,
                                                               std::string_view config_json,
                                                               uint64_t entry_count,
                                                               uint64_t payload_bytes,
                                                               double created,
                                                               uint32_t chunk_count) {
  if (config_json.size() > kMaxConfigBytes) {
    return Status::InvalidArgument("pool config too large for a snapshot");
  }
  // The file is renamed over `target` at the end: refuse to replace anything but a
  // regular file (a FIFO, device, directory or symlink there was put by someone else).
  struct stat existing {};
  if (lstat(target.c_str(), &existing) == 0 && !S_ISREG(existing.st_mode)) {
    return Status::InvalidArgument("persist " + Quoted(target) +
                                   ": the path exists and is not a regular file");
  }
  RemoveStaleTemps(target);
  std::string temp = target + ".tmp." + std::to_string(getpid()) + ".XXXXXX";
  // mkostemp creates the file O_EXCL with mode 0600.
  int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "persist " + Quoted(target) + ": create temp file");
  // Held until the file is closed: the mark of a live writer (see RemoveStaleTemps).
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    Status s = ErrnoToStatus(errno, "persist " + Quoted(target) + ": lock temp file");
    close(fd);
    unlink(temp.c_str());
    return s;
  }
  std::unique_ptr<SnapshotWriter> w(
      new SnapshotWriter(target, temp, fd, entry_count, payload_bytes, chunk_count));
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

  FileHeader h{};
  std::memcpy(h.magic, kFileMagic, sizeof(h.magic));
  h.version = kSnapshotVersion;
  h.header_size = sizeof(FileHeader);
  h.record_header_size = sizeof(RecordHeader);
  h.config_length = static_cast<uint32_t>(config_json.size());
  h.chunk_count = chunk_count;
  h.entry_count = entry_count;
  h.payload_bytes = payload_bytes;
  h.created = created;
  h.config_checksum = XXH3_64bits(config_json.data(), config_json.size());
  Seal(h);
  KVC_RETURN_IF_ERROR(w->Append(std::as_bytes(std::span(&h, 1))));
  KVC_RETURN_IF_ERROR(w->Append(std::as_bytes(std::span(config_json))));
  return w;
}

Status SnapshotWriter::Fail(Status status) {
  failed_ = true;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (!temp_.empty()) unlink(temp_.c_str());
  temp_.clear();
  return status;
}

Status SnapshotWriter::Flush(std::span<const std::byte> extra) {
  struct iovec iov[2];
  int count = 0;
  if (buffered_ > 0) iov[count++] = {buffer_.get(), buffered_};
  if (!extra.empty()) {
    iov[count++] = {const_cast<std::byte*>(extra.data()), extra.size()};
  }
  if (count == 0) return Status::Ok();
  uint64_t start = offset_;
  uint64_t len = buffered_ + extra.size();
  if (int err = WriteAll(fd_, iov, count, start); err != 0) {
    return Fail(ErrnoToStatus(err, "persist " + Quoted(target_) + ": write " + Quoted(temp_)));
  }
  offset_ += len;
  buffered_ = 0;
  // Start writeback of whole chunks behind us; errors surface at fsync.
  uint64_t chunk_start = (start / kWritebackChunk) * kWritebackChunk;
  uint64_t chunk_end = (offset_ / kWritebackChunk) * kWritebackChunk;
  if (chunk_end > chunk_start) {
    sync_file_range(fd_, static_cast<off_t>(chunk_start),
                    static_cast<off_t>(chunk_end - chunk_start), SYNC_FILE_RANGE_WRITE);
  }
  return Status::Ok();
}

Status SnapshotWriter::Append(std::span<const std::byte> bytes) {
  if (failed_) return Status::IOError("persist " + Quoted(target_) + ": writer failed earlier");
  if (bytes.size() >= kDirectWrite) return Flush(bytes);
  while (!bytes.empty()) {
    size_t n = std::min(bytes.size(), kBufferSize - buffered_);
    std::memcpy(buffer_.get() + buffered_, bytes.data(), n);
    buffered_ += n;
    bytes = bytes.subspan(n);
    if (buffered_ == kBufferSize) KVC_RETURN_IF_ERROR(Flush());
  }
  return Status::Ok();
}

Status SnapshotWriter::AddRecord(const RecordMeta& meta, std::span<const uint32_t> prefix_tokens,
                                 std::string_view metadata, std::span<const std::byte> payload) {
  if (payload.size() != meta.size) {
    return Status::InvalidArgument("record size does not match its payload");
  }
  if (metadata.size() > kMaxMetadataBytes || prefix_tokens.size() > UINT32_MAX) {
    return Status::InvalidArgument("entry " + std::to_string(meta.sequence_id) +
                                   ": metadata or prefix too large for a snapshot");
  }
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.sequence_id = meta.sequence_id;
  h.size = meta.size;
  h.token_count = meta.token_count;
  h.prefix_length = static_cast<uint32_t>(prefix_tokens.size());
  h.priority = meta.priority;
  h.metadata_length = static_cast<uint32_t>(metadata.size());
  h.created = meta.created;
  h.last_accessed = meta.last_accessed;
  h.access_count = meta.access_count;
  Seal(h);
  if (chunks_ > 0) {
    return Status::InvalidArgument("entry " + std::to_string(meta.sequence_id) +
                                   " added after chunk records");
  }
  KVC_RETURN_IF_ERROR(AddHashed({std::as_bytes(std::span(&h, 1)), std::as_bytes(prefix_tokens),
                                 std::as_bytes(std::span(metadata)), payload}));
  ++entries_;
  payload_ += meta.size;
  return Status::Ok();
}

Status SnapshotWriter::AddChunk(const ChunkMeta& meta, std::span<const uint32_t> tokens,
                                std::string_view name_space,
                                std::span<const std::byte> payload) {
  if (payload.size() != meta.size) {
    return Status::InvalidArgument("chunk size does not match its payload");
  }
  if (entries_ != expected_entries_ || chunks_ >= expected_chunks_ ||
      tokens.size() > kMaxChunkTokens || name_space.size() > kMaxNamespaceBytes) {
    return Status::InvalidArgument("chunk record out of place or too large for a snapshot");
  }
  ChunkRecordHeader h{};
  h.magic = kChunkRecordMagic;
  h.hash = meta.hash;
  h.parent_hash = meta.parent_hash;
  h.size = meta.size;
  h.position = meta.position;
  h.token_count = static_cast<uint32_t>(tokens.size());
  h.namespace_length = static_cast<uint32_t>(name_space.size());
  h.created = meta.created;
  h.last_accessed = meta.last_accessed;
  h.access_count = meta.access_count;
  Seal(h);
  KVC_RETURN_IF_ERROR(AddHashed({std::as_bytes(std::span(&h, 1)), std::as_bytes(tokens),
                                 std::as_bytes(std::span(name_space)), payload}));
  ++chunks_;
  payload_ += meta.size;
  return Status::Ok();
}

Status SnapshotWriter::AddHashed(std::initializer_list<std::span<const std::byte>> parts) {
  XXH3_state_t* rh = record_hash_.get();
  XXH3_64bits_reset(rh);
  for (std::span<const std::byte> part : parts) {
    XXH3_64bits_update(rh, part.data(), part.size());
    KVC_RETURN_IF_ERROR(Append(part));
  }
  uint64_t sum = XXH3_64bits_digest(rh);
  XXH3_64bits_update(records_hash_.get(), &sum, sizeof(sum));
  return Append(std::as_bytes(std::span(&sum, 1)));
}

Status SnapshotWriter::Finish() {
  if (failed_) return Status::IOError("persist " + Quoted(target_) + ": writer failed earlier");
  if (entries_ != expected_entries_ || chunks_ != expected_chunks_ ||
      payload_ != expected_payload_) {
    return Fail(Status::InvalidArgument("persist " + Quoted(target_) +
                                        ": records do not match the header's counts"));
  }
  Footer f{};
  std::memcpy(f.magic, kFooterMagic, sizeof(f.magic));
  f.entry_count = entries_;
  f.payload_bytes = payload_;
  f.file_bytes = bytes_written() + sizeof(Footer);
  f.records_checksum = XXH3_64bits_digest(records_hash_.get());
  Seal(f);
  KVC_RETURN_IF_ERROR(Append(std::as_bytes(std::span(&f, 1))));
  KVC_RETURN_IF_ERROR(Flush());

  std::string where = "persist " + Quoted(target_) + ": ";
  if (fsync(fd_) != 0) return Fail(ErrnoToStatus(errno, where + "fsync " + Quoted(temp_)));
  if (close(fd_) != 0) {
    fd_ = -1;
    return Fail(ErrnoToStatus(errno, where + "close " + Quoted(temp_)));
  }
  fd_ = -1;
  if (rename(temp_.c_str(), target_.c_str()) != 0) {
    return Fail(ErrnoToStatus(errno, where + "rename " + Quoted(temp_)));
  }
  temp_.clear();  // now the target: never unlink it
  std::string dir = DirName(target_);
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoToStatus(errno, where + "open directory " + Quoted(dir));
  int rc = fsync(dfd);
  int err = errno;
  close(dfd);
  if (rc != 0) return ErrnoToStatus(err, where + "fsync directory " + Quoted(dir));
  return Status::Ok();
}

}  // namespace kvcache::snapshot
