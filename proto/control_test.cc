#include "proto/control.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "common/sanitizers.h"
#include "proto/test_fixtures.h"

namespace forge::proto {
namespace {

using namespace forge::proto::fixtures;
using ::testing::HasSubstr;

template <typename T>
void ExpectRoundTrip(const T& v) {
  json j = v;
  // Through text, as on the wire.
  auto back = ReadAs<T>(json::parse(j.dump()));
  ASSERT_TRUE(back.ok()) << back.error().ToString() << "\n" << j.dump();
  EXPECT_EQ(*back, v) << j.dump();
}

SubmitTask FullSubmitTask(const std::string& id) {
  SubmitTask t;
  t.id = id;
  t.title = "Title " + id;
  t.brief = "brief";
  t.kind = "expand";
  t.repo = "/repo";
  t.base = "dev";
  t.verify = {"make", "make test"};
  t.depends_on = {"a", "b"};
  t.priority = 5;
  t.max_attempts = 9;
  t.needs_approval = true;
  t.allow_empty = true;
  t.agent = "codex";
  t.model = "m";
  t.env = {{"K", "V"}};
  return t;
}

StatusReply FullStatus() {
  StatusReply s;
  s.pid = 99;
  s.version = "0.1.0";
  s.state_dir = "/srv/.forge";
  s.started_at_ms = 1795273000000;
  s.uptime_ms = 445123;
  s.paused = true;
  s.pause_reasons = {PauseReason{"circuit", "5 failures in a row", 1795273600000},
                     PauseReason{"operator", "paused by operator", 0}};
  s.children = {ChildStatus{"worker", 1001, "busy", "t-1", 55, 2, 300, 1795273440000, 1},
                ChildStatus{"critic", 1002, "idle", "", 0, 0, 100, 0, 0}};
  s.queue = {{"pending", 3}, {"ready", 1}, {"done", 10}};
  s.cost_today_usd = 4.5;
  s.last_failure = LastFailure{"t-1", 2, "failed", "exit 1", 1795273400000};
  s.degraded = true;
  s.maintenance = MaintenanceStatus{.last_job_id = 17,
                                    .last_outcome = "finished",
                                    .last_at_ms = 1795273300000,
                                    .removed = 3,
                                    .logs_deleted = 12,
                                    .errors = {"removing '/x': permission denied"},
                                    .next_at_ms = 1795273900000};
  return s;
}

TEST(ControlTypes, RoundTripEveryRequestAndReply) {
  ExpectRoundTrip(FullSubmitTask("x"));
  SubmitTask no_max = FullSubmitTask("y");
  no_max.max_attempts.reset();
  ExpectRoundTrip(no_max);
  ExpectRoundTrip(SubmitRequest{{FullSubmitTask("a"), FullSubmitTask("b")}, std::nullopt});
  ExpectRoundTrip(SubmitRequest{{FullSubmitTask("a")}, "deploy-2026-12-06"});
  ExpectRoundTrip(SubmitRequest{{FullSubmitTask("a")}, ""});  // present and empty: refused
  ExpectRoundTrip(SubmitReply{{"t-1", "t-2"}, false, ""});
  ExpectRoundTrip(SubmitReply{{"t-1"}, true, "deploy-2026-12-06"});
  ExpectRoundTrip(UploadRequest{"u1", std::nullopt});
  ExpectRoundTrip(UploadRequest{"u1", "plan-7"});
  ExpectRoundTrip(IdRequest{"t-9"});
  ExpectRoundTrip(ListRequest{TaskState::kBlocked, 20});
  ExpectRoundTrip(ListRequest{std::nullopt, 0});
  ExpectRoundTrip(EventsRequest{42, "t-1", "task_done", 10});
  ExpectRoundTrip(EventsRequest{42, "t-1", "task.", 10, true, 99});
  ExpectRoundTrip(FullStatus());
  StatusReply no_failure = FullStatus();
  no_failure.last_failure.reset();
  ExpectRoundTrip(no_failure);
  StatusReply running = FullStatus();
  running.maintenance = MaintenanceStatus{.running_since_ms = 1795273440000};
  ExpectRoundTrip(running);
  StatusReply offline = FullStatus();
  offline.maintenance.reset();
  ExpectRoundTrip(offline);
  ExpectRoundTrip(ShowReply{
      FullTask(), {FullAttempt(1), FullAttempt(2)}, {FullEvent(1)}, 7, "same failure twice"});
  ExpectRoundTrip(ShowReply{FullTask(), {}, {}, 0, ""});
  ExpectRoundTrip(ListReply{{FullTask(), FullTask()}, {}});
  TaskInfo blocked = FullTask();
  blocked.id = "t-7";
  blocked.state = TaskState::kBlocked;
  ExpectRoundTrip(ListReply{{FullTask(), blocked}, {{"t-7", "same failure twice"}}});
  ExpectRoundTrip(ChangeReply{"t-1", "blocked", "ready", "retrying"});
  ExpectRoundTrip(EventsReply{{FullEvent(1), FullEvent(2)}, 2});
}

TEST(ControlTypes, SubmitTaskNamesAndRequiredTitle) {
  json j = FullSubmitTask("x");
  for (const char* key :
       {"id", "title", "brief", "kind", "repo", "base", "verify", "depends_on", "priority",
        "max_attempts", "needs_approval", "allow_empty", "agent", "model", "env"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  auto minimal = ReadAs<SubmitTask>(json{{"title", "t"}});
  ASSERT_TRUE(minimal.ok());
  EXPECT_EQ(minimal->kind, "work");
  EXPECT_FALSE(minimal->max_attempts.has_value());

  auto missing = ReadAs<SubmitRequest>(json::parse(R"({"tasks":[{"title":"a"},{"brief":"b"}]})"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(missing.error().message, "field 'tasks.1.title' is missing");

  auto mistyped = ReadAs<SubmitTask>(json::parse(R"({"title":"a","priority":"high"})"));
  ASSERT_FALSE(mistyped.ok());
  EXPECT_EQ(mistyped.error().message, "field 'priority' must be an integer, got string");
}

TEST(ControlTypes, ShowJsonContract) {
  ShowReply show{FullTask(), {FullAttempt(1), FullAttempt(2)}, {FullEvent(1)}, 3, "why"};
  json j = show;
  // Session 34's additions: what the timeline leaves out, why it is blocked.
  EXPECT_EQ(j["timeline_omitted"], 3);
  EXPECT_EQ(j["state_reason"], "why");
  EXPECT_EQ(j["id"], "t-0042");
  EXPECT_EQ(j["title"], "Fix the parser");
  EXPECT_EQ(j["state"], "cooldown");
  EXPECT_EQ(j["commit"], "deadbeef");
  EXPECT_EQ(j["attempts_used"], 2);
  ASSERT_TRUE(j["attempts"].is_array());
  ASSERT_EQ(j["attempts"].size(), 2u);
  const json& a = j["attempts"][0];
  for (const char* key : {"n", "outcome", "started_at", "ended_at", "cost_usd", "tokens_in",
                          "tokens_out", "session_id", "error"}) {
    EXPECT_TRUE(a.contains(key)) << key;
  }
  EXPECT_EQ(a["started_at"], "2026-11-21T14:56:40.500Z");
  EXPECT_EQ(j["timeline"].size(), 1u);
}

// Session 35: each blocked or cancelled task of an ls reply says why, in
// its own object; a reply without (an older supervisor's) reads as none.
TEST(ControlTypes, ListReplyCarriesEachTasksStateReason) {
  TaskInfo blocked = FullTask();
  blocked.id = "t-7";
  blocked.state = TaskState::kBlocked;
  json j = ListReply{{FullTask(), blocked}, {{"t-7", "attempts exhausted (3 of 3)"}}};
  EXPECT_FALSE(j["tasks"][0].contains("state_reason")) << j.dump();
  EXPECT_EQ(j["tasks"][1]["state_reason"], "attempts exhausted (3 of 3)");
  EXPECT_EQ(j["tasks"][1]["id"], "t-7");
  j["tasks"][1].erase("state_reason");
  auto old = ReadAs<ListReply>(j);
  ASSERT_TRUE(old.ok()) << old.error().ToString();
  EXPECT_TRUE(old->state_reasons.empty());
  j["tasks"][1]["state_reason"] = 5;
  auto bad = ReadAs<ListReply>(j);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "field 'tasks.1.state_reason' must be a string, got number");
}

TEST(ControlTypes, StatusJsonContract) {
  json j = FullStatus();
  EXPECT_EQ(j["pid"], 99);
  EXPECT_EQ(j["paused"], true);
  EXPECT_EQ(j["children"][0]["role"], "worker");
  EXPECT_EQ(j["children"][0]["pid"], 1001);
  EXPECT_EQ(j["children"][0]["state"], "busy");
  EXPECT_EQ(j["queue"]["pending"], 3);

  j["queue"]["ready"] = "one";
  auto bad = ReadAs<StatusReply>(j);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kDecode);
  EXPECT_EQ(bad.error().message, "field 'queue.ready' must be an integer, got string");

  j = FullStatus();
  EXPECT_EQ(j["maintenance"]["last_job_id"], 17);
  EXPECT_EQ(j["maintenance"]["running_since"], nullptr);
  EXPECT_TRUE(j["maintenance"]["next_at"].is_string());
  j["maintenance"]["removed"] = "three";
  bad = ReadAs<StatusReply>(j);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "field 'maintenance.removed' must be an integer, got string");
  j = FullStatus();
  j.erase("maintenance");  // an older supervisor's reply
  auto old = ReadAs<StatusReply>(j);
  ASSERT_TRUE(old.ok()) << old.error().ToString();
  EXPECT_FALSE(old->maintenance.has_value());
}

TEST(ControlTypes, ListRequestRejectsUnknownState) {
  auto r = ReadAs<ListRequest>(json{{"state", "sleeping"}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("field 'state' must be one of pending, ready"));
  EXPECT_THAT(r.error().message, HasSubstr("got 'sleeping'"));
}

TEST(ControlRequestEnvelope, EncodeDecode) {
  std::string bytes = EncodeControlRequest("show", json{{"id", "t-1"}});
  auto req = DecodeControlRequest(bytes);
  ASSERT_TRUE(req.ok()) << req.error().ToString();
  EXPECT_EQ(req->cmd, "show");
  EXPECT_EQ(req->args["id"], "t-1");
  auto id = ReadAs<IdRequest>(req->args);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->id, "t-1");

  auto plain = DecodeControlRequest(EncodeControlRequest("status"));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->cmd, "status");
}

TEST(ControlRequestEnvelope, Errors) {
  auto expect_error = [](const std::string& bytes, const std::string& want) {
    auto r = DecodeControlRequest(bytes);
    ASSERT_FALSE(r.ok()) << bytes;
    EXPECT_EQ(r.error().code, ErrorCode::kDecode);
    EXPECT_THAT(r.error().message, HasSubstr(want)) << bytes;
  };
  expect_error(R"({"cmd":"status"})", "request: field 'v' is missing");
  expect_error(R"({"v":1})", "request: field 'cmd' is missing");
  expect_error(R"({"v":1,"cmd":7})", "request: field 'cmd' must be a string, got number");
  expect_error(R"({"v":3,"cmd":"status"})", "unsupported protocol version 3");
  expect_error(R"({"v":1,"cmd":""})", "field 'cmd' is empty");
  expect_error("not json", "malformed JSON");
  expect_error("[]", "must be a JSON object");
  expect_error(std::string(kMaxMessageBytes + 1, ' '), "exceeds the limit");
}

TEST(ControlReplies, OkMergesBody) {
  std::string bytes = EncodeOk(json{{"id", "t-1"}, {"n", 2}});
  json j = json::parse(bytes);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["id"], "t-1");
  auto body = DecodeReply(bytes);
  ASSERT_TRUE(body.ok()) << body.error().ToString();
  EXPECT_EQ((*body)["n"], 2);
  EXPECT_FALSE(body->contains("ok"));
}

TEST(ControlReplies, ErrorRoundTripsItsCode) {
  for (ErrorCode code : {ErrorCode::kInvalid, ErrorCode::kNotFound, ErrorCode::kConflict,
                         ErrorCode::kUnavailable, ErrorCode::kInternal}) {
    std::string bytes = EncodeError(MakeError(code, "no task 't-9'"));
    auto r = DecodeReply(bytes);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(r.error().message, "no task 't-9'");
  }
  json j = json::parse(EncodeError(MakeError(ErrorCode::kNotFound, "gone")));
  EXPECT_EQ(j, json::parse(R"({"ok":false,"error":{"code":"not_found","message":"gone"}})"));
}

TEST(ControlReplies, MalformedReplies) {
  auto r = DecodeReply(R"({"error":{}})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kDecode);
  EXPECT_EQ(r.error().message, "reply: field 'ok' is missing");

  r = DecodeReply(R"({"ok":false})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "reply: field 'error' is missing");

  r = DecodeReply(R"({"ok":false,"error":{"message":"x"}})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "reply: field 'error.code' is missing");

  r = DecodeReply(R"({"ok":false,"error":{"code":"weird","message":"x"}})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInternal);
  EXPECT_THAT(r.error().message, HasSubstr("unknown error code 'weird'"));
}

// Operator input and replies from a possibly broken peer never crash the
// decoders, and whatever decodes can be read as every request type without
// throwing.
TEST(ControlFuzz, MutatedRequestsAndRepliesNeverCrash) {
  std::vector<std::string> seeds = {
      EncodeControlRequest("submit", json(SubmitRequest{{FullSubmitTask("a")}, "key-1"})),
      EncodeControlRequest("ls", json{{"state", "ready"}, {"limit", 3}}),
      EncodeOk(json(ShowReply{FullTask(), {FullAttempt(1)}, {FullEvent(1)}, 1, "why"})),
      EncodeOk(json(FullStatus())),
      EncodeError(MakeError(ErrorCode::kNotFound, "no task")),
  };
  std::mt19937 rng(4242);
  int decoded = 0;
  for (int i = 0; i < SanitizerScaledRounds(20000); ++i) {
    std::string m = seeds[rng() % seeds.size()];
    for (int e = 0, n = 1 + static_cast<int>(rng() % 3); e < n && !m.empty(); ++e) {
      size_t pos = rng() % m.size();
      switch (rng() % 3) {
        case 0:
          m[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          m.erase(pos, 1 + rng() % 6);
          break;
        case 2:
          m.insert(pos, 1, "{}[]\":,0an"[rng() % 11]);
          break;
      }
    }
    auto req = DecodeControlRequest(m);
    if (req.ok()) {
      ++decoded;
      (void)ReadAs<SubmitRequest>(req->args);
      (void)ReadAs<ListRequest>(req->args);
      (void)ReadAs<IdRequest>(req->args);
      (void)ReadAs<EventsRequest>(req->args);
    }
    auto reply = DecodeReply(m);
    if (reply.ok()) {
      ++decoded;
      (void)ReadAs<ShowReply>(*reply);
      (void)ReadAs<StatusReply>(*reply);
    }
  }
  EXPECT_GT(decoded, 0);
}

}  // namespace
}  // namespace forge::proto
