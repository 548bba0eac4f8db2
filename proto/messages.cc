#include "proto/messages.h"

#include "proto/json_fields.h"

namespace forge::proto {

// ---- child -> supervisor ----

void to_json(json& j, const Hello& m) {
  j = json{{"role", m.role}, {"pid", m.pid}, {"version", m.version}};
}

void ReadValue(const json& j, Hello& m) {
  RequireObject(j);
  Required(j, "role", m.role);
  Required(j, "pid", m.pid);
  Required(j, "version", m.version);
}

void to_json(json& j, const Heartbeat& m) {
  j = json::object();
  if (m.attempt_id) j["attempt_id"] = *m.attempt_id;
}

void ReadValue(const json& j, Heartbeat& m) {
  RequireObject(j);
  Optional(j, "attempt_id", m.attempt_id);
}

void to_json(json& j, const Started& m) {
  j = JsonObject("attempt_id", m.attempt_id, "agent_pid", m.agent_pid, "pgid", m.pgid,
                 "agent_start_time", m.agent_start_time);
  if (!m.base_commit.empty()) j["base_commit"] = m.base_commit;
}

void ReadValue(const json& j, Started& m) {
  RequireObject(j);
  Required(j, "attempt_id", m.attempt_id);
  Required(j, "agent_pid", m.agent_pid);
  Required(j, "pgid", m.pgid);
  Optional(j, "agent_start_time", m.agent_start_time);
  Optional(j, "base_commit", m.base_commit);
}

// Fields at their defaults are left out (ReadValue restores them): a
// no-op agent's result is its id and outcome.
void to_json(json& j, const Result& m) {
  static const Result d;
  j = JsonObject("attempt_id", m.attempt_id, "outcome", m.outcome);
  PutUnlessDefault(j, "exit_code", m.exit_code, d.exit_code);
  PutUnlessDefault(j, "signal", m.signal, d.signal);
  PutUnlessDefault(j, "duration_ms", m.duration_ms, d.duration_ms);
  PutUnlessDefault(j, "cost_usd", m.cost_usd, d.cost_usd);
  PutUnlessDefault(j, "tokens_in", m.tokens_in, d.tokens_in);
  PutUnlessDefault(j, "tokens_out", m.tokens_out, d.tokens_out);
  PutUnlessDefault(j, "num_turns", m.num_turns, d.num_turns);
  PutUnlessDefault(j, "session_id", m.session_id, d.session_id);
  PutUnlessDefault(j, "error", m.error, d.error);
  PutUnlessDefault(j, "log_path", m.log_path, d.log_path);
  PutUnlessDefault(j, "output_tail", m.output_tail, d.output_tail);
  PutUnlessDefault(j, "log_error", m.log_error, d.log_error);
  PutUnlessDefault(j, "retryable", m.retryable, d.retryable);
  PutUnlessDefault(j, "rate_limited", m.rate_limited, d.rate_limited);
  PutUnlessDefault(j, "rate_limit_reset_ms", m.rate_limit_reset_ms, d.rate_limit_reset_ms);
  PutUnlessDefault(j, "model_failure", m.model_failure, d.model_failure);
  PutUnlessDefault(j, "infra", m.infra, d.infra);
  PutUnlessDefault(j, "model", m.model, d.model);
  PutUnlessDefault(j, "spec", m.spec, d.spec);
  PutUnlessDefault(j, "agent_pid", m.agent_pid, d.agent_pid);
  PutUnlessDefault(j, "pgid", m.pgid, d.pgid);
  PutUnlessDefault(j, "base_commit", m.base_commit, d.base_commit);
}

void ReadValue(const json& j, Result& m) {
  RequireObject(j);
  Required(j, "attempt_id", m.attempt_id);
  Required(j, "outcome", m.outcome);
  Optional(j, "exit_code", m.exit_code);
  Optional(j, "signal", m.signal);
  Optional(j, "duration_ms", m.duration_ms);
  Optional(j, "cost_usd", m.cost_usd);
  Optional(j, "tokens_in", m.tokens_in);
  Optional(j, "tokens_out", m.tokens_out);
  Optional(j, "num_turns", m.num_turns);
  Optional(j, "session_id", m.session_id);
  Optional(j, "error", m.error);
  Optional(j, "log_path", m.log_path);
  Optional(j, "output_tail", m.output_tail);
  Optional(j, "log_error", m.log_error);
  Optional(j, "retryable", m.retryable);
  Optional(j, "rate_limited", m.rate_limited);
  Optional(j, "rate_limit_reset_ms", m.rate_limit_reset_ms);
  Optional(j, "model_failure", m.model_failure);
  Optional(j, "infra", m.infra);
  Optional(j, "model", m.model);
  Optional(j, "spec", m.spec);
  Optional(j, "agent_pid", m.agent_pid);
  Optional(j, "pgid", m.pgid);
  Optional(j, "base_commit", m.base_commit);
}

void to_json(json& j, const ReviewResult& m) {
  j = JsonObject("attempt_id", m.attempt_id, "verdict", m.verdict, "findings", m.findings, "checks",
                 m.checks, "error", m.error);
  if (m.commit) j["commit"] = *m.commit;
  if (m.cost_usd != 0) j["cost_usd"] = m.cost_usd;
  if (m.tokens_in != 0) j["tokens_in"] = m.tokens_in;
  if (m.tokens_out != 0) j["tokens_out"] = m.tokens_out;
  if (m.infra) j["infra"] = true;
  if (!m.retryable) j["retryable"] = false;
  if (m.rate_limited) j["rate_limited"] = true;
  if (m.rate_limit_reset_ms != 0) j["rate_limit_reset_ms"] = m.rate_limit_reset_ms;
  if (!m.log_error.empty()) j["log_error"] = m.log_error;
}

void ReadValue(const json& j, ReviewResult& m) {
  RequireObject(j);
  Required(j, "attempt_id", m.attempt_id);
  Required(j, "verdict", m.verdict);
  Optional(j, "findings", m.findings);
  Optional(j, "checks", m.checks);
  Optional(j, "commit", m.commit);
  Optional(j, "error", m.error);
  Optional(j, "cost_usd", m.cost_usd);
  Optional(j, "tokens_in", m.tokens_in);
  Optional(j, "tokens_out", m.tokens_out);
  Optional(j, "infra", m.infra);
  Optional(j, "retryable", m.retryable);
  Optional(j, "rate_limited", m.rate_limited);
  Optional(j, "rate_limit_reset_ms", m.rate_limit_reset_ms);
  Optional(j, "log_error", m.log_error);
}

// ---- supervisor -> child ----

// The task goes in its wire form (WireJson): its fields at their defaults
// are left out, like the empty optional fields here.
void to_json(json& j, const Dispatch& m) {
  j = JsonObject("attempt_id", m.attempt_id, "n", m.n, "task", WireJson(m.task), "workspace",
                 m.workspace, "agent", m.agent, "log_path", m.log_path);
  if (!m.brief.empty()) j["brief"] = m.brief;
  if (!m.history.empty()) j["history"] = m.history;
  if (!m.sync_remote.empty()) j["sync_remote"] = m.sync_remote;
  if (!m.sync_branch.empty()) j["sync_branch"] = m.sync_branch;
}

void ReadValue(const json& j, Dispatch& m) {
  RequireObject(j);
  Required(j, "attempt_id", m.attempt_id);
  Optional(j, "n", m.n);
  Required(j, "task", m.task);
  Optional(j, "brief", m.brief);
  Optional(j, "history", m.history);
  Required(j, "workspace", m.workspace);
  Required(j, "agent", m.agent);
  Optional(j, "log_path", m.log_path);
  Optional(j, "sync_remote", m.sync_remote);
  Optional(j, "sync_branch", m.sync_branch);
}

void to_json(json& j, const Review& m) {
  j = JsonObject("attempt_id", m.attempt_id, "n", m.n, "task", WireJson(m.task), "workspace",
                 m.workspace, "verify", m.verify, "verify_timeout_ms", m.verify_timeout_ms,
                 "log_path", m.log_path);
  if (m.critic) j["critic"] = *m.critic;
}

void ReadValue(const json& j, Review& m) {
  RequireObject(j);
  Required(j, "attempt_id", m.attempt_id);
  Optional(j, "n", m.n);
  Required(j, "task", m.task);
  Required(j, "workspace", m.workspace);
  Optional(j, "verify", m.verify);
  Optional(j, "verify_timeout_ms", m.verify_timeout_ms);
  Optional(j, "critic", m.critic);
  Optional(j, "log_path", m.log_path);
}

void to_json(json& j, const Cancel& m) {
  j = json{{"attempt_id", m.attempt_id}};
}

void ReadValue(const json& j, Cancel& m) {
  RequireObject(j);
  Required(j, "attempt_id", m.attempt_id);
}

void to_json(json& j, const Shutdown& m) {
  j = json{{"grace_ms", m.grace_ms}};
}

void ReadValue(const json& j, Shutdown& m) {
  RequireObject(j);
  Optional(j, "grace_ms", m.grace_ms);
}

// ---- maintenance ----

void to_json(json& j, const MaintainEntry& m) {
  j = json{{"task_id", m.task_id}, {"path", m.path}};
  if (!m.repo.empty()) j["repo"] = m.repo;
  if (!m.branch.empty()) j["branch"] = m.branch;
}

void ReadValue(const json& j, MaintainEntry& m) {
  RequireObject(j);
  Required(j, "task_id", m.task_id);
  Required(j, "path", m.path);
  Optional(j, "repo", m.repo);
  Optional(j, "branch", m.branch);
}

void to_json(json& j, const Maintain& m) {
  j = json{{"job_id", m.job_id},
           {"state_dir", m.state_dir},
           {"remove", m.remove},
           {"logs_dir", m.logs_dir},
           {"logs_before_ms", m.logs_before_ms}};
}

void ReadValue(const json& j, Maintain& m) {
  RequireObject(j);
  Required(j, "job_id", m.job_id);
  Required(j, "state_dir", m.state_dir);
  Optional(j, "remove", m.remove);
  Optional(j, "logs_dir", m.logs_dir);
  Optional(j, "logs_before_ms", m.logs_before_ms);
}

void to_json(json& j, const RemovedEntry& m) {
  j = json{{"task_id", m.task_id}, {"path", m.path}, {"existed", m.existed}};
}

void ReadValue(const json& j, RemovedEntry& m) {
  RequireObject(j);
  Required(j, "task_id", m.task_id);
  Required(j, "path", m.path);
  Optional(j, "existed", m.existed);
}

void to_json(json& j, const MaintenanceResult& m) {
  j = json{{"job_id", m.job_id},
           {"removed", m.removed},
           {"logs_deleted", m.logs_deleted},
           {"errors", m.errors},
           {"duration_ms", m.duration_ms}};
}

void ReadValue(const json& j, MaintenanceResult& m) {
  RequireObject(j);
  Required(j, "job_id", m.job_id);
  Optional(j, "removed", m.removed);
  Optional(j, "logs_deleted", m.logs_deleted);
  Optional(j, "errors", m.errors);
  Optional(j, "duration_ms", m.duration_ms);
}

}  // namespace forge::proto
