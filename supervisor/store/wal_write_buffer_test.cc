#include "supervisor/store/wal_write_buffer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "supervisor/store/wal_checkpoint.h"

namespace forge::store {
namespace {

namespace fs = std::filesystem;

// Write system calls made by this process so far (all threads).
int64_t WriteSyscalls() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "syscw:") return value;
  }
  return -1;
}

class WalWriteBuffer : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-walbuf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/forge.db";
    ASSERT_NE(WalWriteBufferVfs(), nullptr);
  }
  void TearDown() override {
    for (sqlite3* db : open_) sqlite3_close(db);
    fs::remove_all(dir_);
  }
  // A connection as the store's writer has it (buffered: through the VFS).
  sqlite3* Open(bool buffered) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              buffered ? WalWriteBufferVfs() : nullptr),
              SQLITE_OK);
    open_.push_back(db);
    Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;");
    return db;
  }
  static int Exec(sqlite3* db, const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    return rc;
  }
  static int64_t Int(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      v = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return v;
  }
  static std::string Text(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    std::string v;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    return v;
  }
  // Rows of 3,000 bytes: each one a page of its own in the WAL.
  static std::string InsertRows(int first, int count) {
    return "WITH RECURSIVE s(v) AS (SELECT " + std::to_string(first) +
           " UNION ALL SELECT v + 1 FROM s WHERE v < " + std::to_string(first + count - 1) +
           ") INSERT INTO t(id, pad) SELECT v, zeroblob(3000) FROM s;";
  }
  // Write system calls of `transactions` commits of 8 pages each.
  int64_t WritesPerCommit(sqlite3* db, int transactions) {
    int64_t before = WriteSyscalls();
    for (int i = 0; i < transactions; ++i) {
      EXPECT_EQ(Exec(db, "BEGIN IMMEDIATE; " + InsertRows(next_id_, 8) + " COMMIT;"), SQLITE_OK);
      next_id_ += 8;
    }
    return (WriteSyscalls() - before) / transactions;
  }

  std::string dir_, path_;
  std::vector<sqlite3*> open_;
  int next_id_ = 1;
};

TEST_F(WalWriteBuffer, ACommitIsOneWriteWhereItWasTwoAFrame) {
  if (WriteSyscalls() < 0) GTEST_SKIP() << "no /proc/self/io (kernel without task I/O accounting)";
  sqlite3* plain = Open(false);
  ASSERT_EQ(Exec(plain, "CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"), SQLITE_OK);
  // Without the buffer: two writes (header, page) for each of 9+ frames.
  EXPECT_GE(WritesPerCommit(plain, 10), 18);
  sqlite3_close(plain);
  open_.clear();
  sqlite3* buffered = Open(true);
  EXPECT_EQ(WritesPerCommit(buffered, 10), 1);
  EXPECT_EQ(Int(buffered, "SELECT COUNT(*) FROM t"), 160);
}

TEST_F(WalWriteBuffer, EveryCommitIsInTheFileWhenItReturns) {
  sqlite3* writer = Open(true);
  sqlite3* reader = Open(false);  // another connection, reading the file
  ASSERT_EQ(Exec(writer, "CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"), SQLITE_OK);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Exec(writer, "BEGIN IMMEDIATE; " + InsertRows(i * 3 + 1, 3) + " COMMIT;"), SQLITE_OK);
    ASSERT_EQ(Int(reader, "SELECT COUNT(*) FROM t"), (i + 1) * 3) << "after commit " << i;
    if (i % 10 == 9) {  // the WAL starts over after a complete checkpoint
      CheckpointReport r = CheckpointWal(path_, 1000, CheckpointMode::kTruncate);
      ASSERT_TRUE(r.ran && !r.busy) << r.error;
    }
  }
  EXPECT_EQ(Text(reader, "PRAGMA integrity_check"), "ok");
}

TEST_F(WalWriteBuffer, ASpilledTransactionRolledBackOrCommittedReadsBackRight) {
  sqlite3* writer = Open(true);
  sqlite3* reader = Open(false);
  // A cache of 10 pages: a transaction of 200 spills frames to the WAL before
  // its commit, and reads some of them back.
  ASSERT_EQ(Exec(writer, "PRAGMA cache_size=10; CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"),
            SQLITE_OK);
  ASSERT_EQ(Exec(writer, "BEGIN IMMEDIATE; " + InsertRows(1, 200) + " ROLLBACK;"), SQLITE_OK);
  ASSERT_EQ(Exec(writer, "BEGIN IMMEDIATE; " + InsertRows(500, 2) + " COMMIT;"), SQLITE_OK);
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t"), 2);
  ASSERT_EQ(Exec(writer, "BEGIN IMMEDIATE; " + InsertRows(1, 200) +
                             " UPDATE t SET pad = zeroblob(2000) WHERE id % 7 = 0; COMMIT;"),
            SQLITE_OK);
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t"), 202);
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t WHERE length(pad) = 2000"), 28);
  EXPECT_EQ(Text(reader, "PRAGMA integrity_check"), "ok");
}

// Runs body in a child process and returns its exit code (-signal if killed).
template <typename F>
int InChild(F body) {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// A commit whose frames the file refuses (here: past RLIMIT_FSIZE, as on a
// full disk) fails as that commit's error, the connection writes again once
// the file may grow, and the database keeps exactly the transactions that
// succeeded.
TEST_F(WalWriteBuffer, ACommitTheFileRefusesFailsAndLosesNothingElse) {
  int code = InChild([&] {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        WalWriteBufferVfs()) != SQLITE_OK)
      return 10;
    if (Exec(db,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
             "CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB);" +
                 InsertRows(1, 5)) != SQLITE_OK)
      return 11;
    ::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead
    rlimit limit{};
    if (::getrlimit(RLIMIT_FSIZE, &limit) != 0) return 12;
    const rlim_t soft = limit.rlim_cur;  // the soft limit only: raising it back needs no privilege
    limit.rlim_cur = static_cast<rlim_t>(fs::file_size(path_ + "-wal") + 10000);
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 12;
    int rc = Exec(db, "BEGIN IMMEDIATE; " + InsertRows(100, 20) + " COMMIT;");
    if ((rc & 0xff) != SQLITE_FULL && (rc & 0xff) != SQLITE_IOERR) return 13;
    (void)Exec(db, "ROLLBACK");
    // Space returns: the same connection writes again.
    limit.rlim_cur = soft;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 15;
    if (Exec(db, "BEGIN IMMEDIATE; " + InsertRows(200, 1) + " COMMIT;") != SQLITE_OK) return 14;
    sqlite3_close(db);
    return 0;
  });
  ASSERT_EQ(code, 0);
  sqlite3* reader = Open(false);
  EXPECT_EQ(Text(reader, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t WHERE id < 100"), 5);
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t WHERE id BETWEEN 100 AND 199"), 0);
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t WHERE id = 200"), 1);
}

// kill -9 of a writer in the middle of its commits: every commit it
// acknowledged is there, nothing else is half there.
TEST_F(WalWriteBuffer, AKilledWriterLosesNoAcknowledgedCommit) {
  {
    sqlite3* db = Open(true);
    ASSERT_EQ(Exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)"), SQLITE_OK);
    sqlite3_close(db);
    open_.clear();
  }
  int acks[2];
  ASSERT_EQ(::pipe(acks), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(acks[0]);
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, WalWriteBufferVfs()) !=
        SQLITE_OK)
      ::_exit(10);
    (void)Exec(db, "PRAGMA synchronous=NORMAL");
    for (int i = 1;; ++i) {
      if (Exec(db, "BEGIN IMMEDIATE; " + InsertRows(i * 4, 4) + " COMMIT;") != SQLITE_OK)
        ::_exit(11);
      if (::write(acks[1], &i, sizeof i) != sizeof i) ::_exit(12);
    }
  }
  ::close(acks[1]);
  int acked = 0;
  while (acked < 300) ASSERT_EQ(::read(acks[0], &acked, sizeof acked), ssize_t{sizeof acked});
  ::kill(pid, SIGKILL);
  for (int more = 0; ::read(acks[0], &more, sizeof more) == sizeof more;) acked = more;
  ::close(acks[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: " << status;
  sqlite3* reader = Open(false);
  EXPECT_EQ(Text(reader, "PRAGMA integrity_check"), "ok");
  int64_t commits = Int(reader, "SELECT COUNT(*) FROM t") / 4;
  EXPECT_GE(commits, acked);
  EXPECT_LE(commits, acked + 1);  // the one under way may have committed
  EXPECT_EQ(Int(reader, "SELECT COUNT(*) FROM t") % 4, 0);
  EXPECT_EQ(Int(reader, "SELECT MAX(id) FROM t"), commits * 4 + 3);
}

}  // namespace
}  // namespace forge::store
