// The control protocol between forge-ctl and the supervisor (contract):
// request {"v":1,"cmd":"<cmd>", ...args}; reply {"ok":true, ...} or
// {"ok":false,"error":{"code":"not_found","message":"..."}}. Each command's
// request and reply are defined here once and used by both sides.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "proto/types.h"

namespace forge::proto {

// ---- requests ----
struct ControlRequest {
  std::string cmd;
  json args = json::object();  // the whole request object
  bool operator==(const ControlRequest&) const = default;
};
// Parses and checks the envelope ("v", "cmd"); kDecode errors name the field.
forge::Result<ControlRequest> DecodeControlRequest(std::string_view bytes);
std::string EncodeControlRequest(const std::string& cmd, json args = json::object());

// One task of a submit (also one entry of a plan). `id` is local to the
// request: depends_on names either another entry's local id or an existing task id.
struct SubmitTask {
  std::string id;
  std::string title;
  std::string brief;
  std::string kind = "work";  // work | expand
  std::string repo;
  std::string base;
  std::vector<std::string> verify;
  std::vector<std::string> depends_on;
  int priority = 0;
  std::optional<int> max_attempts;  // unset: config retry.max_attempts
  bool needs_approval = false;
  bool allow_empty = false;
  std::string agent;
  std::string model;
  std::map<std::string, std::string> env;
  bool operator==(const SubmitTask&) const = default;
};
void to_json(json& j, const SubmitTask& v);
void ReadValue(const json& j, SubmitTask& v);

struct SubmitRequest {
  std::vector<SubmitTask> tasks;  // all or nothing
  // Optional: the same key with the same tasks again returns the first
  // submit's ids and queues nothing (store::Store::SubmitOnce). Present
  // and empty is refused, not taken for no key.
  std::optional<std::string> idempotency_key;
  bool operator==(const SubmitRequest&) const = default;
};
struct SubmitReply {
  std::vector<std::string> ids;  // in request order
  // The idempotency key's submit was done before: these are its ids, and
  // nothing was queued now. Left off the wire when false.
  bool existing = false;
  // The request's idempotency key, echoed when the submit was keyed: a
  // supervisor from before keys ignores the field and echoes nothing, which
  // forge-ctl reports. Left off the wire when empty.
  std::string idempotency_key;
  bool operator==(const SubmitReply&) const = default;
};

// Staged submit, for a plan whose one `submit` request would exceed the 4 MiB
// message cap: `submit_begin` -> {upload}; `submit_chunk` {upload, tasks[]}
// (any number, each under the cap) -> {upload, staged}; `submit_commit`
// {upload} -> SubmitReply, all staged tasks in one transaction (all or
// nothing); `submit_abort` {upload}. Staged tasks live only in the
// supervisor's memory; see docs/protocol.md for the limits and expiry.
struct SubmitChunkRequest {
  std::string upload;
  std::vector<SubmitTask> tasks;
  bool operator==(const SubmitChunkRequest&) const = default;
};
struct UploadRequest {  // submit_commit, submit_abort
  std::string upload;
  std::optional<std::string> idempotency_key;  // submit_commit, as SubmitRequest's
  bool operator==(const UploadRequest&) const = default;
};
struct UploadReply {  // submit_begin, submit_chunk, submit_abort
  std::string upload;
  int64_t staged = 0;  // tasks staged so far
  bool operator==(const UploadReply&) const = default;
};

struct IdRequest {  // show, cancel, retry, approve
  std::string id;
  bool operator==(const IdRequest&) const = default;
};

struct ListRequest {
  std::optional<TaskState> state;
  int limit = 0;  // 0: all
  bool operator==(const ListRequest&) const = default;
};

struct EventsRequest {
  int64_t since = 0;  // events with seq > since
  std::string task_id;
  std::string kind;
  int limit = 1000;
  // The newest `limit` events of the rest (still oldest first), not the
  // oldest: `events --limit N` without --since, as `tail -n N` (session 34).
  // A supervisor from before ignores it and answers the oldest.
  bool newest = false;
  int64_t before = 0;  // events with seq < before; 0: no bound
  bool operator==(const EventsRequest&) const = default;
};

// ---- replies ----
struct PauseReason {
  std::string kind;      // operator | circuit | rate_limit | budget | shutdown
  std::string reason;    // one line for humans
  int64_t until_ms = 0;  // wall ms, 0 = until resumed
  bool operator==(const PauseReason&) const = default;
};

struct ChildStatus {
  std::string role;  // worker | critic
  int64_t pid = 0;
  std::string state;  // starting | idle | busy | stopping | degraded
  std::string task_id;
  int64_t attempt_id = 0;
  int attempt_n = 0;
  int64_t heartbeat_age_ms = 0;
  int64_t busy_since_ms = 0;  // wall ms when the current job started, 0 idle
  int restarts = 0;
  bool operator==(const ChildStatus&) const = default;
};

struct LastFailure {
  std::string task_id;
  int n = 0;
  std::string outcome;
  std::string error;
  int64_t at_ms = 0;
  bool operator==(const LastFailure&) const = default;
};

// The maintenance pass as this supervisor has seen it since it started
// (the events keep the full history: `events --kind maintenance.`).
struct MaintenanceStatus {
  int64_t running_since_ms = 0;  // wall; 0: no pass in flight
  int64_t last_job_id = 0;       // 0: no pass has ended since the start
  std::string last_outcome{};    // finished | failed
  int64_t last_at_ms = 0;        // wall, when it ended
  int64_t removed = 0;           // workspaces removed (absent ones not counted)
  int64_t logs_deleted = 0;
  std::vector<std::string> errors{};  // failed: why; finished: what it could not do
  int64_t next_at_ms = 0;             // wall, when the next pass is due; 0: disabled or running
  bool operator==(const MaintenanceStatus&) const = default;
};

struct StatusReply {
  int64_t pid = 0;
  std::string version;
  std::string state_dir;
  int64_t started_at_ms = 0;
  int64_t uptime_ms = 0;
  bool paused = false;
  std::vector<PauseReason> pause_reasons;
  std::vector<ChildStatus> children;
  std::map<std::string, int64_t> queue;  // every state name -> count
  double cost_today_usd = 0;
  std::optional<LastFailure> last_failure;
  bool degraded = false;
  std::optional<MaintenanceStatus> maintenance;  // live only (not offline)
  bool operator==(const StatusReply&) const = default;
};

// The most events a `show` reply's timeline carries, oldest first (to
// bound the reply's size): a longer timeline is cut, and a reader that
// needs later events asks `events`.
inline constexpr int kShowTimelineMax = 1000;

struct ShowReply {
  TaskInfo task;
  std::vector<AttemptInfo> attempts;
  // The task's newest kShowTimelineMax events, oldest first; how many
  // earlier ones that leaves out (session 34: it was the first ones, and
  // nothing said so).
  std::vector<EventInfo> timeline;
  int64_t timeline_omitted = 0;
  // Why a blocked or cancelled task is in its state: the reason of the
  // event that moved it there ("attempts exhausted (6 of 6)", "cancelled by
  // operator"); empty otherwise.
  std::string state_reason;
  bool operator==(const ShowReply&) const = default;
};

struct ListReply {
  std::vector<TaskInfo> tasks;
  // Why each blocked or cancelled task of `tasks` is so, by id: ShowReply's
  // state_reason; no entry when it is "". On the wire, each such task
  // object's "state_reason" (session 35; a supervisor from before sends none).
  std::map<std::string, std::string> state_reasons;
  bool operator==(const ListReply&) const = default;
};

struct ChangeReply {  // cancel, retry, approve
  std::string id;
  std::string previous_state;
  std::string state;
  std::string message;  // what changed, one line
  bool operator==(const ChangeReply&) const = default;
};

struct EventsReply {
  std::vector<EventInfo> events;
  int64_t last_seq = 0;
  bool operator==(const EventsReply&) const = default;
};

void to_json(json& j, const SubmitRequest& v);
void to_json(json& j, const SubmitReply& v);
void to_json(json& j, const SubmitChunkRequest& v);
void to_json(json& j, const UploadRequest& v);
void to_json(json& j, const UploadReply& v);
void to_json(json& j, const IdRequest& v);
void to_json(json& j, const ListRequest& v);
void to_json(json& j, const EventsRequest& v);
void to_json(json& j, const PauseReason& v);
void to_json(json& j, const ChildStatus& v);
void to_json(json& j, const LastFailure& v);
void to_json(json& j, const MaintenanceStatus& v);
void to_json(json& j, const StatusReply& v);
// show JSON: the task's fields, with "attempts" the ledger array (contract),
// "attempts_used" the count, and "timeline" the events.
void to_json(json& j, const ShowReply& v);
void to_json(json& j, const ListReply& v);
void to_json(json& j, const ChangeReply& v);
void to_json(json& j, const EventsReply& v);

void ReadValue(const json& j, SubmitRequest& v);
void ReadValue(const json& j, SubmitReply& v);
void ReadValue(const json& j, SubmitChunkRequest& v);
void ReadValue(const json& j, UploadRequest& v);
void ReadValue(const json& j, UploadReply& v);
void ReadValue(const json& j, IdRequest& v);
void ReadValue(const json& j, ListRequest& v);
void ReadValue(const json& j, EventsRequest& v);
void ReadValue(const json& j, PauseReason& v);
void ReadValue(const json& j, ChildStatus& v);
void ReadValue(const json& j, LastFailure& v);
void ReadValue(const json& j, MaintenanceStatus& v);
void ReadValue(const json& j, StatusReply& v);
void ReadValue(const json& j, ShowReply& v);
void ReadValue(const json& j, ListReply& v);
void ReadValue(const json& j, ChangeReply& v);
void ReadValue(const json& j, EventsReply& v);

// Reads a typed request/reply from a JSON object; FieldErrors become kDecode/kInvalid.
template <typename T>
forge::Result<T> ReadAs(const json& j);

// Reply envelopes.
std::string EncodeOk(const json& body);  // {"ok":true, ...body}
std::string EncodeError(const forge::Error& error);
// Parses a reply: the body on ok:true, the typed Error on ok:false.
forge::Result<json> DecodeReply(std::string_view bytes);

// ---- what an operator's view of a task may show ----
// Secret env values (common/redact.h) replaced, and every text that could
// echo one (brief, errors, event payloads) scrubbed of them and of
// `config_secrets` (the supervisor's own agent env). The same whether the
// view comes from the supervisor or, when none runs, from the database.
// secrets_out: the values scrubbed, for more text of the same task.
void RedactForOperator(TaskInfo& task, const std::vector<std::string>& config_secrets,
                       std::vector<std::string>* secrets_out = nullptr);
void RedactForOperator(ShowReply& show, const std::vector<std::string>& config_secrets);
void RedactForOperator(ListReply& list, const std::vector<std::string>& config_secrets);
// A task's env as submitted (before redaction), for the events of that task.
using TaskEnvLookup =
    std::function<forge::Result<std::map<std::string, std::string>>(const std::string& task_id)>;
// Each event's payload scrubbed of `config_secrets` and, for a task's event,
// of that task's env secrets: an agent's error or a check's output may echo
// one, as show's timeline already redacts. `env_of` is asked once a task; a
// task it does not find (kNotFound) has none, any other error is returned.
forge::Status RedactForOperator(EventsReply& events, const std::vector<std::string>& config_secrets,
                                const TaskEnvLookup& env_of);
// `config_secrets` and task_id's env secrets (none for a task env_of does
// not find), to scrub a text about that task; `what` names it in an error.
forge::Result<std::vector<std::string>> TaskSecrets(const std::string& task_id,
                                                    const std::vector<std::string>& config_secrets,
                                                    const TaskEnvLookup& env_of,
                                                    std::string_view what);
// status's last failure: its error may quote a failed check's command,
// which may quote a secret of its task's env. Never fails: status is read
// most when the database is in trouble, so an error whose task's env
// cannot be read is not shown ("[not shown: ...]") and status still answers.
void RedactForOperator(std::optional<LastFailure>& failure,
                       const std::vector<std::string>& config_secrets, const TaskEnvLookup& env_of);
// Every string (and key) in `value` scrubbed of `secrets`; numbers and the
// structure stay as they are. (Redacting the dumped text and parsing it
// again broke on a secret that is also a number's digits: MAX_TOKENS=4096
// made "tokens_out":4096 unparsable, and the parse threw.)
void RedactJson(json& value, const std::vector<std::string>& secrets);

}  // namespace forge::proto
