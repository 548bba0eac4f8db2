#include "supervisor/store/wal_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>

namespace forge::store {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class WalCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-walckpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/forge.db";
    writer_ = Open();
    Exec(writer_,
         "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
         "CREATE TABLE t(x); INSERT INTO t VALUES(1),(2),(3);");
  }
  void TearDown() override {
    sqlite3_close(reader_);
    sqlite3_close(writer_);
    fs::remove_all(dir_);
  }
  sqlite3* Open() {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    return db;
  }
  static void Exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
  }
  // The rows of t, as the writer's connection sees them (-1: no answer).
  int Rows() {
    sqlite3_stmt* stmt = nullptr;
    int n = -1;
    if (sqlite3_prepare_v2(writer_, "SELECT count(*) FROM t", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int(stmt, 0);
    }
    sqlite3_finalize(stmt);
    return n;
  }
  std::string dir_, path_;
  sqlite3* writer_ = nullptr;
  sqlite3* reader_ = nullptr;
};

TEST_F(WalCheckpoint, TruncatesTheWal) {
  ASSERT_GT(fs::file_size(path_ + "-wal"), 0u);
  CheckpointReport r = CheckpointWal(path_, 1000);
  EXPECT_TRUE(r.ran);
  EXPECT_FALSE(r.busy);
  EXPECT_EQ(r.error, "");
  EXPECT_GE(r.duration_ms, 0);
  EXPECT_EQ(fs::file_size(path_ + "-wal"), 0u) << r.log_frames << " " << r.checkpointed_frames;
  EXPECT_GT(r.wal_bytes_before, 0);
  EXPECT_EQ(r.wal_bytes_after, 0);
}

TEST_F(WalCheckpoint, AReaderOnAnOldSnapshotMakesItBusyAndLosesNothing) {
  reader_ = Open();
  Exec(reader_, "BEGIN; SELECT count(*) FROM t;");  // holds its snapshot open
  Exec(writer_, "INSERT INTO t VALUES(4);");
  CheckpointReport r = CheckpointWal(path_, 50);
  EXPECT_TRUE(r.ran);
  EXPECT_TRUE(r.busy);
  EXPECT_EQ(r.error, "");
  EXPECT_GT(fs::file_size(path_ + "-wal"), 0u);
  EXPECT_GT(r.wal_bytes_after, 0);

  Exec(reader_, "COMMIT;");
  r = CheckpointWal(path_, 1000);
  EXPECT_TRUE(r.ran);
  EXPECT_FALSE(r.busy);
  EXPECT_EQ(fs::file_size(path_ + "-wal"), 0u);
  EXPECT_EQ(Rows(), 4);
}

TEST_F(WalCheckpoint, PassiveCopiesEverythingAndLeavesTheFileForTheWriterToReuse) {
  const auto wal_bytes = fs::file_size(path_ + "-wal");
  ASSERT_GT(wal_bytes, 0u);
  CheckpointReport r = CheckpointWal(path_, 1000, CheckpointMode::kPassive);
  EXPECT_TRUE(r.ran);
  EXPECT_FALSE(r.busy);
  EXPECT_EQ(r.error, "");
  EXPECT_GT(r.log_frames, 0);
  EXPECT_EQ(r.checkpointed_frames, r.log_frames);
  EXPECT_EQ(fs::file_size(path_ + "-wal"), wal_bytes);  // not truncated
}

TEST_F(WalCheckpoint, PassiveDoesNotWaitForAReaderAndCopiesWhatItCan) {
  reader_ = Open();
  Exec(reader_, "BEGIN; SELECT count(*) FROM t;");  // pins the frames so far
  Exec(writer_, "INSERT INTO t VALUES(4);");
  CheckpointReport r = CheckpointWal(path_, 60'000, CheckpointMode::kPassive);
  EXPECT_TRUE(r.ran);
  EXPECT_EQ(r.error, "");
  EXPECT_LT(r.duration_ms, 30'000);  // a TRUNCATE would wait the whole busy timeout
  EXPECT_LT(r.checkpointed_frames, r.log_frames);
  Exec(reader_, "COMMIT;");
}

TEST_F(WalCheckpoint, ACheckpointerKeepsItsConnectionFromOneRunToTheNext) {
  WalCheckpointer checkpointer(path_, 1000);
  EXPECT_FALSE(checkpointer.connected());
  CheckpointReport r = checkpointer.Run(CheckpointMode::kPassive);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.checkpointed_frames, r.log_frames);
  EXPECT_TRUE(checkpointer.connected());

  // The writer goes on; the same connection copies what it wrote since.
  Exec(writer_, "INSERT INTO t VALUES(4); INSERT INTO t VALUES(5);");
  r = checkpointer.Run(CheckpointMode::kPassive);
  EXPECT_EQ(r.error, "");
  EXPECT_GT(r.log_frames, 0);
  EXPECT_EQ(r.checkpointed_frames, r.log_frames);
  r = checkpointer.Run(CheckpointMode::kTruncate);
  EXPECT_EQ(r.error, "");
  EXPECT_FALSE(r.busy);
  EXPECT_EQ(fs::file_size(path_ + "-wal"), 0u);
  EXPECT_TRUE(checkpointer.connected());

  // What the checkpoints copied is the database file's: a connection that
  // reads it afresh sees all five rows.
  sqlite3_close(writer_);
  writer_ = Open();
  EXPECT_EQ(Rows(), 5);
}

TEST_F(WalCheckpoint, ACheckpointerThatFailedOpensAgainOnItsNextRun) {
  const std::string later = dir_ + "/later.db";
  WalCheckpointer checkpointer(later, 1000);
  CheckpointReport r = checkpointer.Run(CheckpointMode::kPassive);
  EXPECT_FALSE(r.ran);
  EXPECT_THAT(r.error, HasSubstr("opening '" + later + "'"));
  EXPECT_FALSE(checkpointer.connected());

  sqlite3* db = nullptr;  // the database appears
  ASSERT_EQ(sqlite3_open(later.c_str(), &db), SQLITE_OK);
  Exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE u(x);");
  ASSERT_GT(fs::file_size(later + "-wal"), 0u);
  r = checkpointer.Run(CheckpointMode::kTruncate);
  EXPECT_TRUE(r.ran);
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(checkpointer.connected());
  EXPECT_EQ(fs::file_size(later + "-wal"), 0u);
  sqlite3_close(db);
}

TEST(NextCheckpoint, PassesEvery1000FramesOffTheLoopAndOnItPastTheBound) {
  const int64_t bg = kBackgroundCheckpointFrames;
  const int64_t bound = kInlineCheckpointFrames;
  // Fewer than 1,000 frames since the last one started: nothing.
  EXPECT_EQ(NextCheckpoint(0, 0, false), CheckpointAction::kNone);
  EXPECT_EQ(NextCheckpoint(bg - 1, 0, false), CheckpointAction::kNone);
  EXPECT_EQ(NextCheckpoint(bg + 500, bg, false), CheckpointAction::kNone);
  // 1,000 since: a background pass, unless one runs.
  EXPECT_EQ(NextCheckpoint(bg, 0, false), CheckpointAction::kBackground);
  EXPECT_EQ(NextCheckpoint(2 * bg, bg, false), CheckpointAction::kBackground);
  EXPECT_EQ(NextCheckpoint(2 * bg, bg, true), CheckpointAction::kNone);
  // The WAL started over (fewer frames than at the last start): counted from 0.
  EXPECT_EQ(NextCheckpoint(bg - 1, bound, false), CheckpointAction::kNone);
  EXPECT_EQ(NextCheckpoint(bg, bound, false), CheckpointAction::kBackground);
  // Past the bound, on the loop; still never beside a running pass.
  EXPECT_EQ(NextCheckpoint(bound, bound - bg, false), CheckpointAction::kInline);
  EXPECT_EQ(NextCheckpoint(bound + 5 * bg, bound, false), CheckpointAction::kInline);
  EXPECT_EQ(NextCheckpoint(bound + 5 * bg, bound, true), CheckpointAction::kNone);
  // Past the bound with fewer than 1,000 new frames (a reader kept the last
  // one from finishing): not on every turn.
  EXPECT_EQ(NextCheckpoint(bound + 10, bound, false), CheckpointAction::kNone);
}

TEST_F(WalCheckpoint, AMissingDatabaseIsAnErrorNamingIt) {
  CheckpointReport r = CheckpointWal(dir_ + "/none.db", 1000);
  EXPECT_FALSE(r.ran);
  EXPECT_THAT(r.error, HasSubstr("opening '" + dir_ + "/none.db'"));
  EXPECT_FALSE(fs::exists(dir_ + "/none.db"));  // opened read-write, never created
}

}  // namespace
}  // namespace forge::store
