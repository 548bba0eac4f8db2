// forge-ctl without a supervisor: read-only commands against a real database
// written through the store API, exit 3 for the commands that need one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "common/capped_log.h"
#include "common/paths.h"
#include "ctl/cli.h"
#include "ctl/doctor.h"
#include "ctl/stats.h"
#include "ctl/test_support.h"
#include "ctl/watch.h"

namespace forge::ctl {
namespace {

using testing::CtlHarness;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Task;

// A task with its first attempt running and a log: OfflineTest::StartLog.
struct RunningLog {
  std::string id;
  store::AttemptInfo attempt;
  std::string path;
};

class OfflineTest : public ::testing::Test {
 protected:
  struct Followed {
    int rc = -1;
    bool saw_it = false;  // the added task's event was printed
    std::string out;
  };
  // Runs `events` (args.follow set) on a thread, submits a task once it has
  // read what was there, and stops it when that task's event is printed (or
  // after 30 s).
  Followed FollowWhileATaskIsAdded(const EventsArgs& args) {
    std::atomic<bool> caught_up{false};
    std::atomic<bool> seen{false};
    std::ostringstream out, err;
    Env env = h_.env;
    env.out = &out;
    env.err = &err;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    env.stop = [&] {
      // Runs on the follower's thread, between reads: it may look at `out`.
      caught_up = true;
      if (out.str().find("Added while following") != std::string::npos) seen = true;
      return seen || std::chrono::steady_clock::now() > deadline;
    };
    Followed followed;
    std::thread follower([&] { followed.rc = CmdEvents(env, args); });
    while (!caught_up && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    EXPECT_TRUE(writer_->Submit({Task("Added while following")}).ok());
    follower.join();
    followed.saw_it = seen;
    followed.out = out.str();
    return followed;
  }

  void SetUp() override {
    writer_ = h_.OpenWriter();
    ASSERT_NE(writer_, nullptr);
    auto ids = writer_->Submit({Task("Fix the flaky test"), Task("Port the parser")});
    ASSERT_TRUE(ids.ok()) << ids.error().ToString();
    done_ = (*ids)[0];
    blocked_ = (*ids)[1];
    Finish(done_);
    Fail(blocked_, "make test: 3 failures");
  }

  store::AttemptInfo Lease(const std::string& id) {
    store::Lease lease;
    lease.worker_pid = 4242;
    lease.log_path = AttemptLogPath(h_.state_dir, id, 1);
    auto a = writer_->LeaseAttempt(id, lease);
    EXPECT_TRUE(a.ok()) << a.error().ToString();
    return a.ok() ? *a : store::AttemptInfo{};
  }

  void Finish(const std::string& id) {
    auto a = Lease(id);
    store::AgentReport r;
    r.outcome = proto::Outcome::kPassed;
    r.exit_code = 0;
    r.duration_ms = 4000;
    r.cost_usd = 0.75;
    r.tokens_in = 1000;
    r.tokens_out = 2000;
    r.session_id = "sess-" + id;
    ASSERT_TRUE(writer_->RecordAgentResult(a.id, r).ok());
    store::Close c;
    c.outcome = proto::Outcome::kPassed;
    c.next_state = proto::TaskState::kDone;
    c.commit = "c0ffee";
    c.verdict = "pass";
    ASSERT_TRUE(writer_->CloseAttempt(a.id, c).ok());
  }

  RunningLog StartLog(const std::string& first) {
    auto ids = writer_->Submit({Task("Followed")});
    EXPECT_TRUE(ids.ok());
    RunningLog log;
    log.id = ids.ok() ? (*ids)[0] : "";
    log.attempt = Lease(log.id);
    log.path = AttemptLogPath(h_.state_dir, log.id, 1);
    std::filesystem::create_directories(std::filesystem::path(log.path).parent_path());
    std::ofstream(log.path) << first;
    return log;
  }

  void Fail(const std::string& id, const std::string& error) {
    auto a = Lease(id);
    store::AgentReport r;
    r.outcome = proto::Outcome::kFailed;
    r.exit_code = 1;
    r.duration_ms = 9000;
    r.cost_usd = 0.25;
    r.error = error;
    ASSERT_TRUE(writer_->RecordAgentResult(a.id, r).ok());
    store::Close c;
    c.outcome = proto::Outcome::kFailed;
    c.error = error;
    c.fingerprint = "fp-make-test";
    c.next_state = proto::TaskState::kBlocked;
    c.reason = "same failure twice";
    ASSERT_TRUE(writer_->CloseAttempt(a.id, c).ok());
  }

  const std::string kNotice = "supervisor not running; showing the database as of now";
  CtlHarness h_;
  std::unique_ptr<store::Store> writer_;
  std::string done_, blocked_;
};

TEST_F(OfflineTest, StatusReadsTheDatabaseAndSaysSo) {
  EXPECT_EQ(CmdStatus(h_.env), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.err.str(), HasSubstr(kNotice));
  EXPECT_THAT(h_.err.str(), HasSubstr("forge-supervisor start --state-dir " + h_.state_dir));
  EXPECT_THAT(h_.out.str(), HasSubstr("not running"));
  EXPECT_THAT(h_.out.str(), HasSubstr("done 1"));
  EXPECT_THAT(h_.out.str(), HasSubstr("blocked 1"));
  EXPECT_THAT(h_.out.str(), HasSubstr("cost today   $1.00"));
  EXPECT_THAT(h_.out.str(), HasSubstr("last failure " + blocked_ + " #1 failed"));

  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdStatus(h_.env), kExitOk);
  auto j = proto::json::parse(h_.out.str());
  for (const char* key : {"pid", "paused", "children", "queue"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["running"], false);
  EXPECT_EQ(j["queue"]["done"], 1);
  EXPECT_EQ(j["queue"]["blocked"], 1);
  EXPECT_EQ(j["queue"]["pending"], 0);
}

// The operator's pause holds across a restart: a stopped supervisor's
// status says so, since the next start will not dispatch.
TEST_F(OfflineTest, StatusShowsTheOperatorsPauseTheNextStartKeeps) {
  ASSERT_TRUE(writer_->SetOperatorPause("rotating credentials").ok());
  ASSERT_EQ(CmdStatus(h_.env), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("dispatch     paused by operator: rotating credentials"));
  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdStatus(h_.env), kExitOk);
  auto j = proto::json::parse(h_.out.str());
  EXPECT_EQ(j["paused"], true);
  ASSERT_EQ(j["pause_reasons"].size(), 1u);
  EXPECT_EQ(j["pause_reasons"][0]["kind"], "operator");
  EXPECT_EQ(j["pause_reasons"][0]["reason"], "rotating credentials");
}

TEST_F(OfflineTest, ListTableJsonAndStateFilter) {
  ASSERT_EQ(CmdList(h_.env, {}), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("Fix the flaky test"));
  EXPECT_THAT(h_.out.str(), HasSubstr("Port the parser"));
  EXPECT_THAT(h_.err.str(), HasSubstr(kNotice));

  h_.Clear();
  ASSERT_EQ(CmdList(h_.env, {"blocked", 0}), kExitOk);
  EXPECT_THAT(h_.out.str(), HasSubstr(blocked_));
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("Fix the flaky test")));

  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdList(h_.env, {}), kExitOk);
  auto j = proto::json::parse(h_.out.str());
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  for (const auto& t : j) {
    for (const char* key : {"id", "title", "state", "attempts", "state_reason"})
      EXPECT_TRUE(t.contains(key)) << key;
    // Why a blocked task is so, as show says it (session 35); "" otherwise.
    EXPECT_EQ(t["state_reason"], t["id"] == blocked_ ? "same failure twice" : "") << t.dump();
  }

  h_.Clear();
  EXPECT_EQ(CmdList(h_.env, {"finished", 0}), kExitUsage);
  EXPECT_THAT(h_.err.str(), HasSubstr("--state 'finished': expected one of pending, ready"));
  // As typed at a shell, $'done\xff\n': shown escaped, never as raw bytes.
  h_.Clear();
  EXPECT_EQ(CmdList(h_.env, {"done\xff\n", 0}), kExitUsage);
  EXPECT_THAT(h_.err.str(), HasSubstr("--state 'done\\xff\\n': expected one of pending, ready"));
}

TEST_F(OfflineTest, ShowHumanAndJsonContract) {
  ASSERT_EQ(CmdShow(h_.env, blocked_), kExitOk) << h_.err.str();
  std::string out = h_.out.str();
  EXPECT_THAT(out, HasSubstr("Port the parser"));
  EXPECT_THAT(out, HasSubstr("blocked"));
  EXPECT_THAT(out, HasSubstr("make test: 3 failures"));
  EXPECT_THAT(out, HasSubstr("reason       same failure twice\n"));
  EXPECT_THAT(out, HasSubstr("timeline"));
  EXPECT_THAT(out, HasSubstr("task.submitted"));
  EXPECT_THAT(out, Not(HasSubstr("left out")));

  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdShow(h_.env, blocked_), kExitOk);
  auto blocked = proto::json::parse(h_.out.str());
  EXPECT_EQ(blocked["state_reason"], "same failure twice");
  EXPECT_EQ(blocked["timeline_omitted"], 0);

  h_.Clear();
  ASSERT_EQ(CmdShow(h_.env, done_), kExitOk);
  auto j = proto::json::parse(h_.out.str());
  EXPECT_EQ(j["state_reason"], "");
  for (const char* key : {"id", "title", "state", "attempts", "commit"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["state"], "done");
  EXPECT_EQ(j["commit"], "c0ffee");
  ASSERT_EQ(j["attempts"].size(), 1u);
  const auto& a = j["attempts"][0];
  for (const char* key : {"n", "outcome", "started_at", "ended_at", "cost_usd", "tokens_in",
                          "tokens_out", "session_id", "error"}) {
    EXPECT_TRUE(a.contains(key)) << key;
  }
  EXPECT_EQ(a["outcome"], "passed");
  EXPECT_EQ(a["session_id"], "sess-" + done_);
  // RFC 3339 UTC with milliseconds: 2026-11-21T15:04:05.123Z (std::regex trips a GCC 12
  // -Wmaybe-uninitialized false positive under the sanitizers).
  auto is_rfc3339 = [](const std::string& t) {
    const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (t.size() != shape.size()) return false;
    for (size_t i = 0; i < t.size(); ++i) {
      if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(t[i])) : t[i] != shape[i]) {
        return false;
      }
    }
    return true;
  };
  EXPECT_TRUE(is_rfc3339(a["started_at"].get<std::string>())) << a["started_at"];
  EXPECT_TRUE(is_rfc3339(a["ended_at"].get<std::string>())) << a["ended_at"];
}

// Offline as through the supervisor: the newest kShowTimelineMax events,
// and how many earlier ones that leaves out.
TEST_F(OfflineTest, ShowKeepsTheNewestEventsOfALongTimeline) {
  for (int i = 0; i < proto::kShowTimelineMax; ++i) {
    ASSERT_TRUE(writer_->Emit("note", proto::json{{"i", i}}, blocked_).ok());
  }
  h_.env.json = true;
  ASSERT_EQ(CmdShow(h_.env, blocked_), kExitOk) << h_.err.str();
  auto j = proto::json::parse(h_.out.str());
  ASSERT_EQ(j["timeline"].size(), static_cast<size_t>(proto::kShowTimelineMax));
  EXPECT_EQ(j["timeline"].back()["payload"]["i"], proto::kShowTimelineMax - 1);
  const int64_t omitted = j["timeline_omitted"].get<int64_t>();
  store::EventFilter every;
  every.task_id = blocked_;
  every.limit = 0;
  EXPECT_EQ(omitted,
            static_cast<int64_t>(writer_->Events(every)->size()) - proto::kShowTimelineMax);
  EXPECT_GT(omitted, 0);
  EXPECT_EQ(j["state_reason"], "same failure twice") << "its task.blocked was left out";
  h_.Clear();
  h_.env.json = false;
  ASSERT_EQ(CmdShow(h_.env, blocked_), kExitOk);
  EXPECT_THAT(h_.out.str(), HasSubstr("timeline\n  (" + std::to_string(omitted) +
                                      " earlier events left out; all of them: forge-ctl "));
}

// A pending task shows each dependency's state now, and its timeline says
// which one it waits on: here a blocked one, whose dependents wait until an
// operator retries it.
TEST_F(OfflineTest, ShowSaysWhatAPendingTaskWaitsOn) {
  auto ids = writer_->Submit({Task("Ship it", "", {done_, blocked_})});
  ASSERT_TRUE(ids.ok()) << ids.error().ToString();
  ASSERT_EQ(CmdShow(h_.env, ids->front()), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(),
              HasSubstr("depends on   " + done_ + " (done), " + blocked_ + " (blocked)"));
  EXPECT_THAT(h_.out.str(), HasSubstr("task.waiting"));
  EXPECT_THAT(h_.out.str(), HasSubstr(blocked_ + " is blocked: this task waits until it is "
                                                 "retried and done"));
}

// Without a supervisor the database is read as it is, env included: a
// secret env value is redacted as the supervisor's replies redact it.
TEST_F(OfflineTest, ShowAndListRedactSecretsAsTheSupervisorDoes) {
  auto secret = Task("Deploy with tok-3f9a77c1");
  secret.env = {{"DEPLOY_TOKEN", "tok-3f9a77c1"}, {"REGION", "eu-west-1"}};
  secret.brief = "use tok-3f9a77c1 to deploy";
  secret.verify = {"echo tok-3f9a77c1"};
  auto ids = writer_->Submit({secret});
  ASSERT_TRUE(ids.ok()) << ids.error().ToString();
  // The title and the verify command quote it too, in text as in JSON.
  ASSERT_EQ(CmdShow(h_.env, ids->front()), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("tok-3f9a77c1")));
  h_.Clear();
  ASSERT_EQ(CmdList(h_.env, {}), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("tok-3f9a77c1")));
  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdShow(h_.env, ids->front()), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("tok-3f9a77c1")));
  EXPECT_THAT(h_.out.str(), HasSubstr("eu-west-1"));
  EXPECT_THAT(h_.out.str(), HasSubstr("[redacted]"));
  h_.Clear();
  ASSERT_TRUE(writer_->Cancel(ids->front(), "tok-3f9a77c1 was leaked").ok());
  ASSERT_EQ(CmdList(h_.env, {}), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("tok-3f9a77c1")));
  EXPECT_THAT(h_.out.str(), HasSubstr("[redacted]"));
  EXPECT_THAT(h_.out.str(), HasSubstr("\"state_reason\": \"[redacted] was leaked\""));
}

// events read from the database redact a task's env secret in its events'
// payloads (a cancel reason here), as the supervisor's reply does.
TEST_F(OfflineTest, EventsRedactATasksEnvSecretsAsTheSupervisorDoes) {
  auto secret = Task("Deploy");
  secret.env = {{"DEPLOY_TOKEN", "tok-3f9a77c1"}};
  auto ids = writer_->Submit({secret});
  ASSERT_TRUE(ids.ok()) << ids.error().ToString();
  ASSERT_TRUE(writer_->Cancel(ids->front(), "tok-3f9a77c1 was leaked").ok());
  h_.env.json = true;
  EventsArgs only;
  only.task_id = ids->front();
  ASSERT_EQ(CmdEvents(h_.env, only), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("tok-3f9a77c1")));
  EXPECT_THAT(h_.out.str(), HasSubstr("[redacted] was leaked"));
}

TEST_F(OfflineTest, ShowUnknownTaskIsNotFound) {
  EXPECT_EQ(CmdShow(h_.env, "t999"), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("t999"));
}

TEST_F(OfflineTest, EventsFiltersAndJsonLines) {
  ASSERT_EQ(CmdEvents(h_.env, {}), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("task.submitted  " + done_));
  EXPECT_THAT(h_.out.str(), HasSubstr(blocked_));

  h_.Clear();
  EventsArgs only;
  only.task_id = done_;
  ASSERT_EQ(CmdEvents(h_.env, only), kExitOk);
  EXPECT_THAT(h_.out.str(), Not(HasSubstr(blocked_)));

  h_.Clear();
  h_.env.json = true;
  EventsArgs two;
  two.limit = 2;
  ASSERT_EQ(CmdEvents(h_.env, two), kExitOk);
  std::istringstream lines(h_.out.str());
  std::vector<proto::json> events;
  for (std::string line; std::getline(lines, line);) events.push_back(proto::json::parse(line));
  ASSERT_EQ(events.size(), 2u);
  for (const char* key : {"seq", "ts", "kind", "task_id"})
    EXPECT_TRUE(events[0].contains(key)) << key;

  h_.Clear();
  EventsArgs after;
  after.since = events[1]["seq"].get<int64_t>();
  ASSERT_EQ(CmdEvents(h_.env, after), kExitOk);
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("\"seq\":" + events[0]["seq"].dump() + ",")));
}

// events --limit N: without --since the newest N, oldest first (tail -n),
// read back in pages past the first; with --since the first N after it.
TEST_F(OfflineTest, EventsLimitIsTheNewestUnlessSinceIsGiven) {
  for (int i = 0; i < 2500; ++i) ASSERT_TRUE(writer_->Emit("note", proto::json{{"i", i}}).ok());
  h_.env.json = true;
  auto read = [&](const EventsArgs& args) {
    h_.Clear();
    EXPECT_EQ(CmdEvents(h_.env, args), kExitOk) << h_.err.str();
    std::vector<proto::json> events;
    std::istringstream lines(h_.out.str());
    for (std::string line; std::getline(lines, line);) events.push_back(proto::json::parse(line));
    return events;
  };
  EventsArgs tail;
  tail.limit = 2;
  auto newest = read(tail);
  ASSERT_EQ(newest.size(), 2u);
  EXPECT_EQ(newest[0]["payload"]["i"], 2498);
  EXPECT_EQ(newest[1]["payload"]["i"], 2499);
  tail.limit = 2100;
  auto many = read(tail);
  ASSERT_EQ(many.size(), 2100u);
  EXPECT_EQ(many.front()["payload"]["i"], 400);
  EXPECT_EQ(many.back()["payload"]["i"], 2499);
  for (size_t i = 1; i < many.size(); ++i) {
    ASSERT_EQ(many[i]["seq"].get<int64_t>(), many[i - 1]["seq"].get<int64_t>() + 1) << i;
  }
  tail.kind = "task.";
  tail.limit = 1;
  auto task = read(tail);
  ASSERT_EQ(task.size(), 1u);
  EXPECT_EQ(task[0]["kind"], "task.blocked");

  EventsArgs first;
  first.since = 0;
  first.limit = 2;
  auto oldest = read(first);
  ASSERT_EQ(oldest.size(), 2u);
  EXPECT_EQ(oldest[0]["seq"], 1);
  EXPECT_EQ(oldest[1]["seq"], 2);
}

// events --follow --limit N: the newest N, then every new event (tail -n N -f).
TEST_F(OfflineTest, EventsFollowWithALimitStartsFromTheNewest) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer_->Emit("note", proto::json{{"i", i}}).ok());
  EventsArgs args;
  args.follow = true;
  args.limit = 2;
  const Followed followed = FollowWhileATaskIsAdded(args);
  EXPECT_EQ(followed.rc, kExitOk);
  EXPECT_TRUE(followed.saw_it) << followed.out;
  EXPECT_THAT(followed.out, Not(HasSubstr("i=2")));
  EXPECT_THAT(followed.out, HasSubstr("i=3"));
  EXPECT_THAT(followed.out, HasSubstr("i=4"));
}

TEST_F(OfflineTest, EventsFollowSeesEventsCommittedAfterItStarted) {
  EventsArgs args;
  args.follow = true;
  const Followed followed = FollowWhileATaskIsAdded(args);
  EXPECT_EQ(followed.rc, kExitOk);
  EXPECT_TRUE(followed.saw_it) << followed.out;
}

TEST_F(OfflineTest, LogsLatestPinnedAndMissing) {
  std::filesystem::create_directories(h_.state_dir + "/logs/" + done_);
  std::ofstream(AttemptLogPath(h_.state_dir, done_, 1)) << "first attempt output\n";
  std::ofstream(AttemptLogPath(h_.state_dir, done_, 2)) << "second attempt output\n";
  // Not Forge's: a number no attempt has (std::stoi threw on it).
  std::ofstream(h_.state_dir + "/logs/" + done_ + "/99999999999.log") << "stray\n";
  ASSERT_EQ(CmdLogs(h_.env, {done_, std::nullopt, false}), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.err.str(), HasSubstr(kNotice)) << "as docs/cli.md says of logs";
  EXPECT_EQ(h_.out.str(), "second attempt output\n");
  h_.Clear();
  ASSERT_EQ(CmdLogs(h_.env, {done_, 1, false}), kExitOk);
  EXPECT_EQ(h_.out.str(), "first attempt output\n");
  h_.Clear();
  EXPECT_EQ(CmdLogs(h_.env, {done_, 7, false}), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("no log for attempt 7 of task " + done_));
  h_.Clear();
  EXPECT_EQ(CmdLogs(h_.env, {blocked_, std::nullopt, false}), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("no logs for task " + blocked_));
  // An id is a directory name under logs/, never a path out of it.
  for (const std::string& bad : {done_ + "/../" + done_, std::string(".."), std::string()}) {
    h_.Clear();
    EXPECT_EQ(CmdLogs(h_.env, {bad, std::nullopt, false}), kExitUsage) << bad;
    EXPECT_THAT(h_.err.str(), HasSubstr("': not a task id (empty, '.', '..' or with a '/')"));
  }
}

// --review: the review log (the checks' output), by default the latest
// attempt that has one; the agent's logs are not taken for it, nor it for
// theirs.
TEST_F(OfflineTest, LogsReviewPrintsAnAttemptsReviewLog) {
  std::filesystem::create_directories(h_.state_dir + "/logs/" + done_);
  std::ofstream(AttemptLogPath(h_.state_dir, done_, 1)) << "first attempt output\n";
  std::ofstream(ReviewLogPath(h_.state_dir, done_, 1)) << "$ make test\nFAIL: test_parse\n";
  std::ofstream(AttemptLogPath(h_.state_dir, done_, 2)) << "second attempt output\n";
  ASSERT_EQ(CmdLogs(h_.env, {done_, std::nullopt, false, true}), kExitOk) << h_.err.str();
  EXPECT_EQ(h_.out.str(), "$ make test\nFAIL: test_parse\n");
  h_.Clear();
  ASSERT_EQ(CmdLogs(h_.env, {done_, std::nullopt, false, false}), kExitOk) << h_.err.str();
  EXPECT_EQ(h_.out.str(), "second attempt output\n");
  h_.Clear();
  EXPECT_EQ(CmdLogs(h_.env, {done_, 2, false, true}), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("no review log for attempt 2 of task " + done_));
  EXPECT_THAT(h_.err.str(), HasSubstr("has a review started?"));
  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdLogs(h_.env, {done_, 1, false, true}), kExitOk);
  auto j = proto::json::parse(h_.out.str());
  EXPECT_EQ(j["path"], ReviewLogPath(h_.state_dir, done_, 1));
  EXPECT_EQ(j["text"], "$ make test\nFAIL: test_parse\n");
  h_.Clear();
  h_.env.json = false;
  EXPECT_EQ(CmdLogs(h_.env, {blocked_, std::nullopt, false, true}), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("no review logs for task " + blocked_));
}

// A state directory nothing ever ran in (a typo, most likely) is exit 3 as
// for the other read-only commands, and --follow does not wait on it.
TEST_F(OfflineTest, LogsInAStateDirNothingRanInIsExit3) {
  const std::string empty = h_.state_dir + "/elsewhere";
  std::filesystem::create_directories(empty);
  h_.env.state_dir = empty;
  EXPECT_EQ(CmdLogs(h_.env, {done_, std::nullopt, false}), kExitNoSupervisor);
  EXPECT_THAT(h_.err.str(), HasSubstr("supervisor not running and no database at"));
  h_.Clear();
  EXPECT_EQ(CmdLogs(h_.env, {done_, std::nullopt, true}), kExitNoSupervisor);
}

// Following a task that settles without any log ends as without --follow.
TEST_F(OfflineTest, LogsFollowOfATaskThatNeverRanIsNotFound) {
  auto ids = writer_->Submit({Task("Never ran")});
  ASSERT_TRUE(ids.ok());
  ASSERT_TRUE(writer_->Cancel(ids->front(), "").ok());
  EXPECT_EQ(CmdLogs(h_.env, {ids->front(), std::nullopt, true}), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("it is cancelled and no attempt wrote one"));
  // An attempt pinned that never was: named, whatever the others wrote.
  h_.Clear();
  EXPECT_EQ(CmdLogs(h_.env, {ids->front(), 7, true, true}), kExitRejected);
  EXPECT_THAT(h_.err.str(), HasSubstr("no review log for attempt 7 of task " + ids->front() +
                                      ": it is cancelled"));
}

TEST_F(OfflineTest, LogsFollowStreamsUntilTheTaskSettles) {
  const RunningLog log = StartLog("line one\n");
  const std::string& path = log.path;
  std::ostringstream out, err;
  Env env = h_.env;
  env.out = &out;
  env.err = &err;
  std::atomic<bool> started{false};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  env.stop = [&] {
    started = true;
    return std::chrono::steady_clock::now() > deadline;
  };
  int rc = -1;
  std::thread follower([&] { rc = CmdLogs(env, {log.id, std::nullopt, true}); });
  while (!started && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  std::ofstream(path, std::ios::app) << "line two\n";
  store::Close c;
  c.outcome = proto::Outcome::kCancelled;
  c.next_state = proto::TaskState::kCancelled;
  ASSERT_TRUE(writer_->CloseAttempt(log.attempt.id, c).ok());
  follower.join();
  EXPECT_EQ(rc, kExitOk);
  EXPECT_LT(std::chrono::steady_clock::now(), deadline)
      << "follow did not end when the task settled";
  EXPECT_EQ(out.str(), "line one\nline two\n");
}

// The worker's cap replaces a log with its tail (worker/output_capture.h):
// a follower printed the tail again, tens of MiB, and lost what was
// written to the old file after its last read. It reads the old file to its
// end, then the new one after what its marker says it repeats.
TEST_F(OfflineTest, LogsFollowPrintsALogCutByItsCapOnce) {
  const RunningLog log = StartLog("one\n");
  const std::string& path = log.path;
  std::ostringstream out, err;
  Env env = h_.env;
  env.out = &out;
  env.err = &err;
  // Each turn of the follow loop reads, then asks stop(): the log changes
  // between reads as the worker would change it.
  int turn = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  env.stop = [&] {
    ++turn;
    if (turn == 1) {
      // Written to the old file after the follower's read, then the cut:
      // the tail of the old file again, then what overflowed it.
      std::ofstream(path, std::ios::app) << "two\n";
      std::ofstream(path + ".tmp") << CappedLogMarker(16, 8, 8) << "one\ntwo\n"
                                   << "three\n";
      std::filesystem::rename(path + ".tmp", path);
    } else if (turn == 2) {
      std::ofstream(path, std::ios::app) << "four\n";
      // A marker of an older Forge, which does not say what it repeats: read whole.
      std::ofstream(path + ".tmp") << "[forge: earlier output dropped; old]\nfive\n";
      std::filesystem::rename(path + ".tmp", path);
    } else if (turn == 3) {
      store::Close c;
      c.outcome = proto::Outcome::kCancelled;
      c.next_state = proto::TaskState::kCancelled;
      EXPECT_TRUE(writer_->CloseAttempt(log.attempt.id, c).ok());
    }
    return std::chrono::steady_clock::now() > deadline;
  };
  EXPECT_EQ(CmdLogs(env, {log.id, std::nullopt, true}), kExitOk) << err.str();
  EXPECT_EQ(out.str(), "one\ntwo\nthree\nfour\n[forge: earlier output dropped; old]\nfive\n");
}

// --review --follow goes on to the next attempt's review log, not to its
// agent's log.
TEST_F(OfflineTest, LogsReviewFollowGoesOnToTheNextReviewLog) {
  auto ids = writer_->Submit({Task("Followed")});
  ASSERT_TRUE(ids.ok());
  std::string id = (*ids)[0];
  auto attempt = Lease(id);
  std::filesystem::create_directories(h_.state_dir + "/logs/" + id);
  std::ofstream(ReviewLogPath(h_.state_dir, id, 1)) << "review one\n";

  std::ostringstream out, err;
  Env env = h_.env;
  env.out = &out;
  env.err = &err;
  // Each turn of the follow loop looks for a newer log, then asks stop().
  std::atomic<int> turns{0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  env.stop = [&] {
    ++turns;
    return std::chrono::steady_clock::now() > deadline;
  };
  auto wait_turns = [&](int n) {
    while (turns < n && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  };
  int rc = -1;
  std::thread follower([&] { rc = CmdLogs(env, {id, std::nullopt, true, true}); });
  wait_turns(1);
  std::ofstream(AttemptLogPath(h_.state_dir, id, 3)) << "an agent's output\n";
  std::ofstream(ReviewLogPath(h_.state_dir, id, 2)) << "review two\n";
  // A whole turn after the files: it has looked for them before the task
  // settles (a settled task's follow ends at once).
  const int written_at = turns;
  wait_turns(written_at + 2);
  store::Close c;
  c.outcome = proto::Outcome::kCancelled;
  c.next_state = proto::TaskState::kCancelled;
  ASSERT_TRUE(writer_->CloseAttempt(attempt.id, c).ok());
  follower.join();
  EXPECT_EQ(rc, kExitOk) << err.str();
  EXPECT_EQ(out.str(), "review one\n==> review of attempt 2 <==\nreview two\n");
}

TEST_F(OfflineTest, CommandsThatNeedTheSupervisorExit3WithTheStartCommand) {
  auto expect3 = [&](const char* what, int rc) {
    EXPECT_EQ(rc, kExitNoSupervisor) << what;
    EXPECT_THAT(h_.err.str(), HasSubstr("forge-supervisor start --state-dir " + h_.state_dir))
        << what;
    h_.Clear();
  };
  SubmitArgs submit;
  submit.title = "x";
  expect3("submit", CmdSubmit(h_.env, submit));
  expect3("cancel", CmdChange(h_.env, "cancel", done_));
  expect3("retry", CmdChange(h_.env, "retry", blocked_));
  expect3("approve", CmdChange(h_.env, "approve", done_));
  expect3("pause", CmdPause(h_.env, "why"));
  expect3("resume", CmdResume(h_.env));
  expect3("stop", CmdStop(h_.env));
  expect3("wait", CmdWait(h_.env, {done_}, 1000));
}

// Without a supervisor as with one: exit 2 naming the text, not exit 3 for
// the commands that need it, nor "no such task" for the read-only ones.
TEST_F(OfflineTest, TextThatIsNotUtf8IsAUsageError) {
  testing::ExpectNotUtf8IsRefused(h_);
}

// The hint names the config the supervisor last started with: following it
// must not bring the supervisor back on defaults. With a path that needs
// quoting, it is quoted.
TEST_F(OfflineTest, TheStartCommandNamesTheConfigItLastStartedWith) {
  ASSERT_TRUE(WriteFileAtomic(StartedConfigFile(h_.state_dir), "/etc/my forge/forge.yaml\n").ok());
  EXPECT_EQ(CmdResume(h_.env), kExitNoSupervisor);
  EXPECT_THAT(h_.err.str(), HasSubstr("forge-supervisor start --config '/etc/my forge/forge.yaml' "
                                      "--state-dir " +
                                      h_.state_dir));
  h_.Clear();
  // It last ran on defaults: no --config.
  ASSERT_TRUE(WriteFileAtomic(StartedConfigFile(h_.state_dir), "\n").ok());
  EXPECT_EQ(CmdResume(h_.env), kExitNoSupervisor);
  EXPECT_THAT(h_.err.str(), HasSubstr("forge-supervisor start --state-dir " + h_.state_dir));
}

TEST(OfflineNoDatabase, ReadCommandsExit3) {
  CtlHarness h;
  EXPECT_EQ(CmdStatus(h.env), kExitNoSupervisor);
  EXPECT_THAT(h.err.str(), HasSubstr("no database at " + h.state_dir + "/forge.db"));
  EXPECT_THAT(h.err.str(), HasSubstr("forge-supervisor start"));
  h.err.str("");
  EXPECT_EQ(CmdStats(h.env, 0), kExitNoSupervisor);
  EXPECT_THAT(h.err.str(), HasSubstr("no database at " + h.state_dir + "/forge.db"));
  EXPECT_THAT(h.err.str(), HasSubstr("forge-supervisor start"));
}

TEST_F(OfflineTest, StatsFromTheDatabase) {
  auto stats = ComputeStats(*writer_, SystemClock::Get().WallMs() + 1000, 0);
  ASSERT_TRUE(stats.ok()) << stats.error().ToString();
  EXPECT_EQ(stats->done, 1);
  EXPECT_EQ(stats->blocked, 1);
  EXPECT_DOUBLE_EQ(stats->success_rate, 0.5);
  EXPECT_DOUBLE_EQ(stats->attempts_per_done, 1.0);
  EXPECT_EQ(stats->attempts, 2);
  EXPECT_EQ(stats->attempts_by_outcome["passed"], 1);
  EXPECT_EQ(stats->attempts_by_outcome["failed"], 1);
  EXPECT_DOUBLE_EQ(stats->cost_usd, 1.0);
  EXPECT_DOUBLE_EQ(stats->cost_per_done_usd, 0.75);
  EXPECT_EQ(stats->tokens_per_done, 3000);
  ASSERT_EQ(stats->top_failures.size(), 1u);
  EXPECT_EQ(stats->top_failures[0].fingerprint, "fp-make-test");
  EXPECT_EQ(stats->top_failures[0].task_id, blocked_);

  // A window that starts after everything happened holds nothing.
  auto later = ComputeStats(*writer_, SystemClock::Get().WallMs() + 3'600'000, 60'000);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->attempts, 0);
  EXPECT_EQ(later->done, 0);

  ASSERT_EQ(CmdStats(h_.env, 0), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("success rate    50% (1 done, 1 blocked)"));
  EXPECT_THAT(h_.out.str(), HasSubstr("fp-make-test"));
  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdStats(h_.env, 0), kExitOk);
  auto j = proto::json::parse(h_.out.str());
  EXPECT_EQ(j["done"], 1);
  EXPECT_EQ(j["top_failures"][0]["count"], 1);
}

// A failed check's command quotes a task env secret: status's last failure
// and stats' top failures show the error redacted, in text and JSON.
TEST_F(OfflineTest, StatusAndStatsRedactAFailuresTaskSecret) {
  auto secret = Task("Deploy");
  secret.env = {{"DB_PASSWORD", "pw-5e1f09a2"}};
  auto ids = writer_->Submit({secret});
  ASSERT_TRUE(ids.ok()) << ids.error().ToString();
  Fail(ids->front(), "rejected: check 'echo pw-5e1f09a2; false' failed");
  ASSERT_EQ(CmdStatus(h_.env), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("pw-5e1f09a2")));
  EXPECT_THAT(h_.out.str(), HasSubstr("check 'echo [redacted]; false'"));
  h_.Clear();
  ASSERT_EQ(CmdStats(h_.env, 0), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("pw-5e1f09a2")));
  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdStatus(h_.env), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("pw-5e1f09a2")));
  h_.Clear();
  ASSERT_EQ(CmdStats(h_.env, 0), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("pw-5e1f09a2")));
  EXPECT_THAT(h_.out.str(), HasSubstr("echo [redacted]; false"));
}

// An error the store kept with bytes that are not UTF-8 (an agent's output
// quoted as it was) does not abort stats --json.
TEST_F(OfflineTest, StatsJsonWithAnErrorThatIsNotUtf8) {
  auto ids = writer_->Submit({Task("Garbled")});
  ASSERT_TRUE(ids.ok());
  Fail(ids->front(), "make: \xff\xfe garbled");
  h_.env.json = true;
  ASSERT_EQ(CmdStats(h_.env, 0), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("\xEF\xBF\xBD"));
}

TEST(Percentile, NearestRank) {
  std::vector<int64_t> v = {5, 1, 4, 2, 3};
  EXPECT_EQ(Percentile(v, 50), 3);
  EXPECT_EQ(Percentile(v, 95), 5);
  std::vector<int64_t> none;
  EXPECT_EQ(Percentile(none, 50), 0);
}

DoctorOptions Doctor(const CtlHarness& h) {
  DoctorOptions o;
  o.state_dir = h.state_dir;
  o.now_ms = SystemClock::Get().WallMs();
  o.red_bytes = 0;
  o.warn_bytes = 0;
  return o;
}

const DoctorFinding* FindingWith(const std::vector<DoctorFinding>& all, const std::string& check,
                                 Severity severity) {
  for (const auto& f : all) {
    if (f.check == check && f.severity == severity) return &f;
  }
  return nullptr;
}

TEST_F(OfflineTest, DoctorCleanStateIsGreen) {
  // An agent this machine has: the defaults' `claude` may be missing here.
  std::ofstream(h_.dir.Path("forge.yaml")) << "agent: {profile: command, command: [sh]}\n";
  auto findings = RunDoctor(Doctor(h_));
  for (const auto& f : findings) {
    EXPECT_EQ(f.severity, Severity::kOk) << f.check << ": " << f.message;
  }
  EXPECT_NE(FindingWith(findings, "replay", Severity::kOk), nullptr);
  EXPECT_NE(FindingWith(findings, "database", Severity::kOk), nullptr);
  EXPECT_NE(FindingWith(findings, "counts", Severity::kOk), nullptr);
}

// A config whose agent is a bare command the agents' PATH lacks loads, and
// doctor warns (every task would fail on it), saying whose PATH it searched:
// with no supervisor running, forge-ctl's own.
TEST_F(OfflineTest, DoctorWarnsOfAnAgentCommandNotInThePath) {
  std::string config = h_.dir.Path("forge.yaml");
  std::ofstream(config) << "agent: {profile: command, command: [forge-no-such-agent-35]}\n";
  DoctorOptions o = Doctor(h_);
  o.config_path = config;
  auto findings = RunDoctor(o);
  const DoctorFinding* warn = FindingWith(findings, "agent", Severity::kWarn);
  ASSERT_NE(warn, nullptr);
  EXPECT_THAT(warn->message, HasSubstr(config + ": key 'agent.command': agent command "
                                                "'forge-no-such-agent-35' is not in PATH '"));
  EXPECT_THAT(warn->message, HasSubstr("(PATH is forge-ctl's"));
  EXPECT_THAT(warn->fix, HasSubstr("edit " + config));
  EXPECT_NE(FindingWith(findings, "config", Severity::kOk), nullptr);

  // With no PATH, what exec searches then (it judged nothing: an empty PATH).
  {
    const std::string own = std::getenv("PATH") ? std::getenv("PATH") : "";
    ASSERT_EQ(::unsetenv("PATH"), 0);
    auto unset = RunDoctor(o);
    ASSERT_EQ(::setenv("PATH", own.c_str(), 1), 0);
    const DoctorFinding* default_path = FindingWith(unset, "agent", Severity::kWarn);
    ASSERT_NE(default_path, nullptr);
    EXPECT_THAT(
        default_path->message,
        HasSubstr("'forge-no-such-agent-35' is not in PATH '/usr/local/bin:/usr/bin:/bin'"));
  }

  std::ofstream(config) << "agent: {profile: command, command: [sh]}\n";
  EXPECT_EQ(FindingWith(RunDoctor(o), "agent", Severity::kWarn), nullptr);
}

// No config file: the defaults' agent, the bare `claude`, is judged too,
// warned about exactly when this machine's PATH lacks it.
TEST_F(OfflineTest, DoctorJudgesTheDefaultAgentWithoutAConfig) {
  const bool has_claude = FindInPath("claude", ExecPath(std::getenv("PATH")), "") != "";
  auto findings = RunDoctor(Doctor(h_));
  const DoctorFinding* warn = FindingWith(findings, "agent", Severity::kWarn);
  if (has_claude) {
    EXPECT_EQ(warn, nullptr) << warn->message;
    return;
  }
  ASSERT_NE(warn, nullptr);
  EXPECT_THAT(warn->message,
              HasSubstr("defaults: key 'agent.command': agent command 'claude' is not in PATH"));
  EXPECT_THAT(warn->fix, HasSubstr("agent.command is the agent's absolute path"));
}

TEST_F(OfflineTest, DoctorDetectsDriftedTaskCounts) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath(h_.state_dir).c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE task_counts SET n = n + 5 WHERE state = 'blocked'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto findings = RunDoctor(Doctor(h_));
  const DoctorFinding* red = FindingWith(findings, "counts", Severity::kRed);
  ASSERT_NE(red, nullptr);
  EXPECT_THAT(red->message, HasSubstr("blocked: counted "));
  EXPECT_THAT(red->fix, HasSubstr("INSERT INTO task_counts SELECT state, COUNT(*) FROM tasks"));
  EXPECT_EQ(CmdDoctor(h_.env), kExitRejected);
}

// A file that is no database: starting the supervisor would not fix it.
TEST(OfflineDoctor, ACorruptDatabaseGetsTheRecoverFixNotTheStartCommand) {
  CtlHarness h;
  std::filesystem::create_directories(h.state_dir);
  std::ofstream(DbPath(h.state_dir)) << std::string(8192, 'x');
  DoctorOptions o;
  o.state_dir = h.state_dir;
  auto findings = RunDoctor(o);
  const DoctorFinding* red = FindingWith(findings, "database", Severity::kRed);
  ASSERT_NE(red, nullptr);
  EXPECT_THAT(red->message, HasSubstr("not a database"));
  EXPECT_THAT(red->fix, HasSubstr("'.recover'"));
  EXPECT_THAT(red->fix, Not(HasSubstr("forge-supervisor start")));
}

TEST_F(OfflineTest, DoctorDetectsATamperedTasksTable) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath(h_.state_dir).c_str(), &db), SQLITE_OK);
  std::string sql = "UPDATE tasks SET state = 'done' WHERE id = '" + blocked_ + "'";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto findings = RunDoctor(Doctor(h_));
  const DoctorFinding* red = FindingWith(findings, "replay", Severity::kRed);
  ASSERT_NE(red, nullptr);
  EXPECT_THAT(red->message, HasSubstr("task " + blocked_ +
                                      ": the tasks table says done, the "
                                      "event log replays to blocked"));
  // Run as printed: the test's state directory is not the default one.
  EXPECT_THAT(red->fix, HasSubstr("forge-ctl --state-dir " + ShellQuote(h_.state_dir) + " retry " +
                                  blocked_));
  EXPECT_EQ(CmdDoctor(h_.env), kExitRejected);
  EXPECT_THAT(h_.out.str(), HasSubstr("RED "));
}

TEST_F(OfflineTest, DoctorFindsOrphanWorkspacesAndOpenAttempts) {
  std::string orphan = h_.state_dir + "/workspaces/t424242";
  std::filesystem::create_directories(orphan);
  std::filesystem::create_directories(h_.state_dir + "/workspaces/" + done_);  // recent: kept
  auto ids = writer_->Submit({Task("Left open")});
  ASSERT_TRUE(ids.ok());
  Lease((*ids)[0]);  // an open attempt with no supervisor and no agent process

  auto findings = RunDoctor(Doctor(h_));
  const DoctorFinding* ws = FindingWith(findings, "workspaces", Severity::kWarn);
  ASSERT_NE(ws, nullptr);
  EXPECT_THAT(ws->message, HasSubstr(orphan + " belongs to no task"));
  EXPECT_EQ(ws->fix, "rm -rf " + orphan + " && rm -f " + orphan + ".lock");
  int workspace_findings = 0;
  for (const auto& f : findings) workspace_findings += f.check == "workspaces";
  EXPECT_EQ(workspace_findings, 1) << "the recent settled task's workspace is kept";

  const DoctorFinding* open = FindingWith(findings, "attempts", Severity::kRed);
  ASSERT_NE(open, nullptr);
  EXPECT_THAT(open->message, HasSubstr("task " + (*ids)[0] + " is open but no supervisor runs"));
  EXPECT_THAT(open->fix, HasSubstr("forge-supervisor start --state-dir " + h_.state_dir));
}

// An attempt whose agent passed, left open by a stop for the next start's
// review, is the normal state of a stopped supervisor: no red. Without its
// workspace the start cannot review it (it closes it `recovered`): red.
TEST_F(OfflineTest, DoctorTakesAnAttemptWaitingForItsReviewAsNormal) {
  auto ids = writer_->Submit({Task("Passed, not reviewed")});
  ASSERT_TRUE(ids.ok());
  const std::string id = (*ids)[0];
  store::AgentReport passed;
  passed.outcome = proto::Outcome::kPassed;
  ASSERT_TRUE(writer_->RecordAgentResult(Lease(id).id, passed).ok());

  auto findings = RunDoctor(Doctor(h_));
  const DoctorFinding* gone = FindingWith(findings, "attempts", Severity::kRed);
  ASSERT_NE(gone, nullptr);
  EXPECT_THAT(gone->message, HasSubstr("task " + id + " is open but no supervisor runs"));

  std::filesystem::create_directories(h_.state_dir + "/workspaces/" + id);  // the agent's work
  findings = RunDoctor(Doctor(h_));
  EXPECT_EQ(FindingWith(findings, "attempts", Severity::kRed), nullptr);
  const DoctorFinding* waits = FindingWith(findings, "attempts", Severity::kOk);
  ASSERT_NE(waits, nullptr);
  EXPECT_THAT(waits->message,
              HasSubstr("task " + id + " passed its agent and waits for its review"));
}

TEST_F(OfflineTest, DoctorChecksTheConfigBesideTheStateDir) {
  std::ofstream(h_.dir.Path("forge.yaml")) << "workers: two\n";
  auto findings = RunDoctor(Doctor(h_));
  const DoctorFinding* bad = FindingWith(findings, "config", Severity::kRed);
  ASSERT_NE(bad, nullptr);
  EXPECT_THAT(bad->message, HasSubstr("forge.yaml:1"));
  EXPECT_THAT(bad->fix, HasSubstr("forge-supervisor check-config --config"));

  std::ofstream(h_.dir.Path("forge.yaml")) << "workers: 3\n";
  EXPECT_NE(FindingWith(RunDoctor(Doctor(h_)), "config", Severity::kOk), nullptr);
}

TEST_F(OfflineTest, DoctorDiskThresholds) {
  DoctorOptions o = Doctor(h_);
  o.red_bytes = ~0ull;           // no filesystem has that much free
  auto findings = RunDoctor(o);  // FindingWith points into it: keep it alive
  const DoctorFinding* disk = FindingWith(findings, "disk", Severity::kRed);
  ASSERT_NE(disk, nullptr);
  EXPECT_THAT(disk->message, HasSubstr("free of"));
  EXPECT_THAT(disk->fix, HasSubstr(h_.state_dir + "/logs"));
}

TEST_F(OfflineTest, WatchOnceShowsARunningAttemptAndItsLastLine) {
  auto ids = writer_->Submit({Task("Being worked on")});
  ASSERT_TRUE(ids.ok());
  std::string id = (*ids)[0];
  Lease(id);
  std::string path = AttemptLogPath(h_.state_dir, id, 1);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << "thinking\nediting parser.cc\n\n";
  ASSERT_EQ(CmdWatch(h_.env, /*once=*/true), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr(id + "  running  #1"));
  EXPECT_THAT(h_.out.str(), HasSubstr("> editing parser.cc"));
  EXPECT_THAT(h_.out.str(), HasSubstr("supervisor not running"));
}

// The full-screen mode in a real pseudo-terminal: it shows the running
// attempt, quits on q, and restores the screen.
TEST_F(OfflineTest, WatchInAPseudoTerminalShowsARunningAttemptAndQuitsOnQ) {
  auto ids = writer_->Submit({Task("On screen")});
  ASSERT_TRUE(ids.ok());
  std::string id = (*ids)[0];
  Lease(id);
  std::string path = AttemptLogPath(h_.state_dir, id, 1);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << "running the tests\n";

  int master = -1;
  winsize size{};
  size.ws_row = 30;
  size.ws_col = 100;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string state = h_.state_dir;
    std::vector<std::string> args = {"forge-ctl", "--state-dir", state, "watch"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    std::ostringstream sink;
    ::_exit(RunCli(static_cast<int>(argv.size()), argv.data(), sink, std::cerr));
  }
  std::string screen;
  bool sent_q = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 200) > 0) {
      char buf[4096];
      ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0) break;  // the child exited and closed the terminal
      screen.append(buf, static_cast<size_t>(n));
    }
    if (!sent_q && screen.find("> running the tests") != std::string::npos) {
      ASSERT_EQ(::write(master, "q", 1), 1);
      sent_q = true;
    }
  }
  int status = 0;
  ::kill(pid, SIGKILL);  // no-op when it already quit
  ::waitpid(pid, &status, 0);
  ::close(master);
  EXPECT_TRUE(sent_q) << screen;
  EXPECT_THAT(screen, HasSubstr(id));
  EXPECT_THAT(screen, HasSubstr("On screen"));
  EXPECT_THAT(screen, HasSubstr("\x1b[?1049h"));  // entered the alternate screen
  EXPECT_THAT(screen, HasSubstr("\x1b[?1049l"));  // and left it
  ASSERT_TRUE(WIFEXITED(status)) << "killed: did not quit on q";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace forge::ctl
