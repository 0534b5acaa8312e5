// Token chunks through the mount: <pool>/match answers each open handle on its own,
// <pool>/chunks/<hash> serves a chunk's bytes with its namespace, tokens and parent.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <numeric>
#include <sstream>

#include "kvcache/prefix.h"
#include "mount_fixture.h"

namespace kvcache::testing {
namespace {

constexpr uint32_t kChunkTokens = 16;

std::vector<uint32_t> Iota(size_t n, uint32_t from) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

std::vector<uint64_t> Chain(std::string_view ns, const std::vector<uint32_t>& tokens) {
  std::vector<uint64_t> out;
  uint64_t h = ChunkChainSeed(ns);
  for (size_t c = 0; c + kChunkTokens <= tokens.size(); c += kChunkTokens) {
    h = ChainHash(h, std::span<const uint32_t>(tokens).subspan(c, kChunkTokens));
    out.push_back(h);
  }
  return out;
}

// The answer the match file gives when the first `chunks` chunks of `chain` match a
// request of `asked` tokens.
std::string Answer(size_t asked, const std::vector<uint64_t>& chain, size_t chunks) {
  std::string out = "matched_tokens " + std::to_string(chunks * kChunkTokens) + "\n" +
                    "asked_tokens " + std::to_string(asked) + "\n" + "chunk_tokens " +
                    std::to_string(kChunkTokens) + "\n" + "chunks " + std::to_string(chunks) +
                    "\n";
  for (size_t c = 0; c < chunks; ++c) out += "chunk " + PrefixHashToHex(chain[c]) + "\n";
  return out;
}

std::vector<std::string> List(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return {"<errno " + std::to_string(errno) + ">"};
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Writes all of `text` to fd; 0 or the errno of the write that failed.
int WriteAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = write(fd, text.data(), text.size());
    if (n < 0) return errno;
    text.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

// Reads fd to its end (read returning 0); "<errno N>" on an error.
std::string ReadAll(int fd, size_t piece = 4096) {
  std::string out;
  std::string buf(piece, '\0');
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) return "<errno " + std::to_string(errno) + ">";
    if (n == 0) return out;
    out.append(buf.data(), static_cast<size_t>(n));
  }
}

std::string Xattr(const std::string& path, const std::string& name) {
  char buf[65536];
  ssize_t n = getxattr(path.c_str(), name.c_str(), buf, sizeof(buf));
  if (n < 0) return "<errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

std::string Request(std::string_view ns, const std::vector<uint32_t>& tokens) {
  return "namespace=" + std::string(ns) + "\n" + FormatTokenList(tokens) + "\n";
}

class ChunkFilesTest : public MountedTest {
 protected:
  void SetUp() override {
    MountedTest::SetUp();
    CreatePool("p", 64 << 20);
    prompt_ = Iota(1000, 1);  // 62 whole chunks
    chain_ = Chain("model-a", prompt_);
    ASSERT_TRUE(Store("model-a", prompt_, 1000).ok());
  }

  // Stores the whole chunks of `tokens` with bytes Pattern(hash, size).
  Result<ChunkStoreResult> Store(std::string_view ns, const std::vector<uint32_t>& tokens,
                                 size_t size) {
    std::vector<std::vector<std::byte>> bytes;
    for (uint64_t h : Chain(ns, tokens)) bytes.push_back(Pattern(h, size));
    std::vector<std::span<const std::byte>> spans(bytes.begin(), bytes.end());
    return manager().StoreChunks("p", ns, tokens, spans);
  }

  std::string ChunkPath(uint64_t hash) { return Path("p/chunks/" + PrefixHashToHex(hash)); }

  std::vector<uint32_t> prompt_;
  std::vector<uint64_t> chain_;
};

TEST_F(ChunkFilesTest, MatchAnswersOnTheHandleThatAskedAsTheApiDoes) {
  std::vector<uint32_t> query(prompt_.begin(), prompt_.begin() + 500);
  query.push_back(77777);
  int fd = open(Path("p/match").c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << errno;
  ASSERT_EQ(WriteAll(fd, Request("model-a", query)), 0);
  std::string answer = ReadAll(fd);
  EXPECT_EQ(answer, Answer(501, chain_, 31));  // 500 tokens hold 31 whole chunks
  // The API gives the same answer for the same pool.
  auto api = manager().Match("p", "model-a", query);
  ASSERT_TRUE(api.ok());
  EXPECT_EQ(api->matched_tokens, 496u);
  ASSERT_EQ(api->chunks.size(), 31u);
  for (size_t c = 0; c < 31; ++c) EXPECT_EQ(api->chunks[c].hash, chain_[c]);

  // The next request on the same handle: the namespace is optional (the empty one),
  // and the tokens may span lines and writes.
  ASSERT_EQ(WriteAll(fd, "1,2,3,"), 0);
  ASSERT_EQ(WriteAll(fd, "4\n5 6\n"), 0);
  EXPECT_EQ(ReadAll(fd), Answer(6, {}, 0));
  ASSERT_EQ(WriteAll(fd, Request("model-a", prompt_)), 0);
  EXPECT_EQ(ReadAll(fd, 100), Answer(1000, chain_, 62));  // read in small pieces
  close(fd);

  auto stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->chunk_tokens_asked, 501u + 501u + 6u + 1000u);
  EXPECT_EQ(stats->chunk_tokens_matched, 496u + 496u + 992u);
}

TEST_F(ChunkFilesTest, AShellScriptAsksThenCatsTheChunksItWasAnswered) {
  std::string dir = dir_->path();
  {
    std::ofstream req(dir + "/req");
    req << "namespace=model-a\n" << FormatTokenList(Iota(40, 1)) << "\n";
  }
  std::string script = "cd '" + Path("p") + "' && exec 3<>match && cat '" + dir +
                       "/req' >&3 && cat <&3 > '" + dir + "/answer' && "
                       "for h in $(awk '$1==\"chunk\"{print $2}' '" + dir + "/answer'); do "
                       "cat chunks/$h; done > '" + dir + "/bytes'";
  ASSERT_EQ(Shell(script), 0);
  std::ifstream answer(dir + "/answer");
  std::stringstream text;
  text << answer.rdbuf();
  EXPECT_EQ(text.str(), Answer(40, chain_, 2));
  std::vector<std::byte> want = Pattern(chain_[0], 1000);
  std::vector<std::byte> second = Pattern(chain_[1], 1000);
  want.insert(want.end(), second.begin(), second.end());
  std::vector<std::byte> got;
  ASSERT_EQ(ReadFile(dir + "/bytes", &got), 0);
  EXPECT_EQ(got, want);
}

TEST_F(ChunkFilesTest, ABadRequestIsEinvalAndChangesNothing) {
  int fd = open(Path("p/match").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(WriteAll(fd, Request("model-a", Iota(32, 1))), 0);
  const std::string good = ReadAll(fd);
  ASSERT_EQ(good, Answer(32, chain_, 2));
  auto before = manager().Stats("p");
  for (const char* bad : {"1,x,3\n", "1,,2\n", "-4\n", "99999999999\n",
                          "1,2\nnamespace=late\n", "namespace=a\nnamespace=b\n"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(WriteAll(fd, bad), EINVAL);
    // The request is dropped, and the handle now reads why.
    std::string why = ReadAll(fd);
    EXPECT_EQ(why.rfind("error: ", 0), 0u) << why;
    EXPECT_GT(why.size(), 12u);
  }
  // A request with no tokens, or a bad unfinished last line, fails the read.
  for (const char* bad : {"namespace=model-a\n", "1,2,y"}) {
    SCOPED_TRACE(bad);
    ASSERT_EQ(WriteAll(fd, bad), 0);
    char buf[256];
    EXPECT_EQ(read(fd, buf, sizeof(buf)), -1);
    EXPECT_EQ(errno, EINVAL);
    std::string why = ReadAll(fd);
    EXPECT_EQ(why.rfind("error: ", 0), 0u) << why;
  }
  close(fd);
  auto after = manager().Stats("p");
  EXPECT_EQ(after->chunk_tokens_asked, before->chunk_tokens_asked);
  EXPECT_EQ(after->chunk_count, 62u);
  // Opened but never asked: the file says how to use it.
  std::string usage;
  ASSERT_EQ(ReadText(Path("p/match"), &usage), 0);
  EXPECT_NE(usage.find("namespace="), std::string::npos) << usage;
}

TEST_F(ChunkFilesTest, AMatchPinsItsChunksUntilTheHandleCloses) {
  int fd = open(Path("p/match").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(WriteAll(fd, Request("model-a", Iota(48, 1))), 0);
  ASSERT_EQ(ReadAll(fd), Answer(48, chain_, 3));
  // Evict everything evictable: the three pinned chunks stay.
  ASSERT_EQ(WriteText(Path("p/evict"), "100\n"), 0);
  ASSERT_EQ(WriteText(Path("p/evict"), "100\n"), 0);
  std::vector<std::string> want;
  for (size_t c = 0; c < 3; ++c) want.push_back(PrefixHashToHex(chain_[c]));
  std::sort(want.begin(), want.end());
  EXPECT_EQ(List(Path("p/chunks")), want);
  std::vector<std::byte> bytes;
  ASSERT_EQ(ReadFile(ChunkPath(chain_[2]), &bytes), 0);
  EXPECT_EQ(bytes, Pattern(chain_[2], 1000));
  close(fd);
  // The handle's release reaches the daemon after close() returns: poll briefly.
  for (int i = 0; i < 200 && !List(Path("p/chunks")).empty(); ++i) {
    ASSERT_EQ(WriteText(Path("p/evict"), "100\n"), 0);
    usleep(10000);
  }
  EXPECT_TRUE(List(Path("p/chunks")).empty());
}

TEST_F(ChunkFilesTest, TwoProcessesMatchingAtOnceEachReadTheirOwnAnswers) {
  ASSERT_TRUE(Store("model-b", Iota(320, 5000), 200).ok());
  const std::string req_a = Request("model-a", prompt_);
  const std::string want_a = Answer(1000, chain_, 62);
  const std::vector<uint32_t> prompt_b = Iota(330, 5000);
  const std::string req_b = Request("model-b", prompt_b);
  const std::string want_b = Answer(330, Chain("model-b", prompt_b), 20);
  const std::string path = Path("p/match");
  std::vector<pid_t> kids;
  for (int k = 0; k < 2; ++k) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Plain syscalls only: a handle each, asking over and over.
      const std::string& req = k == 0 ? req_a : req_b;
      const std::string& want = k == 0 ? want_a : want_b;
      int fd = open(path.c_str(), O_RDWR);
      if (fd < 0) _exit(2);
      for (int i = 0; i < 150; ++i) {
        if (WriteAll(fd, req) != 0) _exit(3);
        if (ReadAll(fd, 512) != want) _exit(4);
      }
      close(fd);
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
}

TEST_F(ChunkFilesTest, ChunksAreFilesWithTheirBytesNamespaceTokensAndParent) {
  ASSERT_TRUE(Store("", Iota(16, 9000), 300).ok());
  std::vector<std::string> names = List(Path("p/chunks"));
  ASSERT_EQ(names.size(), 63u);
  for (uint64_t h : chain_) {
    EXPECT_TRUE(std::binary_search(names.begin(), names.end(), PrefixHashToHex(h)));
  }
  struct stat st;
  ASSERT_EQ(stat(ChunkPath(chain_[5]).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 1000);
  EXPECT_EQ(st.st_mode & 0222, 0u);
  std::vector<std::byte> bytes;
  ASSERT_EQ(ReadFile(ChunkPath(chain_[5]), &bytes), 0);
  EXPECT_EQ(bytes, Pattern(chain_[5], 1000));

  std::string p = ChunkPath(chain_[5]);
  EXPECT_EQ(Xattr(p, "user.kvcache.namespace"), "model-a");
  EXPECT_EQ(Xattr(p, "user.kvcache.tokens"), FormatTokenList(Iota(16, 81)));
  EXPECT_EQ(Xattr(p, "user.kvcache.parent"), PrefixHashToHex(chain_[4]));
  EXPECT_EQ(Xattr(p, "user.kvcache.position"), "6");
  std::string first = ChunkPath(chain_[0]);
  EXPECT_EQ(Xattr(first, "user.kvcache.parent"), PrefixHashToHex(ChunkChainSeed("model-a")));
  EXPECT_EQ(Xattr(first, "user.kvcache.position"), "1");
  uint64_t other = Chain("", Iota(16, 9000))[0];
  EXPECT_EQ(Xattr(ChunkPath(other), "user.kvcache.namespace"), "");
  EXPECT_EQ(Xattr(p, "user.kvcache.nonsense"), "<errno " + std::to_string(ENODATA) + ">");
  char list[1024];
  ssize_t n = listxattr(p.c_str(), list, sizeof(list));
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(list, n).find("user.kvcache.tokens"), std::string::npos);

  // Read-only, and only real chunk names resolve.
  EXPECT_EQ(open(p.c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EACCES);
  EXPECT_EQ(open(Path("p/chunks/new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(unlink(p.c_str()), -1);
  EXPECT_EQ(stat(Path("p/chunks/0123456789abcdef").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(stat(Path("p/chunks/xyz").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  // Chunks are not entries: the pool directory lists them only under chunks/.
  std::vector<std::string> pool = List(Path("p"));
  EXPECT_TRUE(std::binary_search(pool.begin(), pool.end(), "chunks"));
  EXPECT_TRUE(std::binary_search(pool.begin(), pool.end(), "match"));
  EXPECT_FALSE(std::binary_search(pool.begin(), pool.end(), PrefixHashToHex(chain_[0])));
}

TEST_F(ChunkFilesTest, AChunkRemovedWhileBeingReadServesItsOwnBytesToTheEnd) {
  // Big enough for many reads; the same tokens stored again later under new bytes.
  ASSERT_TRUE(manager().Clear("p").ok());
  std::vector<uint32_t> tokens = Iota(16, 1);
  const uint64_t hash = Chain("model-a", tokens)[0];
  const size_t size = 3 << 20;
  std::vector<std::byte> old_bytes = Pattern(1, size), new_bytes = Pattern(2, size);
  std::vector<std::span<const std::byte>> spans = {old_bytes};
  ASSERT_TRUE(manager().StoreChunks("p", "model-a", tokens, spans).ok());

  int fd = open(ChunkPath(hash).c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << errno;
  std::vector<std::byte> got(size);
  ASSERT_EQ(pread(fd, got.data(), size / 3, 0), static_cast<ssize_t>(size / 3));
  // Evicted mid-read: still pinned by the open file, eviction passes it by...
  ASSERT_TRUE(manager().Evict("p", 100).ok());
  EXPECT_TRUE(manager().StatChunk("p", hash).ok());
  // ...and a clear removes it, then the same tokens come back with other bytes.
  ASSERT_TRUE(manager().Clear("p").ok());
  spans = {new_bytes};
  ASSERT_TRUE(manager().StoreChunks("p", "model-a", tokens, spans).ok());
  size_t done = size / 3;
  while (done < size) {
    ssize_t n = pread(fd, got.data() + done, size - done, static_cast<off_t>(done));
    ASSERT_GT(n, 0);
    done += static_cast<size_t>(n);
  }
  EXPECT_TRUE(got == old_bytes);  // never a byte of the new chunk
  close(fd);
  std::vector<std::byte> now;
  ASSERT_EQ(ReadFile(ChunkPath(hash), &now), 0);
  EXPECT_TRUE(now == new_bytes);
}

}  // namespace
}  // namespace kvcache::testing
