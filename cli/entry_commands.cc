#include "entry_commands.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "common.h"
#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "kvcache/size.h"

namespace kvcache::cli {
namespace {

Result<std::vector<std::byte>> ReadAll(int fd, std::string_view what) {
  std::vector<std::byte> data;
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) data.reserve(static_cast<size_t>(st.st_size));
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    size_t old = data.size();
    data.resize(old + kChunk);
    ssize_t n = read(fd, data.data() + old, kChunk);
    if (n < 0) {
      if (errno == EINTR) {
        data.resize(old);
        continue;
      }
      return ErrnoToStatus(errno, fmt::format("read {}", what));
    }
    data.resize(old + static_cast<size_t>(n));
    if (n == 0) return data;
  }
}

Status WriteAll(int fd, std::span<const std::byte> bytes, std::string_view what) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, fmt::format("write {}", what));
    }
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Stores what `fd` holds; returns its size. A regular file of known size is copied from
// the page cache into the pool inside the kernel, as cp does (no private copy of the
// payload: a put of any size costs this process little memory); a pipe, or a file whose
// size stat cannot tell (/proc), is read whole first.
Result<size_t> PutFrom(Manager& manager, const PutCommandOptions& opts,
                       const PutOptions& options, int fd, const std::string& what) {
  struct stat st {};
  off_t start = lseek(fd, 0, SEEK_CUR);  // stdin may be a file read part way already
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || start < 0 || start >= st.st_size) {
    KVC_ASSIGN_OR_RETURN(std::vector<std::byte> data, ReadAll(fd, what));
    KVC_RETURN_IF_ERROR(manager.Put(opts.name, opts.seq, data, opts.tokens, options));
    return data.size();
  }
  auto size = static_cast<size_t>(st.st_size - start);
  KVC_ASSIGN_OR_RETURN(PutReservation reservation,
                       manager.Reserve(opts.name, opts.seq, size, opts.tokens, options));
  KVC_RETURN_IF_ERROR(reservation.FillFromFile(fd, static_cast<uint64_t>(start)));
  // A file that grew while it was copied would be stored cut short: refuse it.
  std::byte more;
  ssize_t n = pread(fd, &more, 1, st.st_size);
  if (n != 0) {
    return n < 0 ? ErrnoToStatus(errno, "read " + what)
                 : Status::IOError(what + " grew while it was being stored; nothing was stored");
  }
  KVC_RETURN_IF_ERROR(reservation.Commit());
  return size;
}

// Replaces `path` with `bytes` atomically when it is (or will be) a regular file;
// writes straight through for devices and pipes such as /dev/null.
Status WriteOutput(const std::string& path, const EntryView& view) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, fmt::format("open '{}'", path));
    Status s = WriteAll(fd, view.data(), fmt::format("'{}'", path));
    close(fd);
    return s;
  }
  std::string temp = path + ".tmp-XXXXXX";
  int fd = mkstemp(temp.data());
  if (fd < 0) return ErrnoToStatus(errno, fmt::format("create a temp file for '{}'", path));
  // Copied inside the kernel, as cp does: the bytes never pass through this process.
  Status s = view.CopyToFile(fd, 0);
  // mkstemp makes 0600; give the file the mode a plain create would.
  mode_t mask = umask(0);
  umask(mask);
  if (s.ok() && fchmod(fd, 0666 & ~mask) != 0) s = ErrnoToStatus(errno, "chmod " + path);
  if (close(fd) != 0 && s.ok()) s = ErrnoToStatus(errno, fmt::format("close '{}'", path));
  if (s.ok() && rename(temp.c_str(), path.c_str()) != 0) {
    s = ErrnoToStatus(errno, fmt::format("rename to '{}'", path));
  }
  if (!s.ok()) unlink(temp.c_str());
  return s;
}

}  // namespace

void SetupEntryCommands(CLI::App& cache) {
  auto put = std::make_shared<PutCommandOptions>();
  CLI::App* sub = cache.add_subcommand("put", "Store bytes as an entry (replaces the id)");
  sub->add_option("name", put->name, "Pool name")->required();
  AddUnsigned(sub, "seq", "sequence id", &put->seq, "Sequence id")->required();
  sub->add_option("--file,-f", put->file, "Read the bytes from this file (default: - stdin)");
  AddUnsigned(sub, "--tokens", "token count", &put->tokens,
              "Token count of the entry (default: 0)");
  sub->add_option("--prefix", put->prefix, "Prefix tokens, e.g. 1,2,3");
  AddSigned32(sub, "--priority", "priority", &put->priority,
              "Priority for the priority policy (default: 0)");
  sub->add_option("--metadata", put->metadata, "Metadata as JSON text");
  sub->callback([put] { Finish(RunPut(*put)); });

  auto get = std::make_shared<GetCommandOptions>();
  sub = cache.add_subcommand("get", "Write an entry's bytes to a file or stdout");
  sub->add_option("name", get->name, "Pool name")->required();
  AddUnsigned(sub, "seq", "sequence id", &get->seq, "Sequence id")->required();
  sub->add_option("--output,-o", get->output, "Write here (default: - stdout)");
  sub->callback([get] { Finish(RunGet(*get)); });

  auto rm = std::make_shared<RemoveCommandOptions>();
  sub = cache.add_subcommand("rm", "Remove an entry");
  sub->add_option("name", rm->name, "Pool name")->required();
  AddUnsigned(sub, "seq", "sequence id", &rm->seq, "Sequence id")->required();
  sub->callback([rm] { Finish(RunRemove(*rm)); });
}

int RunPut(const PutCommandOptions& opts) {
  PutOptions options;
  options.priority = opts.priority;
  if (!opts.prefix.empty()) {
    Result<std::vector<uint32_t>> tokens = ParseTokenList(opts.prefix);
    if (!tokens.ok()) return Fail(tokens.status());
    options.prefix_tokens = std::move(tokens).value();
  }
  if (!opts.metadata.empty()) {
    if (!nlohmann::json::accept(opts.metadata)) {
      return Fail(fmt::format("--metadata '{}' is not valid JSON", opts.metadata));
    }
    options.metadata = opts.metadata;
  }
  Manager manager;
  int fd = opts.file == "-" ? STDIN_FILENO : open(opts.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(ErrnoToStatus(errno, fmt::format("open '{}'", opts.file)));
  std::string what = opts.file == "-" ? "stdin" : fmt::format("'{}'", opts.file);
  Result<size_t> stored = PutFrom(manager, opts, options, fd, what);
  if (fd != STDIN_FILENO) close(fd);
  if (!stored.ok()) return Fail(stored.status());
  PrintLine(fmt::format("Stored sequence {} in '{}' ({})", opts.seq, opts.name,
                        FormatSizeLong(*stored)));
  return kExitOk;
}

int RunGet(const GetCommandOptions& opts) {
  Manager manager;
  // A pinned view: the bytes go straight from the pool to the output, with no copy.
  Result<EntryView> view = manager.View(opts.name, opts.seq);
  if (!view.ok()) return Fail(view.status());
  Status s = opts.output == "-" ? WriteAll(STDOUT_FILENO, view->data(), "stdout")
                                : WriteOutput(opts.output, *view);
  if (!s.ok()) return Fail(s);
  return kExitOk;
}

int RunRemove(const RemoveCommandOptions& opts) {
  Manager manager;
  Status s = manager.Remove(opts.name, opts.seq);
  if (!s.ok()) return Fail(s);
  PrintLine(fmt::format("Removed sequence {} from '{}'", opts.seq, opts.name));
  return kExitOk;
}

}  // namespace kvcache::cli
