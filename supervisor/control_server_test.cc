#include "supervisor/control_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "proto/control.h"

namespace forge::supervisor {
namespace {

using ::testing::HasSubstr;

class FakeBackend : public ControlBackend {
 public:
  proto::StatusReply Status() override {
    proto::StatusReply s;
    s.pid = 42;
    s.paused = paused || budget;
    if (paused) s.pause_reasons.push_back({"operator", pause_reason, 0});
    if (budget) s.pause_reasons.push_back({"budget", "daily budget spent", 0});
    s.last_failure = last_failure;
    return s;
  }
  json Counters() override { return json{{"bad_child_messages", 7}}; }
  void OnQueueChanged() override { ++queue_changes; }
  void OnCancelled(const store::Change& change) override { cancelled.push_back(change); }
  void Pause(const std::string& reason) override {
    paused = true;
    pause_reason = reason;
  }
  void Resume() override { paused = false; }
  int64_t Stop() override {
    stopped = true;
    return 1234;
  }
  std::vector<std::string> ConfigSecrets() override { return {"config-secret-value"}; }
  double TaskBudgetUsd() override { return task_usd; }

  int queue_changes = 0;
  std::vector<store::Change> cancelled;
  bool paused = false;
  bool budget = false;  // a pause resume does not lift
  bool stopped = false;
  std::string pause_reason;
  double task_usd = 0;
  std::optional<proto::LastFailure> last_failure;
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-control-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store::StoreOptions o;
    o.db_path = dir_ + "/forge.db";
    auto s = store::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(*s);
    server_ = std::make_unique<ControlServer>(*store_, backend_, [this] { return now_ms_; });
  }
  void TearDown() override {
    server_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Result<json> Call(const std::string& cmd, json args = json::object()) {
    return proto::DecodeReply(server_->Handle(proto::EncodeControlRequest(cmd, std::move(args))));
  }
  std::string SubmitOne(json task) {
    auto r = Call("submit", json{{"tasks", json::array({task})}});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? (*r)["ids"][0].get<std::string>() : "";
  }

  std::string Begin() {
    auto r = Call("submit_begin");
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? (*r)["upload"].get<std::string>() : "";
  }
  int64_t TaskCount() {
    store::ListFilter all;
    auto tasks = store_->ListTasks(all);
    EXPECT_TRUE(tasks.ok());
    return tasks.ok() ? static_cast<int64_t>(tasks->size()) : -1;
  }

  int64_t now_ms_ = 1000;
  std::string dir_;
  std::unique_ptr<store::Store> store_;
  FakeBackend backend_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, MalformedRequestsGetErrorRepliesAndAreCounted) {
  auto r = proto::DecodeReply(server_->Handle("{nope"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kDecode);
  auto unknown = Call("explode");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(unknown.error().message, HasSubstr("unknown command 'explode'"));
  auto typed = Call("show", json{{"id", 3}});
  ASSERT_FALSE(typed.ok());
  EXPECT_THAT(typed.error().message, HasSubstr("'id'"));
  auto empty = Call("submit", json{{"tasks", json::array()}});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(server_->malformed(), 4);
  EXPECT_EQ(server_->requests(), 4);
  auto missing = Call("show", json{{"id", "t-none"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(server_->malformed(), 4);  // a well-formed request for a missing task is not malformed
}

// Any client's submit is checked as forge-ctl checks its own: a profile
// no worker runs, env names that are no variable's and text with a NUL
// byte (cut short where it is passed on) are refused as invalid, naming the
// task and the field, and nothing is queued.
TEST_F(ControlServerTest, SubmitRefusesWhatForgeCtlWouldNotSend) {
  const std::pair<std::string, std::string> cases[] = {
      {R"({"v":1,"cmd":"submit","tasks":[{"title":"t","agent":"bogus"}]})",
       "task #1: agent must be claude, codex or command, got 'bogus'"},
      {R"({"v":1,"cmd":"submit","tasks":[{"id":"e","title":"t","env":{"":"x","A=B":"y"}}]})",
       "task 'e': env name '' is not a variable name (letters, digits and _, not led by a "
       "digit)"},
      {R"({"v":1,"cmd":"submit","tasks":[{"id":"e","title":"t","env":{"A=B":"y"}}]})",
       "task 'e': env name 'A=B' is not a variable name (letters, digits and _, not led by a "
       "digit)"},
      {R"({"v":1,"cmd":"submit","tasks":[{"id":"a","title":"t","verify":["true\u0000; false"]}]})",
       "task 'a': verify[0] contains a NUL byte"},
      {R"({"v":1,"cmd":"submit","tasks":[{"id":"a","title":"t","env":{"A":"x\u0000y"}}]})",
       "task 'a': env 'A' contains a NUL byte"},
  };
  for (const auto& [request, message] : cases) {
    auto r = proto::DecodeReply(server_->Handle(request));
    ASSERT_FALSE(r.ok()) << request;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid) << request;
    EXPECT_EQ(r.error().message, message);
  }
  EXPECT_EQ(TaskCount(), 0);
  EXPECT_EQ(backend_.queue_changes, 0);
}

TEST_F(ControlServerTest, StatusCarriesCounters) {
  auto s = Call("status");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)["pid"], 42);
  EXPECT_EQ((*s)["counters"]["bad_child_messages"], 7);
  EXPECT_EQ((*s)["counters"]["control_requests"], 1);
}

// The last failure's error quotes a failed check's command, which quotes
// its task's env secret (and the config's): status, pause and resume
// answer it redacted.
TEST_F(ControlServerTest, StatusRedactsTheLastFailuresTaskSecret) {
  std::string id =
      SubmitOne(json{{"title", "t"}, {"brief", "b"}, {"env", {{"API_TOKEN", "tok-12345678"}}}});
  backend_.last_failure = proto::LastFailure{
      id, 1, "rejected", "check 'echo tok-12345678 config-secret-value' failed", 1};
  for (const char* cmd : {"status", "pause", "resume"}) {
    auto s = Call(cmd);
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_EQ((*s)["last_failure"]["error"], "check 'echo [redacted] [redacted]' failed") << cmd;
  }
}

// status is read most when the database is in trouble: a last failure
// whose task's env cannot be read is not shown, and status still answers.
TEST(RedactLastFailure, AnErrorWhoseTasksEnvCannotBeReadIsNotShown) {
  std::optional<proto::LastFailure> failure =
      proto::LastFailure{"t1", 1, "rejected", "check 'echo k-secret-1' failed", 1};
  auto failing = [](const std::string&) -> Result<std::map<std::string, std::string>> {
    return MakeError(ErrorCode::kBusy, "database is locked");
  };
  proto::RedactForOperator(failure, {}, failing);
  ASSERT_TRUE(failure);
  EXPECT_EQ(failure->error,
            "[not shown: reading task t1's env to redact its last failure: database is locked]");
  std::optional<proto::LastFailure> none;
  proto::RedactForOperator(none, {}, failing);
  EXPECT_FALSE(none);
}

TEST_F(ControlServerTest, SubmitShowAndListRedactSecrets) {
  std::string id = SubmitOne(json{{"title", "title has tok-12345678"},
                                  {"brief", "use config-secret-value and tok-12345678"},
                                  {"verify", {"echo tok-12345678"}},
                                  {"env", {{"API_TOKEN", "tok-12345678"}, {"MODE", "x"}}}});
  EXPECT_EQ(backend_.queue_changes, 1);
  auto show = Call("show", json{{"id", id}});
  ASSERT_TRUE(show.ok()) << show.error().message;
  std::string dumped = show->dump();
  EXPECT_EQ(dumped.find("tok-12345678"), std::string::npos) << dumped;
  EXPECT_EQ(dumped.find("config-secret-value"), std::string::npos) << dumped;
  EXPECT_EQ((*show)["env"]["MODE"], "x");
  EXPECT_EQ((*show)["env"]["API_TOKEN"], "[redacted]");
  EXPECT_EQ((*show)["title"], "title has [redacted]");
  EXPECT_EQ((*show)["verify"][0], "echo [redacted]");
  auto ls = Call("ls");
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ(ls->dump().find("tok-12345678"), std::string::npos) << ls->dump();
  ASSERT_EQ((*ls)["tasks"].size(), 1u);
}

// An attempt stored before the critic redacted its checks' output: show
// redacts the tails and findings as it does the error.
TEST_F(ControlServerTest, ShowRedactsAChecksTailAndAFinding) {
  std::string id =
      SubmitOne(json{{"title", "t"}, {"brief", "b"}, {"env", {{"API_TOKEN", "tok-12345678"}}}});
  store::Lease lease;
  lease.worker_pid = 1;
  auto a = store_->LeaseAttempt(id, lease);
  ASSERT_TRUE(a.ok());
  store::Close close;
  close.outcome = proto::Outcome::kRejected;
  close.next_state = proto::TaskState::kBlocked;
  close.verdict = "reject";
  proto::CheckResult check;
  check.name = "make test TOKEN=tok-12345678";
  check.output_tail = "token was tok-12345678\n";
  close.checks = {check};
  close.findings = {{"sev1", "security", "a.c", 1, "prints tok-12345678"}};
  ASSERT_TRUE(store_->CloseAttempt(a->id, close).ok());
  auto show = Call("show", json{{"id", id}});
  ASSERT_TRUE(show.ok()) << show.error().message;
  EXPECT_EQ(show->dump().find("tok-12345678"), std::string::npos) << show->dump();
  EXPECT_EQ((*show)["attempts"][0]["checks"][0]["output_tail"], "token was [redacted]\n");
  EXPECT_EQ((*show)["attempts"][0]["checks"][0]["name"], "make test TOKEN=[redacted]");
  EXPECT_EQ((*show)["attempts"][0]["findings"][0]["message"], "prints [redacted]");
}

// A secret that is also a number's digits (a numeric PIN_PASSWORD): the
// numbers in the timeline stay numbers, and show answers.
TEST_F(ControlServerTest, ASecretThatIsANumbersDigitsLeavesTheNumbersAlone) {
  std::string id =
      SubmitOne(json{{"title", "t"}, {"brief", "b"}, {"env", {{"PIN_PASSWORD", "4096"}}}});
  store::Lease lease;
  lease.worker_pid = 1;
  auto a = store_->LeaseAttempt(id, lease);
  ASSERT_TRUE(a.ok());
  store::AgentReport r;
  r.outcome = proto::Outcome::kFailed;
  r.tokens_out = 4096;
  r.error = "asked for 4096 tokens";
  ASSERT_TRUE(store_->RecordAgentResult(a->id, r).ok());
  auto show = Call("show", json{{"id", id}});
  ASSERT_TRUE(show.ok()) << show.error().message;
  bool seen = false;
  for (const auto& e : (*show)["timeline"]) {
    if (e["kind"] != "attempt.result") continue;
    seen = true;
    EXPECT_EQ(e["payload"]["tokens_out"], 4096);
    EXPECT_EQ(e["payload"]["error"], "asked for [redacted] tokens");
  }
  EXPECT_TRUE(seen) << show->dump();
}

// An agent's error that echoes a task's env secret: events redact it as
// show's timeline does (before, only the config's secrets), and a task's
// event that names no secret, or a supervisor-wide event, is left as it is.
TEST_F(ControlServerTest, EventsRedactATasksEnvSecrets) {
  std::string id =
      SubmitOne(json{{"title", "t"}, {"brief", "b"}, {"env", {{"API_TOKEN", "tok-12345678"}}}});
  std::string other = SubmitOne(json{{"title", "u"}, {"brief", "tok-12345678 is not u's"}});
  store::Lease lease;
  lease.worker_pid = 1;
  auto a = store_->LeaseAttempt(id, lease);
  ASSERT_TRUE(a.ok());
  store::AgentReport r;
  r.outcome = proto::Outcome::kFailed;
  r.error = "401 for token tok-12345678 and config-secret-value";
  ASSERT_TRUE(store_->RecordAgentResult(a->id, r).ok());
  auto events = Call("events");
  ASSERT_TRUE(events.ok()) << events.error().message;
  bool result_seen = false, other_seen = false;
  for (const auto& e : (*events)["events"]) {
    if (e["kind"] == "attempt.result") {
      result_seen = true;
      EXPECT_EQ(e["payload"]["error"], "401 for token [redacted] and [redacted]");
    }
    if (e["task_id"] == other && e["kind"] == "task.submitted") {
      other_seen = true;
      EXPECT_EQ(e["payload"]["brief"], "tok-12345678 is not u's") << e.dump();
    }
  }
  EXPECT_TRUE(result_seen) << events->dump();
  EXPECT_TRUE(other_seen) << events->dump();
}

TEST(RedactEvents, AskEachTasksEnvOnceAndReturnAnErrorReadingOne) {
  proto::EventsReply reply;
  reply.events = {{1, 0, "attempt.result", "t1", 1, {{"error", "k-secret-1 failed"}}},
                  {2, 0, "attempt.result", "t1", 2, {{"error", "k-secret-1 again"}}},
                  {3, 0, "task.submitted", "t2", 0, {{"brief", "k-secret-1"}}},
                  {4, 0, "supervisor.started", "", 0, {{"note", "cfg-secret"}}}};
  std::map<std::string, int> asked;
  auto env_of = [&](const std::string& id) -> Result<std::map<std::string, std::string>> {
    ++asked[id];
    if (id == "t2") return MakeError(ErrorCode::kNotFound, "no task t2");
    return std::map<std::string, std::string>{{"API_KEY", "k-secret-1"}};
  };
  ASSERT_TRUE(proto::RedactForOperator(reply, {"cfg-secret"}, env_of).ok());
  EXPECT_EQ(reply.events[0].payload["error"], "[redacted] failed");
  EXPECT_EQ(reply.events[1].payload["error"], "[redacted] again");
  EXPECT_EQ(reply.events[2].payload["brief"], "k-secret-1");  // t2's env names no secret
  EXPECT_EQ(reply.events[3].payload["note"], "[redacted]");
  EXPECT_EQ(asked, (std::map<std::string, int>{{"t1", 1}, {"t2", 1}}));

  auto failing = [](const std::string&) -> Result<std::map<std::string, std::string>> {
    return MakeError(ErrorCode::kDb, "disk I/O error");
  };
  auto status = proto::RedactForOperator(reply, {}, failing);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::kDb);
  EXPECT_EQ(status.error().message, "reading task t1's env to redact its events: disk I/O error");
}

TEST(RedactJson, ScrubsStringsAndKeysNotNumbers) {
  json j = {{"a", "x sekret y"}, {"sekret", 1}, {"list", {"sekret", 7777, {{"k", "sekret"}}}}};
  proto::RedactJson(j, {"sekret", "7777"});
  EXPECT_EQ(j, json({{"a", "x [redacted] y"},
                     {"[redacted]", 1},
                     {"list", {"[redacted]", 7777, {{"k", "[redacted]"}}}}}));
  // The store's task ids are never secrets: t7777 still names its task.
  json ids = {{"dependency", "t7777"}, {"reason", "t7777 is cancelled"}};
  proto::RedactJson(ids, {"7777"});
  EXPECT_EQ(ids["dependency"], "t7777");
  EXPECT_EQ(ids["reason"], "t[redacted] is cancelled");
}

TEST_F(ControlServerTest, StagedSubmitCommitsAllChunksInOneTransaction) {
  std::string up = Begin();
  ASSERT_FALSE(up.empty());
  auto c1 = Call("submit_chunk",
                 json{{"upload", up}, {"tasks", json::array({json{{"id", "a"}, {"title", "A"}}})}});
  ASSERT_TRUE(c1.ok()) << c1.error().message;
  EXPECT_EQ((*c1)["staged"], 1);
  // depends_on names a local id from an earlier chunk.
  auto c2 =
      Call("submit_chunk",
           json{{"upload", up},
                {"tasks", json::array({json{{"id", "b"}, {"title", "B"}, {"depends_on", {"a"}}},
                                       json{{"title", "C"}}})}});
  ASSERT_TRUE(c2.ok()) << c2.error().message;
  EXPECT_EQ((*c2)["staged"], 3);
  EXPECT_EQ(TaskCount(), 0);  // nothing is in the queue before the commit
  EXPECT_EQ(backend_.queue_changes, 0);
  auto done = Call("submit_commit", json{{"upload", up}});
  ASSERT_TRUE(done.ok()) << done.error().message;
  ASSERT_EQ((*done)["ids"].size(), 3u);
  EXPECT_EQ(TaskCount(), 3);
  EXPECT_EQ(backend_.queue_changes, 1);
  auto b = store_->GetTask((*done)["ids"][1].get<std::string>());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->depends_on, std::vector<std::string>{(*done)["ids"][0].get<std::string>()});
  EXPECT_EQ(server_->uploads(), 0u);
  // The upload is over: a second commit or chunk names it as not found.
  auto again = Call("submit_commit", json{{"upload", up}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(again.error().message, HasSubstr("upload '" + up + "' not found"));
}

// A keyed submit, one message or staged: the key is echoed; the same key
// and tasks again (here the staged retry of a one-message submit) return
// the first ids, queue nothing and wake nothing; the key with other tasks
// is invalid; a key present but empty is refused, not taken for none.
TEST_F(ControlServerTest, AKeyedSubmitIsDoneOnceWhicheverWayItComes) {
  const json tasks = json::array({json{{"title", "A"}}, json{{"title", "B"}}});
  auto first = Call("submit", json{{"tasks", tasks}, {"idempotency_key", "k1"}});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ((*first)["idempotency_key"], "k1");
  EXPECT_FALSE(first->contains("existing"));
  EXPECT_EQ(backend_.queue_changes, 1);

  std::string up = Begin();
  ASSERT_TRUE(Call("submit_chunk", json{{"upload", up}, {"tasks", tasks}}).ok());
  auto staged = Call("submit_commit", json{{"upload", up}, {"idempotency_key", "k1"}});
  ASSERT_TRUE(staged.ok()) << staged.error().message;
  EXPECT_EQ((*staged)["ids"], (*first)["ids"]);
  EXPECT_EQ((*staged)["existing"], true);
  EXPECT_EQ((*staged)["idempotency_key"], "k1");
  EXPECT_EQ(TaskCount(), 2);
  EXPECT_EQ(backend_.queue_changes, 1) << "nothing new to dispatch";

  up = Begin();
  ASSERT_TRUE(Call("submit_chunk", json{{"upload", up}, {"tasks", json::array({tasks[0]})}}).ok());
  auto other = Call("submit_commit", json{{"upload", up}, {"idempotency_key", "k1"}});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(other.error().message, HasSubstr("idempotency key 'k1' was used for a different"));

  auto empty = Call("submit", json{{"tasks", tasks}, {"idempotency_key", ""}});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(empty.error().message, "idempotency key is empty");
  EXPECT_EQ(TaskCount(), 2);

  auto plain = Call("submit", json{{"tasks", tasks}});
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_FALSE(plain->contains("idempotency_key"));
  EXPECT_EQ(TaskCount(), 4) << "without a key a submit again queues again";
}

TEST_F(ControlServerTest, StagedSubmitIsAllOrNothing) {
  std::string up = Begin();
  ASSERT_TRUE(
      Call("submit_chunk",
           json{{"upload", up}, {"tasks", json::array({json{{"id", "a"}, {"title", "A"}}})}})
          .ok());
  ASSERT_TRUE(Call("submit_chunk",
                   json{{"upload", up},
                        {"tasks", json::array({json{{"title", "B"}, {"depends_on", {"nope"}}}})}})
                  .ok());
  auto r = Call("submit_commit", json{{"upload", up}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("nope"));
  EXPECT_EQ(TaskCount(), 0);
  EXPECT_EQ(server_->uploads(), 0u);  // a failed commit ends the upload too

  // A chunk with a bad task is refused naming the field; the upload stays.
  up = Begin();
  auto bad =
      Call("submit_chunk", json{{"upload", up}, {"tasks", json::array({json{{"title", 5}}})}});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.error().message, HasSubstr("title"));
  EXPECT_EQ(server_->uploads(), 1u);
  auto aborted = Call("submit_abort", json{{"upload", up}});
  ASSERT_TRUE(aborted.ok()) << aborted.error().message;
  EXPECT_EQ(server_->uploads(), 0u);
  EXPECT_EQ(Call("submit_chunk", json{{"upload", up}, {"tasks", json::array()}}).error().code,
            ErrorCode::kNotFound);
  auto empty = Begin();
  auto nothing = Call("submit_commit", json{{"upload", empty}});
  ASSERT_FALSE(nothing.ok());
  EXPECT_THAT(nothing.error().message, HasSubstr("has no tasks"));
  EXPECT_EQ(TaskCount(), 0);
  // Missing fields are named.
  auto no_id = Call("submit_commit");
  ASSERT_FALSE(no_id.ok());
  EXPECT_THAT(no_id.error().message, HasSubstr("upload"));
}

TEST_F(ControlServerTest, StagedSubmitsAreBoundedAndExpire) {
  UploadLimits limits;
  limits.idle_ms = 5000;
  limits.max_uploads = 2;
  limits.max_tasks = 3;
  server_->set_upload_limits(limits);
  std::string u1 = Begin(), u2 = Begin();
  auto third = Call("submit_begin");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ErrorCode::kBusy);
  EXPECT_THAT(third.error().message, HasSubstr("staged submits are in progress"));

  // Over max_tasks: refused and the upload dropped.
  json four = json::array();
  for (int i = 0; i < 4; ++i) four.push_back(json{{"title", "t" + std::to_string(i)}});
  auto full = Call("submit_chunk", json{{"upload", u1}, {"tasks", four}});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::kFull);
  EXPECT_THAT(full.error().message, HasSubstr("exceeds the limit of 3 tasks"));
  EXPECT_EQ(server_->uploads(), 1u);

  // Idle for the timeout: dropped at the next request, whatever it is.
  ASSERT_TRUE(
      Call("submit_chunk", json{{"upload", u2}, {"tasks", json::array({json{{"title", "x"}}})}})
          .ok());
  now_ms_ += 4999;
  EXPECT_EQ(server_->uploads(), 1u);
  ASSERT_TRUE(Call("status").ok());
  EXPECT_EQ(server_->uploads(), 1u);
  now_ms_ += 1;
  ASSERT_TRUE(Call("status").ok());
  EXPECT_EQ(server_->uploads(), 0u);
  auto late = Call("submit_commit", json{{"upload", u2}});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(late.error().message, HasSubstr("5 s idle"));
  EXPECT_EQ(TaskCount(), 0);
}

TEST_F(ControlServerTest, CancelReportsTheOpenAttemptToTheBackend) {
  std::string id = SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  store::Lease lease;
  lease.worker_pid = 1;
  ASSERT_TRUE(store_->LeaseAttempt(id, lease).ok());
  auto r = Call("cancel", json{{"id", id}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["previous_state"], "running");
  EXPECT_EQ((*r)["state"], "cancelled");
  ASSERT_EQ(backend_.cancelled.size(), 1u);
  ASSERT_TRUE(backend_.cancelled[0].open_attempt.has_value());
  // A cancel again changes nothing and is not refused (session 35): no
  // second kill, no event.
  store::EventFilter of_task;
  of_task.task_id = id;
  const size_t events = store_->Events(of_task).value().size();
  auto again = Call("cancel", json{{"id", id}});
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)["previous_state"], "cancelled");
  EXPECT_EQ((*again)["state"], "cancelled");
  EXPECT_EQ((*again)["message"], "already cancelled");
  EXPECT_EQ(backend_.cancelled.size(), 1u);
  EXPECT_EQ(store_->Events(of_task).value().size(), events);
  auto retry = Call("retry", json{{"id", id}});
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ((*retry)["state"], "ready");
  EXPECT_EQ((*retry)["message"], "requeued with its attempts reset");
}

// A task that has spent budget.task_usd is not requeued by a retry (it
// would be blocked again at dispatch): the refusal says what it spent, the
// budget, and what to do. Under the budget, or with none, it is requeued.
TEST_F(ControlServerTest, RetryRefusesATaskThatHasSpentItsBudget) {
  std::string id = SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  store::Lease lease;
  lease.worker_pid = 1;
  auto attempt = store_->LeaseAttempt(id, lease);
  ASSERT_TRUE(attempt.ok()) << attempt.error().message;
  store::Close close;
  close.outcome = proto::Outcome::kFailed;
  close.next_state = proto::TaskState::kBlocked;
  close.reason = "task budget exceeded";
  close.cost_usd = 0.6;
  ASSERT_TRUE(store_->CloseAttempt(attempt->id, close).ok());
  backend_.task_usd = 0.5;
  auto refused = Call("retry", json{{"id", id}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_EQ(refused.error().message,
            "task " + id +
                " has spent $0.60, its budget.task_usd is $0.50: a retry would not run it; raise "
                "budget.task_usd in the config file and reload it (SIGHUP to the supervisor), "
                "then retry");
  EXPECT_EQ(store_->GetTask(id)->state, proto::TaskState::kBlocked);
  EXPECT_EQ(backend_.queue_changes, 1) << "only the submit changed the queue";
  backend_.task_usd = 0.6;  // reaching it is spending it
  EXPECT_FALSE(Call("retry", json{{"id", id}}).ok());
  backend_.task_usd = 0.605;
  auto raised = Call("retry", json{{"id", id}});
  ASSERT_TRUE(raised.ok()) << raised.error().message;
  EXPECT_EQ((*raised)["state"], "ready");
  // A task in another state gets the store's refusal, not the budget's.
  backend_.task_usd = 0.5;
  auto ready = Call("retry", json{{"id", id}});
  ASSERT_FALSE(ready.ok());
  EXPECT_THAT(ready.error().message, HasSubstr("only blocked or cancelled tasks can be retried"));
  // Without a budget nothing is refused.
  ASSERT_TRUE(Call("cancel", json{{"id", id}}).ok());
  backend_.task_usd = 0;
  EXPECT_TRUE(Call("retry", json{{"id", id}}).ok());
}

// A retried task that still waits on a cancelled one says so.
TEST_F(ControlServerTest, ARetrySaysWhatTheTaskStillWaitsOn) {
  std::string first = SubmitOne(json{{"title", "first"}, {"brief", "b"}});
  std::string then = SubmitOne(json{{"title", "then"}, {"brief", "b"}, {"depends_on", {first}}});
  ASSERT_TRUE(Call("cancel", json{{"id", then}}).ok());
  ASSERT_TRUE(Call("cancel", json{{"id", first}}).ok());
  auto retry = Call("retry", json{{"id", then}});
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ((*retry)["state"], "pending");
  EXPECT_EQ((*retry)["message"], "requeued with its attempts reset; it waits on " + first +
                                     ", cancelled: retry that one too");
}

// A reason of another type is refused, and nothing is done: it was dropped
// without a word (the pause taken without its reason, the cancel done).
TEST_F(ControlServerTest, AReasonThatIsNotAStringIsRefused) {
  auto pause = Call("pause", json{{"reason", json::array({"x"})}});
  ASSERT_FALSE(pause.ok());
  EXPECT_EQ(pause.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(pause.error().message, "field 'reason' must be a string, got array");
  EXPECT_FALSE(backend_.paused);
  std::string id = SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  auto cancel = Call("cancel", json{{"id", id}, {"reason", 5}});
  ASSERT_FALSE(cancel.ok());
  EXPECT_EQ(cancel.error().message, "field 'reason' must be a string, got number");
  auto shown = Call("show", json{{"id", id}});
  ASSERT_TRUE(shown.ok());
  EXPECT_NE((*shown)["state"], "cancelled") << shown->dump();
  ASSERT_TRUE(Call("pause", json{{"reason", nullptr}}).ok());  // null: no reason
  EXPECT_TRUE(backend_.paused);
}

// show: the newest kShowTimelineMax events (session 34: it was the first
// ones), how many that leaves out, and why a cancelled task is, redacted.
TEST_F(ControlServerTest, ShowKeepsTheNewestEventsAndSaysWhy) {
  const std::string id = SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  for (int i = 0; i < proto::kShowTimelineMax + 2; ++i) {
    ASSERT_TRUE(store_->Emit("note", json{{"i", i}}, id).ok());
  }
  ASSERT_TRUE(Call("cancel", json{{"id", id}, {"reason", "leaks config-secret-value"}}).ok());
  auto show = Call("show", json{{"id", id}});
  ASSERT_TRUE(show.ok()) << show.error().message;
  const json& timeline = (*show)["timeline"];
  ASSERT_EQ(timeline.size(), static_cast<size_t>(proto::kShowTimelineMax));
  EXPECT_EQ(timeline.back()["kind"], "task.cancelled");
  EXPECT_EQ(timeline.front()["payload"]["i"], 3) << "submitted, notes 0..2 left out";
  EXPECT_EQ((*show)["timeline_omitted"], 4);
  EXPECT_EQ((*show)["state_reason"], "leaks [redacted]");

  // ls says it of each task too (session 35), as redacted; nothing of the others.
  const std::string other = SubmitOne(json{{"title", "u"}, {"brief", "b"}});
  auto list = Call("ls");
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ((*list)["tasks"].size(), 2u);
  EXPECT_EQ((*list)["tasks"][0]["id"], other);
  EXPECT_FALSE((*list)["tasks"][0].contains("state_reason")) << list->dump();
  EXPECT_EQ((*list)["tasks"][1]["state_reason"], "leaks [redacted]");

  auto newest = Call("events", json{{"task_id", id}, {"limit", 2}, {"newest", true}});
  ASSERT_TRUE(newest.ok()) << newest.error().message;
  ASSERT_EQ((*newest)["events"].size(), 2u);
  EXPECT_EQ((*newest)["events"][1]["kind"], "task.cancelled");
  auto before = Call("events", json{{"task_id", id},
                                    {"limit", 1},
                                    {"newest", true},
                                    {"before", (*newest)["events"][0]["seq"]}});
  ASSERT_TRUE(before.ok());
  EXPECT_EQ((*before)["events"][0]["payload"]["i"], proto::kShowTimelineMax);
}

TEST_F(ControlServerTest, PauseResumeStopAndEvents) {
  auto p = Call("pause", json{{"reason", "lunch"}});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(backend_.paused);
  EXPECT_EQ(backend_.pause_reason, "lunch");
  auto resumed = Call("resume");
  ASSERT_TRUE(resumed.ok());
  EXPECT_FALSE(backend_.paused);
  EXPECT_EQ((*resumed)["lifted"], json::array({"operator"}));
  backend_.budget = true;
  resumed = Call("resume");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ((*resumed)["lifted"], json::array()) << "no operator pause to lift";
  EXPECT_EQ((*resumed)["pause_reasons"][0]["kind"], "budget");
  SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  auto events = Call("events", json{{"since", 0}, {"kind", "task."}});
  ASSERT_TRUE(events.ok()) << events.error().message;
  ASSERT_FALSE((*events)["events"].empty());
  EXPECT_EQ((*events)["events"][0]["kind"], "task.submitted");
  EXPECT_GE((*events)["last_seq"].get<int64_t>(), 1);
  ASSERT_TRUE(Call("stop").ok());
  EXPECT_TRUE(backend_.stopped);
}

}  // namespace
}  // namespace forge::supervisor
