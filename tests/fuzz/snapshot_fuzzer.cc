// The snapshot reader over arbitrary file contents: Validate must return Corruption
// (or NotSupported) for anything malformed, never crash or allocate without bound, and
// every record it accepts (entries and, since version 2, chunks) must read back with
// its checksum.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_env.h"
#include "snapshot_format.h"

namespace {

using kvcache::fuzz::Check;

void WriteFileOrDie(const std::string& path, const uint8_t* data, size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  Check(fd >= 0, "open the snapshot file");
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    Check(n > 0, "write the snapshot file");
    done += static_cast<size_t>(n);
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kvcache::snapshot::SnapshotReader;
  static const std::string path = kvcache::fuzz::Home().dir() + "/fuzz.cache";
  WriteFileOrDie(path, data, size);

  kvcache::Result<std::unique_ptr<SnapshotReader>> reader = SnapshotReader::Open(path);
  Check(reader.ok(), "a regular file opens");
  kvcache::Result<kvcache::snapshot::SnapshotContents> contents = (*reader)->Validate(nullptr);
  if (!contents.ok()) {
    kvcache::Code code = contents.status().code();
    Check(code == kvcache::Code::kCorruption || code == kvcache::Code::kNotSupported,
          "a bad snapshot is Corruption or NotSupported");
    return 0;
  }
  Check(contents->file_bytes == size, "a valid snapshot's size is the file's");
  uint64_t payload = 0;
  std::vector<std::byte> buf;
  for (const kvcache::snapshot::RecordEntry& r : contents->records) {
    Check(r.meta.size <= size, "a record's payload fits in the file");
    payload += r.meta.size;
    buf.resize(r.meta.size);
    kvcache::Status s = (*reader)->ReadPayload(r, buf);
    Check(s.ok(), "a validated record reads back");
  }
  for (const kvcache::snapshot::ChunkEntry& c : contents->chunks) {
    Check(c.meta.size <= size, "a chunk's payload fits in the file");
    Check(c.meta.position >= 1 && !c.tokens.empty(), "a chunk has a position and tokens");
    payload += c.meta.size;
    buf.resize(c.meta.size);
    kvcache::Status s = (*reader)->ReadPayload(c, buf);
    Check(s.ok(), "a validated chunk reads back");
  }
  Check(payload == contents->payload_bytes, "payload sizes add up to the header's");
  return 0;
}
