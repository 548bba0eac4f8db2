// The durable queue: tasks, dependencies, the attempts ledger, the event log
// and projection cursors in one SQLite file (WAL). The supervisor is the only
// writer; forge-ctl opens it read-only when no supervisor runs.
//
// Every mutating operation is one BEGIN IMMEDIATE transaction that writes the
// state change and its event(s) together. Events are emitted with an
// idempotency key (INSERT ... ON CONFLICT(idem_key) DO NOTHING); operations
// keyed on a one-time fact (an attempt's result, its close, a recovery) are
// no-ops when repeated. After commit each new event is appended to
// events.jsonl; on open, events.jsonl is brought up to date from the table
// (a torn last line is cut), so it always ends holding exactly the committed
// events. cursors['events.jsonl'] reports the file's position: set on open,
// then by the first write transaction once it lags 1,000 events or more.
//
// Event kinds: task.submitted (payload: the task, env redacted, "state"),
// task.<state> for every transition ({"from","to","reason"?,"not_before"?,
// "attempt_id"?}), task.approved, task.waiting ({"dependency",
// "dependency_state", "reason", "via"?}: a blocked or cancelled task it waits
// on), attempt.started, attempt.agent_started, attempt.base_recorded (the
// task's base commit, once), attempt.result ("after_close" for one that came
// after the close), attempt.ended, attempt.critic_cost (a critic's spend
// after the close), plus whatever Emit() is given. Keys:
// "<task>:<transition counter>:<kind>" for task events, "a<attempt id>:<kind>"
// for attempt events.
//
// Task states: pending (waiting on dependencies or approval), ready, running
// (attempt leased), reviewing (critic), cooldown (retry waits for
// not_before), done, blocked, cancelled. Ready selection reads the index
// tasks(state, priority DESC, seq): cost does not grow with queue length.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "proto/control.h"
#include "proto/types.h"
#include "supervisor/store/wal_checkpoint.h"

namespace forge::store {

using json = nlohmann::json;
using proto::AttemptInfo;
using proto::EventInfo;
using proto::Outcome;
using proto::TaskInfo;
using proto::TaskState;

inline constexpr int kSchemaVersion = 7;
// The first schema with submit_keys: a supervisor migrates its database when
// it starts, so a database below this one is run by a supervisor that does
// not know idempotency keys.
inline constexpr int kFirstSchemaWithSubmitKeys = 6;

struct StoreOptions {
  std::string db_path;            // .forge/forge.db
  std::string events_jsonl_path;  // .forge/events.jsonl; empty: none
  bool read_only = false;         // forge-ctl offline: never writes, never blocks the writer
  bool synchronous_full = false;  // database.synchronous: full
  int busy_timeout_ms = 5000;
  int default_max_attempts = 3;
  const Clock* clock = nullptr;  // nullptr: SystemClock
  // The owner checkpoints the WAL itself (the supervisor, off its loop; see
  // wal_checkpoint.h): no commit runs SQLite's automatic checkpoint, whose
  // two fsyncs would stall the committing thread (6 ms each on a VM disk).
  bool manual_checkpoints = false;
};

// One new attempt, leased to a worker.
struct Lease {
  int64_t worker_pid = 0;
  std::string model;     // model the attempt will use
  std::string log_path;  // where the worker writes the agent output
  bool counted = true;   // false for a re-run after an infra failure
};
// Attempt counting: LeaseAttempt increments total_attempts, and attempts when
// Lease.counted. CloseAttempt's Close.counted is final: the task's attempts
// counter is corrected by the difference (a counted lease closed uncounted
// gives its attempt back; an uncounted lease closed counted takes one), and
// an uncounted close with an infra outcome (lost, crashed, recovered)
// increments infra_retries; other uncounted closes (cancelled at shutdown,
// rate limits) increment neither. So after every close, attempts == closed
// counted attempts (+1 while a counted lease is open).

// The worker's report, recorded on the open attempt.
struct AgentReport {
  Outcome outcome = Outcome::kFailed;  // passed = agent succeeded, review next
  int exit_code = -1;
  int signal = 0;
  int64_t duration_ms = 0;
  double cost_usd = 0;
  // cost_usd is the tokens priced by the supervisor (budget.token_prices),
  // not a cost the agent reported: attempt.result says cost_estimated.
  bool cost_estimated = false;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  int64_t num_turns = 0;
  std::string session_id;
  std::string model;
  std::string error;
  std::string log_path;
  std::string log_error;  // the attempt log stopped early (proto::Result); "" when whole
  // The agent's pid and group when the worker sent no `started` (the agent
  // ended first); recorded as MarkAgentStarted would, with start time 0,
  // which no kill check ever matches. 0: already recorded, or none ran.
  int64_t agent_pid = 0;
  int64_t pgid = 0;
  // The commit the worktree was made at, when no `started` reported it
  // (proto::Result::base_commit): recorded as MarkAgentStarted does.
  std::string base_commit;
};

// How an attempt closes and where its task goes, decided by the retry policy.
struct Close {
  Outcome outcome = Outcome::kFailed;
  std::string error;
  std::string fingerprint;
  std::string verdict;
  std::vector<proto::Finding> findings;
  std::vector<proto::CheckResult> checks;
  std::string commit;
  // The review log stopped early (a full disk): in attempt.ended; "" when whole.
  std::string review_log_error;
  TaskState next_state = TaskState::kBlocked;  // ready | cooldown | done | blocked | cancelled
  int64_t not_before_ms = 0;                   // for cooldown
  bool counted = true;  // false: the attempt does not use one of max_attempts
  // An uncounted close that is an infra retry (tasks.infra_retries + 1):
  // always for lost/crashed/recovered, and a worker's infra failure.
  bool infra = false;
  std::string reason;  // why the task moves (event payload), e.g. "same failure twice"
  // A task created with the close when the task becomes done (an expand
  // task's spec), its `parent` set to this task; event task.expanded names it.
  std::optional<proto::SubmitTask> spawn;
  // Spend to add to the attempt and the task with the close (the LLM
  // critic's: the agent's came with its result).
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  // cost_usd is the critic's tokens priced by the supervisor, not a cost its
  // agent reported: attempt.ended says critic_cost_estimated.
  bool cost_estimated = false;
};

// What RecordAgentResult found, so its caller need not read the rows again.
struct RecordedResult {
  bool closed = false;    // the attempt was closed before the report: no transition
  bool recorded = false;  // this report was written (false: reported before)
  AttemptInfo attempt;    // as read in the transaction, before the report's update
  // The task after the report, read when the agent passed (the critic's
  // review needs it); empty otherwise or when nothing was recorded.
  std::optional<TaskInfo> task;
};

// Decides an attempt's close from the attempt and its task as the closing
// transaction reads them (the caller's retry policy).
using CloseDecision = std::function<Close(const AttemptInfo& attempt, const TaskInfo& task)>;

struct ListFilter {
  std::optional<TaskState> state;
  int limit = 0;  // 0: no limit
  bool newest_first = true;
};

struct EventFilter {
  int64_t since_seq = 0;  // seq > since_seq
  std::string task_id;
  std::string kind;  // exact kind, or a prefix ending in '.' ("task.")
  int limit = 1000;
  int64_t before_seq = 0;  // seq < before_seq; 0: no bound
  bool newest = false;     // the newest `limit` of them (still oldest first)
};

// Result of a state change requested by an operator.
struct Change {
  TaskState previous = TaskState::kPending;
  TaskState current = TaskState::kPending;
  std::optional<AttemptInfo> open_attempt;  // cancel: the attempt that must be killed
  // retry: the blocked or cancelled task the retried one still waits on
  // (it stays pending until that one is retried and done); empty if none.
  std::string stuck_on;
  TaskState stuck_on_state = TaskState::kPending;
};

class Store {
 public:
  // Opens (creating if needed), applies migrations; a database newer than
  // kSchemaVersion is refused with an error naming both versions.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store();

  int SchemaVersion();

  // Called from within a long write (every 1,000 tasks of each pass a submit
  // makes over its batch, and before its commit):
  // one transaction of a million-task plan takes tens of seconds, and the
  // supervisor's loop, waiting for it, must still tell systemd's watchdog
  // that it lives. The hook must not use the store.
  void SetProgressHook(std::function<void()> hook);

  // The max_attempts of a task submitted without one (a config reload).
  void SetDefaultMaxAttempts(int max_attempts);
  // database.synchronous on a config reload: PRAGMA synchronous takes
  // effect on the connection at once (never called inside a transaction).
  Status SetSynchronous(bool full);
  // The connection's PRAGMA synchronous: 1 NORMAL, 2 FULL.
  Result<int64_t> Synchronous();

  // ---- submit ----
  // All or nothing. depends_on entries are local ids of this batch or
  // existing task ids; an unknown one, a duplicate local id or a cycle is a
  // kInvalid error naming the ids. Returns the new ids in order.
  Result<std::vector<std::string>> Submit(const std::vector<proto::SubmitTask>& tasks);

  // Submit under a client's idempotency key (a bad one is kInvalid, as
  // CheckIdempotencyKey in submit_check.h says). The first
  // submit with a key inserts its tasks and records the key in the same
  // transaction; the same key with the same tasks again returns that
  // submit's ids with `existing` set and inserts nothing; with other tasks
  // it is kInvalid, naming the key and the ids it was used for. Keys are
  // kept for good.
  struct KeyedSubmit {
    std::vector<std::string> ids;
    bool existing = false;
  };
  Result<KeyedSubmit> SubmitOnce(const std::string& idempotency_key,
                                 const std::vector<proto::SubmitTask>& tasks);

  // ---- dispatch ----
  // Highest priority, then oldest, among ready tasks.
  Result<std::optional<TaskInfo>> NextReady();
  // The same, passing over tasks `skip` says to leave for now; looks at no
  // more than `limit` ready tasks (so pass the number skip can refuse, + 1).
  Result<std::optional<TaskInfo>> NextReady(int limit,
                                            const std::function<bool(const std::string&)>& skip);
  // ready -> running with a new open attempt; kConflict if the task is not ready.
  Result<AttemptInfo> LeaseAttempt(const std::string& task_id, const Lease& lease);
  // Records the agent's pid/pgid/start time (for recovery's kill check).
  // base_commit, when not empty, is the commit the worker made the task's
  // worktree at: kept as the task's base_commit (schema v7) unless one is
  // recorded already (the first report counts), also for an attempt closed
  // meanwhile, with event attempt.base_recorded {attempt_id, base_commit}.
  // RecordAgentResult does the same with AgentReport::base_commit.
  Status MarkAgentStarted(int64_t attempt_id, int64_t agent_pid, int64_t pgid,
                          int64_t agent_start_time, const std::string& base_commit = "");
  // Records the worker's result on the open attempt and adds its cost and
  // tokens to the task; running -> reviewing when report.outcome is passed
  // (otherwise the task stays running until CloseAttempt). A report for an
  // attempt closed before it (a cancel) still records the agent's exit,
  // session, cost and tokens, and adds the spend to the task; the close's
  // outcome and error stand. Idempotent: a second report returns ok and
  // changes nothing. Returns what the transaction read (RecordedResult).
  Result<RecordedResult> RecordAgentResult(int64_t attempt_id, const AgentReport& report);
  // Closes the attempt and moves its task to close.next_state (one
  // transaction): cooldown sets not_before; done/blocked/cancelled set
  // finished_at; done records the commit and promotes dependents whose
  // dependencies are now all done. next_state running/reviewing is kInvalid.
  // Idempotent: an already-closed attempt returns ok and changes nothing.
  Status CloseAttempt(int64_t attempt_id, const Close& close);
  // The same, with the close decided inside the transaction from the rows it
  // reads, so the decision and the write see the same task, and the caller
  // reads neither beforehand. Returns the close written, or nullopt when the
  // attempt was closed before (decide is not called then).
  Result<std::optional<Close>> CloseAttempt(int64_t attempt_id, const CloseDecision& decide);
  // An LLM critic's spend that no close carries: review 0 is the one of an
  // attempt closed before its verdict came (a cancel during the review;
  // kConflict while the attempt is open, as its close carries that spend),
  // review k >= 1 the k-th review of the attempt that gave no verdict (it is
  // reviewed again). The verdict decides nothing, but the money was spent.
  // Adds it to the attempt's and the task's cost and tokens with event
  // attempt.critic_cost, once per (attempt, review): returns the attempt as
  // updated, or nullopt when that spend was added before.
  // `estimated`: cost_usd is the tokens priced (the event says cost_estimated).
  Result<std::optional<AttemptInfo>> AddCriticSpend(int64_t attempt_id, int review, double cost_usd,
                                                    int64_t tokens_in, int64_t tokens_out,
                                                    bool estimated = false);
  // cooldown -> ready for tasks whose not_before has passed; returns how many.
  Result<int> PromoteDue(int64_t now_wall_ms);
  // Earliest not_before among cooldown tasks.
  Result<std::optional<int64_t>> NextDue();
  // Moves every cooldown not_before later than latest_wall_ms back to it (at
  // startup: a wall clock stepped back since it was set would hold the task
  // for the size of the step); returns how many.
  Result<int> ClampDue(int64_t latest_wall_ms);

  // ---- operator actions ----
  // Unknown id: kNotFound "task 'x' not found". Wrong state: kConflict naming it.
  // Sets approved (pending -> ready if dependencies are done); already
  // approved: ok, no change; unapproved and settled: kConflict.
  Result<Change> Approve(const std::string& task_id);
  // blocked/cancelled -> ready (or pending if dependencies are not done or
  // approval is missing); attempts, infra_retries and last_fingerprint reset.
  Result<Change> Retry(const std::string& task_id);
  // ready -> blocked without an attempt (the supervisor's dispatch finds the
  // task's budget spent); `payload` goes into the task.blocked event beside
  // the reason, which becomes the task's last error. Another state: kConflict.
  Result<Change> Block(const std::string& task_id, const std::string& reason,
                       const json& payload = json::object());
  // Any non-settled state -> cancelled; an open attempt is closed `cancelled`
  // and returned in Change.open_attempt (the caller kills it). Already
  // cancelled: ok, no change (previous == current), no event. Done or
  // blocked: kConflict.
  Result<Change> Cancel(const std::string& task_id, const std::string& reason);

  // ---- recovery ----
  // Attempts with no end; close each with CloseAttempt (outcome recovered,
  // counted=false): a crash during recovery repeats nothing.
  Result<std::vector<AttemptInfo>> OpenAttempts();

  // ---- queries ----
  Result<TaskInfo> GetTask(const std::string& task_id);
  // Its env as submitted, not redacted: what redacting its events needs
  // (proto::RedactForOperator). kNotFound for no such task.
  Result<std::map<std::string, std::string>> TaskEnv(const std::string& task_id);
  Result<std::vector<TaskInfo>> ListTasks(const ListFilter& filter);
  Result<std::vector<AttemptInfo>> Attempts(const std::string& task_id);
  Result<AttemptInfo> GetAttempt(int64_t attempt_id);
  // Previous closed attempts of a task, newest last, at most `limit`.
  Result<std::vector<proto::AttemptSummary>> History(const std::string& task_id, int limit);
  Result<std::vector<EventInfo>> Events(const EventFilter& filter);
  // `show`: the task, its attempts, its newest `timeline_max` events (and
  // how many earlier ones that leaves out) and, for a blocked or cancelled
  // task, the reason of its latest task.<state> event. kNotFound: no task.
  Result<proto::ShowReply> Show(const std::string& task_id, int timeline_max);
  // Why a task in `state` is so: for blocked or cancelled, the reason of
  // its newest task.<state> event (the one that moved it there), "" when
  // that event has none; "" in any other state. Show's state_reason.
  Result<std::string> StateReason(const std::string& task_id, TaskState state);
  // `ls`: ListTasks, with each blocked or cancelled task's StateReason.
  Result<proto::ListReply> List(const ListFilter& filter);
  Result<int64_t> LastEventSeq();
  Result<std::map<std::string, int64_t>> QueueCounts();  // every state name, zeros included
  Result<double> CostSince(int64_t wall_ms);
  // The last `limit` closed attempts across tasks, newest first.
  Result<std::vector<AttemptInfo>> RecentAttempts(int limit);
  // `status`'s last failure as the database tells it: the newest of the
  // last kLastFailureWindow closed attempts that neither passed nor was
  // cancelled by an operator (a bounded read: status stays quick after
  // many passes). The supervisor starts from it, then keeps its own.
  static constexpr int kLastFailureWindow = 50;
  Result<std::optional<proto::LastFailure>> LastFailure();

  // ---- events not tied to a task change (supervisor start, pauses, ...) ----
  // idem_key empty: a unique key is generated.
  Status Emit(const std::string& kind, const json& payload, const std::string& task_id = "",
              int attempt = 0, const std::string& idem_key = "");

  // ---- the operator's pause (forge-ctl pause), kept across a restart ----
  // The reason it was given with (possibly empty), or nullopt when dispatch
  // is not paused by the operator. Stored in meta('operator_pause').
  Result<std::optional<std::string>> OperatorPause();
  Status SetOperatorPause(const std::optional<std::string>& reason);

  // ---- projections ----
  Result<int64_t> GetCursor(const std::string& name);  // 0 when unset
  Status SetCursor(const std::string& name, int64_t seq);

  // ---- replay and integrity (doctor, tests) ----
  // Runs `reads` (queries of this store) in one read transaction, so they
  // all see the same committed state whatever a writer commits meanwhile
  // (a WAL snapshot): a comparison of two queries against a live
  // supervisor's database. Not inside a write; the error is reads' or the
  // transaction's.
  Status ReadConsistently(const std::function<Status()>& reads);
  // Task states rebuilt from the event log alone (seq 0 on).
  Result<std::map<std::string, TaskState>> ReplayStates();
  // "ok", or what PRAGMA integrity_check reported.
  Result<std::string> IntegrityCheck();
  // Where the per-state counts (task_counts, what QueueCounts reads) differ
  // from a count of the tasks table, one "state: counted N, actual M" each;
  // empty when they agree. A full scan: for doctor and tests.
  Result<std::vector<std::string>> CountMismatches();
  // wal_checkpoint(<mode>) on this connection. PASSIVE copies the frames no
  // reader needs, waiting for no one; once all are copied, the next write
  // starts the WAL over from its beginning. TRUNCATE also empties the file.
  Status Checkpoint(CheckpointMode mode = CheckpointMode::kTruncate);
  // Frames in the WAL after this connection's last commit (0 before its
  // first): what a manual_checkpoints owner decides by.
  int64_t WalFrames() const;

  // ---- maintenance and model fallback (maintenance_queries.cc) ----
  // Settled tasks finished at or before cutoff_wall_ms whose workspace has not
  // been dealt with since they settled (no maintenance.removed/.absent event
  // at or after finished_at: tasks.swept_at < finished_at, schema v3), oldest
  // first, at most limit. Reads only unswept tasks (partial index), so its
  // cost does not grow with the number of tasks already cleaned up.
  struct SettledRow {
    std::string id;
    TaskState state = TaskState::kDone;
    std::string repo;
    int64_t finished_at_ms = 0;
  };
  Result<std::vector<SettledRow>> SettledWorkspaces(int64_t cutoff_wall_ms, int limit);
  // The attempt number n of the task's latest attempt.model_failure event, 0 if none.
  Result<int> LastModelFailure(const std::string& task_id);

  sqlite3* raw() { return db_; }  // for tests and benchmarks only

 private:
  Store() = default;
  sqlite3* db_ = nullptr;
  StoreOptions options_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace forge::store
