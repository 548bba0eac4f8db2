#include "proto/types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/json_fields.h"
#include "proto/test_fixtures.h"

namespace forge::proto {
namespace {

using namespace forge::proto::fixtures;
using ::testing::HasSubstr;

template <typename T>
T RoundTrip(const T& v) {
  json j = v;
  T out{};
  ReadValue(json::parse(j.dump()), out);
  return out;
}

std::string FieldErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const FieldError& e) {
    return e.what();
  }
  return "(no error)";
}

// JsonObject builds the same object as nlohmann's initializer-list form,
// values of every kind (strings, numbers, containers, nested objects), and
// an empty object (not null) from no pairs.
TEST(JsonObject, SameObjectAsTheInitializerListForm) {
  std::vector<std::string> verify = {"make", "make test"};
  json built = JsonObject("id", "t1", "n", 3, "ok", true, "cost", 0.5, "verify", verify, "nested",
                          JsonObject("a", 1));
  json expected = {{"id", "t1"},  {"n", 3},           {"ok", true},
                   {"cost", 0.5}, {"verify", verify}, {"nested", {{"a", 1}}}};
  EXPECT_EQ(built, expected);
  EXPECT_EQ(built.dump(), expected.dump());
  EXPECT_TRUE(JsonObject().is_object());
  EXPECT_EQ(JsonObject().dump(), "{}");
}

// What a lenient read gives for each kind of value: the value when it is of
// the asked type and representable, else the fallback; never a throw.
TEST(LenientFields, ReadTheValueOrTheFallback) {
  json j = json::parse(
      R"({"s": "text", "i": -7, "u": 18446744073709551615, "f": 2.9, "huge": 3e80,
          "b": true, "n": null, "o": {}})");
  EXPECT_EQ(LenientString(j, "s"), "text");
  for (const char* key : {"i", "b", "n", "o", "missing"})
    EXPECT_EQ(LenientString(j, key), "") << key;
  EXPECT_EQ(LenientInt(j, "i", 5), -7);
  EXPECT_EQ(LenientInt(j, "f", 5), 2);  // a fraction is truncated
  for (const char* key : {"u", "huge", "s", "b", "n", "o", "missing"}) {
    EXPECT_EQ(LenientInt(j, key, 5), 5) << key;
  }
  EXPECT_EQ(LenientInt(j, "missing"), 0);
  EXPECT_EQ(LenientString(json::array(), "s"), "");  // not an object at all
  EXPECT_EQ(LenientInt(json("x"), "i", 3), 3);
}

TEST(TaskStates, NamesRoundTrip) {
  ASSERT_EQ(AllStates().size(), 8u);
  std::vector<std::string> names;
  for (TaskState s : AllStates()) {
    names.emplace_back(StateName(s));
    EXPECT_EQ(ParseState(StateName(s)), s);
  }
  EXPECT_THAT(names, ::testing::ElementsAre("pending", "ready", "running", "reviewing", "cooldown",
                                            "done", "blocked", "cancelled"));
  EXPECT_FALSE(ParseState("Done").has_value());
  EXPECT_FALSE(ParseState("").has_value());
}

TEST(TaskStates, SettledAndActive) {
  for (TaskState s : AllStates()) {
    std::string_view n = StateName(s);
    EXPECT_EQ(IsSettled(s), n == "done" || n == "blocked" || n == "cancelled") << n;
    EXPECT_EQ(IsActive(s), n == "running" || n == "reviewing") << n;
  }
}

TEST(Outcomes, NamesAndInfra) {
  const std::vector<std::string> names = {"passed", "failed",  "rejected",  "timed_out", "stalled",
                                          "lost",   "crashed", "cancelled", "recovered"};
  for (const auto& n : names) {
    auto o = ParseOutcome(n);
    ASSERT_TRUE(o.has_value()) << n;
    EXPECT_EQ(OutcomeName(*o), n);
    EXPECT_EQ(IsInfraOutcome(*o), n == "lost" || n == "crashed" || n == "recovered") << n;
  }
  EXPECT_FALSE(ParseOutcome("timeout").has_value());
}

TEST(Times, Rfc3339) {
  EXPECT_TRUE(TimeToJson(0).is_null());
  EXPECT_EQ(TimeFromJson(nullptr), 0);
  EXPECT_EQ(TimeToJson(1795273445123), "2026-11-21T15:04:05.123Z");
  EXPECT_EQ(TimeFromJson("2026-11-21T15:04:05.123Z"), 1795273445123);
  EXPECT_EQ(TimeFromJson("2026-11-21T15:04:05Z"), 1795273445000);
  EXPECT_EQ(TimeFromJson("2026-11-21T16:04:05.1+01:00"), 1795273445100);
  EXPECT_EQ(TimeFromJson("2024-02-29T23:59:59Z"), 1709251199000);
  for (int64_t ms : {int64_t{1}, int64_t{999}, int64_t{86400000}, int64_t{1709251199001}}) {
    EXPECT_EQ(TimeFromJson(TimeToJson(ms)), ms);
  }
}

TEST(Times, MalformedAreNamed) {
  for (const char* bad : {"", "yesterday", "2026-11-21", "2026-11-21T15:04:05",
                          "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-21T15:04:05.Z",
                          "2026-11-21T15:04:05Zjunk", "2026-11-21T25:00:00Z"}) {
    EXPECT_THAT(FieldErrorOf([&] { TimeFromJson(bad); }), HasSubstr("is not an RFC 3339 time"))
        << bad;
  }
  EXPECT_THAT(FieldErrorOf([&] { TimeFromJson(12); }),
              HasSubstr("must be an RFC 3339 time string or null, got number"));
}

TEST(Records, RoundTrip) {
  EXPECT_EQ(RoundTrip(FullCheck()), FullCheck());
  EXPECT_EQ(RoundTrip(FullFinding()), FullFinding());
  EXPECT_EQ(RoundTrip(FullAgent()), FullAgent());
  EXPECT_EQ(RoundTrip(FullSummary()), FullSummary());
  EXPECT_EQ(RoundTrip(FullTask()), FullTask());
  EXPECT_EQ(RoundTrip(FullAttempt()), FullAttempt());
  EXPECT_EQ(RoundTrip(FullEvent()), FullEvent());
  // Defaults survive too (zero times are null).
  TaskInfo t;
  t.id = "t";
  EXPECT_EQ(RoundTrip(t), t);
  AttemptInfo open;
  open.n = 1;
  EXPECT_EQ(RoundTrip(open), open);
}

TEST(Records, TaskJsonNames) {
  json j = FullTask();
  std::vector<std::string> keys = {"id",           "title",          "brief",
                                   "kind",         "state",          "priority",
                                   "max_attempts", "needs_approval", "approved",
                                   "allow_empty",  "repo",           "base",
                                   "agent",        "model",          "env",
                                   "verify",       "depends_on",     "parent",
                                   "attempts",     "total_attempts", "infra_retries",
                                   "not_before",   "created_at",     "updated_at",
                                   "finished_at",  "last_error",     "last_fingerprint",
                                   "branch",       "commit",         "cost_usd",
                                   "tokens_in",    "tokens_out"};
  keys.push_back("base_commit");  // since schema 7
  EXPECT_EQ(j.size(), keys.size());
  for (const auto& k : keys) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["state"], "cooldown");
  EXPECT_EQ(j["created_at"], "2026-11-21T14:56:40.001Z");
  // Operators' JSON keeps every key at its default too (the child protocol's
  // WireJson leaves them out).
  TaskInfo fresh;
  fresh.id = "x";
  EXPECT_EQ(json(fresh).size(), keys.size());
  EXPECT_TRUE(json(fresh)["finished_at"].is_null());
  EXPECT_EQ(WireJson(fresh), json({{"id", "x"}}));
  EXPECT_EQ(WireJson(FullTask()), j);
}

TEST(Records, AttemptAndEventJson) {
  json a = FullAttempt();
  for (const char* k : {"id",         "task_id",     "n",           "counted",
                        "worker_pid", "agent_pid",   "agent_pgid",  "agent_start_time",
                        "started_at", "ended_at",    "duration_ms", "outcome",
                        "exit_code",  "signal",      "cost_usd",    "tokens_in",
                        "tokens_out", "num_turns",   "session_id",  "model",
                        "error",      "fingerprint", "verdict",     "findings",
                        "checks",     "log_path",    "commit"}) {
    EXPECT_TRUE(a.contains(k)) << k;
  }
  AttemptInfo open;
  open.n = 1;
  EXPECT_TRUE(json(open)["outcome"].is_null());
  EXPECT_TRUE(json(open)["ended_at"].is_null());

  json e = FullEvent();
  EXPECT_EQ(e["ts"], "2026-11-21T15:04:05.123Z");
  EXPECT_EQ(e["payload"]["nested"]["a"][2], "x");
  EventInfo global;
  global.seq = 1;
  global.kind = "supervisor_started";
  EXPECT_TRUE(json(global)["task_id"].is_null());
  EXPECT_EQ(RoundTrip(global), global);
}

TEST(Records, RequiredAndMistypedFields) {
  TaskInfo t;
  EXPECT_EQ(FieldErrorOf([&] { ReadValue(json::object(), t); }), "field 'id' is missing");
  EXPECT_EQ(FieldErrorOf([&] {
              ReadValue(json{{"id", "x"}, {"state", "zombie"}}, t);
            }),
            "field 'state' must be one of pending, ready, running, reviewing, cooldown, done, "
            "blocked, cancelled, got 'zombie'");
  EXPECT_EQ(FieldErrorOf([&] {
              ReadValue(json{{"id", "x"}, {"verify", {"a", 1}}}, t);
            }),
            "field 'verify.1' must be a string, got number");
  AttemptInfo a;
  EXPECT_EQ(FieldErrorOf([&] { ReadValue(json{{"id", 1}}, a); }), "field 'n' is missing");
  json bad = FullAttempt();
  bad["checks"][0]["exit_code"] = 1.5;
  EXPECT_EQ(FieldErrorOf([&] { ReadValue(bad, a); }),
            "field 'checks.0.exit_code' must be an integer, got number");
  EventInfo e;
  EXPECT_EQ(FieldErrorOf([&] { ReadValue(json{{"seq", 1}}, e); }), "field 'kind' is missing");
  EXPECT_THAT(FieldErrorOf([&] { ReadValue(json::array(), e); }),
              HasSubstr("must be an object, got array"));
}

}  // namespace
}  // namespace forge::proto
