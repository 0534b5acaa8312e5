#include "names.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "errno_map.h"
#include "kvcache/number.h"

namespace kvcache::fs {
namespace {

TEST(NamesTest, SequenceNamesAreCanonicalDecimal) {
  EXPECT_EQ(ParseSeqName("0").seq, 0u);
  EXPECT_EQ(ParseSeqName("18446744073709551615").seq, 18446744073709551615ull);
  EXPECT_EQ(ParseSeqName("42").error, 0);
  for (const char* bad : {"", "abc", "12a", "007", "-1", "+1", " 1", "1.0",
                          "18446744073709551616"}) {
    EXPECT_EQ(ParseSeqName(bad).error, EINVAL) << bad;
  }
  EXPECT_EQ(ParseSeqName(std::string(256, '1')).error, ENAMETOOLONG);
}

// The CLI parses ids with ParseSequenceId; a file name is an id exactly when the CLI
// would take it as one.
TEST(NamesTest, SequenceNamesFollowTheCliGrammar) {
  for (const char* text : {"0", "1", "42", "007", "-1", "+1", " 1", "1 ", "0x10", "", "1e3",
                           "18446744073709551615", "18446744073709551616"}) {
    EXPECT_EQ(ParseSeqName(text).error == 0, ParseSequenceId(text).ok()) << "'" << text << "'";
  }
}

TEST(NamesTest, FixedNamesRoundTrip) {
  for (PoolFile f : kAllPoolFiles) EXPECT_EQ(ParsePoolFile(PoolFileName(f)), f);
  EXPECT_FALSE(ParsePoolFile("by-prefix"));
  EXPECT_TRUE(IsControlFile(PoolFile::kEvict));
  EXPECT_FALSE(IsControlFile(PoolFile::kHealth));
  EXPECT_EQ(ParseRootFile("metrics"), RootFile::kMetrics);
}

TEST(NamesTest, PoolDirectoryNames) {
  EXPECT_EQ(CheckPoolDirName("llama-cache"), 0);
  EXPECT_EQ(CheckPoolDirName("status"), EINVAL);
  EXPECT_EQ(CheckPoolDirName("metrics"), EINVAL);
  EXPECT_EQ(CheckPoolDirName("a b"), EINVAL);
  EXPECT_EQ(CheckPoolDirName(".."), EINVAL);
  EXPECT_EQ(CheckPoolDirName(std::string(129, 'a')), EINVAL);
  EXPECT_EQ(CheckPoolDirName(std::string(256, 'a')), ENAMETOOLONG);
}

TEST(ErrnoMapTest, EveryCodeHasAnErrno) {
  EXPECT_EQ(ToErrno(Status::Ok()), 0);
  EXPECT_EQ(ToErrno(Status::NotFound("x")), ENOENT);
  EXPECT_EQ(ToErrno(Status::AlreadyExists("x")), EEXIST);
  EXPECT_EQ(ToErrno(Status::NoSpace("x")), ENOSPC);
  EXPECT_EQ(ToErrno(Status::InvalidArgument("x")), EINVAL);
  EXPECT_EQ(ToErrno(Status::Corruption("x")), EIO);
  EXPECT_EQ(ToErrno(Status::IOError("x")), EIO);
  EXPECT_EQ(ToErrno(Status::Busy("x")), EBUSY);
  EXPECT_EQ(ToErrno(Status::NotSupported("x")), EOPNOTSUPP);
}

// ENOSYS makes the kernel stop sending an operation for the life of the mount (create
// falls back to mknod, flush, xattrs, ...): no core code may ever map to it.
TEST(ErrnoMapTest, NoCodeMapsToAnErrnoTheKernelLatches) {
  for (int c = static_cast<int>(Code::kOk); c <= static_cast<int>(Code::kPermissionDenied);
       ++c) {
    EXPECT_NE(ToErrno(Status(static_cast<Code>(c), "x")), ENOSYS) << c;
  }
}

}  // namespace
}  // namespace kvcache::fs
