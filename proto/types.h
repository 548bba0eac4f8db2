// The domain records every binary shares: task states and attempt outcomes
// (contract names), tasks, attempts, checks, findings, events, and the agent
// and task specs carried in dispatch/review messages. Defined once; the store
// reads them from SQLite, the supervisor sends them, forge-ctl renders them.
// JSON (to_json / ReadValue) is the contract shape of `forge-ctl show --json`:
// times are RFC 3339 UTC strings with milliseconds, or null when unset.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace forge::proto {

using json = nlohmann::json;

// ---- task states (contract) ----
enum class TaskState { kPending, kReady, kRunning, kReviewing, kCooldown, kDone, kBlocked, kCancelled };
std::string_view StateName(TaskState s);
std::optional<TaskState> ParseState(std::string_view name);
const std::vector<TaskState>& AllStates();
// done, blocked, cancelled: nothing more happens without an operator.
bool IsSettled(TaskState s);
// running, reviewing: an attempt is open.
bool IsActive(TaskState s);

// ---- attempt outcomes (contract) ----
enum class Outcome {
  kPassed,     // agent succeeded and the critic passed it (worker: agent succeeded, review next)
  kFailed,     // agent error or non-zero exit
  kRejected,   // critic verdict
  kTimedOut,   // attempt wall clock exceeded
  kStalled,    // no agent output for stall_timeout
  kLost,       // child heartbeat silence
  kCrashed,    // child died
  kCancelled,  // operator cancel or shutdown
  kRecovered,  // found open at supervisor start
};
std::string_view OutcomeName(Outcome o);
std::optional<Outcome> ParseOutcome(std::string_view name);
// lost, crashed, recovered: not the task's fault; requeued without using an attempt.
bool IsInfraOutcome(Outcome o);

// ---- checks and findings ----
struct CheckResult {
  std::string name;     // the command as written
  int exit_code = -1;
  int signal = 0;
  int64_t duration_ms = 0;
  bool timed_out = false;
  bool passed = false;
  std::string output_tail;  // last few KiB of stdout+stderr
  bool operator==(const CheckResult&) const = default;
};

struct Finding {
  std::string severity;  // sev1 | sev2 | sev3
  std::string category;  // correctness|security|tests|product|performance|architecture|style|docs
  std::string file;
  int line = 0;
  std::string message;
  bool operator==(const Finding&) const = default;
};

// ---- what the agent runs (a resolved profile) ----
// The agent profiles a worker can run (worker/agent_profile.h): a config's
// agent.profile, a task's `agent`. One list, so that forge-ctl, the config
// and the supervisor's submit check accept the same names.
const std::vector<std::string_view>& AgentProfiles();
bool IsAgentProfile(std::string_view name);
// "claude, codex or command", for messages.
std::string AgentProfileChoices();

struct AgentSpec {
  std::string profile = "command";    // claude | codex | command
  std::vector<std::string> command;   // argv[0..]
  std::vector<std::string> args;      // extra arguments
  std::string model;
  std::map<std::string, std::string> env;  // added to the allow-listed environment
  std::vector<std::string> pass_env;       // names passed through from the worker's environment
  int64_t timeout_ms = 60 * 60 * 1000;
  int64_t stall_timeout_ms = 10 * 60 * 1000;
  int64_t kill_grace_ms = 10 * 1000;
  bool operator==(const AgentSpec&) const = default;
};

// A previous attempt, as a retry's brief shows it.
struct AttemptSummary {
  int n = 0;
  std::string outcome;
  std::string error;
  std::vector<CheckResult> failing_checks;
  std::vector<Finding> findings;
  bool operator==(const AttemptSummary&) const = default;
};

// ---- task (the `tasks` row plus derived fields) ----
struct TaskInfo {
  std::string id;
  std::string title;
  std::string brief;
  std::string kind = "work";  // work | expand
  TaskState state = TaskState::kPending;
  int priority = 0;
  int max_attempts = 3;
  bool needs_approval = false;
  bool approved = false;
  bool allow_empty = false;
  std::string repo;
  std::string base;
  // The commit `base` resolved to at the task's first attempt, as its worker
  // reported it (schema v7): every later attempt starts from it, with or
  // without the worktree. Empty until then, and for a task without a repo.
  std::string base_commit;
  std::string agent;  // profile override; empty: config's
  std::string model;  // model override; empty: profile's
  std::map<std::string, std::string> env;
  std::vector<std::string> verify;
  std::vector<std::string> depends_on;
  std::string parent;  // the expand task that produced this one
  int attempts = 0;        // attempts that counted toward max_attempts
  int total_attempts = 0;  // every attempt, including infra retries
  int infra_retries = 0;
  int64_t not_before_ms = 0;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::string last_error;
  std::string last_fingerprint;
  std::string branch;
  std::string commit;
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  bool operator==(const TaskInfo&) const = default;
};

// ---- attempt (the attempts ledger) ----
struct AttemptInfo {
  int64_t id = 0;
  std::string task_id;
  int n = 0;
  bool counted = true;
  int64_t worker_pid = 0;
  int64_t agent_pid = 0;
  int64_t agent_pgid = 0;
  int64_t agent_start_time = 0;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;  // 0 while open
  int64_t duration_ms = 0;
  std::string outcome;  // empty while open
  int exit_code = -1;
  int signal = 0;
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  int64_t num_turns = 0;
  std::string session_id;
  std::string model;
  std::string error;
  std::string fingerprint;
  std::string verdict;
  std::vector<Finding> findings;
  std::vector<CheckResult> checks;
  std::string log_path;
  std::string commit;
  bool operator==(const AttemptInfo&) const = default;
};

// ---- event (the event log) ----
struct EventInfo {
  int64_t seq = 0;
  int64_t ts_ms = 0;
  std::string kind;
  std::string task_id;  // empty for supervisor-wide events
  int attempt = 0;      // attempt number n, 0 when none
  json payload = json::object();
  bool operator==(const EventInfo&) const = default;
};

void to_json(json& j, const CheckResult& v);
void to_json(json& j, const Finding& v);
void to_json(json& j, const AgentSpec& v);
void to_json(json& j, const AttemptSummary& v);
void to_json(json& j, const TaskInfo& v);
void to_json(json& j, const AttemptInfo& v);
void to_json(json& j, const EventInfo& v);

// The child protocol's form of a task (dispatch, review): to_json without
// the fields at their defaults, which ReadValue restores. A worker or critic
// parses half the bytes. Operators' JSON (show, ls, events) keeps to_json's
// every key: their scripts rely on it.
json WireJson(const TaskInfo& v);

void ReadValue(const json& j, CheckResult& v);
void ReadValue(const json& j, Finding& v);
void ReadValue(const json& j, AgentSpec& v);
void ReadValue(const json& j, AttemptSummary& v);
void ReadValue(const json& j, TaskInfo& v);
void ReadValue(const json& j, AttemptInfo& v);
void ReadValue(const json& j, EventInfo& v);

// RFC 3339 helpers for the JSON shapes: 0 <-> null.
json TimeToJson(int64_t wall_ms);
int64_t TimeFromJson(const json& j);  // throws FieldError on a malformed time

}  // namespace forge::proto
