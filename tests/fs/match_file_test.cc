// MatchSession without a mount: how a request is read from the bytes written.
#include "match_file.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace kvcache::fs {
namespace {

class MatchFileTest : public ::testing::Test {
 protected:
  // A runner that records what it was asked and matches nothing.
  MatchSession::Runner Recorder() {
    return [this](std::string_view ns, std::span<const uint32_t> tokens) -> Result<ChunkMatch> {
      ++runs_;
      ns_ = std::string(ns);
      tokens_.assign(tokens.begin(), tokens.end());
      ChunkMatch m;
      m.chunk_tokens = 16;
      return m;
    };
  }
  std::string ReadAll(MatchSession& s) {
    std::string all, part;
    do {
      int err = s.Read(7, Recorder(), &part);
      if (err != 0) return "<errno " + std::to_string(err) + ">";
      all += part;
    } while (!part.empty());
    return all;
  }
  int runs_ = 0;
  std::string ns_;
  std::vector<uint32_t> tokens_;
};

TEST_F(MatchFileTest, LinesMaySplitAnywhereAcrossWrites) {
  MatchSession s;
  for (std::string_view piece : {"names", "pace=llama 3 /fp16\r", "\n1,2", ",3,\r\n4 5", "\n\n6"}) {
    ASSERT_EQ(s.Write(piece), 0) << piece;
  }
  EXPECT_EQ(ReadAll(s), "matched_tokens 0\nasked_tokens 6\nchunk_tokens 16\nchunks 0\n");
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(ns_, "llama 3 /fp16");
  EXPECT_EQ(tokens_, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6}));
  // The answer is read once; reading again asks nothing new.
  EXPECT_EQ(ReadAll(s), "");
  EXPECT_EQ(runs_, 1);
  // The next write starts a new request, with the empty namespace.
  ASSERT_EQ(s.Write("9\n"), 0);
  EXPECT_EQ(ReadAll(s), "matched_tokens 0\nasked_tokens 1\nchunk_tokens 16\nchunks 0\n");
  EXPECT_EQ(ns_, "");
}

TEST_F(MatchFileTest, ARefusedRequestRunsNothingAndReadsWhy) {
  MatchSession s;
  EXPECT_EQ(s.Write("1,2\n3,a\n"), EINVAL);
  EXPECT_EQ(ReadAll(s).rfind("error: invalid token 'a'", 0), 0u);
  std::string too_long(kMaxMatchRequestBytes, '1');
  EXPECT_EQ(s.Write(too_long), 0);  // one giant unfinished line, just at the limit
  EXPECT_EQ(s.Write("2"), EFBIG);
  EXPECT_EQ(ReadAll(s).rfind("error: ", 0), 0u);
  std::string ns(kMaxChunkNamespaceBytes + 1, 'n');
  EXPECT_EQ(s.Write("namespace=" + ns + "\n"), EINVAL);
  EXPECT_EQ(runs_, 0);
}

TEST_F(MatchFileTest, NothingAskedReadsTheUsage) {
  MatchSession s;
  EXPECT_NE(ReadAll(s).find("namespace="), std::string::npos);
  EXPECT_EQ(runs_, 0);
}

TEST_F(MatchFileTest, ARunnersRefusalIsTheReadsErrorAndTheAnswer) {
  MatchSession s;
  ASSERT_EQ(s.Write("1\n"), 0);
  std::string out;
  auto busy = [](std::string_view, std::span<const uint32_t>) -> Result<ChunkMatch> {
    return Status::Busy("too many pins");
  };
  EXPECT_EQ(s.Read(100, busy, &out), EBUSY);
  EXPECT_EQ(ReadAll(s), "error: too many pins\n");
}

}  // namespace
}  // namespace kvcache::fs
