#include "supervisor/store/store.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <functional>
#include <random>
#include <set>
#include <unordered_map>

#include "common/redact.h"
#include "common/workspace_paths.h"
#include "proto/json_fields.h"
#include "supervisor/store/events_file.h"
#include "supervisor/store/rows.h"
#include "supervisor/store/schema.h"
#include "supervisor/store/sqlite_util.h"
#include "supervisor/store/submit_check.h"

namespace forge::store {

namespace {

constexpr const char* kEventsCursor = "events.jsonl";
constexpr int64_t kJsonlBatch = 10000;  // events per write() when catching up
// How far cursors['events.jsonl'] may lag the file before a write transaction
// brings it up to date. The cursor only reports the position (recovery reads
// the file's own last line); writing it in every transaction cost each
// transaction one more WAL frame, a twelfth of the supervisor's log writes.
constexpr int64_t kJsonlCursorLag = 1000;

// Calls visit(i) for every i below n, each after every j in deps[i] (no
// cycles), depth first without recursion: a plan can be a chain of 100,000.
template <typename Visit>
Status InDependencyOrder(const std::vector<std::vector<size_t>>& deps, const Visit& visit) {
  enum Mark : char { kNew, kOpen, kVisited };
  std::vector<Mark> mark(deps.size(), kNew);
  std::vector<size_t> stack;
  for (size_t start = 0; start < deps.size(); ++start) {
    if (mark[start] != kNew) continue;
    stack.push_back(start);
    while (!stack.empty()) {
      size_t i = stack.back();
      if (mark[i] == kNew) {
        mark[i] = kOpen;
        for (size_t j : deps[i]) {
          if (mark[j] == kNew) stack.push_back(j);
        }
        continue;
      }
      stack.pop_back();
      if (mark[i] == kVisited) continue;
      mark[i] = kVisited;
      FORGE_RETURN_IF_ERROR(visit(i));
    }
  }
  return Status::Ok();
}

std::string Str(TaskState s) {
  return std::string(proto::StateName(s));
}
std::string Str(Outcome o) {
  return std::string(proto::OutcomeName(o));
}

Error NotFoundTask(const std::string& id) {
  return MakeError(ErrorCode::kNotFound, "task '" + id + "' not found");
}

Error NotFoundAttempt(int64_t id) {
  return MakeError(ErrorCode::kNotFound, "attempt " + std::to_string(id) + " not found");
}

// A close must leave its task in a state with no open attempt: not running
// or reviewing.
Error InvalidNextState(int64_t attempt_id, TaskState next) {
  return MakeError(ErrorCode::kInvalid, "closing attempt " + std::to_string(attempt_id) +
                                            ": next state cannot be " + Str(next));
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// The page size of a database the store creates. Every transaction writes
// whole pages to the WAL, and most pages a task's transactions touch (the
// indexes, events, attempts, task_counts) change by tens of bytes: with 2 KiB
// pages instead of SQLite's 4 KiB the WAL bytes a task are 45 % fewer and the
// supervisor's instructions 7.5 % fewer (checksums and copies scale with the
// bytes), and with briefs of 3–8 KB the store's instructions are still 1–5 %
// fewer (bench/README.md, fix 37). SQLite applies it only to a database with
// no table yet and never in WAL mode, so an existing database keeps its own.
constexpr int kNewDatabasePageSize = 2048;

Status EnableWal(Conn& c, const std::string& path) {
  FORGE_ASSIGN_OR_RETURN(Stmt wal, c.Prepare("PRAGMA journal_mode = WAL"));
  FORGE_ASSIGN_OR_RETURN(bool row, wal.Step());
  if (!row || wal.Text(0) != "wal") {
    return MakeError(ErrorCode::kDb, "cannot switch " + path + " to WAL mode");
  }
  return Status::Ok();
}

// An event's idempotency key (events.idem_key, UNIQUE): the fact it records,
// led by its task's id with the id's length first ("04t812:3:task.done").
// The layout decides which pages of the key's index a transaction writes.
// One task's keys are adjacent and ids of one length (t<seq>) sort by seq,
// so the events of a transaction, all of one task, go to one page, beside
// the task's earlier keys. Keys led by the bare id ("t812:…", "a97:…") put
// the attempt's and the task's events in two places, and "t1000" between
// "t100" and "t101": 2.6 pages of that index in a transaction with two
// events, 1.6 now (issue 6, bench/lifecycle_bench --pages).
// Keys written before this layout stay valid: a key only has to be the same
// when the same fact is recorded again, which never crosses a restart
// (every one of them is guarded by the rows of its transaction too).
std::string EventKey(const std::string& task_id, const std::string& step, std::string_view kind) {
  char length[8];
  std::snprintf(length, sizeof length, "%02zu", task_id.size());
  std::string key;
  key.reserve(2 + task_id.size() + step.size() + kind.size() + 2);
  key.append(length).append(task_id).append(":").append(step).append(":").append(kind);
  return key;
}

}  // namespace

struct Store::Impl {
  Conn conn;
  const Clock* clock = nullptr;
  bool read_only = false;
  // What a task row is read with: kTaskColumnsBeforeV7 for a read-only open
  // of a database older than that (no migration runs for it).
  const char* task_columns = kTaskColumns;
  int default_max_attempts = 3;
  // Called every kProgressEvery tasks a submit inserts (Store::SetProgressHook).
  static constexpr size_t kProgressEvery = 1000;
  std::function<void()> progress;
  std::unique_ptr<EventsFile> events_file;
  int64_t jsonl_seq = 0;            // last seq known to be in events.jsonl
  int64_t jsonl_cursor_saved = -1;  // value of cursors['events.jsonl'] in the database
  bool jsonl_needs_recover = false;
  int64_t wal_frames = 0;     // set by the WAL hook after each commit (manual_checkpoints)
  bool wrote_events = false;  // an event was inserted in the current transaction
  // events.jsonl lines of the events inserted by the current transaction, in
  // seq order, built at insert time so the flush after COMMIT need not read
  // them back from SQLite (that read-back was ~20% of the supervisor's CPU).
  // txn_first_seq/txn_last_seq bound them; txn_contiguous is false when the
  // seqs have a gap (then the flush falls back to reading the table).
  std::string txn_lines;
  int64_t txn_first_seq = 0;
  int64_t txn_last_seq = 0;
  bool txn_contiguous = true;
  // Each task's env secrets (SecretValues), empty for most, which its
  // events' payloads are scrubbed of as they are written: a title, brief,
  // verify command, cancel reason or error may quote one. Filled at submit
  // (an entry each, assigned so a rolled-back id reused is right) and, for
  // a task submitted before this open, by one row read at its first event.
  // Cleared when it grows past kTaskSecretsMax, to bound it: about 400 KB
  // of mostly empty entries, against the supervisor's 16 MiB (issue 6's
  // figure 6); a task's events come in bursts while it runs, so a clear
  // costs one row read a running task.
  static constexpr size_t kTaskSecretsMax = 4096;
  std::unordered_map<std::string, std::vector<std::string>> task_secrets;
  std::mt19937_64 rng{std::random_device{}()};

  int64_t Now() const { return clock->WallMs(); }

  // ---- transactions ----

  // Runs body inside BEGIN IMMEDIATE ... COMMIT; any error rolls back. New
  // events are appended to events.jsonl after the commit.
  template <typename F>
  auto Write(const std::string& what, F&& body) -> decltype(body()) {
    if (read_only) {
      return MakeError(ErrorCode::kConflict, "the store is open read-only: cannot " + what);
    }
    Status begin = conn.Run("BEGIN IMMEDIATE");
    if (!begin.ok()) return begin.error().Wrap(what);
    wrote_events = false;
    ClearTxnLines();
    // The events.jsonl position, when it lags by kJsonlCursorLag or more.
    int64_t cursor_after = jsonl_cursor_saved;
    Status cursor = Status::Ok();
    if (events_file && jsonl_seq - jsonl_cursor_saved >= kJsonlCursorLag) {
      cursor = SetCursorRow(kEventsCursor, jsonl_seq);
      cursor_after = jsonl_seq;
    }
    auto result = cursor.ok() ? Guarded(what, body) : decltype(body())(cursor.error());
    if (!result.ok()) {
      (void)conn.Run("ROLLBACK");
      return result;
    }
    Status commit = conn.Run("COMMIT");
    if (!commit.ok()) {
      (void)conn.Run("ROLLBACK");
      return commit.error().Wrap(what);
    }
    jsonl_cursor_saved = cursor_after;
    if (wrote_events) FlushEventsFile();
    return result;
  }

  // body(), with an exception from a library call (nlohmann, std) turned
  // into an error so the transaction is always rolled back.
  template <typename F>
  static auto Guarded(const std::string& what, F& body) -> decltype(body()) {
    try {
      return body();
    } catch (const std::exception& e) {
      return MakeError(ErrorCode::kInternal, what + ": " + e.what());
    }
  }

  Status SetCursorRow(const std::string& name, int64_t seq) {
    FORGE_ASSIGN_OR_RETURN(Stmt s,
                           conn.Prepare("INSERT INTO cursors(name, seq) VALUES(?, ?) "
                                        "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq"));
    return s.Bind(name, seq).Run();
  }

  // ---- events ----

  // false when the key was already there (the event was emitted before).
  Result<bool> InsertEvent(const std::string& kind, const std::string& task_id, int attempt,
                           const std::string& key, const json& payload) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare("INSERT INTO events(ts, kind, task_id, attempt, idem_key, payload) "
                             "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(idem_key) DO NOTHING"));
    int64_t ts = Now();
    FORGE_ASSIGN_OR_RETURN(const std::vector<std::string>* secrets, TaskSecrets(task_id));
    std::string payload_text;
    if (secrets == nullptr || secrets->empty()) {
      payload_text = JsonText(payload);
    } else {
      json redacted = payload;
      proto::RedactJson(redacted, *secrets);
      payload_text = JsonText(redacted);
    }
    FORGE_RETURN_IF_ERROR(s.Bind(ts, kind, task_id, attempt, key, payload_text).Run());
    bool inserted = conn.Changes() > 0;
    if (inserted && MarksWorkspaceSwept(kind)) FORGE_RETURN_IF_ERROR(MarkSwept(task_id, ts));
    if (inserted && events_file) {
      int64_t seq = conn.LastInsertRowid();
      if (txn_first_seq == 0) {
        txn_first_seq = seq;
      } else if (seq != txn_last_seq + 1) {
        txn_contiguous = false;
      }
      txn_last_seq = seq;
      if (txn_contiguous) {
        EventsFile::AppendLine(txn_lines, seq, ts, kind, task_id, attempt, payload_text);
      }
    }
    wrote_events = wrote_events || inserted;
    return inserted;
  }

  // task_id's env secrets; nullptr for no task. A hash lookup for a task
  // this open submitted or has written an event of, else one row read.
  Result<const std::vector<std::string>*> TaskSecrets(const std::string& task_id) {
    if (task_id.empty()) return nullptr;
    if (auto it = task_secrets.find(task_id); it != task_secrets.end()) return &it->second;
    std::vector<std::string> secrets;
    auto row = LoadTask(task_id);
    if (row.ok()) {
      secrets = SecretValues(row->info.env);
    } else if (row.error().code != ErrorCode::kNotFound) {
      return row.error();
    }
    return &RememberTaskSecrets(task_id, std::move(secrets));
  }
  const std::vector<std::string>& RememberTaskSecrets(const std::string& task_id,
                                                      std::vector<std::string> secrets) {
    if (task_secrets.size() >= kTaskSecretsMax && !task_secrets.contains(task_id)) {
      task_secrets.clear();
    }
    return task_secrets.insert_or_assign(task_id, std::move(secrets)).first->second;
  }

  // A maintenance removal (or finding the workspace gone) is the task's
  // "already swept" mark: tasks.swept_at, which SettledWorkspaces reads
  // through its partial index (schema v3; set here since v5).
  static bool MarksWorkspaceSwept(std::string_view kind) {
    return kind == "maintenance.removed" || kind == "maintenance.absent";
  }
  Status MarkSwept(const std::string& task_id, int64_t ts) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare("UPDATE tasks SET swept_at = MAX(swept_at, ?) WHERE id = ?"));
    return s.Bind(ts, task_id).Run();
  }

  void ClearTxnLines() {
    txn_lines.clear();
    txn_first_seq = 0;
    txn_last_seq = 0;
    txn_contiguous = true;
  }

  Status AttemptEvent(const AttemptInfo& a, const std::string& kind, const json& payload) {
    // Appended, not "a" + to_string: GCC 12 inlines that into a false
    // -Wrestrict (its bug 105651) in some builds of this file.
    std::string step = "a";
    step.append(std::to_string(a.id));
    auto inserted = InsertEvent(kind, a.task_id, a.n, EventKey(a.task_id, step, kind), payload);
    return inserted.ok() ? Status::Ok() : Status(inserted.error());
  }

  // The agent's pid, group and start time, for recovery's kill check, and
  // its event; once per attempt (a repeated `started` changes nothing).
  Status RecordAgentStart(const AttemptRow& a, int64_t agent_pid, int64_t pgid,
                          int64_t agent_start_time) {
    if (a.info.agent_pid != 0) return Status::Ok();
    FORGE_ASSIGN_OR_RETURN(Stmt s,
                           conn.Prepare("UPDATE attempts SET agent_pid = ?, agent_pgid = ?, "
                                        "agent_start_time = ? WHERE id = ?"));
    FORGE_RETURN_IF_ERROR(s.Bind(agent_pid, pgid, agent_start_time, a.info.id).Run());
    return AgentStartedEvent(a.info, agent_pid, pgid);
  }

  // The commit a's worker made the task's worktree at (its base resolved),
  // kept for every later attempt: only the first report counts (a later
  // one, from a worktree that outlived a restored database, changes
  // nothing), with its event attempt.base_recorded. Nothing for "".
  Status RecordBaseCommit(const AttemptInfo& a, const std::string& commit) {
    if (commit.empty()) return Status::Ok();
    FORGE_ASSIGN_OR_RETURN(
        Stmt s,
        conn.Prepare("UPDATE tasks SET base_commit = ? WHERE id = ? AND base_commit IS NULL"));
    FORGE_RETURN_IF_ERROR(s.Bind(commit, a.task_id).Run());
    if (conn.Changes() == 0) return Status::Ok();
    return AttemptEvent(a, "attempt.base_recorded",
                        proto::JsonObject("attempt_id", a.id, "base_commit", commit));
  }

  Status AgentStartedEvent(const AttemptInfo& a, int64_t agent_pid, int64_t pgid) {
    return AttemptEvent(
        a, "attempt.agent_started",
        proto::JsonObject("attempt_id", a.id, "agent_pid", agent_pid, "pgid", pgid));
  }

  Result<std::vector<EventInfo>> ReadEvents(const std::string& sql, auto... args) {
    return ReadEventsWith(sql, [&](Stmt& s) { s.Bind(args...); });
  }

  // bind: binds the statement's parameters (their number varies with sql).
  Result<std::vector<EventInfo>> ReadEventsWith(const std::string& sql,
                                                const std::function<void(Stmt&)>& bind) {
    FORGE_ASSIGN_OR_RETURN(Stmt s, conn.Prepare(sql));
    bind(s);
    std::vector<EventInfo> out;
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      EventInfo e;
      e.seq = s.Int(0);
      e.ts_ms = s.Int(1);
      e.kind = s.Text(2);
      e.task_id = s.Text(3);
      e.attempt = static_cast<int>(s.Int(4));
      e.payload = json::parse(s.Text(5), nullptr, false);
      if (e.payload.is_discarded()) {
        return MakeError(ErrorCode::kDb, "event " + std::to_string(e.seq) + " holds bad JSON");
      }
      out.push_back(std::move(e));
    }
    return out;
  }

  // ---- events.jsonl ----

  // Brings events.jsonl up to date: cuts a torn tail, appends what is missing.
  void RecoverEventsFile() {
    auto last = events_file->OpenAndRecover();
    if (!last.ok()) {
      spdlog::error("events.jsonl: {}; will retry", last.error().message);
      jsonl_needs_recover = true;
      return;
    }
    if (*last > 0 && !FileEndsInTheTable(*last)) {
      // Ahead of the database, or another one's: a restored backup, or a
      // power loss that kept the file's last lines and not the WAL's last
      // commits (synchronous: normal). Appending after it would skip the
      // table's events up to that seq and keep lines of events the
      // database does not have. Kept aside for the operator; rebuilt.
      const std::string aside = events_file->path() + ".diverged-" + std::to_string(Now());
      spdlog::warn(
          "{}: its last line (seq {}) is not the database's event {} (a restored backup, or "
          "the database lost its last commits): moved to {}; rebuilding it from the database",
          events_file->path(), *last, *last, aside);
      if (Status moved = events_file->MoveAside(aside); !moved.ok()) {
        spdlog::error("events.jsonl: {}; will retry", moved.error().message);
        jsonl_needs_recover = true;
        return;
      }
      *last = 0;
    }
    jsonl_needs_recover = false;
    jsonl_seq = *last;
    AppendMissingEvents();
  }

  // The file's last line is the table's event of that seq (the same kind,
  // task, attempt and time). A read error is taken as a match: the file is
  // only moved aside on evidence.
  bool FileEndsInTheTable(int64_t seq) {
    auto rows = ReadEvents(
        "SELECT seq, ts, kind, task_id, attempt, payload FROM events WHERE seq = ?", seq);
    if (!rows.ok()) return true;
    if (rows->empty()) return false;
    json in_file = json::parse(events_file->last_line(), nullptr, false);
    json in_table = rows->front();
    if (!in_file.is_object()) return false;
    for (const char* key : {"kind", "task_id", "attempt", "ts"}) {
      if (in_file.value(key, json()) != in_table.value(key, json())) return false;
    }
    return true;
  }

  void AppendMissingEvents() {
    for (;;) {
      auto events = ReadEvents(
          "SELECT seq, ts, kind, task_id, attempt, payload FROM events WHERE seq > ? "
          "ORDER BY seq LIMIT ?",
          jsonl_seq, kJsonlBatch);
      if (!events.ok()) {
        spdlog::error("events.jsonl: reading events: {}", events.error().message);
        return;
      }
      if (events->empty()) return;
      Status st = events_file->Append(*events);
      if (!st.ok()) {
        spdlog::error("events.jsonl: {}; will retry", st.error().message);
        jsonl_needs_recover = true;
        return;
      }
      jsonl_seq = events->back().seq;
    }
  }

  void FlushEventsFile() {
    if (!events_file) return;
    if (jsonl_needs_recover) {
      RecoverEventsFile();
    } else if (txn_contiguous && txn_first_seq == jsonl_seq + 1) {
      // The common case: the file holds everything before this transaction,
      // which wrote the next seqs; its lines are already built.
      Status st = events_file->AppendRaw(txn_lines);
      if (st.ok()) {
        jsonl_seq = txn_last_seq;
      } else {
        spdlog::error("events.jsonl: {}; will retry", st.error().message);
        jsonl_needs_recover = true;
      }
    } else {
      AppendMissingEvents();
    }
    ClearTxnLines();
  }

  // ---- rows ----

  Result<TaskRow> LoadTask(const std::string& id) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare(std::string("SELECT ") + task_columns + " FROM tasks WHERE id = ?"));
    FORGE_ASSIGN_OR_RETURN(bool row, s.Bind(id).Step());
    if (!row) return NotFoundTask(id);
    return ReadTaskRow(s);
  }

  Result<AttemptRow> LoadAttempt(int64_t id) {
    FORGE_ASSIGN_OR_RETURN(Stmt s, conn.Prepare(std::string("SELECT ") + kAttemptColumns +
                                                " FROM attempts WHERE id = ?"));
    FORGE_ASSIGN_OR_RETURN(bool row, s.Bind(id).Step());
    if (!row) return NotFoundAttempt(id);
    return ReadAttemptRow(s);
  }

  Result<std::vector<TaskRow>> QueryTasks(const std::string& where_etc, auto... args) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare(std::string("SELECT ") + task_columns + " FROM tasks " + where_etc));
    s.Bind(args...);
    std::vector<TaskRow> out;
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      FORGE_ASSIGN_OR_RETURN(TaskRow t, ReadTaskRow(s));
      out.push_back(std::move(t));
    }
  }

  // The first row QueryTasks gives, if any.
  Result<std::optional<TaskRow>> QueryFirstTask(const std::string& where_etc, auto... args) {
    FORGE_ASSIGN_OR_RETURN(auto rows, QueryTasks(where_etc, args...));
    if (rows.empty()) return std::optional<TaskRow>();
    return std::optional<TaskRow>(std::move(rows.front()));
  }

  Result<std::vector<AttemptRow>> QueryAttempts(const std::string& where_etc, auto... args) {
    FORGE_ASSIGN_OR_RETURN(Stmt s, conn.Prepare(std::string("SELECT ") + kAttemptColumns +
                                                " FROM attempts " + where_etc));
    s.Bind(args...);
    std::vector<AttemptRow> out;
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return out;
      FORGE_ASSIGN_OR_RETURN(AttemptRow a, ReadAttemptRow(s));
      out.push_back(std::move(a));
    }
  }

  // ---- task state ----

  // Moves the task to `to` and emits task.<to> with {"from","to"} + extra.
  // The event key carries the task's transition counter, so each transition
  // has its own key and re-running the same transition cannot duplicate it.
  // also_set ("column = expression, ...") and its arguments change more of
  // the row in the same UPDATE: a transaction that moves the task and also
  // changes its counters runs one statement on the row, not two (issue 6).
  template <typename... Args>
  Status Transition(TaskRow& t, TaskState to, json extra, int attempt_n = 0,
                    std::string_view also_set = {}, const Args&... also_args) {
    TaskState from = t.info.state;
    ++t.version;
    std::string sql = "UPDATE tasks SET state = ?, version = ?, updated_at = ?";
    if (!also_set.empty()) sql.append(", ").append(also_set);
    sql.append(" WHERE seq = ?");
    FORGE_ASSIGN_OR_RETURN(Stmt s, conn.Prepare(sql));
    int64_t now = Now();
    FORGE_RETURN_IF_ERROR(s.Bind(Str(to), t.version, now, also_args..., t.seq).Run());
    json payload = std::move(extra);
    if (!payload.is_object()) payload = json::object();
    payload["from"] = Str(from);
    payload["to"] = Str(to);
    std::string kind = "task." + Str(to);
    std::string key = EventKey(t.info.id, std::to_string(t.version), kind);
    FORGE_ASSIGN_OR_RETURN(bool inserted, InsertEvent(kind, t.info.id, attempt_n, key, payload));
    (void)inserted;
    t.info.state = to;
    t.info.updated_at_ms = now;
    if (to == TaskState::kBlocked || to == TaskState::kCancelled) {
      FORGE_RETURN_IF_ERROR(NoteStuck(t, from));
    }
    return Status::Ok();
  }

  // A pending task whose dependency is blocked or cancelled, or that waits on
  // one through other pending tasks, waits until that one is retried and
  // done, which nothing does on its own: a task.waiting event on it names the
  // stuck task (and `via`, its own dependency on the way, when that is
  // another task), so its timeline says why it stays pending and `wait`
  // knows it will not end by itself. Keyed by the stuck task's version: once
  // per time it got stuck.
  Status WaitingEvent(const std::string& task_id, const TaskRow& stuck, const std::string& via) {
    const std::string state = Str(stuck.info.state);
    const bool through = via != stuck.info.id;
    json payload = proto::JsonObject(
        "dependency", stuck.info.id, "dependency_state", state, "reason",
        stuck.info.id + " is " + state + ": this task waits" +
            (through ? " (through " + via + ")" : std::string()) + " until it is retried and done");
    if (through) payload["via"] = via;
    std::string key = EventKey(task_id, "w" + stuck.info.id + "." + std::to_string(stuck.version),
                               "task.waiting");
    FORGE_ASSIGN_OR_RETURN(bool inserted, InsertEvent("task.waiting", task_id, 0, key, payload));
    (void)inserted;
    return Status::Ok();
  }

  // Invariant: a pending task that waits on a blocked or cancelled task,
  // directly or through pending tasks, has a task.waiting event naming one
  // that is still stuck (what `forge-ctl wait` reads). `stuck` just became
  // blocked or cancelled, coming from `from`.
  Status NoteStuck(const TaskRow& stuck, TaskState from) {
    if (from == TaskState::kPending) {
      FORGE_ASSIGN_OR_RETURN(auto above, StuckPerEvents(stuck.info.id));
      if (above) {
        // Everything below already waits on `above` and was told so: only
        // its own dependents hear of this one. (Telling the whole subtree
        // again for each task of a chain cancelled from its top wrote n²/2
        // events.) Should `above` be retried, RenoteAround tells them.
        FORGE_ASSIGN_OR_RETURN(auto direct, PendingDependents(stuck.info.id));
        for (const auto& t : direct) {
          FORGE_RETURN_IF_ERROR(WaitingEvent(t.info.id, stuck, stuck.info.id));
        }
        return Status::Ok();
      }
    }
    return NoteWaitingDependents(stuck);
  }

  // Tells the pending tasks that wait on `stuck`, directly or through pending
  // tasks (`via`: each one's own dependency on the way, the oldest): every
  // direct dependent, and each task further down that names no task stuck
  // now. One that does already keeps the invariant: telling it again, for
  // each of n roots cancelled above a shared subtree, made n times the
  // events.
  Status NoteWaitingDependents(const TaskRow& stuck) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare("WITH RECURSIVE down(id) AS ("
                             " SELECT d.task_id FROM task_deps d JOIN tasks t ON t.id = d.task_id"
                             "  WHERE d.dep_id = ?1 AND t.state = 'pending'"
                             " UNION"
                             " SELECT d.task_id FROM down JOIN task_deps d ON d.dep_id = down.id"
                             "  JOIN tasks t ON t.id = d.task_id WHERE t.state = 'pending')"
                             " SELECT down.id, (SELECT d.dep_id FROM task_deps d"
                             "  JOIN tasks v ON v.id = d.dep_id WHERE d.task_id = down.id"
                             "  AND (d.dep_id = ?1 OR d.dep_id IN (SELECT id FROM down))"
                             "  ORDER BY v.seq LIMIT 1)"
                             " FROM down JOIN tasks t ON t.id = down.id ORDER BY t.seq"));
    s.Bind(stuck.info.id);
    std::vector<std::pair<std::string, std::string>> waiting;
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      waiting.emplace_back(s.Text(0), s.Text(1));
    }
    for (const auto& [id, via] : waiting) {
      if (via != stuck.info.id) {
        FORGE_ASSIGN_OR_RETURN(auto named, StuckPerEvents(id));
        if (named) continue;
      }
      FORGE_RETURN_IF_ERROR(WaitingEvent(id, stuck, via));
    }
    return Status::Ok();
  }

  // A retried task leaves blocked or cancelled, so a task that named it may
  // name nothing stuck now. Each pending task at or below it (through
  // pending, blocked and cancelled tasks) that names no task stuck now is
  // told the one it still waits on, if any: taken in dependency order, each
  // looks only at its own dependencies (a stuck one, or a pending one's
  // name), so a retry costs a lookup an edge, not a walk up a chain a task.
  // Events only where the invariant was lost. Returns what the retried task
  // still waits on.
  Result<std::optional<TaskRow>> RenoteAround(const TaskRow& retried) {
    FORGE_ASSIGN_OR_RETURN(std::vector<std::string> ids, PendingAtOrBelow(retried.info.id));
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < ids.size(); ++i) index[ids[i]] = i;
    std::vector<std::vector<std::pair<std::string, TaskState>>> deps(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      FORGE_ASSIGN_OR_RETURN(deps[i], DependencyStates(ids[i]));
    }
    std::vector<std::optional<TaskRow>> named(ids.size());
    auto decide = [&](size_t i) -> Status {
      FORGE_ASSIGN_OR_RETURN(named[i], StuckPerEvents(ids[i]));
      if (named[i]) return Status::Ok();
      for (const auto& [dep, state] : deps[i]) {
        std::optional<TaskRow> root;
        if (state == TaskState::kBlocked || state == TaskState::kCancelled) {
          FORGE_ASSIGN_OR_RETURN(TaskRow row, LoadTask(dep));
          root = std::move(row);
        } else if (state == TaskState::kPending) {
          auto in = index.find(dep);
          if (in != index.end()) {
            root = named[in->second];  // decided before this task
          } else {
            FORGE_ASSIGN_OR_RETURN(root, StuckPerEvents(dep));  // untouched: the invariant
          }
        }
        if (!root) continue;
        FORGE_RETURN_IF_ERROR(WaitingEvent(ids[i], *root, dep));
        named[i] = std::move(root);
        return Status::Ok();
      }
      return Status::Ok();
    };
    std::vector<std::vector<size_t>> local(ids.size());  // dependencies among ids
    for (size_t i = 0; i < ids.size(); ++i) {
      for (const auto& dep : deps[i]) {
        if (auto in = index.find(dep.first); in != index.end()) local[i].push_back(in->second);
      }
    }
    FORGE_RETURN_IF_ERROR(InDependencyOrder(local, decide));
    auto self = index.find(retried.info.id);
    return self == index.end() ? std::optional<TaskRow>() : named[self->second];
  }

  // The pending tasks at or below `task_id` (itself included), through
  // pending, blocked and cancelled tasks, oldest first.
  Result<std::vector<std::string>> PendingAtOrBelow(const std::string& task_id) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare("WITH RECURSIVE down(id) AS (SELECT ?"
                             " UNION"
                             " SELECT d.task_id FROM down JOIN task_deps d ON d.dep_id = down.id"
                             "  JOIN tasks t ON t.id = d.task_id"
                             "  WHERE t.state IN ('pending', 'blocked', 'cancelled'))"
                             " SELECT t.id FROM down JOIN tasks t ON t.id = down.id"
                             " WHERE t.state = 'pending' ORDER BY t.seq"));
    s.Bind(task_id);
    std::vector<std::string> ids;
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return ids;
      ids.push_back(s.Text(0));
    }
  }

  // A task's dependencies, oldest first, with their states.
  Result<std::vector<std::pair<std::string, TaskState>>> DependencyStates(
      const std::string& task_id) {
    FORGE_ASSIGN_OR_RETURN(Stmt s,
                           conn.Prepare("SELECT d.dep_id, t.state FROM task_deps d JOIN tasks t"
                                        " ON t.id = d.dep_id WHERE d.task_id = ? ORDER BY t.seq"));
    s.Bind(task_id);
    std::vector<std::pair<std::string, TaskState>> deps;
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) return deps;
      deps.emplace_back(s.Text(0), proto::ParseState(s.Text(1)).value_or(TaskState::kPending));
    }
  }

  // The oldest blocked or cancelled task a pending task's task.waiting
  // events name (by the invariant, one it waits on): a lookup in its own
  // events, not a walk up its chain, which made submitting or cancelling a
  // long chain one task at a time quadratic.
  Result<std::optional<TaskRow>> StuckPerEvents(const std::string& task_id) {
    return QueryFirstTask(
        "WHERE state IN ('blocked', 'cancelled') AND id IN ("
        "SELECT json_extract(payload, '$.dependency') FROM events"
        " INDEXED BY events_task WHERE task_id = ? AND kind = 'task.waiting')"
        " ORDER BY seq LIMIT 1",
        task_id);
  }

  // The blocked or cancelled task that `t` is, or that it waits on.
  Result<std::optional<TaskRow>> StuckRoot(const TaskRow& t) {
    if (t.info.state == TaskState::kBlocked || t.info.state == TaskState::kCancelled) {
      return std::optional<TaskRow>(t);
    }
    if (t.info.state != TaskState::kPending) return std::optional<TaskRow>();
    return StuckPerEvents(t.info.id);
  }

  // The pending tasks that depend on dep_id, through the task_deps(dep_id) index.
  Result<std::vector<TaskRow>> PendingDependents(const std::string& dep_id) {
    return QueryTasks(
        "WHERE id IN (SELECT task_id FROM task_deps WHERE dep_id = ?) "
        "AND state = 'pending'",
        dep_id);
  }

  // True when every dependency of the task is done.
  Result<bool> DepsDone(const std::string& id) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, conn.Prepare("SELECT COUNT(*) FROM task_deps d JOIN tasks t ON t.id = d.dep_id "
                             "WHERE d.task_id = ? AND t.state != 'done'"));
    FORGE_ASSIGN_OR_RETURN(bool row, s.Bind(id).Step());
    return row && s.Int(0) == 0;
  }

  // pending -> ready when dependencies are done and approval (if needed) given.
  Status MaybeRelease(TaskRow& t, const std::string& reason) {
    if (t.info.state != TaskState::kPending) return Status::Ok();
    if (t.info.needs_approval && !t.info.approved) return Status::Ok();
    FORGE_ASSIGN_OR_RETURN(bool done, DepsDone(t.info.id));
    if (!done) return Status::Ok();
    return Transition(t, TaskState::kReady, json{{"reason", reason}});
  }

  // After `dep_id` is done: its pending dependents may become ready.
  Status PromoteDependents(const std::string& dep_id) {
    FORGE_ASSIGN_OR_RETURN(auto rows, PendingDependents(dep_id));
    for (auto& t : rows) FORGE_RETURN_IF_ERROR(MaybeRelease(t, "dependencies done"));
    return Status::Ok();
  }

  Result<std::optional<AttemptRow>> OpenAttemptOf(const std::string& task_id) {
    FORGE_ASSIGN_OR_RETURN(auto rows,
                           QueryAttempts("WHERE task_id = ? AND ended_at IS NULL", task_id));
    if (rows.empty()) return std::optional<AttemptRow>();
    return std::optional<AttemptRow>(std::move(rows.front()));
  }

  // ---- submit ----

  // Which of a batch's new tasks wait on a stuck task, and through which of
  // their dependencies: `root` starts with what their stored dependencies
  // lead to; Propagate adds what their dependencies in the batch do. (Small
  // per task: a plan can hold 100,000.)
  struct BatchWaits {
    explicit BatchWaits(size_t n) : root(n, -1), via(n), local_deps(n) {}
    void Propagate(const std::vector<std::string>& ids);
    std::vector<TaskRow> roots;                   // the stuck stored tasks found
    std::vector<int> root;                        // an index in roots, -1: none
    std::vector<std::string> via;                 // the task's own dependency on the way
    std::vector<std::vector<size_t>> local_deps;  // indexes in the batch
  };

  Result<std::vector<std::string>> InsertBatch(const std::vector<proto::SubmitTask>& tasks,
                                               const std::string& parent = "");
  Status InsertTask(const proto::SubmitTask& in, const TaskInfo& info, int64_t seq);
  Status CloseOpenAttempt(AttemptRow& a, const Close& close, TaskRow& task);
};

// ---------------------------------------------------------------- open

Store::~Store() = default;

void Store::SetProgressHook(std::function<void()> hook) {
  impl_->progress = std::move(hook);
}

void Store::SetDefaultMaxAttempts(int max_attempts) {
  options_.default_max_attempts = max_attempts;
  impl_->default_max_attempts = max_attempts;
}

Status Store::SetSynchronous(bool full) {
  FORGE_RETURN_IF_ERROR(
      impl_->conn.Exec(std::string("PRAGMA synchronous = ") + (full ? "FULL" : "NORMAL")));
  options_.synchronous_full = full;
  return Status::Ok();
}

Result<int64_t> Store::Synchronous() {
  FORGE_ASSIGN_OR_RETURN(Stmt s, impl_->conn.Prepare("PRAGMA synchronous"));
  FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return MakeError(ErrorCode::kInternal, "PRAGMA synchronous returned no row");
  return s.Int(0);
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  std::unique_ptr<Store> store(new Store());
  store->options_ = options;
  store->impl_ = std::make_unique<Impl>();
  Impl& impl = *store->impl_;
  impl.clock = options.clock ? options.clock : &SystemClock::Get();
  impl.read_only = options.read_only;
  impl.default_max_attempts = options.default_max_attempts;
  Conn& c = impl.conn;
  std::string timeout = "PRAGMA busy_timeout = " + std::to_string(options.busy_timeout_ms);
  if (options.read_only) {
    if (!FileExists(options.db_path)) {
      return MakeError(ErrorCode::kNotFound, "database " + options.db_path + " not found");
    }
    FORGE_RETURN_IF_ERROR(c.Open(options.db_path, SQLITE_OPEN_READONLY));
    FORGE_RETURN_IF_ERROR(c.Exec(timeout + "; PRAGMA query_only = ON"));
    FORGE_ASSIGN_OR_RETURN(int64_t version, ReadSchemaVersion(c));
    // Each migration past kOldestReadOnlySchema must leave what readers use
    // alone; a new one is a reason to look at it again.
    static_assert(kSchemaVersion == 7, "does kOldestReadOnlySchema still hold?");
    Status supported = CheckVersion(version, kSchemaVersion, true);
    if (!supported.ok()) return supported.error().Wrap(options.db_path);
    if (version < 7) impl.task_columns = kTaskColumnsBeforeV7;
  } else {
    FORGE_RETURN_IF_ERROR(c.Open(options.db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                 /*buffer_wal_writes=*/true));
    FORGE_RETURN_IF_ERROR(
        c.Exec(timeout + "; PRAGMA page_size = " + std::to_string(kNewDatabasePageSize)));
    FORGE_RETURN_IF_ERROR(EnableWal(c, options.db_path));
    FORGE_RETURN_IF_ERROR(c.Exec(std::string("PRAGMA synchronous = ") +
                                 (options.synchronous_full ? "FULL" : "NORMAL") +
                                 "; PRAGMA foreign_keys = ON"));
    if (options.manual_checkpoints) {
      // A WAL hook replaces the automatic checkpoint (which is itself one).
      sqlite3_wal_hook(
          c.db(),
          [](void* impl, sqlite3*, const char*, int frames) {
            static_cast<Impl*>(impl)->wal_frames = frames;
            return SQLITE_OK;
          },
          &impl);
    }
    Status migrated = Migrate(c, kSchemaVersion);
    if (!migrated.ok()) return migrated.error().Wrap(options.db_path);
    if (!options.events_jsonl_path.empty()) {
      impl.events_file = std::make_unique<EventsFile>(options.events_jsonl_path);
      auto saved = store->GetCursor(kEventsCursor);
      if (saved.ok()) impl.jsonl_cursor_saved = *saved;
      impl.RecoverEventsFile();
      if (impl.jsonl_seq != impl.jsonl_cursor_saved) {
        int64_t seq = impl.jsonl_seq;
        Status st = impl.Write("record the events.jsonl position",
                               [&] { return impl.SetCursorRow(kEventsCursor, seq); });
        if (st.ok()) {
          impl.jsonl_cursor_saved = seq;
        } else {
          spdlog::warn("events.jsonl cursor: {}", st.error().message);
        }
      }
    }
  }
  store->db_ = c.db();
  return store;
}

int Store::SchemaVersion() {
  auto v = ReadSchemaVersion(impl_->conn);
  return v.ok() ? static_cast<int>(*v) : -1;
}

// ---------------------------------------------------------------- submit

Result<std::vector<std::string>> Store::Submit(const std::vector<proto::SubmitTask>& tasks) {
  FORGE_RETURN_IF_ERROR(CheckBatch(tasks));
  return impl_->Write("submit", [&] { return impl_->InsertBatch(tasks); });
}

namespace {

// What a keyed submit asked for, to tell a retry from another submit that
// reuses its key: FNV-1a (64 bits) over each task as JSON (nlohmann sorts
// object keys) without the fields at their defaults, so a field a later
// forge adds does not change the hash of a retry that spans the upgrade.
// Task by task: a staged plan of a million tasks is never one string, and
// `progress` runs every `every` tasks. "v1:" names the scheme.
std::string RequestHash(const std::vector<proto::SubmitTask>& tasks,
                        const std::function<void()>& progress, size_t every) {
  static const json defaults = proto::SubmitTask{};
  uint64_t h = 14695981039346656037ull;
  auto fold = [&h](std::string_view text) {
    for (unsigned char c : text) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  for (size_t i = 0; i < tasks.size(); ++i) {
    json task = tasks[i];
    for (auto it = defaults.begin(); it != defaults.end(); ++it) {
      auto field = task.find(it.key());
      if (field != task.end() && *field == it.value()) task.erase(field);
    }
    fold(JsonText(task));
    fold("\n");
    if (progress && (i + 1) % every == 0) progress();
  }
  char hex[20];
  std::snprintf(hex, sizeof hex, "v1:%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace

Result<Store::KeyedSubmit> Store::SubmitOnce(const std::string& idempotency_key,
                                             const std::vector<proto::SubmitTask>& tasks) {
  FORGE_RETURN_IF_ERROR(CheckIdempotencyKey(idempotency_key));
  FORGE_RETURN_IF_ERROR(CheckBatch(tasks));
  Impl& m = *impl_;
  return m.Write("submit", [&]() -> Result<KeyedSubmit> {
    const std::string hash = RequestHash(tasks, m.progress, Impl::kProgressEvery);
    FORGE_ASSIGN_OR_RETURN(
        Stmt seen, m.conn.Prepare("SELECT request_hash, ids FROM submit_keys WHERE key = ?"));
    FORGE_ASSIGN_OR_RETURN(bool found, seen.Bind(idempotency_key).Step());
    if (found) {
      KeyedSubmit out;
      out.existing = true;
      out.ids = json::parse(seen.Text(1)).get<std::vector<std::string>>();
      if (seen.Text(0) != hash) {
        std::string used = out.ids.empty() ? "no task" : "task " + out.ids.front();
        if (out.ids.size() > 1) used += " and " + std::to_string(out.ids.size() - 1) + " more";
        std::string message = "idempotency key '";
        message.append(idempotency_key)
            .append("' was used for a different submit (")
            .append(used)
            .append("); a new submit needs a new key");
        return MakeError(ErrorCode::kInvalid, message);
      }
      return out;
    }
    FORGE_ASSIGN_OR_RETURN(auto ids, m.InsertBatch(tasks));
    FORGE_ASSIGN_OR_RETURN(
        Stmt record, m.conn.Prepare("INSERT INTO submit_keys(key, request_hash, ids, created_at) "
                                    "VALUES(?, ?, ?, ?)"));
    FORGE_RETURN_IF_ERROR(record.Bind(idempotency_key, hash, json(ids).dump(), m.Now()).Run());
    return KeyedSubmit{std::move(ids), false};
  });
}

void Store::Impl::BatchWaits::Propagate(const std::vector<std::string>& ids) {
  // A task is decided after the batch's tasks it depends on (no cycles:
  // CheckBatch).
  Status done = InDependencyOrder(local_deps, [&](size_t i) {
    for (size_t j : local_deps[i]) {
      if (root[i] < 0 && root[j] >= 0) {
        root[i] = root[j];
        via[i] = ids[j];
      }
    }
    return Status::Ok();
  });
  (void)done;  // the visit cannot fail
}

Result<std::vector<std::string>> Store::Impl::InsertBatch(
    const std::vector<proto::SubmitTask>& tasks, const std::string& parent) {
  FORGE_ASSIGN_OR_RETURN(int64_t max_seq, conn.QueryInt("SELECT IFNULL(MAX(seq), 0) FROM tasks"));
  std::map<std::string, size_t> local;  // local id -> index in the batch (its new id: ids[i])
  std::vector<std::string> ids;
  for (size_t i = 0; i < tasks.size(); ++i) {
    ids.push_back("t" + std::to_string(max_seq + 1 + static_cast<int64_t>(i)));
    if (!tasks[i].id.empty()) local[tasks[i].id] = i;
  }
  int64_t now = Now();
  BatchWaits waits(tasks.size());
  std::map<std::string, int> stuck_roots;  // per stored dependency: its index in waits.roots
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& in = tasks[i];
    TaskInfo info;
    info.id = ids[i];
    bool deps_done = true;
    std::set<std::string> seen;
    for (const auto& dep : in.depends_on) {
      std::string resolved = dep;
      if (auto it = local.find(dep); it != local.end()) {
        resolved = ids[it->second];
        deps_done = false;
        waits.local_deps[i].push_back(it->second);
      } else {
        auto existing = LoadTask(dep);
        if (!existing.ok()) {
          if (existing.error().code != ErrorCode::kNotFound) return existing.error();
          return MakeError(ErrorCode::kInvalid,
                           TaskLabel(tasks, i) + " depends on unknown task '" + dep + "'");
        }
        deps_done = deps_done && existing->info.state == TaskState::kDone;
        auto root = stuck_roots.find(dep);
        if (root == stuck_roots.end()) {
          FORGE_ASSIGN_OR_RETURN(auto found, StuckRoot(*existing));
          int index = -1;
          if (found) {
            index = static_cast<int>(waits.roots.size());
            waits.roots.push_back(std::move(*found));
          }
          root = stuck_roots.emplace(dep, index).first;
        }
        if (root->second >= 0 && waits.root[i] < 0) {
          waits.root[i] = root->second;
          waits.via[i] = dep;
        }
      }
      if (seen.insert(resolved).second) info.depends_on.push_back(resolved);
    }
    info.title = in.title;
    info.brief = in.brief;
    info.kind = in.kind;
    info.state = deps_done && !in.needs_approval ? TaskState::kReady : TaskState::kPending;
    info.priority = in.priority;
    info.max_attempts = in.max_attempts.value_or(default_max_attempts);
    info.needs_approval = in.needs_approval;
    info.allow_empty = in.allow_empty;
    info.repo = in.repo;
    info.base = in.base;
    info.agent = in.agent;
    info.model = in.model;
    info.env = in.env;
    info.verify = in.verify;
    info.parent = parent;
    info.created_at_ms = now;
    info.updated_at_ms = now;
    if (!in.repo.empty()) info.branch = WorktreeBranch(info.id);
    FORGE_RETURN_IF_ERROR(InsertTask(in, info, max_seq + 1 + static_cast<int64_t>(i)));
    if (progress && (i + 1) % kProgressEvery == 0) progress();
  }
  // Dependencies after all rows exist: a batch may depend forward on itself.
  FORGE_ASSIGN_OR_RETURN(Stmt dep, conn.Prepare("INSERT OR IGNORE INTO task_deps(task_id, dep_id) "
                                                "VALUES(?, ?)"));
  for (size_t i = 0; i < tasks.size(); ++i) {
    for (const auto& d : tasks[i].depends_on) {
      auto it = local.find(d);
      const std::string& resolved = it != local.end() ? ids[it->second] : d;
      FORGE_RETURN_IF_ERROR(dep.Bind(ids[i], resolved).Run());
      sqlite3_reset(dep.raw());
    }
    if (progress && (i + 1) % kProgressEvery == 0) progress();
  }
  waits.Propagate(ids);
  for (size_t i = 0; i < tasks.size(); ++i) {
    if (waits.root[i] >= 0) {
      FORGE_RETURN_IF_ERROR(WaitingEvent(ids[i], waits.roots[waits.root[i]], waits.via[i]));
    }
    if (progress && (i + 1) % kProgressEvery == 0) progress();
  }
  if (progress) progress();  // the commit and the events file's lines come next
  return ids;
}

Status Store::Impl::InsertTask(const proto::SubmitTask& in, const TaskInfo& info, int64_t seq) {
  FORGE_ASSIGN_OR_RETURN(
      Stmt s,
      conn.Prepare("INSERT INTO tasks(seq, id, title, brief, kind, state, priority, max_attempts, "
                   "needs_approval, approved, allow_empty, repo, base, agent, model, env, verify, "
                   "depends_on, parent, created_at, updated_at, branch) "
                   "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  FORGE_RETURN_IF_ERROR(s.Bind(seq, info.id, info.title, info.brief, info.kind, Str(info.state),
                               info.priority, info.max_attempts, info.needs_approval,
                               info.allow_empty, info.repo, info.base, info.agent, info.model,
                               JsonColumnText(info.env), JsonColumnText(info.verify),
                               JsonColumnText(info.depends_on), info.parent, info.created_at_ms,
                               info.updated_at_ms, info.branch)
                            .Run());
  // The event is operator-facing: secret env values never go into it, nor
  // into any text of it (InsertEvent scrubs them).
  RememberTaskSecrets(info.id, SecretValues(info.env));
  TaskInfo redacted = info;
  redacted.env = RedactEnv(info.env);
  json payload = redacted;
  payload.erase("base_commit");  // known at the first attempt, never at a submit
  payload["state"] = Str(info.state);
  if (!in.id.empty()) payload["local_id"] = in.id;
  FORGE_ASSIGN_OR_RETURN(
      bool inserted,
      InsertEvent("task.submitted", info.id, 0, EventKey(info.id, "0", "task.submitted"), payload));
  (void)inserted;
  return Status::Ok();
}

// ---------------------------------------------------------------- dispatch

Result<std::optional<TaskInfo>> Store::NextReady() {
  return NextReady(1, nullptr);
}

Result<std::optional<TaskInfo>> Store::NextReady(
    int limit, const std::function<bool(const std::string&)>& skip) {
  FORGE_ASSIGN_OR_RETURN(auto rows, impl_->QueryTasks(kNextReadyWhere, int64_t{limit}));
  for (auto& row : rows) {
    if (!skip || !skip(row.info.id)) return std::optional<TaskInfo>(std::move(row.info));
  }
  return std::optional<TaskInfo>();
}

Result<AttemptInfo> Store::LeaseAttempt(const std::string& task_id, const Lease& lease) {
  Impl& m = *impl_;
  return m.Write("lease " + task_id, [&]() -> Result<AttemptInfo> {
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(task_id));
    if (t.info.state != TaskState::kReady) {
      return MakeError(ErrorCode::kConflict,
                       "task " + task_id + " is " + Str(t.info.state) + ", not ready");
    }
    AttemptInfo a;
    a.task_id = task_id;
    a.n = t.info.total_attempts + 1;
    a.counted = lease.counted;
    a.worker_pid = lease.worker_pid;
    a.model = lease.model;
    a.log_path = lease.log_path;
    a.started_at_ms = m.Now();
    FORGE_ASSIGN_OR_RETURN(
        Stmt ins, m.conn.Prepare("INSERT INTO attempts(task_id, n, counted, worker_pid, model, "
                                 "log_path, started_at) VALUES(?, ?, ?, ?, ?, ?, ?)"));
    FORGE_RETURN_IF_ERROR(
        ins.Bind(a.task_id, a.n, a.counted, a.worker_pid, a.model, a.log_path, a.started_at_ms)
            .Run());
    a.id = sqlite3_last_insert_rowid(m.conn.db());
    FORGE_RETURN_IF_ERROR(
        m.AttemptEvent(a, "attempt.started",
                       proto::JsonObject("attempt_id", a.id, "n", a.n, "worker_pid", a.worker_pid,
                                         "model", a.model, "counted", a.counted)));
    FORGE_RETURN_IF_ERROR(m.Transition(t, TaskState::kRunning,
                                       proto::JsonObject("attempt_id", a.id), a.n,
                                       "total_attempts = total_attempts + 1, "
                                       "attempts = attempts + ?, not_before = 0",
                                       lease.counted ? 1 : 0));
    return a;
  });
}

Status Store::MarkAgentStarted(int64_t attempt_id, int64_t agent_pid, int64_t pgid,
                               int64_t agent_start_time, const std::string& base_commit) {
  Impl& m = *impl_;
  return m.Write("record agent start", [&]() -> Status {
    FORGE_ASSIGN_OR_RETURN(AttemptRow a, m.LoadAttempt(attempt_id));
    // The worktree was made at it whatever became of the attempt since.
    FORGE_RETURN_IF_ERROR(m.RecordBaseCommit(a.info, base_commit));
    if (a.ended) return Status::Ok();  // late
    return m.RecordAgentStart(a, agent_pid, pgid, agent_start_time);
  });
}

Result<RecordedResult> Store::RecordAgentResult(int64_t attempt_id, const AgentReport& r) {
  Impl& m = *impl_;
  return m.Write("record agent result", [&]() -> Result<RecordedResult> {
    RecordedResult out;
    FORGE_ASSIGN_OR_RETURN(AttemptRow a, m.LoadAttempt(attempt_id));
    out.closed = a.ended;
    out.attempt = a.info;
    if (a.reported) return out;  // already past this step
    out.recorded = true;
    FORGE_RETURN_IF_ERROR(m.RecordBaseCommit(a.info, r.base_commit));
    // An agent that ended before its worker reported its start: the start
    // first, so the events read in the order things happened. Its pid and
    // group go into the row with the result, in one UPDATE.
    bool first_start = !a.ended && r.agent_pid != 0 && a.info.agent_pid == 0;
    if (first_start) FORGE_RETURN_IF_ERROR(m.AgentStartedEvent(a.info, r.agent_pid, r.pgid));
    // A result for an attempt closed before it (a cancel, a shutdown) keeps
    // the close's error and duration; what the agent spent, its session and
    // its exit are recorded all the same: the money was spent.
    FORGE_ASSIGN_OR_RETURN(
        Stmt s,
        m.conn.Prepare("UPDATE attempts SET reported_at = ?, exit_code = ?, signal = ?, "
                       "duration_ms = CASE WHEN ended_at IS NULL THEN ? ELSE duration_ms END, "
                       "cost_usd = cost_usd + ?, tokens_in = tokens_in + ?, "
                       "tokens_out = tokens_out + ?, num_turns = ?, session_id = ?, "
                       "model = CASE WHEN ? = '' THEN model ELSE ? END, "
                       "error = CASE WHEN ended_at IS NULL THEN ? ELSE error END, "
                       "log_path = CASE WHEN ? = '' THEN log_path ELSE ? END, "
                       "agent_pid = CASE WHEN ? THEN ? ELSE agent_pid END, "
                       "agent_pgid = CASE WHEN ? THEN ? ELSE agent_pgid END WHERE id = ?"));
    FORGE_RETURN_IF_ERROR(s.Bind(m.Now(), r.exit_code, r.signal, r.duration_ms, r.cost_usd,
                                 r.tokens_in, r.tokens_out, r.num_turns, r.session_id, r.model,
                                 r.model, r.error, r.log_path, r.log_path, first_start, r.agent_pid,
                                 first_start, r.pgid, attempt_id)
                              .Run());
    json result =
        proto::JsonObject("attempt_id", attempt_id, "outcome", Str(r.outcome), "exit_code",
                          r.exit_code, "signal", r.signal, "duration_ms", r.duration_ms, "cost_usd",
                          r.cost_usd, "tokens_in", r.tokens_in, "tokens_out", r.tokens_out,
                          "num_turns", r.num_turns, "session_id", r.session_id, "error", r.error);
    if (r.cost_estimated) result["cost_estimated"] = true;
    if (!r.log_error.empty()) result["log_error"] = r.log_error;
    if (a.ended) result["after_close"] = true;
    FORGE_RETURN_IF_ERROR(m.AttemptEvent(a.info, "attempt.result", result));
    static const std::string kAddCost =
        "cost_usd = cost_usd + ?, tokens_in = tokens_in + ?, tokens_out = tokens_out + ?";
    auto add_cost = [&]() -> Status {
      FORGE_ASSIGN_OR_RETURN(Stmt cost,
                             m.conn.Prepare("UPDATE tasks SET " + kAddCost + " WHERE id = ?"));
      return cost.Bind(r.cost_usd, r.tokens_in, r.tokens_out, a.info.task_id).Run();
    };
    if (a.ended || r.outcome != Outcome::kPassed) {  // CloseAttempt decides (or did)
      FORGE_RETURN_IF_ERROR(add_cost());
      return out;
    }
    // A passed result moves the task to review: the spend goes into its row
    // in the same UPDATE.
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(a.info.task_id));
    if (t.info.state == TaskState::kRunning) {
      FORGE_RETURN_IF_ERROR(m.Transition(t, TaskState::kReviewing,
                                         proto::JsonObject("attempt_id", attempt_id), a.info.n,
                                         kAddCost, r.cost_usd, r.tokens_in, r.tokens_out));
    } else {
      FORGE_RETURN_IF_ERROR(add_cost());
    }
    t.info.cost_usd += r.cost_usd;
    t.info.tokens_in += r.tokens_in;
    t.info.tokens_out += r.tokens_out;
    out.task = std::move(t.info);
    return out;
  });
}

Status Store::CloseAttempt(int64_t attempt_id, const Close& close) {
  // A bad argument is refused whatever the attempt's state.
  if (proto::IsActive(close.next_state)) return InvalidNextState(attempt_id, close.next_state);
  auto closed =
      CloseAttempt(attempt_id, [&](const AttemptInfo&, const TaskInfo&) { return close; });
  return closed.ok() ? Status::Ok() : Status(closed.error());
}

Result<std::optional<Close>> Store::CloseAttempt(int64_t attempt_id, const CloseDecision& decide) {
  Impl& m = *impl_;
  using Written = std::optional<Close>;
  return m.Write("close attempt " + std::to_string(attempt_id), [&]() -> Result<Written> {
    FORGE_ASSIGN_OR_RETURN(AttemptRow a, m.LoadAttempt(attempt_id));
    if (a.ended) return Written();  // closed before: nothing changes
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(a.info.task_id));
    Close close = decide(a.info, t.info);
    if (proto::IsActive(close.next_state)) return InvalidNextState(attempt_id, close.next_state);
    FORGE_RETURN_IF_ERROR(m.CloseOpenAttempt(a, close, t));
    return Written(std::move(close));
  });
}

Result<std::optional<AttemptInfo>> Store::AddCriticSpend(int64_t attempt_id, int review,
                                                         double cost_usd, int64_t tokens_in,
                                                         int64_t tokens_out, bool estimated) {
  Impl& m = *impl_;
  using Added = std::optional<AttemptInfo>;
  return m.Write(
      "add the critic's spend to attempt " + std::to_string(attempt_id), [&]() -> Result<Added> {
        FORGE_ASSIGN_OR_RETURN(AttemptRow a, m.LoadAttempt(attempt_id));
        if (review == 0 && !a.ended) {
          return MakeError(ErrorCode::kConflict,
                           "attempt " + std::to_string(attempt_id) +
                               " is open: its close carries the critic's spend");
        }
        // The event's key makes the spend count once.
        FORGE_ASSIGN_OR_RETURN(
            bool inserted,
            m.InsertEvent("attempt.critic_cost", a.info.task_id, a.info.n,
                          EventKey(a.info.task_id,
                                   "a" + std::to_string(attempt_id) +
                                       (review == 0 ? "" : "r" + std::to_string(review)),
                                   "attempt.critic_cost"),
                          [&] {
                            json spend = proto::JsonObject(
                                "attempt_id", attempt_id, "review", review, "cost_usd", cost_usd,
                                "tokens_in", tokens_in, "tokens_out", tokens_out);
                            if (estimated) spend["cost_estimated"] = true;
                            return spend;
                          }()));
        if (!inserted) return Added();
        static const std::string kAdd =
            " SET cost_usd = cost_usd + ?, tokens_in = tokens_in + ?, "
            "tokens_out = tokens_out + ? WHERE ";
        FORGE_ASSIGN_OR_RETURN(Stmt attempt, m.conn.Prepare("UPDATE attempts" + kAdd + "id = ?"));
        FORGE_RETURN_IF_ERROR(attempt.Bind(cost_usd, tokens_in, tokens_out, attempt_id).Run());
        FORGE_ASSIGN_OR_RETURN(Stmt task, m.conn.Prepare("UPDATE tasks" + kAdd + "id = ?"));
        FORGE_RETURN_IF_ERROR(task.Bind(cost_usd, tokens_in, tokens_out, a.info.task_id).Run());
        a.info.cost_usd += cost_usd;
        a.info.tokens_in += tokens_in;
        a.info.tokens_out += tokens_out;
        return Added(std::move(a.info));
      });
}

// The attempt's final `counted` is close.counted: the task's attempts counter
// is corrected by the difference from what the lease assumed, and an
// uncounted close with an infra outcome is an infra retry.
Status Store::Impl::CloseOpenAttempt(AttemptRow& a, const Close& close, TaskRow& t) {
  int64_t now = Now();
  AttemptInfo& info = a.info;
  info.ended_at_ms = now;
  if (info.duration_ms == 0) info.duration_ms = now - info.started_at_ms;
  info.outcome = Str(close.outcome);
  if (!close.error.empty()) info.error = close.error;
  int delta = (close.counted ? 1 : 0) - (info.counted ? 1 : 0);
  info.counted = close.counted;
  info.fingerprint = close.fingerprint;
  info.verdict = close.verdict;
  info.findings = close.findings;
  info.checks = close.checks;
  info.commit = close.commit;
  info.cost_usd += close.cost_usd;
  info.tokens_in += close.tokens_in;
  info.tokens_out += close.tokens_out;
  FORGE_ASSIGN_OR_RETURN(
      Stmt s, conn.Prepare("UPDATE attempts SET ended_at = ?, duration_ms = ?, outcome = ?, "
                           "error = ?, counted = ?, fingerprint = ?, verdict = ?, findings = ?, "
                           "checks = ?, commit_id = ?, cost_usd = cost_usd + ?, "
                           "tokens_in = tokens_in + ?, tokens_out = tokens_out + ? WHERE id = ?"));
  FORGE_RETURN_IF_ERROR(s.Bind(now, info.duration_ms, info.outcome, info.error, info.counted,
                               info.fingerprint, info.verdict, JsonColumnText(info.findings),
                               JsonColumnText(info.checks), info.commit, close.cost_usd,
                               close.tokens_in, close.tokens_out, info.id)
                            .Run());
  json ended = proto::JsonObject(
      "attempt_id", info.id, "outcome", info.outcome, "error", info.error, "duration_ms",
      info.duration_ms, "counted", info.counted, "fingerprint", info.fingerprint, "verdict",
      info.verdict, "findings", info.findings.size(), "commit", info.commit);
  if (close.cost_usd != 0 || close.tokens_in != 0 || close.tokens_out != 0) {
    ended["critic_cost_usd"] = close.cost_usd;
    ended["critic_tokens_in"] = close.tokens_in;
    ended["critic_tokens_out"] = close.tokens_out;
    if (close.cost_estimated) ended["critic_cost_estimated"] = true;
  }
  if (!close.review_log_error.empty()) ended["review_log_error"] = close.review_log_error;
  FORGE_RETURN_IF_ERROR(AttemptEvent(info, "attempt.ended", ended));

  TaskState next = close.next_state;
  bool settled = proto::IsSettled(next);
  std::string last_error = t.info.last_error;
  if (!close.error.empty()) last_error = close.error;
  if (next == TaskState::kBlocked && close.error.empty() && !close.reason.empty()) {
    last_error = close.reason;
  }
  int64_t not_before = next == TaskState::kCooldown ? close.not_before_ms : 0;
  bool infra = !close.counted && (close.infra || proto::IsInfraOutcome(close.outcome));
  json payload = proto::JsonObject("attempt_id", info.id, "outcome", info.outcome);
  if (!close.reason.empty()) payload["reason"] = close.reason;
  if (next == TaskState::kCooldown) payload["not_before"] = proto::TimeToJson(not_before);
  FORGE_RETURN_IF_ERROR(Transition(
      t, next, payload, info.n,
      "attempts = MAX(attempts + ?, 0), infra_retries = infra_retries + ?, last_error = ?, "
      "last_fingerprint = CASE WHEN ? = '' THEN last_fingerprint ELSE ? END, not_before = ?, "
      "finished_at = ?, commit_id = CASE WHEN ? = '' THEN commit_id ELSE ? END, "
      "cost_usd = cost_usd + ?, tokens_in = tokens_in + ?, tokens_out = tokens_out + ?",
      delta, infra ? 1 : 0, last_error, close.fingerprint, close.fingerprint, not_before,
      settled ? now : int64_t{0}, close.commit, close.commit, close.cost_usd, close.tokens_in,
      close.tokens_out));
  if (next != TaskState::kDone) return Status::Ok();
  if (close.spawn) {
    FORGE_ASSIGN_OR_RETURN(auto ids, InsertBatch({*close.spawn}, t.info.id));
    FORGE_ASSIGN_OR_RETURN(bool inserted,
                           InsertEvent("task.expanded", t.info.id, info.n,
                                       EventKey(t.info.id, std::to_string(info.n), "task.expanded"),
                                       json{{"attempt_id", info.id}, {"spec_task", ids.front()}}));
    (void)inserted;
  }
  return PromoteDependents(t.info.id);
}

Result<int> Store::PromoteDue(int64_t now_wall_ms) {
  // A read first: the timer calls this often and usually nothing is due.
  FORGE_ASSIGN_OR_RETURN(auto due, NextDue());
  if (!due || *due > now_wall_ms) return 0;
  Impl& m = *impl_;
  return m.Write("promote cooldown tasks", [&]() -> Result<int> {
    FORGE_ASSIGN_OR_RETURN(
        auto rows, m.QueryTasks("INDEXED BY tasks_due WHERE state = 'cooldown' AND not_before <= ? "
                                "ORDER BY not_before",
                                now_wall_ms));
    for (auto& t : rows) {
      FORGE_RETURN_IF_ERROR(m.Transition(t, TaskState::kReady, json{{"reason", "cooldown over"}}));
    }
    return static_cast<int>(rows.size());
  });
}

Result<std::optional<int64_t>> Store::NextDue() {
  FORGE_ASSIGN_OR_RETURN(
      Stmt s, impl_->conn.Prepare("SELECT MIN(not_before) FROM tasks INDEXED BY tasks_due "
                                  "WHERE state = 'cooldown'"));
  FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row || s.IsNull(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(s.Int(0));
}

Result<int> Store::ClampDue(int64_t latest_wall_ms) {
  Impl& m = *impl_;
  return m.Write("clamp cooldown deadlines", [&]() -> Result<int> {
    FORGE_ASSIGN_OR_RETURN(Stmt s,
                           m.conn.Prepare("UPDATE tasks INDEXED BY tasks_due SET not_before = ? "
                                          "WHERE state = 'cooldown' AND not_before > ?"));
    FORGE_RETURN_IF_ERROR(s.Bind(latest_wall_ms, latest_wall_ms).Run());
    return static_cast<int>(m.conn.Changes());
  });
}

// ---------------------------------------------------------------- operator actions

Result<Change> Store::Approve(const std::string& task_id) {
  Impl& m = *impl_;
  return m.Write("approve " + task_id, [&]() -> Result<Change> {
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(task_id));
    Change change;
    change.previous = change.current = t.info.state;
    if (t.info.approved) return change;
    if (proto::IsSettled(t.info.state)) {
      // A done task cannot be retried, so the hint is for the others only.
      const char* hint =
          t.info.state == TaskState::kDone ? "; nothing to approve" : "; retry it before approving";
      return MakeError(ErrorCode::kConflict, "task " + task_id + " is " + Str(t.info.state) + hint);
    }
    // It was answered "unchanged (approved)" with a task.approved event in
    // its history, an approval that gated nothing.
    if (!t.info.needs_approval) {
      return MakeError(ErrorCode::kConflict, "task " + task_id +
                                                 " does not need approval (it was submitted "
                                                 "without needs_approval)");
    }
    FORGE_ASSIGN_OR_RETURN(Stmt s, m.conn.Prepare("UPDATE tasks SET approved = 1, updated_at = ? "
                                                  "WHERE seq = ?"));
    FORGE_RETURN_IF_ERROR(s.Bind(m.Now(), t.seq).Run());
    t.info.approved = true;
    FORGE_ASSIGN_OR_RETURN(
        bool inserted, m.InsertEvent("task.approved", task_id, 0,
                                     EventKey(task_id, std::to_string(t.version), "task.approved"),
                                     json::object()));
    (void)inserted;
    FORGE_RETURN_IF_ERROR(m.MaybeRelease(t, "approved"));
    change.current = t.info.state;
    return change;
  });
}

Result<Change> Store::Retry(const std::string& task_id) {
  Impl& m = *impl_;
  return m.Write("retry " + task_id, [&]() -> Result<Change> {
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(task_id));
    Change change;
    change.previous = change.current = t.info.state;
    if (t.info.state != TaskState::kBlocked && t.info.state != TaskState::kCancelled) {
      return MakeError(ErrorCode::kConflict,
                       "task " + task_id + " is " + Str(t.info.state) +
                           "; only blocked or cancelled tasks can be retried");
    }
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, m.conn.Prepare("UPDATE tasks SET attempts = 0, infra_retries = 0, not_before = 0, "
                               "finished_at = 0, last_fingerprint = '' WHERE seq = ?"));
    FORGE_RETURN_IF_ERROR(s.Bind(t.seq).Run());
    FORGE_RETURN_IF_ERROR(m.Transition(t, TaskState::kPending, json{{"reason", "retry"}}));
    FORGE_RETURN_IF_ERROR(m.MaybeRelease(t, "retry"));
    FORGE_ASSIGN_OR_RETURN(auto stuck_on, m.RenoteAround(t));
    if (stuck_on) {
      change.stuck_on = stuck_on->info.id;
      change.stuck_on_state = stuck_on->info.state;
    }
    change.current = t.info.state;
    return change;
  });
}

Result<Change> Store::Block(const std::string& task_id, const std::string& reason,
                            const json& payload) {
  Impl& m = *impl_;
  return m.Write("block " + task_id, [&]() -> Result<Change> {
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(task_id));
    Change change;
    change.previous = t.info.state;
    change.current = TaskState::kBlocked;
    if (t.info.state != TaskState::kReady) {
      return MakeError(ErrorCode::kConflict, "task " + task_id + " is " + Str(t.info.state) +
                                                 "; only a ready task is blocked this way");
    }
    json extra = payload.is_object() ? payload : json::object();
    extra["reason"] = reason;
    // last_error stays the last attempt's (cli.md): the reason is the
    // task.blocked event's, which show prints as the state's reason.
    FORGE_RETURN_IF_ERROR(
        m.Transition(t, TaskState::kBlocked, extra, 0, "finished_at = ?, not_before = 0", m.Now()));
    return change;
  });
}

Result<Change> Store::Cancel(const std::string& task_id, const std::string& reason) {
  Impl& m = *impl_;
  return m.Write("cancel " + task_id, [&]() -> Result<Change> {
    FORGE_ASSIGN_OR_RETURN(TaskRow t, m.LoadTask(task_id));
    Change change;
    change.previous = t.info.state;
    change.current = TaskState::kCancelled;
    // A cancel again (a cleanup script run twice, or run again after a
    // cancel it got no answer to) has nothing left to do: ok, no change,
    // no event, as an approve again (session 35: it was refused).
    if (t.info.state == TaskState::kCancelled) return change;
    if (proto::IsSettled(t.info.state)) {
      return MakeError(ErrorCode::kConflict, "task " + task_id + " is already " +
                                                 Str(t.info.state) + "; nothing to cancel");
    }
    FORGE_ASSIGN_OR_RETURN(auto open, m.OpenAttemptOf(task_id));
    Close close;
    close.outcome = Outcome::kCancelled;
    close.error = reason.empty() ? "cancelled" : reason;
    close.next_state = TaskState::kCancelled;
    close.reason = reason;
    if (open) {
      close.counted = open->info.counted;
      FORGE_RETURN_IF_ERROR(m.CloseOpenAttempt(*open, close, t));
      change.open_attempt = open->info;
      return change;
    }
    json payload = json::object();
    if (!reason.empty()) payload["reason"] = reason;
    FORGE_ASSIGN_OR_RETURN(Stmt s,
                           m.conn.Prepare("UPDATE tasks SET finished_at = ?, not_before = 0 "
                                          "WHERE seq = ?"));
    FORGE_RETURN_IF_ERROR(s.Bind(m.Now(), t.seq).Run());
    FORGE_RETURN_IF_ERROR(m.Transition(t, TaskState::kCancelled, payload));
    return change;
  });
}

// ---------------------------------------------------------------- queries

Result<std::vector<AttemptInfo>> Store::OpenAttempts() {
  FORGE_ASSIGN_OR_RETURN(auto rows, impl_->QueryAttempts("WHERE ended_at IS NULL ORDER BY id"));
  std::vector<AttemptInfo> out;
  for (auto& r : rows) out.push_back(std::move(r.info));
  return out;
}

Result<TaskInfo> Store::GetTask(const std::string& task_id) {
  FORGE_ASSIGN_OR_RETURN(TaskRow t, impl_->LoadTask(task_id));
  return std::move(t.info);
}

Result<std::map<std::string, std::string>> Store::TaskEnv(const std::string& task_id) {
  FORGE_ASSIGN_OR_RETURN(TaskRow t, impl_->LoadTask(task_id));
  return std::move(t.info.env);
}

Result<std::vector<TaskInfo>> Store::ListTasks(const ListFilter& filter) {
  std::string sql = filter.state ? "WHERE state = ? " : "WHERE ? IS NULL ";
  sql += filter.newest_first ? "ORDER BY seq DESC LIMIT ?" : "ORDER BY seq LIMIT ?";
  std::string state = filter.state ? Str(*filter.state) : "";
  int64_t limit = filter.limit > 0 ? filter.limit : -1;
  Result<std::vector<TaskRow>> rows =
      filter.state ? impl_->QueryTasks(sql, state, limit) : impl_->QueryTasks(sql, nullptr, limit);
  if (!rows.ok()) return rows.error();
  std::vector<TaskInfo> out;
  for (auto& r : *rows) out.push_back(std::move(r.info));
  return out;
}

Result<std::vector<AttemptInfo>> Store::Attempts(const std::string& task_id) {
  FORGE_ASSIGN_OR_RETURN(TaskRow t, impl_->LoadTask(task_id));
  FORGE_ASSIGN_OR_RETURN(auto rows, impl_->QueryAttempts("WHERE task_id = ? ORDER BY n", task_id));
  std::vector<AttemptInfo> out;
  for (auto& r : rows) out.push_back(std::move(r.info));
  return out;
}

Result<AttemptInfo> Store::GetAttempt(int64_t attempt_id) {
  FORGE_ASSIGN_OR_RETURN(AttemptRow a, impl_->LoadAttempt(attempt_id));
  return std::move(a.info);
}

Result<std::vector<proto::AttemptSummary>> Store::History(const std::string& task_id, int limit) {
  FORGE_ASSIGN_OR_RETURN(TaskRow t, impl_->LoadTask(task_id));
  FORGE_ASSIGN_OR_RETURN(
      auto rows, impl_->QueryAttempts("WHERE task_id = ? AND ended_at IS NOT NULL "
                                      "ORDER BY n DESC LIMIT ?",
                                      task_id, static_cast<int64_t>(limit > 0 ? limit : -1)));
  std::vector<proto::AttemptSummary> out;
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    proto::AttemptSummary s;
    s.n = it->info.n;
    s.outcome = it->info.outcome;
    s.error = it->info.error;
    for (const auto& c : it->info.checks) {
      if (!c.passed) s.failing_checks.push_back(c);
    }
    s.findings = it->info.findings;
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<EventInfo>> Store::Events(const EventFilter& f) {
  // One statement per filter combination, so a task's timeline reads the
  // events_task index rather than every event.
  // The newest are read backwards and put back in order by the outer query.
  std::string sql = "SELECT seq, ts, kind, task_id, attempt, payload FROM events WHERE seq > ?";
  if (f.before_seq > 0) sql += " AND seq < ?";
  if (!f.task_id.empty()) sql += " AND task_id = ?";
  bool prefix = !f.kind.empty() && f.kind.back() == '.';
  if (prefix) {
    sql += " AND substr(kind, 1, length(?)) = ?";
  } else if (!f.kind.empty()) {
    sql += " AND kind = ?";
  }
  sql += f.newest ? " ORDER BY seq DESC LIMIT ?" : " ORDER BY seq LIMIT ?";
  if (f.newest) sql = "SELECT * FROM (" + sql + ") ORDER BY seq";
  int64_t limit = f.limit > 0 ? f.limit : -1;
  return impl_->ReadEventsWith(sql, [&](Stmt& s) {
    int i = 1;
    s.BindOne(i++, f.since_seq);
    if (f.before_seq > 0) s.BindOne(i++, f.before_seq);
    if (!f.task_id.empty()) s.BindOne(i++, f.task_id);
    if (prefix) s.BindOne(i++, f.kind);
    if (!f.kind.empty()) s.BindOne(i++, f.kind);
    s.BindOne(i++, limit);
  });
}

Result<proto::ShowReply> Store::Show(const std::string& task_id, int timeline_max) {
  proto::ShowReply reply;
  FORGE_ASSIGN_OR_RETURN(reply.task, GetTask(task_id));
  FORGE_ASSIGN_OR_RETURN(reply.attempts, Attempts(task_id));
  EventFilter filter;
  filter.task_id = task_id;
  filter.limit = timeline_max;
  filter.newest = true;
  FORGE_ASSIGN_OR_RETURN(reply.timeline, Events(filter));
  if (timeline_max > 0 && reply.timeline.size() >= static_cast<size_t>(timeline_max)) {
    FORGE_ASSIGN_OR_RETURN(
        Stmt s, impl_->conn.Prepare("SELECT COUNT(*) FROM events WHERE task_id = ? AND seq < ?"));
    s.Bind(task_id, reply.timeline.front().seq);
    FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) reply.timeline_omitted = s.Int(0);
  }
  const TaskState state = reply.task.state;
  if (state == TaskState::kBlocked || state == TaskState::kCancelled) {
    // The event that moved the task there: the newest of its kind, in the
    // timeline unless later events pushed it out.
    const std::string kind = "task." + Str(state);
    auto moved = std::find_if(reply.timeline.rbegin(), reply.timeline.rend(),
                              [&](const EventInfo& e) { return e.kind == kind; });
    if (moved != reply.timeline.rend()) {
      reply.state_reason = proto::LenientString(moved->payload, "reason");
    } else if (reply.timeline_omitted > 0) {
      FORGE_ASSIGN_OR_RETURN(reply.state_reason, StateReason(task_id, state));
    }
  }
  return reply;
}

Result<std::string> Store::StateReason(const std::string& task_id, TaskState state) {
  if (state != TaskState::kBlocked && state != TaskState::kCancelled) return std::string();
  EventFilter filter;
  filter.task_id = task_id;
  filter.kind = "task." + Str(state);
  filter.limit = 1;
  filter.newest = true;
  FORGE_ASSIGN_OR_RETURN(auto moved, Events(filter));
  if (moved.empty()) return std::string();
  return proto::LenientString(moved.back().payload, "reason");
}

Result<proto::ListReply> Store::List(const ListFilter& filter) {
  proto::ListReply reply;
  FORGE_ASSIGN_OR_RETURN(reply.tasks, ListTasks(filter));
  for (const TaskInfo& t : reply.tasks) {
    FORGE_ASSIGN_OR_RETURN(std::string reason, StateReason(t.id, t.state));
    if (!reason.empty()) reply.state_reasons[t.id] = std::move(reason);
  }
  return reply;
}

Result<int64_t> Store::LastEventSeq() {
  return impl_->conn.QueryInt("SELECT IFNULL(MAX(seq), 0) FROM events");
}

Result<std::map<std::string, int64_t>> Store::QueueCounts() {
  std::map<std::string, int64_t> out;
  for (TaskState s : proto::AllStates()) out[Str(s)] = 0;
  // task_counts is kept by triggers (schema v2); a GROUP BY over tasks here
  // made status O(queue).
  FORGE_ASSIGN_OR_RETURN(Stmt s, impl_->conn.Prepare("SELECT state, n FROM task_counts"));
  for (;;) {
    FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    out[s.Text(0)] = s.Int(1);
  }
}

Result<std::vector<std::string>> Store::CountMismatches() {
  FORGE_ASSIGN_OR_RETURN(
      Stmt s,
      impl_->conn.Prepare("SELECT state, SUM(counted), SUM(actual) FROM ("
                          "  SELECT state, n AS counted, 0 AS actual FROM task_counts"
                          "  UNION ALL SELECT state, 0, COUNT(*) FROM tasks GROUP BY state"
                          ") GROUP BY state HAVING SUM(counted) != SUM(actual) ORDER BY state"));
  std::vector<std::string> out;
  for (;;) {
    FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    out.push_back(s.Text(0) + ": counted " + std::to_string(s.Int(1)) + ", actual " +
                  std::to_string(s.Int(2)));
  }
}

Result<double> Store::CostSince(int64_t wall_ms) {
  FORGE_ASSIGN_OR_RETURN(Stmt s, impl_->conn.Prepare("SELECT IFNULL(SUM(cost_usd), 0) FROM "
                                                     "attempts WHERE started_at >= ?"));
  FORGE_ASSIGN_OR_RETURN(bool row, s.Bind(wall_ms).Step());
  return row ? s.Real(0) : 0.0;
}

Result<std::vector<AttemptInfo>> Store::RecentAttempts(int limit) {
  FORGE_ASSIGN_OR_RETURN(
      auto rows, impl_->QueryAttempts("WHERE ended_at IS NOT NULL ORDER BY ended_at DESC, id DESC "
                                      "LIMIT ?",
                                      static_cast<int64_t>(limit > 0 ? limit : -1)));
  std::vector<AttemptInfo> out;
  for (auto& r : rows) out.push_back(std::move(r.info));
  return out;
}

Result<std::optional<proto::LastFailure>> Store::LastFailure() {
  FORGE_ASSIGN_OR_RETURN(auto recent, RecentAttempts(kLastFailureWindow));
  for (const auto& a : recent) {
    // An operator's cancel is not a failure.
    if (a.outcome == "passed" || a.outcome == "cancelled") continue;
    return std::optional<proto::LastFailure>(
        proto::LastFailure{a.task_id, a.n, a.outcome, a.error, a.ended_at_ms});
  }
  return std::optional<proto::LastFailure>();
}

// ---------------------------------------------------------------- events, cursors

Status Store::Emit(const std::string& kind, const json& payload, const std::string& task_id,
                   int attempt, const std::string& idem_key) {
  if (kind.empty()) return MakeError(ErrorCode::kInvalid, "event kind is empty");
  Impl& m = *impl_;
  std::string key = idem_key;
  if (key.empty()) {
    // Unique, not idempotent: the wall time first, so these keys too go to
    // the end of the index (see EventKey), then random bits.
    char buf[48];
    std::snprintf(buf, sizeof buf, "u:%016llx%016llx",
                  static_cast<unsigned long long>(m.clock->WallMs()),
                  static_cast<unsigned long long>(m.rng()));
    key = buf;
  }
  return m.Write("emit " + kind, [&]() -> Status {
    auto inserted = m.InsertEvent(kind, task_id, attempt, key, payload);
    return inserted.ok() ? Status::Ok() : Status(inserted.error());
  });
}

Result<std::optional<std::string>> Store::OperatorPause() {
  FORGE_ASSIGN_OR_RETURN(
      Stmt s, impl_->conn.Prepare("SELECT value FROM meta WHERE key = 'operator_pause'"));
  FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? std::optional<std::string>(s.Text(0)) : std::nullopt;
}

Status Store::SetOperatorPause(const std::optional<std::string>& reason) {
  Impl& m = *impl_;
  return m.Write(
      reason ? "record the operator's pause" : "clear the operator's pause", [&]() -> Status {
        if (!reason) return m.conn.Run("DELETE FROM meta WHERE key = 'operator_pause'");
        FORGE_ASSIGN_OR_RETURN(
            Stmt s, m.conn.Prepare("INSERT INTO meta(key, value) VALUES('operator_pause', ?) "
                                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
        return s.Bind(*reason).Run();
      });
}

Result<int64_t> Store::GetCursor(const std::string& name) {
  FORGE_ASSIGN_OR_RETURN(Stmt s, impl_->conn.Prepare("SELECT seq FROM cursors WHERE name = ?"));
  FORGE_ASSIGN_OR_RETURN(bool row, s.Bind(name).Step());
  return row ? s.Int(0) : int64_t{0};
}

Status Store::SetCursor(const std::string& name, int64_t seq) {
  if (name.empty()) return MakeError(ErrorCode::kInvalid, "cursor name is empty");
  Impl& m = *impl_;
  return m.Write("set cursor " + name, [&] { return m.SetCursorRow(name, seq); });
}

// ---------------------------------------------------------------- replay, integrity

Status Store::ReadConsistently(const std::function<Status()>& reads) {
  FORGE_RETURN_IF_ERROR(impl_->conn.Run("BEGIN"));
  Status st = reads();
  Status end = impl_->conn.Run("COMMIT");  // a read transaction: nothing to write
  if (!end.ok()) (void)impl_->conn.Run("ROLLBACK");
  return st.ok() ? end : st;
}

Result<std::map<std::string, TaskState>> Store::ReplayStates() {
  FORGE_ASSIGN_OR_RETURN(Stmt s,
                         impl_->conn.Prepare("SELECT seq, kind, task_id, payload FROM events WHERE "
                                             "substr(kind, 1, 5) = 'task.' ORDER BY seq"));
  std::map<std::string, TaskState> states;
  for (;;) {
    FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return states;
    std::string kind = s.Text(1);
    json payload = json::parse(s.Text(3), nullptr, false);
    const char* field = kind == "task.submitted" ? "state" : "to";
    if (!payload.is_object() || !payload.contains(field)) continue;  // task.approved etc.
    const json& name = payload[field];
    auto state = name.is_string() ? proto::ParseState(name.get<std::string>()) : std::nullopt;
    if (!state) {
      return MakeError(ErrorCode::kDb, "event " + std::to_string(s.Int(0)) + " (" + kind +
                                           ") names an unknown state");
    }
    states[s.Text(2)] = *state;
  }
}

Result<std::string> Store::IntegrityCheck() {
  FORGE_ASSIGN_OR_RETURN(Stmt s, impl_->conn.Prepare("PRAGMA integrity_check"));
  std::string out;
  for (;;) {
    FORGE_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return out;
    if (!out.empty()) out += "; ";
    out += s.Text(0);
  }
}

Status Store::Checkpoint(CheckpointMode mode) {
  bool truncate = mode == CheckpointMode::kTruncate;
  int rc = sqlite3_wal_checkpoint_v2(
      db_, nullptr, truncate ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE, nullptr,
      nullptr);
  if (rc != SQLITE_OK) {
    return SqlError(db_, rc,
                    truncate ? "checkpointing the WAL" : "checkpointing the WAL (passive)");
  }
  return Status::Ok();
}

int64_t Store::WalFrames() const {
  return impl_->wal_frames;
}

}  // namespace forge::store
