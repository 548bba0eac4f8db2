#include "supervisor/control_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "common/redact.h"
#include "supervisor/guards.h"

namespace forge::supervisor {
namespace {

proto::ChangeReply ToReply(const std::string& id, const store::Change& change,
                           std::string message) {
  proto::ChangeReply r;
  r.id = id;
  r.previous_state = std::string(proto::StateName(change.previous));
  r.state = std::string(proto::StateName(change.current));
  r.message = std::move(message);
  return r;
}

// Absent or null: "". Of another type: refused, as the typed requests' fields
// are (a reason of ["x"] was dropped without a word).
Result<std::string> OptionalString(const json& args, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return std::string();
  if (!it->is_string()) {
    return MakeError(ErrorCode::kInvalid,
                     std::string("field '") + key + "' must be a string, got " + it->type_name());
  }
  return it->get<std::string>();
}

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ControlServer::ControlServer(store::Store& store, ControlBackend& backend,
                             std::function<int64_t()> monotonic_ms)
    : store_(store),
      backend_(backend),
      monotonic_ms_(monotonic_ms ? std::move(monotonic_ms) : std::function<int64_t()>(SteadyMs)) {}

std::string ControlServer::Handle(std::string_view bytes) {
  ++requests_;
  ExpireUploads();
  auto request = proto::DecodeControlRequest(bytes);
  if (!request.ok()) {
    ++malformed_;
    spdlog::warn("control: malformed request ({} bytes): {}", bytes.size(),
                 request.error().message);
    return proto::EncodeError(request.error());
  }
  Result<json> body = Dispatch(*request, bytes.size());
  if (!body.ok()) {
    if (body.error().code == ErrorCode::kDecode || body.error().code == ErrorCode::kInvalid) {
      ++malformed_;
    }
    spdlog::info("control: {} refused: {}", request->cmd, body.error().ToString());
    return proto::EncodeError(body.error());
  }
  return proto::EncodeOk(*body);
}

Result<json> ControlServer::Dispatch(const proto::ControlRequest& request, size_t request_bytes) {
  const std::string& cmd = request.cmd;
  const json& args = request.args;
  if (cmd == "status") {
    json status = Status();
    status["counters"] = backend_.Counters();
    status["counters"]["control_requests"] = requests_;
    status["counters"]["bad_control_requests"] = malformed_;
    return status;
  }
  if (cmd == "submit") return Submit(args);
  if (cmd == "submit_begin") return SubmitBegin();
  if (cmd == "submit_chunk") return SubmitChunk(args, request_bytes);
  if (cmd == "submit_commit") return SubmitCommit(args);
  if (cmd == "submit_abort") return SubmitAbort(args);
  if (cmd == "show") return Show(args);
  if (cmd == "ls") return List(args);
  if (cmd == "cancel") return Cancel(args);
  if (cmd == "retry") return Retry(args);
  if (cmd == "approve") return Approve(args);
  if (cmd == "events") return Events(args);
  if (cmd == "pause") {
    FORGE_ASSIGN_OR_RETURN(std::string reason, OptionalString(args, "reason"));
    backend_.Pause(reason);
    return json(Status());
  }
  if (cmd == "resume") {
    // "lifted": the pauses this resume ended, so that forge-ctl does not
    // report an operator pause lifted when there was none (session 34).
    const proto::StatusReply before = backend_.Status();
    backend_.Resume();
    const proto::StatusReply after = Status();
    json lifted = json::array();
    for (const auto& p : before.pause_reasons) {
      bool stays = std::any_of(after.pause_reasons.begin(), after.pause_reasons.end(),
                               [&](const proto::PauseReason& q) { return q.kind == p.kind; });
      if (!stays && !std::count(lifted.begin(), lifted.end(), json(p.kind))) {
        lifted.push_back(p.kind);
      }
    }
    json reply = after;
    reply["lifted"] = std::move(lifted);
    return reply;
  }
  if (cmd == "stop") {
    int64_t within_ms = backend_.Stop();
    return json{{"stopping", true}, {"within_ms", within_ms}};
  }
  return MakeError(ErrorCode::kInvalid,
                   "unknown command '" + cmd +
                       "' (expected status, submit, submit_begin, submit_chunk, submit_commit, "
                       "submit_abort, show, ls, cancel, retry, approve, pause, resume, stop, "
                       "events)");
}

Result<json> ControlServer::Submit(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::SubmitRequest>(args));
  if (request.tasks.empty()) return MakeError(ErrorCode::kInvalid, "field 'tasks' is empty");
  return SubmitTasks(request.tasks, request.idempotency_key);
}

Result<json> ControlServer::SubmitTasks(const std::vector<proto::SubmitTask>& tasks,
                                        const std::optional<std::string>& idempotency_key) {
  proto::SubmitReply reply;
  if (!idempotency_key) {
    FORGE_ASSIGN_OR_RETURN(reply.ids, store_.Submit(tasks));
  } else {
    // An empty key is refused there, not taken for none.
    FORGE_ASSIGN_OR_RETURN(auto keyed, store_.SubmitOnce(*idempotency_key, tasks));
    reply.ids = std::move(keyed.ids);
    reply.existing = keyed.existing;
    reply.idempotency_key = *idempotency_key;
    if (reply.existing) {
      spdlog::info(
          "control: submit with idempotency key '{}' was done before: {} task(s), "
          "nothing queued again",
          *idempotency_key, reply.ids.size());
      return json(reply);
    }
  }
  backend_.OnQueueChanged();
  return json(reply);
}

// ---- staged submit ----

void ControlServer::ExpireUploads() {
  int64_t now = monotonic_ms_();
  for (auto it = uploads_.begin(); it != uploads_.end();) {
    if (now - it->second.last_ms >= limits_.idle_ms) {
      spdlog::info("control: upload {} dropped after {} ms idle ({} tasks staged)", it->first,
                   now - it->second.last_ms, it->second.tasks.size());
      it = uploads_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<std::map<std::string, ControlServer::Upload>::iterator> ControlServer::FindUpload(
    const std::string& id) {
  auto it = uploads_.find(id);
  if (it == uploads_.end()) {
    return MakeError(ErrorCode::kNotFound,
                     "upload '" + id +
                         "' not found (committed, aborted, failed, or dropped after " +
                         std::to_string(limits_.idle_ms / 1000) + " s idle); submit_begin again");
  }
  return it;
}

Result<json> ControlServer::SubmitBegin() {
  if (uploads_.size() >= limits_.max_uploads) {
    return MakeError(ErrorCode::kBusy, std::to_string(uploads_.size()) +
                                           " staged submits are in progress (the limit); retry "
                                           "once one commits, aborts or expires");
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "u%016llx", static_cast<unsigned long long>(rng_()));
  Upload& u = uploads_[buf];
  u.last_ms = monotonic_ms_();
  proto::UploadReply reply;
  reply.upload = buf;
  return json(reply);
}

Result<json> ControlServer::SubmitChunk(const json& args, size_t request_bytes) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::SubmitChunkRequest>(args));
  FORGE_ASSIGN_OR_RETURN(auto it, FindUpload(request.upload));
  Upload& u = it->second;
  // Over a limit the whole upload is dropped: it could never be committed,
  // and keeping it would hold the memory until it expired.
  if (u.tasks.size() + request.tasks.size() > limits_.max_tasks ||
      u.bytes + static_cast<int64_t>(request_bytes) > limits_.max_bytes) {
    std::string what = "upload '" + request.upload + "' exceeds the limit of " +
                       std::to_string(limits_.max_tasks) + " tasks or " +
                       std::to_string(limits_.max_bytes >> 20) + " MiB; it is dropped";
    uploads_.erase(it);
    return MakeError(ErrorCode::kFull, what);
  }
  u.bytes += static_cast<int64_t>(request_bytes);
  u.last_ms = monotonic_ms_();
  for (auto& t : request.tasks) u.tasks.push_back(std::move(t));
  proto::UploadReply reply;
  reply.upload = request.upload;
  reply.staged = static_cast<int64_t>(u.tasks.size());
  return json(reply);
}

Result<json> ControlServer::SubmitCommit(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::UploadRequest>(args));
  FORGE_ASSIGN_OR_RETURN(auto it, FindUpload(request.upload));
  // Taken out first: whatever the store says, the upload is over (a failed
  // commit changed nothing; the client starts again).
  std::vector<proto::SubmitTask> tasks = std::move(it->second.tasks);
  uploads_.erase(it);
  if (tasks.empty()) {
    return MakeError(ErrorCode::kInvalid, "upload '" + request.upload + "' has no tasks");
  }
  return SubmitTasks(tasks, request.idempotency_key);
}

Result<json> ControlServer::SubmitAbort(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::UploadRequest>(args));
  FORGE_ASSIGN_OR_RETURN(auto it, FindUpload(request.upload));
  proto::UploadReply reply;
  reply.upload = request.upload;
  reply.staged = static_cast<int64_t>(it->second.tasks.size());
  uploads_.erase(it);
  return json(reply);
}

proto::StatusReply ControlServer::Status() {
  proto::StatusReply reply = backend_.Status();
  proto::RedactForOperator(reply.last_failure, backend_.ConfigSecrets(),
                           [&](const std::string& id) { return store_.TaskEnv(id); });
  return reply;
}

Result<json> ControlServer::Show(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  FORGE_ASSIGN_OR_RETURN(proto::ShowReply reply, store_.Show(request.id, proto::kShowTimelineMax));
  proto::RedactForOperator(reply, backend_.ConfigSecrets());
  return json(reply);
}

Result<json> ControlServer::List(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::ListRequest>(args));
  store::ListFilter filter;
  filter.state = request.state;
  filter.limit = request.limit;
  FORGE_ASSIGN_OR_RETURN(proto::ListReply reply, store_.List(filter));
  proto::RedactForOperator(reply, backend_.ConfigSecrets());
  return json(reply);
}

Result<json> ControlServer::Cancel(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  FORGE_ASSIGN_OR_RETURN(std::string reason, OptionalString(args, "reason"));
  FORGE_ASSIGN_OR_RETURN(
      auto change, store_.Cancel(request.id, reason.empty() ? "cancelled by operator" : reason));
  // Cancelled before: nothing changed and nothing is to be killed; the
  // reason stays the first cancel's.
  if (change.previous == change.current) {
    return json(ToReply(request.id, change, "already cancelled"));
  }
  backend_.OnCancelled(change);
  std::string message =
      change.open_attempt
          ? "cancelled; attempt " + std::to_string(change.open_attempt->n) + " is being killed"
          : "cancelled";
  return json(ToReply(request.id, change, message));
}

Result<json> ControlServer::Retry(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  // A task that has spent its budget would be blocked again at dispatch
  // without running (before, it ran and paid for one more attempt each
  // time): the operator is told now, and what to change. A task in another
  // state gets the store's refusal.
  if (const double budget = backend_.TaskBudgetUsd(); budget > 0) {
    FORGE_ASSIGN_OR_RETURN(proto::TaskInfo task, store_.GetTask(request.id));
    if ((task.state == proto::TaskState::kBlocked || task.state == proto::TaskState::kCancelled) &&
        task.cost_usd >= budget) {
      return MakeError(ErrorCode::kConflict,
                       "task " + request.id + " has spent " + FormatUsd(task.cost_usd) +
                           ", its budget.task_usd is " + FormatUsd(budget) +
                           ": a retry would not run it; raise budget.task_usd in the config "
                           "file and reload it (SIGHUP to the supervisor), then retry");
    }
  }
  FORGE_ASSIGN_OR_RETURN(auto change, store_.Retry(request.id));
  backend_.OnQueueChanged();
  std::string message = "requeued with its attempts reset";
  if (!change.stuck_on.empty()) {
    message += "; it waits on " + change.stuck_on + ", " +
               std::string(proto::StateName(change.stuck_on_state)) + ": retry that one too";
  }
  return json(ToReply(request.id, change, message));
}

Result<json> ControlServer::Approve(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  FORGE_ASSIGN_OR_RETURN(auto change, store_.Approve(request.id));
  backend_.OnQueueChanged();
  return json(ToReply(request.id, change, "approved"));
}

Result<json> ControlServer::Events(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::EventsRequest>(args));
  store::EventFilter filter;
  filter.since_seq = request.since;
  filter.task_id = request.task_id;
  filter.kind = request.kind;
  filter.limit = request.limit > 0 ? request.limit : 1000;
  filter.newest = request.newest;
  filter.before_seq = request.before;
  proto::EventsReply reply;
  FORGE_ASSIGN_OR_RETURN(reply.events, store_.Events(filter));
  FORGE_ASSIGN_OR_RETURN(reply.last_seq, store_.LastEventSeq());
  FORGE_RETURN_IF_ERROR(proto::RedactForOperator(
      reply, backend_.ConfigSecrets(), [&](const std::string& id) { return store_.TaskEnv(id); }));
  return json(reply);
}

}  // namespace forge::supervisor
