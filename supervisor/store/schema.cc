#include "supervisor/store/schema.h"

#include <algorithm>

namespace forge::store {

namespace {

// Version 1. Times are wall-clock ms since the epoch; JSON columns hold text.
// tasks.version counts the task's state transitions: it makes each
// transition's event key unique and repeatable. `commit` is an SQL keyword,
// hence commit_id.
const char* const kV1 = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks(
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL,
  brief TEXT NOT NULL DEFAULT '',
  kind TEXT NOT NULL DEFAULT 'work',
  state TEXT NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  needs_approval INTEGER NOT NULL DEFAULT 0,
  approved INTEGER NOT NULL DEFAULT 0,
  allow_empty INTEGER NOT NULL DEFAULT 0,
  repo TEXT NOT NULL DEFAULT '',
  base TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '',
  model TEXT NOT NULL DEFAULT '',
  env TEXT NOT NULL DEFAULT '{}',
  verify TEXT NOT NULL DEFAULT '[]',
  depends_on TEXT NOT NULL DEFAULT '[]',
  parent TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  total_attempts INTEGER NOT NULL DEFAULT 0,
  infra_retries INTEGER NOT NULL DEFAULT 0,
  not_before INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  last_fingerprint TEXT NOT NULL DEFAULT '',
  branch TEXT NOT NULL DEFAULT '',
  commit_id TEXT NOT NULL DEFAULT '',
  cost_usd REAL NOT NULL DEFAULT 0,
  tokens_in INTEGER NOT NULL DEFAULT 0,
  tokens_out INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_ready ON tasks(state, priority DESC, seq);
CREATE INDEX tasks_due ON tasks(state, not_before);
CREATE TABLE task_deps(
  task_id TEXT NOT NULL REFERENCES tasks(id),
  dep_id TEXT NOT NULL REFERENCES tasks(id),
  PRIMARY KEY(task_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX task_deps_dep ON task_deps(dep_id);
CREATE TABLE attempts(
  id INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL REFERENCES tasks(id),
  n INTEGER NOT NULL,
  counted INTEGER NOT NULL DEFAULT 1,
  worker_pid INTEGER NOT NULL DEFAULT 0,
  agent_pid INTEGER NOT NULL DEFAULT 0,
  agent_pgid INTEGER NOT NULL DEFAULT 0,
  agent_start_time INTEGER NOT NULL DEFAULT 0,
  started_at INTEGER NOT NULL,
  reported_at INTEGER,
  ended_at INTEGER,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  outcome TEXT NOT NULL DEFAULT '',
  exit_code INTEGER NOT NULL DEFAULT -1,
  signal INTEGER NOT NULL DEFAULT 0,
  cost_usd REAL NOT NULL DEFAULT 0,
  tokens_in INTEGER NOT NULL DEFAULT 0,
  tokens_out INTEGER NOT NULL DEFAULT 0,
  num_turns INTEGER NOT NULL DEFAULT 0,
  session_id TEXT NOT NULL DEFAULT '',
  model TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  fingerprint TEXT NOT NULL DEFAULT '',
  verdict TEXT NOT NULL DEFAULT '',
  findings TEXT NOT NULL DEFAULT '[]',
  checks TEXT NOT NULL DEFAULT '[]',
  log_path TEXT NOT NULL DEFAULT '',
  commit_id TEXT NOT NULL DEFAULT '',
  UNIQUE(task_id, n)
);
CREATE INDEX attempts_open ON attempts(id) WHERE ended_at IS NULL;
CREATE INDEX attempts_started ON attempts(started_at);
CREATE INDEX attempts_ended ON attempts(ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE events(
  seq INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  task_id TEXT NOT NULL DEFAULT '',
  attempt INTEGER NOT NULL DEFAULT 0,
  idem_key TEXT NOT NULL UNIQUE,
  payload TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_task ON events(task_id, seq);
CREATE TABLE cursors(name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
)sql";

// Version 2: per-state task counts, so status (Store::QueueCounts) reads a
// handful of rows instead of scanning the whole tasks table (issue 6: status
// with 1,000,000 queued took 3.2x the 1,000 case). Triggers keep the counts
// in the same transaction as every insert, delete and state change, whoever
// writes the row (the store, or a bulk load in SQL); the migration fills the
// table from the rows already there. Rows with n = 0 are kept (harmless).
const char* const kV2 = R"sql(
CREATE TABLE task_counts(state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO task_counts(state, n) SELECT state, COUNT(*) FROM tasks GROUP BY state;
CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
  INSERT INTO task_counts(state, n) VALUES(new.state, 1)
    ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
  UPDATE task_counts SET n = n - 1 WHERE state = old.state;
END;
CREATE TRIGGER task_counts_update AFTER UPDATE OF state ON tasks
  WHEN old.state IS NOT new.state BEGIN
  UPDATE task_counts SET n = n - 1 WHERE state = old.state;
  INSERT INTO task_counts(state, n) VALUES(new.state, 1)
    ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
)sql";

// Version 3: the maintenance pass's "which settled workspaces are due" query
// (Store::SettledWorkspaces) reads only tasks not swept since they settled,
// through a partial index, instead of scanning every settled task and probing
// events for each (a slow query on the supervisor's loop once the store holds
// hundreds of thousands of cleaned-up tasks). tasks.swept_at is the wall time
// of the newest maintenance.removed/.absent event of the task; the trigger
// sets it in the same transaction as that event, whoever inserts it (v5
// replaced the trigger by the store's own UPDATE). A task
// is unswept while swept_at < finished_at: settling again after a retry makes
// it due again without anyone resetting the column.
const char* const kV3 = R"sql(
ALTER TABLE tasks ADD COLUMN swept_at INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET swept_at = (SELECT MAX(e.ts) FROM events e WHERE e.task_id = tasks.id
                             AND e.kind IN ('maintenance.removed', 'maintenance.absent'))
  WHERE id IN (SELECT task_id FROM events
               WHERE kind IN ('maintenance.removed', 'maintenance.absent'));
CREATE TRIGGER tasks_swept AFTER INSERT ON events
  WHEN new.kind IN ('maintenance.removed', 'maintenance.absent') BEGIN
  UPDATE tasks SET swept_at = MAX(swept_at, new.ts) WHERE id = new.task_id;
END;
CREATE INDEX tasks_unswept ON tasks(finished_at, seq) WHERE swept_at < finished_at;
)sql";

// Version 4: tasks_due indexes only the cooldown tasks, the only ones its
// queries (NextDue, PromoteDue, ClampDue: all `state = 'cooldown'`) read. As a
// full index on (state, not_before) every state change of every task moved an
// entry in it, two more pages in the write-ahead log of each of a task's
// three or four transitions (issue 6: the lease, result and close
// transactions wrote 16.0, 11.5 and 16.0 WAL frames on average; 14.1, 10.5
// and 14.1 with the index partial).
const char* const kV4 = R"sql(
DROP INDEX tasks_due;
CREATE INDEX tasks_due ON tasks(not_before) WHERE state = 'cooldown';
)sql";

// Version 5: tasks.swept_at is set by the store where it inserts a
// maintenance.removed/.absent event (Store::Impl::InsertEvent, same
// transaction), not by the v3 trigger. A trigger on events ran its program
// for every event inserted, to test the kind: 7 % of the instructions of a
// task's whole lifecycle in the store (issue 6, bench/README.md fix 46),
// for an UPDATE that only maintenance events need. The store is the only
// writer of events.
const char* const kV5 = R"sql(
DROP TRIGGER IF EXISTS tasks_swept;
)sql";

// Version 6: idempotent submits. A submit that carries a client's key is
// recorded under it, in the transaction that inserts its tasks, with a hash
// of what it asked for and the ids it got: the same key again (a retry after
// "did not answer") gets those ids back instead of a second set of tasks.
const char* const kV6 = R"sql(
CREATE TABLE submit_keys(
  key TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  ids TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
)sql";

// Version 7: tasks.base_commit, the commit a repo task's base resolved to
// at its first attempt, as its worker reported it (`started` or `result`).
// It lived only in the worktree's own ref (refs/worktree/forge-base), so an
// attempt after the worktree was gone (removed by maintenance before an
// operator's retry, or by hand) resolved the base again, from wherever the
// repository's HEAD or ref had moved since. Every later dispatch carries
// it, and the worker starts from it, worktree or not. NULL until a worker
// reports it (a task that never ran, one without a repo, and every task of
// a database migrated here: their worktrees still hold the ref, and the
// next attempt reports it).
const char* const kV7 = R"sql(
ALTER TABLE tasks ADD COLUMN base_commit TEXT;
)sql";

Status SetVersion(Conn& conn, int64_t version) {
  FORGE_ASSIGN_OR_RETURN(Stmt stmt,
                         conn.Prepare("INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  return stmt.Bind(std::to_string(version)).Run();
}

}  // namespace

const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> migrations = {kV1, kV2, kV3, kV4, kV5, kV6, kV7};
  return migrations;
}

Result<int64_t> ReadSchemaVersion(Conn& conn) {
  FORGE_ASSIGN_OR_RETURN(
      int64_t has_meta,
      conn.QueryInt("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='meta'"));
  if (has_meta == 0) return int64_t{0};
  FORGE_ASSIGN_OR_RETURN(Stmt stmt,
                         conn.Prepare("SELECT value FROM meta WHERE key='schema_version'"));
  FORGE_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return int64_t{0};
  std::string text = stmt.Text(0);
  try {
    size_t used = 0;
    int64_t v = std::stoll(text, &used);
    if (used == text.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  return MakeError(ErrorCode::kDb, "meta.schema_version is not a number: '" + text + "'");
}

Status CheckVersion(int64_t version, int64_t supported, bool read_only) {
  if (version > supported) {
    return MakeError(ErrorCode::kConflict, "database schema version " + std::to_string(version) +
                                               " is newer than this forge (" +
                                               std::to_string(supported) + "); upgrade forge");
  }
  if (read_only && version < std::min(supported, kOldestReadOnlySchema)) {
    return MakeError(ErrorCode::kConflict, "database schema version " + std::to_string(version) +
                                               " is older than this forge (" +
                                               std::to_string(supported) +
                                               "); start forge-supervisor once to migrate it");
  }
  return Status::Ok();
}

Status Migrate(Conn& conn, int64_t target) {
  FORGE_ASSIGN_OR_RETURN(int64_t version, ReadSchemaVersion(conn));
  FORGE_RETURN_IF_ERROR(CheckVersion(version, target, false));
  const auto& migrations = Migrations();
  while (version < target) {
    FORGE_RETURN_IF_ERROR(conn.Exec("BEGIN IMMEDIATE"));
    // Re-read inside the write lock: another process may have migrated meanwhile.
    auto current = ReadSchemaVersion(conn);
    Status st = current.ok() ? Status::Ok() : Status(current.error());
    if (st.ok() && *current == version) {
      st = conn.Exec(migrations[static_cast<size_t>(version)]);
      if (st.ok()) st = SetVersion(conn, version + 1);
    }
    if (!st.ok()) {
      (void)conn.Exec("ROLLBACK");
      return st.error().Wrap("migrating schema to version " + std::to_string(version + 1));
    }
    FORGE_RETURN_IF_ERROR(conn.Exec("COMMIT"));
    FORGE_ASSIGN_OR_RETURN(version, ReadSchemaVersion(conn));
  }
  return Status::Ok();
}

}  // namespace forge::store
