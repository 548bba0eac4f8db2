// forge-supervisor end to end: dispatch, review, retry policy, daemon mode.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;

std::vector<std::string> Outcomes(const std::vector<proto::AttemptInfo>& attempts) {
  std::vector<std::string> out;
  for (const auto& a : attempts) out.push_back(a.outcome);
  return out;
}

TEST(Supervisor, AgentThatSucceedsIsDoneInOneAttempt) {
  Forge forge;
  forge.Start();
  std::string id = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << proto::StateName(forge.Task(id).state);
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_EQ(attempts[0].verdict, "pass");
  EXPECT_NE(attempts[0].ended_at_ms, 0);
  for (const char* kind : {"task.submitted", "attempt.started", "attempt.result", "task.reviewing",
                           "attempt.ended", "task.done"}) {
    EXPECT_TRUE(forge.HasEvent(id, kind)) << kind;
  }
  // The agent's start is recorded whether the worker reported it on its own
  // (the agent ran kStartedReportDelayMs) or in the result (it ended first),
  // and it reads before the result.
  EXPECT_GT(attempts[0].agent_pid, 0);
  std::vector<std::string> agent_events;
  for (const auto& e : forge.Events(id, "attempt.")) {
    if (e.kind == "attempt.agent_started" || e.kind == "attempt.result") {
      agent_events.push_back(e.kind);
    }
  }
  EXPECT_EQ(agent_events, (std::vector<std::string>{"attempt.agent_started", "attempt.result"}));
  // The operator's brief reaches the agent's prompt (it crosses the socket
  // in the dispatch's task only).
  std::ifstream prompt(forge.state_dir() + "/logs/" + id + "/1.prompt");
  std::string text(std::istreambuf_iterator<char>(prompt), {});
  EXPECT_NE(text.find(forge.Task(id).brief), std::string::npos) << text;
  EXPECT_EQ(forge.Runs().size(), 1u);
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
}

TEST(Supervisor, FiftyTasksAcrossTwoWorkersAllDoneExactlyOnce) {
  Forge forge;
  forge.Start();
  auto ids = forge.SubmitMany(50, "succeed");
  ASSERT_EQ(ids.size(), 50u);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto counts = forge.db().QueueCounts();
        return counts.ok() && (*counts)["done"] == 50;
      },
      60'000));
  std::set<int64_t> workers;
  for (const auto& id : ids) {
    auto attempts = forge.Attempts(id);
    ASSERT_EQ(attempts.size(), 1u) << id;
    EXPECT_EQ(attempts[0].outcome, "passed");
    workers.insert(attempts[0].worker_pid);
  }
  EXPECT_EQ(workers.size(), 2u) << "both workers should have taken tasks";
  auto runs = forge.Runs();
  EXPECT_EQ(runs.size(), 50u);
  std::set<std::string> tasks;
  for (const auto& r : runs) tasks.insert(r.substr(0, r.find(' ')));
  EXPECT_EQ(tasks.size(), 50u) << "each task ran exactly once";
}

TEST(Supervisor, FailsTwiceThenSucceedsWithCooldowns) {
  Forge forge;
  forge.Start();
  std::string id = forge.Submit("fail_then_succeed", {{"FAKE_FAILS", "2"}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  auto attempts = forge.Attempts(id);
  EXPECT_EQ(Outcomes(attempts), (std::vector<std::string>{"failed", "failed", "passed"}));
  EXPECT_EQ(forge.Events(id, "task.cooldown").size(), 2u);
  // Each retry waited out its backoff (base 50 ms, -20 % jitter at worst:
  // 40 ms). The due time is on the supervisor's steady-derived wall clock, the
  // stamps on the store's wall clock, each cut to whole milliseconds, so the
  // two can differ by a millisecond; a preemption between the decision and
  // the stamp can cost a few more. Without the backoff the gap is about 1 ms.
  constexpr int64_t kClockSlackMs = 5;
  for (size_t i = 1; i < attempts.size(); ++i) {
    EXPECT_GE(attempts[i].started_at_ms - attempts[i - 1].ended_at_ms, 40 - kClockSlackMs) << i;
  }
  EXPECT_NE(attempts[0].fingerprint, attempts[1].fingerprint);
  // Each retry's brief carries the attempts before it (the failure
  // evidence); the first has none.
  auto prompt = [&](int n) {
    std::ifstream in(forge.state_dir() + "/logs/" + id + "/" + std::to_string(n) + ".prompt");
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(prompt(1).find("Previous attempts"), std::string::npos) << prompt(1);
  EXPECT_NE(prompt(2).find("### Attempt 1: failed"), std::string::npos) << prompt(2);
  EXPECT_NE(prompt(3).find("### Attempt 2: failed"), std::string::npos) << prompt(3);
  EXPECT_NE(prompt(3).find("### Attempt 1: failed"), std::string::npos) << prompt(3);
}

// The agent's brief lists every check the review runs: the config's, then
// the task's.
TEST(Supervisor, TheBriefListsTheConfigsChecksAndTheTasks) {
  ForgeOptions o;
  o.verify = {"test -f result.txt"};
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("succeed", {}, json{{"verify", {"grep -q done result.txt"}}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  std::ifstream in(forge.state_dir() + "/logs/" + id + "/1.prompt");
  std::string prompt(std::istreambuf_iterator<char>(in), {});
  size_t config_check = prompt.find("    test -f result.txt\n");
  size_t task_check = prompt.find("    grep -q done result.txt\n");
  ASSERT_NE(config_check, std::string::npos) << prompt;
  ASSERT_NE(task_check, std::string::npos) << prompt;
  EXPECT_LT(config_check, task_check);
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  ASSERT_EQ(attempts[0].checks.size(), 2u);
  EXPECT_EQ(attempts[0].checks[0].name, "test -f result.txt");
}

TEST(Supervisor, DifferentErrorsEveryTimeBlockAfterMaxAttempts) {
  Forge forge;
  forge.Start();
  std::string id = forge.Submit("fail_different");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  auto attempts = forge.Attempts(id);
  EXPECT_EQ(Outcomes(attempts), (std::vector<std::string>{"failed", "failed", "failed"}));
  auto blocked = forge.Events(id, "task.blocked");
  ASSERT_EQ(blocked.size(), 1u);
  EXPECT_NE(blocked[0].payload.dump().find("attempts exhausted"), std::string::npos)
      << blocked[0].payload.dump();
  // forge-ctl show says why, not only the last attempt's error.
  auto [rc, out] = RunCtl(forge.state_dir(), {"show", id});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\nreason       attempts exhausted (3 of 3)\n"), std::string::npos) << out;
  auto [jrc, jout] = RunCtl(forge.state_dir(), {"show", id, "--json"});
  ASSERT_EQ(jrc, 0) << jout;
  EXPECT_EQ(json::parse(jout)["state_reason"], "attempts exhausted (3 of 3)") << jout;
}

TEST(Supervisor, SameErrorTwiceBlocksAfterTwo) {
  Forge forge;
  forge.Start();
  std::string id = forge.Submit("fail_same");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  auto attempts = forge.Attempts(id);
  EXPECT_EQ(Outcomes(attempts), (std::vector<std::string>{"failed", "failed"}));
  EXPECT_EQ(attempts[0].fingerprint, attempts[1].fingerprint);
  auto blocked = forge.Events(id, "task.blocked");
  ASSERT_EQ(blocked.size(), 1u);
  EXPECT_NE(blocked[0].payload.dump().find("same failure twice"), std::string::npos);
}

// A task two steps down from a blocked one will not run until an operator
// retries that one: `forge-ctl wait` says so and exits 1 instead of waiting
// forever, and each time that one gets stuck the task's timeline says so.
TEST(Supervisor, WaitEndsOnATaskStuckBehindABlockedDependency) {
  ForgeOptions o;
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  const std::string fails = forge.Submit("fail_different");
  ASSERT_TRUE(forge.WaitState(fails, TaskState::kBlocked));
  const std::string middle = forge.Submit("succeed", {}, json{{"depends_on", {fails}}});
  const std::string last = forge.Submit("succeed", {}, json{{"depends_on", {middle}}});
  SpawnOptions wait;
  wait.argv = {BinPath("forge-ctl"), "--state-dir", forge.state_dir(), "wait", last,
               "--timeout",          "60"};
  wait.env = CurrentEnvironment();
  auto r = RunCommand(wait, 60'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status.exit_code, 1) << r->output;
  EXPECT_NE(r->output.find(last + "  pending  (waits on " + fails + ", blocked: retry it)"),
            std::string::npos)
      << r->output;
  auto waiting = forge.Events(last, "task.waiting");
  ASSERT_EQ(waiting.size(), 1u);
  EXPECT_EQ(waiting[0].payload["via"], middle);

  // Retried, it fails again: blocked anew. Its own dependent is told again;
  // the last one's event names it still, and wait ends on it again.
  ASSERT_TRUE(forge.ctl().Call("retry", json{{"id", fails}}).ok());
  ASSERT_TRUE(WaitFor([&] { return forge.Events(middle, "task.waiting").size() == 2; }, 10'000))
      << "stuck again: told again";
  EXPECT_EQ(forge.Task(fails).state, TaskState::kBlocked);
  auto again = RunCommand(wait, 60'000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status.exit_code, 1) << again->output;
}

// Why wait ends: each blocked or cancelled task's line names its reason,
// as show's does (session 35: only show said it), and so does ls --json.
TEST(Supervisor, WaitAndLsSayWhyATaskIsBlockedOrCancelled) {
  ForgeOptions o;
  o.max_attempts = 1;
  o.verify = {"false"};
  Forge forge(o);
  forge.Start();
  const std::string blocked = forge.Submit("succeed");
  // Started before the task is blocked, most likely: it reads that from the
  // log and asks show before it exits. Either way it ends the same.
  auto [rc, out] = RunCtl(forge.state_dir(), {"wait", blocked, "--timeout", "60"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_EQ(out, blocked + "  blocked  (reason: attempts exhausted (1 of 1))\n");

  const std::string gated = forge.Submit("succeed", {}, json{{"needs_approval", true}});
  ASSERT_EQ(RunCtl(forge.state_dir(), {"cancel", gated}).first, 0);
  auto [both_rc, both] = RunCtl(forge.state_dir(), {"wait", blocked, gated, "--timeout", "60"});
  EXPECT_EQ(both_rc, 1) << both;
  EXPECT_EQ(both, blocked + "  blocked  (reason: attempts exhausted (1 of 1))\n" + gated +
                      "  cancelled  (reason: cancelled by operator)\n");
  auto [json_rc, json_out] =
      RunCtl(forge.state_dir(), {"wait", blocked, gated, "--timeout", "60", "--json"});
  EXPECT_EQ(json_rc, 1) << json_out;
  const json waited = json::parse(json_out);
  EXPECT_EQ(waited["tasks"][0]["state_reason"], "attempts exhausted (1 of 1)") << json_out;
  EXPECT_EQ(waited["tasks"][1]["state_reason"], "cancelled by operator") << json_out;

  const std::string other = forge.Submit("succeed", {}, json{{"needs_approval", true}});
  auto [ls_rc, ls_out] = RunCtl(forge.state_dir(), {"ls", "--json"});
  ASSERT_EQ(ls_rc, 0) << ls_out;
  std::map<std::string, json> reasons;
  for (const auto& t : json::parse(ls_out)) reasons[t["id"].get<std::string>()] = t["state_reason"];
  EXPECT_EQ(reasons[blocked], "attempts exhausted (1 of 1)") << ls_out;
  EXPECT_EQ(reasons[gated], "cancelled by operator") << ls_out;
  EXPECT_EQ(reasons[other], "") << ls_out;
}

// A cancel's --reason is the task's reason wherever a reason shows: show,
// wait, ls --json, the task.cancelled event; of a running task it is also
// its attempt's error.
TEST(Supervisor, ACancelsReasonShowsWhereverTheReasonDoes) {
  Forge forge;
  forge.Start();
  const std::string gated = forge.Submit("succeed", {}, json{{"needs_approval", true}});
  const std::string running = forge.Submit("hang_silent");
  ASSERT_TRUE(forge.WaitState(running, TaskState::kRunning));
  const std::string why = "superseded by t9";
  for (const std::string& id : {gated, running}) {
    auto [rc, out] = RunCtl(forge.state_dir(), {"cancel", id, "--reason", why});
    ASSERT_EQ(rc, 0) << out;
    EXPECT_EQ(forge.Task(id).state, TaskState::kCancelled);
    const auto events = forge.Events(id, "task.cancelled");
    ASSERT_EQ(events.size(), 1u) << id;
    EXPECT_EQ(events[0].payload["reason"], why) << id;
    auto [show_rc, show] = RunCtl(forge.state_dir(), {"show", id});
    EXPECT_EQ(show_rc, 0) << show;
    EXPECT_NE(show.find("\nreason       " + why + "\n"), std::string::npos) << show;
  }
  EXPECT_EQ(forge.Attempts(running).at(0).error, why);

  auto [wait_rc, wait_out] = RunCtl(forge.state_dir(), {"wait", gated, running, "--timeout", "60"});
  EXPECT_EQ(wait_rc, 1) << wait_out;
  EXPECT_EQ(wait_out, gated + "  cancelled  (reason: " + why + ")\n" + running +
                          "  cancelled  (reason: " + why + ")\n");
  auto [ls_rc, ls_out] = RunCtl(forge.state_dir(), {"ls", "--json"});
  ASSERT_EQ(ls_rc, 0) << ls_out;
  for (const auto& t : json::parse(ls_out)) EXPECT_EQ(t["state_reason"], why) << ls_out;
}

// A cancel again changes nothing and exits 0, as an approve again does
// (session 35: exit 1), so a cleanup script may run twice; no event is
// written. A done task is still refused.
TEST(Supervisor, CancelOfACancelledTaskIsUnchanged) {
  Forge forge;
  forge.Start();
  const std::string id = forge.Submit("succeed", {}, json{{"needs_approval", true}});
  auto [rc, out] = RunCtl(forge.state_dir(), {"cancel", id});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out, id + ": pending -> cancelled (cancelled)\n");
  const size_t events = forge.Events(id).size();
  auto [again_rc, again] = RunCtl(forge.state_dir(), {"cancel", id});
  EXPECT_EQ(again_rc, 0) << again;
  EXPECT_EQ(again, id + ": cancelled, unchanged (already cancelled)\n");
  auto [json_rc, json_out] = RunCtl(forge.state_dir(), {"cancel", id, "--json"});
  ASSERT_EQ(json_rc, 0) << json_out;
  EXPECT_EQ(json::parse(json_out), (json{{"id", id},
                                         {"previous_state", "cancelled"},
                                         {"state", "cancelled"},
                                         {"message", "already cancelled"}}));
  EXPECT_EQ(forge.Events(id).size(), events) << "no event for a cancel that changed nothing";
  EXPECT_EQ(forge.Task(id).state, TaskState::kCancelled);

  const std::string done = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(done, TaskState::kDone));
  auto [done_rc, done_out] = RunCtl(forge.state_dir(), {"cancel", done});
  EXPECT_EQ(done_rc, 1) << done_out;
  EXPECT_EQ(done_out, "forge-ctl: task " + done + " is already done; nothing to cancel\n");
  EXPECT_EQ(forge.Task(done).state, TaskState::kDone);
}

TEST(Supervisor, CriticRejectionIsRetriedWithTheCheckInHistory) {
  ForgeOptions o;
  o.verify = {"test -f result.txt && grep -q second result.txt"};
  o.max_attempts = 2;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  auto attempts = forge.Attempts(id);
  EXPECT_EQ(Outcomes(attempts), (std::vector<std::string>{"rejected", "rejected"}));
  ASSERT_FALSE(attempts[0].checks.empty());
  EXPECT_FALSE(attempts[0].checks[0].passed);
  EXPECT_EQ(attempts[0].verdict, "reject");
}

TEST(Supervisor, CancelKillsTheRunningAttempt) {
  Forge forge;
  forge.Start();
  std::string id = forge.Submit("hang_silent");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kRunning));
  ASSERT_TRUE(WaitFor([&] { return forge.Attempts(id).at(0).agent_pid != 0; }, 5000));
  pid_t agent = static_cast<pid_t>(forge.Attempts(id)[0].agent_pid);
  auto r = forge.ctl().Call("cancel", json{{"id", id}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["state"], "cancelled");
  EXPECT_TRUE(forge.WaitState(id, TaskState::kCancelled));
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(agent); }, 5000)) << "agent still alive";
  EXPECT_EQ(forge.Attempts(id)[0].outcome, "cancelled");
  // The worker is free again.
  std::string next = forge.Submit("succeed");
  EXPECT_TRUE(forge.WaitState(next, TaskState::kDone));
}

// An attempt whose agent passed waits for a free critic with the task its
// result's transaction read; cancelling it must take it out of that queue,
// since the review is not checked against the store again.
// A critic agent that answers `answer_from`-th run on (0: never) in prose
// before that; its runs are counted in <dir>/critic-runs.
std::string CriticScript(const std::string& dir, int answer_from) {
  const std::string script = dir + "/critic.sh";
  const std::string count = dir + "/critic-runs";
  std::ofstream(script) << "#!/bin/sh\ncat >/dev/null\necho x >> '" << count << "'\n"
                        << "if [ " << answer_from << " -eq 0 ] || [ $(wc -l < '" << count
                        << "') -lt " << answer_from
                        << " ]; then echo 'rate limited, try later'; exit 0; fi\n"
                           "echo '{\"overall\":\"approve\"}'\n";
  EXPECT_EQ(::chmod(script.c_str(), 0755), 0);
  return script;
}

int Lines(const std::string& path) {
  std::ifstream in(path);
  return static_cast<int>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
}

// A started Forge whose tasks get one attempt and whose critic agent is
// CriticScript(answer_from), in a directory of its own removed at the end.
class CriticAgentForge {
 public:
  explicit CriticAgentForge(int answer_from) {
    char tmpl[] = "/tmp/forge-critic-agent-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ForgeOptions o;
    o.max_attempts = 1;
    o.critic_yaml =
        "  agent: {profile: command, command: [\"" + CriticScript(dir_, answer_from) + "\"]}\n";
    forge_ = std::make_unique<Forge>(o);
    forge_->Start();
  }
  ~CriticAgentForge() { std::filesystem::remove_all(dir_); }
  Forge& forge() { return *forge_; }
  int critic_runs() const { return Lines(dir_ + "/critic-runs"); }

 private:
  std::string dir_;
  std::unique_ptr<Forge> forge_;
};

// A review that gives no verdict (the critic agent's answer does not parse,
// twice) says nothing about the agent's work: the same work is reviewed
// again, and the agent does not run again.
TEST(Supervisor, AReviewWithoutAVerdictReviewsTheSameWorkAgain) {
  CriticAgentForge f(3);
  Forge& forge = f.forge();
  std::string id = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_EQ(forge.Attempts(id).size(), 1u);
  EXPECT_EQ(forge.Runs().size(), 1u) << "the agent ran again";
  auto again = forge.Events(id, "attempt.review_again");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].payload["review"], 1);
  EXPECT_EQ(f.critic_runs(), 3);
}

// A critic that never answers: three reviews (two runs each), then the
// attempt fails and counts; the agent ran once.
TEST(Supervisor, ACriticThatNeverAnswersCostsABoundedNumberOfRuns) {
  CriticAgentForge f(0);
  Forge& forge = f.forge();
  std::string id = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_TRUE(attempts[0].counted);
  EXPECT_NE(attempts[0].error.find("critic error: critic agent gave no verdict"), std::string::npos)
      << attempts[0].error;
  EXPECT_EQ(forge.Runs().size(), 1u);
  EXPECT_EQ(forge.Events(id, "attempt.review_again").size(), 2u);
  EXPECT_EQ(f.critic_runs(), 6);
}

// A critic agent (claude profile) that meets its rate limit on its first
// `limited` runs (every run: -1), each costing `usd`, then approves; its
// runs are counted in <dir>/critic-runs.
std::string RateLimitedCriticScript(const std::string& dir, int limited, double usd) {
  const std::string script = dir + "/critic.sh";
  const std::string count = dir + "/critic-runs";
  std::ofstream(script)
      << "#!/bin/sh\ncat >/dev/null\necho x >> '" << count << "'\n"
      << "if [ " << limited << " -lt 0 ] || [ $(wc -l < '" << count << "') -le " << limited
      << " ]; then\n"
      << "  echo '{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"is_error\":true,"
         "\"api_error_status\":429,\"result\":\"rate limited\",\"total_cost_usd\":"
      << usd << "}'; exit 1; fi\n"
      << "echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
         "\"result\":\"{\\\"overall\\\":\\\"approve\\\"}\"}'\n";
  EXPECT_EQ(::chmod(script.c_str(), 0755), 0);
  return script;
}

// Each time the critic meets its limit dispatch pauses as for an agent's,
// the review waits for the pause (`resume` here) and is not counted, so the
// fourth review's approval passes the attempt; the agent ran once.
TEST(Supervisor, ACriticsRateLimitPausesAndTheSameWorkIsReviewedAfterIt) {
  char tmpl[] = "/tmp/forge-critic-agent-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string count = dir + "/critic-runs";
  ForgeOptions o;
  o.max_attempts = 1;
  o.critic_yaml =
      "  agent: {profile: claude, command: [\"" + RateLimitedCriticScript(dir, 3, 0) + "\"]}\n";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("succeed");
  for (size_t k = 1; k <= 3; ++k) {
    ASSERT_TRUE(
        WaitFor([&] { return forge.Events(id, "attempt.review_again").size() == k; }, 20'000))
        << forge.SupervisorLog();
    ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("rate_limit"); }, 5000));
    // Two status round trips: the loop has passed TryReview since the
    // event, and no critic took the review while the pause holds.
    (void)forge.Status();
    json status = forge.Status();
    for (const auto& c : status["children"]) {
      EXPECT_FALSE(c["role"] == "critic" && c.value("task_id", "") == id) << status.dump();
    }
    EXPECT_EQ(forge.Events(id, "attempt.review_again").size(), k);
    EXPECT_EQ(Lines(count), static_cast<int>(k));
    ASSERT_TRUE(forge.ctl().Call("resume").ok());
  }
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_EQ(forge.Attempts(id).size(), 1u);
  EXPECT_EQ(forge.Runs().size(), 1u) << "the agent ran again";
  EXPECT_EQ(Lines(count), 4);
  for (const auto& e : forge.Events(id, "attempt.review_again")) {
    EXPECT_EQ(e.payload["rate_limited"], true) << e.payload.dump();
    EXPECT_NE(e.payload["error"].get<std::string>().find("critic agent hit a rate limit"),
              std::string::npos)
        << e.payload.dump();
  }
  auto paused = forge.Events("", "dispatch.paused");
  ASSERT_FALSE(paused.empty());
  EXPECT_EQ(paused[0].payload["reason"], "critic agent reported a rate limit");
  std::filesystem::remove_all(dir);
}

// A critic that meets its limit every time is not bounded by the three
// reviews without a verdict: the task's budget bounds what it spends.
TEST(Supervisor, ARateLimitedCriticStopsAtTheTasksBudget) {
  char tmpl[] = "/tmp/forge-critic-agent-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ForgeOptions o;
  o.task_usd = 1.0;
  o.critic_yaml =
      "  agent: {profile: claude, command: [\"" + RateLimitedCriticScript(dir, -1, 0.5) + "\"]}\n";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("succeed");
  ASSERT_TRUE(WaitFor([&] { return forge.Events(id, "attempt.review_again").size() == 1; }, 20'000))
      << forge.SupervisorLog();
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("rate_limit"); }, 5000));
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_DOUBLE_EQ(attempts[0].cost_usd, 1.0);
  EXPECT_FALSE(attempts[0].counted) << "the critic's limit is not the agent's failure";
  EXPECT_EQ(forge.Status()["pause_reasons"].dump().find("circuit"), std::string::npos);
  EXPECT_EQ(Lines(dir + "/critic-runs"), 2);
  auto blocked = forge.Events(id, "task.blocked");
  ASSERT_EQ(blocked.size(), 1u);
  EXPECT_NE(blocked[0].payload.dump().find("budget"), std::string::npos) << blocked[0].payload;
  std::filesystem::remove_all(dir);
}

// `status` shows the last failure the database knows, as forge-ctl does
// offline: a restart does not blank it.
TEST(Supervisor, StatusKeepsTheLastFailureAcrossARestart) {
  ForgeOptions o;
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("fail_different");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  json before = forge.Status()["last_failure"];
  ASSERT_TRUE(before.is_object()) << forge.Status().dump();
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
  forge.Start();
  json after = forge.Status()["last_failure"];
  ASSERT_TRUE(after.is_object()) << forge.Status().dump();
  for (const char* key : {"task_id", "n", "outcome"}) {
    EXPECT_EQ(after[key], before[key]) << key << ": " << after.dump() << " vs " << before.dump();
  }
}

// A script whose submit got no answer runs it again with the same
// --idempotency-key: one task, whose id both print, also after a restart;
// the key reused for another task is exit 2 and queues nothing.
TEST(Supervisor, ASubmitRetriedWithItsIdempotencyKeyQueuesOnce) {
  Forge forge;
  forge.Start();
  auto submit = [&](const std::string& title) {
    return RunCtl(forge.state_dir(), {"submit", "--title", title, "--needs-approval",
                                      "--idempotency-key", "nightly-2026-12-06"});
  };
  auto [first_code, first] = submit("Nightly build");
  ASSERT_EQ(first_code, 0) << first;
  auto [again_code, again] = submit("Nightly build");
  ASSERT_EQ(again_code, 0) << again;
  EXPECT_NE(again.find(first), std::string::npos) << "the same id: " << again;
  EXPECT_NE(again.find("was submitted before"), std::string::npos) << again;
  EXPECT_EQ(forge.db().ListTasks({})->size(), 1u);

  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
  forge.Start();
  auto [restarted_code, restarted] = submit("Nightly build");
  ASSERT_EQ(restarted_code, 0) << restarted;
  EXPECT_NE(restarted.find(first), std::string::npos) << restarted;
  auto [other_code, other] = submit("Another build");
  EXPECT_EQ(other_code, 2) << other;
  EXPECT_NE(other.find("idempotency key 'nightly-2026-12-06' was used for a different submit"),
            std::string::npos)
      << other;
  EXPECT_EQ(forge.db().ListTasks({})->size(), 1u);
}

TEST(Supervisor, CancelWhileWaitingForACriticIsNeverReviewed) {
  ForgeOptions o;
  o.critics = 1;
  Forge forge(o);
  forge.Start();
  std::string busy = forge.Submit("succeed", {}, json{{"verify", {"sleep 60"}}});
  ASSERT_TRUE(WaitFor(
      [&] {
        return std::filesystem::exists(forge.state_dir() + "/logs/" + busy + "/1.review.log");
      },
      20'000))
      << "the only critic is reviewing " << busy;
  std::string waiting = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(waiting, TaskState::kReviewing));
  auto r = forge.ctl().Call("cancel", json{{"id", waiting}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(forge.WaitState(waiting, TaskState::kCancelled));
  r = forge.ctl().Call("cancel", json{{"id", busy}});  // frees the critic
  ASSERT_TRUE(r.ok()) << r.error().message;
  // The next review goes to the freed critic after anything still queued.
  std::string next = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(next, TaskState::kDone));
  EXPECT_TRUE(std::filesystem::exists(forge.state_dir() + "/logs/" + next + "/1.review.log"));
  EXPECT_FALSE(std::filesystem::exists(forge.state_dir() + "/logs/" + waiting + "/1.review.log"))
      << "the cancelled attempt was reviewed";
  auto attempts = forge.Attempts(waiting);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "cancelled");
  EXPECT_EQ(attempts[0].verdict, "");
}

// The supervisor runs on mimalloc unless built without it (FORGE_MIMALLOC=OFF
// or a sanitizer build): its log names the allocator malloc() resolved to.
TEST(Supervisor, LogsTheAllocatorItRunsOn) {
  Forge forge;
  forge.Start();
#ifdef FORGE_EXPECT_MIMALLOC
  const char* expected = "(allocator: mimalloc 2.";
#else
  const char* expected = "(allocator: glibc malloc)";
#endif
  std::string log = forge.SupervisorLog();
  EXPECT_NE(log.find(expected), std::string::npos) << log;
}

TEST(Supervisor, SecondSupervisorExitsNamingTheFirst) {
  Forge forge;
  forge.Start();
  SpawnOptions o;
  o.argv = {BinPath("forge-supervisor"), "start",       "--foreground",   "--config",
            forge.dir() + "/forge.yaml", "--state-dir", forge.state_dir()};
  o.env = CurrentEnvironment();
  auto r = RunCommand(o, 20'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status.exit_code, 1);
  EXPECT_NE(r->output.find(std::to_string(forge.pid())), std::string::npos) << r->output;
}

// Cancelled while its agent ignores SIGTERM (the worker waits out the kill
// grace before SIGKILL), then retried at once with a second worker idle:
// the new attempt waits for the old one's worker to let go, or it would
// reset the workspace under the agent still running in it.
TEST(Supervisor, ARetryWaitsForTheCancelledAttemptToLetGoOfTheWorkspace) {
  ForgeOptions o;
  o.workers = 2;
  o.kill_grace = "1500ms";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("ignore_term");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kRunning));
  ASSERT_TRUE(WaitFor(
      [&] { return std::filesystem::exists(forge.fake_state() + "/ignore_term.pid"); }, 10'000));
  const int64_t cancelled_at = SystemClock::Get().WallMs();
  ASSERT_TRUE(forge.ctl().Call("cancel", json{{"id", id}}).ok());
  ASSERT_TRUE(forge.ctl().Call("retry", json{{"id", id}}).ok());
  ASSERT_TRUE(WaitFor([&] { return forge.Attempts(id).size() >= 2; }, 20'000));
  auto attempts = forge.Attempts(id);
  EXPECT_EQ(attempts[0].outcome, "cancelled");
  // The first worker let go only after the grace and the SIGKILL.
  EXPECT_GE(attempts[1].started_at_ms - cancelled_at, 1000)
      << "attempt 2 started while attempt 1's agent still ran in the workspace";
  ASSERT_TRUE(forge.ctl().Call("cancel", json{{"id", id}}).ok());
}

TEST(Supervisor, DaemonModeReturnsOnceReadyAndCheckConfig) {
  Forge forge;  // only for its temp dir and config
  SpawnOptions o;
  o.argv = {BinPath("forge-supervisor"), "start",       "--config",
            forge.dir() + "/forge.yaml", "--state-dir", forge.state_dir()};
  o.env = CurrentEnvironment();
  o.env.push_back("FAKE_STATE=" + forge.fake_state());
  auto r = RunCommand(o, 20'000);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->status.exit_code, 0) << r->output;
  // Ready means: the control socket answers right away.
  ControlClient ctl(forge.state_dir());
  auto status = ctl.Call("status", json::object(), 2000);
  ASSERT_TRUE(status.ok()) << status.error().message;
  pid_t daemon = (*status)["pid"].get<pid_t>();
  EXPECT_TRUE(ProcessAlive(daemon));
  // A second daemon's parent reports the child's refusal and exits 1.
  auto second = RunCommand(o, 20'000);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->status.exit_code, 1) << second->output;
  EXPECT_NE(second->output.find(std::to_string(daemon)), std::string::npos) << second->output;
  // forge-ctl's exit code and output.
  auto ctl_run = [&](const std::string& command) { return RunCtl(forge.state_dir(), {command}); };
  // `forge-ctl stop` returns once it has exited: a start right after works.
  auto [stop_code, stop_output] = ctl_run("stop");
  ASSERT_EQ(stop_code, 0) << stop_output;
  EXPECT_NE(stop_output.find("supervisor stopped"), std::string::npos) << stop_output;
  auto again = RunCommand(o, 20'000);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->status.exit_code, 0) << again->output;
  ASSERT_EQ(ctl_run("stop").first, 0);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(daemon); }, 20'000));
  // forge-ctl's hint starts it again with the same config, not on defaults.
  auto [hint_code, hint] = ctl_run("resume");
  EXPECT_EQ(hint_code, 3) << hint;
  EXPECT_NE(hint.find("forge-supervisor start --config " + forge.dir() +
                      "/forge.yaml --state-dir " + forge.state_dir()),
            std::string::npos)
      << hint;

  SpawnOptions check;
  check.argv = {BinPath("forge-supervisor"), "check-config", "--config",
                forge.dir() + "/forge.yaml"};
  check.env = CurrentEnvironment();
  auto ok = RunCommand(check, 10'000);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status.exit_code, 0) << ok->output;
  EXPECT_NE(ok->output.find("max_attempts: 3"), std::string::npos) << ok->output;
  { std::ofstream(forge.dir() + "/bad.yaml") << "workers: lots\nbogus_key: 1\n"; }
  check.argv.back() = forge.dir() + "/bad.yaml";
  auto bad = RunCommand(check, 10'000);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status.exit_code, 2);
  EXPECT_NE(bad->output.find("bad.yaml:1"), std::string::npos) << bad->output;
  // A bare agent command not in PATH loads, with a warning: every task
  // would fail on it.
  {
    std::ofstream(forge.dir() + "/nopath.yaml")
        << "agent: {profile: command, command: [forge-no-such-agent-35]}\n";
  }
  check.argv.back() = forge.dir() + "/nopath.yaml";
  auto warned = RunCommand(check, 10'000);
  ASSERT_TRUE(warned.ok());
  EXPECT_EQ(warned->status.exit_code, 0) << warned->output;
  EXPECT_NE(warned->output.find("forge-supervisor: warning: " + forge.dir() +
                                "/nopath.yaml: key 'agent.command': agent command "
                                "'forge-no-such-agent-35' is not in PATH '"),
            std::string::npos)
      << warned->output;
  // With no PATH the supervisor's agents search exec's default, and so does
  // the warning (it judged nothing: an empty PATH).
  std::erase_if(check.env, [](const std::string& e) { return e.starts_with("PATH="); });
  auto no_path = RunCommand(check, 10'000);
  ASSERT_TRUE(no_path.ok());
  EXPECT_EQ(no_path->status.exit_code, 0) << no_path->output;
  EXPECT_NE(no_path->output.find("agent command 'forge-no-such-agent-35' is not in PATH "
                                 "'/usr/local/bin:/usr/bin:/bin': every task"),
            std::string::npos)
      << no_path->output;
  check.env = CurrentEnvironment();
  // A state directory that is a file, or given empty, is the operator's to
  // fix: exit 2 naming it, as forge-ctl does.
  check.argv = {BinPath("forge-supervisor"), "start",       "--config",
                forge.dir() + "/forge.yaml", "--state-dir", forge.dir() + "/bad.yaml"};
  auto file_state = RunCommand(check, 10'000);
  ASSERT_TRUE(file_state.ok());
  EXPECT_EQ(file_state->status.exit_code, 2) << file_state->output;
  EXPECT_NE(file_state->output.find(forge.dir() + "/bad.yaml': a file is there, not a directory"),
            std::string::npos)
      << file_state->output;
  std::string shared = forge.dir() + "/shared";
  ASSERT_EQ(::mkdir(shared.c_str(), 01777), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  check.argv.back() = shared;
  auto shared_state = RunCommand(check, 10'000);
  ASSERT_TRUE(shared_state.ok());
  EXPECT_EQ(shared_state->status.exit_code, 2) << shared_state->output;
  EXPECT_NE(shared_state->output.find("is shared (mode 1777"), std::string::npos)
      << shared_state->output;
  // The config's own directory, which holds other files and no state.
  check.argv.back() = forge.dir();
  auto project_state = RunCommand(check, 10'000);
  ASSERT_TRUE(project_state.ok());
  EXPECT_EQ(project_state->status.exit_code, 2) << project_state->output;
  EXPECT_NE(project_state->output.find("' and no forge.db"), std::string::npos)
      << project_state->output;
  // Not UTF-8: the children's paths would differ from the supervisor's.
  check.argv.back() = forge.dir() + "/state\xff";
  auto latin1_state = RunCommand(check, 10'000);
  ASSERT_TRUE(latin1_state.ok());
  EXPECT_EQ(latin1_state->status.exit_code, 2) << latin1_state->output;
  EXPECT_NE(latin1_state->output.find("not UTF-8 (byte 0xff"), std::string::npos)
      << latin1_state->output;
  EXPECT_FALSE(std::filesystem::exists(forge.dir() + "/state\xff"));
  check.argv.back() = "";
  auto empty_state = RunCommand(check, 10'000);
  ASSERT_TRUE(empty_state.ok());
  EXPECT_EQ(empty_state->status.exit_code, 2) << empty_state->output;
  EXPECT_NE(empty_state->output.find("--state-dir: must not be empty"), std::string::npos)
      << empty_state->output;
  check.argv = {BinPath("forge-supervisor"), "strat"};
  auto typo = RunCommand(check, 10'000);
  ASSERT_TRUE(typo.ok());
  EXPECT_EQ(typo->status.exit_code, 2);
  EXPECT_NE(typo->output.find("forge-supervisor: unknown command 'strat' (commands: start, "
                              "check-config)"),
            std::string::npos)
      << typo->output;
}

// A stand-in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
  }
  ~NotifySocket() { ::close(fd_); }
  // Reads every pending datagram into the log; true once one contains `what`.
  bool Saw(const std::string& what) {
    char buf[4096];
    while (true) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      log_ += std::string(buf, static_cast<size_t>(n)) + "\n";
    }
    return log_.find(what) != std::string::npos;
  }
  const std::string& log() const { return log_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string log_;
};

// A secret the config hands the agents through agent.pass_env (the
// supervisor's own ANTHROPIC_API_KEY, most often) is redacted in what an
// operator reads, as agent.env's are: before, a brief, a title's timeline
// event or a cancel reason that quoted it was shown as it was.
TEST(Supervisor, APassedEnvSecretIsRedactedForTheOperator) {
  const std::string secret = "passenv-secret-" + std::to_string(::getpid());
  ForgeOptions o;
  o.extra_env["FORGE_TEST_API_KEY"] = secret;
  o.pass_env = {"FORGE_TEST_API_KEY"};
  Forge forge(o);
  forge.Start();
  auto submitted =
      forge.ctl().Call("submit", json{{"tasks", json::array({json{{"title", "t"},
                                                                  {"brief", "the key is " + secret},
                                                                  {"needs_approval", true}}})}});
  ASSERT_TRUE(submitted.ok()) << submitted.error().message;
  const std::string id = (*submitted)["ids"][0];
  ASSERT_TRUE(forge.ctl().Call("cancel", json{{"id", id}, {"reason", "leaked " + secret}}).ok());
  for (const auto& [cmd, args] : {std::pair<std::string, json>{"show", json{{"id", id}}},
                                  {"ls", json::object()},
                                  {"events", json{{"task_id", id}}}}) {
    auto reply = forge.ctl().Call(cmd, args);
    ASSERT_TRUE(reply.ok()) << cmd << ": " << reply.error().message;
    const std::string text = reply->dump();
    EXPECT_EQ(text.find(secret), std::string::npos) << cmd << ": " << text;
    EXPECT_NE(text.find("[redacted]"), std::string::npos) << cmd << ": " << text;
  }
}

TEST(Supervisor, TalksToSystemdWhenRunUnderIt) {
  ForgeOptions o;
  Forge probe;  // for a temp dir
  std::string sock = probe.dir() + "/notify";
  NotifySocket notify(sock);
  o.extra_env["NOTIFY_SOCKET"] = sock;
  o.extra_env["WATCHDOG_USEC"] = "200000";
  Forge forge(o);
  forge.Start();
  EXPECT_TRUE(WaitFor([&] { return notify.Saw("READY=1"); }, 5000)) << notify.log();
  EXPECT_TRUE(WaitFor([&] { return notify.Saw("STATUS=running 0, ready 0"); }, 5000))
      << notify.log();
  // The loop keeps petting the watchdog (every WATCHDOG_USEC / 2).
  EXPECT_TRUE(WaitFor(
      [&] {
        notify.Saw("");
        size_t count = 0;
        for (size_t pos = 0; (pos = notify.log().find("WATCHDOG=1", pos)) != std::string::npos;
             ++pos) {
          ++count;
        }
        return count >= 3;
      },
      5000))
      << notify.log();
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
  EXPECT_TRUE(notify.Saw("STOPPING=1")) << notify.log();
}

}  // namespace
}  // namespace forge::itest
