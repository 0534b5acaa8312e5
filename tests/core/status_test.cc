#include "kvcache/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace kvcache {
namespace {

TEST(StatusTest, DefaultIsOkAndPrintsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), Code::kOk);
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, ToStringPrefixesTheCodeName) {
  EXPECT_EQ(Status::NotFound("pool 'x' not found").ToString(), "NotFound: pool 'x' not found");
  EXPECT_EQ(Status::NoSpace("pool full").ToString(), "NoSpace: pool full");
  EXPECT_EQ(Status::InvalidArgument("bad").message(), "bad");
}

TEST(StatusTest, EveryCodeHasAStableName) {
  EXPECT_EQ(CodeName(Code::kOk), "OK");
  EXPECT_EQ(CodeName(Code::kNotFound), "NotFound");
  EXPECT_EQ(CodeName(Code::kAlreadyExists), "AlreadyExists");
  EXPECT_EQ(CodeName(Code::kNoSpace), "NoSpace");
  EXPECT_EQ(CodeName(Code::kInvalidArgument), "InvalidArgument");
  EXPECT_EQ(CodeName(Code::kCorruption), "Corruption");
  EXPECT_EQ(CodeName(Code::kIOError), "IOError");
  EXPECT_EQ(CodeName(Code::kBusy), "Busy");
  EXPECT_EQ(CodeName(Code::kNotSupported), "NotSupported");
  EXPECT_EQ(CodeName(Code::kPermissionDenied), "PermissionDenied");
}

TEST(StatusTest, FactoriesSetTheirCode) {
  EXPECT_EQ(Status::AlreadyExists("").code(), Code::kAlreadyExists);
  EXPECT_EQ(Status::Corruption("").code(), Code::kCorruption);
  EXPECT_EQ(Status::IOError("").code(), Code::kIOError);
  EXPECT_EQ(Status::Busy("").code(), Code::kBusy);
  EXPECT_EQ(Status::NotSupported("").code(), Code::kNotSupported);
  EXPECT_FALSE(Status::Busy("").ok());
}

TEST(StatusTest, ErrnoMapsToCodes) {
  struct Case {
    int err;
    Code code;
  };
  const Case cases[] = {
      {ENOENT, Code::kNotFound},
      {EEXIST, Code::kAlreadyExists},
      {ENOSPC, Code::kNoSpace},
      {ENOMEM, Code::kNoSpace},
      {EDQUOT, Code::kNoSpace},
      {EINVAL, Code::kInvalidArgument},
      {ENAMETOOLONG, Code::kInvalidArgument},
      {EBUSY, Code::kBusy},
      {EAGAIN, Code::kBusy},
      {ENOSYS, Code::kNotSupported},
      {EOPNOTSUPP, Code::kNotSupported},
      {EACCES, Code::kPermissionDenied},
      {EPERM, Code::kPermissionDenied},
      {ELOOP, Code::kPermissionDenied},
      {EIO, Code::kIOError},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ErrnoToStatus(c.err, "op").code(), c.code) << "errno " << c.err;
  }
}

TEST(StatusTest, ErrnoMessageIsContextThenStrerror) {
  Status s = ErrnoToStatus(ENOENT, "shm_open /cortex_kv_x");
  EXPECT_EQ(s.message(), "shm_open /cortex_kv_x: No such file or directory");
  EXPECT_EQ(s.ToString(), "NotFound: shm_open /cortex_kv_x: No such file or directory");
}

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  KVC_ASSIGN_OR_RETURN(int h, Half(x));
  KVC_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  KVC_RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(ResultTest, HoldsAValueOrAStatus) {
  Result<int> good = Half(8);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 4);
  EXPECT_TRUE(good.status().ok());
  Result<int> bad = Half(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "3 is odd");
}

TEST(ResultTest, MacrosPropagateTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvcache
