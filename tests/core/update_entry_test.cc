// Manager::UpdateEntry: attributes changed in place, only on the generation asked for.
#include "kvcache/manager.h"
#include "kvcache/prefix.h"
#include "support/test_env.h"

namespace kvcache::testing {
namespace {

class UpdateEntryTest : public IsolatedTest {
 protected:
  void SetUp() override {
    IsolatedTest::SetUp();
    CreatePool("p", 16 << 20);
  }
};

TEST_F(UpdateEntryTest, ChangesAttributesWithoutMovingThePayload) {
  std::vector<std::byte> data = Pattern(1, 4 << 20);  // whole blocks: no room after it
  ASSERT_TRUE(manager().Put("p", 1, data, 3).ok());
  EntryInfo before = *manager().Stat("p", 1);
  std::vector<uint32_t> tokens(5000);
  for (uint32_t i = 0; i < tokens.size(); ++i) tokens[i] = i;
  EntryUpdate update;
  update.prefix_tokens = tokens;
  update.token_count = 5000;
  update.metadata = R"({"k":1})";
  Result<EntryInfo> after = manager().UpdateEntry("p", 1, before.generation, update);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->offset, before.offset);
  EXPECT_EQ(after->generation, before.generation);
  EXPECT_EQ(after->token_count, 5000u);
  EXPECT_EQ(after->metadata, R"({"k":1})");
  EXPECT_EQ(after->prefix_hash, PrefixHash(tokens));
  Result<EntryView> view = manager().Pin("p", 1);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->prefix_tokens(), tokens);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), view->data().begin()));
  ASSERT_TRUE(view->Release().ok());
  ASSERT_EQ(manager().FindByPrefixHash("p", PrefixHash(tokens))->size(), 1u);
  // Shrinking back: the old prefix is no longer indexed.
  EntryUpdate clear;
  clear.prefix_tokens = std::vector<uint32_t>{};
  ASSERT_TRUE(manager().UpdateEntry("p", 1, before.generation, clear).ok());
  EXPECT_TRUE(manager().FindByPrefixHash("p", PrefixHash(tokens))->empty());
  EXPECT_EQ(manager().Stat("p", 1)->metadata, R"({"k":1})");
  EXPECT_TRUE(manager().Health("p")->healthy);
}

TEST_F(UpdateEntryTest, AnotherGenerationIsNotFoundAndUntouched) {
  ASSERT_TRUE(manager().Put("p", 2, Pattern(2, 1000), 1).ok());
  uint64_t old_generation = manager().Stat("p", 2)->generation;
  ASSERT_TRUE(manager().Put("p", 2, Pattern(3, 2000), 2).ok());
  EntryUpdate update;
  update.token_count = 99;
  EXPECT_EQ(manager().UpdateEntry("p", 2, old_generation, update).status().code(),
            Code::kNotFound);
  EXPECT_EQ(manager().Stat("p", 2)->token_count, 2u);
  EXPECT_EQ(manager().UpdateEntry("p", 77, old_generation, update).status().code(),
            Code::kNotFound);
}

TEST_F(UpdateEntryTest, NoRoomAfterThePayloadIsNoSpaceAndChangesNothing) {
  ASSERT_TRUE(manager().Put("p", 3, Pattern(4, 1 << 20), 0).ok());
  ASSERT_TRUE(manager().Put("p", 4, Pattern(5, 1 << 20), 0).ok());  // right after 3
  EntryInfo before = *manager().Stat("p", 3);
  ASSERT_EQ(manager().Stat("p", 4)->offset, before.offset + (1 << 20));
  EntryUpdate update;
  update.prefix_tokens = std::vector<uint32_t>{1, 2, 3};
  EXPECT_EQ(manager().UpdateEntry("p", 3, before.generation, update).status().code(),
            Code::kNoSpace);
  EXPECT_EQ(manager().Stat("p", 3)->prefix_length, 0u);
  EXPECT_TRUE(manager().Health("p")->healthy);
}

}  // namespace
}  // namespace kvcache::testing
