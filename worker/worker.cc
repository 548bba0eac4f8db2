#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/redact.h"
#include "worker/spec.h"
#include "worker/workspace.h"
#include "worker/workspace_lock.h"

namespace forge::worker {
namespace {

int64_t NowMs() {
  return SystemClock::Get().MonotonicMs();
}

// mkdir -p with the umask's mode. A missing parent is kIo, not kNotFound:
// Prepare blocks the task on kNotFound (a missing agent), and a vanished
// parent is not that.
Status MakeDirs(const std::string& path) {
  Status made = forge::MakeDirs(path, 0777);
  if (made.ok() || made.error().code != ErrorCode::kNotFound) return made;
  return MakeError(ErrorCode::kIo, made.error().message);
}

// open and write, not a std::ofstream: a stream's construction (its
// locale, its buffer) cost more than the three system calls (bench/README.md,
// session 34).
Status WriteText(const std::string& path, const std::string& text) {
  // errno says why (a full disk is an infra failure, see IsMachineFault).
  auto failed = [&path](int err) {
    return MakeError(ErrorCode::kIo,
                     "cannot write '" + path + "': " + (err != 0 ? strerror(err) : "write failed"));
  };
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  if (!fd.valid()) return failed(errno);
  for (size_t written = 0; written < text.size();) {
    ssize_t n = ::write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return failed(n < 0 ? errno : 0);
    written += static_cast<size_t>(n);
  }
  if (::close(fd.release()) != 0) return failed(errno);
  return Status::Ok();
}

// Checked before spawning so that a missing agent is reported as a
// non-retryable configuration problem with the PATH that was searched. The
// agent runs in the workspace, so a relative path (and a relative PATH
// entry) is looked up there, as exec will.
Status CheckBinary(const std::string& argv0, const std::vector<std::string>& env,
                   const std::string& workspace) {
  auto in_workspace = [&](const std::string& path) {
    return path.empty() || path[0] != '/' ? workspace + "/" + path : path;
  };
  if (argv0.find('/') != std::string::npos) {
    if (IsExecutableFile(in_workspace(argv0))) return Status::Ok();
    std::string where = argv0[0] == '/' ? "" : " (relative to the workspace " + workspace + ")";
    return MakeError(ErrorCode::kNotFound,
                     "agent binary '" + argv0 + "' does not exist or is not executable" + where);
  }
  std::string path = ExecPath(env);
  if (!FindInPath(argv0, path, workspace).empty()) return Status::Ok();
  return MakeError(ErrorCode::kNotFound,
                   "agent binary '" + argv0 + "' not found in PATH '" + path + "'");
}

// The log's end, into the result: what redaction held back is written, the
// tail taken, and a log that stopped early (a full disk) says where, in the
// file if there is room again and in the result.
void FinishLog(OutputCapture& capture, proto::Result& r) {
  (void)capture.Flush();
  r.output_tail = TailText(capture.tail());
  r.log_error = capture.write_error();
  if (r.log_error.empty()) return;
  capture.MarkWhereTheLogStops();
  spdlog::warn("attempt {}: {}", r.attempt_id, r.log_error);
}

std::string FormatMs(int64_t ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

struct Worker::Attempt {
  proto::Dispatch dispatch;
  PreparedAttempt prepared;
  std::unique_ptr<OutputCapture> capture;
  std::unique_ptr<OutputParser> parser;
  std::unique_ptr<proto::ChildJob> job;
  // Held from before the workspace is prepared until the result is sent
  // (worker/workspace_lock.h).
  std::optional<LockFile> workspace_lock;
  int64_t started_ms = 0;
  // Until sent, the start goes with the result (see kStartedReportDelayMs).
  std::optional<proto::Started> unreported_start;
  std::string stop_outcome;  // set when the worker ended the agent
  std::string stop_error;
};

Worker::Worker(proto::ChildLink& link, SignalFd& signals, WorkerOptions options)
    : link_(link), signals_(signals), options_(std::move(options)) {}

Worker::~Worker() {
  // A job still running when the worker exits is abandoned, not awaited: it
  // holds no lease, and the next one lists whatever it did not finish. The
  // thread keeps its object until the process ends.
  if (maintenance_ && !maintenance_->Finished()) (void)maintenance_.release();
}

int Worker::Run() {
  parent_pid_ = getppid();
  while (!exit_) {
    std::vector<proto::PollFd> fds;
    fds.push_back({signals_.fd(), ZMQ_POLLIN, 0});
    if (attempt_) attempt_->job->AppendPollFds(fds);
    if (maintenance_) fds.push_back({maintenance_->fd(), ZMQ_POLLIN, 0});
    auto ready = link_.Poll(fds, NextDeadline());
    if (!ready.ok()) {
      spdlog::critical("poll failed: {}", ready.error().ToString());
      Abort("worker poll failed");
      return 1;
    }
    if (attempt_) attempt_->job->HandleReady(fds);
    if (fds[0].revents != 0) HandleSignals();
    if (maintenance_ && maintenance_->Finished()) FinishMaintenance();
    if (*ready) {
      while (!exit_) {
        auto message = link_.Receive();
        if (!message) break;
        HandleMessage(*message);
      }
    }
    Tick(NowMs());
    if (!exit_ && getppid() != parent_pid_) Abort("the supervisor went away");
  }
  return 0;
}

void Worker::HandleMessage(const proto::SupervisorMessage& message) {
  if (const auto* d = std::get_if<proto::Dispatch>(&message)) {
    StartAttempt(*d);
  } else if (const auto* m = std::get_if<proto::Maintain>(&message)) {
    StartMaintenance(*m);
  } else if (const auto* c = std::get_if<proto::Cancel>(&message)) {
    if (!attempt_ || attempt_->dispatch.attempt_id != c->attempt_id) {
      spdlog::info("cancel for attempt {} ignored: not running here", c->attempt_id);
      return;
    }
    Stop("cancelled", "cancelled by the supervisor");
  } else if (const auto* s = std::get_if<proto::Shutdown>(&message)) {
    spdlog::info("shutdown requested (grace {} ms)", s->grace_ms);
    shutting_down_ = true;
    if (!attempt_) {
      exit_ = true;
      return;
    }
    shutdown_deadline_ms_ = NowMs() + std::max<int64_t>(s->grace_ms, 0);
  } else {
    spdlog::warn("ignoring a review message: this is a worker");
  }
}

Result<PreparedAttempt> Worker::Prepare(const proto::Dispatch& d) {
  PreparedAttempt p;
  FORGE_ASSIGN_OR_RETURN(Profile profile, ParseProfile(d.agent.profile));
  (void)profile;
  FORGE_ASSIGN_OR_RETURN(p.argv, BuildArgv(d.agent));
  // The workspace itself is PrepareWorkspace's, made before this.
  if (d.workspace.empty()) return MakeError(ErrorCode::kInvalid, "dispatch has no workspace");
  p.log_path = d.log_path;
  if (p.log_path.empty()) {
    p.log_path = options_.state_dir + "/logs/" + d.task.id + "/" + std::to_string(d.n) + ".log";
  }
  std::string log_dir = ParentPath(p.log_path);
  FORGE_RETURN_IF_ERROR(MakeDirs(log_dir));
  FORGE_ASSIGN_OR_RETURN(p.prompt, RenderWorkerBrief(options_.brief_dirs, d, &templates_));
  p.prompt_path = log_dir + "/" + std::to_string(d.n) + ".prompt";
  FORGE_RETURN_IF_ERROR(WriteText(p.prompt_path, p.prompt));

  std::vector<std::string> pass = {"PATH", "HOME", "LANG", "TERM"};
  pass.insert(pass.end(), d.agent.pass_env.begin(), d.agent.pass_env.end());
  std::map<std::string, std::string> extra = d.agent.env;
  for (const auto& [k, v] : d.task.env) extra[k] = v;
  extra["FORGE_TASK_ID"] = d.task.id;
  extra["FORGE_ATTEMPT"] = std::to_string(d.n);
  extra["FORGE_PROMPT_FILE"] = p.prompt_path;
  p.env = BuildEnvironment(pass, extra);
  p.secrets = SecretValues(p.env);
  FORGE_RETURN_IF_ERROR(CheckBinary(p.argv[0], p.env, d.workspace));
  return p;
}

void Worker::StartAttempt(const proto::Dispatch& d) {
  spdlog::info("dispatch: attempt {} (task {} #{})", d.attempt_id, d.task.id, d.n);
  if (attempt_) {
    SendFailure(d, "failed",
                MakeError(ErrorCode::kConflict, "worker is busy with attempt " +
                                                    std::to_string(attempt_->dispatch.attempt_id)),
                true);
    return;
  }
  if (shutting_down_) {
    SendFailure(d, "cancelled", MakeError(ErrorCode::kConflict, "worker is shutting down"), true);
    return;
  }
  if (maintenance_) {
    SendFailure(d, "failed",
                MakeError(ErrorCode::kConflict, "worker is busy with maintenance job " +
                                                    std::to_string(maintenance_->job_id())),
                true);
    return;
  }
  // The workspace's lock first (worker/workspace_lock.h): a process from
  // before a supervisor restart may still be in a git step there. Given up
  // before any failure is sent: the supervisor may hand the workspace on at
  // once.
  std::optional<LockFile> lock;
  // The worktree's commit, once it is made, for the supervisor to keep when
  // the dispatch carried none: in `started`, or in the result of an attempt
  // that ends before one is sent (here, or the agent's within 20 ms).
  std::string base_to_report;
  auto fail = [&](const std::string& outcome, const Error& e, bool retryable) {
    lock.reset();
    SendFailure(d, outcome, e, retryable, base_to_report);
  };
  link_.SetAttempt(d.attempt_id);
  auto locked = LockWorkspace(d.workspace, options_.workspace_lock_wait_ms,
                              HeartbeatingLockWait(link_, parent_pid_));
  if (!locked.ok()) {
    link_.SetAttempt(std::nullopt);
    const Error& e = locked.error();
    // Waited out: its holder is stuck and retrying will not help (blocked,
    // naming the pid). Interrupted (a cancel, a shutdown, SIGTERM, the
    // supervisor gone): not the task's doing.
    if (e.code == ErrorCode::kUnavailable) {
      fail("cancelled", e, true);
    } else {
      fail("failed", e, e.code != ErrorCode::kConflict);
    }
    return;
  }
  lock = std::move(locked).value();
  // An old worker whose SIGTERM (PDEATHSIG) is pending starts no git step.
  if (StopPending()) {
    fail("cancelled", MakeError(ErrorCode::kUnavailable, "worker is stopping"), true);
    return;
  }
  // Then the worktree (or plain directory): the agent runs in it.
  WorkspaceSpec ws;
  ws.task_id = d.task.id;
  ws.repo = d.task.repo;
  ws.base = d.task.base;
  ws.path = d.workspace;
  ws.sync_remote = d.sync_remote;
  ws.sync_branch = d.sync_branch;
  ws.recorded_base = d.task.base_commit;
  auto workspace = PrepareWorkspace(ws, HeartbeatingGitRunner(link_));
  link_.SetAttempt(std::nullopt);
  if (!workspace.ok()) {
    // A bad repo or base ref does not get better by retrying: blocked.
    fail("failed", workspace.error(), workspace.error().code != ErrorCode::kConfig);
    return;
  }
  if (d.task.base_commit.empty()) base_to_report = workspace->base_commit;
  // A SIGTERM read only now, after a git step (PDEATHSIG of a supervisor
  // that was killed): no agent to start and kill. A plain workspace took no
  // git step, only a mkdir since the check above: no second check (two
  // system calls) for it.
  if (!d.task.repo.empty() && StopPending()) {
    fail("cancelled", MakeError(ErrorCode::kUnavailable, "worker is stopping"), true);
    return;
  }
  auto prepared = Prepare(d);
  if (!prepared.ok()) {
    const Error& e = prepared.error();
    // A missing agent or a bad profile/template does not get better by retrying.
    bool retryable = e.code != ErrorCode::kNotFound && e.code != ErrorCode::kConfig;
    fail("failed", e, retryable);
    return;
  }
  auto a = std::make_unique<Attempt>();
  a->dispatch = d;
  a->prepared = std::move(prepared).value();
  a->parser = MakeOutputParser(ParseProfile(d.agent.profile).value());

  SpawnOptions spawn;
  spawn.argv = a->prepared.argv;
  spawn.env = std::move(a->prepared.env);  // not needed after the spawn
  spawn.cwd = d.workspace;
  spawn.die_with_parent = true;
  // The prompt reaches stdin from its file, already written: no pipe for the
  // loop to feed (a pipe2, writes, polls and closes an attempt), and an agent
  // that never reads its stdin holds nothing up.
  spawn.stdin_mode = Stdio::kFile;
  spawn.stdin_file = a->prepared.prompt_path;
  spawn.stdout_mode = Stdio::kPipe;
  spawn.stderr_mode = Stdio::kPipe;
  Attempt* raw = a.get();
  auto sink = [raw](int stream, std::string_view data) {
    // No capture only while the log cannot be opened and the agent is being
    // killed for it (below): what it printed has nowhere to go.
    if (raw->capture == nullptr) return;
    // An error comes once; the output goes on into the tail (FinishLog).
    Status s = raw->capture->Append(data, NowMs());
    if (!s.ok()) spdlog::error("attempt {}: {}", raw->dispatch.attempt_id, s.error().ToString());
    if (stream == 1) raw->parser->Feed(data);
  };
  a->started_ms = NowMs();
  auto job = proto::ChildJob::Start(std::move(spawn), "", sink);
  if (!job.ok()) {
    // Not found, or refused by Spawn (a NUL byte in a task stored before the
    // submit check): every attempt would fail the same way.
    const ErrorCode code = job.error().code;
    fail("failed", job.error(), code != ErrorCode::kNotFound && code != ErrorCode::kInvalid);
    return;
  }
  a->job = std::move(job).value();
  // The log is created after the spawn: creating a file is the slowest step
  // of a dispatch on some filesystems (ext4 without a journal scans for
  // recently deleted inodes), and the agent need not wait for it. Nothing is
  // read from its pipes before this returns to the poll loop, so no output
  // can reach the sink before the capture exists.
  auto capture = OutputCapture::Open(a->prepared.log_path);
  if (!capture.ok()) {
    proto::KillAndReap(*a->job, 1000);
    (void)proto::KillOrphans();
    fail("failed", capture.error(), true);
    return;
  }
  a->capture = std::move(capture).value();
  a->capture->SetSecrets(a->prepared.secrets);
  proto::Started started;
  started.attempt_id = d.attempt_id;
  started.agent_pid = a->job->pid();
  started.pgid = a->job->pgid();
  started.base_commit = std::move(base_to_report);
  spdlog::info("attempt {}: agent pid {} started: {}", d.attempt_id, started.agent_pid,
               a->prepared.argv[0]);
  a->unreported_start = started;
  a->workspace_lock = std::move(lock);
  attempt_ = std::move(a);
  link_.SetAttempt(d.attempt_id);
}

bool Worker::StopPending() const {
  return getppid() != parent_pid_ || StopSignalPending();
}

void Worker::ReportStart() {
  Attempt& a = *attempt_;
  if (!a.unreported_start) return;
  // Read now, not at the spawn: /proc/<pid>/stat of a process in the middle
  // of its exec was the dearest read of a dispatch, and an agent that ends
  // first never needs it. Not reaped yet, so the pid is still the agent's.
  a.unreported_start->agent_start_time = a.job->start_time();
  Status s = link_.Send(*a.unreported_start);
  if (!s.ok()) spdlog::error("sending started: {}", s.error().ToString());
  a.unreported_start.reset();
}

void Worker::PutUnreportedStart(proto::Result& r) const {
  const Attempt& a = *attempt_;
  if (!a.unreported_start) return;
  r.agent_pid = a.unreported_start->agent_pid;
  r.pgid = a.unreported_start->pgid;
  r.base_commit = a.unreported_start->base_commit;
}

void Worker::StartMaintenance(const proto::Maintain& job) {
  proto::MaintenanceResult refused;
  refused.job_id = job.job_id;
  if (attempt_ || maintenance_ || shutting_down_) {
    refused.errors.push_back(shutting_down_ ? "worker is shutting down" : "worker is busy");
  } else {
    spdlog::info("maintenance job {}: {} workspace(s) to remove", job.job_id, job.remove.size());
    auto started = MaintenanceJob::Start(job);
    if (started.ok()) {
      maintenance_ = std::move(started).value();
      return;
    }
    refused.errors.push_back(started.error().message);
  }
  spdlog::warn("maintenance job {} not run: {}", job.job_id, refused.errors[0]);
  Status s = link_.Send(refused);
  if (!s.ok()) spdlog::error("sending maintenance_result: {}", s.error().ToString());
}

void Worker::FinishMaintenance() {
  proto::MaintenanceResult r = maintenance_->Take();
  maintenance_.reset();
  // SIGCHLDs that arrived during the job were left to it (its git commands
  // wait for their own pids); collect any orphans now.
  (void)proto::ReapAll();
  spdlog::info("maintenance job {}: removed {}, {} log(s) deleted, {} error(s), {} ms", r.job_id,
               r.removed.size(), r.logs_deleted, r.errors.size(), r.duration_ms);
  Status s = link_.Send(r);
  if (!s.ok()) spdlog::error("sending maintenance_result: {}", s.error().ToString());
  if (shutting_down_) exit_ = true;
}

void Worker::SendFailure(const proto::Dispatch& d, const std::string& outcome, const Error& error,
                         bool retryable, const std::string& base_commit) {
  spdlog::warn("attempt {} not run: {}", d.attempt_id, error.ToString());
  proto::Result r;
  r.attempt_id = d.attempt_id;
  r.outcome = outcome;
  r.error = error.message;
  r.retryable = retryable;
  r.infra = IsMachineFault(error);
  r.log_path = d.log_path;
  r.model = d.agent.model;
  r.base_commit = base_commit;
  Status s = link_.Send(r);
  if (!s.ok()) spdlog::error("sending result: {}", s.error().ToString());
}

void Worker::HandleSignals() {
  while (auto sig = signals_.Read()) {
    if (*sig == SIGCHLD) {
      // The maintenance thread reaps its own git commands by pid.
      if (maintenance_) continue;
      for (const auto& [pid, status] : proto::ReapAll()) {
        if (attempt_ && pid == attempt_->job->pid()) {
          attempt_->job->OnExit(status);
          FinishAttempt();
        }
      }
    } else if (*sig == SIGTERM || *sig == SIGINT) {
      Abort(std::string("worker got ") + strsignal(*sig));
      return;
    }
  }
}

int64_t Worker::NextDeadline() const {
  int64_t deadline = -1;
  auto earliest = [&deadline](int64_t t) {
    if (t >= 0 && (deadline < 0 || t < deadline)) deadline = t;
  };
  if (attempt_) {
    const auto& a = *attempt_;
    earliest(a.job->NextDeadline());
    if (a.unreported_start) earliest(a.started_ms + proto::kStartedReportDelayMs);
    // Once stopped, the grace (if the shutdown stopped it) is past: waking
    // for it again would spin the loop until the agent is gone.
    if (a.stop_outcome.empty()) {
      earliest(shutdown_deadline_ms_);
      const auto& spec = a.dispatch.agent;
      if (spec.timeout_ms > 0) earliest(a.started_ms + spec.timeout_ms);
      if (spec.stall_timeout_ms > 0) {
        int64_t last =
            a.capture->last_output_ms() >= 0 ? a.capture->last_output_ms() : a.started_ms;
        earliest(last + spec.stall_timeout_ms);
      }
    }
  }
  return deadline;
}

void Worker::Tick(int64_t now) {
  if (!attempt_) return;
  Attempt& a = *attempt_;
  if (now >= a.started_ms + proto::kStartedReportDelayMs) ReportStart();
  const auto& spec = a.dispatch.agent;
  if (a.stop_outcome.empty()) {
    int64_t last = a.capture->last_output_ms() >= 0 ? a.capture->last_output_ms() : a.started_ms;
    if (spec.timeout_ms > 0 && now >= a.started_ms + spec.timeout_ms) {
      Stop("timed_out", "agent ran past the attempt timeout of " + FormatMs(spec.timeout_ms));
    } else if (spec.stall_timeout_ms > 0 && now >= last + spec.stall_timeout_ms) {
      Stop("stalled", "agent produced no output for " + FormatMs(spec.stall_timeout_ms));
    } else if (shutdown_deadline_ms_ >= 0 && now >= shutdown_deadline_ms_) {
      Stop("cancelled", "worker shutting down");
    }
  }
  a.job->Tick(now);
}

void Worker::Stop(const std::string& outcome, const std::string& error) {
  Attempt& a = *attempt_;
  if (!a.stop_outcome.empty() || a.job->exited()) return;
  spdlog::info("attempt {}: stopping the agent: {}", a.dispatch.attempt_id, error);
  a.stop_outcome = outcome;
  a.stop_error = error;
  a.job->Terminate(NowMs(), a.dispatch.agent.kill_grace_ms);
}

void Worker::FinishAttempt() {
  Attempt& a = *attempt_;
  int orphans = proto::KillOrphans();
  if (orphans > 0) spdlog::info("killed {} orphaned agent process(es)", orphans);
  proto::Result r;
  r.attempt_id = a.dispatch.attempt_id;
  r.duration_ms = NowMs() - a.started_ms;
  r.log_path = a.prepared.log_path;
  FinishLog(*a.capture, r);
  r.model = a.dispatch.agent.model;
  a.parser->Finish(a.job->status(), a.capture->tail(), r);
  if (!a.stop_outcome.empty()) {
    r.outcome = a.stop_outcome;
    r.error = a.stop_error;
  }
  // An expand attempt's work is its spec: it passes only with every section.
  if (r.outcome == "passed" && a.dispatch.task.kind == "expand") {
    auto spec = ExtractSpec(a.parser->FinalText());
    if (spec.ok()) {
      r.spec = std::move(spec).value();
    } else {
      r.outcome = "failed";
      r.error = spec.error().message;
    }
  }
  // The parser saw the raw output; what leaves the worker is redacted.
  r.error = RedactText(r.error, a.prepared.secrets);
  r.spec = RedactText(r.spec, a.prepared.secrets);
  PutUnreportedStart(r);
  spdlog::info("attempt {}: {} ({})", r.attempt_id, r.outcome, a.job->status().ToString());
  attempt_.reset();
  link_.SetAttempt(std::nullopt);
  Status s = link_.Send(r);
  if (!s.ok()) spdlog::error("sending result: {}", s.error().ToString());
  if (shutting_down_) exit_ = true;
}

void Worker::Abort(const std::string& why) {
  spdlog::warn("exiting: {}", why);
  exit_ = true;
  if (!attempt_) return;
  proto::KillAndReap(*attempt_->job, 1000);
  proto::KillOrphans();
  proto::Result r;
  r.attempt_id = attempt_->dispatch.attempt_id;
  r.outcome = "cancelled";
  r.error = why;
  r.duration_ms = NowMs() - attempt_->started_ms;
  r.log_path = attempt_->prepared.log_path;
  FinishLog(*attempt_->capture, r);
  PutUnreportedStart(r);
  attempt_.reset();
  (void)link_.Send(r);  // best effort: the supervisor may be gone
}

int WorkerMain(const ChildMainOptions& options) {
  return RunChild("worker", options, [&](ChildContext& child) {
    WorkerOptions wo;
    wo.state_dir = options.state_dir;
    wo.brief_dirs = child.brief_dirs;
    wo.workspace_lock_wait_ms = options.workspace_lock_wait_ms;
    Worker worker(child.link, child.signals, wo);
    return worker.Run();
  });
}

}  // namespace forge::worker
