// Extended attribute values set on sequence files (user.kvcache.*), through the same
// KvcacheFs calls the mount's setxattr/getxattr make, on a file being written and on a
// published entry. The first input byte picks the attribute and the file; the rest is
// the value. Malformed values are EINVAL and change nothing; accepted ones read back.
#include <fcntl.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_env.h"
#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "kvcachefs.h"

namespace {

using kvcache::fuzz::Check;
using kvcache::fuzz::CheckOk;
using kvcache::fs::Ino;

constexpr const char* kPool = "xat";
constexpr std::string_view kNames[] = {"token_count", "priority",  "prefix_tokens",
                                       "metadata",    "prefix_hash", "access_count",
                                       "created",     "last_accessed", "bogus"};

struct Fixture {
  kvcache::Manager manager{kvcache::fuzz::Home().options()};
  kvcache::fs::KvcacheFs fs{manager, {}};
  Ino staged = 0;     // a file open for writing, not yet published
  kvcache::fs::FileHandle* staged_handle = nullptr;  // kept open for the process's life
  Ino published = 0;  // an entry in the pool
};

Fixture& TheFixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    kvcache::PoolConfig config;
    config.name = kPool;
    config.size_bytes = 256 * 1024;
    config.max_sequences = 64;
    CheckOk(fx->manager.CreatePool(config), "create the pool");
    std::vector<std::byte> payload(1000, std::byte{0x11});
    CheckOk(fx->manager.Put(kPool, 9, payload, 5), "put the published entry");
    fuse_entry_param e{};
    const kvcache::fs::Caller me{};  // root, from no process (pid 0)
    Check(fx->fs.DoLookup(me, kvcache::fs::kRootIno, kPool, &e) == 0, "look up the pool");
    Ino pool_ino = e.ino;
    kvcache::fs::OpenResult open;
    Check(fx->fs.DoCreate(me, pool_ino, "7", O_WRONLY | O_CREAT, &e, &open) == 0, "create a file");
    fx->staged = e.ino;
    fx->staged_handle = open.handle;
    Check(fx->fs.DoLookup(me, pool_ino, "9", &e) == 0, "look up the published entry");
    fx->published = e.ino;
    return fx;
  }();
  return *f;
}

template <typename T>
bool Number(std::string_view text, T* out) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)TheFixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Fixture& fx = TheFixture();
  std::string_view short_name = kNames[(data[0] & 0x7f) % std::size(kNames)];
  Ino ino = (data[0] & 0x80) ? fx.published : fx.staged;
  std::string name = "user.kvcache." + std::string(short_name);
  std::string_view value = kvcache::fuzz::AsText(data + 1, size - 1);

  std::string before;
  int had = fx.fs.DoGetxattr(ino, name, &before);
  int err = fx.fs.DoSetxattr(ino, name, value);
  std::string after;
  int has = fx.fs.DoGetxattr(ino, name, &after);
  Check(had == has, "setxattr changes whether an attribute exists");
  if (err != 0) {
    // The published entry may be replaced by a good set of another attribute only.
    Check(after == before, "a refused setxattr changed the attribute");
  } else if (short_name == "token_count") {
    uint64_t set = 0, got = 0;
    Check(Number(value, &set) && Number(after, &got) && set == got, "token_count reads back");
  } else if (short_name == "priority") {
    int32_t set = 0, got = 0;
    Check(Number(value, &set) && Number(after, &got) && set == got, "priority reads back");
  } else if (short_name == "metadata") {
    Check(after == value, "metadata reads back verbatim");
  } else if (short_name == "prefix_tokens") {
    kvcache::Result<std::vector<uint32_t>> set = kvcache::ParseTokenList(value);
    kvcache::Result<std::vector<uint32_t>> got = kvcache::ParseTokenList(after);
    Check(after.empty() || (set.ok() && got.ok() && *set == *got), "prefix_tokens reads back");
  }
  std::string names;
  Check(fx.fs.DoListxattr(ino, &names) == 0, "listxattr works");
  return 0;
}
