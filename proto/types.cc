#include "proto/types.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

#include "common/clock.h"
#include "proto/json_fields.h"

namespace forge::proto {
namespace {

constexpr std::array<std::pair<TaskState, std::string_view>, 8> kStateNames = {{
    {TaskState::kPending, "pending"},
    {TaskState::kReady, "ready"},
    {TaskState::kRunning, "running"},
    {TaskState::kReviewing, "reviewing"},
    {TaskState::kCooldown, "cooldown"},
    {TaskState::kDone, "done"},
    {TaskState::kBlocked, "blocked"},
    {TaskState::kCancelled, "cancelled"},
}};

constexpr std::array<std::pair<Outcome, std::string_view>, 9> kOutcomeNames = {{
    {Outcome::kPassed, "passed"},
    {Outcome::kFailed, "failed"},
    {Outcome::kRejected, "rejected"},
    {Outcome::kTimedOut, "timed_out"},
    {Outcome::kStalled, "stalled"},
    {Outcome::kLost, "lost"},
    {Outcome::kCrashed, "crashed"},
    {Outcome::kCancelled, "cancelled"},
    {Outcome::kRecovered, "recovered"},
}};

std::string StateList() {
  std::string out;
  for (const auto& [s, name] : kStateNames) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// Reads a time field (RFC 3339 string or null) into wall ms.
void OptionalTime(const json& obj, const char* key, int64_t& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return;
  WithPrefix(key, [&] { out = TimeFromJson(*it); });
}

// Parses exactly `n` digits at s[pos]; advances pos.
bool Digits(std::string_view s, size_t& pos, int n, int& out) {
  if (pos + static_cast<size_t>(n) > s.size()) return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    char c = s[pos + static_cast<size_t>(i)];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  pos += static_cast<size_t>(n);
  out = v;
  return true;
}

bool Expect(std::string_view s, size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

// "YYYY-MM-DDTHH:MM:SS[.fff...](Z|+HH:MM|-HH:MM)" -> wall ms (UTC).
std::optional<int64_t> ParseRfc3339(std::string_view s) {
  size_t pos = 0;
  // Zero-initialised: GCC 12 at -O3 cannot see that Digits() sets them on
  // every path that reaches a use (-Wmaybe-uninitialized false positive).
  int year = 0, mon = 0, day = 0, hour = 0, min = 0, sec = 0;
  if (!Digits(s, pos, 4, year) || !Expect(s, pos, '-') || !Digits(s, pos, 2, mon) ||
      !Expect(s, pos, '-') || !Digits(s, pos, 2, day)) {
    return std::nullopt;
  }
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) return std::nullopt;
  ++pos;
  if (!Digits(s, pos, 2, hour) || !Expect(s, pos, ':') || !Digits(s, pos, 2, min) ||
      !Expect(s, pos, ':') || !Digits(s, pos, 2, sec)) {
    return std::nullopt;
  }
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int scale = 100;
    size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      ms += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0, om = 0;
    if (!Digits(s, pos, 2, oh) || !Expect(s, pos, ':') || !Digits(s, pos, 2, om)) {
      return std::nullopt;
    }
    if (oh > 23 || om > 59) return std::nullopt;
    offset_min = sign * (oh * 60 + om);
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) {
    return std::nullopt;
  }
  tm t{};
  t.tm_year = year - 1900;
  t.tm_mon = mon - 1;
  t.tm_mday = day;
  t.tm_hour = hour;
  t.tm_min = min;
  t.tm_sec = sec;
  time_t secs = timegm(&t);
  // timegm normalises out-of-range days (Feb 31 -> Mar 3); refuse those.
  if (t.tm_mday != day || t.tm_mon != mon - 1) return std::nullopt;
  return (static_cast<int64_t>(secs) - offset_min * 60) * 1000 + ms;
}

void PutTimeUnlessZero(json& j, const char* key, int64_t wall_ms) {
  if (wall_ms != 0) j[key] = TimeToJson(wall_ms);
}

}  // namespace

// ---- states and outcomes ----

std::string_view StateName(TaskState s) {
  for (const auto& [state, name] : kStateNames) {
    if (state == s) return name;
  }
  return "unknown";
}

std::optional<TaskState> ParseState(std::string_view name) {
  for (const auto& [state, n] : kStateNames) {
    if (n == name) return state;
  }
  return std::nullopt;
}

const std::vector<TaskState>& AllStates() {
  static const std::vector<TaskState> all = [] {
    std::vector<TaskState> v;
    for (const auto& [state, name] : kStateNames) v.push_back(state);
    return v;
  }();
  return all;
}

bool IsSettled(TaskState s) {
  return s == TaskState::kDone || s == TaskState::kBlocked || s == TaskState::kCancelled;
}

bool IsActive(TaskState s) {
  return s == TaskState::kRunning || s == TaskState::kReviewing;
}

const std::vector<std::string_view>& AgentProfiles() {
  static const std::vector<std::string_view> profiles = {"claude", "codex", "command"};
  return profiles;
}

bool IsAgentProfile(std::string_view name) {
  const auto& all = AgentProfiles();
  return std::find(all.begin(), all.end(), name) != all.end();
}

std::string AgentProfileChoices() {
  const auto& all = AgentProfiles();
  std::string out;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i > 0) out += i + 1 == all.size() ? " or " : ", ";
    out += all[i];
  }
  return out;
}

std::string_view OutcomeName(Outcome o) {
  for (const auto& [outcome, name] : kOutcomeNames) {
    if (outcome == o) return name;
  }
  return "unknown";
}

std::optional<Outcome> ParseOutcome(std::string_view name) {
  for (const auto& [outcome, n] : kOutcomeNames) {
    if (n == name) return outcome;
  }
  return std::nullopt;
}

bool IsInfraOutcome(Outcome o) {
  return o == Outcome::kLost || o == Outcome::kCrashed || o == Outcome::kRecovered;
}

// ---- times ----

json TimeToJson(int64_t wall_ms) {
  if (wall_ms == 0) return nullptr;
  return FormatRfc3339(wall_ms);
}

int64_t TimeFromJson(const json& j) {
  if (j.is_null()) return 0;
  if (!j.is_string()) {
    throw FieldError("",
                     std::string("must be an RFC 3339 time string or null, got ") + j.type_name());
  }
  const auto& s = j.get_ref<const std::string&>();
  auto ms = ParseRfc3339(s);
  if (!ms) {
    throw FieldError("", "is not an RFC 3339 time (like 2026-11-21T15:04:05.123Z): '" + s + "'");
  }
  return *ms;
}

// ---- checks, findings, agent specs, summaries ----

void to_json(json& j, const CheckResult& v) {
  j = JsonObject("name", v.name, "exit_code", v.exit_code, "signal", v.signal, "duration_ms",
                 v.duration_ms, "timed_out", v.timed_out, "passed", v.passed, "output_tail",
                 v.output_tail);
}

void ReadValue(const json& j, CheckResult& v) {
  RequireObject(j);
  Required(j, "name", v.name);
  Optional(j, "exit_code", v.exit_code);
  Optional(j, "signal", v.signal);
  Optional(j, "duration_ms", v.duration_ms);
  Optional(j, "timed_out", v.timed_out);
  Optional(j, "passed", v.passed);
  Optional(j, "output_tail", v.output_tail);
}

void to_json(json& j, const Finding& v) {
  j = JsonObject("severity", v.severity, "category", v.category, "file", v.file, "line", v.line,
                 "message", v.message);
}

void ReadValue(const json& j, Finding& v) {
  RequireObject(j);
  Optional(j, "severity", v.severity);
  Optional(j, "category", v.category);
  Optional(j, "file", v.file);
  Optional(j, "line", v.line);
  Required(j, "message", v.message);
}

// Only on the child protocol (dispatch, review): the fields at their
// defaults are left out, as in WireJson(TaskInfo).
void to_json(json& j, const AgentSpec& v) {
  static const AgentSpec d;
  j = JsonObject("command", v.command);
  PutUnlessDefault(j, "profile", v.profile, d.profile);
  PutUnlessDefault(j, "args", v.args, d.args);
  PutUnlessDefault(j, "model", v.model, d.model);
  PutUnlessDefault(j, "env", v.env, d.env);
  PutUnlessDefault(j, "pass_env", v.pass_env, d.pass_env);
  PutUnlessDefault(j, "timeout_ms", v.timeout_ms, d.timeout_ms);
  PutUnlessDefault(j, "stall_timeout_ms", v.stall_timeout_ms, d.stall_timeout_ms);
  PutUnlessDefault(j, "kill_grace_ms", v.kill_grace_ms, d.kill_grace_ms);
}

void ReadValue(const json& j, AgentSpec& v) {
  RequireObject(j);
  Optional(j, "profile", v.profile);
  Required(j, "command", v.command);
  Optional(j, "args", v.args);
  Optional(j, "model", v.model);
  Optional(j, "env", v.env);
  Optional(j, "pass_env", v.pass_env);
  Optional(j, "timeout_ms", v.timeout_ms);
  Optional(j, "stall_timeout_ms", v.stall_timeout_ms);
  Optional(j, "kill_grace_ms", v.kill_grace_ms);
}

void to_json(json& j, const AttemptSummary& v) {
  j = json{{"n", v.n},
           {"outcome", v.outcome},
           {"error", v.error},
           {"failing_checks", v.failing_checks},
           {"findings", v.findings}};
}

void ReadValue(const json& j, AttemptSummary& v) {
  RequireObject(j);
  Required(j, "n", v.n);
  Optional(j, "outcome", v.outcome);
  Optional(j, "error", v.error);
  Optional(j, "failing_checks", v.failing_checks);
  Optional(j, "findings", v.findings);
}

// ---- tasks ----

void to_json(json& j, const TaskInfo& v) {
  j = json::object();
  j["id"] = v.id;
  j["title"] = v.title;
  j["brief"] = v.brief;
  j["kind"] = v.kind;
  j["state"] = StateName(v.state);
  j["priority"] = v.priority;
  j["max_attempts"] = v.max_attempts;
  j["needs_approval"] = v.needs_approval;
  j["approved"] = v.approved;
  j["allow_empty"] = v.allow_empty;
  j["repo"] = v.repo;
  j["base"] = v.base;
  j["base_commit"] = v.base_commit;
  j["agent"] = v.agent;
  j["model"] = v.model;
  j["env"] = v.env;
  j["verify"] = v.verify;
  j["depends_on"] = v.depends_on;
  j["parent"] = v.parent;
  j["attempts"] = v.attempts;
  j["total_attempts"] = v.total_attempts;
  j["infra_retries"] = v.infra_retries;
  j["not_before"] = TimeToJson(v.not_before_ms);
  j["created_at"] = TimeToJson(v.created_at_ms);
  j["updated_at"] = TimeToJson(v.updated_at_ms);
  j["finished_at"] = TimeToJson(v.finished_at_ms);
  j["last_error"] = v.last_error;
  j["last_fingerprint"] = v.last_fingerprint;
  j["branch"] = v.branch;
  j["commit"] = v.commit;
  j["cost_usd"] = v.cost_usd;
  j["tokens_in"] = v.tokens_in;
  j["tokens_out"] = v.tokens_out;
}

json WireJson(const TaskInfo& v) {
  static const TaskInfo d;
  json j = json::object();
  j["id"] = v.id;  // required
  PutUnlessDefault(j, "title", v.title, d.title);
  PutUnlessDefault(j, "brief", v.brief, d.brief);
  PutUnlessDefault(j, "kind", v.kind, d.kind);
  if (v.state != d.state) j["state"] = StateName(v.state);
  PutUnlessDefault(j, "priority", v.priority, d.priority);
  PutUnlessDefault(j, "max_attempts", v.max_attempts, d.max_attempts);
  PutUnlessDefault(j, "needs_approval", v.needs_approval, d.needs_approval);
  PutUnlessDefault(j, "approved", v.approved, d.approved);
  PutUnlessDefault(j, "allow_empty", v.allow_empty, d.allow_empty);
  PutUnlessDefault(j, "repo", v.repo, d.repo);
  PutUnlessDefault(j, "base", v.base, d.base);
  PutUnlessDefault(j, "base_commit", v.base_commit, d.base_commit);
  PutUnlessDefault(j, "agent", v.agent, d.agent);
  PutUnlessDefault(j, "model", v.model, d.model);
  PutUnlessDefault(j, "env", v.env, d.env);
  PutUnlessDefault(j, "verify", v.verify, d.verify);
  PutUnlessDefault(j, "depends_on", v.depends_on, d.depends_on);
  PutUnlessDefault(j, "parent", v.parent, d.parent);
  PutUnlessDefault(j, "attempts", v.attempts, d.attempts);
  PutUnlessDefault(j, "total_attempts", v.total_attempts, d.total_attempts);
  PutUnlessDefault(j, "infra_retries", v.infra_retries, d.infra_retries);
  PutTimeUnlessZero(j, "not_before", v.not_before_ms);
  PutTimeUnlessZero(j, "created_at", v.created_at_ms);
  PutTimeUnlessZero(j, "updated_at", v.updated_at_ms);
  PutTimeUnlessZero(j, "finished_at", v.finished_at_ms);
  PutUnlessDefault(j, "last_error", v.last_error, d.last_error);
  PutUnlessDefault(j, "last_fingerprint", v.last_fingerprint, d.last_fingerprint);
  PutUnlessDefault(j, "branch", v.branch, d.branch);
  PutUnlessDefault(j, "commit", v.commit, d.commit);
  PutUnlessDefault(j, "cost_usd", v.cost_usd, d.cost_usd);
  PutUnlessDefault(j, "tokens_in", v.tokens_in, d.tokens_in);
  PutUnlessDefault(j, "tokens_out", v.tokens_out, d.tokens_out);
  return j;
}

void ReadValue(const json& j, TaskInfo& v) {
  RequireObject(j);
  Required(j, "id", v.id);
  Optional(j, "title", v.title);
  Optional(j, "brief", v.brief);
  Optional(j, "kind", v.kind);
  std::string state;
  Optional(j, "state", state);
  if (!state.empty()) {
    auto parsed = ParseState(state);
    if (!parsed)
      throw FieldError("state", "must be one of " + StateList() + ", got '" + state + "'");
    v.state = *parsed;
  }
  Optional(j, "priority", v.priority);
  Optional(j, "max_attempts", v.max_attempts);
  Optional(j, "needs_approval", v.needs_approval);
  Optional(j, "approved", v.approved);
  Optional(j, "allow_empty", v.allow_empty);
  Optional(j, "repo", v.repo);
  Optional(j, "base", v.base);
  Optional(j, "base_commit", v.base_commit);
  Optional(j, "agent", v.agent);
  Optional(j, "model", v.model);
  Optional(j, "env", v.env);
  Optional(j, "verify", v.verify);
  Optional(j, "depends_on", v.depends_on);
  Optional(j, "parent", v.parent);
  Optional(j, "attempts", v.attempts);
  Optional(j, "total_attempts", v.total_attempts);
  Optional(j, "infra_retries", v.infra_retries);
  OptionalTime(j, "not_before", v.not_before_ms);
  OptionalTime(j, "created_at", v.created_at_ms);
  OptionalTime(j, "updated_at", v.updated_at_ms);
  OptionalTime(j, "finished_at", v.finished_at_ms);
  Optional(j, "last_error", v.last_error);
  Optional(j, "last_fingerprint", v.last_fingerprint);
  Optional(j, "branch", v.branch);
  Optional(j, "commit", v.commit);
  Optional(j, "cost_usd", v.cost_usd);
  Optional(j, "tokens_in", v.tokens_in);
  Optional(j, "tokens_out", v.tokens_out);
}

// ---- attempts ----

void to_json(json& j, const AttemptInfo& v) {
  j = json::object();
  j["id"] = v.id;
  j["task_id"] = v.task_id;
  j["n"] = v.n;
  j["counted"] = v.counted;
  j["worker_pid"] = v.worker_pid;
  j["agent_pid"] = v.agent_pid;
  j["agent_pgid"] = v.agent_pgid;
  j["agent_start_time"] = v.agent_start_time;
  j["started_at"] = TimeToJson(v.started_at_ms);
  j["ended_at"] = TimeToJson(v.ended_at_ms);
  j["duration_ms"] = v.duration_ms;
  // An open attempt has no outcome yet: null rather than "".
  j["outcome"] = v.outcome.empty() ? json(nullptr) : json(v.outcome);
  j["exit_code"] = v.exit_code;
  j["signal"] = v.signal;
  j["cost_usd"] = v.cost_usd;
  j["tokens_in"] = v.tokens_in;
  j["tokens_out"] = v.tokens_out;
  j["num_turns"] = v.num_turns;
  j["session_id"] = v.session_id;
  j["model"] = v.model;
  j["error"] = v.error;
  j["fingerprint"] = v.fingerprint;
  j["verdict"] = v.verdict;
  j["findings"] = v.findings;
  j["checks"] = v.checks;
  j["log_path"] = v.log_path;
  j["commit"] = v.commit;
}

void ReadValue(const json& j, AttemptInfo& v) {
  RequireObject(j);
  Optional(j, "id", v.id);
  Optional(j, "task_id", v.task_id);
  Required(j, "n", v.n);
  Optional(j, "counted", v.counted);
  Optional(j, "worker_pid", v.worker_pid);
  Optional(j, "agent_pid", v.agent_pid);
  Optional(j, "agent_pgid", v.agent_pgid);
  Optional(j, "agent_start_time", v.agent_start_time);
  OptionalTime(j, "started_at", v.started_at_ms);
  OptionalTime(j, "ended_at", v.ended_at_ms);
  Optional(j, "duration_ms", v.duration_ms);
  Optional(j, "outcome", v.outcome);
  Optional(j, "exit_code", v.exit_code);
  Optional(j, "signal", v.signal);
  Optional(j, "cost_usd", v.cost_usd);
  Optional(j, "tokens_in", v.tokens_in);
  Optional(j, "tokens_out", v.tokens_out);
  Optional(j, "num_turns", v.num_turns);
  Optional(j, "session_id", v.session_id);
  Optional(j, "model", v.model);
  Optional(j, "error", v.error);
  Optional(j, "fingerprint", v.fingerprint);
  Optional(j, "verdict", v.verdict);
  Optional(j, "findings", v.findings);
  Optional(j, "checks", v.checks);
  Optional(j, "log_path", v.log_path);
  Optional(j, "commit", v.commit);
}

// ---- events ----

void to_json(json& j, const EventInfo& v) {
  j = json{{"seq", v.seq},         {"ts", TimeToJson(v.ts_ms)},
           {"kind", v.kind},       {"task_id", v.task_id.empty() ? json(nullptr) : json(v.task_id)},
           {"attempt", v.attempt}, {"payload", v.payload}};
}

void ReadValue(const json& j, EventInfo& v) {
  RequireObject(j);
  Required(j, "seq", v.seq);
  OptionalTime(j, "ts", v.ts_ms);
  Required(j, "kind", v.kind);
  Optional(j, "task_id", v.task_id);
  Optional(j, "attempt", v.attempt);
  Optional(j, "payload", v.payload);
}

}  // namespace forge::proto
