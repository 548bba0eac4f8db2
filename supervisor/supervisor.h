// forge-supervisor's core: the single-threaded event loop that owns the
// queue, the children and the control socket.
//
// One zmq_poll waits on the children ROUTER, the control ROUTER, a signalfd
// (SIGCHLD, SIGTERM, SIGINT, SIGHUP) and, while one runs, the background WAL
// checkpoint's eventfd; its timeout is the next timer
// (heartbeat deadline, cooldown due, respawn, guard expiry, shutdown grace,
// systemd watchdog). Nothing in the loop waits on a child or an agent.
// Dispatch is attempted whenever something may have made it possible (a
// submit, a result, a child becoming idle, a promotion), never on a polling
// interval. See docs/protocol.md for the messages.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/background.h"
#include "common/clock.h"
#include "common/signals.h"
#include "proto/endpoints.h"
#include "proto/messages.h"
#include "supervisor/child_pool.h"
#include "supervisor/config/config.h"
#include "supervisor/control_server.h"
#include "supervisor/guards.h"
#include "supervisor/maintenance_schedule.h"
#include "supervisor/retry_policy.h"
#include "supervisor/store/store.h"
#include "supervisor/store/wal_checkpoint.h"

namespace forge::supervisor {

struct SupervisorOptions {
  Config config;
  std::string config_path;  // reloaded on SIGHUP; empty: defaults, nothing to reload
  std::string state_dir;    // absolute, exists, 0700
};

// Counters for what the loop refused (shown in logs and status tests).
struct LoopCounters {
  int64_t bad_child_messages = 0;  // undecodable / from unknown peers
  int64_t stray_messages = 0;      // about an attempt the child does not hold
  int64_t bad_control_requests = 0;
};

class Supervisor final : public ControlBackend {
 public:
  // Opens the store and creates the signalfd (before any thread exists). The
  // caller holds the state directory's lock.
  static Result<std::unique_ptr<Supervisor>> Create(SupervisorOptions options);
  ~Supervisor() override;

  // Startup recovery, then binds both sockets and spawns the children.
  // Returns once the control socket accepts commands.
  forge::Status Start();
  // Runs until stopped (SIGTERM, SIGINT, `stop`). Returns the exit code.
  int Run();

  const LoopCounters& counters() const { return counters_; }

  // ControlBackend.
  proto::StatusReply Status() override;
  json Counters() override;
  void OnQueueChanged() override {}
  void OnCancelled(const store::Change& change) override;
  void Pause(const std::string& reason) override;
  void Resume() override;
  int64_t Stop() override;
  std::vector<std::string> ConfigSecrets() override;
  double TaskBudgetUsd() override { return config_.budget.task_usd; }

 private:
  Supervisor(SupervisorOptions options, SignalFd signals, std::unique_ptr<store::Store> store);

  // ---- startup ----
  forge::Status Recover();
  forge::Status BindSockets();

  // ---- loop ----
  int64_t PollTimeoutMs();
  void HandleSignals();
  // Reads what one turn's budget allows (kMaxMessagesPerTurn messages or
  // kMaxReadMsPerTurn ms); true when none are left.
  bool DrainChildren();
  void DrainControl();
  void RunTimers();
  void TryDispatch();
  void TryReview();
  void Notify(bool force = false);
  // Maintenance (supervisor_maintenance.cc): sends a due job to an idle
  // worker; before_dispatch: only when starved by dispatch.
  void TryMaintenance(bool before_dispatch);
  void OnMaintenanceResult(Child& child, const proto::MaintenanceResult& m);
  void OnMaintenanceWorkerGone(pid_t pid, const std::string& why);
  // The WAL checkpoints (store/wal_checkpoint.h): each maintenance run's
  // TRUNCATE, and the PASSIVE ones NextCheckpoint asks for after every loop
  // turn; the background ones on a thread of their own, one at a time.
  void MaybeCheckpoint();
  void StartCheckpoint(store::CheckpointMode mode);
  void FinishCheckpoint();
  proto::MaintenanceStatus MaintenanceForStatus() const;

  // ---- children ----
  void SpawnChild(Role role);
  void SpawnMissing();
  // How many children of the role the config asks for.
  int Wanted(Role role) const;
  // Children of the role that stay: not exited, not retired.
  int Staying(Role role);
  // A reload lowered workers or critics: idle children past the count are
  // told to shut down (a busy one when it is idle again) and not respawned;
  // one still there past its shutdown and kill graces is killed.
  void RetireSurplus();
  void KillOverdueRetirees();
  // Queued respawns the (lowered) count no longer needs.
  void DropUnneededRespawns();
  bool Send(const Child& child, const proto::SupervisorMessage& message);
  void HandleChildMessage(const std::string& routing_id, const std::string& bytes);
  void LogUnknownPeer(const std::string& routing_id, size_t bytes);
  void OnHello(Child& child, const proto::Hello& m);
  void OnStarted(Child& child, const proto::Started& m);
  void OnResult(Child& child, const proto::Result& m);
  void OnReviewResult(Child& child, const proto::ReviewResult& m);
  void CloseExpandAttempt(const proto::TaskInfo& task, int64_t attempt_id, const std::string& spec);
  bool HoldsAttempt(const Child& child, int64_t attempt_id, std::string_view what);
  void ReapChildren();
  // A reaped child stays in the pool (exited) until its last messages have
  // been read; then SettleChild ends its job and replaces it.
  // Returns whose processes may now be ours to sweep (KillStrays): the
  // child's name, or "the orphans of a stray process".
  std::string OnChildExited(pid_t pid, const std::string& how);
  // Settles the exited children whose connection is gone once what came on
  // it has been read, those past kLastWordsMaxMs, and with force all of them.
  void SettleExitedChildren(bool force);
  // True while ZeroMQ still routes to the child: messages it sent may still
  // be on their way. Sends a no-op shutdown to find out.
  bool StillConnected(const Child& child);
  void SettleChild(pid_t pid);
  void KillChild(Child& child, const std::string& why);
  // SIGKILLs every live child of ours that is not in the pool (with its
  // group): what a dead child's processes became when it died.
  void KillStrays(const std::string& left_by);
  void KillAgentGroup(int64_t pgid);

  // ---- attempts ----
  // Closes an open attempt through the retry policy (no-op when already
  // closed). A close the store refuses for a full disk or an I/O error is
  // kept and retried with the store pause (RetryStore): otherwise its task
  // would stay `running` with no child until the next restart.
  void CloseAttempt(int64_t attempt_id, AttemptEnd end);
  // The close itself; the store's error names the attempt and its task.
  forge::Status TryCloseAttempt(int64_t attempt_id, const AttemptEnd& end);
  // An attempt closed before its verdict came: the critic's spend, if any.
  // Store::AddCriticSpend, then the day's cost.
  forge::Status AddCriticSpend(int64_t attempt_id, int review, const AttemptEnd& end);
  // `rate_limited`: the critic agent's rate limit, which the pause bounds;
  // not counted against kReviewsPerAttempt.
  bool ReviewAgain(int64_t attempt_id, const std::string& task_id, const AttemptEnd& end,
                   bool rate_limited);
  // The watchdog's judgements (SilentChildren, KillOverdueChildren) are made
  // on what the children sent, read first, and only while the loop is
  // steady: NoteLoopTurn.
  void NoteLoopTurn(int64_t now);
  bool Steady(int64_t now) const;
  // How long the loop must have run without a gap before it judges: half a
  // heartbeat interval, 10 to 500 ms.
  int64_t SilenceConfirmMs() const;
  // A gap between two turns that could hide what a child sent (a heartbeat
  // timeout less one interval; at least two confirmation windows).
  int64_t LoopGapLimitMs() const;
  // Reads every message queued, bounded for a flooding child.
  void DrainForJudgement();
  std::vector<pid_t> SilentChildren(int64_t now);
  static constexpr int kSilenceDrains = 8;
  // Kills a child the supervisor gives up on, as lost: its job's attempt is
  // closed `lost` with attempt_error (a no-op when it is closed already, as
  // a cancelled one is).
  void KillAsLost(Child& child, const std::string& why, const std::string& attempt_error);
  // A child must have ended its job by its deadline (supervisor/job_limits.h):
  // a worker its agent, by the agent's timeout (or a cancel) plus
  // AgentOverrunMs from its `started`, before that within DispatchLimitMs
  // of the dispatch; a critic its review, within ReviewLimitMs of its
  // sending. One that has not (a process stuck in the kernel that SIGKILL
  // cannot end, a child wedged) is killed as lost, so that it does not hold
  // a slot and the task's workspace for ever.
  void KillOverdueChildren(int64_t now);
  void PetWatchdog();
  // The operator's pause as it is now, into the store, so that a restart
  // keeps it (kept and retried like any write on the loop's path).
  void KeepOperatorPause();
  // Recovery of an attempt whose agent passed: queued for review again.
  bool ReviewAfterRestart(const proto::AttemptInfo& a);
  // During a stop: an attempt whose agent passed is left open, its task
  // `reviewing`, for the next start (`attempt.review_postponed`; `review`,
  // when one ran, numbers its spend).
  void PostponeReview(int64_t attempt_id, const std::string& why, int review = 0);
  // Closes the attempt as a counted failure ("critic error: ...") after its
  // last review without a verdict.
  void FailAfterReviews(int64_t attempt_id, AttemptEnd end);

  // ---- store faults (the `store` pause) ----
  // A store write on the loop's path failed. True when the error pauses
  // dispatch (disk full, I/O error): the pause starts, or a due retry is
  // rescheduled; a failure while the pause waits is the same fault and is
  // not logged again. Other errors are logged and false is returned.
  bool StoreFailed(const std::string& what, const Error& error);
  // Starts the store pause with `reason` (shown in status), or reschedules
  // its due retry, and logs `detail`. False while the pause waits: the same
  // fault, not logged again.
  bool PauseForStore(const std::string& reason, const std::string& detail);
  // StoreFailed, and when the error pauses dispatch the write is kept and
  // retried in order with the pause's retries (the first one is the probe).
  // `result_of` names the attempt whose agent result the write records (0:
  // none), for that attempt's close (WriteKeptThroughResult).
  void WriteFailed(const std::string& what, const Error& error,
                   std::function<forge::Status()> retry, int64_t result_of = 0);
  // When an attempt's agent result is kept, writes the kept writes up to and
  // including it, in order, ahead of the attempt's close: a close that went
  // first would make it a no-op (the store ignores a result for a closed
  // attempt), losing the attempt's cost and tokens, and the close's budget
  // check would not see them either. Refused again: the error, and the
  // refused write stays first.
  forge::Status WriteKeptThroughResult(int64_t attempt_id);
  // The store pause's retry once its backoff has passed (or `resume`): the
  // kept writes in order, else a probe write; the first success lifts it.
  void RetryStore();
  // At the end of a shutdown: every kept write tried once, in order, backoff
  // or not (the last chance: they are in memory only); one still refused is
  // logged as lost.
  void WriteKeptBeforeExit();
  // A worker found no space for an attempt (result.infra), or a critic none
  // to commit a pass (review_result.infra). The next tasks
  // would fail alike, each using an infra retry (a task is blocked within
  // milliseconds), so dispatch pauses as for the store; the retry writes a
  // probe file in the state directory, where workspaces and logs live, as
  // the database may still have room in its WAL.
  // task_id: the task whose attempt failed; a repo task's repo is probed too.
  void ChildOutOfSpace(const std::string& what, const std::string& error,
                       const std::string& task_id);
  // Writes and removes a probe file in dir: kFull when it does not fit.
  forge::Status ProbeSpace(const std::string& dir);
  void RefreshNextDue();
  // Today's spend for the daily budget: summed from the store (a query over
  // today's attempts), or kept up to date by AddCostToday as results arrive.
  void RefreshCostToday();
  void RefreshCostTodayIfStale();  // a new UTC day, or a kept write landed
  void AddCostToday(int64_t attempt_started_wall_ms, double usd);
  void FlushGuardEvents();
  void EmitEvent(const std::string& kind, const json& payload, const std::string& task_id = "",
                 int attempt = 0);

  // ---- shutdown ----
  void BeginShutdown(const std::string& why);
  void FinishShutdown();

  std::string WorkspaceFor(const proto::TaskInfo& task) const;
  std::string LogPathFor(const std::string& task_id, int n, const char* suffix) const;

  SupervisorOptions options_;
  Config& config_;
  const Clock& clock_;
  std::optional<SignalFd> signals_;
  std::unique_ptr<store::Store> store_;
  proto::Endpoints endpoints_;
  zmq::context_t context_{1};
  std::optional<zmq::socket_t> children_socket_;
  std::optional<zmq::socket_t> control_socket_;
  ChildPool pool_;
  Guards guards_;
  ControlServer control_;
  std::mt19937_64 rng_;
  LoopCounters counters_;
  // Peers not in the pool that send anyway, by routing id: a child of a
  // supervisor killed before this one heartbeats here until it exits (up to
  // minutes, in a git step), so each is logged once a minute, with how many
  // of its messages went unlogged (at most kMaxQuietPeers ids kept).
  struct QuietPeer {
    int64_t next_log_ms = 0;
    int64_t unlogged = 0;
  };
  std::map<std::string, QuietPeer> unknown_peers_;

  MaintenanceSchedule maintenance_;
  // The last pass that ended (finished or failed; last_job_id 0: none yet),
  // for status; its running and next fields are filled in when asked.
  proto::MaintenanceStatus last_maintenance_;
  // The checkpoints' connection, kept between them; shared with the
  // Background thread running one.
  std::shared_ptr<store::WalCheckpointer> checkpointer_;
  std::unique_ptr<Background<store::CheckpointReport>> checkpoint_;  // joined when destroyed
  store::CheckpointMode checkpoint_mode_ = store::CheckpointMode::kPassive;  // of checkpoint_
  bool maintenance_checkpoint_due_ = false;  // asked for while another one ran
  int64_t wal_frames_at_checkpoint_ = 0;     // Store::WalFrames() when the last one started
  // An attempt whose agent passed, waiting for a critic, with its task as
  // the result's transaction left it (empty: TryReview reads it).
  struct PendingReview {
    int64_t attempt_id = 0;
    int n = 0;  // the attempt's number in its task
    std::optional<proto::TaskInfo> task;
  };
  std::deque<PendingReview> review_queue_;
  // Attempt id -> its reviews that gave no verdict (OnReviewResult): the same
  // work is reviewed again, up to kReviewsPerAttempt counted ones, before
  // the attempt fails. Erased when the attempt closes.
  static constexpr int kReviewsPerAttempt = 3;
  struct ReviewsWithoutVerdict {
    int counted = 0;  // toward kReviewsPerAttempt
    int all = 0;      // the rate-limited too: each review's spend key
  };
  std::map<int64_t, ReviewsWithoutVerdict> reviews_without_verdict_;
  std::set<int64_t> postponed_reviews_;  // left open by this stop (PostponeReview)
  struct KeptWrite {
    std::string what;
    std::function<forge::Status()> write;
    int64_t result_of = 0;  // the attempt whose agent result this records, if any
  };
  std::deque<KeptWrite> kept_writes_;  // refused by a full/failing store, retried by RetryStore
  struct PendingRespawn {
    Role role;
    int64_t due_mono_ms;
  };
  std::vector<PendingRespawn> respawns_;
  // Cooldown not_before values are persisted wall times, but set and compared
  // on this clock so a wall-clock step mid-run neither fires nor starves them.
  SteadyWall steady_wall_{clock_};
  std::optional<int64_t> next_due_wall_ms_;
  std::optional<proto::LastFailure> last_failure_;
  double cost_today_ = 0;
  // The UTC midnight cost_today_ counts from; kCostStale: sum it again.
  static constexpr int64_t kCostStale = -1;
  int64_t cost_day_wall_ms_ = kCostStale;
  int64_t started_at_wall_ms_ = 0;
  int64_t started_at_mono_ms_ = 0;

  bool stopping_ = false;
  // Children may be past the config's count (a reload lowered it) until
  // RetireSurplus has told enough of them to stop; the pids it told.
  bool surplus_ = false;
  std::map<pid_t, int64_t> retired_;  // pid -> monotonic deadline to have exited
  // The loop's own liveness (NoteLoopTurn): when it last ran its timers,
  // since when it has run without a gap past LoopGapLimitMs, and whether a
  // judgement waits for it to be steady (PollTimeoutMs wakes it then).
  int64_t last_turn_mono_ms_ = -1;
  int64_t steady_since_mono_ms_ = 0;
  bool judgement_pending_ = false;
  bool done_ = false;
  int64_t stop_deadline_mono_ms_ = 0;

  uint64_t watchdog_usec_ = 0;
  int64_t next_watchdog_mono_ms_ = 0;
  std::string last_status_line_;
  int64_t next_status_mono_ms_ = 0;
};

}  // namespace forge::supervisor
