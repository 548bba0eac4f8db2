#include "supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <zmq_addon.hpp>

#include "common/paths.h"
#include "common/process.h"
#include "common/redact.h"
#include "common/workspace_paths.h"
#include "proto/codec.h"
#include "supervisor/job_limits.h"
#include "supervisor/model_fallback.h"
#include "supervisor/store/submit_check.h"

namespace forge::supervisor {
namespace {

using proto::Outcome;

constexpr int64_t kMaxPollMs = 1000;
constexpr int kHistoryLimit = 5;
// What one loop turn reads from one socket: kMaxMessagesPerTurn messages or
// kMaxReadMsPerTurn milliseconds, whichever ends first. A child or client
// that floods its socket must not starve the timers (heartbeat deadlines), the
// other socket or the signals; what is left is read next turn, and the poll
// returns at once while anything is waiting. The time bound is what holds
// when messages are costly to decode (large ones, or a sanitizer build, where
// 256 padded heartbeats took over 3 s and a control request timed out).
constexpr int kMaxMessagesPerTurn = 256;
constexpr int64_t kMaxReadMsPerTurn = 20;
// An exited child's last messages (a result sent just before its exit) can
// still be between its socket and ours when SIGCHLD comes. Its job ends when
// ZeroMQ has dropped its connection, which it does only after we have read
// what came on it (checked every kLastWordsPollMs), or after kLastWordsMaxMs
// if the connection outlives the process (it should not: the kernel closes it).
constexpr int64_t kLastWordsPollMs = 1;
constexpr int64_t kLastWordsMaxMs = 2000;
// Control requests between kMaxMessageBytes and this are read and refused
// with an error reply; larger ones make ZeroMQ drop the connection.
constexpr int64_t kControlMaxMessageBytes = 16 << 20;
// The store pause's probe write when no refused write is waiting: a cursor
// row nothing reads, so the probe adds no event per retry.
constexpr const char* kStoreProbeCursor = "supervisor.store_probe";
// Refused event writes kept for the retry, at most (closes are always kept):
// a pause of hours must not grow memory without bound.
constexpr size_t kMaxKeptWrites = 10'000;

// The task as a dispatch or review carries it: what a worker or critic
// reads of it (docs/protocol.md) and none of the row's bookkeeping (state,
// counters, timestamps, costs, error, fingerprint), which no child reads and
// which was a third of a review's bytes, all parsed by the child (issue 6).
// A field a child starts to read must be added here.
proto::TaskInfo ChildTask(proto::TaskInfo&& t) {
  proto::TaskInfo c;
  c.id = std::move(t.id);
  c.title = std::move(t.title);
  c.brief = std::move(t.brief);
  c.kind = std::move(t.kind);
  c.repo = std::move(t.repo);
  c.base = std::move(t.base);
  c.base_commit = std::move(t.base_commit);
  c.env = std::move(t.env);
  c.verify = std::move(t.verify);
  c.allow_empty = t.allow_empty;
  return c;
}

// Counts what one turn has read from one socket (see kMaxMessagesPerTurn).
class ReadBudget {
 public:
  explicit ReadBudget(const Clock& clock)
      : clock_(clock), until_ms_(clock.MonotonicMs() + kMaxReadMsPerTurn) {}
  // True while another message may be read this turn; the first always may.
  bool Left() {
    return read_++ == 0 || (read_ <= kMaxMessagesPerTurn && clock_.MonotonicMs() < until_ms_);
  }

 private:
  const Clock& clock_;
  const int64_t until_ms_;
  int read_ = 0;
};

// A full disk (SQLITE_FULL), I/O errors (SQLITE_IOERR) and a database
// locked past busy_timeout (SQLITE_BUSY: another process holding the write
// lock, e.g. a long checkpoint waiting on a reader) pause dispatch. They are
// faults of the machine, not of a task: every write fails alike until space
// returns, the device recovers or the lock is let go, so trying the next
// lease at once only spins (each loop turn, ~15 a second with three children
// heartbeating) and floods the log, and each lease would fail the same way.
// Pausing also keeps the refused write (a result, a close) to be retried:
// dropped, its attempt would stay open with no child holding it, the task
// `running` until a restart. The other errors keep their old handling:
// kConflict/kNotFound are a race with an operator's action on one task (the
// next task must go on); kDb (a constraint, a damaged file) is a bug or
// damage that waiting does not cure, and a retry that never succeeds would
// hide it behind a pause that looks transient: it stays an error in the log
// for an operator (doctor).
bool PausesDispatch(const Error& e) {
  return e.code == ErrorCode::kFull || e.code == ErrorCode::kIo || e.code == ErrorCode::kBusy;
}

// SQLite's own words for the pausing errors (its sqlite3_errstr), for the
// pause reason: the full error (the statement, the file) goes to the log.
// The state directory's probe file says it in the kernel's words.
std::string StoreErrorText(const Error& e) {
  if (e.message.find(std::strerror(ENOSPC)) != std::string::npos) return std::strerror(ENOSPC);
  if (e.code == ErrorCode::kBusy) return "database is locked";
  return e.code == ErrorCode::kFull ? "database or disk is full" : "disk I/O error";
}

// A probe as large as a typical prompt and log start: a few pages.
constexpr size_t kSpaceProbeBytes = 64 * 1024;

std::string ChildBinary(Role role) {
  const char* var = role == Role::kWorker ? "FORGE_WORKER_BIN" : "FORGE_CRITIC_BIN";
  if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return v;
  return JoinPath(SelfExeDir(), role == Role::kWorker ? "forge-worker" : "forge-critic");
}

store::StoreOptions StoreOptionsFor(const SupervisorOptions& o) {
  store::StoreOptions s;
  s.db_path = JoinPath(o.state_dir, "forge.db");
  s.events_jsonl_path = JoinPath(o.state_dir, "events.jsonl");
  s.synchronous_full = o.config.database.synchronous == "full";
  s.manual_checkpoints = true;  // MaybeCheckpoint, off the loop (wal_checkpoint.h)
  s.default_max_attempts = o.config.retry.max_attempts;
  return s;
}

GuardsConfig GuardsConfigFor(const Config& c) {
  return GuardsConfig{c.circuit_breaker, c.budget};
}

std::optional<proto::AgentSpec> CriticSpec(const Config& c) {
  if (!c.critic.agent) return std::nullopt;
  const CriticAgentConfig& a = *c.critic.agent;
  proto::AgentSpec spec;
  spec.profile = a.profile;
  spec.command = a.command;
  spec.args = a.args;
  spec.model = a.model;
  spec.env = a.env;
  spec.timeout_ms = c.critic.verify_timeout_ms;
  spec.stall_timeout_ms = c.critic.verify_timeout_ms;
  spec.kill_grace_ms = c.watchdog.kill_grace_ms;
  return spec;
}

Outcome WorkerOutcome(const std::string& name) {
  auto o = proto::ParseOutcome(name);
  if (!o) return Outcome::kFailed;
  return *o;
}

// The task an expand task's spec becomes: the spec is its brief, everything
// else is inherited, and it waits for `forge-ctl approve` before it runs.
proto::SubmitTask SpecTask(const proto::TaskInfo& expand, const std::string& spec) {
  proto::SubmitTask t;
  t.title = expand.title;
  t.brief = spec;
  t.kind = "work";
  t.repo = expand.repo;
  // A base without a repo was queued before the store refused it (it means
  // nothing): not carried, or the spec task would be refused.
  if (!expand.repo.empty()) t.base = expand.base;
  t.verify = expand.verify;
  t.priority = expand.priority;
  t.max_attempts = expand.max_attempts;
  t.needs_approval = true;
  t.allow_empty = expand.allow_empty;
  t.agent = expand.agent;
  t.model = expand.model;
  // Names that are no variable's were queued before the store refused them
  // (the agent saw "=x", or A for "A=B"): not carried into the spec task.
  for (const auto& [name, value] : expand.env) {
    if (IsEnvName(name)) t.env.emplace(name, value);
  }
  return t;
}

int64_t MidnightBefore(int64_t wall_ms) {
  constexpr int64_t kDay = 24LL * 3600 * 1000;
  return wall_ms / kDay * kDay;
}

}  // namespace

// ---------------------------------------------------------------- startup --

Result<std::unique_ptr<Supervisor>> Supervisor::Create(SupervisorOptions options) {
  // Before any thread exists (ZeroMQ's I/O threads start with the first
  // socket), so every thread inherits the blocked mask.
  FORGE_ASSIGN_OR_RETURN(SignalFd signals, SignalFd::Create({SIGCHLD, SIGTERM, SIGINT, SIGHUP}));
  IgnoreWriteSignals();
  // A child that dies hands its own children to us, not to init: a crashed
  // critic's check (`make test` under `sh`) or a server an agent started in
  // its own session would otherwise run on in a workspace the task's next
  // attempt is given. ReapChildren sweeps them (KillStrays).
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return MakeError(ErrorCode::kIo, std::string("PR_SET_CHILD_SUBREAPER: ") + strerror(errno));
  }
  FORGE_ASSIGN_OR_RETURN(auto store, store::Store::Open(StoreOptionsFor(options)));
  return std::unique_ptr<Supervisor>(
      new Supervisor(std::move(options), std::move(signals), std::move(store)));
}

Supervisor::Supervisor(SupervisorOptions options, SignalFd signals,
                       std::unique_ptr<store::Store> store)
    : options_(std::move(options)),
      config_(options_.config),
      clock_(SystemClock::Get()),
      signals_(std::move(signals)),
      store_(std::move(store)),
      guards_(clock_, GuardsConfigFor(options_.config)),
      control_(*store_, *this),
      rng_(std::random_device{}()) {}

Supervisor::~Supervisor() {
  // Nothing must outlive us: children die with PDEATHSIG, but kill them now
  // rather than leave that to the kernel when Run() was never reached.
  for (Child* c : pool_.All()) {
    if (c->state == ChildState::kExited) continue;
    ::kill(c->pid, SIGKILL);
    KillAgentGroup(c->agent_pgid);
    Reap(c->pid);
  }
}

forge::Status Supervisor::Start() {
  started_at_wall_ms_ = clock_.WallMs();
  started_at_mono_ms_ = clock_.MonotonicMs();
  FORGE_RETURN_IF_ERROR(Recover());
  // What `status` shows offline, so a start does not blank it.
  if (auto last = store_->LastFailure(); last.ok()) last_failure_ = std::move(*last);
  FORGE_RETURN_IF_ERROR(BindSockets());
  maintenance_.Start(clock_.MonotonicMs());
  // No backoff is longer than backoff_max + 20 % jitter: a not_before further
  // ahead was set before the wall clock stepped back, and would hold its task
  // for the size of the step.
  int64_t latest_due = clock_.WallMs() + config_.retry.backoff_max_ms * 6 / 5;
  if (auto clamped = store_->ClampDue(latest_due); !clamped.ok()) {
    spdlog::error("clamping cooldown deadlines: {}", clamped.error().ToString());
  } else if (*clamped > 0) {
    spdlog::warn(
        "{} cooldown deadline(s) lay further ahead than the longest backoff "
        "(wall clock stepped back?): retrying them by {}",
        *clamped, FormatRfc3339(latest_due));
  }
  RefreshNextDue();
  RefreshCostToday();
  // The operator paused to stop dispatch (and spending): a restart, a crash
  // or a systemd restart included, does not resume it; only `resume` does.
  FORGE_ASSIGN_OR_RETURN(std::optional<std::string> paused, store_->OperatorPause());
  if (paused) {
    guards_.Pause(*paused);
    spdlog::warn(
        "dispatch stays paused by the operator, as before the restart: {} (resume it "
        "with forge-ctl resume)",
        guards_.operator_reason().value_or(""));
  }
  FlushGuardEvents();
  for (int i = 0; i < config_.workers; ++i) SpawnChild(Role::kWorker);
  for (int i = 0; i < config_.critics; ++i) SpawnChild(Role::kCritic);
  EmitEvent("supervisor.started", json{{"pid", ::getpid()},
                                       {"version", FORGE_VERSION},
                                       {"workers", config_.workers},
                                       {"critics", config_.critics}});
  if (sd_watchdog_enabled(0, &watchdog_usec_) <= 0) watchdog_usec_ = 0;
  if (watchdog_usec_ > 0) store_->SetProgressHook([this] { PetWatchdog(); });
  sd_notify(0, "READY=1");
  Notify(true);
  spdlog::info("supervisor {} ready: state {}, {} workers, {} critics", ::getpid(),
               options_.state_dir, config_.workers, config_.critics);
  return Status::Ok();
}

// Attempts left open by a previous run: its agents may still run (a
// grandchild outlives its worker). Killed only when provably the same
// process, then closed `recovered`, which requeues the task uncounted.
forge::Status Supervisor::Recover() {
  FORGE_ASSIGN_OR_RETURN(auto open, store_->OpenAttempts());
  for (const auto& a : open) {
    bool killed = false;
    if (a.agent_pid > 0 && IsSameProcess(static_cast<pid_t>(a.agent_pid), a.agent_start_time)) {
      KillAgentGroup(a.agent_pgid > 0 ? a.agent_pgid : a.agent_pid);
      killed = true;
    } else if (a.agent_pgid > 0 && !ProcessStartTime(static_cast<pid_t>(a.agent_pgid)) &&
               ::kill(-static_cast<pid_t>(a.agent_pgid), 0) == 0) {
      // The leader is gone but its group still has members: the kernel does
      // not reuse a pid while a group of that id exists, so these are the
      // agent's own leftovers (grandchildren), never a stranger.
      KillAgentGroup(a.agent_pgid);
      killed = true;
    }
    spdlog::warn("recovery: attempt {} (task {} #{}) was open{}", a.id, a.task_id, a.n,
                 killed ? "; killed its agent's process group" : "");
    if (ReviewAfterRestart(a)) continue;
    AttemptEnd end;
    end.outcome = Outcome::kRecovered;
    end.error = "attempt was open when the supervisor started";
    // Its result was recorded and its close was not (a crash between the
    // two): the close's error would replace the agent's, which says what
    // happened.
    if (!a.error.empty()) end.error += " (its agent had ended: " + a.error + ")";
    CloseAttempt(a.id, end);
  }
  return Status::Ok();
}

// An attempt whose agent passed (its task `reviewing`) was waiting for, or
// in, its review: the work is in the workspace, so it is reviewed again,
// as a review without a verdict is. Closing it `recovered` would throw away
// work that may have passed (the next attempt resets the workspace) and
// run the paid agent again. The reviews before the restart still count:
// their spend keys and the bound carry over from their events.
// forge-ctl doctor (CheckOpenAttempts) tells these cases apart the same way.
bool Supervisor::ReviewAfterRestart(const proto::AttemptInfo& a) {
  auto task = store_->GetTask(a.task_id);
  if (!task.ok() || task->state != proto::TaskState::kReviewing) return false;
  // An expand attempt is closed on its spec, not reviewed (CloseExpandAttempt):
  // its agent runs again.
  if (task->kind == "expand") return false;
  std::error_code ec;
  if (!std::filesystem::is_directory(WorkspaceFor(*task), ec)) return false;  // nothing to review
  store::EventFilter earlier;
  earlier.task_id = a.task_id;
  earlier.kind = "attempt.";  // review_again and review_postponed
  earlier.limit = 0;
  ReviewsWithoutVerdict count;
  int crashes = 0;
  bool stopped = false;  // the last run stopped with the review postponed, no crash
  if (auto events = store_->Events(earlier); events.ok()) {
    for (const auto& e : *events) {
      if (e.payload.value("attempt_id", int64_t{0}) != a.id) continue;
      const bool postponed = e.kind == "attempt.review_postponed";
      if (!postponed && e.kind != "attempt.review_again") continue;
      stopped = postponed;
      count.all = std::max(count.all, e.payload.value("review", 0));
      if (postponed) continue;
      if (e.payload.value("restarted", false)) {
        if (!e.payload.value("after_stop", false)) ++crashes;
      } else if (!e.payload.value("rate_limited", false)) {
        ++count.counted;
      }
    }
  }
  if (!stopped) {
    ++crashes;    // this one
    ++count.all;  // the review the crash interrupted, whose spend is lost with it
  }
  // A review that takes the supervisor down with it (each restart paying for
  // another critic run) is bounded too: past kReviewsPerAttempt crashes the
  // attempt is closed `recovered`, as before. A stop is not one.
  if (crashes > kReviewsPerAttempt) return false;
  reviews_without_verdict_[a.id] = count;
  json payload{{"attempt_id", a.id},
               {"review", count.all},
               {"error", stopped ? "the supervisor stopped before the review's verdict"
                                 : "supervisor restarted before the review's verdict"},
               {"restarted", true}};
  if (stopped) payload["after_stop"] = true;
  EmitEvent("attempt.review_again", std::move(payload), a.task_id, a.n);
  review_queue_.push_back({a.id, a.n, std::nullopt});
  spdlog::warn("recovery: attempt {} ({} #{}) passed its agent; it is reviewed again", a.id,
               a.task_id, a.n);
  return true;
}

// An attempt whose agent passed, left open at a stop for the next start to
// review (ReviewAfterRestart), as a crash leaves it: closing it `cancelled`
// threw the passed work away (the next attempt resets the workspace) and
// ran the paid agent again. FinishShutdown leaves it open.
void Supervisor::PostponeReview(int64_t attempt_id, const std::string& why, int review) {
  auto attempt = store_->GetAttempt(attempt_id);
  if (attempt.ok() && attempt->ended_at_ms != 0) return;  // closed meanwhile (a cancel)
  postponed_reviews_.insert(attempt_id);
  const std::string task_id = attempt.ok() ? attempt->task_id : "";
  const int n = attempt.ok() ? attempt->n : 0;
  json payload{{"attempt_id", attempt_id}, {"reason", why}};
  if (review > 0) payload["review"] = review;
  EmitEvent("attempt.review_postponed", std::move(payload), task_id, n);
  spdlog::info("attempt {} ({} #{}): {}; it stays open for the next start to review", attempt_id,
               task_id, n, why);
}

forge::Status Supervisor::BindSockets() {
  FORGE_ASSIGN_OR_RETURN(endpoints_, proto::PrepareEndpoints(options_.state_dir));
  try {
    children_socket_.emplace(context_, zmq::socket_type::router);
    children_socket_->set(zmq::sockopt::router_mandatory, 1);
    children_socket_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(proto::kMaxMessageBytes));
    children_socket_->set(zmq::sockopt::linger, 0);
    children_socket_->bind(endpoints_.children);
    control_socket_.emplace(context_, zmq::socket_type::router);
    control_socket_->set(zmq::sockopt::router_mandatory, 1);
    control_socket_->set(zmq::sockopt::maxmsgsize, kControlMaxMessageBytes);
    control_socket_->set(zmq::sockopt::linger, 0);
    control_socket_->bind(endpoints_.control);
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kIo, "binding " + endpoints_.children + " / " + endpoints_.control +
                                         ": " + e.what());
  }
  return Status::Ok();
}

// ------------------------------------------------------------------- loop --

int Supervisor::Run() {
  while (!done_) {
    zmq::pollitem_t items[] = {
        {children_socket_->handle(), 0, ZMQ_POLLIN, 0},
        {control_socket_->handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, signals_->fd(), ZMQ_POLLIN, 0},
        {nullptr, checkpoint_ ? checkpoint_->fd() : -1, ZMQ_POLLIN, 0},
    };
    try {
      zmq::poll(items, checkpoint_ ? 4 : 3, std::chrono::milliseconds(PollTimeoutMs()));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) spdlog::error("zmq_poll: {}", e.what());
    }
    if ((items[3].revents & ZMQ_POLLIN) && checkpoint_->Finished()) FinishCheckpoint();
    // A child's exit ends its job only after its last messages (a result
    // sent just before it exited) have been read: see SettleExitedChildren.
    DrainChildren();
    if (items[2].revents & ZMQ_POLLIN) HandleSignals();
    SettleExitedChildren(false);
    DrainControl();
    RunTimers();
    if (!done_) {
      RetireSurplus();
      TryReview();
      TryMaintenance(true);
      TryDispatch();
      TryMaintenance(false);
      Notify();
    }
    MaybeCheckpoint();
  }
  sd_notify(0, "STOPPING=1");
  spdlog::info("supervisor {} stopped", ::getpid());
  return 0;
}

int64_t Supervisor::PollTimeoutMs() {
  int64_t now = clock_.MonotonicMs();
  int64_t next = now + kMaxPollMs;
  auto consider = [&](std::optional<int64_t> t) {
    if (t) next = std::min(next, *t);
  };
  if (judgement_pending_) {
    // Past deadlines wait for the loop to be steady: no earlier wake-up.
    consider(steady_since_mono_ms_ + SilenceConfirmMs());
  } else {
    consider(pool_.NextSilenceDeadline(config_.watchdog.heartbeat_timeout_ms));
    if (!stopping_) consider(pool_.NextJobDeadline());
  }
  // A past cooldown deadline held by the store pause would make the poll spin.
  if (next_due_wall_ms_ && !guards_.store_paused()) {
    consider(now + (*next_due_wall_ms_ - steady_wall_.NowMs()));
  }
  consider(guards_.NextExpiryMonoMs());
  if (guards_.StoreRetryDue()) consider(now);  // TryDispatch's Tick found it due
  for (const auto& r : respawns_) consider(r.due_mono_ms);
  if (stopping_) consider(stop_deadline_mono_ms_);
  // Nothing wakes the poll when ZeroMQ drops an exited child's connection.
  if (!pool_.Exited().empty()) consider(now + kLastWordsPollMs);
  if (watchdog_usec_ > 0) consider(next_watchdog_mono_ms_);
  // A due maintenance job waits for an idle worker, and a worker becoming
  // idle is a message, which ends the poll anyway: counting the (past)
  // deadline while every worker is busy made this loop spin at full CPU
  // until one was free (seen with a 1 s interval and one busy worker: ~60k
  // polls/s). A job in flight still bounds the poll (its timeout).
  if (!stopping_ && (maintenance_.in_flight() || pool_.FindIdle(Role::kWorker) != nullptr)) {
    consider(maintenance_.NextDeadline(config_.maintenance));
  }
  return std::clamp<int64_t>(next - now, 0, kMaxPollMs);
}

void Supervisor::HandleSignals() {
  while (auto sig = signals_->Read()) {
    switch (*sig) {
      case SIGCHLD:
        ReapChildren();
        break;
      case SIGTERM:
      case SIGINT:
        BeginShutdown(*sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
      case SIGHUP: {
        if (options_.config_path.empty()) {
          spdlog::info("SIGHUP: no config file to reload (running on defaults)");
          break;
        }
        auto loaded = LoadConfig(options_.config_path);
        if (!loaded.ok()) {
          spdlog::error("SIGHUP: keeping the current config: {}", loaded.error().message);
          EmitEvent("config.reload_failed", json{{"error", loaded.error().message}});
          break;
        }
        // Every key applies now; one that cannot is named here and in the event.
        json restart_needed = json::array();
        if (loaded->database.synchronous != config_.database.synchronous) {
          forge::Status set = store_->SetSynchronous(loaded->database.synchronous == "full");
          if (set.ok()) {
            spdlog::info("SIGHUP: database.synchronous now {}", loaded->database.synchronous);
          } else {
            restart_needed.push_back("database.synchronous");
            spdlog::warn("SIGHUP: database.synchronous takes effect at the next start: {}",
                         set.error().message);
          }
        }
        for (const auto& warning : ConfigWarnings(*loaded, ExecPath(std::getenv("PATH")))) {
          spdlog::warn("SIGHUP: {}", warning);
        }
        config_ = std::move(*loaded);
        store_->SetDefaultMaxAttempts(config_.retry.max_attempts);
        guards_.Reconfigure(GuardsConfigFor(config_));
        RefreshCostToday();
        FlushGuardEvents();
        spdlog::info("SIGHUP: reloaded {}", options_.config_path);
        EmitEvent("config.reloaded",
                  json{{"path", options_.config_path}, {"restart_needed", restart_needed}});
        if (!stopping_) SpawnMissing();
        surplus_ = true;  // workers or critics may have been lowered
        RetireSurplus();
        DropUnneededRespawns();
        break;
      }
      default:
        break;
    }
  }
}

// The loop's gaps. A child is judged (silent, overdue) on what it sent,
// read first. The loop itself may have stalled since it last read:
// - a write waiting out the busy timeout on a locked database: ZeroMQ's I/O
//   thread went on reading the socket, so a drain reads what was sent;
// - the whole process stopped (SIGSTOP, a frozen cgroup, a VM paused): the
//   I/O thread stopped too, and what the children sent is still in the
//   kernel's socket buffer, out of a drain's reach until that thread has run
//   again. So after a gap that could hide a heartbeat, nothing is judged
//   until the loop has run for SilenceConfirmMs: every child was killed as
//   lost after a 5 s SIGSTOP of the supervisor, one time in two.
void Supervisor::NoteLoopTurn(int64_t now) {
  const int64_t away = last_turn_mono_ms_ < 0 ? 0 : now - last_turn_mono_ms_;
  last_turn_mono_ms_ = now;
  judgement_pending_ = false;
  if (away <= LoopGapLimitMs()) return;
  steady_since_mono_ms_ = now;
  // It sleeps up to a second, or to a silence deadline: away past both, it was held.
  const int64_t longest_sleep =
      std::max(kMaxPollMs, config_.watchdog.heartbeat_timeout_ms) + SilenceConfirmMs();
  if (away > longest_sleep) {
    spdlog::warn(
        "the supervisor's loop did not run for {} ms (stopped or starved); children "
        "are judged once it has run for {} ms",
        away, SilenceConfirmMs());
  }
}

bool Supervisor::Steady(int64_t now) const {
  return now - steady_since_mono_ms_ >= SilenceConfirmMs();
}

int64_t Supervisor::SilenceConfirmMs() const {
  return std::clamp<int64_t>(config_.watchdog.heartbeat_interval_ms / 2, 10, 500);
}

int64_t Supervisor::LoopGapLimitMs() const {
  const auto& w = config_.watchdog;
  return std::max(w.heartbeat_timeout_ms - w.heartbeat_interval_ms, 2 * SilenceConfirmMs());
}

void Supervisor::DrainForJudgement() {
  // One drain stops at its budget (a write in it may have waited out the busy
  // timeout): a few more read what is left, bounded for a flooding child.
  for (int drains = 0; drains < kSilenceDrains && !DrainChildren(); ++drains) {
  }
  // A stop between the turn's start and this read is a gap too.
  const int64_t read_at = clock_.MonotonicMs();
  if (read_at - last_turn_mono_ms_ > LoopGapLimitMs()) steady_since_mono_ms_ = read_at;
}

// Children silent as of the drain, to be killed as lost; a stopping one is
// being killed or shut down already and is returned at once.
std::vector<pid_t> Supervisor::SilentChildren(int64_t now) {
  const int64_t timeout = config_.watchdog.heartbeat_timeout_ms;
  if (pool_.Silent(now, timeout).empty()) return {};
  const int64_t read_from = clock_.MonotonicMs();
  DrainForJudgement();
  std::vector<pid_t> silent = pool_.Silent(read_from, timeout);
  if (!Steady(clock_.MonotonicMs())) {
    const size_t before = silent.size();
    std::erase_if(silent, [this](pid_t pid) {
      const Child* c = pool_.Find(pid);
      return c != nullptr && c->state != ChildState::kStopping;
    });
    judgement_pending_ = judgement_pending_ || silent.size() != before;
  }
  return silent;
}

void Supervisor::KillAsLost(Child& c, const std::string& why, const std::string& attempt_error) {
  const int64_t attempt = c.attempt_id;
  const std::string task = c.task_id;
  const int n = c.attempt_n;
  const pid_t pid = c.pid;
  const Role role = c.role;
  KillChild(c, why);
  (void)pool_.Apply(pid, ChildEvent::kKilled, clock_.MonotonicMs());
  if (attempt == 0) return;
  EmitEvent("child.lost", json{{"pid", pid}, {"attempt_id", attempt}}, task, n);
  AttemptEnd end;
  end.outcome = Outcome::kLost;
  end.error = attempt_error;
  c.attempt_id = 0;
  // A critic that hung says nothing of the work it was reviewing, as one
  // that died says nothing (SettleChild): it is reviewed again, bounded as a
  // review without a verdict is, or by the next start during a stop.
  // Before, the attempt closed and the paid agent ran again.
  if (role == Role::kCritic && stopping_) {
    return PostponeReview(attempt, "the supervisor stopped during its review: " + end.error);
  }
  if (role == Role::kCritic) {
    if (!ReviewAgain(attempt, task, end, false)) FailAfterReviews(attempt, std::move(end));
    return;
  }
  CloseAttempt(attempt, end);
}

// The last review without a verdict, however the critic failed (it died,
// hung, or replied with an error): the attempt fails and counts, so
// max_attempts and the same-failure rule bound the agent's runs. Closing it
// `crashed` or `lost` (uncounted) after a critic's death ran the paid agent
// again up to max_infra_retries times and opened the circuit breaker for
// every task (session 36's exploratory run: a check that killed its critic).
void Supervisor::FailAfterReviews(int64_t attempt_id, AttemptEnd end) {
  end.outcome = Outcome::kFailed;
  end.error = "critic error: " + end.error;
  end.retryable = true;
  CloseAttempt(attempt_id, end);
}

void Supervisor::KillOverdueChildren(int64_t now) {
  if (pool_.Overdue(now).empty()) return;
  DrainForJudgement();  // a result read here ends its job, and its deadline
  const int64_t read_at = clock_.MonotonicMs();
  const std::vector<pid_t> overdue = pool_.Overdue(read_at);
  if (overdue.empty()) return;
  if (!Steady(read_at)) {
    judgement_pending_ = true;
    return;
  }
  for (pid_t pid : overdue) {
    Child* c = pool_.Find(pid);
    if (c == nullptr) continue;
    if (c->role == Role::kCritic) {
      const std::string what = "it had not replied to its review of attempt " +
                               std::to_string(c->attempt_id) + " within the review's limit (" +
                               std::to_string(c->job_limit_ms) + " ms)";
      KillAsLost(*c, what,
                 c->routing_id + " gave no verdict: " + what +
                     " (a check or git command SIGKILL cannot end, stuck in the kernel?); killed");
      continue;
    }
    if (c->agent_pid == 0) {
      const std::string what = "it had neither started the agent of attempt " +
                               std::to_string(c->attempt_id) +
                               " nor ended the attempt within the dispatch's limit (" +
                               std::to_string(c->job_limit_ms) + " ms)";
      KillAsLost(*c, what,
                 c->routing_id + " did not end the attempt: " + what +
                     " (a git command SIGKILL cannot end, stuck in the kernel?); killed");
      continue;
    }
    const std::string what = "it had not reported the end of its agent (pid " +
                             std::to_string(c->agent_pid) + ") " +
                             std::to_string(AgentOverrunMs(c->agent_kill_grace_ms)) +
                             " ms after its " + (c->cancel_sent ? "cancel" : "timeout");
    KillAsLost(*c, what,
               c->routing_id + " did not end the attempt: " + what +
                   " (an agent SIGKILL cannot end, stuck in the kernel?); killed");
  }
}

void Supervisor::RunTimers() {
  if (!retired_.empty()) KillOverdueRetirees();
  const int64_t now = clock_.MonotonicMs();
  NoteLoopTurn(now);
  const std::vector<pid_t> silent = SilentChildren(now);
  for (pid_t pid : silent) {
    Child* c = pool_.Find(pid);
    if (c == nullptr || c->state == ChildState::kStopping) {
      // Already being killed; SIGCHLD finishes it. A stopping child that keeps
      // quiet past the timeout is killed below by the shutdown deadline.
      if (c != nullptr && !stopping_ && c->state == ChildState::kStopping) ::kill(pid, SIGKILL);
      continue;
    }
    KillAsLost(
        *c, "no heartbeat for " + std::to_string(now - c->last_seen_mono_ms) + " ms",
        std::string(RoleName(c->role)) + " " + std::to_string(pid) + " sent no heartbeat for " +
            std::to_string(ChildPool::HeartbeatTimeout(*c, config_.watchdog.heartbeat_timeout_ms)) +
            " ms");
  }
  if (!stopping_) KillOverdueChildren(now);
  for (auto it = respawns_.begin(); it != respawns_.end();) {
    if (it->due_mono_ms <= now && !stopping_) {
      Role role = it->role;
      it = respawns_.erase(it);
      // One the config no longer asks for (lowered since).
      if (Staying(role) >= Wanted(role)) continue;
      SpawnChild(role);
    } else {
      ++it;
    }
  }
  // While the store pause is on, promotion waits for it: a failing promotion
  // would otherwise be tried (and logged) every turn, its deadline being past.
  if (next_due_wall_ms_ && *next_due_wall_ms_ <= steady_wall_.NowMs() && !guards_.store_paused()) {
    auto promoted = store_->PromoteDue(steady_wall_.NowMs());
    if (!promoted.ok()) StoreFailed("promoting cooldown tasks", promoted.error());
    RefreshNextDue();
  }
  if (auto pid = maintenance_.Overrun(now, config_.maintenance)) {
    if (Child* c = pool_.Find(*pid); c != nullptr && c->state != ChildState::kStopping) {
      KillChild(*c, "maintenance job " + std::to_string(maintenance_.job_id()) + " ran past " +
                        std::to_string(config_.maintenance.timeout_ms) + " ms");
      (void)pool_.Apply(*pid, ChildEvent::kKilled, now);
    }
  }
  bool budget_was_paused = guards_.budget_paused();
  guards_.Tick();
  if (budget_was_paused && !guards_.budget_paused()) RefreshCostToday();
  FlushGuardEvents();
  RetryStore();
  if (stopping_ && (now >= stop_deadline_mono_ms_ || pool_.Empty())) {
    FinishShutdown();
  }
  PetWatchdog();
}

// systemd's watchdog: WATCHDOG=1 every WATCHDOG_USEC / 2. From the loop, and
// from within a long store write (the store's progress hook).
void Supervisor::PetWatchdog() {
  const int64_t now = clock_.MonotonicMs();
  if (watchdog_usec_ > 0 && now >= next_watchdog_mono_ms_) {
    sd_notify(0, "WATCHDOG=1");
    next_watchdog_mono_ms_ = now + static_cast<int64_t>(watchdog_usec_ / 2000);
  }
}

void Supervisor::TryDispatch() {
  if (stopping_) return;
  while (true) {
    Child* worker = pool_.FindIdle(Role::kWorker);
    if (worker == nullptr) return;
    guards_.Tick();
    FlushGuardEvents();
    if (!guards_.MayDispatch()) return;
    auto next = store_->NextReady();
    if (!next.ok()) {
      spdlog::error("selecting a ready task: {}", next.error().ToString());
      return;
    }
    if (!next->has_value()) return;
    // A task waits while its workspace is in use: the maintenance job listed
    // it for removal (retried since), or a child still holds an attempt of
    // it (cancelled and retried while its agent is in its kill grace, or its
    // critic's check or squash runs): a new attempt would reset the worktree
    // under them. The ready tasks behind it go first meanwhile.
    auto workspace_busy = [&](const std::string& id) {
      return maintenance_.Removing(id) || pool_.HoldsTask(id);
    };
    if (workspace_busy((*next)->id)) {
      int skippable = static_cast<int>(maintenance_.RemovingCount()) + pool_.Count(Role::kWorker) +
                      pool_.Count(Role::kCritic);
      next = store_->NextReady(skippable + 1, workspace_busy);
      if (!next.ok()) {
        spdlog::error("selecting a ready task: {}", next.error().ToString());
        return;
      }
      if (!next->has_value()) return;
    }
    proto::TaskInfo task = std::move(**next);
    // A task that has spent its budget runs no more, however it came to be
    // ready: a retry, a cooldown that ended, a dependency done, or a reload
    // that lowered budget.task_usd below what it spent. It is blocked as its
    // attempt's close would have blocked it, without paying for one more.
    if (const double budget = config_.budget.task_usd; budget > 0 && task.cost_usd >= budget) {
      auto blocked = store_->Block(task.id, "task budget exceeded",
                                   json{{"cost_usd", task.cost_usd}, {"task_usd", budget}});
      if (!blocked.ok()) {
        StoreFailed("blocking " + task.id, blocked.error());
        return;
      }
      spdlog::warn("{} not dispatched: it has spent ${:.2f} of budget.task_usd ${:.2f}; blocked",
                   task.id, task.cost_usd, budget);
      continue;
    }
    proto::AgentSpec agent = ResolveAgent(config_, task);
    const std::string primary_model = agent.model;
    if (!config_.agent.fallback_model.empty() && task.total_attempts > 0) {
      auto failed = store_->LastModelFailure(task.id);
      agent.model = ModelForNextAttempt(agent.model, config_.agent.fallback_model,
                                        task.total_attempts, failed.ok() ? *failed : 0);
    }
    store::Lease lease;
    lease.worker_pid = worker->pid;
    lease.model = agent.model;
    lease.log_path = LogPathFor(task.id, task.total_attempts + 1, ".log");
    auto attempt = store_->LeaseAttempt(task.id, lease);
    if (!attempt.ok()) {
      // Nothing changed (the transaction rolled back): the task stays ready.
      StoreFailed("leasing " + task.id, attempt.error());
      return;
    }
    proto::Dispatch d;
    d.attempt_id = attempt->id;
    d.n = attempt->n;
    if (agent.model != primary_model) {
      EmitEvent("attempt.model_fallback",
                json{{"model", agent.model}, {"instead_of", primary_model}}, task.id, attempt->n);
    }
    // d.brief stays empty: the worker renders the task's brief, which the
    // task in the dispatch carries; a copy beside it doubled the largest
    // field of the message (docs/protocol.md).
    // total_attempts counts every attempt ever (retry keeps it), so a task
    // with none has no history and the query (a task load and an attempts
    // scan) is skipped.
    if (task.total_attempts > 0) {
      if (auto h = store_->History(task.id, kHistoryLimit); h.ok()) d.history = std::move(*h);
    }
    d.workspace = WorkspaceFor(task);
    d.agent = std::move(agent);
    d.sync_remote = config_.sync.remote;
    d.sync_branch = config_.sync.branch;
    d.log_path =
        attempt->log_path.empty() ? LogPathFor(task.id, attempt->n, ".log") : attempt->log_path;
    d.task = ChildTask(std::move(task));
    // The brief lists what the review will run: the config's checks first,
    // as the review runs them, then the task's.
    d.task.verify.insert(d.task.verify.begin(), config_.critic.verify.begin(),
                         config_.critic.verify.end());
    auto assigned = pool_.AssignJob(worker->pid, d.attempt_id, d.task.id, d.n, clock_.MonotonicMs(),
                                    clock_.WallMs());
    if (!assigned.ok()) spdlog::error("dispatch bookkeeping: {}", assigned.error().message);
    worker->agent_timeout_ms = d.agent.timeout_ms;
    worker->agent_kill_grace_ms = d.agent.kill_grace_ms;
    worker->job_limit_ms = DispatchLimitMs(d, worker->spawn_workspace_lock_wait_ms);
    if (worker->job_limit_ms > 0) {
      worker->job_deadline_mono_ms = clock_.MonotonicMs() + worker->job_limit_ms;
    }
    guards_.OnDispatched();
    FlushGuardEvents();
    spdlog::info("dispatch {} #{} (attempt {}) to {}", d.task.id, d.n, d.attempt_id,
                 worker->routing_id);
    if (!Send(*worker, d)) {
      AttemptEnd end;
      end.outcome = Outcome::kCrashed;
      end.error = worker->routing_id + " was unreachable when the attempt was dispatched";
      int64_t id = d.attempt_id;
      KillChild(*worker, "unreachable");
      worker->attempt_id = 0;
      CloseAttempt(id, end);
    }
  }
}

void Supervisor::TryReview() {
  // A critic agent shares the rate limit its own or an agent's run reported:
  // its reviews wait for the pause, as dispatches do. Checks alone do not.
  if (guards_.rate_limited() && config_.critic.agent) return;
  while (!review_queue_.empty() && !stopping_) {
    Child* critic = pool_.FindIdle(Role::kCritic);
    if (critic == nullptr) return;
    PendingReview pending = std::move(review_queue_.front());
    review_queue_.pop_front();
    int64_t attempt_id = pending.attempt_id;
    if (!pending.task) {
      // The result's transaction did not leave the task: read it. (A cancel
      // takes the attempt out of the queue, see OnCancelled.)
      auto attempt = store_->GetAttempt(attempt_id);
      if (attempt.ok() && attempt->ended_at_ms != 0) continue;  // cancelled meanwhile
      auto task = attempt.ok() ? store_->GetTask(attempt->task_id)
                               : Result<proto::TaskInfo>(attempt.error());
      if (!task.ok()) {
        // A read that failed: the review waits for the next turn rather
        // than leave the attempt in `reviewing` with no critic.
        spdlog::warn("review of attempt {}: {}", attempt_id, task.error().message);
        review_queue_.push_front(std::move(pending));
        return;
      }
      pending.n = attempt->n;
      pending.task = std::move(*task);
    }
    std::optional<proto::TaskInfo>& task = pending.task;
    proto::Review r;
    r.attempt_id = attempt_id;
    r.n = pending.n;
    r.workspace = WorkspaceFor(*task);
    r.verify = config_.critic.verify;
    r.verify.insert(r.verify.end(), task->verify.begin(), task->verify.end());
    r.verify_timeout_ms = config_.critic.verify_timeout_ms;
    r.critic = CriticSpec(config_);
    r.log_path = LogPathFor(task->id, r.n, ".review.log");
    r.task = ChildTask(std::move(*task));
    r.task.verify.clear();  // r.verify holds them, with the config's
    r.task.base_commit.clear();  // the critic reads the worktree's own record of it
    // Only a critic agent reads the brief (its prompt): without one the
    // review leaves it out, often the largest field of the message.
    if (!r.critic) r.task.brief.clear();
    const int64_t now = clock_.MonotonicMs();
    auto assigned = pool_.AssignJob(critic->pid, attempt_id, r.task.id, r.n, now, clock_.WallMs());
    if (!assigned.ok()) spdlog::error("review bookkeeping: {}", assigned.error().message);
    critic->job_limit_ms = ReviewLimitMs(r, critic->spawn_workspace_lock_wait_ms);
    if (critic->job_limit_ms > 0) critic->job_deadline_mono_ms = now + critic->job_limit_ms;
    spdlog::info("review {} #{} (attempt {}) on {}", r.task.id, r.n, attempt_id,
                 critic->routing_id);
    if (!Send(*critic, r)) {
      critic->attempt_id = 0;
      KillChild(*critic, "unreachable");
      // Read from the store again for the next critic: r.task is the
      // critic's view, without the task's checks or brief.
      review_queue_.push_front({attempt_id, r.n, std::nullopt});
    }
  }
}

// Systemd status line, sent when it changes (and the first time).
void Supervisor::Notify(bool force) {
  // Only under systemd, and at most once a second: counting the queue is a query.
  if (std::getenv("NOTIFY_SOCKET") == nullptr) return;
  int64_t now = clock_.MonotonicMs();
  if (!force && now < next_status_mono_ms_) return;
  next_status_mono_ms_ = now + 1000;
  auto counts = store_->QueueCounts();
  std::string line;
  if (counts.ok()) {
    line = "running " + std::to_string((*counts)["running"] + (*counts)["reviewing"]) + ", ready " +
           std::to_string((*counts)["ready"]) + ", cooldown " +
           std::to_string((*counts)["cooldown"]) + ", done " + std::to_string((*counts)["done"]) +
           ", blocked " + std::to_string((*counts)["blocked"]);
  }
  for (const auto& p : guards_.Reasons()) line += "; paused (" + p.kind + "): " + p.reason;
  if (!force && line == last_status_line_) return;
  last_status_line_ = line;
  sd_notify(0, ("STATUS=" + line).c_str());
}

// --------------------------------------------------------------- children --

void Supervisor::SpawnChild(Role role) {
  SpawnOptions o;
  o.argv = {ChildBinary(role),
            "--connect",
            endpoints_.children,
            "--state-dir",
            options_.state_dir,
            "--heartbeat-ms",
            std::to_string(config_.watchdog.heartbeat_interval_ms),
            "--workspace-lock-wait-ms",
            std::to_string(config_.watchdog.workspace_lock_wait_ms)};
  // systemd's notify/watchdog variables are the supervisor's alone.
  for (auto& kv : CurrentEnvironment()) {
    if (kv.rfind("NOTIFY_SOCKET=", 0) == 0 || kv.rfind("WATCHDOG_", 0) == 0) continue;
    o.env.push_back(std::move(kv));
  }
  o.new_process_group = true;
  o.die_with_parent = true;
  o.stdin_mode = Stdio::kNull;
  o.stdout_mode = Stdio::kNull;
  o.stderr_mode = Stdio::kInherit;
  auto spawned = Spawn(o);
  int64_t now = clock_.MonotonicMs();
  if (!spawned.ok()) {
    // A missing or broken binary is a crash loop like any other: throttled, retried.
    int64_t delay = std::max<int64_t>(pool_.RecordRestart(role, now), kRespawnDelayInitialMs);
    spdlog::error("spawning {}: {}; retrying in {} ms", RoleName(role), spawned.error().message,
                  delay);
    respawns_.push_back({role, now + delay});
    return;
  }
  // Not reaped yet (only HandleSignals reaps), so its start time is readable.
  Child& c = pool_.Add(role, spawned->pid, ProcessStartTime(spawned->pid).value_or(0), now);
  c.spawn_heartbeat_timeout_ms = config_.watchdog.heartbeat_timeout_ms;
  c.spawn_workspace_lock_wait_ms = config_.watchdog.workspace_lock_wait_ms;
  spdlog::info("spawned {}", c.routing_id);
}

int Supervisor::Wanted(Role role) const {
  return role == Role::kWorker ? config_.workers : config_.critics;
}

int Supervisor::Staying(Role role) {
  int n = 0;
  for (const Child* c : pool_.All()) {
    if (c->role == role && c->state != ChildState::kExited && !retired_.contains(c->pid)) ++n;
  }
  return n;
}

void Supervisor::RetireSurplus() {
  if (!surplus_ || stopping_) return;
  bool left = false;
  const int64_t now = clock_.MonotonicMs();
  for (Role role : {Role::kWorker, Role::kCritic}) {
    for (int staying = Staying(role); staying > Wanted(role); --staying) {
      Child* idle = pool_.FindIdle(role);
      if (idle == nullptr) {  // busy: retired once it is idle
        left = true;
        break;
      }
      proto::Shutdown s;
      s.grace_ms = config_.watchdog.shutdown_grace_ms;
      retired_[idle->pid] =
          now + config_.watchdog.shutdown_grace_ms + config_.watchdog.kill_grace_ms + 1000;
      (void)pool_.Apply(idle->pid, ChildEvent::kShutdown, now);
      spdlog::info("{} retired: {} now {}", idle->routing_id,
                   role == Role::kWorker ? "workers" : "critics", Wanted(role));
      // Undelivered, it would stay idle and beating, never to exit.
      if (!Send(*idle, s)) KillChild(*idle, "retired, and its shutdown could not be sent");
    }
  }
  surplus_ = left;
}

void Supervisor::KillOverdueRetirees() {
  const int64_t now = clock_.MonotonicMs();
  for (auto& [pid, deadline] : retired_) {
    if (now < deadline) continue;
    deadline = INT64_MAX;  // once
    if (Child* c = pool_.Find(pid)) KillChild(*c, "retired, and still running past its graces");
  }
}

void Supervisor::DropUnneededRespawns() {
  for (Role role : {Role::kWorker, Role::kCritic}) {
    int needed = Wanted(role) - Staying(role);
    std::erase_if(respawns_, [&](const PendingRespawn& r) {
      if (r.role != role) return false;
      return needed-- <= 0;
    });
  }
}

void Supervisor::SpawnMissing() {
  auto pending = [&](Role role) {
    return static_cast<int>(std::count_if(respawns_.begin(), respawns_.end(),
                                          [&](const auto& r) { return r.role == role; }));
  };
  for (Role role : {Role::kWorker, Role::kCritic}) {
    for (int i = Staying(role) + pending(role); i < Wanted(role); ++i) SpawnChild(role);
  }
}

bool Supervisor::Send(const Child& child, const proto::SupervisorMessage& message) {
  std::string body = proto::Encode(message);
  try {
    children_socket_->send(zmq::buffer(child.routing_id), zmq::send_flags::sndmore);
    children_socket_->send(zmq::buffer(body), zmq::send_flags::dontwait);
    return true;
  } catch (const zmq::error_t& e) {
    spdlog::warn("sending {} to {}: {}", proto::TypeName(message), child.routing_id, e.what());
    return false;
  }
}

bool Supervisor::DrainChildren() {
  for (ReadBudget budget(clock_); budget.Left();) {
    std::vector<zmq::message_t> frames;
    zmq::recv_result_t got;
    try {
      got = zmq::recv_multipart(*children_socket_, std::back_inserter(frames),
                                zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      spdlog::warn("children socket: {}", e.what());
      ++counters_.bad_child_messages;
      continue;
    }
    if (!got) return true;
    if (frames.size() != 2) {
      ++counters_.bad_child_messages;
      spdlog::warn("children socket: message with {} frames ignored", frames.size());
      continue;
    }
    HandleChildMessage(frames[0].to_string(), frames[1].to_string());
  }
  return false;
}

void Supervisor::LogUnknownPeer(const std::string& routing_id, size_t bytes) {
  constexpr int64_t kEveryMs = 60'000;
  constexpr size_t kMaxQuietPeers = 1024;
  const int64_t now = clock_.MonotonicMs();
  if (unknown_peers_.size() >= kMaxQuietPeers && !unknown_peers_.count(routing_id)) {
    // Those due to be logged anyway go: they lose only their "N more".
    std::erase_if(unknown_peers_, [now](const auto& p) { return p.second.next_log_ms <= now; });
  }
  if (unknown_peers_.size() >= kMaxQuietPeers && !unknown_peers_.count(routing_id)) {
    return;  // counted in bad_child_messages, not logged: over a thousand quiet peers
  }
  QuietPeer& peer = unknown_peers_[routing_id];
  if (now < peer.next_log_ms) {
    ++peer.unlogged;
    return;
  }
  spdlog::warn(
      "message from unknown peer '{}' ignored ({} bytes{}); logged once a minute per peer (a "
      "child of a supervisor killed before this one sends until it exits)",
      routing_id, bytes,
      peer.unlogged > 0 ? "; " + std::to_string(peer.unlogged) + " more since the last line" : "");
  peer = {now + kEveryMs, 0};
}

void Supervisor::HandleChildMessage(const std::string& routing_id, const std::string& bytes) {
  // An exited child still in the pool is heard: these are its last words.
  Child* child = pool_.FindByRoutingId(routing_id);
  if (child == nullptr) {
    ++counters_.bad_child_messages;
    LogUnknownPeer(routing_id, bytes.size());
    return;
  }
  auto decoded = proto::DecodeChildMessage(bytes);
  int64_t now = clock_.MonotonicMs();
  if (!decoded.ok()) {
    ++counters_.bad_child_messages;
    spdlog::warn("{}: undecodable message ignored: {}", routing_id, decoded.error().message);
    return;
  }
  // Any well-formed message proves the child alive.
  child->last_seen_mono_ms = now;
  std::visit(
      [&](auto& m) {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, proto::Hello>) {
          OnHello(*child, m);
        } else if constexpr (std::is_same_v<M, proto::Heartbeat>) {
          (void)pool_.Apply(child->pid, ChildEvent::kHeartbeat, now);
          if (m.attempt_id && *m.attempt_id != child->attempt_id) {
            ++counters_.stray_messages;
            spdlog::warn("{}: heartbeat names attempt {} but holds {}", routing_id, *m.attempt_id,
                         child->attempt_id);
          }
        } else if constexpr (std::is_same_v<M, proto::Started>) {
          OnStarted(*child, m);
        } else if constexpr (std::is_same_v<M, proto::Result>) {
          OnResult(*child, m);
        } else if constexpr (std::is_same_v<M, proto::ReviewResult>) {
          OnReviewResult(*child, m);
        } else if constexpr (std::is_same_v<M, proto::MaintenanceResult>) {
          OnMaintenanceResult(*child, m);
        }
      },
      *decoded);
}

void Supervisor::OnHello(Child& child, const proto::Hello& m) {
  if (m.role != RoleName(child.role) || m.pid != child.pid) {
    ++counters_.bad_child_messages;
    spdlog::warn("{}: hello says role '{}' pid {}; ignored", child.routing_id, m.role, m.pid);
    return;
  }
  auto r = pool_.Apply(child.pid, ChildEvent::kHello, clock_.MonotonicMs());
  if (!r.ok()) {
    spdlog::warn("{}", r.error().message);
    return;
  }
  spdlog::info("{} ready (version {})", child.routing_id, m.version);
  if (stopping_) {
    proto::Shutdown s;
    s.grace_ms = 0;
    Send(child, s);
    (void)pool_.Apply(child.pid, ChildEvent::kShutdown, clock_.MonotonicMs());
  }
}

bool Supervisor::HoldsAttempt(const Child& child, int64_t attempt_id, std::string_view what) {
  if (attempt_id != 0 && child.attempt_id == attempt_id) return true;
  ++counters_.stray_messages;
  spdlog::warn("{}: {} for attempt {} which it does not hold (holds {}); ignored", child.routing_id,
               what, attempt_id, child.attempt_id);
  return false;
}

void Supervisor::OnStarted(Child& child, const proto::Started& m) {
  if (child.role != Role::kWorker || !HoldsAttempt(child, m.attempt_id, "started")) return;
  child.agent_pid = m.agent_pid;
  child.agent_pgid = m.pgid;
  child.agent_start_time = m.agent_start_time;
  // The worker ends its agent at the timeout, counted from the agent's start
  // (a git step before it has its own), or at once when the attempt was
  // cancelled before it started; a little later than that here.
  const int64_t overrun = AgentOverrunMs(child.agent_kill_grace_ms);
  if (child.cancel_sent) {
    child.job_deadline_mono_ms = clock_.MonotonicMs() + overrun;
  } else if (child.agent_timeout_ms > 0) {
    child.job_deadline_mono_ms = clock_.MonotonicMs() + child.agent_timeout_ms + overrun;
  } else {
    child.job_deadline_mono_ms = 0;  // an agent without a timeout runs as long as it does
  }
  auto s = store_->MarkAgentStarted(m.attempt_id, m.agent_pid, m.pgid, m.agent_start_time,
                                    m.base_commit);
  if (!s.ok()) {
    // Recovery's kill check needs it, and every later attempt the base:
    // kept for the retry (updates, safe to repeat).
    WriteFailed("recording the agent start of attempt " + std::to_string(m.attempt_id), s.error(),
                [this, m] {
                  return store_->MarkAgentStarted(m.attempt_id, m.agent_pid, m.pgid,
                                                  m.agent_start_time, m.base_commit);
                });
  }
  // Read after its worker died (its last words): the agent must not outlive it.
  if (child.state == ChildState::kExited) KillAgentGroup(child.agent_pgid);
}

void Supervisor::OnResult(Child& child, const proto::Result& m) {
  if (child.role != Role::kWorker || !HoldsAttempt(child, m.attempt_id, "result")) return;
  int64_t attempt_id = m.attempt_id;
  const std::string task_id = child.task_id;  // the job's, cleared by FinishJob
  const int n = child.attempt_n;
  auto done = pool_.FinishJob(child.pid, clock_.MonotonicMs());
  if (!done.ok()) spdlog::warn("{}", done.error().message);
  child.attempt_id = 0;
  store::AgentReport report;
  report.outcome = WorkerOutcome(m.outcome);
  report.exit_code = m.exit_code;
  report.signal = m.signal;
  report.duration_ms = m.duration_ms;
  // codex reports tokens only: priced here, so that the budgets bound it.
  Spend spend = CountedSpend(m.cost_usd, m.tokens_in, m.tokens_out, config_.budget.token_prices);
  report.cost_usd = spend.usd;
  report.cost_estimated = spend.estimated;
  report.tokens_in = m.tokens_in;
  report.tokens_out = m.tokens_out;
  report.num_turns = m.num_turns;
  report.session_id = m.session_id;
  report.model = m.model;
  report.error = m.error;
  report.log_path = m.log_path;
  report.log_error = m.log_error;
  report.agent_pid = m.agent_pid;
  report.pgid = m.pgid;
  report.base_commit = m.base_commit;
  if (!m.log_error.empty()) spdlog::warn("attempt {} ({}): {}", attempt_id, task_id, m.log_error);
  auto recorded = store_->RecordAgentResult(attempt_id, report);
  if (recorded.ok() && recorded->recorded) {
    AddCostToday(recorded->attempt.started_at_ms, report.cost_usd);
    FlushGuardEvents();
  }
  if (recorded.ok() && recorded->closed) {
    spdlog::info("result for attempt {} which is already closed (cancelled): its spend recorded",
                 attempt_id);
    return;
  }
  if (!recorded.ok()) {
    // Idempotent (once recorded, a repeat changes nothing): kept for the
    // retry so the cost and tokens are not lost, even once it is closed.
    WriteFailed(
        "recording the result of attempt " + std::to_string(attempt_id), recorded.error(),
        [this, attempt_id, report]() -> forge::Status {
          auto again = store_->RecordAgentResult(attempt_id, report);
          return again.ok() ? forge::Status::Ok() : forge::Status(again.error());
        },
        attempt_id);
  }
  if (m.model_failure && report.outcome != Outcome::kPassed) {
    // What ModelForNextAttempt reads (store LastModelFailure).
    EmitEvent("attempt.model_failure", json{{"model", m.model}, {"error", m.error}}, task_id, n);
  }
  if (m.rate_limited) {
    guards_.OnRateLimited(m.rate_limit_reset_ms);
    FlushGuardEvents();
  }
  spdlog::info("{}: attempt {} agent {} {}", child.routing_id, attempt_id, m.outcome, m.error);
  if (report.outcome == Outcome::kPassed) {
    std::optional<proto::TaskInfo> task;
    if (recorded.ok() && recorded->task) {
      task = std::move(recorded->task);
    } else if (auto read = store_->GetTask(task_id); read.ok()) {
      task = std::move(*read);
    }
    if (task && task->kind == "expand") {
      CloseExpandAttempt(*task, attempt_id, m.spec);
      return;
    }
    if (stopping_) {
      PostponeReview(attempt_id, "the supervisor stopped before its review");
      return;
    }
    review_queue_.push_back({attempt_id, n, std::move(task)});
    return;
  }
  AttemptEnd end;
  end.outcome = report.outcome;
  end.error = m.error;
  end.output_tail = m.output_tail;
  end.retryable = m.retryable;
  end.rate_limited = m.rate_limited;
  end.infra = m.infra;
  CloseAttempt(attempt_id, end);
  if (m.infra) {
    ChildOutOfSpace("attempt " + std::to_string(attempt_id) + " (" + task_id + " #" +
                        std::to_string(n) + ") on " + child.routing_id,
                    m.error, task_id);
  }
}

// An expand attempt is not reviewed by the critic: the worker already checked
// the spec's sections, and the spec becomes a task that waits for the
// operator's approval, which is its review.
void Supervisor::CloseExpandAttempt(const proto::TaskInfo& task, int64_t attempt_id,
                                    const std::string& spec) {
  AttemptEnd end;
  end.outcome = Outcome::kPassed;
  end.verdict = "pass";
  end.spec = spec;
  forge::Status valid = spec.empty() ? MakeError(ErrorCode::kInvalid, "the agent wrote no spec")
                                     : store::CheckBatch({SpecTask(task, spec)});
  if (!valid.ok()) {
    end.outcome = Outcome::kFailed;
    end.verdict.clear();
    end.error = "expand " + task.id + ": " + valid.error().message;
  }
  CloseAttempt(attempt_id, end);
}

void Supervisor::OnReviewResult(Child& child, const proto::ReviewResult& m) {
  if (child.role != Role::kCritic || !HoldsAttempt(child, m.attempt_id, "review_result")) return;
  const std::string task_id = child.task_id;  // the job's, cleared by FinishJob
  auto done = pool_.FinishJob(child.pid, clock_.MonotonicMs());
  if (!done.ok()) spdlog::warn("{}", done.error().message);
  child.attempt_id = 0;
  AttemptEnd end;
  end.verdict = m.verdict;
  end.checks = m.checks;
  end.findings = m.findings;
  end.commit = m.commit.value_or("");
  end.error = m.error;
  Spend spend = CountedSpend(m.cost_usd, m.tokens_in, m.tokens_out, config_.budget.token_prices);
  end.cost_usd = spend.usd;
  end.cost_estimated = spend.estimated;
  end.tokens_in = m.tokens_in;
  end.tokens_out = m.tokens_out;
  end.infra = m.infra;
  end.review_log_error = m.log_error;
  if (!m.log_error.empty()) {
    spdlog::warn("attempt {} ({}): {}", m.attempt_id, task_id, m.log_error);
  }
  // Not the agent's failure: a close for the task's budget is uncounted, and
  // outside the breaker.
  end.rate_limited = m.rate_limited;
  if (m.rate_limited) {
    guards_.OnRateLimited(m.rate_limit_reset_ms, "critic agent");
    FlushGuardEvents();
  }
  if (m.verdict == "pass") {
    end.outcome = Outcome::kPassed;
  } else if (m.verdict == "reject") {
    end.outcome = Outcome::kRejected;
  } else if (stopping_) {
    // No verdict, and no critic to ask again before the exit: the next
    // start reviews the same work again. What this review spent counts now.
    const int review = ++reviews_without_verdict_[m.attempt_id].all;
    if (forge::Status s = AddCriticSpend(m.attempt_id, review, end); !s.ok()) {
      WriteFailed(
          "recording the critic's spend for attempt " + std::to_string(m.attempt_id), s.error(),
          [this, id = m.attempt_id, review, end] { return AddCriticSpend(id, review, end); });
    }
    PostponeReview(m.attempt_id,
                   m.error == "cancelled" ? "the supervisor stopped during its review"
                                          : "the supervisor stopped after a review without a "
                                            "verdict: " +
                                                m.error,
                   review);
    return;
  } else if (m.retryable && !m.infra && ReviewAgain(m.attempt_id, task_id, end, m.rate_limited)) {
    return;
  } else {
    end.outcome = Outcome::kFailed;
    end.error = "critic error: " + m.error;
    end.retryable = m.retryable;  // false: blocked at once
  }
  // A reject names its failed check's command, which may quote a secret:
  // the critic scrubbed the task's and its own environment's (Critic::Reply);
  // the config's agent env is the supervisor's to scrub (a pass has no error).
  spdlog::info("{}: attempt {} verdict {} {}", child.routing_id, m.attempt_id, m.verdict,
               m.error.empty() ? m.error : RedactText(m.error, ConfigSecrets()));
  CloseAttempt(m.attempt_id, end);
  if (m.infra) {
    ChildOutOfSpace("review of attempt " + std::to_string(m.attempt_id) + " on " + child.routing_id,
                    m.error, task_id);
  }
}

// A review that gave no verdict on the agent's work (the critic agent gave
// none, a check could not start, the commit failed) says nothing about it:
// the work is still in the workspace, so the next critic reviews it again,
// without running the agent again. After kReviewsPerAttempt such reviews the
// attempt fails and counts (max_attempts, the same-failure rule), so a
// critic that never answers costs a bounded number of runs. A critic's
// rate limit is not counted: the rate-limit pause bounds how often it is
// asked (TryReview waits for it). Each review's spend is recorded as it
// ends. False when the attempt is to close now.
bool Supervisor::ReviewAgain(int64_t attempt_id, const std::string& task_id, const AttemptEnd& end,
                             bool rate_limited) {
  ReviewsWithoutVerdict& count = reviews_without_verdict_[attempt_id];
  const int reviews = ++count.all;
  if (!rate_limited && ++count.counted >= kReviewsPerAttempt) {
    reviews_without_verdict_.erase(attempt_id);
    return false;
  }
  auto attempt = store_->GetAttempt(attempt_id);
  if (attempt.ok() && attempt->ended_at_ms != 0) {
    reviews_without_verdict_.erase(attempt_id);
    return false;  // cancelled meanwhile: the close records the rest
  }
  // The task's budget bounds what its reviews spend too: a rate-limited
  // critic is asked again with no other bound. The close decides (blocked).
  if (const double budget = config_.budget.task_usd; budget > 0) {
    auto task = store_->GetTask(task_id);
    if (task.ok() && task->cost_usd + end.cost_usd >= budget) {
      reviews_without_verdict_.erase(attempt_id);
      return false;
    }
  }
  if (forge::Status s = AddCriticSpend(attempt_id, reviews, end); !s.ok()) {
    // Kept and retried like a close: the spend is keyed per review, so a
    // retry cannot count it twice.
    WriteFailed(
        "recording the critic's spend for attempt " + std::to_string(attempt_id), s.error(),
        [this, attempt_id, reviews, end] { return AddCriticSpend(attempt_id, reviews, end); });
  }
  spdlog::warn("attempt {} ({}): review {} gave no verdict ({}); reviewing it again", attempt_id,
               task_id, reviews, end.error);
  // A read that failed says nothing of the attempt: reviewed again, its
  // number read with the task when a critic takes it (TryReview).
  const int n = attempt.ok() ? attempt->n : 0;
  json payload{{"attempt_id", attempt_id}, {"review", reviews}, {"error", end.error}};
  if (rate_limited) payload["rate_limited"] = true;
  if (!end.review_log_error.empty()) payload["review_log_error"] = end.review_log_error;
  EmitEvent("attempt.review_again", std::move(payload), task_id, n);
  review_queue_.push_back({attempt_id, n, std::nullopt});
  return true;
}

// Who left the processes a sweep finds, when the pid reaped is no child's.
constexpr const char* kStrayOrphans = "the orphans of a stray process";

void Supervisor::ReapChildren() {
  std::string left_by;  // whose processes a sweep would find, for the log
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) break;
    std::string who = OnChildExited(pid, ExitStatus::FromWaitStatus(status).ToString());
    // A child reaped after an orphan of its own (a check's shell killed by
    // its PDEATHSIG) names the sweep, not the orphan.
    if (left_by.empty() || (left_by == kStrayOrphans && who != kStrayOrphans)) left_by = who;
  }
  if (left_by == kStrayOrphans) {
    // An orphan came back first (a check's shell, killed by its PDEATHSIG
    // when the critic died): whose it is shows in a child that is dead but
    // not yet reaped.
    for (const Child* c : pool_.All()) {
      auto stat = c->state == ChildState::kExited ? std::nullopt : StatFields(c->pid);
      if (stat && !stat->empty() && (*stat)[0] == "Z") {
        left_by = std::string(RoleName(c->role)) + "-" + std::to_string(c->pid);
        break;
      }
    }
  }
  // One sweep for everything reaped here: a killed `make -j` tree comes
  // back as dozens of strays, and a sweep reads every /proc/<pid>/stat.
  if (!left_by.empty()) KillStrays(left_by);
}

std::string Supervisor::OnChildExited(pid_t pid, const std::string& how) {
  Child* c = pool_.Find(pid);
  // A stray killed by a sweep (an exited child was reaped before: its pid
  // reaped again is another process): its own children are ours now.
  if (c == nullptr || c->state == ChildState::kExited) return kStrayOrphans;
  // Its agent must not outlive it, whatever its last messages say, nor
  // anything else it ran (handed to us: the caller sweeps).
  KillAgentGroup(c->agent_pgid);
  (void)pool_.Apply(pid, ChildEvent::kExited, clock_.MonotonicMs());
  c->exit_status = how;
  c->exited_mono_ms = clock_.MonotonicMs();
  return std::string(RoleName(c->role)) + "-" + std::to_string(pid);
}

void Supervisor::SettleExitedChildren(bool force) {
  const int64_t now = clock_.MonotonicMs();
  std::vector<pid_t> gone;
  for (pid_t pid : pool_.Exited()) {
    const Child* c = pool_.Find(pid);
    if (force || now - c->exited_mono_ms >= kLastWordsMaxMs || !StillConnected(*c)) {
      gone.push_back(pid);
    }
  }
  if (gone.empty()) return;
  // ZeroMQ drops a connection once it has handed over what came on it; what
  // it handed over since the loop's read is read now, before the jobs end.
  // With more left than one read takes, only the overdue settle this turn.
  if (!DrainChildren() && !force) {
    std::erase_if(gone, [&](pid_t pid) {
      const Child* c = pool_.Find(pid);
      return c == nullptr || now - c->exited_mono_ms < kLastWordsMaxMs;
    });
  }
  for (pid_t pid : gone) SettleChild(pid);
}

bool Supervisor::StillConnected(const Child& child) {
  proto::Shutdown bye;
  bye.grace_ms = 0;
  const std::string body = proto::Encode(proto::SupervisorMessage(bye));
  try {
    // router_mandatory: an unknown or disconnected peer is EHOSTUNREACH.
    if (!children_socket_->send(zmq::buffer(child.routing_id),
                                zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      return true;  // its queue is full: still connected
    }
    (void)children_socket_->send(zmq::buffer(body), zmq::send_flags::dontwait);
    return true;
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) spdlog::warn("probing {}: {}", child.routing_id, e.what());
    return false;
  }
}

void Supervisor::SettleChild(pid_t pid) {
  Child* c = pool_.Find(pid);
  if (c == nullptr) return;
  Role role = c->role;
  int64_t attempt = c->attempt_id;
  std::string task = c->task_id;
  int n = c->attempt_n;
  std::string how = c->exit_status;
  pool_.Remove(pid);
  const bool retired = retired_.erase(pid) > 0;
  if (stopping_ || retired) {
    spdlog::info("{}-{} exited ({})", RoleName(role), pid, how);
  } else {
    spdlog::warn("{}-{} exited ({})", RoleName(role), pid, how);
  }
  json exited = json{{"role", RoleName(role)}, {"pid", pid}, {"status", how}};
  if (retired) exited["retired"] = true;
  EmitEvent("child.exited", exited, task, n);
  OnMaintenanceWorkerGone(pid, how);
  if (attempt != 0) {
    AttemptEnd end;
    end.outcome = stopping_ ? Outcome::kCancelled : Outcome::kCrashed;
    end.error = std::string(RoleName(role)) + " " + std::to_string(pid) + " died (" + how + ")";
    // A critic's death says nothing of the work it was reviewing, which is
    // still in the workspace: it is reviewed again (bounded as a review
    // without a verdict is), not thrown away with its agent run again.
    if (role != Role::kCritic) {
      CloseAttempt(attempt, end);
    } else if (stopping_) {
      PostponeReview(attempt, "the supervisor stopped during its review: " + end.error);
    } else if (!ReviewAgain(attempt, task, end, false)) {
      FailAfterReviews(attempt, std::move(end));
    }
  }
  // Nor is a retired child respawned, or counted as a restart (a crash loop).
  if (stopping_ || retired) return;
  int64_t delay = pool_.RecordRestart(role, clock_.MonotonicMs());
  if (delay > 0) {
    spdlog::warn("{} restarts too frequent: respawning in {} ms (degraded)", RoleName(role), delay);
    EmitEvent("child.respawn_delayed", json{{"role", RoleName(role)}, {"delay_ms", delay}});
  }
  respawns_.push_back({role, clock_.MonotonicMs() + delay});
}

void Supervisor::KillChild(Child& child, const std::string& why) {
  KillAgentGroup(child.agent_pgid);
  // Reaped already: its pid may belong to another process by now.
  if (child.state == ChildState::kExited) return;
  spdlog::warn("killing {}: {}", child.routing_id, why);
  ::kill(child.pid, SIGKILL);
}

void Supervisor::KillStrays(const std::string& left_by) {
  // An exited child is reaped: a process with its pid now is not it.
  auto killed = KillChildren([this](pid_t pid) {
    const Child* c = pool_.Find(pid);
    return c != nullptr && c->state != ChildState::kExited;
  });
  if (killed.empty()) return;
  std::string pids;
  for (pid_t pid : killed) pids += (pids.empty() ? "" : ", ") + std::to_string(pid);
  spdlog::warn("killed {} process(es) left running by {}: {}", killed.size(), left_by, pids);
}

void Supervisor::KillAgentGroup(int64_t pgid) {
  if (pgid <= 1) return;
  auto s = KillGroup(static_cast<pid_t>(pgid), SIGKILL);
  if (!s.ok()) spdlog::warn("killing process group {}: {}", pgid, s.error().message);
}

// --------------------------------------------------------------- attempts --

void Supervisor::CloseAttempt(int64_t attempt_id, AttemptEnd end) {
  forge::Status closed = TryCloseAttempt(attempt_id, end);
  if (closed.ok()) return;
  std::string what = "closing attempt " + std::to_string(attempt_id);
  if (auto a = store_->GetAttempt(attempt_id); a.ok()) {
    what += " (" + a->task_id + " #" + std::to_string(a->n) + ")";
  }
  // The retry decides again from the task as it is then (nothing changed:
  // the close rolled back), at the retry's time.
  WriteFailed(what, closed.error(),
              [this, attempt_id, end] { return TryCloseAttempt(attempt_id, end); });
}

forge::Status Supervisor::TryCloseAttempt(int64_t attempt_id, const AttemptEnd& end) {
  FORGE_RETURN_IF_ERROR(WriteKeptThroughResult(attempt_id));
  PolicyConfig policy{config_.retry, config_.budget.task_usd};
  std::string task_id;
  int n = 0;
  int64_t started_at_ms = 0;
  // Decided inside the close's transaction, from the rows it reads.
  auto decide = [&](const proto::AttemptInfo& attempt, const proto::TaskInfo& task) {
    task_id = task.id;
    n = attempt.n;
    started_at_ms = attempt.started_at_ms;
    TaskRetryState state;
    state.attempts_used = std::max(0, task.attempts - (attempt.counted ? 1 : 0));
    state.max_attempts = task.max_attempts;
    state.infra_retries = task.infra_retries;
    state.last_fingerprint = task.last_fingerprint;
    state.cost_usd = task.cost_usd + end.cost_usd;  // the task budget counts the critic too
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    // Read inside the transaction, just before the close is stamped, so a
    // wait for the write lock does not eat into the backoff.
    const int64_t now_wall_ms = steady_wall_.NowMs();
    store::Close close = Decide(state, end, policy, now_wall_ms, [&] { return uniform(rng_); });
    if (close.next_state == proto::TaskState::kDone && !end.spec.empty()) {
      close.spawn = SpecTask(task, end.spec);
    }
    close.cost_usd = end.cost_usd;
    close.cost_estimated = end.cost_estimated;
    close.tokens_in = end.tokens_in;
    close.tokens_out = end.tokens_out;
    return close;
  };
  auto closed = store_->CloseAttempt(attempt_id, decide);
  if (!closed.ok()) return closed.error();
  if (!closed->has_value()) return AddCriticSpend(attempt_id, 0, end);  // closed before
  reviews_without_verdict_.erase(attempt_id);
  const store::Close& close = **closed;
  spdlog::info("attempt {} ({} #{}) closed {}: task -> {} ({})", attempt_id, task_id, n,
               proto::OutcomeName(end.outcome), proto::StateName(close.next_state), close.reason);
  if (end.outcome != Outcome::kPassed && end.outcome != Outcome::kCancelled) {
    last_failure_ = proto::LastFailure{task_id, n, std::string(proto::OutcomeName(end.outcome)),
                                       end.error, clock_.WallMs()};
  }
  // A rate limit says nothing about the agent's work: the rate-limit pause
  // handles it. Nor does a full disk on the worker's side (infra).
  if (!stopping_) {
    if (end.rate_limited || end.infra) {
      guards_.OnAttemptEndedWithoutVerdict();
    } else {
      guards_.OnAttemptClosed(end.outcome);
    }
  }
  AddCostToday(started_at_ms, end.cost_usd);
  RefreshCostTodayIfStale();
  if (close.next_state == proto::TaskState::kCooldown) {
    // A close can only add a cooldown task, so the earliest due time is known
    // without the query: the same or this task's, whichever is sooner.
    next_due_wall_ms_ =
        std::min(next_due_wall_ms_.value_or(close.not_before_ms), close.not_before_ms);
  }
  FlushGuardEvents();
  return Status::Ok();
}

// A verdict for an attempt closed before it came (a cancel during the
// review) decides nothing, but an LLM critic's spend was spent: it counts
// toward the attempt, the task and the day all the same.
forge::Status Supervisor::AddCriticSpend(int64_t attempt_id, int review, const AttemptEnd& end) {
  if (end.cost_usd == 0 && end.tokens_in == 0 && end.tokens_out == 0) return Status::Ok();
  auto added = store_->AddCriticSpend(attempt_id, review, end.cost_usd, end.tokens_in,
                                      end.tokens_out, end.cost_estimated);
  if (!added.ok()) return added.error();
  if (!added->has_value()) return Status::Ok();  // added before (a kept write's retry)
  spdlog::info("attempt {} ({} #{}): the critic's ${:.4f} added ({})", attempt_id,
               (*added)->task_id, (*added)->n, end.cost_usd,
               review == 0 ? "closed before its review ended"
                           : "review " + std::to_string(review) + " gave no verdict");
  AddCostToday((*added)->started_at_ms, end.cost_usd);
  RefreshCostTodayIfStale();
  FlushGuardEvents();
  return Status::Ok();
}

// ----------------------------------------------------------- store faults --

bool Supervisor::StoreFailed(const std::string& what, const Error& error) {
  if (!PausesDispatch(error)) {
    spdlog::error("{}: {}", what, error.ToString());
    return false;
  }
  (void)PauseForStore(what + ": " + StoreErrorText(error), what + ": " + error.ToString());
  return true;
}

bool Supervisor::PauseForStore(const std::string& reason, const std::string& detail) {
  if (!guards_.OnStoreFailed(reason)) return false;
  // One line when the pause begins and one per failed retry; the reason in
  // status is short, the full error (statement, file) is here.
  int64_t wait = guards_.NextExpiryMonoMs().value_or(clock_.MonotonicMs()) - clock_.MonotonicMs();
  spdlog::error("dispatch paused (store): {}; next try in {} ms", detail, wait);
  FlushGuardEvents();
  return true;
}

void Supervisor::WriteFailed(const std::string& what, const Error& error,
                             std::function<forge::Status()> retry, int64_t result_of) {
  if (!StoreFailed(what, error)) return;
  kept_writes_.push_back({what, std::move(retry), result_of});
}

forge::Status Supervisor::WriteKeptThroughResult(int64_t attempt_id) {
  auto is_result = [&](const KeptWrite& w) { return w.result_of == attempt_id; };
  if (std::none_of(kept_writes_.begin(), kept_writes_.end(), is_result)) return Status::Ok();
  // As RetryStore does, from the oldest; a kept close among them closes its
  // own attempt, whose result, kept before it, is already written.
  while (!kept_writes_.empty()) {
    KeptWrite w = std::move(kept_writes_.front());
    kept_writes_.pop_front();
    forge::Status s = w.write();
    if (!s.ok()) {
      if (StoreFailed(w.what, s.error())) {
        kept_writes_.push_front(std::move(w));
        return s;
      }
      spdlog::error("{}: given up", w.what);
    } else if (w.result_of != 0) {
      cost_day_wall_ms_ = kCostStale;  // a cost AddCostToday never saw
    }
    if (is_result(w)) break;
  }
  return Status::Ok();
}

void Supervisor::ChildOutOfSpace(const std::string& what, const std::string& error,
                                 const std::string& task_id) {
  if (!PauseForStore(what + ": " + error, what + ": " + error)) return;
  // A repo task's worktree and commits also write to its repo's .git (a
  // worktree's admin files and refs, a squash's objects), which may be
  // another disk: the pause lasts until that has room too.
  std::string repo_git;
  if (auto task = store_->GetTask(task_id); task.ok() && !task->repo.empty()) {
    struct stat st {};
    std::string git = JoinPath(task->repo, ".git");
    if (::stat(git.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) repo_git = git;
  }
  kept_writes_.push_back(
      {"checking space in " + options_.state_dir + (repo_git.empty() ? "" : " and " + repo_git),
       [this, repo_git]() -> forge::Status {
         FORGE_RETURN_IF_ERROR(ProbeSpace(options_.state_dir));
         if (repo_git.empty()) return forge::Status::Ok();
         // Only a full disk: the operator's repo is not ours to judge
         // otherwise (a read-only .git must not hold dispatch for good).
         forge::Status repo = ProbeSpace(repo_git);
         return repo.ok() || repo.error().code != ErrorCode::kFull ? forge::Status::Ok() : repo;
       }});
}

forge::Status Supervisor::ProbeSpace(const std::string& dir) {
  std::string path = JoinPath(dir, ".forge-space-probe");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = fd < 0 ? errno : 0;
  std::string block(kSpaceProbeBytes, '\0');
  for (size_t done = 0; fd >= 0 && err == 0 && done < block.size();) {
    ssize_t n = ::write(fd, block.data() + done, block.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (fd >= 0) ::close(fd);
  ::unlink(path.c_str());
  if (err == 0) return Status::Ok();
  // Both codes pause; kFull also for a quota.
  return MakeError(err == ENOSPC || err == EDQUOT ? ErrorCode::kFull : ErrorCode::kIo,
                   "writing '" + path + "': " + std::strerror(err));
}

void Supervisor::WriteKeptBeforeExit() {
  std::deque<KeptWrite> writes = std::exchange(kept_writes_, {});
  for (KeptWrite& w : writes) {
    forge::Status s = w.write();
    if (!s.ok()) spdlog::error("{}: lost at exit: {}", w.what, s.error().ToString());
  }
}

// After guards_.Tick (RunTimers) or guards_.Resume, which make the retry due.
void Supervisor::RetryStore() {
  if (!guards_.StoreRetryDue()) return;
  bool wrote = false;
  while (!kept_writes_.empty()) {
    KeptWrite w = std::move(kept_writes_.front());
    kept_writes_.pop_front();
    forge::Status s = w.write();
    if (s.ok()) {
      wrote = true;
      if (w.result_of != 0) cost_day_wall_ms_ = kCostStale;  // a cost AddCostToday never saw
      // A write the kept one made in turn (a close's events) was refused:
      // that failure rescheduled the retry.
      if (!guards_.StoreRetryDue()) return;
      continue;
    }
    if (StoreFailed(w.what, s.error())) {
      kept_writes_.push_front(std::move(w));  // still first: order is kept
      return;
    }
    // Another error now (logged by StoreFailed): retrying it would not help.
    spdlog::error("{}: given up", w.what);
  }
  if (!wrote) {
    forge::Status probe = store_->SetCursor(kStoreProbeCursor, clock_.WallMs());
    if (!probe.ok()) {
      StoreFailed("store probe", probe.error());
      return;
    }
  }
  guards_.OnStoreOk();
  // A kept result's cost (one for an attempt already closed has no close
  // to come that would count it) reaches the budget now.
  RefreshCostTodayIfStale();
  FlushGuardEvents();
}

void Supervisor::RefreshNextDue() {
  auto due = store_->NextDue();
  if (!due.ok()) {
    spdlog::error("next cooldown due: {}", due.error().ToString());
    return;
  }
  next_due_wall_ms_ = *due;
}

// Only with a daily budget: otherwise status computes it when asked.
void Supervisor::RefreshCostToday() {
  cost_day_wall_ms_ = kCostStale;
  if (config_.budget.daily_usd <= 0) {
    guards_.OnCostToday(0);
    return;
  }
  int64_t midnight = MidnightBefore(clock_.WallMs());
  auto cost = store_->CostSince(midnight);
  if (!cost.ok()) return;
  cost_today_ = *cost;
  cost_day_wall_ms_ = midnight;
  guards_.OnCostToday(cost_today_);
}

void Supervisor::RefreshCostTodayIfStale() {
  if (config_.budget.daily_usd <= 0) return;
  if (MidnightBefore(clock_.WallMs()) != cost_day_wall_ms_) RefreshCostToday();
}

// The sum is over today's attempts, so querying it at every close made each
// close cost O(attempts today) on the loop (9 ms with 20,000, 24 ms with
// 50,000): a recorded cost is added instead (a result's, and a close's LLM
// critic spend). The only other writer of attempts.cost_usd is a kept
// result landing later, which marks it stale.
void Supervisor::AddCostToday(int64_t attempt_started_wall_ms, double usd) {
  if (config_.budget.daily_usd <= 0) return;
  if (MidnightBefore(clock_.WallMs()) != cost_day_wall_ms_) {
    RefreshCostToday();  // the store already holds this cost
    return;
  }
  if (usd == 0 || attempt_started_wall_ms < cost_day_wall_ms_) return;  // yesterday's attempt
  cost_today_ += usd;
  guards_.OnCostToday(cost_today_);
}

void Supervisor::FlushGuardEvents() {
  // Emitting an event may itself fail and change the store pause; its new
  // event is flushed in the next round (bounded: a failure while the pause
  // waits changes nothing).
  for (int round = 0; round < 3; ++round) {
    auto events = guards_.TakeEvents();
    if (events.empty()) return;
    for (const auto& e : events) {
      json payload{{"kind", e.pause.kind}, {"reason", e.pause.reason}};
      if (e.pause.until_ms != 0) payload["until"] = FormatRfc3339(e.pause.until_ms);
      if (e.kind == "dispatch.resumed") {
        spdlog::info("dispatch resumed ({})", e.pause.kind);
      } else if (e.pause.kind != "store") {  // StoreFailed logged it, with the full error
        spdlog::warn("dispatch paused ({}): {}", e.pause.kind, e.pause.reason);
      }
      // Not kept for the store's retry: a pause's events while the store
      // refuses writes would be written late, once per retry; the log has
      // them, and dispatch.resumed {kind: store} carries the reason.
      auto s = store_->Emit(e.kind, payload);
      if (!s.ok()) StoreFailed("emitting " + e.kind, s.error());
    }
  }
}

void Supervisor::EmitEvent(const std::string& kind, const json& payload, const std::string& task_id,
                           int attempt) {
  auto s = store_->Emit(kind, payload, task_id, attempt);
  if (s.ok()) return;
  if (kept_writes_.size() >= kMaxKeptWrites) {
    spdlog::error("event {} not recorded ({} refused writes already wait): {}", kind,
                  kept_writes_.size(), s.error().ToString());
    StoreFailed("emitting " + kind, s.error());
    return;
  }
  // A refused write rolled back: the retry records it once.
  WriteFailed("emitting " + kind, s.error(), [this, kind, payload, task_id, attempt] {
    return store_->Emit(kind, payload, task_id, attempt);
  });
}

// --------------------------------------------------------------- shutdown --

void Supervisor::BeginShutdown(const std::string& why) {
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("stopping ({}): {} ms grace for in-flight attempts", why,
               config_.watchdog.shutdown_grace_ms);
  sd_notify(0, "STOPPING=1");
  guards_.BeginShutdown();
  FlushGuardEvents();
  EmitEvent("supervisor.stopping", json{{"reason", why}});
  int64_t now = clock_.MonotonicMs();
  // The worker lets its agent run grace, then needs up to kill_grace to kill it.
  stop_deadline_mono_ms_ =
      now + config_.watchdog.shutdown_grace_ms + config_.watchdog.kill_grace_ms;
  respawns_.clear();
  for (Child* c : pool_.All()) {
    if (c->state == ChildState::kExited) continue;
    if (c->state != ChildState::kStarting) {
      proto::Shutdown s;
      s.grace_ms = config_.watchdog.shutdown_grace_ms;
      Send(*c, s);
    }
    (void)pool_.Apply(c->pid, ChildEvent::kShutdown, now);
  }
  // Attempts waiting for a critic will not get one before the exit.
  for (const PendingReview& pending : review_queue_) {
    PostponeReview(pending.attempt_id, "the supervisor stopped before its review");
  }
  review_queue_.clear();
}

void Supervisor::FinishShutdown() {
  for (Child* c : pool_.All()) {
    if (c->state == ChildState::kExited) continue;
    KillChild(*c, "still running at the end of the shutdown grace");
  }
  for (Child* c : pool_.All()) {
    if (c->state == ChildState::kExited) continue;
    ExitStatus st = Reap(c->pid);
    (void)OnChildExited(c->pid, st.ToString());
  }
  KillStrays("the children at shutdown");
  // Their last messages, as in the loop, within the same bound (also in
  // polls, should the injected clock stand still).
  const int64_t until = clock_.MonotonicMs() + kLastWordsMaxMs;
  for (int64_t polls = 0;
       !pool_.Empty() && clock_.MonotonicMs() < until && polls < kLastWordsMaxMs / kLastWordsPollMs;
       ++polls) {
    zmq::pollitem_t item{children_socket_->handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(kLastWordsPollMs));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) spdlog::error("zmq_poll: {}", e.what());
    }
    DrainChildren();
    SettleExitedChildren(false);
  }
  SettleExitedChildren(true);
  // Before the open attempts are closed `cancelled`: a kept close (a
  // critic's pass refused on a full disk) would be dropped by that, and the
  // passing work with it.
  WriteKeptBeforeExit();
  if (auto open = store_->OpenAttempts(); open.ok()) {
    for (const auto& a : *open) {
      KillAgentGroup(a.agent_pgid);
      if (postponed_reviews_.contains(a.id)) continue;  // the next start reviews it
      AttemptEnd end;
      end.outcome = Outcome::kCancelled;
      end.error = "supervisor shutdown";
      CloseAttempt(a.id, end);
    }
  }
  EmitEvent("supervisor.stopped", json{{"pid", ::getpid()}});
  done_ = true;
}

// ---------------------------------------------------------------- control --

void Supervisor::DrainControl() {
  for (ReadBudget budget(clock_); budget.Left();) {
    std::vector<zmq::message_t> frames;
    zmq::recv_result_t got;
    try {
      got = zmq::recv_multipart(*control_socket_, std::back_inserter(frames),
                                zmq::recv_flags::dontwait);
    } catch (const zmq::error_t& e) {
      spdlog::warn("control socket: {}", e.what());
      ++counters_.bad_control_requests;
      return;
    }
    if (!got) return;
    if (frames.size() < 2) {
      ++counters_.bad_control_requests;
      continue;
    }
    // DEALER and REQ clients both work: echo an empty delimiter when one came.
    bool delimited = frames.size() >= 3 && frames[1].size() == 0;
    std::string reply = control_.Handle(frames.back().to_string_view());
    counters_.bad_control_requests = control_.malformed();
    try {
      control_socket_->send(frames[0], zmq::send_flags::sndmore);
      if (delimited) control_socket_->send(zmq::message_t(), zmq::send_flags::sndmore);
      control_socket_->send(zmq::buffer(reply), zmq::send_flags::dontwait);
    } catch (const zmq::error_t& e) {
      spdlog::info("control reply not delivered: {}", e.what());
    }
  }
}

proto::StatusReply Supervisor::Status() {
  proto::StatusReply s;
  int64_t now = clock_.MonotonicMs();
  s.pid = ::getpid();
  s.version = FORGE_VERSION;
  s.state_dir = options_.state_dir;
  s.started_at_ms = started_at_wall_ms_;
  s.uptime_ms = now - started_at_mono_ms_;
  s.pause_reasons = guards_.Reasons();
  s.paused = !s.pause_reasons.empty();
  for (Child* c : pool_.All()) {
    proto::ChildStatus cs;
    cs.role = std::string(RoleName(c->role));
    cs.pid = c->pid;
    cs.state = std::string(ChildStateName(c->state));
    if (pool_.Degraded(c->role) && c->state == ChildState::kStarting) cs.state = "degraded";
    cs.task_id = c->task_id;
    cs.attempt_id = c->attempt_id;
    cs.attempt_n = c->attempt_n;
    cs.heartbeat_age_ms = now - c->last_seen_mono_ms;
    cs.busy_since_ms = c->busy_since_wall_ms;
    cs.restarts = pool_.Restarts(c->role);
    s.children.push_back(std::move(cs));
  }
  // A role waiting out a throttled respawn shows as a degraded placeholder.
  for (const auto& r : respawns_) {
    proto::ChildStatus cs;
    cs.role = std::string(RoleName(r.role));
    cs.state = "degraded";
    cs.restarts = pool_.Restarts(r.role);
    s.children.push_back(std::move(cs));
  }
  if (auto q = store_->QueueCounts(); q.ok()) s.queue = std::move(*q);
  if (auto cost = store_->CostSince(MidnightBefore(clock_.WallMs())); cost.ok()) {
    s.cost_today_usd = *cost;
  }
  s.last_failure = last_failure_;
  s.degraded = pool_.Degraded(Role::kWorker) || pool_.Degraded(Role::kCritic);
  s.maintenance = MaintenanceForStatus();
  return s;
}

json Supervisor::Counters() {
  return json{{"bad_child_messages", counters_.bad_child_messages},
              {"stray_child_messages", counters_.stray_messages}};
}

void Supervisor::OnCancelled(const store::Change& change) {
  if (!change.open_attempt) return;
  int64_t id = change.open_attempt->id;
  // The store closed the attempt; its result, if any, moves no task (its
  // spend is still recorded: RecordAgentResult, AddCriticSpend).
  guards_.OnAttemptEndedWithoutVerdict();
  FlushGuardEvents();
  std::erase_if(review_queue_, [id](const PendingReview& p) { return p.attempt_id == id; });
  reviews_without_verdict_.erase(id);
  Child* c = pool_.FindByAttempt(id);
  if (c == nullptr || c->state == ChildState::kExited) return;  // its agent died with it
  proto::Cancel cancel;
  cancel.attempt_id = id;
  spdlog::info("cancel attempt {} on {}", id, c->routing_id);
  if (!Send(*c, cancel)) KillChild(*c, "unreachable for cancel");
  c->cancel_sent = true;
  if (c->role == Role::kWorker && c->agent_pid != 0) {
    const int64_t due = clock_.MonotonicMs() + AgentOverrunMs(c->agent_kill_grace_ms);
    if (c->job_deadline_mono_ms <= 0 || due < c->job_deadline_mono_ms)
      c->job_deadline_mono_ms = due;
  }
}

void Supervisor::Pause(const std::string& reason) {
  guards_.Pause(reason);
  FlushGuardEvents();
  KeepOperatorPause();
}

void Supervisor::Resume() {
  guards_.Resume();
  FlushGuardEvents();
  KeepOperatorPause();
  // The store pause's retry, now rather than at its next try, so the reply
  // already says whether the store accepts writes.
  RetryStore();
}

void Supervisor::KeepOperatorPause() {
  auto keep = [this] { return store_->SetOperatorPause(guards_.operator_reason()); };
  // Retried as it is by then: a resume after a failed pause clears it.
  if (forge::Status s = keep(); !s.ok())
    WriteFailed("recording the operator's pause", s.error(), keep);
}

int64_t Supervisor::Stop() {
  BeginShutdown("stop requested");
  return std::max<int64_t>(0, stop_deadline_mono_ms_ - clock_.MonotonicMs());
}

std::vector<std::string> Supervisor::ConfigSecrets() {
  auto secrets = SecretValues(config_.agent.env);
  if (config_.critic.agent) {
    for (auto& s : SecretValues(config_.critic.agent->env)) secrets.push_back(s);
  }
  // agent.pass_env hands the agents variables of the supervisor's own
  // environment (ANTHROPIC_API_KEY, most often): their secrets are the
  // config's too. The workers redact them in what an agent prints; a brief
  // or a reason that quoted one was shown as it was.
  std::map<std::string, std::string> passed;
  for (const auto& name : config_.agent.pass_env) {
    if (const char* value = ::getenv(name.c_str())) passed[name] = value;
  }
  for (auto& s : SecretValues(passed)) secrets.push_back(s);
  return secrets;
}

std::string Supervisor::WorkspaceFor(const proto::TaskInfo& task) const {
  return TaskWorkspacePath(options_.state_dir, task.id, task.repo);
}

std::string Supervisor::LogPathFor(const std::string& task_id, int n, const char* suffix) const {
  return JoinPath(JoinPath(JoinPath(options_.state_dir, "logs"), task_id),
                  std::to_string(n) + suffix);
}

}  // namespace forge::supervisor
