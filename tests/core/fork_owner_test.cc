// Pins and reservations belong to the process that made them: a fork()ed child that
// inherits an EntryView or a PutReservation and destroys, releases, aborts or commits
// it changes nothing in the pool. Real fork()s, real processes.
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "kvcache/manager.h"
#include "support/test_env.h"

namespace kvcache {
namespace {

using testing::Pattern;

class ForkOwnerTest : public testing::IsolatedTest {
 protected:
  // Runs `fn` in a forked child and returns its exit code (fn's return value).
  template <typename Fn>
  int InChild(Fn fn) {
    pid_t pid = fork();
    if (pid == 0) _exit(fn());
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void ExpectHealthy(const std::string& pool) {
    auto h = manager().Health(pool);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    for (const auto& p : h->problems) ADD_FAILURE() << p;
  }
};

constexpr size_t kEntry = 256 * 1024 - 100;  // four fill a 1 MiB pool

TEST_F(ForkOwnerTest, ViewDestroyedInForkedChildKeepsParentsPin) {
  CreatePool("fork", 1 << 20);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(manager().Put("fork", i, Pattern(i, kEntry), 1).ok());
  auto view = manager().View("fork", 0);
  ASSERT_TRUE(view.ok());
  int code = InChild([&] {
    EntryView inherited = std::move(*view);  // the child's copy of the parent's view
    if (!inherited.Release().ok()) return 1;  // only forgets it: nothing to fail
    EntryView again = std::move(inherited);  // and destroyed, for good measure
    return 0;
  });
  ASSERT_EQ(code, 0);
  // The parent's pin holds: eviction cannot take entry 0, new puts cannot reuse its bytes.
  EXPECT_EQ(manager().Health("fork")->pinned_entries, 1u);
  EXPECT_EQ(*manager().Evict("fork", 100), 3u);
  for (uint64_t i = 10; i < 16; ++i) {
    ASSERT_TRUE(manager().Put("fork", i, Pattern(i, kEntry), 1).ok()) << i;
  }
  ASSERT_TRUE(manager().Stat("fork", 0).ok());
  EXPECT_TRUE(std::memcmp(view->data().data(), Pattern(0, kEntry).data(), kEntry) == 0);
  ExpectHealthy("fork");
  ASSERT_TRUE(view->Release().ok());
  EXPECT_EQ(manager().Health("fork")->pinned_entries, 0u);
}

TEST_F(ForkOwnerTest, ReleaseAllInForkedChildKeepsParentsPins) {
  CreatePool("all", 1 << 20);
  std::vector<EntryView> views;
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(manager().Put("all", i, Pattern(i, kEntry), 1).ok());
    auto v = manager().View("all", i);
    ASSERT_TRUE(v.ok());
    views.push_back(std::move(*v));
  }
  int code = InChild([&] {
    if (!EntryView::ReleaseAll(views).ok()) return 1;  // only forgets them
    for (const EntryView& v : views) {
      if (v.valid()) return 2;
    }
    return 0;
  });
  ASSERT_EQ(code, 0);
  EXPECT_EQ(manager().Health("all")->pinned_entries, 4u);
  EXPECT_EQ(*manager().Evict("all", 100), 0u);
  ExpectHealthy("all");
  ASSERT_TRUE(EntryView::ReleaseAll(views).ok());
  EXPECT_EQ(manager().Health("all")->pinned_entries, 0u);
}

TEST_F(ForkOwnerTest, ChildPinsAreItsOwnAndGoWithIt) {
  CreatePool("own", 1 << 20);
  ASSERT_TRUE(manager().Put("own", 1, Pattern(1, 1000), 1).ok());
  auto parent_view = manager().View("own", 1);
  ASSERT_TRUE(parent_view.ok());
  int code = InChild([&] {
    // The child's own views pin in its own row; releasing them leaves the parent's.
    auto v = manager().View("own", 1);
    if (!v.ok()) return 1;
    auto h = manager().Health("own");
    if (!h.ok() || h->pinned_entries != 1) return 2;
    if (!v->Release().ok()) return 4;
    auto mine = manager().View("own", 1);  // kept: the child exits holding it
    if (!mine.ok()) return 3;
    _exit(0);
  });
  ASSERT_EQ(code, 0);
  auto h = manager().Health("own");
  for (const auto& p : h->problems) ADD_FAILURE() << p;
  EXPECT_EQ(manager().Remove("own", 1).code(), Code::kOk);
  EXPECT_TRUE(std::memcmp(parent_view->data().data(), Pattern(1, 1000).data(), 1000) == 0);
  ASSERT_TRUE(parent_view->Release().ok());
  EXPECT_EQ(manager().Stats("own")->used, 0u);  // freed when the last (parent's) pin went
}

TEST_F(ForkOwnerTest, ReservationAbortedInForkedChildStillCommitsInParent) {
  CreatePool("res", 1 << 20);
  auto r = manager().Reserve("res", 7, 5000, 1);
  ASSERT_TRUE(r.ok());
  auto data = Pattern(7, 5000);
  std::memcpy(r->data().data(), data.data(), data.size());
  int code = InChild([&] {
    PutReservation inherited = std::move(*r);
    // Committing another process's reservation fails and changes nothing.
    if (inherited.Commit().code() != Code::kInvalidArgument) return 1;
    PutReservation second = std::move(*r);
    if (!second.Abort().ok()) return 2;
    return 0;
  });
  ASSERT_EQ(code, 0);
  EXPECT_EQ(manager().Stat("res", 7).status().code(), Code::kNotFound);  // not published
  EXPECT_EQ(manager().Stats("res")->used, 8192u);                        // still reserved
  ASSERT_TRUE(r->Commit().ok());
  EXPECT_EQ(*manager().Get("res", 7), data);
  ExpectHealthy("res");
}

TEST_F(ForkOwnerTest, ReservationDestroyedInForkedChildKeepsItsSpace) {
  CreatePool("gone", 1 << 20);
  auto r = manager().Reserve("gone", 3, 900000, 1);
  ASSERT_TRUE(r.ok());
  std::memset(r->data().data(), 0x5A, r->data().size());
  ASSERT_EQ(InChild([&] {
              { PutReservation inherited = std::move(*r); }  // destroyed: would abort
              return 0;
            }),
            0);
  // The space is still the parent's: a put that needs it cannot have it.
  EXPECT_EQ(manager().Put("gone", 4, Pattern(4, 600000), 1).code(), Code::kNoSpace);
  ASSERT_TRUE(r->Commit().ok());
  auto got = manager().Get("gone", 3);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[899999], std::byte{0x5A});
}

}  // namespace
}  // namespace kvcache
