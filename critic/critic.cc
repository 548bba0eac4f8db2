#include "critic/critic.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>

#include "common/clock.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/redact.h"
#include "common/utf8.h"
#include "critic/findings.h"
#include "worker/agent_profile.h"
#include "worker/output_capture.h"
#include "worker/workspace.h"
#include "worker/workspace_lock.h"

namespace forge::critic {
namespace {

namespace fs = std::filesystem;

int64_t NowMs() {
  return SystemClock::Get().MonotonicMs();
}

bool IsDir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string FormatMs(int64_t ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// What a check's environment adds to or changes in the critic's own.
std::map<std::string, std::string> CheckOverrides(const proto::Review& review) {
  std::map<std::string, std::string> overrides = review.task.env;
  overrides["FORGE_TASK_ID"] = review.task.id;
  overrides["FORGE_ATTEMPT"] = std::to_string(review.n);
  return overrides;
}

// Verify commands run with the critic's own environment (they are the
// operator's commands, like `make test`) plus the task's env.
std::vector<std::string> CheckEnvironment(const EnvironmentTemplate& own,
                                          const proto::Review& review) {
  return own.With(CheckOverrides(review));
}

std::string Describe(const proto::CheckResult& c) {
  if (c.timed_out) return "timed out";
  if (c.signal != 0) return "was killed by signal " + std::to_string(c.signal);
  return "failed with exit " + std::to_string(c.exit_code);
}

}  // namespace

struct Critic::ReviewState {
  enum class Phase { kChecks, kCriticAgent };
  proto::Review review;
  Phase phase = Phase::kChecks;
  std::vector<proto::CheckResult> checks;
  std::unique_ptr<worker::OutputCapture> log;  // null when the review has no log path
  std::string log_open_error;                  // why log is null although a path was given
  std::unique_ptr<proto::ChildJob> job;        // the check / git diff / critic agent running
  std::optional<LockFile> workspace_lock;      // through the review (worker/workspace_lock.h)
  int64_t check_started_ms = 0;
  int64_t timeout_ms = 0;  // of the running job, 0: none
  int64_t kill_grace_ms = 0;
  bool check_timed_out = false;
  std::string tail;
  std::string diff;
  bool diff_truncated = false;
  std::unique_ptr<worker::OutputParser> critic_parser;
  std::vector<std::string> check_secrets;  // of the checks' env: never in a log or a tail
  std::vector<std::string> secrets;        // the checks' and the critic agent's
  int critic_tries = 0;
  double cost_usd = 0;  // the critic agent's runs, for the reply
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  std::optional<worker::Snapshot> snapshot;  // a repo task's: what the review sees and commits
  bool infra = false;                        // the machine failed the review (no space to commit)
  bool retryable = true;                     // false: trying again will not help (a stuck lock)
  bool rate_limited = false;                 // the critic agent reported a rate limit
  int64_t rate_limit_reset_ms = 0;           // its reset (wall ms), 0 when not given
  std::vector<proto::Finding> findings;      // the LLM critic's, kept for the reply
  std::string stop_error;                    // set when the review was cancelled
};

Critic::Critic(proto::ChildLink& link, SignalFd& signals, CriticOptions options)
    : link_(link),
      signals_(signals),
      options_(std::move(options)),
      own_environment_(CurrentEnvironment()),
      own_secrets_(SecretValues(CurrentEnvironment())) {}

Critic::~Critic() = default;

int Critic::Run() {
  parent_pid_ = getppid();
  while (!exit_) {
    std::vector<proto::PollFd> fds;
    fds.push_back({signals_.fd(), ZMQ_POLLIN, 0});
    if (review_ && review_->job) review_->job->AppendPollFds(fds);
    auto ready = link_.Poll(fds, NextDeadline());
    if (!ready.ok()) {
      spdlog::critical("poll failed: {}", ready.error().ToString());
      Abort("critic poll failed");
      return 1;
    }
    if (review_ && review_->job) review_->job->HandleReady(fds);
    if (fds[0].revents != 0) HandleSignals();
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

void Critic::HandleMessage(const proto::SupervisorMessage& message) {
  if (const auto* r = std::get_if<proto::Review>(&message)) {
    StartReview(*r);
  } else if (const auto* c = std::get_if<proto::Cancel>(&message)) {
    if (!review_ || review_->review.attempt_id != c->attempt_id) {
      spdlog::info("cancel for attempt {} ignored: not reviewing it", c->attempt_id);
      return;
    }
    review_->stop_error = "cancelled";
    if (review_->job && !review_->job->exited()) {
      review_->job->Kill();  // the reply follows when the check has exited
    } else {
      Reply("error", "cancelled");
    }
  } else if (const auto* s = std::get_if<proto::Shutdown>(&message)) {
    spdlog::info("shutdown requested (grace {} ms)", s->grace_ms);
    shutting_down_ = true;
    if (!review_) {
      exit_ = true;
      return;
    }
    shutdown_deadline_ms_ = NowMs() + std::max<int64_t>(s->grace_ms, 0);
  } else {
    spdlog::warn("ignoring a dispatch message: this is a critic");
  }
}

void Critic::StartReview(const proto::Review& review) {
  spdlog::info("review: attempt {} (task {} #{}), {} check(s)", review.attempt_id, review.task.id,
               review.n, review.verify.size());
  auto refuse = [&](const std::string& error) {
    proto::ReviewResult r;
    r.attempt_id = review.attempt_id;
    r.verdict = "error";
    r.error = error;
    Status s = link_.Send(r);
    if (!s.ok()) spdlog::error("sending review_result: {}", s.error().ToString());
  };
  if (review_) {
    refuse("critic is busy with attempt " + std::to_string(review_->review.attempt_id));
    return;
  }
  if (shutting_down_) {
    refuse("critic is shutting down");
    return;
  }
  review_ = std::make_unique<ReviewState>();
  review_->review = review;
  // A value the task's env overrides stays in own_secrets_: scrubbing a
  // secret that the checks do not see costs nothing.
  review_->check_secrets = own_secrets_;
  for (auto& s : SecretValues(CheckOverrides(review)))
    review_->check_secrets.push_back(std::move(s));
  link_.SetAttempt(review.attempt_id);
  if (!IsDir(review.workspace)) {
    Reply("error", "workspace '" + review.workspace + "' does not exist");
    return;
  }
  // Before any git or check runs there (worker/workspace_lock.h).
  auto lock = worker::LockWorkspace(review.workspace, options_.workspace_lock_wait_ms,
                                    worker::HeartbeatingLockWait(link_, parent_pid_));
  if (!lock.ok()) {
    // No verdict. Waited out (kConflict): the holder is stuck and reviewing
    // again would wait again; the task is blocked, naming its pid. A full
    // disk that refused the lock file is the machine's (dispatch pauses).
    // Interrupted (a cancel, a shutdown, SIGTERM): the supervisor knows.
    review_->retryable = lock.error().code != ErrorCode::kConflict;
    review_->infra = worker::IsMachineFault(lock.error());
    Reply("error", lock.error().message);
    return;
  }
  review_->workspace_lock = std::move(lock).value();
  if (!review.log_path.empty()) {
    // The worker made the attempt's log directory: a stat finds it, where
    // create_directories first parses the path into a filesystem::path.
    const std::string log_dir = ParentPath(review.log_path);
    if (!IsDir(log_dir)) {
      std::error_code ec;
      fs::create_directories(log_dir, ec);
    }
    auto log = worker::OutputCapture::Open(review.log_path);
    if (log.ok()) {
      review_->log = std::move(log).value();
      review_->log->set_name("the review log");
      review_->log->SetSecrets(review_->check_secrets);
      // An attempt is reviewed again only after a review without a verdict,
      // which may have stopped mid-line (its critic killed): its reader
      // must see where that one ends and this one begins.
      if (review_->log->file_bytes() > 0) {
        (void)review_->log->Append(
            "\n[forge: the review above gave no verdict; the attempt is reviewed again from "
            "here]\n",
            NowMs());
      }
    } else {
      // The review goes on without it; the result says there is none.
      review_->log_open_error = "no review log: " + log.error().message;
      spdlog::warn("{}", review_->log_open_error);
    }
  }
  if (!review.task.repo.empty()) {
    // Before any check runs: a pass commits the tree the checks were run on.
    // Its listing of the added files (for nested repositories) is read
    // whole, however many the attempt added.
    std::string keep_error;
    auto snapshot = worker::SnapshotForReview(review.workspace, review.task.id, review.attempt_id,
                                              worker::HeartbeatingGitRunner(link_, 16 << 20),
                                              kGitTimeoutMs, &keep_error);
    if (!keep_error.empty()) {
      spdlog::warn("review of attempt {}: the snapshot is not kept for a review again: {}",
                   review.attempt_id, keep_error);
    }
    if (!snapshot.ok()) {
      review_->infra = worker::IsMachineFault(snapshot.error());
      Reply("error", "cannot snapshot the attempt's worktree: " + snapshot.error().message);
      return;
    }
    review_->snapshot = std::move(snapshot).value();
    if (!review_->snapshot->nested_repos.empty()) {
      // Not worth a check: a pass could commit none of that work.
      std::string problem = worker::NestedReposProblem(review_->snapshot->nested_repos);
      Reply("reject", problem, {{"sev1", "correctness", "", 0, problem}});
      return;
    }
  }
  StartNextCheck();
}

void Critic::StartNextCheck() {
  ReviewState& rs = *review_;
  const auto& verify = rs.review.verify;
  if (rs.checks.size() == verify.size()) {
    AfterChecks();
    return;
  }
  const std::string& cmd = verify[rs.checks.size()];
  if (rs.log) (void)rs.log->Append("$ " + cmd + "\n", NowMs());
  SpawnOptions spawn;
  spawn.argv = {"/bin/sh", "-c", cmd};
  spawn.env = CheckEnvironment(own_environment_, rs.review);
  spawn.cwd = rs.review.workspace;
  spawn.stdin_mode = Stdio::kNull;
  spawn.stdout_mode = Stdio::kPipe;
  spawn.merge_stderr = true;
  rs.tail.clear();
  rs.check_timed_out = false;
  rs.timeout_ms = rs.review.verify_timeout_ms;
  rs.kill_grace_ms = options_.kill_grace_ms;
  ReviewState* raw = &rs;
  const size_t tail_bytes = options_.tail_bytes;
  auto sink = [raw, tail_bytes](int, std::string_view data) {
    raw->tail.append(data);
    if (raw->tail.size() > 2 * tail_bytes) {
      // Redacted before the cut, which could split a secret and keep its
      // end (a secret still arriving is at the end, never cut).
      raw->tail = RedactText(std::move(raw->tail), raw->check_secrets);
      if (raw->tail.size() > tail_bytes) raw->tail.erase(0, raw->tail.size() - tail_bytes);
    }
    if (raw->log) (void)raw->log->Append(data, NowMs());
  };
  rs.check_started_ms = NowMs();
  auto job = proto::ChildJob::Start(std::move(spawn), "", sink);
  if (!job.ok()) {
    // A check Spawn refuses (a NUL byte in a task stored before the submit
    // check refused them) is refused again by every review: not retried,
    // which would run the paid agent again for nothing.
    if (job.error().code == ErrorCode::kInvalid) review_->retryable = false;
    Reply("error", "cannot run check '" + ShowBytes(cmd) + "': " + job.error().message);
    return;
  }
  rs.job = std::move(job).value();
}

void Critic::HandleSignals() {
  while (auto sig = signals_.Read()) {
    if (*sig == SIGCHLD) {
      for (const auto& [pid, status] : proto::ReapAll()) {
        if (review_ && review_->job && pid == review_->job->pid()) {
          review_->job->OnExit(status);
          FinishJob();
        }
      }
    } else if (*sig == SIGTERM || *sig == SIGINT) {
      Abort(std::string("critic got ") + strsignal(*sig));
      return;
    }
  }
}

void Critic::FinishJob() {
  proto::KillOrphans();
  switch (review_->phase) {
    case ReviewState::Phase::kChecks:
      FinishCheck();
      return;
    case ReviewState::Phase::kCriticAgent:
      FinishCriticAgent();
      return;
  }
}

void Critic::AfterChecks() {
  ReviewState& rs = *review_;
  for (const auto& c : rs.checks) {
    if (!c.passed) {
      // The oracle has spoken; no need to pay for an LLM review.
      Reply("reject", "check '" + c.name + "' " + Describe(c));
      return;
    }
  }
  if (!rs.review.critic) {
    AfterCritic();
    return;
  }
  StartDiff();
}

void Critic::AfterCritic() {
  if (!review_->snapshot) {
    ReplyPass(std::nullopt);
    return;
  }
  StartCommit();
}

void Critic::ReplyPass(std::optional<std::string> commit) {
  ReviewState& rs = *review_;
  if (rs.review.verify.empty() && !rs.review.critic) {
    // Nothing but the agent's exit status (and, for a repo, that it changed
    // something) stands behind this pass: said where the operator looks.
    rs.findings.push_back(
        {"sev3", "tests", "", 0,
         std::string("unverified: no verify command and no critic agent; only the agent's exit "
                     "status") +
             (rs.snapshot && !rs.review.task.allow_empty ? " and a non-empty change were"
                                                         : " was") +
             " checked"});
  }
  Reply("pass", "", std::move(rs.findings), std::move(commit));
}

// Git runs here synchronously (HeartbeatingGitRunner keeps the heartbeats
// going; a cancel that arrives meanwhile is read once it is done, and git
// has a timeout).
void Critic::StartCommit() {
  ReviewState& rs = *review_;
  const auto& task = rs.review.task;
  worker::SquashSpec spec;
  spec.path = rs.review.workspace;
  spec.task_id = task.id;
  spec.title = task.title;
  spec.attempt = rs.review.n;
  spec.allow_empty = task.allow_empty;
  auto squashed = worker::CommitSnapshot(spec, *rs.snapshot, worker::HeartbeatingGitRunner(link_));
  if (!squashed.ok()) {
    rs.infra = worker::IsMachineFault(squashed.error());
    Reply("error", "squash commit failed: " + squashed.error().message);
    return;
  }
  if (squashed->no_changes) {
    rs.findings.push_back({"sev1", "correctness", "", 0,
                           "no_changes: the attempt changed nothing against the task's base"});
    Reply("reject", "no_changes: the attempt changed nothing", std::move(rs.findings));
    return;
  }
  spdlog::info("attempt {} committed as {}", rs.review.attempt_id, squashed->commit);
  ReplyPass(squashed->commit);
}

void Critic::StartDiff() {
  ReviewState& rs = *review_;
  if (rs.snapshot) {
    auto diff = worker::DiffSnapshot(
        rs.review.workspace, *rs.snapshot,
        worker::HeartbeatingGitRunner(link_, options_.max_diff_bytes + 1), options_.max_diff_bytes);
    rs.diff = std::move(diff.text);
    rs.diff_truncated = diff.truncated;
  }
  StartCriticAgent();
}

void Critic::StartCriticAgent() {
  ReviewState& rs = *review_;
  const proto::AgentSpec& spec = *rs.review.critic;
  rs.phase = ReviewState::Phase::kCriticAgent;
  ++rs.critic_tries;
  auto fail = [&](const std::string& what) { Reply("error", "critic agent: " + what); };
  auto profile = worker::ParseProfile(spec.profile);
  if (!profile.ok()) return fail(profile.error().message);
  auto argv = worker::BuildArgv(spec);
  if (!argv.ok()) return fail(argv.error().message);
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : rs.checks) checks.push_back({{"name", c.name}});
  nlohmann::json data = {{"task",
                          {{"id", rs.review.task.id},
                           {"title", rs.review.task.title},
                           {"brief", rs.review.task.brief}}},
                         {"attempt", std::to_string(rs.review.n)},
                         {"workspace", rs.review.workspace},
                         {"checks", checks},
                         {"has_checks", !checks.empty()},
                         {"diff", rs.diff},
                         {"has_diff", !rs.diff.empty()},
                         {"diff_truncated", rs.diff_truncated},
                         {"diff_limit", std::to_string(options_.max_diff_bytes)}};
  auto path = worker::FindTemplate(options_.brief_dirs, "critic.mustache");
  if (!path.ok()) return fail(path.error().message);
  auto text = ReadFile(*path);
  if (!text.ok()) return fail(text.error().message);
  auto prompt = worker::RenderTemplate(*path, *text, data);
  if (!prompt.ok()) return fail(prompt.error().message);

  std::vector<std::string> pass = {"PATH", "HOME", "LANG", "TERM"};
  pass.insert(pass.end(), spec.pass_env.begin(), spec.pass_env.end());
  std::map<std::string, std::string> extra = spec.env;
  extra["FORGE_TASK_ID"] = rs.review.task.id;
  extra["FORGE_ATTEMPT"] = std::to_string(rs.review.n);
  SpawnOptions spawn;
  spawn.argv = *argv;
  spawn.env = BuildEnvironment(pass, extra);
  rs.secrets = rs.check_secrets;
  for (auto& s : SecretValues(spawn.env)) rs.secrets.push_back(std::move(s));
  if (rs.log) rs.log->SetSecrets(rs.secrets);
  spawn.cwd = rs.review.workspace;
  spawn.stdout_mode = Stdio::kPipe;
  spawn.stderr_mode = Stdio::kPipe;
  rs.critic_parser = worker::MakeOutputParser(*profile);
  rs.tail.clear();
  rs.timeout_ms = spec.timeout_ms;
  rs.kill_grace_ms = spec.kill_grace_ms;
  rs.check_timed_out = false;
  rs.check_started_ms = NowMs();
  if (rs.log) {
    (void)rs.log->Append(
        "$ critic agent (try " + std::to_string(rs.critic_tries) + "): " + (*argv)[0] + "\n",
        NowMs());
  }
  ReviewState* raw = &rs;
  const size_t tail_bytes = options_.tail_bytes;
  auto sink = [raw, tail_bytes](int stream, std::string_view data) {
    raw->tail.append(data);
    if (raw->tail.size() > 2 * tail_bytes) raw->tail.erase(0, raw->tail.size() - tail_bytes);
    if (raw->log) (void)raw->log->Append(data, NowMs());
    if (stream == 1) raw->critic_parser->Feed(data);
  };
  auto job = proto::ChildJob::Start(std::move(spawn), *prompt, sink);
  if (!job.ok()) return fail(job.error().message);
  rs.job = std::move(job).value();
}

void Critic::FinishCriticAgent() {
  ReviewState& rs = *review_;
  if (rs.log) (void)rs.log->Flush();
  proto::Result agent;
  rs.critic_parser->Finish(rs.job->status(), rs.tail, agent);
  rs.job.reset();
  rs.cost_usd += agent.cost_usd;
  rs.tokens_in += agent.tokens_in;
  rs.tokens_out += agent.tokens_out;
  if (!rs.stop_error.empty()) {
    Reply("error", rs.stop_error);
    return;
  }
  if (rs.check_timed_out) {
    Reply("error", "critic agent timed out after " + FormatMs(rs.timeout_ms));
    return;
  }
  // A verdict counts only from a critic that finished: one that printed an
  // approval and then crashed, or exited non-zero, did not finish its review.
  auto report = agent.outcome == "passed"
                    ? ParseCriticReport(rs.critic_parser->FinalText())
                    : Result<CriticReport>(MakeError(ErrorCode::kInvalid, agent.error));
  if (!report.ok()) {
    std::string why = agent.outcome == "passed"
                          ? "its output did not parse: " + report.error().message
                          : report.error().message;
    why = RedactText(why, rs.secrets);
    if (agent.rate_limited) {
      // Asking again into a rate limit only spends: the supervisor pauses
      // (as for an agent's) and this work is reviewed again after it.
      rs.rate_limited = true;
      rs.rate_limit_reset_ms = agent.rate_limit_reset_ms;
      Reply("error", "critic agent hit a rate limit: " + why);
      return;
    }
    if (rs.critic_tries < 2) {
      spdlog::warn("critic agent gave no verdict ({}); retrying once", why);
      StartCriticAgent();
      return;
    }
    Reply("error", "critic agent gave no verdict after a retry: " + why);
    return;
  }
  for (auto& f : report->findings) f.message = RedactText(f.message, rs.secrets);
  Decision decision = Decide(*report);
  if (!decision.pass) {
    Reply("reject", decision.reason, std::move(report->findings));
    return;
  }
  rs.findings = std::move(report->findings);
  AfterCritic();
}

void Critic::FinishCheck() {
  ReviewState& rs = *review_;
  proto::CheckResult c;
  c.name = rs.review.verify[rs.checks.size()];
  c.exit_code = rs.job->status().exit_code;
  c.signal = rs.job->status().signal;
  c.duration_ms = NowMs() - rs.check_started_ms;
  c.timed_out = rs.check_timed_out;
  c.passed = !c.timed_out && rs.job->status().success();
  // Redacted before the cut, which would leave a secret's end behind.
  c.output_tail = worker::TailText(RedactText(rs.tail, rs.check_secrets), options_.tail_bytes);
  // The command as written may quote a secret of the task's env.
  spdlog::info("check '{}': {} in {} ms", RedactText(c.name, rs.check_secrets),
               c.passed ? "passed" : Describe(c), c.duration_ms);
  if (rs.log && c.timed_out) {
    (void)rs.log->Append("[forge: timed out after " + FormatMs(rs.review.verify_timeout_ms) + "]\n",
                         NowMs());
  }
  rs.job.reset();
  rs.checks.push_back(std::move(c));
  if (!rs.stop_error.empty()) {
    Reply("error", rs.stop_error);
    return;
  }
  StartNextCheck();
}

int64_t Critic::NextDeadline() const {
  int64_t deadline = -1;
  auto earliest = [&deadline](int64_t t) {
    if (t >= 0 && (deadline < 0 || t < deadline)) deadline = t;
  };
  if (review_ && review_->job) {
    // Once the shutdown has stopped the review, its deadline is past: waking
    // for it again would spin the loop until the check is gone.
    if (review_->stop_error.empty()) earliest(shutdown_deadline_ms_);
    earliest(review_->job->NextDeadline());
    if (!review_->check_timed_out && review_->timeout_ms > 0) {
      earliest(review_->check_started_ms + review_->timeout_ms);
    }
  }
  return deadline;
}

void Critic::Tick(int64_t now) {
  if (!review_ || !review_->job) return;
  ReviewState& rs = *review_;
  if (rs.stop_error.empty() && shutdown_deadline_ms_ >= 0 && now >= shutdown_deadline_ms_) {
    rs.stop_error = "cancelled";
    rs.job->Kill();
  }
  if (!rs.check_timed_out && rs.timeout_ms > 0 && now >= rs.check_started_ms + rs.timeout_ms) {
    rs.check_timed_out = true;
    rs.job->Terminate(now, rs.kill_grace_ms);
  }
  rs.job->Tick(now);
}

void Critic::Reply(const std::string& verdict, const std::string& error,
                   std::vector<proto::Finding> findings, std::optional<std::string> commit) {
  proto::ReviewResult r;
  r.attempt_id = review_->review.attempt_id;
  r.verdict = verdict;
  // It may name a check's command, which may quote a secret of the task's
  // env: the supervisor logs it and stores it.
  r.error = RedactText(error, review_->check_secrets);
  r.checks = std::move(review_->checks);
  r.findings = std::move(findings);
  r.commit = std::move(commit);
  r.cost_usd = review_->cost_usd;
  r.tokens_in = review_->tokens_in;
  r.tokens_out = review_->tokens_out;
  r.infra = review_->infra;
  r.retryable = review_->retryable;
  r.rate_limited = review_->rate_limited;
  r.rate_limit_reset_ms = review_->rate_limit_reset_ms;
  spdlog::info("review of attempt {}: {}{}{}", r.attempt_id, verdict, r.error.empty() ? "" : ": ",
               r.error);
  // The log is whole when the verdict is known: what redaction held back
  // too. One that stopped early (a full disk) says where, in the result and
  // in the file if there is room again.
  if (review_->log) {
    (void)review_->log->Flush();
    r.log_error = review_->log->write_error();
    if (!r.log_error.empty()) {
      review_->log->MarkWhereTheLogStops();
      spdlog::warn("review of attempt {}: {}", r.attempt_id, r.log_error);
    }
  } else {
    r.log_error = review_->log_open_error;
  }
  review_.reset();
  link_.SetAttempt(std::nullopt);
  Status s = link_.Send(r);
  if (!s.ok()) spdlog::error("sending review_result: {}", s.error().ToString());
  if (shutting_down_) exit_ = true;
}

void Critic::Abort(const std::string& why) {
  spdlog::warn("exiting: {}", why);
  exit_ = true;
  if (!review_) return;
  if (review_->job) proto::KillAndReap(*review_->job, 1000);
  proto::KillOrphans();
  Reply("error", why);  // best effort: the supervisor may be gone
  exit_ = true;
}

int CriticMain(const worker::ChildMainOptions& options) {
  return worker::RunChild("critic", options, [&](worker::ChildContext& child) {
    CriticOptions co;
    co.state_dir = options.state_dir;
    co.brief_dirs = child.brief_dirs;
    co.workspace_lock_wait_ms = options.workspace_lock_wait_ms;
    Critic critic(child.link, child.signals, co);
    return critic.Run();
  });
}

}  // namespace forge::critic
