#include "supervisor/store/sqlite_util.h"

#include "supervisor/store/wal_write_buffer.h"

namespace forge::store {

Error SqlError(sqlite3* db, int rc, std::string_view context) {
  ErrorCode code = ErrorCode::kDb;
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) code = ErrorCode::kBusy;
  if (primary == SQLITE_FULL) code = ErrorCode::kFull;
  // The device failed (or vanished) under the file: the caller may wait for
  // it as for a full disk (the supervisor's store pause), unlike a constraint
  // or a damaged database.
  if (primary == SQLITE_IOERR) code = ErrorCode::kIo;
  std::string msg(context);
  msg += ": ";
  msg += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (db) {
    const char* file = sqlite3_db_filename(db, "main");
    if (file && *file) {
      msg += " (";
      msg += file;
      msg += ")";
    }
  }
  return MakeError(code, std::move(msg));
}

Stmt::~Stmt() {
  if (stmt_) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqlError(db_, rc, std::string("executing ") + sqlite3_sql(stmt_));
}

Status Stmt::Run() {
  for (;;) {
    FORGE_ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

std::string Stmt::Text(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (!p) return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

// When something else initialized SQLite first, the call fails and the
// default stays, which is only slower.
void DisableMemoryStatistics() {
  static const bool done = [] {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)done;
}

Conn::~Conn() {
  Close();
}

Status Conn::Open(const std::string& path, int flags, bool buffer_wal_writes) {
  DisableMemoryStatistics();  // before anything initializes SQLite
  path_ = path;
  const char* vfs = buffer_wal_writes ? WalWriteBufferVfs() : nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = "opening database " + path + ": ";
    msg += db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    Close();
    return MakeError(rc == SQLITE_BUSY ? ErrorCode::kBusy : ErrorCode::kDb, std::move(msg));
  }
  sqlite3_extended_result_codes(db_, 1);
  return Status::Ok();
}

void Conn::Close() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  cache_.clear();
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Result<Stmt> Conn::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return Stmt(db_, it->second);
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqlError(db_, rc, "preparing " + sql);
  cache_.emplace(sql, stmt);
  return Stmt(db_, stmt);
}

Status Conn::Exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string detail = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  Error e = SqlError(nullptr, rc, "executing " + sql.substr(0, 80));
  e.message = "executing " + sql.substr(0, 80) + ": " + detail + " (" + path_ + ")";
  return e;
}

Status Conn::Run(const std::string& sql) {
  FORGE_ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
  return stmt.Run();
}

Result<int64_t> Conn::QueryInt(const std::string& sql) {
  FORGE_ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
  FORGE_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return MakeError(ErrorCode::kDb, "no row from " + sql);
  return stmt.Int(0);
}

}  // namespace forge::store
