// Store queries for the maintenance pass and the model fallback. Kept out of
// store.cc: read-only queries on the supervisor's connection, no transaction.
#include "supervisor/store/sqlite_util.h"
#include "supervisor/store/store.h"

namespace forge::store {
namespace {

// A statement of this file's own (not the connection's cache: these run once
// per maintenance interval or dispatch, and store.cc owns that cache).
class OwnStmt {
 public:
  OwnStmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~OwnStmt() { sqlite3_finalize(stmt_); }
  OwnStmt(const OwnStmt&) = delete;
  OwnStmt& operator=(const OwnStmt&) = delete;
  Status prepared(std::string_view what) const {
    return rc_ == SQLITE_OK ? Status::Ok() : Status(SqlError(db_, rc_, what));
  }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

std::string Column(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t == nullptr ? "" : reinterpret_cast<const char*>(t);
}

}  // namespace

Result<std::vector<Store::SettledRow>> Store::SettledWorkspaces(int64_t cutoff_wall_ms, int limit) {
  OwnStmt s(db_,
            "SELECT id, state, repo, finished_at FROM tasks INDEXED BY tasks_unswept "
            "WHERE swept_at < finished_at AND finished_at <= ?1 "
            "AND state IN ('done', 'blocked', 'cancelled') ORDER BY finished_at, seq LIMIT ?2");
  FORGE_RETURN_IF_ERROR(s.prepared("selecting settled workspaces"));
  sqlite3_bind_int64(s.get(), 1, cutoff_wall_ms);
  sqlite3_bind_int64(s.get(), 2, limit);
  std::vector<SettledRow> out;
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    SettledRow r;
    r.id = Column(s.get(), 0);
    auto state = proto::ParseState(Column(s.get(), 1));
    if (state) r.state = *state;
    r.repo = Column(s.get(), 2);
    r.finished_at_ms = sqlite3_column_int64(s.get(), 3);
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, rc, "selecting settled workspaces");
  return out;
}

Result<int> Store::LastModelFailure(const std::string& task_id) {
  OwnStmt s(db_,
            "SELECT IFNULL(MAX(attempt), 0) FROM events "
            "WHERE task_id = ?1 AND kind = 'attempt.model_failure'");
  FORGE_RETURN_IF_ERROR(s.prepared("reading model failures"));
  sqlite3_bind_text(s.get(), 1, task_id.data(), static_cast<int>(task_id.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(s.get());
  if (rc != SQLITE_ROW) return SqlError(db_, rc, "reading model failures of " + task_id);
  return static_cast<int>(sqlite3_column_int64(s.get(), 0));
}

}  // namespace forge::store
