// `cortex cache match | put-chunks`: token chunks through the real binary, giving the
// same answers as the API on the same pool; bad input changes nothing.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cli_runner.h"
#include "kvcache/prefix.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

void WriteFile(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<uint32_t> Iota(size_t n, uint32_t from) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

class CliChunkTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    ASSERT_TRUE(Succeeded(Cache({"create", "p", "--size", "16M"})));
  }
  // The prompt as a tokens file, and 62 chunks of 100 bytes each (6200 bytes).
  void WritePrompt() {
    prompt_ = Iota(1000, 1);
    WriteFile(files_.Join("prompt.txt"), FormatTokenList(prompt_));
    std::string bytes;
    for (int c = 0; c < 62; ++c) bytes += std::string(100, static_cast<char>('A' + c % 26));
    WriteFile(files_.Join("kv.bin"), bytes);
  }
  TempDir files_;
  std::vector<uint32_t> prompt_;
};

TEST_F(CliChunkTest, PutChunksThenMatchAgreesWithTheApi) {
  WritePrompt();
  CliResult put = Cache({"put-chunks", "p", "--tokens-file", files_.Join("prompt.txt"), "--file",
                         files_.Join("kv.bin"), "--namespace", "llama/fp16"});
  ASSERT_TRUE(Succeeded(put));
  EXPECT_EQ(put.out,
            "Stored 62 chunks of 16 tokens in 'p' (62 new, 0 already cached, 100 B each); the "
            "last 8 tokens are no whole chunk and were not stored\n");
  {
    // The chunks hold the file's pieces, in order (pinned until this scope ends).
    auto m = manager().Match("p", "llama/fp16", prompt_);
    ASSERT_TRUE(m.ok());
    ASSERT_EQ(m->chunks.size(), 62u);
    EXPECT_EQ(static_cast<char>(m->chunks[27].data()[0]), 'A' + 1);
    EXPECT_EQ(m->chunks[27].data().size(), 100u);
  }

  std::vector<uint32_t> half(prompt_.begin(), prompt_.begin() + 500);
  half.push_back(7777777);
  CliResult match = Cache({"match", "p", "--tokens", FormatTokenList(half), "--namespace", "llama/fp16"});
  ASSERT_TRUE(Succeeded(match));
  EXPECT_EQ(match.out, "Matched 496 of 501 tokens in 'p' (31 chunks of 16 tokens)\n");
  auto api = manager().Match("p", "llama/fp16", half);
  ASSERT_TRUE(api.ok());
  EXPECT_EQ(api->matched_tokens, 496u);

  CliResult json = Cache({"match", "p", "--tokens-file", files_.Join("prompt.txt"), "--namespace",
                          "llama/fp16", "--json"});
  ASSERT_TRUE(Succeeded(json));
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["matched_tokens"], 992u);
  EXPECT_EQ(j["chunks"], 62u);
  EXPECT_EQ(j["chunk_tokens"], 16u);
  EXPECT_EQ(j["tokens"], 1000u);
  EXPECT_EQ(j["namespace"], "llama/fp16");

  // Another namespace (or none) matches nothing.
  CliResult other = Cache({"match", "p", "--tokens-file", files_.Join("prompt.txt")});
  ASSERT_TRUE(Succeeded(other));
  EXPECT_EQ(other.out, "Matched 0 of 1000 tokens in 'p' (0 chunks of 16 tokens)\n");

  // Stored again: nothing is copied.
  put = Cache({"put-chunks", "p", "--tokens-file", files_.Join("prompt.txt"), "--file",
               files_.Join("kv.bin"), "--namespace", "llama/fp16"});
  ASSERT_TRUE(Succeeded(put));
  EXPECT_NE(put.out.find("(0 new, 62 already cached"), std::string::npos) << put.out;

  CliResult status = Cache({"status", "p", "--json"});
  ASSERT_TRUE(Succeeded(status));
  auto st = nlohmann::json::parse(status.out);
  EXPECT_EQ(st["chunk_count"], 62u);
  EXPECT_EQ(st["entry_count"], 0u);
  EXPECT_EQ(st["chunk_tokens_asked"], 1000u + 501u + 501u + 1000u + 1000u);
  EXPECT_EQ(st["chunk_tokens_matched"], 992u + 496u + 496u + 992u);
}

TEST_F(CliChunkTest, ThePoolsChunkSizeIsAPoolSetting) {
  ASSERT_TRUE(Succeeded(Cache({"create", "big", "--size", "16M", "--chunk-tokens", "256"})));
  EXPECT_EQ(manager().GetConfig("big")->prefix_block_tokens, 256u);
  WritePrompt();
  std::string bytes(3 * 1000, 'x');
  WriteFile(files_.Join("three.bin"), bytes);
  ASSERT_TRUE(Succeeded(Cache({"put-chunks", "big", "--tokens-file", files_.Join("prompt.txt"),
                               "--file", files_.Join("three.bin")})));
  CliResult match = Cache({"match", "big", "--tokens-file", files_.Join("prompt.txt")});
  ASSERT_TRUE(Succeeded(match));
  EXPECT_EQ(match.out, "Matched 768 of 1000 tokens in 'big' (3 chunks of 256 tokens)\n");
  EXPECT_TRUE(UsageError(Cache({"create", "bad", "--size", "16M", "--chunk-tokens", "x"})));
  EXPECT_TRUE(FailedWith(Cache({"create", "bad", "--size", "16M", "--chunk-tokens", "0"}),
                         "prefix_block_tokens"));
}

TEST_F(CliChunkTest, BadInputFailsClearlyAndChangesNothing) {
  WritePrompt();
  std::string tokens = files_.Join("prompt.txt");
  std::string kv = files_.Join("kv.bin");
  EXPECT_TRUE(FailedWith(Cache({"match", "p"}), "exactly one of --tokens and --tokens-file"));
  EXPECT_TRUE(FailedWith(Cache({"match", "p", "--tokens", "1,2", "--tokens-file", tokens}),
                         "exactly one of --tokens and --tokens-file"));
  EXPECT_TRUE(FailedWith(Cache({"match", "p", "--tokens", "1,x,3"}), "invalid token 'x'"));
  EXPECT_TRUE(FailedWith(Cache({"match", "p", "--tokens", "1,,3"}), "empty token"));
  EXPECT_TRUE(FailedWith(Cache({"match", "p", "--tokens-file", files_.Join("none.txt")}),
                         "none.txt"));
  EXPECT_TRUE(FailedWith(Cache({"match", "nosuch", "--tokens", "1,2,3"}), "nosuch"));
  EXPECT_TRUE(FailedWith(Cache({"put-chunks", "p", "--tokens", "1,2,3", "--file", kv}),
                         "3 tokens make no whole chunk"));
  EXPECT_TRUE(FailedWith(Cache({"put-chunks", "p", "--tokens", "1,99999999999", "--file", kv}),
                         "invalid token '99999999999'"));
  // 6200 bytes do not split into 61 equal chunks.
  std::vector<uint32_t> shorter(prompt_.begin(), prompt_.begin() + 61 * 16);
  EXPECT_TRUE(FailedWith(
      Cache({"put-chunks", "p", "--tokens", FormatTokenList(shorter), "--file", kv}),
      "do not split into 61 equal chunks"));
  EXPECT_TRUE(FailedWith(Cache({"put-chunks", "p", "--tokens-file", tokens, "--file",
                                files_.Join("none.bin")}),
                         "none.bin"));
  EXPECT_TRUE(UsageError(Cache({"put-chunks", "p", "--tokens-file", tokens})));  // no --file
  auto st = manager().Stats("p");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->chunk_count, 0u);
  EXPECT_EQ(st->used, 0u);
}

TEST_F(CliChunkTest, PersistAndRestoreCarryTheChunks) {
  WritePrompt();
  ASSERT_TRUE(Succeeded(Cache({"put-chunks", "p", "--tokens-file", files_.Join("prompt.txt"),
                               "--file", files_.Join("kv.bin"), "--namespace", "llama/fp16"})));
  std::string path = files_.Join("p.cache");
  CliResult persisted = Cache({"persist", "p", "--path", path});
  ASSERT_TRUE(Succeeded(persisted));
  EXPECT_EQ(persisted.out,
            "Persisted 0 entries from 'p' to " + path + "\n(and 62 token chunks)\n");
  ASSERT_TRUE(Succeeded(Cache({"destroy", "p"})));
  CliResult restored = Cache({"restore", "p", "--path", path});
  ASSERT_TRUE(Succeeded(restored));
  EXPECT_EQ(restored.out,
            "Restored 0 entries to 'p'\n(created the pool from the snapshot)\n"
            "(and 62 token chunks)\n");
  CliResult match = Cache({"match", "p", "--tokens-file", files_.Join("prompt.txt"),
                           "--namespace", "llama/fp16"});
  ASSERT_TRUE(Succeeded(match));
  EXPECT_EQ(match.out, "Matched 992 of 1000 tokens in 'p' (62 chunks of 16 tokens)\n");
  auto m = manager().Match("p", "llama/fp16", prompt_);
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->chunks.size(), 62u);
  EXPECT_EQ(static_cast<char>(m->chunks[27].data()[0]), 'A' + 1);
}

}  // namespace
}  // namespace kvcache::testing
