// Worker: the event loop of forge-worker. One attempt at a time: on dispatch
// it prepares the workspace and log directory, renders the brief, runs the
// agent (its own process group, prompt file on stdin, output to the attempt log),
// reports `started` once the agent has run proto::kStartedReportDelayMs (an
// agent that ends sooner has its start in the `result`), enforces the
// attempt and stall timeouts, and reports the `result`. Everything (agent
// pipes, SIGCHLD via signalfd, the supervisor socket, timers) is one poll
// loop, so heartbeats never stop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/signals.h"
#include "proto/child_job.h"
#include "proto/child_link.h"
#include "worker/agent_profile.h"
#include "worker/brief.h"
#include "worker/child_main.h"
#include "worker/maintenance.h"
#include "worker/output_capture.h"

namespace forge::worker {

struct WorkerOptions {
  std::string state_dir;
  BriefDirs brief_dirs;
  int64_t workspace_lock_wait_ms = kWorkspaceLockWaitMs;
};

// What a dispatch needs before the agent can start; an error here is an
// attempt error (retryable=false for a missing agent binary or a config error).
struct PreparedAttempt {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string prompt;
  std::string log_path;
  std::string prompt_path;
  std::vector<std::string> secrets;  // values redacted from the log and the result
};

class Worker {
 public:
  // signals must block SIGCHLD, SIGTERM and SIGINT and must have been created
  // before the link (so the ZeroMQ threads inherit the mask).
  Worker(proto::ChildLink& link, SignalFd& signals, WorkerOptions options);
  ~Worker();

  // Runs until shutdown, SIGTERM/SIGINT, or the parent process going away.
  // Returns the process exit code.
  int Run();

  // Prepares a dispatch whose workspace exists (log directory, brief,
  // prompt file, environment, argv). Run() calls it on every dispatch.
  Result<PreparedAttempt> Prepare(const proto::Dispatch& dispatch);

 private:
  struct Attempt;

  void HandleMessage(const proto::SupervisorMessage& message);
  void StartAttempt(const proto::Dispatch& dispatch);
  void StartMaintenance(const proto::Maintain& job);
  void FinishMaintenance();
  void HandleSignals();
  void Tick(int64_t now_ms);
  int64_t NextDeadline() const;
  void Stop(const std::string& outcome, const std::string& error);
  void FinishAttempt();
  void ReportStart();
  // SIGTERM or SIGINT is pending, or the supervisor is gone: the loop will
  // end the worker.
  bool StopPending() const;
  void PutUnreportedStart(proto::Result& result) const;
  void Abort(const std::string& why);
  // base_commit: the worktree's, made before the failure, for the
  // supervisor to keep (proto::Result::base_commit); "" when none.
  void SendFailure(const proto::Dispatch& dispatch, const std::string& outcome, const Error& error,
                   bool retryable, const std::string& base_commit = "");

  proto::ChildLink& link_;
  SignalFd& signals_;
  WorkerOptions options_;
  std::unique_ptr<Attempt> attempt_;
  TemplateCache templates_;  // the brief's parse, reused across dispatches
  // At most one of attempt_ and maintenance_ at a time.
  std::unique_ptr<MaintenanceJob> maintenance_;
  bool shutting_down_ = false;
  int64_t shutdown_deadline_ms_ = -1;
  bool exit_ = false;
  pid_t parent_pid_ = 0;
};

// forge-worker's main after flag parsing (the setup is RunChild's).
int WorkerMain(const ChildMainOptions& options);

}  // namespace forge::worker
