// Fully populated records for the proto tests: every field set to a value
// different from its default, so a field the codec drops fails a round trip.
#pragma once

#include "proto/control.h"
#include "proto/messages.h"
#include "proto/types.h"

namespace forge::proto::fixtures {

inline CheckResult FullCheck(int i = 0) {
  CheckResult c;
  c.name = "make test " + std::to_string(i);
  c.exit_code = 2;
  c.signal = 9;
  c.duration_ms = 1234 + i;
  c.timed_out = true;
  c.passed = false;
  c.output_tail = "FAIL: test_x\nline \"two\"\n";
  return c;
}

inline Finding FullFinding(int i = 0) {
  Finding f;
  f.severity = "sev1";
  f.category = "correctness";
  f.file = "src/a.cc";
  f.line = 42 + i;
  f.message = "off by one " + std::to_string(i);
  return f;
}

inline AgentSpec FullAgent() {
  AgentSpec a;
  a.profile = "claude";
  a.command = {"claude", "-p"};
  a.args = {"--allowedTools", "Write,Edit,Bash"};
  a.model = "opus";
  a.env = {{"API_TOKEN", "t0k3n"}, {"LANG", "C.UTF-8"}};
  a.pass_env = {"HOME", "PATH"};
  a.timeout_ms = 111;
  a.stall_timeout_ms = 222;
  a.kill_grace_ms = 333;
  return a;
}

inline AttemptSummary FullSummary(int n = 1) {
  AttemptSummary s;
  s.n = n;
  s.outcome = "rejected";
  s.error = "tests failed";
  s.failing_checks = {FullCheck(1), FullCheck(2)};
  s.findings = {FullFinding(1)};
  return s;
}

inline TaskInfo FullTask() {
  TaskInfo t;
  t.id = "t-0042";
  t.title = "Fix the parser";
  t.brief = "Make it handle \"quotes\" and ünïcödé\n";
  t.kind = "expand";
  t.state = TaskState::kCooldown;
  t.priority = -3;
  t.max_attempts = 7;
  t.needs_approval = true;
  t.approved = true;
  t.allow_empty = true;
  t.repo = "/srv/repo";
  t.base = "main";
  t.base_commit = "89abcdef0123456789abcdef0123456789abcdef";
  t.agent = "codex";
  t.model = "gpt-5";
  t.env = {{"FOO", "bar"}, {"EMPTY", ""}};
  t.verify = {"make test", "make lint"};
  t.depends_on = {"t-0001", "t-0002"};
  t.parent = "t-0040";
  t.attempts = 2;
  t.total_attempts = 4;
  t.infra_retries = 2;
  t.not_before_ms = 1795273445123;
  t.created_at_ms = 1795273000001;
  t.updated_at_ms = 1795273400999;
  t.finished_at_ms = 1795273449000;
  t.last_error = "exit 1";
  t.last_fingerprint = "abc123";
  t.branch = "forge/t-0042";
  t.commit = "deadbeef";
  t.cost_usd = 1.25;
  t.tokens_in = 1000000;
  t.tokens_out = 5000;
  return t;
}

inline AttemptInfo FullAttempt(int n = 1) {
  AttemptInfo a;
  a.id = 100 + n;
  a.task_id = "t-0042";
  a.n = n;
  a.counted = false;
  a.worker_pid = 1234;
  a.agent_pid = 1240;
  a.agent_pgid = 1240;
  a.agent_start_time = 987654321;
  a.started_at_ms = 1795273000500;
  a.ended_at_ms = 1795273100750;
  a.duration_ms = 100250;
  a.outcome = "timed_out";
  a.exit_code = 3;
  a.signal = 15;
  a.cost_usd = 0.5;
  a.tokens_in = 12;
  a.tokens_out = 34;
  a.num_turns = 5;
  a.session_id = "sess-1";
  a.model = "opus";
  a.error = "timed out after 60m";
  a.fingerprint = "fp";
  a.verdict = "reject";
  a.findings = {FullFinding(0), FullFinding(1)};
  a.checks = {FullCheck(0)};
  a.log_path = "/var/log/a.log";
  a.commit = "cafe";
  return a;
}

inline EventInfo FullEvent(int64_t seq = 7) {
  EventInfo e;
  e.seq = seq;
  e.ts_ms = 1795273445123;
  e.kind = "attempt_finished";
  e.task_id = "t-0042";
  e.attempt = 2;
  e.payload = json{{"outcome", "failed"}, {"nested", {{"a", json::array({1, 2.5, "x"})}}}};
  return e;
}

}  // namespace forge::proto::fixtures
