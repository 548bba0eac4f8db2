#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "supervisor/store/store.h"

namespace forge::store {
namespace {

class MaintenanceQueries : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-maintq-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    clock_.SetWall(1'000'000);
    StoreOptions o;
    o.db_path = dir_ + "/forge.db";
    o.clock = &clock_;
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string Submit(const std::string& id, const std::string& repo = "") {
    proto::SubmitTask t;
    t.id = id;
    t.title = id;
    t.repo = repo;
    auto ids = store_->Submit({t});
    EXPECT_TRUE(ids.ok()) << ids.error().ToString();
    return ids.ok() ? (*ids)[0] : "";
  }
  std::vector<std::string> Ids(int64_t cutoff) {
    auto rows = store_->SettledWorkspaces(cutoff, 100);
    EXPECT_TRUE(rows.ok()) << rows.error().ToString();
    std::vector<std::string> out;
    if (rows.ok()) {
      for (const auto& r : *rows) out.push_back(r.id);
    }
    return out;
  }

  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(MaintenanceQueries, SettledBeforeTheCutoffAndNotYetRemoved) {
  std::string a = Submit("a", "/src/repo");
  std::string b = Submit("b");
  std::string c = Submit("c");
  Submit("open");  // never settles
  ASSERT_TRUE(store_->Cancel(a, "x").ok());
  clock_.StepWall(1000);
  ASSERT_TRUE(store_->Cancel(b, "x").ok());
  clock_.StepWall(1000);
  ASSERT_TRUE(store_->Cancel(c, "x").ok());
  auto rows = store_->SettledWorkspaces(1'001'000, 100);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].id, a);
  EXPECT_EQ((*rows)[0].repo, "/src/repo");
  EXPECT_EQ((*rows)[0].state, proto::TaskState::kCancelled);
  EXPECT_EQ((*rows)[0].finished_at_ms, 1'000'000);
  EXPECT_EQ((*rows)[1].id, b);
  EXPECT_EQ(Ids(2'000'000), (std::vector<std::string>{a, b, c}));
  ASSERT_TRUE(store_->SettledWorkspaces(2'000'000, 1).ok());
  EXPECT_EQ(store_->SettledWorkspaces(2'000'000, 1)->size(), 1u);

  // Removed (or found absent) since it settled: not listed again.
  ASSERT_TRUE(store_->Emit("maintenance.removed", {{"path", "/x"}}, a).ok());
  ASSERT_TRUE(store_->Emit("maintenance.absent", {{"path", "/y"}}, b).ok());
  EXPECT_EQ(Ids(2'000'000), (std::vector<std::string>{c}));

  // Retried and settled again later: its new workspace is listed again.
  clock_.StepWall(1000);
  ASSERT_TRUE(store_->Retry(a).ok());
  ASSERT_TRUE(store_->Cancel(a, "again").ok());
  EXPECT_EQ(Ids(2'000'000), (std::vector<std::string>{c, a}));
}

TEST_F(MaintenanceQueries, LastModelFailure) {
  std::string a = Submit("a");
  EXPECT_EQ(*store_->LastModelFailure(a), 0);
  ASSERT_TRUE(store_->Emit("attempt.model_failure", {{"model", "m"}}, a, 1).ok());
  ASSERT_TRUE(store_->Emit("attempt.model_failure", {{"model", "m"}}, a, 3).ok());
  ASSERT_TRUE(store_->Emit("attempt.result", json::object(), a, 4).ok());
  EXPECT_EQ(*store_->LastModelFailure(a), 3);
  EXPECT_EQ(*store_->LastModelFailure("other"), 0);
}

}  // namespace
}  // namespace forge::store
