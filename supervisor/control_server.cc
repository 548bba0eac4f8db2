#include "supervisor/control_server.h"

#include <spdlog/spdlog.h>

#include "common/redact.h"

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

std::string OptionalString(const json& args, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace

std::string ControlServer::Handle(std::string_view bytes) {
  ++requests_;
  auto request = proto::DecodeControlRequest(bytes);
  if (!request.ok()) {
    ++malformed_;
    spdlog::warn("control: malformed request ({} bytes): {}", bytes.size(),
                 request.error().message);
    return proto::EncodeError(request.error());
  }
  Result<json> body = Dispatch(*request);
  if (!body.ok()) {
    if (body.error().code == ErrorCode::kDecode || body.error().code == ErrorCode::kInvalid) {
      ++malformed_;
    }
    spdlog::info("control: {} refused: {}", request->cmd, body.error().ToString());
    return proto::EncodeError(body.error());
  }
  return proto::EncodeOk(*body);
}

Result<json> ControlServer::Dispatch(const proto::ControlRequest& request) {
  const std::string& cmd = request.cmd;
  const json& args = request.args;
  if (cmd == "status") {
    json status = backend_.Status();
    status["counters"] = backend_.Counters();
    status["counters"]["control_requests"] = requests_;
    status["counters"]["bad_control_requests"] = malformed_;
    return status;
  }
  if (cmd == "submit") return Submit(args);
  if (cmd == "show") return Show(args);
  if (cmd == "ls") return List(args);
  if (cmd == "cancel") return Cancel(args);
  if (cmd == "retry") return Retry(args);
  if (cmd == "approve") return Approve(args);
  if (cmd == "events") return Events(args);
  if (cmd == "pause") {
    backend_.Pause(OptionalString(args, "reason"));
    return json(backend_.Status());
  }
  if (cmd == "resume") {
    backend_.Resume();
    return json(backend_.Status());
  }
  if (cmd == "stop") {
    backend_.Stop();
    return json{{"stopping", true}};
  }
  return MakeError(ErrorCode::kInvalid,
                   "unknown command '" + cmd +
                       "' (expected status, submit, show, ls, cancel, retry, approve, pause, "
                       "resume, stop, events)");
}

Result<json> ControlServer::Submit(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::SubmitRequest>(args));
  if (request.tasks.empty()) return MakeError(ErrorCode::kInvalid, "field 'tasks' is empty");
  FORGE_ASSIGN_OR_RETURN(auto ids, store_.Submit(request.tasks));
  backend_.OnQueueChanged();
  proto::SubmitReply reply;
  reply.ids = std::move(ids);
  return json(reply);
}

void ControlServer::Redact(proto::TaskInfo& task, std::vector<std::string>* secrets_out) {
  std::vector<std::string> secrets = backend_.ConfigSecrets();
  for (auto& s : SecretValues(task.env)) secrets.push_back(s);
  task.env = RedactEnv(task.env);
  task.brief = RedactText(task.brief, secrets);
  task.last_error = RedactText(task.last_error, secrets);
  if (secrets_out != nullptr) *secrets_out = std::move(secrets);
}

Result<json> ControlServer::Show(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  proto::ShowReply reply;
  FORGE_ASSIGN_OR_RETURN(reply.task, store_.GetTask(request.id));
  FORGE_ASSIGN_OR_RETURN(reply.attempts, store_.Attempts(request.id));
  store::EventFilter filter;
  filter.task_id = request.id;
  filter.limit = 1000;
  FORGE_ASSIGN_OR_RETURN(reply.timeline, store_.Events(filter));
  std::vector<std::string> secrets;
  Redact(reply.task, &secrets);
  for (auto& a : reply.attempts) a.error = RedactText(a.error, secrets);
  for (auto& e : reply.timeline) e.payload = json::parse(RedactText(e.payload.dump(), secrets));
  return json(reply);
}

Result<json> ControlServer::List(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::ListRequest>(args));
  store::ListFilter filter;
  filter.state = request.state;
  filter.limit = request.limit;
  proto::ListReply reply;
  FORGE_ASSIGN_OR_RETURN(reply.tasks, store_.ListTasks(filter));
  for (auto& t : reply.tasks) Redact(t);
  return json(reply);
}

Result<json> ControlServer::Cancel(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  std::string reason = OptionalString(args, "reason");
  FORGE_ASSIGN_OR_RETURN(
      auto change, store_.Cancel(request.id, reason.empty() ? "cancelled by operator" : reason));
  backend_.OnCancelled(change);
  std::string message =
      change.open_attempt
          ? "cancelled; attempt " + std::to_string(change.open_attempt->n) + " is being killed"
          : "cancelled";
  return json(ToReply(request.id, change, message));
}

Result<json> ControlServer::Retry(const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto request, proto::ReadAs<proto::IdRequest>(args));
  FORGE_ASSIGN_OR_RETURN(auto change, store_.Retry(request.id));
  backend_.OnQueueChanged();
  return json(ToReply(request.id, change, "requeued with its attempts reset"));
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
  proto::EventsReply reply;
  FORGE_ASSIGN_OR_RETURN(reply.events, store_.Events(filter));
  FORGE_ASSIGN_OR_RETURN(reply.last_seq, store_.LastEventSeq());
  std::vector<std::string> secrets = backend_.ConfigSecrets();
  if (!secrets.empty()) {
    for (auto& e : reply.events) e.payload = json::parse(RedactText(e.payload.dump(), secrets));
  }
  return json(reply);
}

}  // namespace forge::supervisor
