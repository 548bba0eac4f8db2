// The supervisor <-> child protocol (contract; see docs/protocol.md). One JSON
// object per ZeroMQ message: {"v":1,"type":"<type>","id":"<msg id>", ...fields}.
// Each struct names its wire type in kType; codec.h encodes and decodes them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "proto/types.h"

namespace forge::proto {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxMessageBytes = 4u << 20;  // 4 MiB, also ZMQ_MAXMSGSIZE

// ---- child -> supervisor ----
struct Hello {
  static constexpr std::string_view kType = "hello";
  std::string role;  // worker | critic
  int64_t pid = 0;
  std::string version;
  bool operator==(const Hello&) const = default;
};

struct Heartbeat {
  static constexpr std::string_view kType = "heartbeat";
  std::optional<int64_t> attempt_id;  // the attempt the child is working on
  bool operator==(const Heartbeat&) const = default;
};

// How long an agent runs before its worker reports `started`. An agent that
// ends sooner has its pid in its `result` instead (the Nagle trade: a quick
// agent's task costs a message and a store transaction less). Meanwhile the
// supervisor does not know the agent's group: if the worker dies then, the
// agent dies with it (PR_SET_PDEATHSIG) but a process it started does not.
inline constexpr int64_t kStartedReportDelayMs = 20;

struct Started {
  static constexpr std::string_view kType = "started";
  int64_t attempt_id = 0;
  int64_t agent_pid = 0;
  int64_t pgid = 0;
  int64_t agent_start_time = 0;  // /proc starttime, so recovery never kills a reused pid
  // The commit a repo task's worktree was made at, when the dispatch carried
  // no task.base_commit (the task's first attempt, or one whose base was
  // never recorded): the supervisor keeps it for every later attempt. Left
  // off the wire when empty (a plain directory, or a base already recorded).
  std::string base_commit;
  bool operator==(const Started&) const = default;
};

// The worker's report of an agent run. outcome is passed (agent succeeded;
// the critic reviews next), failed, timed_out, stalled or cancelled.
struct Result {
  static constexpr std::string_view kType = "result";
  int64_t attempt_id = 0;
  std::string outcome;
  int exit_code = -1;
  int signal = 0;
  int64_t duration_ms = 0;
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  int64_t num_turns = 0;
  std::string session_id;
  std::string error;
  std::string log_path;
  std::string output_tail;          // last lines of the agent's output, for the next brief
  // Set when the attempt log could not be written to the end (a full disk):
  // where it stops, why, and how much output is missing from it. Left off
  // the wire when empty.
  std::string log_error;
  bool retryable = true;            // false: agent binary missing, config error -> blocked at once
  bool rate_limited = false;        // structured rate-limit signal from the agent
  int64_t rate_limit_reset_ms = 0;  // wall ms when the limit resets, 0 unknown
  bool model_failure = false;       // the agent attributes the failure to the model
  // The worker could not prepare the attempt for a fault of the machine (no
  // space left for the workspace, the prompt or the log): requeued without
  // using an attempt, like a crashed worker, and bounded the same way.
  bool infra = false;
  std::string model;  // model actually used
  std::string spec;   // expand tasks: the specification the agent wrote
  // The agent's pid and group when no `started` was sent: the worker
  // reports a start only once the agent has run kStartedReportDelayMs, so
  // an agent that ended sooner costs one message and one transaction, not
  // two. No start time: the agent is gone (reaped, its group killed) when
  // its result is sent, so there is nothing left for a kill check to match.
  // 0 when `started` was sent (or none ran).
  int64_t agent_pid = 0;
  int64_t pgid = 0;
  // As Started::base_commit, when no `started` carried it: the agent ended
  // within kStartedReportDelayMs, or the attempt failed after its worktree
  // was made and before its agent ran. Left off the wire when empty.
  std::string base_commit;
  bool operator==(const Result&) const = default;
};

struct ReviewResult {
  static constexpr std::string_view kType = "review_result";
  int64_t attempt_id = 0;
  std::string verdict;  // pass | reject | error
  std::vector<Finding> findings;
  std::vector<CheckResult> checks;
  std::optional<std::string> commit;  // squash commit on a pass of a repo task
  std::string error;                  // why the verdict is reject/error, one line
  // What the LLM critic's runs (both, when its output needed a retry) cost,
  // as its profile reports it; left off the wire when 0 (no critic agent).
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  // The review could not finish for a fault of the machine (no space left to
  // commit the pass): requeued without using an attempt, as a worker's infra
  // result is. Left off the wire when false.
  bool infra = false;
  // False: the review cannot be done and trying again will not help (the
  // workspace held by a process that does not let go): the attempt fails
  // not retryable, which blocks the task, instead of being reviewed again.
  // Left off the wire when true.
  bool retryable = true;
  // The critic agent reported a rate limit (no verdict): the supervisor
  // pauses as for an agent's, and the review waits for the pause to end.
  // Left off the wire when false / 0 (unknown reset).
  bool rate_limited = false;
  int64_t rate_limit_reset_ms = 0;
  // The review log could not be written to the end (a full disk): where it
  // stops, why, how many bytes are missing. Left off the wire when "".
  std::string log_error;
  bool operator==(const ReviewResult&) const = default;
};

// ---- supervisor -> child ----
struct Dispatch {
  static constexpr std::string_view kType = "dispatch";
  int64_t attempt_id = 0;
  int n = 0;  // attempt number within the task
  TaskInfo task;
  // The brief the worker renders when it is not the task's; empty (left off
  // the wire): task.brief. The supervisor sends it empty: the task carries
  // the brief, which need not cross the socket twice.
  std::string brief;
  std::vector<AttemptSummary> history;  // previous attempts, newest last, at most 5
  std::string workspace;                // absolute path
  AgentSpec agent;
  std::string log_path;  // where the worker writes the agent's output
  // Runner sync (config `sync`): for a repo task's first attempt the worker
  // fetches sync_branch from sync_remote and starts from its tip. Empty: none.
  std::string sync_remote;
  std::string sync_branch;
  bool operator==(const Dispatch&) const = default;
};

// A check still running at the review's verify_timeout_ms gets SIGTERM, and
// SIGKILL this much later (forge-critic).
inline constexpr int64_t kCheckKillGraceMs = 2000;

struct Review {
  static constexpr std::string_view kType = "review";
  int64_t attempt_id = 0;
  int n = 0;
  TaskInfo task;
  std::string workspace;
  std::vector<std::string> verify;  // shell commands (sh -c), run in the workspace
  int64_t verify_timeout_ms = 10 * 60 * 1000;
  std::optional<AgentSpec> critic;  // optional LLM critic
  std::string log_path;
  bool operator==(const Review&) const = default;
};

struct Cancel {
  static constexpr std::string_view kType = "cancel";
  int64_t attempt_id = 0;
  bool operator==(const Cancel&) const = default;
};

struct Shutdown {
  static constexpr std::string_view kType = "shutdown";
  int64_t grace_ms = 0;
  bool operator==(const Shutdown&) const = default;
};

// ---- maintenance (a job on an idle worker; holds no task lease) ----
// One workspace or worktree to remove. repo set: a git worktree of that repo
// (removed with `git worktree remove --force`, then pruned; the branch stays).
struct MaintainEntry {
  std::string task_id;
  std::string path;    // absolute; refused unless inside Maintain::state_dir
  std::string repo;    // empty: a plain workspace, removed recursively
  std::string branch;  // informational: kept, never deleted
  bool operator==(const MaintainEntry&) const = default;
};

struct Maintain {
  static constexpr std::string_view kType = "maintain";
  int64_t job_id = 0;
  std::string state_dir;  // every path removed must be inside it
  std::vector<MaintainEntry> remove;
  std::string logs_dir;        // per-attempt logs: <logs_dir>/<task>/*
  int64_t logs_before_ms = 0;  // wall ms: files last written before it are deleted; 0: none
  bool operator==(const Maintain&) const = default;
};

struct RemovedEntry {
  std::string task_id;
  std::string path;
  bool existed = true;  // false: nothing was there (never created, or removed by hand)
  bool operator==(const RemovedEntry&) const = default;
};

struct MaintenanceResult {
  static constexpr std::string_view kType = "maintenance_result";
  int64_t job_id = 0;
  std::vector<RemovedEntry> removed;  // entries not listed failed (see errors) and are retried
  int64_t logs_deleted = 0;
  std::vector<std::string> errors;  // one line each, naming the path
  int64_t duration_ms = 0;
  bool operator==(const MaintenanceResult&) const = default;
};

using ChildMessage =
    std::variant<Hello, Heartbeat, Started, Result, ReviewResult, MaintenanceResult>;
using SupervisorMessage = std::variant<Dispatch, Review, Cancel, Shutdown, Maintain>;

void to_json(json& j, const Hello& m);
void to_json(json& j, const Heartbeat& m);
void to_json(json& j, const Started& m);
void to_json(json& j, const Result& m);
void to_json(json& j, const ReviewResult& m);
void to_json(json& j, const Dispatch& m);
void to_json(json& j, const Review& m);
void to_json(json& j, const Cancel& m);
void to_json(json& j, const Shutdown& m);
void to_json(json& j, const MaintainEntry& m);
void to_json(json& j, const Maintain& m);
void to_json(json& j, const RemovedEntry& m);
void to_json(json& j, const MaintenanceResult& m);

void ReadValue(const json& j, Hello& m);
void ReadValue(const json& j, Heartbeat& m);
void ReadValue(const json& j, Started& m);
void ReadValue(const json& j, Result& m);
void ReadValue(const json& j, ReviewResult& m);
void ReadValue(const json& j, Dispatch& m);
void ReadValue(const json& j, Review& m);
void ReadValue(const json& j, Cancel& m);
void ReadValue(const json& j, Shutdown& m);
void ReadValue(const json& j, MaintainEntry& m);
void ReadValue(const json& j, Maintain& m);
void ReadValue(const json& j, RemovedEntry& m);
void ReadValue(const json& j, MaintenanceResult& m);

}  // namespace forge::proto
