// Critic: the event loop of forge-critic. One review at a time: runs the
// verify commands one after another (`sh -c <cmd>` in the workspace, own
// process group, verify_timeout_ms each, output tail kept), asynchronously in
// the same poll loop as the supervisor socket and SIGCHLD, so heartbeats keep
// coming. When every check passed and the review names an LLM critic, the
// critic agent runs next with the critic brief and the workspace's diff; its
// final JSON line gives typed findings and the verdict (one retry when it
// does not parse). Replies review_result pass, reject (a check failed, error
// names the first; or the critic's findings) or error (could not review,
// the critic's output never parsed, or cancelled). For a repo task a pass
// squashes the worktree's changes against its recorded base into one commit
// on forge/<task> (task title, Forge-Task and Forge-Attempt trailers; see
// worker/workspace.h); an attempt whose tree equals the base is rejected
// with a no_changes finding unless the task allows empty, and one that left
// a git repository of its own inside the worktree (only a pointer to it
// would be committed) before any check runs. Git runs with
// argv and timeouts, never through a shell.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/process.h"
#include "common/signals.h"
#include "proto/child_job.h"
#include "proto/child_link.h"
#include "worker/brief.h"
#include "worker/child_main.h"

namespace forge::critic {

struct CriticOptions {
  std::string state_dir;
  int64_t kill_grace_ms = proto::kCheckKillGraceMs;  // a check that timed out
  size_t tail_bytes = 4096;      // output kept per check
  size_t max_diff_bytes = 200 * 1024;
  worker::BriefDirs brief_dirs;
  int64_t workspace_lock_wait_ms = kWorkspaceLockWaitMs;
};

class Critic {
 public:
  // signals must block SIGCHLD, SIGTERM and SIGINT and must have been created
  // before the link (so the ZeroMQ threads inherit the mask).
  Critic(proto::ChildLink& link, SignalFd& signals, CriticOptions options);
  ~Critic();

  // Runs until shutdown, SIGTERM/SIGINT, or the parent process going away.
  int Run();

 private:
  struct ReviewState;

  void HandleMessage(const proto::SupervisorMessage& message);
  void StartReview(const proto::Review& review);
  void StartNextCheck();
  void AfterChecks();
  void StartDiff();
  void StartCriticAgent();
  void FinishCriticAgent();
  void AfterCritic();
  void StartCommit();
  // A pass; one that nothing verified carries an "unverified" finding.
  void ReplyPass(std::optional<std::string> commit);
  void HandleSignals();
  void Tick(int64_t now_ms);
  int64_t NextDeadline() const;
  void FinishJob();
  void FinishCheck();
  void Reply(const std::string& verdict, const std::string& error,
             std::vector<proto::Finding> findings = {},
             std::optional<std::string> commit = std::nullopt);
  void Abort(const std::string& why);

  proto::ChildLink& link_;
  SignalFd& signals_;
  CriticOptions options_;
  // Read once: the critic's environment does not change while it runs.
  EnvironmentTemplate own_environment_;
  // SecretValues of own_environment_, also found once: a review adds only
  // those of the task's env (an operator's environment holds a hundred
  // variables; finding the secrets among them was a fifth of a no-op review's
  // instructions, bench/README.md session 28).
  std::vector<std::string> own_secrets_;
  std::unique_ptr<ReviewState> review_;
  bool shutting_down_ = false;
  int64_t shutdown_deadline_ms_ = -1;
  bool exit_ = false;
  pid_t parent_pid_ = 0;
};

// forge-critic's main after flag parsing (the setup is worker::RunChild's).
int CriticMain(const worker::ChildMainOptions& options);

}  // namespace forge::critic
