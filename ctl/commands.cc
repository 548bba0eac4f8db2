#include "ctl/commands.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "common/capped_log.h"
#include "common/duration.h"
#include "common/fd.h"
#include "common/git.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/utf8.h"
#include "ctl/plan.h"
#include "proto/control.h"
#include "proto/json_fields.h"
#include "proto/messages.h"
#include "supervisor/config/yaml_reader.h"
#include "supervisor/store/store.h"
#include "supervisor/store/submit_check.h"

namespace forge::ctl {

using proto::json;

int Fail(Env& env, const Error& error) {
  *env.err << "forge-ctl: " << error.message << "\n";
  return error.code == ErrorCode::kUnavailable ? kExitNoSupervisor : kExitRejected;
}

int Usage(Env& env, const std::string& message) {
  *env.err << "forge-ctl: " << message << "\n";
  return kExitUsage;
}

Error NoSupervisorNorDatabase(const std::string& state_dir, const Error& open_error) {
  if (open_error.code != ErrorCode::kNotFound) return open_error;
  return MakeError(ErrorCode::kUnavailable, "supervisor not running and " + open_error.message +
                                                "; start it with: " + StartCommand(state_dir));
}

namespace {

// Invalid UTF-8 (agent output, payloads) is replaced rather than thrown on.
std::string Dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}
void PrintJson(Env& env, const json& j) {
  *env.out << Dump(j, 2) << "\n";
}

// Exit 2 naming an argument that is not UTF-8, which no request can carry
// (common/utf8.h); kExitOk when it is UTF-8.
int CheckArgument(Env& env, std::string_view text, const std::string& what) {
  Status utf8 = CheckUtf8(text, what);
  return utf8.ok() ? kExitOk : Usage(env, utf8.error().message);
}

Error NotRunning(const std::string& state_dir) {
  return MakeError(ErrorCode::kUnavailable, "supervisor not running for " + state_dir +
                                                " (start it with: " + StartCommand(state_dir) +
                                                ")");
}

// A request that got no answer (timed out, or the connection broke).
bool Unanswered(const Error& error) {
  return error.code == ErrorCode::kTimeout || error.code == ErrorCode::kUnavailable;
}

// What a change request that got no answer is: the supervisor stopped
// meanwhile (its lock is free) is not running (exit 3), whether or not it
// did what was asked before it went; one that still holds the lock did not
// answer (exit 1, as the error says).
Error AfterNoAnswer(Env& env, const std::string& cmd, const Error& error) {
  if (!Unanswered(error) || SupervisorPid(env.state_dir)) return error;
  return MakeError(
      ErrorCode::kUnavailable,
      "supervisor not running for " + env.state_dir + ": it stopped before answering '" + cmd +
          "' (" + env.style.ctl +
          " events shows whether it was done); start it with: " + StartCommand(env.state_dir));
}

}  // namespace

Result<std::unique_ptr<ControlClient>> RequireSupervisor(Env& env, int64_t timeout_ms) {
  if (!SupervisorPid(env.state_dir)) return NotRunning(env.state_dir);
  return ControlClient::Connect(env.state_dir, timeout_ms > 0 ? timeout_ms : env.timeout_ms);
}

namespace {
// The live source, falling back to the database (read-only, with a notice)
// when the supervisor holds the lock but does not answer: a hung supervisor
// is exactly when the operator most needs to see the state.
class FallbackSource final : public Source {
 public:
  FallbackSource(Env& env, std::unique_ptr<Source> live) : env_(env), live_(std::move(live)) {}
  // Fallen back while the lock is still held: not answering. Gone since
  // (it stopped between the lock check and the request): not running.
  Reach reach() const override {
    if (!offline_) return Reach::kLive;
    return SupervisorPid(env_.state_dir) ? Reach::kUnanswered : Reach::kOffline;
  }
  Result<proto::StatusReply> Status() override {
    auto status = Try([](Source& s) { return s.Status(); });
    // The database knows no pid: the lock's holder is the one not answering.
    if (status.ok() && offline_) status->pid = SupervisorPid(env_.state_dir).value_or(0);
    return status;
  }
  Result<proto::ListReply> List(const proto::ListRequest& r) override {
    return Try([&](Source& s) { return s.List(r); });
  }
  Result<proto::ShowReply> Show(const std::string& id) override {
    return Try([&](Source& s) { return s.Show(id); });
  }
  Result<proto::EventsReply> Events(const proto::EventsRequest& r) override {
    return Try([&](Source& s) { return s.Events(r); });
  }

 private:
  template <typename F>
  auto Try(F&& call) -> decltype(call(std::declval<Source&>())) {
    if (!offline_) {
      auto result = call(*live_);
      if (result.ok() || (result.error().code != ErrorCode::kTimeout &&
                          result.error().code != ErrorCode::kUnavailable)) {
        return result;
      }
      auto store = OpenStoreReadOnly(env_.state_dir);
      if (!store.ok()) return result;
      *env_.err << "forge-ctl: " << result.error().message << "; showing the database as of now\n";
      offline_ = MakeOfflineSource(std::move(store).value(), env_.state_dir, env_.clock);
    }
    return call(*offline_);
  }

  Env& env_;
  std::unique_ptr<Source> live_;
  std::unique_ptr<Source> offline_;
};
}  // namespace

Result<std::unique_ptr<Source>> OpenReadSource(Env& env) {
  if (SupervisorPid(env.state_dir)) {
    FORGE_ASSIGN_OR_RETURN(auto client, ControlClient::Connect(env.state_dir, env.timeout_ms));
    return std::unique_ptr<Source>(
        std::make_unique<FallbackSource>(env, MakeLiveSource(std::move(client))));
  }
  auto store = OpenStoreReadOnly(env.state_dir);
  if (!store.ok()) return NoSupervisorNorDatabase(env.state_dir, store.error());
  *env.err << "forge-ctl: supervisor not running; showing the database as of now (start it "
              "with: "
           << StartCommand(env.state_dir) << ")\n";
  return MakeOfflineSource(std::move(store).value(), env.state_dir, env.clock);
}

// ---------------------------------------------------------------- status

int CmdStatus(Env& env) {
  auto source = OpenReadSource(env);
  if (!source.ok()) return Fail(env, source.error());
  auto status = (*source)->Status();
  if (!status.ok()) return Fail(env, status.error());
  const Reach reach = (*source)->reach();
  if (env.json) {
    json j = *status;
    j["running"] = reach != Reach::kOffline;  // a supervisor holds the lock
    j["answering"] = reach == Reach::kLive;
    PrintJson(env, j);
  } else {
    *env.out << RenderStatus(*status, reach, env.clock->WallMs(), env.style);
  }
  return kExitOk;
}

// ---------------------------------------------------------------- submit

Result<proto::SubmitTask> BuildSubmitTask(const SubmitArgs& args) {
  auto invalid = [](std::string m) { return MakeError(ErrorCode::kInvalid, std::move(m)); };
  if (args.title.empty()) return invalid("--title is required (or give --plan FILE)");
  // Everything below travels as JSON, which carries only UTF-8 (common/utf8.h).
  std::vector<std::pair<std::string, const std::string*>> texts = {
      {"--title", &args.title}, {"--brief", &args.brief}, {"--repo", &args.repo},
      {"--base", &args.base},   {"--agent", &args.agent}, {"--model", &args.model}};
  for (const auto& check : args.verify) texts.emplace_back("--verify", &check);
  for (const auto& dep : args.depends_on) texts.emplace_back("--depends-on", &dep);
  for (const auto& kv : args.env) texts.emplace_back("--env", &kv);
  for (const auto& [flag, text] : texts) FORGE_RETURN_IF_ERROR(CheckUtf8(*text, flag));
  auto blank = [](const std::string& text) {
    return text.find_first_not_of(" \t\n\r") == std::string::npos;
  };
  if (blank(args.title)) return invalid("--title '" + args.title + "' is blank");
  for (const auto& dep : args.depends_on) {
    if (blank(dep)) return invalid("--depends-on '" + dep + "': a task id must not be blank");
  }
  if (!args.brief.empty() && !args.brief_file.empty()) {
    return invalid("--brief and --brief-file are mutually exclusive");
  }
  proto::SubmitTask task;
  task.title = args.title;
  task.brief = args.brief;
  if (!args.brief_file.empty()) {
    auto text = ReadInputFile(args.brief_file, kMaxBriefFileBytes);  // as a plan's brief_file
    if (!text.ok())
      return invalid("--brief-file '" + args.brief_file + "': " + text.error().message);
    task.brief = std::move(text).value();
    if (task.brief.empty()) return invalid("--brief-file '" + args.brief_file + "' is empty");
    if (size_t at = FindInvalidUtf8(task.brief); at != std::string::npos) {
      return invalid("--brief-file '" + ShowBytes(args.brief_file) + "': not UTF-8 (" +
                     DescribeInvalidUtf8(task.brief, at) + "); save it as UTF-8");
    }
    // The store refuses a NUL in any of a task's text (store/submit_check.h).
    if (size_t at = task.brief.find('\0'); at != std::string::npos) {
      return invalid("--brief-file '" + ShowBytes(args.brief_file) + "': contains a NUL byte (" +
                     DescribeInvalidUtf8(task.brief, at) + ")");
    }
  }
  if (size_t size = store::EncodedBriefSize(task.brief); size > store::kMaxBriefBytes) {
    std::string flag =
        args.brief_file.empty() ? "--brief" : "--brief-file '" + args.brief_file + "'";
    return invalid(flag + ": " + std::to_string(size) + " bytes as sent, more than the " +
                   std::to_string(store::kMaxBriefBytes) + " a brief may be");
  }
  if (task.brief.empty()) task.brief = args.title;  // a one-line task is its own brief
  task.kind = args.expand ? "expand" : "work";
  task.repo = args.repo;
  task.base = args.base;
  if (!task.base.empty() && task.repo.empty()) return invalid("--base needs --repo");
  for (const auto& check : args.verify) {
    // `sh -c ''` exits 0: an empty check (an unset "$TEST_CMD") would pass.
    if (blank(check)) {
      return invalid("--verify '" + check + "': a check must not be empty");
    }
  }
  task.verify = args.verify;
  task.depends_on = args.depends_on;
  task.priority = args.priority.value_or(0);
  if (args.max_attempts) {
    if (*args.max_attempts < 1) {
      return invalid("--max-attempts must be at least 1, got " +
                     std::to_string(*args.max_attempts));
    }
    task.max_attempts = args.max_attempts;
  }
  task.needs_approval = args.needs_approval;
  task.allow_empty = args.allow_empty;
  for (const auto& kv : args.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalid("--env '" + kv + "': expected NAME=VALUE");
    }
    std::string name = kv.substr(0, eq);
    if (!IsEnvName(name)) {  // as a plan's env is checked
      return invalid("--env '" + kv + "': '" + name + "' is not a valid variable name");
    }
    task.env[name] = kv.substr(eq + 1);
  }
  if (!args.agent.empty() && !proto::IsAgentProfile(args.agent)) {
    return invalid("--agent '" + args.agent + "': expected " + proto::AgentProfileChoices());
  }
  task.agent = args.agent;
  task.model = args.model;
  return task;
}

namespace {
bool HasTaskFlags(const SubmitArgs& a) {
  return !a.title.empty() || !a.brief.empty() || !a.brief_file.empty() || !a.repo.empty() ||
         !a.base.empty() || !a.verify.empty() || !a.depends_on.empty() || a.priority ||
         a.max_attempts || a.needs_approval || a.allow_empty || !a.env.empty() ||
         !a.agent.empty() || !a.model.empty() || a.expand;
}

// What the supervisor says of a dependency on no task (store.cc, InsertBatch),
// paired with what forge-ctl says instead: the flag or the plan line. Only
// the store can tell that a task id that looks valid names no task.
using UnknownDependencies = std::vector<std::pair<std::string, std::string>>;

UnknownDependencies NameUnknownDependencies(const std::vector<proto::SubmitTask>& tasks,
                                            const std::vector<PlanDependency>& in_plan, bool plan) {
  UnknownDependencies out;
  auto refusal = [&](size_t task, const std::string& dep) {
    return store::TaskLabel(tasks, task) + " depends on unknown task '" + dep + "'";
  };
  if (!plan) {
    for (const auto& dep : tasks.at(0).depends_on) {
      out.emplace_back(refusal(0, dep), "--depends-on '" + ShowBytes(dep) + "': no such task");
    }
    return out;
  }
  for (const PlanDependency& d : in_plan) {
    const std::string& dep = tasks.at(d.task).depends_on.at(d.item);
    out.emplace_back(refusal(d.task, dep), d.where + ": key 'tasks[" + std::to_string(d.task) +
                                               "].depends_on[" + std::to_string(d.item) + "]': '" +
                                               ShowBytes(dep) + "': no such task");
  }
  return out;
}
}  // namespace

namespace {
// A submit request up to this size goes in one message; above it the tasks
// are staged in chunks (the supervisor refuses messages over 4 MiB). The
// margin leaves room for the envelope.
constexpr size_t kSingleSubmitBytes = proto::kMaxMessageBytes - (64u << 10);
constexpr size_t kChunkBytes = 2u << 20;

// submit_begin, submit_chunk..., submit_commit: still one transaction on the
// supervisor's side. Any refusal aborts the upload (best effort: it expires
// anyway) and is returned as is. Only the commit inserts the tasks, so only
// it waits commit_timeout_ms; the other steps wait timeout_ms.
Result<json> SubmitStaged(ControlClient& client, std::vector<proto::SubmitTask> tasks,
                          const std::optional<std::string>& idempotency_key, int64_t timeout_ms,
                          int64_t commit_timeout_ms) {
  client.set_timeout_ms(timeout_ms);
  FORGE_ASSIGN_OR_RETURN(json begun, client.Call("submit_begin"));
  FORGE_ASSIGN_OR_RETURN(auto upload, ReadReply<proto::UploadReply>(begun, "submit_begin"));
  proto::UploadRequest id;
  id.upload = upload.upload;
  auto abort = [&](const Error& e) -> Result<json> {
    // A supervisor that did not answer a chunk would not answer the abort
    // either: asking waited a second timeout for nothing.
    if (!Unanswered(e)) (void)client.Call("submit_abort", json(id));
    return e;
  };
  for (auto& chunk : ChunkTasks(std::move(tasks), kChunkBytes)) {
    proto::SubmitChunkRequest part;
    part.upload = upload.upload;
    part.tasks = std::move(chunk);
    auto sent = client.Call("submit_chunk", json(part));
    if (!sent.ok()) return abort(sent.error());
  }
  id.idempotency_key = idempotency_key;
  client.set_timeout_ms(commit_timeout_ms);
  return client.Call("submit_commit", json(id));
}

// The supervisor checks a key too (any client); here the flag is named.
int CheckIdempotencyKey(Env& env, const std::string& key) {
  if (int rc = CheckArgument(env, key, "--idempotency-key"); rc != kExitOk) return rc;
  Status valid = store::CheckIdempotencyKey(key, "--idempotency-key");
  return valid.ok() ? kExitOk : Usage(env, valid.error().message);
}
}  // namespace

int CmdSubmit(Env& env, const SubmitArgs& args) {
  const std::string key = args.idempotency_key.value_or("");
  if (args.idempotency_key) {
    if (int rc = CheckIdempotencyKey(env, key); rc != kExitOk) return rc;
  }
  std::vector<proto::SubmitTask> tasks;
  std::vector<PlanDependency> in_plan;
  if (!args.plan.empty()) {
    if (HasTaskFlags(args)) return Usage(env, "--plan cannot be combined with task flags");
    auto plan = LoadPlan(args.plan, &in_plan);
    if (!plan.ok()) return Usage(env, plan.error().message);
    if (plan->empty()) return Usage(env, "--plan " + args.plan + ": the plan has no tasks");
    tasks = std::move(plan).value();
  } else {
    auto task = BuildSubmitTask(args);
    if (!task.ok()) return Usage(env, task.error().message);
    tasks.push_back(std::move(task).value());
    // What the supervisor would refuse, refused here (exit 2), as a plan's is.
    if (Status valid = store::CheckBatch(tasks); !valid.ok()) {
      return Usage(env, valid.error().message);
    }
  }
  // forge-ctl runs on the machine the workers do: a repo that is not a git
  // repository or a base that names no commit is refused now, with the
  // other validation errors, rather than blocked at dispatch.
  // A check is three git runs, and a plan's tasks mostly share one repo
  // (`repo: .` in each of 100,000 tasks), so each distinct (repo, base) is
  // checked once. The result is kept, not just that the pair was seen, so a
  // task reusing a pair gets that pair's answer, under its own label.
  std::map<std::pair<std::string, std::string>, Status> checks;
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto& t = tasks[i];
    if (t.repo.empty()) continue;
    t.repo = AbsolutePath(t.repo);
    auto [check, first] = checks.try_emplace({t.repo, t.base});
    if (first) check->second = CheckRepoAndBase(env.git, t.repo, t.base);
    const Status& checked = check->second;
    if (!checked.ok()) {
      std::string message = checked.error().message;
      if (message.find("base ref") == std::string::npos) {
        message += " (base ref '" + (t.base.empty() ? std::string("HEAD") : t.base) + "')";
      }
      if (!args.plan.empty()) message = store::TaskLabel(tasks, i) + ": " + message;
      if (checked.error().code == ErrorCode::kInvalid) return Usage(env, message);
      // git was cut short (timed out, killed): not the input's fault, and a later submit may pass.
      // Exit 1, not Fail's 3 for kUnavailable: the supervisor is not what is missing.
      *env.err << "forge-ctl: " << message << "\n";
      return kExitRejected;
    }
  }
  const UnknownDependencies unknown = NameUnknownDependencies(tasks, in_plan, !args.plan.empty());
  // The store inserts every task in one transaction, which takes time in
  // proportion: a timeout sized for one task would report a failure for a
  // submit that then succeeds. Whether it goes in one message or staged.
  const int64_t timeout_ms = env.timeout_ms + static_cast<int64_t>(tasks.size());
  auto client = RequireSupervisor(env, timeout_ms);
  if (!client.ok()) return Fail(env, client.error());
  if (args.idempotency_key) {
    // A supervisor from before keys would queue the tasks without one, and
    // a retry after no answer would queue them again: refused before.
    auto db = OpenStoreReadOnly(env.state_dir);
    if (db.ok() && (*db)->SchemaVersion() < store::kFirstSchemaWithSubmitKeys) {
      return Fail(env, MakeError(ErrorCode::kConflict,
                                 "--idempotency-key: the running supervisor predates idempotency "
                                 "keys (its database is at schema " +
                                     std::to_string((*db)->SchemaVersion()) +
                                     "); restart it to use them. Nothing was submitted"));
    }
  }
  json request;
  proto::SubmitRequest submit;
  submit.tasks = std::move(tasks);
  submit.idempotency_key = args.idempotency_key;
  request = submit;
  Result<json> body = json();
  if (proto::EncodeControlRequest("submit", request).size() <= kSingleSubmitBytes) {
    body = (*client)->Call("submit", request);
  } else {
    request = json();
    body = SubmitStaged(**client, std::move(submit.tasks), args.idempotency_key, env.timeout_ms,
                        timeout_ms);
  }
  // What the store refuses as invalid is the input's fault, as the checks
  // above (exit 2): a dependency on no task, named by its flag or plan line.
  if (!body.ok() && body.error().code == ErrorCode::kInvalid) {
    for (const auto& [refusal, named] : unknown) {
      if (body.error().message == refusal) return Usage(env, named);
    }
    return Usage(env, (args.plan.empty() ? "" : args.plan + ": ") + body.error().message);
  }
  if (!body.ok()) {
    Error e = AfterNoAnswer(env, "submit", body.error());
    if (!key.empty() && Unanswered(body.error())) {
      e.message += "; the same submit with the same --idempotency-key cannot queue it twice";
    } else if (Unanswered(body.error()) && SupervisorPid(env.state_dir)) {
      // Queued or not, nobody can tell from here (one that stopped says to
      // read the events): a blind retry may queue the tasks twice, which a
      // key would have prevented.
      e.message +=
          "; it may have been queued: look (" + env.style.ctl +
          " ls) before submitting again, and give submits an --idempotency-key so that a retry "
          "cannot queue twice";
    }
    return Fail(env, e);
  }
  auto reply = ReadReply<proto::SubmitReply>(*body, "submit");
  if (!reply.ok()) return Fail(env, reply.error());
  if (reply->existing && !env.json) {
    *env.err << "forge-ctl: idempotency key '" << ShowBytes(key)
             << "' was submitted before: its task ids, nothing queued now\n";
  }
  if (args.idempotency_key && !reply->existing && reply->idempotency_key != key) {
    // Queued, so exit 0 with the ids; but a retry would queue them again.
    *env.err << "forge-ctl: warning: the supervisor ignored --idempotency-key (it runs a forge "
                "from before keys: restart it); these tasks were queued without the key, and "
                "a retry would queue them again\n";
  }
  if (env.json) {
    json out = args.plan.empty() && reply->ids.size() == 1 ? json{{"id", reply->ids[0]}}
                                                           : json{{"ids", reply->ids}};
    if (reply->existing) out["existing"] = true;
    PrintJson(env, out);
  } else {
    for (const auto& id : reply->ids) *env.out << id << "\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------- ls / show

int CmdList(Env& env, const ListArgs& args) {
  proto::ListRequest request;
  if (!args.state.empty()) {
    request.state = proto::ParseState(args.state);
    if (!request.state) {
      std::string names;
      for (auto s : proto::AllStates())
        names += (names.empty() ? "" : ", ") + std::string(proto::StateName(s));
      return Usage(env, "--state '" + ShowBytes(args.state) + "': expected one of " + names);
    }
  }
  if (args.limit < 0) return Usage(env, "--limit must not be negative");
  request.limit = args.limit;
  auto source = OpenReadSource(env);
  if (!source.ok()) return Fail(env, source.error());
  auto listed = (*source)->List(request);
  if (!listed.ok()) return Fail(env, listed.error());
  if (env.json) {
    // Each task object with its state_reason, as show --json has it ("" but
    // for a blocked or cancelled task).
    json list = json::array();
    for (const auto& t : listed->tasks) {
      json task = t;
      auto reason = listed->state_reasons.find(t.id);
      task["state_reason"] = reason != listed->state_reasons.end() ? reason->second : "";
      list.push_back(std::move(task));
    }
    PrintJson(env, list);
  } else {
    *env.out << RenderTaskList(listed->tasks, env.clock->WallMs(), env.style);
  }
  return kExitOk;
}

int CmdShow(Env& env, const std::string& id) {
  if (int rc = CheckArgument(env, id, "task id"); rc != kExitOk) return rc;
  auto source = OpenReadSource(env);
  if (!source.ok()) return Fail(env, source.error());
  auto show = (*source)->Show(id);
  if (!show.ok()) return Fail(env, show.error());
  if (env.json) {
    PrintJson(env, json(*show));
    return kExitOk;
  }
  // Why a pending task still waits: each dependency's state now.
  std::map<std::string, std::string> dep_states;
  if (show->task.state == proto::TaskState::kPending) {
    for (const auto& dep : show->task.depends_on) {
      auto d = (*source)->Show(dep);
      if (d.ok()) dep_states[dep] = std::string(proto::StateName(d->task.state));
    }
  }
  *env.out << RenderShow(*show, env.clock->WallMs(), env.style, dep_states);
  return kExitOk;
}

// ---------------------------------------------------------------- wait

namespace {
bool Stopped(const Env& env) {
  return env.stop && env.stop();
}

// The blocked or cancelled task (id, state) a pending task waits on, from
// the task.waiting events of its timeline and that task's state now (it may
// have been retried since); nullopt when none of them is stuck now. `seen`
// keeps the states read in one look at the tasks: many tasks of a plan
// name the same one.
Result<std::optional<std::pair<std::string, std::string>>> StuckDependency(
    Source& source, const std::string& id, const std::vector<proto::EventInfo>& timeline,
    int64_t omitted, std::map<std::string, std::optional<proto::TaskState>>& seen) {
  std::set<std::string> named;
  auto read = [&](const std::vector<proto::EventInfo>& events) {
    for (const auto& e : events) {
      if (e.kind != "task.waiting") continue;
      auto dep = e.payload.find("dependency");
      if (dep != e.payload.end() && dep->is_string()) named.insert(dep->get<std::string>());
    }
  };
  read(timeline);
  if (omitted > 0 || timeline.size() >= static_cast<size_t>(proto::kShowTimelineMax)) {
    // show cut the timeline (its first events, or before session 34 its
    // last): all the task.waiting events, from the log.
    proto::EventsRequest request;
    request.task_id = id;
    request.kind = "task.waiting";
    for (;;) {
      FORGE_ASSIGN_OR_RETURN(auto page, source.Events(request));
      read(page.events);
      if (page.events.empty() || page.events.size() < static_cast<size_t>(request.limit)) break;
      request.since = page.events.back().seq;
    }
  }
  for (const auto& dep : named) {
    auto state = seen.find(dep);
    if (state == seen.end()) {
      auto show = source.Show(dep);
      if (!show.ok() && show.error().code != ErrorCode::kNotFound) return show.error();
      state = seen.emplace(dep, show.ok() ? std::optional(show->task.state) : std::nullopt).first;
    }
    if (state->second == proto::TaskState::kBlocked ||
        state->second == proto::TaskState::kCancelled) {
      return std::optional(std::pair(dep, std::string(proto::StateName(*state->second))));
    }
  }
  return std::optional<std::pair<std::string, std::string>>();
}
}  // namespace

int CmdWait(Env& env, const std::vector<std::string>& ids, std::optional<int64_t> timeout_ms) {
  if (ids.empty()) return Usage(env, "wait needs at least one task id");
  for (const auto& id : ids) {
    if (int rc = CheckArgument(env, id, "task id"); rc != kExitOk) return rc;
  }
  auto client = RequireSupervisor(env);
  if (!client.ok()) return Fail(env, client.error());
  // A supervisor that stops answering does not end the wait: the database
  // shows the tasks as far as it got, and what it does once it answers.
  auto source = std::make_unique<FallbackSource>(env, MakeLiveSource(std::move(client).value()));
  const bool has_deadline = timeout_ms.has_value();
  const int64_t deadline = env.clock->MonotonicMs() + timeout_ms.value_or(0);

  // Each task's state and the seq of the last of its events applied to it.
  // After the first look (show), one query per turn reads the task events
  // of the whole log since `since`: a `task.<state>` event's "to" moves its
  // task on, any other event naming a task sends it to `show` again. Asking
  // per task instead cost the supervisor a request per task per turn, which
  // for a plan of 2,000 tasks was more CPU than running them (bench/README.md).
  // `since` starts at the log's end read before the first look: what came
  // before is in what show says, what comes after is read from the log (an
  // event show already counted is skipped by its seq).
  std::map<std::string, proto::TaskState> states;
  std::map<std::string, int64_t> cursor;
  std::set<std::string> dirty(ids.begin(), ids.end());
  std::set<std::string> from_events;  // state last set by an event, not by show
  // A pending task that waits on a blocked or cancelled task (its timeline's
  // task.waiting names it): it ends only when an operator retries that one.
  struct Stuck {
    std::string id;
    std::string state;
  };
  std::map<std::string, Stuck> stuck;
  // Why a blocked or cancelled task is so, as show said it (its state_reason).
  std::map<std::string, std::string> reasons;
  auto ended = [](proto::TaskState s) {
    return proto::IsSettled(s) && s != proto::TaskState::kDone;
  };
  proto::EventsRequest end_of_log;
  end_of_log.since = std::numeric_limits<int64_t>::max();
  end_of_log.limit = 1;
  auto probe = source->Events(end_of_log);
  if (!probe.ok()) {
    if (!SupervisorPid(env.state_dir)) return Fail(env, NotRunning(env.state_dir));
    return Fail(env, probe.error());
  }
  int64_t since = probe->last_seq;
  for (;;) {
    std::map<std::string, std::optional<proto::TaskState>> seen;  // this look's dependencies
    for (const auto& id : dirty) {
      auto show = source->Show(id);
      if (!show.ok()) {
        if (!SupervisorPid(env.state_dir)) return Fail(env, NotRunning(env.state_dir));
        return Fail(env, show.error());
      }
      states[id] = show->task.state;
      reasons[id] = show->state_reason;
      from_events.erase(id);
      stuck.erase(id);
      int64_t& last = cursor[id];  // 0 when the timeline is empty
      for (const auto& e : show->timeline) last = std::max(last, e.seq);
      if (show->task.state != proto::TaskState::kPending) continue;
      auto on = StuckDependency(*source, id, show->timeline, show->timeline_omitted, seen);
      if (!on.ok()) return Fail(env, on.error());
      if (*on) stuck[id] = Stuck{(*on)->first, (*on)->second};
    }
    dirty.clear();
    bool all_done = true;
    std::string failed;
    for (const auto& id : ids) {
      auto s = states[id];
      if (s != proto::TaskState::kDone) all_done = false;
      if ((ended(s) || stuck.count(id) > 0) && failed.empty()) failed = id;
    }
    // done is final; blocked and cancelled can be retried, so before an exit
    // each task read so from the log (perhaps retried since) is confirmed by
    // show, which also says why it is so.
    if (!failed.empty()) {
      for (const auto& id : ids) {
        if (from_events.count(id) > 0 && ended(states[id])) dirty.insert(id);
      }
      if (!dirty.empty()) continue;
    }
    auto report = [&] {
      if (env.json) {
        json list = json::array();
        for (const auto& id : ids) {
          json task{{"id", id},
                    {"state", std::string(proto::StateName(states[id]))},
                    {"state_reason", ended(states[id]) ? reasons[id] : ""}};
          if (auto on = stuck.find(id); on != stuck.end()) {
            task["waits_on"] = {{"id", on->second.id}, {"state", on->second.state}};
          }
          list.push_back(std::move(task));
        }
        PrintJson(env, json{{"tasks", list}, {"timed_out", !all_done && failed.empty()}});
      } else {
        for (const auto& id : ids) {
          std::string s(proto::StateName(states[id]));
          *env.out << id << "  " << Paint(s, StateColor(s), env.style);
          if (auto on = stuck.find(id); on != stuck.end()) {
            *env.out << "  (waits on " << on->second.id << ", "
                     << Paint(on->second.state, StateColor(on->second.state), env.style)
                     << ": retry it)";
          } else if (ended(states[id]) && !reasons[id].empty()) {
            *env.out << "  (reason: " << OneLine(reasons[id]) << ")";
          }
          *env.out << "\n";
        }
      }
    };
    if (all_done) return report(), kExitOk;
    if (!failed.empty()) return report(), kExitRejected;
    // Read from the database now, and nobody left to move the tasks on.
    if (!source->live() && !SupervisorPid(env.state_dir)) {
      return Fail(env, NotRunning(env.state_dir));
    }
    if ((has_deadline && env.clock->MonotonicMs() >= deadline) || Stopped(env)) {
      report();
      *env.err << "forge-ctl: timed out waiting\n";
      return kExitTimeout;
    }
    proto::EventsRequest request;
    request.since = since;
    request.kind = "task.";
    auto events = source->Events(request);
    if (!events.ok()) {
      if (!SupervisorPid(env.state_dir)) return Fail(env, NotRunning(env.state_dir));
      return Fail(env, events.error());
    }
    for (const auto& e : events->events) {
      since = std::max(since, e.seq);
      auto seen = cursor.find(e.task_id);
      if (seen == cursor.end() || e.seq <= seen->second) continue;
      seen->second = e.seq;
      std::optional<proto::TaskState> to;
      auto field = e.payload.find("to");
      if (field != e.payload.end() && field->is_string()) {
        to = proto::ParseState(field->get<std::string>());
      }
      if (to && e.kind == "task." + field->get<std::string>()) {
        states[e.task_id] = *to;
        reasons.erase(e.task_id);  // show says it, if it is why wait ends
        from_events.insert(e.task_id);
        stuck.erase(e.task_id);
      } else {
        dirty.insert(e.task_id);
      }
    }
    if (events->events.empty() && dirty.empty()) {
      int64_t pause = env.poll_ms;
      if (has_deadline)
        pause = std::min(pause, std::max<int64_t>(0, deadline - env.clock->MonotonicMs()));
      WaitForChange(env.state_dir, pause);
    }
  }
}

// ---------------------------------------------------------------- changes

int CmdChange(Env& env, const std::string& cmd, const std::string& id, const std::string& reason) {
  if (int rc = CheckArgument(env, id, "task id"); rc != kExitOk) return rc;
  if (int rc = CheckArgument(env, reason, "--reason"); rc != kExitOk) return rc;
  // Blank would be recorded as the reason and show as none at all; empty is
  // the supervisor's default.
  if (!reason.empty() && reason.find_first_not_of(" \t\n\r") == std::string::npos) {
    return Usage(env, "--reason '" + ShowBytes(reason) + "' is blank");
  }
  auto client = RequireSupervisor(env);
  if (!client.ok()) return Fail(env, client.error());
  json args{{"id", id}};
  if (!reason.empty()) args["reason"] = reason;
  auto body = (*client)->Call(cmd, args);
  if (!body.ok()) return Fail(env, AfterNoAnswer(env, cmd, body.error()));
  auto change = ReadReply<proto::ChangeReply>(*body, cmd.c_str());
  if (!change.ok()) return Fail(env, change.error());
  if (env.json) {
    PrintJson(env, json(*change));
  } else {
    *env.out << RenderChange(*change, env.style) << "\n";
  }
  return kExitOk;
}

namespace {
Result<json> Control(Env& env, const std::string& cmd, const json& args) {
  FORGE_ASSIGN_OR_RETURN(auto client, RequireSupervisor(env));
  auto body = client->Call(cmd, args);
  if (!body.ok()) return AfterNoAnswer(env, cmd, body.error());
  return body;
}

// pause and resume answer with the supervisor's status: what is still pausing dispatch.
// Their replies' optional fields are read leniently (proto::LenientString):
// json's value() threw on a field of another type (a supervisor of another
// version), and the command ended as an "internal error" after the
// supervisor had done what it was asked.
std::string PauseSummary(const json& body) {
  auto status = ReadReply<proto::StatusReply>(body, "status");
  if (!status.ok() || status->pause_reasons.empty()) return "";
  std::string out;
  for (const auto& p : status->pause_reasons) {
    out += (out.empty() ? "" : "; ") + p.kind + (p.reason.empty() ? "" : ": " + p.reason);
  }
  return out;
}

int PrintReply(Env& env, const json& body, const std::string& line) {
  if (env.json) {
    PrintJson(env, body);
  } else {
    *env.out << line << "\n";
  }
  return kExitOk;
}
}  // namespace

int CmdPause(Env& env, const std::string& reason) {
  if (int rc = CheckArgument(env, reason, "--reason"); rc != kExitOk) return rc;
  json args = json::object();
  if (!reason.empty()) args["reason"] = reason;
  auto body = Control(env, "pause", args);
  if (!body.ok()) return Fail(env, body.error());
  std::string line = proto::LenientString(*body, "message");
  if (line.empty()) {
    line = "dispatch paused" + (reason.empty() ? "" : " (" + reason + ")") +
           "; running attempts continue; resume with: " + env.style.ctl + " resume";
  }
  return PrintReply(env, *body, line);
}

int CmdResume(Env& env) {
  auto body = Control(env, "resume", json::object());
  if (!body.ok()) return Fail(env, body.error());
  std::string line = proto::LenientString(*body, "message");
  const std::string still = PauseSummary(*body);
  auto lifted = body->find("lifted");
  if (!line.empty()) {
  } else if (lifted == body->end() || !lifted->is_array()) {
    // A supervisor from before session 34: it does not say what it lifted.
    line = still.empty() ? "dispatch resumed"
                         : "operator pause lifted; dispatch is still paused by " + still;
  } else {
    bool by_operator = false;
    std::vector<std::string> others;  // a circuit breaker closed, a rate-limit wait ended
    for (const auto& kind : *lifted) {
      if (!kind.is_string()) continue;
      if (kind == "operator") {
        by_operator = true;
      } else {
        others.push_back(kind.get<std::string>());
      }
    }
    if (by_operator && others.empty() && still.empty()) {
      line = "dispatch resumed";
    } else {
      line = by_operator ? "operator pause lifted" : "no operator pause to lift";
      for (size_t i = 0; i < others.size(); ++i) {
        line += (i ? ", " : "; lifted the ") + others[i];
      }
      if (!others.empty()) line += others.size() > 1 ? " pauses" : " pause";
      line += !still.empty()                   ? "; dispatch is still paused by " + still
              : by_operator || !others.empty() ? "; dispatch resumed"
                                               : "; dispatch was not paused";
    }
  }
  return PrintReply(env, *body, line);
}

namespace {
// Past any shutdown and kill grace the config allows; a bound for a reply's number.
constexpr int64_t kMaxStopWaitMs = 24LL * 3600 * 1000;
}  // namespace

int CmdStop(Env& env, const StopArgs& args) {
  std::optional<pid_t> pid = SupervisorPid(env.state_dir);
  auto client = RequireSupervisor(env);
  if (!client.ok()) return Fail(env, client.error());
  auto body = (*client)->Call("stop", json::object());
  if (!body.ok()) {
    if (!Unanswered(body.error()) || SupervisorPid(env.state_dir)) {
      return Fail(env, body.error());
    }
    // It exited before it answered: stopped, as asked.
    return PrintReply(env, json{{"stopped", true}}, "supervisor stopped");
  }
  if (args.no_wait) {
    std::string line = proto::LenientString(*body, "message");
    if (line.empty()) {
      line = "supervisor stopping: running attempts get the shutdown grace, then it exits";
    }
    return PrintReply(env, *body, line);
  }
  // The supervisor counts its deadline from when it answered (39999 ms):
  // waited for and printed in whole seconds ("45s", not "44999ms").
  const int64_t within_ms = proto::LenientInt(*body, "within_ms", 0);
  const int64_t rounded_ms =
      (std::clamp<int64_t>(within_ms, 0, kMaxStopWaitMs) + 999) / 1000 * 1000;
  const int64_t timeout_ms = args.timeout_ms.value_or(rounded_ms + kStopMarginMs);
  const int64_t start = env.clock->MonotonicMs();
  if (!env.json && timeout_ms > 0) {
    *env.err << "forge-ctl: supervisor stopping"
             << (pid ? " (pid " + std::to_string(*pid) + ")" : "") << "; waiting up to "
             << FormatDuration(Millis(timeout_ms)) << "\n";
  }
  // The lock is the supervisor's until its process ends: its release is the exit.
  while (SupervisorPid(env.state_dir)) {
    int64_t left = start + timeout_ms - env.clock->MonotonicMs();
    if (left <= 0) {
      *env.err << "forge-ctl: the supervisor" << (pid ? " (pid " + std::to_string(*pid) + ")" : "")
               << " is still stopping after " << FormatDuration(Millis(timeout_ms)) << "\n";
      return kExitTimeout;
    }
    WaitForChange(LockPath(env.state_dir), std::min<int64_t>(left, 100));
  }
  json out = *body;
  out["stopped"] = true;
  return PrintReply(env, out, "supervisor stopped");
}

// ---------------------------------------------------------------- events

void WaitForChange(const std::string& path, int64_t timeout_ms) {
  if (timeout_ms <= 0) return;
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (fd.valid()) {
    ::inotify_add_watch(fd.get(), path.c_str(),
                        IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE_SELF);
  }
  // Without inotify this is a plain pause of timeout_ms.
  pollfd p{fd.valid() ? fd.get() : -1, POLLIN, 0};
  ::poll(&p, 1, static_cast<int>(timeout_ms));
}

namespace {
// Events come from the supervisor while it runs and from the database
// read-only while it does not; a follower switches as the supervisor comes and goes.
// A supervisor that holds the lock but does not answer is read around: the
// database holds every event it committed, and the rest of the command reads
// there rather than wait out a timeout on each read.
class EventReader {
 public:
  explicit EventReader(Env& env) : env_(env) {}

  Result<proto::EventsReply> Read(const proto::EventsRequest& request) {
    bool running = !unanswered_ && SupervisorPid(env_.state_dir).has_value();
    if (!source_ || source_->live() != running) {
      FORGE_RETURN_IF_ERROR(Reopen(running));
    }
    auto reply = source_->Events(request);
    if (reply.ok() || !source_->live()) return reply;
    if (SupervisorPid(env_.state_dir)) {
      if (reply.error().code != ErrorCode::kTimeout &&
          reply.error().code != ErrorCode::kUnavailable) {
        return reply;
      }
      *env_.err << "forge-ctl: " << reply.error().message << "; reading the database\n";
      unanswered_ = noticed_ = true;
    }
    // Not answering, or it stopped between the check and the request.
    FORGE_RETURN_IF_ERROR(Reopen(false));
    return source_->Events(request);
  }

 private:
  Status Reopen(bool live) {
    source_.reset();
    if (live) {
      FORGE_ASSIGN_OR_RETURN(auto client, ControlClient::Connect(env_.state_dir, env_.timeout_ms));
      source_ = MakeLiveSource(std::move(client));
      return Status::Ok();
    }
    auto store = OpenStoreReadOnly(env_.state_dir);
    if (!store.ok()) {
      if (store.error().code == ErrorCode::kNotFound) {
        return MakeError(ErrorCode::kUnavailable,
                         "supervisor not running and " + store.error().message +
                             "; start it with: " + StartCommand(env_.state_dir));
      }
      return store.error();
    }
    if (!noticed_) {
      *env_.err << "forge-ctl: supervisor not running; reading the database (start it with: "
                << StartCommand(env_.state_dir) << ")\n";
      noticed_ = true;
    }
    source_ = MakeOfflineSource(std::move(store).value(), env_.state_dir, env_.clock);
    return Status::Ok();
  }

  Env& env_;
  std::unique_ptr<Source> source_;
  bool noticed_ = false;
  bool unanswered_ = false;
};
}  // namespace

int CmdEvents(Env& env, const EventsArgs& args) {
  if (args.since && *args.since < 0) return Usage(env, "--since must not be negative");
  if (args.limit < 0) return Usage(env, "--limit must not be negative");
  if (int rc = CheckArgument(env, args.task_id, "--task"); rc != kExitOk) return rc;
  if (int rc = CheckArgument(env, args.kind, "--kind"); rc != kExitOk) return rc;
  EventReader reader(env);
  int64_t since = args.since.value_or(0);
  auto print = [&](const proto::EventInfo& e) {
    if (env.json) {
      *env.out << Dump(json(e)) << "\n";
    } else {
      *env.out << RenderEventLine(e, env.style) << "\n";
    }
    since = std::max(since, e.seq);
  };
  constexpr int kPage = 1000;
  int limit = args.limit;  // of the events printed; 0: no bound
  if (limit > 0 && !args.since) {
    // The newest `limit`, oldest first, as tail -n: pages read backwards
    // from the log's end (session 34; it was the log's first events).
    std::vector<std::vector<proto::EventInfo>> pages;  // newest page first
    size_t got = 0;
    int64_t before = 0;
    while (got < static_cast<size_t>(limit)) {
      proto::EventsRequest request;
      request.task_id = args.task_id;
      request.kind = args.kind;
      request.newest = true;
      request.before = before;
      request.limit = static_cast<int>(std::min<size_t>(kPage, limit - got));
      auto reply = reader.Read(request);
      if (!reply.ok()) return Fail(env, reply.error());
      // A supervisor from before session 34 ignores `before` (and answers
      // the oldest events): never print a page twice.
      if (before > 0 && !reply->events.empty() && reply->events.back().seq >= before) break;
      got += reply->events.size();
      const bool last = reply->events.size() < static_cast<size_t>(request.limit);
      if (!reply->events.empty()) before = reply->events.front().seq;
      pages.push_back(std::move(reply->events));
      if (last) break;
    }
    for (auto page = pages.rbegin(); page != pages.rend(); ++page) {
      for (const auto& e : *page) print(e);
    }
    env.out->flush();
    if (!args.follow || Stopped(env)) return kExitOk;
    limit = 0;  // following: every new event, as tail -n N -f
    WaitForChange(env.state_dir, env.poll_ms);
  }
  int printed = 0;
  for (;;) {
    proto::EventsRequest request;
    request.since = since;
    request.task_id = args.task_id;
    request.kind = args.kind;
    request.limit = kPage;
    if (limit > 0) request.limit = std::min(kPage, limit - printed);
    auto reply = reader.Read(request);
    if (!reply.ok()) return Fail(env, reply.error());
    for (const auto& e : reply->events) {
      print(e);
      ++printed;
    }
    env.out->flush();
    if (limit > 0 && printed >= limit) return kExitOk;
    if (static_cast<int>(reply->events.size()) >= request.limit) continue;  // next page
    if (!args.follow || Stopped(env)) return kExitOk;
    WaitForChange(env.state_dir, env.poll_ms);
  }
}

// ---------------------------------------------------------------- logs

namespace {
// Attempt numbers with a log file (<n><suffix>), ascending.
std::vector<int> LoggedAttempts(const std::string& dir, std::string_view suffix) {
  std::vector<int> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) {
      continue;
    }
    std::string num(name.substr(0, name.size() - suffix.size()));
    if (num.find_first_not_of("0123456789") != std::string::npos) continue;
    // A number past int is no log of Forge's (attempts count from 1).
    if (num.empty() || num.size() > 9) continue;
    out.push_back(std::stoi(num));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// A log as `logs` prints it, a call at a time: what was added since. The
// file stays open, so when the worker's cap replaces it with its tail
// (worker/output_capture.h; the path then names another file) the old one
// is read to its end first, and the new one from after what its first line
// (common/capped_log.h) says it repeats: nothing printed twice or skipped.
// (Two cuts between two calls, 32 MiB of output in one wait, skip what the
// middle file had beyond the old one; the log itself has lost more.)
class LogReader {
 public:
  explicit LogReader(std::string path) : path_(std::move(path)) {}

  void CopyNew(std::ostream& out) {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return;
    if (!fd_.valid() || st.st_ino != ino_ || st.st_dev != dev_) {
      if (fd_.valid()) Drain(out);  // the file the cap replaced
      fd_.reset(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd_.valid()) return;
      struct stat opened {};
      if (::fstat(fd_.get(), &opened) != 0) return fd_.reset();
      ino_ = opened.st_ino;
      dev_ = opened.st_dev;
      offset_ = switched_ ? AfterRepeated() : 0;
      switched_ = true;
    } else if (st.st_size < offset_) {
      offset_ = 0;  // cut in place: read again from its start
    }
    Drain(out);
  }

 private:
  void Drain(std::ostream& out) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::pread(fd_.get(), buf, sizeof buf, offset_);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.write(buf, n);
      offset_ += n;
    }
    out.flush();
  }

  // Where the new file's text goes on from the old one's end: after its
  // marker line and the bytes it copied from the old file; its start when
  // it has no marker that says (another file, an older Forge's).
  off_t AfterRepeated() {
    char buf[512];
    ssize_t n = ::pread(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) return 0;
    std::string_view head(buf, static_cast<size_t>(n));
    size_t nl = head.find('\n');
    if (nl == std::string_view::npos) return 0;
    auto repeated = RepeatedAfterCappedLogMarker(head.substr(0, nl));
    return repeated ? static_cast<off_t>(nl + 1 + *repeated) : 0;
  }

  std::string path_;
  UniqueFd fd_;
  ino_t ino_ = 0;
  dev_t dev_ = 0;
  off_t offset_ = 0;
  bool switched_ = false;  // a file of this path was read before
};
}  // namespace

int CmdLogs(Env& env, const LogsArgs& args) {
  if (args.attempt && *args.attempt < 1) {
    return Usage(env, "--attempt must be at least 1, got " + std::to_string(*args.attempt));
  }
  // A followed log is streamed as written, not one JSON object: --json was
  // ignored there, and a script reading JSON got raw text.
  if (env.json && args.follow) {
    return Usage(env,
                 "--json does not go with --follow (the log is streamed as written); "
                 "leave out --json, or read the log whole with: logs ID --json");
  }
  if (int rc = CheckArgument(env, args.id, "task id"); rc != kExitOk) return rc;
  // The id names a directory under logs/: never one elsewhere.
  if (args.id.empty() || args.id == "." || args.id == ".." ||
      args.id.find('/') != std::string::npos) {
    return Usage(env, "task id '" + ShowBytes(args.id) +
                          "': not a task id (empty, '.', '..' or "
                          "with a '/')");
  }
  // As the other read-only commands: a state directory nothing ever ran in
  // (a typo, most likely) is exit 3, and --follow must not wait on it.
  if (!SupervisorPid(env.state_dir)) {
    auto store = OpenStoreReadOnly(env.state_dir);
    if (!store.ok()) return Fail(env, NoSupervisorNorDatabase(env.state_dir, store.error()));
    // As the other read-only commands say (docs/cli.md): --follow then
    // ends with the task's state as the database has it.
    *env.err << "forge-ctl: supervisor not running; showing the database as of now (start it "
                "with: "
             << StartCommand(env.state_dir) << ")\n";
  }
  const std::string dir = LogsDir(env.state_dir) + "/" + args.id;
  // The agent's output, or the review's: the same files but for the suffix.
  const std::string_view suffix = args.review ? ".review.log" : ".log";
  const std::string noun = args.review ? "review log" : "log";
  auto path_of = [&](int attempt) {
    return args.review ? ReviewLogPath(env.state_dir, args.id, attempt)
                       : AttemptLogPath(env.state_dir, args.id, attempt);
  };
  std::vector<int> logged = LoggedAttempts(dir, suffix);
  int n = args.attempt.value_or(0);
  if (n == 0 && !logged.empty()) n = logged.back();
  std::string path = n > 0 ? path_of(n) : "";
  if (path.empty() || ::access(path.c_str(), R_OK) != 0) {
    if (!args.follow) {
      std::string what =
          n > 0 ? "no " + noun + " for attempt " + std::to_string(n) + " of task " + args.id
                : "no " + noun + "s for task " + args.id;
      std::string started = args.review ? "has a review started?" : "has an attempt started?";
      return Fail(
          env, MakeError(ErrorCode::kNotFound, what + " (looked in " + dir + "; " + started + ")"));
    }
  }
  if (env.json && !args.follow) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    PrintJson(env,
              json{{"task_id", args.id}, {"attempt", n}, {"path", path}, {"text", text.str()}});
    return kExitOk;
  }
  LogReader log(path);
  if (!path.empty()) log.CopyNew(*env.out);
  if (!args.follow) return kExitOk;

  // Follow: like tail -F over the task's attempts (a new attempt's log is
  // followed when it appears, unless --attempt pinned one), until the task is
  // settled and its log drained, or until interrupted.
  int64_t next_state_check = 0;
  for (;;) {
    if (!args.attempt) {
      std::vector<int> now = LoggedAttempts(dir, suffix);
      if (!now.empty() && now.back() > n) {
        if (!path.empty()) log.CopyNew(*env.out);
        n = now.back();
        path = path_of(n);
        log = LogReader(path);
        std::string header =
            (args.review ? "==> review of attempt " : "==> attempt ") + std::to_string(n) + " <==";
        *env.out << Paint(header, Color::kBold, env.style) << "\n";
      }
    }
    if (!path.empty()) log.CopyNew(*env.out);
    if (Stopped(env)) return kExitOk;
    int64_t now_ms = env.clock->MonotonicMs();
    if (now_ms >= next_state_check) {
      next_state_check = now_ms + 1000;
      auto store = OpenStoreReadOnly(env.state_dir);
      if (store.ok()) {
        auto task = (*store)->GetTask(args.id);
        if (!task.ok() && task.error().code == ErrorCode::kNotFound) {
          return Fail(env, task.error());
        }
        if (task.ok() && proto::IsSettled(task->state)) {
          if (path.empty() || ::access(path.c_str(), R_OK) != 0) {
            // Settled without the log (cancelled before it ran, or the
            // attempt pinned never was): as without --follow.
            const std::string state(proto::StateName(task->state));
            std::string why = args.attempt
                                  ? "no " + noun + " for attempt " + std::to_string(*args.attempt) +
                                        " of task " + args.id + ": it is " + state
                                  : "no " + noun + "s for task " + args.id + ": it is " + state +
                                        " and no attempt wrote one";
            return Fail(env, MakeError(ErrorCode::kNotFound, why + " (looked in " + dir + ")"));
          }
          log.CopyNew(*env.out);
          return kExitOk;
        }
      }
    }
    WaitForChange(path.empty() || ::access(path.c_str(), F_OK) != 0 ? dir : path, env.poll_ms);
  }
}

}  // namespace forge::ctl
