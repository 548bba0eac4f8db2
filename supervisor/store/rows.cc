#include "supervisor/store/rows.h"

#include "proto/json_fields.h"

namespace forge::store {

#define FORGE_TASK_COLUMNS_BEFORE_V7                                                             \
  "seq, id, title, brief, kind, state, priority, max_attempts, needs_approval, approved, "       \
  "allow_empty, repo, base, agent, model, env, verify, depends_on, parent, attempts, "           \
  "total_attempts, infra_retries, not_before, created_at, updated_at, finished_at, last_error, " \
  "last_fingerprint, branch, commit_id, cost_usd, tokens_in, tokens_out, version"

const char* const kTaskColumns = FORGE_TASK_COLUMNS_BEFORE_V7 ", base_commit";
const char* const kTaskColumnsBeforeV7 = FORGE_TASK_COLUMNS_BEFORE_V7 ", NULL";

#undef FORGE_TASK_COLUMNS_BEFORE_V7

const char* const kAttemptColumns =
    "id, task_id, n, counted, worker_pid, agent_pid, agent_pgid, agent_start_time, started_at, "
    "reported_at, ended_at, duration_ms, outcome, exit_code, signal, cost_usd, tokens_in, "
    "tokens_out, num_turns, session_id, model, error, fingerprint, verdict, findings, checks, "
    "log_path, commit_id";

const char* const kNextReadyWhere = "WHERE state = 'ready' ORDER BY priority DESC, seq LIMIT ?";

namespace {

// Parses a JSON column into `out` with the strict proto readers; where()
// names the column in an error. The empty object and array, what most rows
// hold, are read without the parser: a task row is read three or four times
// a task, three JSON columns each (issue 6).
template <typename T, typename Where>
Status ReadJsonColumn(const std::string& text, T& out, Where where) {
  if (text == "{}" || text == "[]") {
    try {
      proto::ReadValue(text == "{}" ? json::object() : json::array(), out);
      return Status::Ok();
    } catch (const std::exception&) {
      // The wrong container for the column: the parser's path below says so.
    }
  }
  try {
    proto::ReadValue(json::parse(text), out);
    return Status::Ok();
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kDb, where() + " holds bad JSON: " + e.what());
  }
}

}  // namespace

std::string JsonText(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<TaskRow> ReadTaskRow(const Stmt& s) {
  TaskRow row;
  proto::TaskInfo& t = row.info;
  row.seq = s.Int(0);
  t.id = s.Text(1);
  t.title = s.Text(2);
  t.brief = s.Text(3);
  t.kind = s.Text(4);
  std::string state = s.Text(5);
  auto parsed = proto::ParseState(state);
  if (!parsed)
    return MakeError(ErrorCode::kDb, "task " + t.id + " has unknown state '" + state + "'");
  t.state = *parsed;
  t.priority = static_cast<int>(s.Int(6));
  t.max_attempts = static_cast<int>(s.Int(7));
  t.needs_approval = s.Int(8) != 0;
  t.approved = s.Int(9) != 0;
  t.allow_empty = s.Int(10) != 0;
  t.repo = s.Text(11);
  t.base = s.Text(12);
  t.agent = s.Text(13);
  t.model = s.Text(14);
  FORGE_RETURN_IF_ERROR(ReadJsonColumn(s.Text(15), t.env, [&] { return "tasks.env of " + t.id; }));
  FORGE_RETURN_IF_ERROR(
      ReadJsonColumn(s.Text(16), t.verify, [&] { return "tasks.verify of " + t.id; }));
  FORGE_RETURN_IF_ERROR(
      ReadJsonColumn(s.Text(17), t.depends_on, [&] { return "tasks.depends_on of " + t.id; }));
  t.parent = s.Text(18);
  t.attempts = static_cast<int>(s.Int(19));
  t.total_attempts = static_cast<int>(s.Int(20));
  t.infra_retries = static_cast<int>(s.Int(21));
  t.not_before_ms = s.Int(22);
  t.created_at_ms = s.Int(23);
  t.updated_at_ms = s.Int(24);
  t.finished_at_ms = s.Int(25);
  t.last_error = s.Text(26);
  t.last_fingerprint = s.Text(27);
  t.branch = s.Text(28);
  t.commit = s.Text(29);
  t.cost_usd = s.Real(30);
  t.tokens_in = s.Int(31);
  t.tokens_out = s.Int(32);
  row.version = s.Int(33);
  t.base_commit = s.Text(34);  // NULL (not recorded yet) reads as ""
  return row;
}

Result<AttemptRow> ReadAttemptRow(const Stmt& s) {
  AttemptRow row;
  proto::AttemptInfo& a = row.info;
  a.id = s.Int(0);
  a.task_id = s.Text(1);
  a.n = static_cast<int>(s.Int(2));
  a.counted = s.Int(3) != 0;
  a.worker_pid = s.Int(4);
  a.agent_pid = s.Int(5);
  a.agent_pgid = s.Int(6);
  a.agent_start_time = s.Int(7);
  a.started_at_ms = s.Int(8);
  row.reported = !s.IsNull(9);
  row.ended = !s.IsNull(10);
  a.ended_at_ms = row.ended ? s.Int(10) : 0;
  a.duration_ms = s.Int(11);
  a.outcome = s.Text(12);
  a.exit_code = static_cast<int>(s.Int(13));
  a.signal = static_cast<int>(s.Int(14));
  a.cost_usd = s.Real(15);
  a.tokens_in = s.Int(16);
  a.tokens_out = s.Int(17);
  a.num_turns = s.Int(18);
  a.session_id = s.Text(19);
  a.model = s.Text(20);
  a.error = s.Text(21);
  a.fingerprint = s.Text(22);
  a.verdict = s.Text(23);
  auto where = [&](const char* column) {
    return [&a, column] { return "attempt " + std::to_string(a.id) + " " + column; };
  };
  FORGE_RETURN_IF_ERROR(ReadJsonColumn(s.Text(24), a.findings, where("findings")));
  FORGE_RETURN_IF_ERROR(ReadJsonColumn(s.Text(25), a.checks, where("checks")));
  a.log_path = s.Text(26);
  a.commit = s.Text(27);
  return row;
}

}  // namespace forge::store
