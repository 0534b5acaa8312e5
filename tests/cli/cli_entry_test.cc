// `cortex cache put | get | rm`: bytes in and out of a pool through separate processes.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "cli_runner.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

std::string AsString(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void WriteFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class CliEntryTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "16M"})));
  }
  TempDir files_;
};

TEST_F(CliEntryTest, PutAndGetRoundTripABinaryFile) {
  std::string payload = AsString(Pattern(7, 3 * 1024 * 1024 + 123));
  std::string in = files_.Join("in.bin");
  std::string out = files_.Join("out.bin");
  WriteFile(in, payload);

  CliResult put = Cache({"put", "p", "42", "--file", in, "--tokens", "128", "--prefix", "1,2,3,4,5",
                         "--priority", "3", "--metadata", R"({"model":"llama"})"});
  ASSERT_TRUE(Succeeded(put));
  EXPECT_EQ(put.out, "Stored sequence 42 in 'p' (3.00 MB)\n");

  CliResult get = Cache({"get", "p", "42", "-o", out});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_TRUE(get.out.empty());
  EXPECT_TRUE(ReadFile(out) == payload) << "bytes differ";

  auto info = manager().Stat("p", 42);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size_bytes, payload.size());
  EXPECT_EQ(info->token_count, 128u);
  EXPECT_EQ(info->priority, 3);
  EXPECT_EQ(info->prefix_hash, "4f6addc9659d6fb9");
  EXPECT_EQ(info->metadata, R"({"model":"llama"})");
}

// A put streams the file into the pool: its peak memory stays far below the payload
// (holding the file in a buffer first took twice the payload).
TEST_F(CliEntryTest, PutOfALargeFileDoesNotHoldItInMemory) {
  constexpr size_t kPiece = 1u << 20, kPieces = 96;
  ASSERT_TRUE(Succeeded(Cache({"create", "big", "--size", "128M"})));
  // Written and compared a piece at a time through buffers allocated once: ru_maxrss of
  // the forked child starts from this process's resident memory, and under AddressSanitizer
  // every freed buffer stays resident in its quarantine.
  std::string in = files_.Join("big.bin");
  std::string out = files_.Join("big.out");
  std::vector<std::byte> piece(kPiece), want(kPiece);
  {
    std::ofstream file(in, std::ios::binary);
    for (size_t i = 0; i < kPieces; ++i) {
      FillPattern(100 + i, piece);
      file.write(reinterpret_cast<const char*>(piece.data()), static_cast<std::streamsize>(kPiece));
    }
    ASSERT_TRUE(file.good());
  }
  CliResult put = Cache({"put", "big", "3", "--file", in});
  ASSERT_TRUE(Succeeded(put));
  EXPECT_EQ(put.out, "Stored sequence 3 in 'big' (96.00 MB)\n");
  EXPECT_LT(put.max_rss_kb, static_cast<long>(kPiece * kPieces / 2 / 1024))
      << "peak memory of the put, KiB";
  ASSERT_TRUE(Succeeded(Cache({"get", "big", "3", "-o", out})));
  std::ifstream got(out, std::ios::binary);
  for (size_t i = 0; i < kPieces; ++i) {
    ASSERT_TRUE(got.read(reinterpret_cast<char*>(piece.data()), static_cast<std::streamsize>(kPiece)))
        << "piece " << i;
    FillPattern(100 + i, want);
    ASSERT_TRUE(piece == want) << "piece " << i;
  }
  EXPECT_EQ(got.peek(), std::char_traits<char>::eof());
}

// Files whose size stat cannot tell (/proc) are read whole, not stored empty.
TEST_F(CliEntryTest, PutOfAFileWithoutAKnownSizeStoresWhatItReads) {
  std::string want = ReadFile("/proc/version");
  ASSERT_FALSE(want.empty());
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "8", "--file", "/proc/version"})));
  CliResult get = Cache({"get", "p", "8"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_EQ(get.out, want);
}

TEST_F(CliEntryTest, PutFromStdinAndGetToStdout) {
  std::string payload("\0\x01\xffhello\0world\n", 15);
  CliResult put = Cache({"put", "p", "7"}, payload);
  ASSERT_TRUE(Succeeded(put));
  CliResult dash = Cache({"put", "p", "8", "--file", "-"}, payload + payload);
  ASSERT_TRUE(Succeeded(dash));

  CliResult get = Cache({"get", "p", "7"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_EQ(get.out, payload);
  get = Cache({"get", "p", "8", "-o", "-"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_EQ(get.out, payload + payload);
}

TEST_F(CliEntryTest, PutOfAnEmptyInputStoresAnEmptyEntry) {
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "1"}, "")));
  CliResult get = Cache({"get", "p", "1"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_TRUE(get.out.empty());
  EXPECT_TRUE(manager().Stat("p", 1).ok());
}

TEST_F(CliEntryTest, PutReplacesTheEntry) {
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "1"}, "first")));
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "1"}, "second version")));
  CliResult get = Cache({"get", "p", "1"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_EQ(get.out, "second version");
}

TEST_F(CliEntryTest, PutWithBadInputNamesItAndStoresNothing) {
  EXPECT_TRUE(FailedWith(Cache({"put", "p", "1", "--prefix", "1,x,3"}, "data"), "x"));
  EXPECT_TRUE(FailedWith(Cache({"put", "p", "1", "--metadata", "{not json"}, "data"), "{not json"));
  std::string missing = files_.Join("missing.bin");
  EXPECT_TRUE(FailedWith(Cache({"put", "p", "1", "--file", missing}), missing));
  EXPECT_TRUE(FailedWith(Cache({"put", "nope", "1"}, "data"), "'nope'"));
  EXPECT_TRUE(UsageError(Cache({"put", "p", "abc"}, "data")));
  EXPECT_TRUE(UsageError(Cache({"put", "p"}, "data")));
  EXPECT_TRUE(UsageError(Cache({"put", "p", "1", "--tokens", "many"}, "data")));
  auto entries = manager().Entries("p");
  ASSERT_TRUE(entries.ok());
  EXPECT_TRUE(entries->empty());
}

TEST_F(CliEntryTest, PutLargerThanThePoolFailsAndEvictsNothing) {
  ASSERT_TRUE(Succeeded(Cache({"create", "small", "--size", "1M"})));
  ASSERT_TRUE(Succeeded(Cache({"put", "small", "1"}, "keep me")));
  std::string big = files_.Join("big.bin");
  WriteFile(big, AsString(Pattern(1, 2 * 1024 * 1024)));
  EXPECT_TRUE(FailedWith(Cache({"put", "small", "2", "--file", big}), "small"));
  CliResult get = Cache({"get", "small", "1"});
  ASSERT_TRUE(Succeeded(get));
  EXPECT_EQ(get.out, "keep me");
  EXPECT_FALSE(manager().Stat("small", 2).ok());
}

TEST_F(CliEntryTest, GetOfAMissingEntryFailsAndLeavesTheOutputAlone) {
  std::string out = files_.Join("out.bin");
  WriteFile(out, "precious");
  EXPECT_TRUE(FailedWith(Cache({"get", "p", "99", "-o", out}), "99"));
  EXPECT_EQ(ReadFile(out), "precious");
  EXPECT_TRUE(FailedWith(Cache({"get", "nope", "1"}), "'nope'"));
  EXPECT_TRUE(UsageError(Cache({"get", "p", "-1x"})));
}

TEST_F(CliEntryTest, GetCountsAHitAndAMiss) {
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "1"}, "x")));
  ASSERT_TRUE(Succeeded(Cache({"get", "p", "1"})));
  ASSERT_FALSE(Succeeded(Cache({"get", "p", "2"})));
  auto stats = manager().Stats("p");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->hits, 1u);
  EXPECT_EQ(stats->misses, 1u);
}

TEST_F(CliEntryTest, RmRemovesTheEntry) {
  ASSERT_TRUE(Succeeded(Cache({"put", "p", "5"}, "bytes")));
  CliResult rm = Cache({"rm", "p", "5"});
  ASSERT_TRUE(Succeeded(rm));
  EXPECT_EQ(rm.out, "Removed sequence 5 from 'p'\n");
  EXPECT_FALSE(manager().Stat("p", 5).ok());
  EXPECT_TRUE(FailedWith(Cache({"rm", "p", "5"}), "5"));
  EXPECT_TRUE(FailedWith(Cache({"rm", "nope", "5"}), "'nope'"));
}

}  // namespace
}  // namespace kvcache::testing
