// A thin layer over the SQLite C API: errors as forge::Error (the SQLite
// message plus what was being done), a per-connection cache of prepared
// statements keyed by SQL text (dispatch runs the same few statements over and
// over), and a borrowed-statement handle that resets itself when done.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"

namespace forge::store {

// kBusy for SQLITE_BUSY/LOCKED, kFull for SQLITE_FULL, kIo for SQLITE_IOERR,
// kDb otherwise.
Error SqlError(sqlite3* db, int rc, std::string_view context);

// A cached statement borrowed for one use. Not copyable; the destructor
// resets it and clears its bindings so the cache can hand it out again.
// Never hold two Stmts for the same SQL text at once.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept : db_(other.db_), stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt();

  // Binds parameters 1..N in order.
  template <typename... Args>
  Stmt& Bind(const Args&... args) {
    int i = 1;
    (BindOne(i++, args), ...);
    return *this;
  }
  void BindOne(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindOne(int i, int v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindOne(int i, bool v) { sqlite3_bind_int(stmt_, i, v ? 1 : 0); }
  void BindOne(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void BindOne(int i, std::nullptr_t) { sqlite3_bind_null(stmt_, i); }
  void BindOne(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindOne(int i, const std::string& v) { BindOne(i, std::string_view(v)); }
  void BindOne(int i, const char* v) { BindOne(i, std::string_view(v)); }

  // true: a row is available; false: done.
  Result<bool> Step();
  // Steps to completion (for statements that return no rows).
  Status Run();

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Real(int col) const { return sqlite3_column_double(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const;
  sqlite3_stmt* raw() { return stmt_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// Turns off SQLite's memory statistics (on by default: a global mutex around
// every allocation; Forge never reads them). Must run before SQLite
// initializes: Conn::Open calls it, and a program that calls SQLite itself
// before it opens a store (the benchmarks) calls it first, so the store runs
// as it does in the supervisor. Later calls do nothing.
void DisableMemoryStatistics();

class Conn {
 public:
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn();

  // flags: SQLITE_OPEN_* (READONLY or READWRITE|CREATE). buffer_wal_writes:
  // through the WalWriteBufferVfs (wal_write_buffer.h), for the writer.
  Status Open(const std::string& path, int flags, bool buffer_wal_writes = false);
  void Close();
  sqlite3* db() const { return db_; }

  // A cached prepared statement for sql.
  Result<Stmt> Prepare(const std::string& sql);
  // Runs one or more statements without results (schema, pragmas).
  Status Exec(const std::string& sql);
  // Runs one statement without results through the statement cache: for the
  // ones run on every write (BEGIN IMMEDIATE, COMMIT, ROLLBACK), which Exec
  // would parse again each time.
  Status Run(const std::string& sql);
  // First column of the first row as an integer (PRAGMAs, COUNT, MAX).
  Result<int64_t> QueryInt(const std::string& sql);
  int64_t Changes() const { return sqlite3_changes64(db_); }
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

}  // namespace forge::store
