#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "supervisor/store/schema.h"
#include "supervisor/store/store.h"

namespace forge::store {
namespace {

// The one integer a query returns; -1 when it fails or returns no row.
int64_t QueryInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) return -1;
  int64_t out = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  return out;
}

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

// The query reads the partial index of unswept tasks, never the whole table:
// its cost must not grow with the tasks already cleaned up (schema v3).
TEST_F(MaintenanceQueries, SettledQueryUsesTheUnsweptIndex) {
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(store_->raw(),
                               "EXPLAIN QUERY PLAN SELECT id FROM tasks INDEXED BY tasks_unswept "
                               "WHERE swept_at < finished_at AND finished_at <= 5 "
                               "AND state IN ('done', 'blocked', 'cancelled') "
                               "ORDER BY finished_at, seq LIMIT 10",
                               -1, &stmt, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(store_->raw());
  std::string plan;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
    plan += "\n";
  }
  sqlite3_finalize(stmt);
  EXPECT_NE(plan.find("USING INDEX tasks_unswept"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;  // no sort step
}

// A swept task leaves the index: after many cleaned-up tasks the index holds
// only what is still due (what keeps the query cheap at scale).
TEST_F(MaintenanceQueries, SweptTasksLeaveTheIndex) {
  std::string left;
  for (int i = 0; i < 50; ++i) {
    std::string id = Submit("t" + std::to_string(i));
    ASSERT_TRUE(store_->Cancel(id, "x").ok());
    if (i == 7) {
      left = id;
    } else {
      ASSERT_TRUE(store_->Emit("maintenance.removed", {{"path", "/p"}}, id).ok());
    }
  }
  EXPECT_EQ(QueryInt(store_->raw(),
                     "SELECT COUNT(*) FROM tasks INDEXED BY tasks_unswept "
                     "WHERE swept_at < finished_at"),
            1);
  EXPECT_EQ(Ids(2'000'000), (std::vector<std::string>{left}));
}

// A database an older forge left (schema `version`, with `rows` inserted in
// SQL), opened by this one, which migrates it.
class MaintenanceQueriesMigration : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-maintq-old-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void OpenOld(size_t version, const std::string& rows) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/forge.db").c_str(), &db), SQLITE_OK);
    for (size_t v = 0; v < version; ++v) {
      ASSERT_EQ(sqlite3_exec(db, Migrations()[v].c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    }
    std::string sql =
        "INSERT INTO meta VALUES('schema_version', '" + std::to_string(version) + "');" + rows;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
    StoreOptions o;
    o.db_path = dir_ + "/forge.db";
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    store_ = std::move(*s);
    EXPECT_EQ(store_->SchemaVersion(), kSchemaVersion);
  }
  // The tasks SettledWorkspaces lists as due with the cutoff at 1000.
  std::vector<std::string> Due() {
    std::vector<std::string> ids;
    auto rows = store_->SettledWorkspaces(1000, 100);
    EXPECT_TRUE(rows.ok()) << rows.error().ToString();
    if (rows.ok()) {
      for (const auto& r : *rows) ids.push_back(r.id);
    }
    return ids;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

// A version-2 database (before swept_at) migrates with its earlier removals
// taken into account: nothing already removed is listed again.
TEST_F(MaintenanceQueriesMigration, Version2RemovalsCountAsSwept) {
  ASSERT_NO_FATAL_FAILURE(
      OpenOld(2,
              "INSERT INTO tasks(id, title, state, max_attempts, created_at, updated_at, "
              "finished_at) VALUES('removed', 'r', 'done', 3, 0, 0, 100), "
              "('absent', 'a', 'cancelled', 3, 0, 0, 100), "
              "('retried', 'x', 'blocked', 3, 0, 0, 500), "
              "('due', 'd', 'done', 3, 0, 0, 100), ('queued', 'q', 'ready', 3, 0, 0, 0);"
              "INSERT INTO events(ts, kind, task_id, idem_key) VALUES"
              "(200, 'maintenance.removed', 'removed', 'k1'),"
              "(150, 'maintenance.absent', 'absent', 'k2'),"
              "(300, 'maintenance.removed', 'retried', 'k3');"));
  // 'retried' settled again (500) after its removal (300): due again.
  EXPECT_EQ(Due(), (std::vector<std::string>{"due", "retried"}));
}

// Schema v5 drops v3's trigger on events (it ran for every event inserted)
// and the store sets swept_at itself: a version-4 database migrates, keeps
// what it had swept, and new removals still mark their tasks.
TEST_F(MaintenanceQueriesMigration, Version4LosesTheEventsTriggerAndStillMarksSweeps) {
  ASSERT_NO_FATAL_FAILURE(
      OpenOld(4,
              "INSERT INTO tasks(id, title, state, max_attempts, created_at, updated_at, "
              "finished_at) VALUES('swept', 's', 'done', 3, 0, 0, 100), "
              "('due', 'd', 'done', 3, 0, 0, 100);"
              "INSERT INTO events(ts, kind, task_id, idem_key) VALUES"
              "(200, 'maintenance.removed', 'swept', 'k1');"));
  EXPECT_EQ(QueryInt(store_->raw(),
                     "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' "
                     "AND tbl_name = 'events'"),
            0);
  EXPECT_EQ(Due(), (std::vector<std::string>{"due"}));
  ASSERT_TRUE(store_->Emit("maintenance.absent", {{"path", "/d"}}, "due").ok());
  EXPECT_EQ(Due(), (std::vector<std::string>{}));
}

// A version-4 database whose trigger is already gone (dropped by hand)
// migrates too, and its removals still mark their tasks.
TEST_F(MaintenanceQueriesMigration, Version4WithoutTheTriggerStillMigrates) {
  ASSERT_NO_FATAL_FAILURE(
      OpenOld(4,
              "DROP TRIGGER tasks_swept;"
              "INSERT INTO tasks(id, title, state, max_attempts, created_at, updated_at, "
              "finished_at) VALUES('due', 'd', 'done', 3, 0, 0, 100);"));
  EXPECT_EQ(Due(), (std::vector<std::string>{"due"}));
  ASSERT_TRUE(store_->Emit("maintenance.removed", {{"path", "/d"}}, "due").ok());
  EXPECT_EQ(Due(), (std::vector<std::string>{}));
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
