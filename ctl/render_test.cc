#include "ctl/render.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "ctl/watch.h"

namespace forge::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kNow = 1'700'000'000'000;  // 2023-11-14T22:13:20.000Z
constexpr int64_t kSec = 1000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;

TEST(RelativeTime, PastFutureAndUnset) {
  EXPECT_EQ(RelativeTime(kNow, 0), "-");
  EXPECT_EQ(RelativeTime(kNow, kNow), "now");
  EXPECT_EQ(RelativeTime(kNow, kNow - 999), "now");
  EXPECT_EQ(RelativeTime(kNow, kNow - 12 * kSec), "12s ago");
  EXPECT_EQ(RelativeTime(kNow, kNow - 3 * kMin - 59 * kSec), "3m ago");
  EXPECT_EQ(RelativeTime(kNow, kNow - 2 * kHour), "2h ago");
  EXPECT_EQ(RelativeTime(kNow, kNow - 50 * kHour), "2d ago");
  EXPECT_EQ(RelativeTime(kNow, kNow + 5 * kMin), "in 5m");
}

TEST(HumanDuration, EachScale) {
  EXPECT_EQ(HumanDuration(0), "0ms");
  EXPECT_EQ(HumanDuration(350), "350ms");
  EXPECT_EQ(HumanDuration(12 * kSec + 400), "12s");
  EXPECT_EQ(HumanDuration(3 * kMin + 5 * kSec), "3m05s");
  EXPECT_EQ(HumanDuration(2 * kHour + 5 * kMin), "2h05m");
  EXPECT_EQ(HumanDuration(76 * kHour), "3d04h");
  EXPECT_EQ(HumanDuration(-5), "0ms");
}

TEST(Format, CostTokensOneLine) {
  EXPECT_EQ(FormatCost(0), "$0.00");
  EXPECT_EQ(FormatCost(1.234), "$1.23");
  EXPECT_EQ(FormatCost(0.0042), "$0.0042");
  EXPECT_EQ(FormatTokens(950), "950");
  EXPECT_EQ(FormatTokens(12'345), "12.3k");
  EXPECT_EQ(FormatTokens(4'560'000), "4.56M");
  EXPECT_EQ(OneLine("  a\n\tb   c \n"), "a b c");
  EXPECT_EQ(OneLine("abcdefghij", 5), "abcd…");
  EXPECT_EQ(OneLine("abcde", 5), "abcde");
  EXPECT_EQ(OneLine("ééééé", 3), "éé…");       // cut at code points, not bytes
  EXPECT_EQ(OneLine("中文字符", 5), "中文…");  // two columns each
  EXPECT_EQ(OneLine("中文字符", 4), "中…");
}

// Columns as a terminal shows them, not code points.
TEST(Format, DisplayWidthCountsColumns) {
  EXPECT_EQ(DisplayWidth("ab"), 2u);
  EXPECT_EQ(DisplayWidth("中文"), 4u);
  EXPECT_EQ(DisplayWidth("ｆｕｌｌ"), 8u);          // fullwidth forms
  EXPECT_EQ(DisplayWidth("\xF0\x9F\x98\x80"), 2u);  // an emoji
  EXPECT_EQ(DisplayWidth("e\xCC\x81"), 1u);         // e + combining acute
  EXPECT_EQ(DisplayWidth("\x1b"), 1u);              // shown as U+FFFD
  EXPECT_EQ(DisplayWidth("\xFF\xE4\xB8"), 3u);      // not UTF-8: a column a byte
  EXPECT_EQ(DisplayWidth("\xC0\x80"), 2u);          // overlong NUL
  EXPECT_EQ(DisplayWidth("\xED\xA0\x80"), 3u);      // a surrogate
  EXPECT_EQ(DisplayWidth("\xF5\x80\x80\x80"), 4u);  // past U+10FFFF
  EXPECT_EQ(GlyphAt("中", 0).bytes, 3u);
  EXPECT_EQ(GlyphAt("中", 0).columns, 2);
}

TEST(Table, AlignsColumnsWithoutTrailingSpaces) {
  Table t({"ID", "N", "NAME"});
  t.AlignRight(1);
  t.AddRow({"t1", "5", "short"});
  t.AddRow({"t10", "120", "é-accented"});
  EXPECT_EQ(t.Render(Style{}),
            "ID     N  NAME\n"
            "t1     5  short\n"
            "t10  120  é-accented\n");
}

TEST(Table, ColourDoesNotShiftColumns) {
  Table t({"A", "B"});
  t.AddRow({"x", "y"}, {Color::kRed});
  t.AddRow({"long", "z"});
  Style color{.color = true};
  std::string out = t.Render(color);
  EXPECT_THAT(out, HasSubstr("\x1b[31mx\x1b[0m     y\n"));
  EXPECT_THAT(out, HasSubstr("long  z\n"));
  EXPECT_THAT(Table({"A"}).Render(Style{}), Not(HasSubstr("\x1b")));
}

TEST(WantColor, OnlyOnTerminalsAndNotWithNoColor) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::unsetenv("NO_COLOR");
  EXPECT_FALSE(WantColor(fds[1]));  // a pipe is not a terminal
  ::setenv("NO_COLOR", "1", 1);
  EXPECT_FALSE(WantColor(fds[1]));
  ::unsetenv("NO_COLOR");
  ::close(fds[0]);
  ::close(fds[1]);
}

proto::TaskInfo TaskFixture(const std::string& id, proto::TaskState state,
                            const std::string& title) {
  proto::TaskInfo t;
  t.id = id;
  t.title = title;
  t.state = state;
  t.attempts = 1;
  t.max_attempts = 3;
  t.updated_at_ms = kNow - 3 * kMin;
  t.created_at_ms = kNow - kHour;
  t.cost_usd = 0.5;
  return t;
}

TEST(RenderTaskList, GoldenTable) {
  std::vector<proto::TaskInfo> tasks = {
      TaskFixture("t1", proto::TaskState::kRunning, "Fix the flaky test"),
      TaskFixture("t12", proto::TaskState::kBlocked, "Port the parser")};
  tasks[1].priority = 10;
  tasks[1].attempts = 3;
  EXPECT_EQ(RenderTaskList(tasks, kNow, Style{}),
            "ID   STATE    ATTEMPTS  PRI  UPDATED   COST  TITLE\n"
            "t1   running       1/3    0  3m ago   $0.50  Fix the flaky test\n"
            "t12  blocked       3/3   10  3m ago   $0.50  Port the parser\n");
  EXPECT_EQ(RenderTaskList({}, kNow, Style{}), "no tasks\n");
}

TEST(RenderTaskList, OnlyTheTitleGivesWayToTheWidth) {
  std::vector<proto::TaskInfo> tasks = {
      TaskFixture("t-with-a-long-id", proto::TaskState::kReady, std::string(200, 'x'))};
  Style narrow{.width = 80};
  std::string out = RenderTaskList(tasks, kNow, narrow);
  EXPECT_THAT(out, HasSubstr("t-with-a-long-id"));
  EXPECT_THAT(out, HasSubstr("…"));
  for (size_t pos = 0, next; (next = out.find('\n', pos)) != std::string::npos; pos = next + 1) {
    EXPECT_LE(DisplayWidth(out.substr(pos, next - pos)), 80u);
  }
  Style wide{.wide = true, .width = 80};
  EXPECT_THAT(RenderTaskList(tasks, kNow, wide), HasSubstr(std::string(200, 'x')));
}

// A CJK title takes two columns a character: the line still fits. (Counted
// here without DisplayWidth: ASCII 1, 中 2, the ellipsis 1.)
TEST(RenderTaskList, AWideTitleFitsTheTerminal) {
  std::string title;
  for (int i = 0; i < 100; ++i) title += "中";
  std::vector<proto::TaskInfo> tasks = {TaskFixture("t1", proto::TaskState::kReady, title)};
  std::string out = RenderTaskList(tasks, kNow, Style{.width = 80});
  auto columns = [](const std::string& line) {
    size_t n = 0;
    for (size_t i = 0; i < line.size();) {
      if (line.compare(i, 3, "中") == 0) {
        n += 2, i += 3;
      } else if (line.compare(i, 3, "…") == 0) {
        n += 1, i += 3;
      } else {
        n += 1, i += 1;
      }
    }
    return n;
  };
  EXPECT_THAT(out, HasSubstr("中中…"));
  for (size_t pos = 0, next; (next = out.find('\n', pos)) != std::string::npos; pos = next + 1) {
    std::string line = out.substr(pos, next - pos);
    EXPECT_LE(columns(line), 80u) << line;
    if (line.find("中") != std::string::npos) {
      EXPECT_GE(columns(line), 79u) << "fills the width: " << line;
    }
  }
}

TEST(RenderStatus, LiveWithChildrenPausesAndFailure) {
  proto::StatusReply s;
  s.pid = 4321;
  s.version = "0.1.0";
  s.state_dir = "/srv/.forge";
  s.uptime_ms = 2 * kHour + 5 * kMin;
  s.paused = true;
  s.pause_reasons = {{"circuit", "5 consecutive failures", kNow + 4 * kMin}};
  s.children = {{"worker", 100, "busy", "t7", 11, 2, 400, kNow - 3 * kMin - 5 * kSec, 0},
                {"critic", 101, "idle", "", 0, 0, 800, 0, 2}};
  s.queue = {{"pending", 1}, {"ready", 2}, {"running", 1}, {"done", 12}};
  s.cost_today_usd = 1.5;
  s.last_failure = proto::LastFailure{"t3", 2, "rejected", "make test: 2 failures", kNow - kMin};
  s.maintenance = proto::MaintenanceStatus{.last_job_id = 7,
                                           .last_outcome = "finished",
                                           .last_at_ms = kNow - 4 * kMin,
                                           .removed = 3,
                                           .logs_deleted = 12,
                                           .next_at_ms = kNow + 6 * kMin};
  EXPECT_EQ(RenderStatus(s, Reach::kLive, kNow, Style{}),
            "supervisor   running  pid 4321  up 2h05m  version 0.1.0\n"
            "state dir    /srv/.forge\n"
            "dispatch     paused by circuit: 5 consecutive failures (until "
            "2023-11-14T22:17:20.000Z, in 4m)\n"
            "children\n"
            "  ROLE    PID  STATE  TASK  ATTEMPT  HEARTBEAT  RUNTIME  RESTARTS\n"
            "  worker  100  busy   t7          2  400ms ago  3m05s           0\n"
            "  critic  101  idle   -           -  800ms ago  -               2\n"
            "queue        pending 1  ready 2  running 1  reviewing 0  cooldown 0  done 12  "
            "blocked 0  cancelled 0\n"
            "cost today   $1.50\n"
            "maintenance  last 4m ago: 3 removed, 12 logs deleted; next in 6m\n"
            "last failure t3 #2 rejected 1m ago: make test: 2 failures\n");
  // A reason of several lines (an operator's --reason, an error) keeps the
  // layout: one line each.
  s.pause_reasons = {{"operator", "deploying\nthe new repo", 0}};
  EXPECT_THAT(RenderStatus(s, Reach::kLive, kNow, Style{}),
              HasSubstr("dispatch     paused by operator: deploying the new repo (until "
                        "resumed)\nchildren\n"));
  // A stopping supervisor's pause is no `resume`'s to lift.
  s.pause_reasons = {{"shutdown", "supervisor is stopping", 0}};
  EXPECT_THAT(
      RenderStatus(s, Reach::kLive, kNow, Style{}),
      HasSubstr("dispatch     paused by shutdown: supervisor is stopping (until it exits)\n"));
}

TEST(RenderStatus, ChildStatesAreColouredByWhatTheyMean) {
  proto::StatusReply s;
  s.children = {{"worker", 100, "busy", "t7", 11, 2, 400, kNow - kMin, 0},
                {"worker", 101, "degraded", "", 0, 0, 800, 0, 0},
                {"worker", 102, "stopping", "", 0, 0, 800, 0, 0},
                {"worker", 103, "exited", "", 0, 0, 800, 0, 0},
                {"critic", 104, "idle", "", 0, 0, 800, 0, 0}};
  std::string out = RenderStatus(s, Reach::kLive, kNow, Style{.color = true});
  EXPECT_THAT(out, HasSubstr("\x1b[36mbusy\x1b[0m"));
  EXPECT_THAT(out, HasSubstr("\x1b[33mdegraded\x1b[0m"));
  EXPECT_THAT(out, HasSubstr("\x1b[2mstopping\x1b[0m"));
  EXPECT_THAT(out, HasSubstr("\x1b[2mexited\x1b[0m"));
  EXPECT_THAT(out, HasSubstr("  idle "));
  EXPECT_THAT(out, Not(HasSubstr("midle")));  // not painted
}

TEST(RenderStatus, MaintenanceRunningFailedWithErrorsAndDisabled) {
  auto line = [](const proto::MaintenanceStatus& m) {
    proto::StatusReply s;
    s.maintenance = m;
    std::string out = RenderStatus(s, Reach::kLive, kNow, Style{});
    size_t at = out.find("maintenance  ");
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  };
  EXPECT_EQ(line({.next_at_ms = kNow + 9 * kMin}),
            "maintenance  no pass since the supervisor started; next in 9m");
  EXPECT_EQ(line({.running_since_ms = kNow - 12 * kSec}), "maintenance  running for 12s");
  EXPECT_EQ(line({.running_since_ms = kNow - 12 * kSec,
                  .last_job_id = 6,
                  .last_outcome = "finished",
                  .last_at_ms = kNow - 10 * kMin,
                  .removed = 1}),
            "maintenance  running for 12s; last 10m ago: 1 removed, 0 logs deleted");
  EXPECT_EQ(line({.last_job_id = 6,
                  .last_outcome = "finished",
                  .last_at_ms = kNow - kMin,
                  .removed = 2,
                  .logs_deleted = 5,
                  .errors = {"removing '/s/workspaces/t1': Permission denied", "second"},
                  .next_at_ms = kNow + 9 * kMin}),
            "maintenance  last 1m ago: 2 removed, 5 logs deleted, 2 errors: removing "
            "'/s/workspaces/t1': Permission denied; next in 9m");
  EXPECT_EQ(line({.last_job_id = 8,
                  .last_outcome = "failed",
                  .last_at_ms = kNow - 2 * kMin,
                  .errors = {"worker exited: killed by SIGKILL"},
                  .next_at_ms = kNow + 8 * kMin}),
            "maintenance  last 2m ago failed: worker exited: killed by SIGKILL; next in 8m");
  EXPECT_EQ(line({.last_job_id = 9,
                  .last_outcome = "finished",
                  .last_at_ms = kNow - 10 * kMin,
                  .next_at_ms = kNow - 30 * kSec}),
            "maintenance  last 10m ago: 0 removed, 0 logs deleted; next due now");
  EXPECT_EQ(line({}), "maintenance  no pass since the supervisor started (disabled)");
  // An older supervisor, or the database alone: no line at all.
  proto::StatusReply none;
  EXPECT_THAT(RenderStatus(none, Reach::kLive, kNow, Style{}), Not(HasSubstr("maintenance")));
}

TEST(RenderStatus, OfflineSaysSo) {
  proto::StatusReply s;
  std::string out = RenderStatus(s, Reach::kOffline, kNow, Style{});
  EXPECT_THAT(out, HasSubstr("supervisor   not running (showing the database)\n"));
  EXPECT_THAT(out, Not(HasSubstr("dispatch")));
}

TEST(RenderStatus, UnansweredNamesTheLockHolder) {
  proto::StatusReply s;
  s.pid = 4321;
  std::string out = RenderStatus(s, Reach::kUnanswered, kNow, Style{});
  EXPECT_THAT(
      out,
      HasSubstr("supervisor   not answering  pid 4321 holds the lock (showing the database)\n"));
  EXPECT_THAT(out, Not(HasSubstr("dispatch")));
}

TEST(RenderEventLine, Golden) {
  proto::EventInfo e;
  e.seq = 42;
  e.ts_ms = kNow;
  e.kind = "attempt.closed";
  e.task_id = "t7";
  e.attempt = 2;
  e.payload = {{"outcome", "failed"}, {"error", "exit 1: boom"}, {"cost_usd", 0.25}};
  EXPECT_EQ(RenderEventLine(e, Style{}),
            "    42  2023-11-14T22:13:20.000Z  attempt.closed  t7  #2  cost_usd=0.25 "
            "error=\"exit 1: boom\" outcome=failed");
}

TEST(RenderEventLine, SubmittedShowsWhatIdentifiesTheTask) {
  proto::EventInfo e;
  e.seq = 2;
  e.ts_ms = kNow;
  e.kind = "task.submitted";
  e.task_id = "t1";
  e.payload = {{"title", "Smoke one"},
               {"brief", "long brief"},
               {"priority", 0},
               {"kind", "work"},
               {"depends_on", proto::json::array()},
               {"env", {{"A", "1"}}},
               {"needs_approval", true},
               {"repo", ""}};
  EXPECT_EQ(RenderEventLine(e, Style{}),
            "     2  2023-11-14T22:13:20.000Z  task.submitted  t1  needs_approval=true "
            "title=\"Smoke one\"");
  e.kind = "task.blocked";
  e.payload = {{"reason", "same failure twice"}, {"commit", ""}, {"exit_code", 0}};
  EXPECT_EQ(RenderEventLine(e, Style{}),
            "     2  2023-11-14T22:13:20.000Z  task.blocked  t1  exit_code=0 "
            "reason=\"same failure twice\"");
}

TEST(RenderChange, SaysWhatChanged) {
  EXPECT_EQ(RenderChange({"t1", "blocked", "ready", "retried by operator"}, Style{}),
            "t1: blocked -> ready (retried by operator)");
  EXPECT_EQ(RenderChange({"t1", "done", "done", ""}, Style{}), "t1: done, unchanged");
  EXPECT_EQ(RenderChange({"t1", "ready", "ready", "approved"}, Style{}),
            "t1: ready, unchanged (approved)");
  EXPECT_EQ(RenderChange({"t1", "cancelled", "cancelled", "already cancelled"}, Style{}),
            "t1: cancelled, unchanged (already cancelled)");
}

// Only a review with a failing check points at its whole output.
TEST(RenderShow, AReviewThatPassedNamesNoLog) {
  proto::ShowReply show;
  show.task = TaskFixture("t8", proto::TaskState::kDone, "Fix it");
  proto::AttemptInfo a;
  a.n = 1;
  a.outcome = "passed";
  a.verdict = "pass";
  a.checks = {{.name = "make test",
               .exit_code = 0,
               .duration_ms = 1500,
               .passed = true,
               .output_tail = "ok\n"}};
  show.attempts = {a};
  show.task.last_error = "agent exited with exit 1";  // an earlier attempt's
  std::string out = RenderShow(show, kNow, Style{});
  EXPECT_THAT(out, HasSubstr("review of attempt 1: pass\n  PASS  make test  (1s)\n"));
  EXPECT_THAT(out, Not(HasSubstr("whole output")));
  EXPECT_THAT(out, Not(HasSubstr("last error")));
}

// A blocked task says what stopped its retries (the last error is the
// agent's), and a cut timeline says how many earlier events it leaves out
// and what prints them.
TEST(RenderShow, WhyItIsBlockedAndWhatTheTimelineLeavesOut) {
  proto::ShowReply show;
  show.task = TaskFixture("t9", proto::TaskState::kBlocked, "Fix it");
  show.task.attempts = 1;
  show.task.max_attempts = 10;
  show.task.last_error = "error: broke zz";
  show.state_reason = "task budget exceeded ($1.20 of $1.00)";
  proto::EventInfo e;
  e.seq = 1401;
  e.ts_ms = kNow;
  e.kind = "task.blocked";
  e.task_id = "t9";
  show.timeline = {e};
  show.timeline_omitted = 400;
  Style elsewhere;
  elsewhere.ctl = "forge-ctl --state-dir /srv/f";
  std::string out = RenderShow(show, kNow, elsewhere);
  EXPECT_THAT(out, HasSubstr("state        blocked  (attempts 1/10)\n"
                             "reason       task budget exceeded ($1.20 of $1.00)\n"));
  EXPECT_THAT(out, HasSubstr("last error   error: broke zz\n"));
  EXPECT_THAT(out, HasSubstr("timeline\n"
                             "  (400 earlier events left out; all of them: forge-ctl --state-dir "
                             "/srv/f events --task t9)\n"
                             "    1401  "));
  show.state_reason.clear();
  show.timeline_omitted = 0;
  out = RenderShow(show, kNow, Style{});
  EXPECT_THAT(out, Not(HasSubstr("reason")));
  EXPECT_THAT(out, Not(HasSubstr("left out")));
}

TEST(RenderShow, FieldsLedgerReviewAndTimeline) {
  proto::ShowReply show;
  show.task = TaskFixture("t7", proto::TaskState::kBlocked, "Fix it");
  show.task.brief = "line one\nline two";
  show.task.repo = "/src/app";
  show.task.base = "main";
  show.task.base_commit = "0123456789abcdef0123456789abcdef01234567";
  show.task.branch = "forge/t7";
  show.task.verify = {"make test"};
  show.task.last_error = "same failure twice";
  proto::AttemptInfo a;
  a.n = 1;
  a.outcome = "rejected";
  a.started_at_ms = kNow - 10 * kMin;
  a.ended_at_ms = kNow - 7 * kMin;
  a.duration_ms = 3 * kMin;
  a.cost_usd = 0.25;
  a.tokens_in = 1200;
  a.tokens_out = 3400;
  a.num_turns = 7;
  a.exit_code = 0;
  a.error = "make test failed";
  a.session_id = "sess-1";
  a.verdict = "reject";
  a.checks = {{"make test", 2, 0, 1500, false, false, "FAIL: test_x\n"}};
  a.findings = {{"sev2", "tests", "x_test.cc", 12, "does not test the edge case"}};
  proto::AttemptInfo lost = a;
  lost.n = 2;
  lost.outcome = "lost";
  lost.counted = false;
  lost.checks.clear();
  lost.findings.clear();
  lost.error = "heartbeat timeout";
  show.attempts = {a, lost};
  proto::EventInfo e;
  e.seq = 3;
  e.ts_ms = kNow - 10 * kMin;
  e.kind = "task.submitted";
  e.task_id = "t7";
  show.timeline = {e};

  std::string out = RenderShow(show, kNow, Style{});
  EXPECT_THAT(out, HasSubstr("task         t7  Fix it\n"));
  EXPECT_THAT(out, HasSubstr("state        blocked  (attempts 1/3)\n"));
  EXPECT_THAT(out, HasSubstr("repo         /src/app @ main\n"
                             "base commit  0123456789abcdef0123456789abcdef01234567\n"
                             "branch       forge/t7\n"));
  EXPECT_THAT(out, HasSubstr("verify       make test\n"));
  EXPECT_THAT(out, HasSubstr("last error   same failure twice\n"));
  EXPECT_THAT(out, HasSubstr("brief\n  line one\n  line two\n"));
  EXPECT_THAT(out, HasSubstr("  #  OUTCOME   STARTED  DURATION   COST  TOKENS IN/OUT  TURNS  EXIT  "
                             "ERROR\n"
                             "  1  rejected  10m ago     3m00s  $0.25  1.2k/3.4k          7  0     "
                             "make test failed\n"
                             "  2  lost*     10m ago     3m00s  $0.25  1.2k/3.4k          7  0     "
                             "heartbeat timeout\n"));
  EXPECT_THAT(out, HasSubstr("* not counted toward max attempts"));
  EXPECT_THAT(out, HasSubstr("#1: session sess-1"));
  EXPECT_THAT(out, HasSubstr("review of attempt 1: reject\n  FAIL  make test  (1s, exit 2)\n"
                             "        FAIL: test_x\n"
                             "  whole output: forge-ctl logs t7 --review --attempt 1\n"));
  EXPECT_THAT(out, HasSubstr("  sev2  tests  x_test.cc:12  does not test the edge case\n"));

  EXPECT_THAT(out, HasSubstr("timeline\n       3  2023-11-14T22:03:20.000Z  task.submitted  t7\n"));

  // Another state directory: the hint runs as printed.
  Style elsewhere;
  elsewhere.ctl = "forge-ctl --state-dir '/srv/my forge'";
  EXPECT_THAT(RenderShow(show, kNow, elsewhere),
              HasSubstr("  whole output: forge-ctl --state-dir '/srv/my forge' logs t7 --review "
                        "--attempt 1\n"));
}

}  // namespace
}  // namespace forge::ctl

namespace forge::ctl {
namespace {

std::string StripAnsi(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b') {
      i = s.find('m', i);
      continue;
    }
    out += s[i];
  }
  return out;
}

TEST(RenderWatch, FitsTheTerminalWithColour) {
  WatchData d;
  d.reach = Reach::kLive;
  d.status.pid = 9;
  d.status.queue = {{"running", 1}, {"ready", 1}};
  RunningAttempt r;
  r.task = TaskFixture("t3", proto::TaskState::kRunning, std::string(120, 'T'));
  r.attempt.n = 2;
  r.attempt.started_at_ms = kNow - 65 * kSec;
  r.last_line = "compiling " + std::string(100, 'x');
  d.running = {r};
  d.queued = {TaskFixture("t4", proto::TaskState::kReady, "Next one")};
  Style color{.color = true};
  std::string out = RenderWatch(d, kNow, 40, 0, color);
  std::string plain = StripAnsi(out);
  EXPECT_THAT(plain, HasSubstr("t3  running  #2  1m05s  TTTT"));
  EXPECT_THAT(plain, HasSubstr("    > compiling xxx"));
  EXPECT_THAT(plain, HasSubstr("t4  ready  p0  Next one"));
  for (size_t pos = 0, next; (next = plain.find('\n', pos)) != std::string::npos; pos = next + 1) {
    EXPECT_LE(DisplayWidth(plain.substr(pos, next - pos)), 40u) << plain.substr(pos, next - pos);
  }
  // Every colour that was started and cut is reset.
  for (size_t pos = 0, next; (next = out.find('\n', pos)) != std::string::npos; pos = next + 1) {
    std::string line = out.substr(pos, next - pos);
    size_t opens = 0, resets = 0;
    for (size_t i = line.find("\x1b["); i != std::string::npos; i = line.find("\x1b[", i + 1)) {
      line.compare(i, 4, "\x1b[0m") == 0 ? ++resets : ++opens;
    }
    EXPECT_GE(resets, opens) << line;
  }
  // Height limits the lines.
  std::string three = RenderWatch(d, kNow, 0, 3, Style{});
  EXPECT_EQ(std::count(three.begin(), three.end(), '\n'), 3);
}

// A sequence in a title or a log line reaches the terminal as U+FFFD and
// text (ctl/terminal.h): it is measured as that, so the line still fits.
TEST(RenderWatch, ASequenceInATitleIsMeasuredAsWhatTheTerminalShows) {
  WatchData d;
  d.reach = Reach::kLive;
  RunningAttempt r;
  r.task = TaskFixture("t3", proto::TaskState::kRunning,
                       "\x1b[2J\x1b[31mred\x1b]0;owned\x07" + std::string(60, 'T'));
  r.attempt.n = 1;
  r.last_line = "\x1b[1A\x1b[2K" + std::string(60, 'x');
  d.running = {r};
  std::string out = RenderWatch(d, kNow, 40, 0, Style{.color = true});
  EXPECT_EQ(out.find("\x1b[2J"), std::string::npos) << "made safe before it was cut";
  EXPECT_THAT(out, HasSubstr("\xEF\xBF\xBD[2J"));
  std::string plain = StripAnsi(out);
  for (size_t pos = 0, next; (next = plain.find('\n', pos)) != std::string::npos; pos = next + 1) {
    EXPECT_LE(DisplayWidth(plain.substr(pos, next - pos)), 40u) << plain.substr(pos, next - pos);
  }
}

}  // namespace
}  // namespace forge::ctl
