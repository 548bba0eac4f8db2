#include "proto/control.h"

#include <exception>
#include <type_traits>

#include "common/redact.h"
#include "proto/codec.h"
#include "proto/json_fields.h"

namespace forge::proto {
namespace {

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void OptionalTime(const json& obj, const char* key, int64_t& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return;
  WithPrefix(key, [&] { out = TimeFromJson(*it); });
}

std::string StateChoices() {
  std::string out;
  for (TaskState s : AllStates()) {
    if (!out.empty()) out += ", ";
    out += StateName(s);
  }
  return out;
}

std::optional<ErrorCode> ParseErrorCode(std::string_view name) {
  for (int i = 0; i <= static_cast<int>(ErrorCode::kInternal); ++i) {
    auto code = static_cast<ErrorCode>(i);
    if (ErrorCodeName(code) == name) return code;
  }
  return std::nullopt;
}

// Requests come from operators: a bad field is bad input. Replies come from
// the supervisor: a bad field means the two sides disagree on the wire.
template <typename T>
constexpr bool kIsRequest =
    std::is_same_v<T, SubmitTask> || std::is_same_v<T, SubmitRequest> ||
    std::is_same_v<T, IdRequest> || std::is_same_v<T, ListRequest> ||
    std::is_same_v<T, EventsRequest> || std::is_same_v<T, SubmitChunkRequest> ||
    std::is_same_v<T, UploadRequest>;

}  // namespace

// ---- request envelope ----

forge::Result<ControlRequest> DecodeControlRequest(std::string_view bytes) {
  try {
    FORGE_ASSIGN_OR_RETURN(json j, ParseObject(bytes));
    ControlRequest req;
    int version = 0;
    try {
      Required(j, "v", version);
      Required(j, "cmd", req.cmd);
    } catch (const FieldError& e) {
      return MakeError(ErrorCode::kDecode, std::string("request: ") + e.what());
    }
    if (version != kProtocolVersion) {
      return MakeError(ErrorCode::kDecode, "unsupported protocol version " +
                                               std::to_string(version) + " (this build speaks " +
                                               std::to_string(kProtocolVersion) + ")");
    }
    if (req.cmd.empty()) return MakeError(ErrorCode::kDecode, "request: field 'cmd' is empty");
    req.args = std::move(j);
    return req;
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kDecode, std::string("cannot decode request: ") + e.what());
  }
}

std::string EncodeControlRequest(const std::string& cmd, json args) {
  if (!args.is_object()) args = json::object();
  args["v"] = kProtocolVersion;
  args["cmd"] = cmd;
  return Dump(args);
}

// ---- requests ----

void to_json(json& j, const SubmitTask& v) {
  j = json::object();
  j["id"] = v.id;
  j["title"] = v.title;
  j["brief"] = v.brief;
  j["kind"] = v.kind;
  j["repo"] = v.repo;
  j["base"] = v.base;
  j["verify"] = v.verify;
  j["depends_on"] = v.depends_on;
  j["priority"] = v.priority;
  if (v.max_attempts) j["max_attempts"] = *v.max_attempts;
  j["needs_approval"] = v.needs_approval;
  j["allow_empty"] = v.allow_empty;
  j["agent"] = v.agent;
  j["model"] = v.model;
  j["env"] = v.env;
}

void ReadValue(const json& j, SubmitTask& v) {
  RequireObject(j);
  Optional(j, "id", v.id);
  Required(j, "title", v.title);
  Optional(j, "brief", v.brief);
  Optional(j, "kind", v.kind);
  Optional(j, "repo", v.repo);
  Optional(j, "base", v.base);
  Optional(j, "verify", v.verify);
  Optional(j, "depends_on", v.depends_on);
  Optional(j, "priority", v.priority);
  Optional(j, "max_attempts", v.max_attempts);
  Optional(j, "needs_approval", v.needs_approval);
  Optional(j, "allow_empty", v.allow_empty);
  Optional(j, "agent", v.agent);
  Optional(j, "model", v.model);
  Optional(j, "env", v.env);
}

void to_json(json& j, const SubmitRequest& v) {
  j = json{{"tasks", v.tasks}};
  if (v.idempotency_key) j["idempotency_key"] = *v.idempotency_key;
}
void ReadValue(const json& j, SubmitRequest& v) {
  RequireObject(j);
  Required(j, "tasks", v.tasks);
  Optional(j, "idempotency_key", v.idempotency_key);
}

void to_json(json& j, const SubmitReply& v) {
  j = json{{"ids", v.ids}};
  if (v.existing) j["existing"] = true;
  if (!v.idempotency_key.empty()) j["idempotency_key"] = v.idempotency_key;
}
void ReadValue(const json& j, SubmitReply& v) {
  RequireObject(j);
  Required(j, "ids", v.ids);
  Optional(j, "existing", v.existing);
  Optional(j, "idempotency_key", v.idempotency_key);
}

void to_json(json& j, const SubmitChunkRequest& v) {
  j = json{{"upload", v.upload}, {"tasks", v.tasks}};
}
void ReadValue(const json& j, SubmitChunkRequest& v) {
  RequireObject(j);
  Required(j, "upload", v.upload);
  Required(j, "tasks", v.tasks);
}

void to_json(json& j, const UploadRequest& v) {
  j = json{{"upload", v.upload}};
  if (v.idempotency_key) j["idempotency_key"] = *v.idempotency_key;
}
void ReadValue(const json& j, UploadRequest& v) {
  RequireObject(j);
  Required(j, "upload", v.upload);
  Optional(j, "idempotency_key", v.idempotency_key);
}

void to_json(json& j, const UploadReply& v) {
  j = json{{"upload", v.upload}, {"staged", v.staged}};
}
void ReadValue(const json& j, UploadReply& v) {
  RequireObject(j);
  Required(j, "upload", v.upload);
  Optional(j, "staged", v.staged);
}

void to_json(json& j, const IdRequest& v) {
  j = json{{"id", v.id}};
}
void ReadValue(const json& j, IdRequest& v) {
  RequireObject(j);
  Required(j, "id", v.id);
}

void to_json(json& j, const ListRequest& v) {
  j = json{{"limit", v.limit}};
  if (v.state) j["state"] = StateName(*v.state);
}

void ReadValue(const json& j, ListRequest& v) {
  RequireObject(j);
  std::optional<std::string> state;
  Optional(j, "state", state);
  if (state) {
    v.state = ParseState(*state);
    if (!v.state) {
      throw FieldError("state", "must be one of " + StateChoices() + ", got '" + *state + "'");
    }
  }
  Optional(j, "limit", v.limit);
}

void to_json(json& j, const EventsRequest& v) {
  j = json{{"since", v.since}, {"task_id", v.task_id}, {"kind", v.kind}, {"limit", v.limit}};
  PutUnlessDefault(j, "newest", v.newest, false);
  PutUnlessDefault(j, "before", v.before, int64_t{0});
}

void ReadValue(const json& j, EventsRequest& v) {
  RequireObject(j);
  Optional(j, "since", v.since);
  Optional(j, "task_id", v.task_id);
  Optional(j, "kind", v.kind);
  Optional(j, "limit", v.limit);
  Optional(j, "newest", v.newest);
  Optional(j, "before", v.before);
}

// ---- status ----

void to_json(json& j, const PauseReason& v) {
  j = json{{"kind", v.kind}, {"reason", v.reason}, {"until", TimeToJson(v.until_ms)}};
}

void ReadValue(const json& j, PauseReason& v) {
  RequireObject(j);
  Required(j, "kind", v.kind);
  Optional(j, "reason", v.reason);
  OptionalTime(j, "until", v.until_ms);
}

void to_json(json& j, const ChildStatus& v) {
  j = json{{"role", v.role},
           {"pid", v.pid},
           {"state", v.state},
           {"task_id", v.task_id},
           {"attempt_id", v.attempt_id},
           {"attempt_n", v.attempt_n},
           {"heartbeat_age_ms", v.heartbeat_age_ms},
           {"busy_since", TimeToJson(v.busy_since_ms)},
           {"restarts", v.restarts}};
}

void ReadValue(const json& j, ChildStatus& v) {
  RequireObject(j);
  Required(j, "role", v.role);
  Optional(j, "pid", v.pid);
  Required(j, "state", v.state);
  Optional(j, "task_id", v.task_id);
  Optional(j, "attempt_id", v.attempt_id);
  Optional(j, "attempt_n", v.attempt_n);
  Optional(j, "heartbeat_age_ms", v.heartbeat_age_ms);
  OptionalTime(j, "busy_since", v.busy_since_ms);
  Optional(j, "restarts", v.restarts);
}

void to_json(json& j, const LastFailure& v) {
  j = json{{"task_id", v.task_id},
           {"n", v.n},
           {"outcome", v.outcome},
           {"error", v.error},
           {"at", TimeToJson(v.at_ms)}};
}

void ReadValue(const json& j, LastFailure& v) {
  RequireObject(j);
  Required(j, "task_id", v.task_id);
  Optional(j, "n", v.n);
  Optional(j, "outcome", v.outcome);
  Optional(j, "error", v.error);
  OptionalTime(j, "at", v.at_ms);
}

void to_json(json& j, const MaintenanceStatus& v) {
  j = json{{"running_since", TimeToJson(v.running_since_ms)},
           {"last_job_id", v.last_job_id},
           {"last_outcome", v.last_outcome},
           {"last_at", TimeToJson(v.last_at_ms)},
           {"removed", v.removed},
           {"logs_deleted", v.logs_deleted},
           {"errors", v.errors},
           {"next_at", TimeToJson(v.next_at_ms)}};
}

void ReadValue(const json& j, MaintenanceStatus& v) {
  RequireObject(j);
  OptionalTime(j, "running_since", v.running_since_ms);
  Optional(j, "last_job_id", v.last_job_id);
  Optional(j, "last_outcome", v.last_outcome);
  OptionalTime(j, "last_at", v.last_at_ms);
  Optional(j, "removed", v.removed);
  Optional(j, "logs_deleted", v.logs_deleted);
  Optional(j, "errors", v.errors);
  OptionalTime(j, "next_at", v.next_at_ms);
}

void to_json(json& j, const StatusReply& v) {
  j = json::object();
  j["pid"] = v.pid;
  j["version"] = v.version;
  j["state_dir"] = v.state_dir;
  j["started_at"] = TimeToJson(v.started_at_ms);
  j["uptime_ms"] = v.uptime_ms;
  j["paused"] = v.paused;
  j["pause_reasons"] = v.pause_reasons;
  j["children"] = v.children;
  j["queue"] = v.queue;
  j["cost_today_usd"] = v.cost_today_usd;
  j["last_failure"] = v.last_failure ? json(*v.last_failure) : json(nullptr);
  j["degraded"] = v.degraded;
  j["maintenance"] = v.maintenance ? json(*v.maintenance) : json(nullptr);
}

void ReadValue(const json& j, StatusReply& v) {
  RequireObject(j);
  Required(j, "pid", v.pid);
  Optional(j, "version", v.version);
  Optional(j, "state_dir", v.state_dir);
  OptionalTime(j, "started_at", v.started_at_ms);
  Optional(j, "uptime_ms", v.uptime_ms);
  Required(j, "paused", v.paused);
  Optional(j, "pause_reasons", v.pause_reasons);
  Optional(j, "children", v.children);
  if (auto it = j.find("queue"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) throw FieldError("queue", "must be an object of counts");
    v.queue.clear();
    for (auto q = it->begin(); q != it->end(); ++q) {
      int64_t count = 0;
      WithPrefix("queue", [&] { WithPrefix(q.key(), [&] { ReadValue(q.value(), count); }); });
      v.queue[q.key()] = count;
    }
  }
  Optional(j, "cost_today_usd", v.cost_today_usd);
  Optional(j, "last_failure", v.last_failure);
  Optional(j, "degraded", v.degraded);
  Optional(j, "maintenance", v.maintenance);
}

// ---- show / list / change / events ----

void to_json(json& j, const ShowReply& v) {
  j = v.task;
  // Contract of `show --json`: "attempts" is the ledger, not the count.
  j["attempts_used"] = v.task.attempts;
  j["attempts"] = v.attempts;
  j["timeline"] = v.timeline;
  j["timeline_omitted"] = v.timeline_omitted;
  j["state_reason"] = v.state_reason;
}

void ReadValue(const json& j, ShowReply& v) {
  RequireObject(j);
  json task = j;
  task.erase("attempts");
  task.erase("timeline");
  task.erase("timeline_omitted");
  task.erase("state_reason");
  if (auto it = j.find("attempts_used"); it != j.end()) task["attempts"] = *it;
  ReadValue(task, v.task);
  Optional(j, "attempts", v.attempts);
  Optional(j, "timeline", v.timeline);
  Optional(j, "timeline_omitted", v.timeline_omitted);
  Optional(j, "state_reason", v.state_reason);
}

void to_json(json& j, const ListReply& v) {
  json tasks = json::array();
  for (const auto& t : v.tasks) {
    json task = t;
    if (auto r = v.state_reasons.find(t.id); r != v.state_reasons.end()) {
      task["state_reason"] = r->second;
    }
    tasks.push_back(std::move(task));
  }
  j = json{{"tasks", std::move(tasks)}};
}
void ReadValue(const json& j, ListReply& v) {
  RequireObject(j);
  Required(j, "tasks", v.tasks);
  v.state_reasons.clear();
  const json& tasks = j.at("tasks");  // an array: Required read it
  for (size_t i = 0; i < v.tasks.size(); ++i) {
    std::string reason;
    WithPrefix("tasks",
               [&] { WithPrefix(i, [&] { Optional(tasks[i], "state_reason", reason); }); });
    if (!reason.empty()) v.state_reasons[v.tasks[i].id] = std::move(reason);
  }
}

void to_json(json& j, const ChangeReply& v) {
  j = json{{"id", v.id},
           {"previous_state", v.previous_state},
           {"state", v.state},
           {"message", v.message}};
}

void ReadValue(const json& j, ChangeReply& v) {
  RequireObject(j);
  Required(j, "id", v.id);
  Optional(j, "previous_state", v.previous_state);
  Optional(j, "state", v.state);
  Optional(j, "message", v.message);
}

void to_json(json& j, const EventsReply& v) {
  j = json{{"events", v.events}, {"last_seq", v.last_seq}};
}

void ReadValue(const json& j, EventsReply& v) {
  RequireObject(j);
  Required(j, "events", v.events);
  Optional(j, "last_seq", v.last_seq);
}

// ---- typed reads ----

template <typename T>
forge::Result<T> ReadAs(const json& j) {
  const ErrorCode code = kIsRequest<T> ? ErrorCode::kInvalid : ErrorCode::kDecode;
  try {
    T v{};
    ReadValue(j, v);
    return v;
  } catch (const FieldError& e) {
    return MakeError(code, e.what());
  } catch (const std::exception& e) {
    return MakeError(code, e.what());
  }
}

template forge::Result<SubmitTask> ReadAs<SubmitTask>(const json&);
template forge::Result<SubmitRequest> ReadAs<SubmitRequest>(const json&);
template forge::Result<SubmitReply> ReadAs<SubmitReply>(const json&);
template forge::Result<SubmitChunkRequest> ReadAs<SubmitChunkRequest>(const json&);
template forge::Result<UploadRequest> ReadAs<UploadRequest>(const json&);
template forge::Result<UploadReply> ReadAs<UploadReply>(const json&);
template forge::Result<IdRequest> ReadAs<IdRequest>(const json&);
template forge::Result<ListRequest> ReadAs<ListRequest>(const json&);
template forge::Result<EventsRequest> ReadAs<EventsRequest>(const json&);
template forge::Result<PauseReason> ReadAs<PauseReason>(const json&);
template forge::Result<ChildStatus> ReadAs<ChildStatus>(const json&);
template forge::Result<LastFailure> ReadAs<LastFailure>(const json&);
template forge::Result<StatusReply> ReadAs<StatusReply>(const json&);
template forge::Result<ShowReply> ReadAs<ShowReply>(const json&);
template forge::Result<ListReply> ReadAs<ListReply>(const json&);
template forge::Result<ChangeReply> ReadAs<ChangeReply>(const json&);
template forge::Result<EventsReply> ReadAs<EventsReply>(const json&);
template forge::Result<TaskInfo> ReadAs<TaskInfo>(const json&);
template forge::Result<AttemptInfo> ReadAs<AttemptInfo>(const json&);
template forge::Result<EventInfo> ReadAs<EventInfo>(const json&);

// ---- reply envelopes ----

std::string EncodeOk(const json& body) {
  json j = body.is_object() ? body : json{{"result", body}};
  j["ok"] = true;
  return Dump(j);
}

std::string EncodeError(const forge::Error& error) {
  return Dump(
      json{{"ok", false}, {"error", {{"code", error.code_name()}, {"message", error.message}}}});
}

forge::Result<json> DecodeReply(std::string_view bytes) {
  try {
    FORGE_ASSIGN_OR_RETURN(json j, ParseObject(bytes));
    bool ok = false;
    std::string code_name;
    std::string message;
    try {
      Required(j, "ok", ok);
      if (!ok) {
        const json* err = nullptr;
        if (auto it = j.find("error"); it != j.end()) err = &*it;
        if (err == nullptr) throw FieldError("error", "is missing");
        WithPrefix("error", [&] {
          RequireObject(*err);
          Required(*err, "code", code_name);
          Optional(*err, "message", message);
        });
      }
    } catch (const FieldError& e) {
      return MakeError(ErrorCode::kDecode, std::string("reply: ") + e.what());
    }
    if (ok) {
      j.erase("ok");
      return j;
    }
    auto code = ParseErrorCode(code_name);
    if (!code) {
      return MakeError(ErrorCode::kInternal, message + " (unknown error code '" + code_name + "')");
    }
    return MakeError(*code, message);
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kDecode, std::string("cannot decode reply: ") + e.what());
  }
}

void RedactForOperator(TaskInfo& task, const std::vector<std::string>& config_secrets,
                       std::vector<std::string>* secrets_out) {
  std::vector<std::string> secrets = config_secrets;
  for (auto& s : SecretValues(task.env)) secrets.push_back(s);
  task.env = RedactEnv(task.env);
  // Every text the operator wrote or a run produced may quote a secret:
  // a title or a verify command as much as the brief.
  for (std::string* text :
       {&task.title, &task.brief, &task.last_error, &task.repo, &task.base, &task.branch}) {
    *text = RedactText(std::move(*text), secrets);
  }
  for (auto& v : task.verify) v = RedactText(std::move(v), secrets);
  if (secrets_out != nullptr) *secrets_out = std::move(secrets);
}

void RedactForOperator(ShowReply& show, const std::vector<std::string>& config_secrets) {
  std::vector<std::string> secrets;
  RedactForOperator(show.task, config_secrets, &secrets);
  for (auto& a : show.attempts) {
    a.error = RedactText(a.error, secrets);
    // What the critic stored before it redacted checks' output itself.
    // A check's name is its verify command as written, which may quote one.
    for (auto& c : a.checks) {
      c.name = RedactText(c.name, secrets);
      c.output_tail = RedactText(c.output_tail, secrets);
    }
    for (auto& f : a.findings) {
      f.file = RedactText(f.file, secrets);
      f.message = RedactText(f.message, secrets);
    }
  }
  for (auto& e : show.timeline) RedactJson(e.payload, secrets);
  show.state_reason = RedactText(show.state_reason, secrets);
}

void RedactForOperator(ListReply& list, const std::vector<std::string>& config_secrets) {
  for (auto& t : list.tasks) {
    std::vector<std::string> secrets;
    RedactForOperator(t, config_secrets, &secrets);
    if (auto r = list.state_reasons.find(t.id); r != list.state_reasons.end()) {
      r->second = RedactText(r->second, secrets);
    }
  }
}

forge::Result<std::vector<std::string>> TaskSecrets(const std::string& task_id,
                                                    const std::vector<std::string>& config_secrets,
                                                    const TaskEnvLookup& env_of,
                                                    std::string_view what) {
  std::vector<std::string> secrets = config_secrets;
  auto env = env_of(task_id);
  if (env.ok()) {
    for (auto& s : SecretValues(*env)) secrets.push_back(std::move(s));
  } else if (env.error().code != forge::ErrorCode::kNotFound) {
    return env.error().Wrap("reading task " + task_id + "'s env to redact " + std::string(what));
  }
  return secrets;
}

forge::Status RedactForOperator(EventsReply& events, const std::vector<std::string>& config_secrets,
                                const TaskEnvLookup& env_of) {
  std::map<std::string, std::vector<std::string>> by_task;  // a task's secrets, config's included
  for (auto& e : events.events) {
    if (e.task_id.empty()) {
      RedactJson(e.payload, config_secrets);
      continue;
    }
    auto found = by_task.find(e.task_id);
    if (found == by_task.end()) {
      FORGE_ASSIGN_OR_RETURN(auto secrets,
                             TaskSecrets(e.task_id, config_secrets, env_of, "its events"));
      found = by_task.emplace(e.task_id, std::move(secrets)).first;
    }
    RedactJson(e.payload, found->second);
  }
  return forge::Status::Ok();
}

void RedactForOperator(std::optional<LastFailure>& failure,
                       const std::vector<std::string>& config_secrets,
                       const TaskEnvLookup& env_of) {
  if (!failure) return;
  auto secrets = TaskSecrets(failure->task_id, config_secrets, env_of, "its last failure");
  failure->error = secrets.ok() ? RedactText(std::move(failure->error), *secrets)
                                : "[not shown: " + secrets.error().message + "]";
}

void RedactJson(json& value, const std::vector<std::string>& secrets) {
  if (secrets.empty()) return;
  if (value.is_string()) {
    // A task id the store made (t<seq>) is never a secret, and one garbled
    // by a numeric secret (PIN_PASSWORD=4096 in t4096) names no task: wait
    // could not find the one a task is stuck on.
    const std::string& text = value.get_ref<const std::string&>();
    bool task_id = text.size() >= 2 && text[0] == 't' &&
                   text.find_first_not_of("0123456789", 1) == std::string::npos;
    if (!task_id) value = RedactText(text, secrets);
  } else if (value.is_array()) {
    for (auto& item : value) RedactJson(item, secrets);
  } else if (value.is_object()) {
    json out = json::object();
    for (auto& [key, item] : value.items()) {
      RedactJson(item, secrets);
      out[RedactText(key, secrets)] = std::move(item);
    }
    value = std::move(out);
  }
}

}  // namespace forge::proto
