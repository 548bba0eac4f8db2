// Loop guards end to end: circuit breaker, rate-limit pause, daily budget,
// operator pause; SIGTERM graceful shutdown.
#include <gmock/gmock.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(LoopGuards, CircuitBreakerTripsHalfOpensAndClosesOnAPass) {
  ForgeOptions o;
  o.circuit_failures = 3;
  o.circuit_cooldown = "1s";
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::vector<std::string> bad;
  for (int i = 0; i < 3; ++i) bad.push_back(forge.Submit("fail_different"));
  for (const auto& id : bad) ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("circuit"); }, 2000)) << forge.Status().dump();
  auto opened = std::chrono::steady_clock::now();
  std::string good = forge.Submit("succeed");
  // While open nothing is dispatched.
  EXPECT_EQ(forge.Task(good).state, TaskState::kReady);
  ASSERT_TRUE(forge.WaitState(good, TaskState::kDone, 10'000));
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - opened)
                    .count();
  EXPECT_GE(waited, 800) << "the probe went before the cooldown";
  EXPECT_TRUE(WaitFor([&] { return !forge.PausedBy("circuit"); }, 2000));
  auto paused = forge.Events("", "dispatch.paused");
  auto resumed = forge.Events("", "dispatch.resumed");
  ASSERT_FALSE(paused.empty());
  EXPECT_EQ(paused[0].payload["kind"], "circuit");
  ASSERT_FALSE(resumed.empty());
  EXPECT_EQ(resumed.back().payload["kind"], "circuit");
}

// A host that kills every attempt is as systemic as a failing agent: the
// breaker counts crashed workers, so the queue is not run through with each
// task retried up to max_infra_retries times.
TEST(LoopGuards, WorkersCrashingUnderEveryAttemptOpenTheCircuit) {
  ForgeOptions o;
  o.circuit_failures = 3;
  o.max_infra_retries = 6;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("crash_worker");
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("circuit"); }, 30'000)) << forge.Status().dump();
  // Open for 10 minutes: nothing more is dispatched.
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 3u);
  for (const auto& a : attempts) EXPECT_EQ(a.outcome, "crashed");
  auto status = forge.ctl().Call("status");
  ASSERT_TRUE(status.ok()) << status.error().message;
  json pause;
  for (const auto& p : (*status)["pause_reasons"]) {
    if (p["kind"] == "circuit") pause = p;
  }
  EXPECT_EQ(pause["reason"],
            "circuit breaker open after 3 consecutive failed attempts (the last crashed)")
      << status->dump();
  EXPECT_NE(forge.Task(id).state, TaskState::kBlocked) << "infra retries left: it waits";
}

// The probe of a half-open breaker cancelled by the operator says nothing
// of the agents' work: the next task is the next probe, with no `resume`.
TEST(LoopGuards, ACancelledProbeLetsTheNextTaskProbe) {
  ForgeOptions o;
  o.circuit_failures = 2;
  o.circuit_cooldown = "1s";
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(forge.WaitState(forge.Submit("fail_different"), TaskState::kBlocked));
  }
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("circuit"); }, 2000)) << forge.Status().dump();
  std::string probe = forge.Submit("hang_silent");
  ASSERT_TRUE(forge.WaitState(probe, TaskState::kRunning, 10'000));
  std::string next = forge.Submit("succeed");
  ASSERT_TRUE(forge.ctl().Call("cancel", json{{"id", probe}}).ok());
  ASSERT_TRUE(forge.WaitState(next, TaskState::kDone, 10'000)) << forge.Status().dump();
  EXPECT_TRUE(WaitFor([&] { return !forge.PausedBy("circuit"); }, 2000));
}

// A critic agent: a script in a temporary directory of its own that reads
// its prompt and prints `lines`; removed with the object.
class CriticScript {
 public:
  explicit CriticScript(const std::string& lines) {
    char dir[] = "/tmp/forge-critic-agent-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    path_ = dir_ + "/critic.sh";
    std::ofstream(path_) << "#!/bin/sh\ncat >/dev/null\n" << lines;
    ok_ = ::chmod(path_.c_str(), 0755) == 0;
  }
  ~CriticScript() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return ok_; }
  // The critic section's agent line for `profile`.
  std::string Yaml(const std::string& profile) const {
    return "  agent: {profile: " + profile + ", command: [\"" + path_ + "\"]}\n";
  }

 private:
  std::string dir_, path_;
  bool ok_ = false;
};

// An LLM critic's spend is the task's and the day's like its agent's: the
// budget trips on what the critics cost alone.
TEST(LoopGuards, TheCriticAgentsSpendCountsAgainstTheDailyBudget) {
  CriticScript critic(
      "echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
      "\"result\":\"{\\\"overall\\\":\\\"approve\\\"}\","
      "\"total_cost_usd\":0.6,\"usage\":{\"input_tokens\":7,"
      "\"output_tokens\":3}}'\n");
  ASSERT_TRUE(critic.ok());
  ForgeOptions o;
  o.workers = 1;
  o.daily_usd = 1.0;
  o.critic_yaml = critic.Yaml("claude");
  Forge forge(o);
  forge.Start();
  std::string a = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(a, TaskState::kDone));
  EXPECT_NEAR(forge.Task(a).cost_usd, 0.6, 1e-9);
  EXPECT_EQ(forge.Task(a).tokens_in, 7);
  EXPECT_NEAR(forge.Attempts(a).at(0).cost_usd, 0.6, 1e-9);
  EXPECT_FALSE(forge.PausedBy("budget"));
  std::string b = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(b, TaskState::kDone));
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("budget"); }, 2000)) << forge.Status().dump();
  EXPECT_NEAR(forge.Status()["cost_today_usd"].get<double>(), 1.2, 1e-6);
}

// A codex critic reports tokens, no cost: with budget.token_prices they are
// priced (1,000 in and 500 out at $100 and $200 a million: $0.20 a review),
// counted toward the task and the day, and attempt.ended says so.
TEST(LoopGuards, ACodexCriticsTokensArePricedIntoTheBudgets) {
  CriticScript critic(
      "echo '{\"type\":\"item.completed\",\"item\":{\"id\":\"i0\",\"type\":"
      "\"agent_message\",\"text\":\"{\\\"overall\\\":\\\"approve\\\"}\"}}'\n"
      "echo '{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":1000,"
      "\"output_tokens\":500}}'\n");
  ASSERT_TRUE(critic.ok());
  ForgeOptions o;
  o.workers = 1;
  o.token_prices = "{input: 100, output: 200}";
  o.critic_yaml = critic.Yaml("codex");
  Forge forge(o);
  forge.Start();
  std::string a = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(a, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_NEAR(forge.Task(a).cost_usd, 0.2, 1e-9);
  EXPECT_EQ(forge.Task(a).tokens_in, 1000);
  auto ended = forge.Events(a, "attempt.ended");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_NEAR(ended[0].payload.value("critic_cost_usd", 0.0), 0.2, 1e-9);
  EXPECT_EQ(ended[0].payload.value("critic_cost_estimated", false), true);
  EXPECT_NEAR(forge.Status()["cost_today_usd"].get<double>(), 0.2, 1e-6);
}

TEST(LoopGuards, RateLimitPausesDispatchUntilResumed) {
  ForgeOptions o;
  o.profile = "claude";
  o.workers = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("rate_limit", {{"FAKE_FAILS", "1"}});
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("rate_limit"); }, 10'000))
      << forge.Status().dump();
  json status = forge.Status();
  int64_t until = 0;
  for (const auto& p : status["pause_reasons"]) {
    if (p["kind"] == "rate_limit") until = proto::TimeFromJson(p["until"]);
  }
  // No reset reported: 60 s backoff.
  EXPECT_GT(until, SystemClock::Get().WallMs() + 50'000);
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_FALSE(attempts[0].counted) << "a rate limit is not the task's fault";
  EXPECT_EQ(forge.Task(id).state, TaskState::kReady);
  // Paused: the requeued task is not dispatched.
  EXPECT_FALSE(WaitFor([&] { return forge.Attempts(id).size() > 1; }, 300));
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  EXPECT_TRUE(forge.HasEvent("", "dispatch.resumed"));
}

TEST(LoopGuards, DailyBudgetTripsAndRecoversWhenRaised) {
  ForgeOptions o;
  o.profile = "claude";
  o.workers = 1;
  o.daily_usd = 1.0;
  Forge forge(o);
  forge.Start();
  std::string a = forge.Submit("cost", {{"FAKE_COST", "0.6"}});
  ASSERT_TRUE(forge.WaitState(a, TaskState::kDone));
  EXPECT_FALSE(forge.PausedBy("budget"));
  std::string b = forge.Submit("cost", {{"FAKE_COST", "0.6"}});
  ASSERT_TRUE(forge.WaitState(b, TaskState::kDone));
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("budget"); }, 2000)) << forge.Status().dump();
  EXPECT_NEAR(forge.Status()["cost_today_usd"].get<double>(), 1.2, 1e-6);
  std::string c = forge.Submit("cost", {{"FAKE_COST", "0.1"}});
  EXPECT_FALSE(WaitFor([&] { return forge.Task(c).state != TaskState::kReady; }, 300));
  ASSERT_TRUE(forge.ctl().Call("resume").ok());  // an operator resume does not lift it
  EXPECT_TRUE(forge.PausedBy("budget"));
  o.daily_usd = 10.0;
  forge.Rewrite(o);
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(forge.WaitState(c, TaskState::kDone));
  EXPECT_TRUE(forge.HasEvent("", "config.reloaded"));
}

// An agent run that fails and reports `cost` (claude's JSON), its text the
// same each time.
std::map<std::string, std::string> CostlyFailure(const std::string& cost) {
  return {{"FAKE_SCRIPT",
           "cat >/dev/null; echo '{\"type\":\"result\",\"subtype\":\"error_during_execution\","
           "\"is_error\":true,\"result\":\"it broke\",\"num_turns\":1,\"session_id\":\"s\","
           "\"total_cost_usd\":" +
               cost + "}'; exit 1"}};
}

// A task blocked for its budget is not run again by a retry: forge-ctl's
// retry is refused (exit 1) saying what it spent and what to do, and runs
// once the budget is raised by a reload. Before, each retry paid for one
// more attempt before the task was blocked again.
TEST(LoopGuards, ARetryDoesNotRunATaskOverItsBudget) {
  ForgeOptions o;
  o.profile = "claude";
  o.workers = 1;
  o.max_attempts = 10;
  o.task_usd = 0.5;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("script", CostlyFailure("0.6"));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  ASSERT_EQ(forge.Runs().size(), 1u);
  auto [code, out] = RunCtl(forge.state_dir(), {"retry", id});
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("forge-ctl: task " + id +
                             " has spent $0.60, its budget.task_usd is $0.50: a retry would not "
                             "run it; raise budget.task_usd"))
      << out;
  EXPECT_EQ(forge.Task(id).state, TaskState::kBlocked);
  o.task_usd = 2.0;
  forge.Rewrite(o);
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent("", "config.reloaded"); }, 5000));
  auto [raised, raised_out] = RunCtl(forge.state_dir(), {"retry", id});
  EXPECT_EQ(raised, 0) << raised_out;
  // It runs again: attempt 2, then 3 after a short backoff, so "exactly
  // 2" is a window a loaded machine can miss (session 35's sanitizer run).
  ASSERT_TRUE(WaitFor([&] { return forge.Runs().size() >= 2u; }, 20'000)) << forge.SupervisorLog();
}

// However a task that has spent its budget becomes ready again (here a
// retry under a higher budget, then a reload lowering it while the task is
// queued), dispatch blocks it "task budget exceeded" without running it.
TEST(LoopGuards, DispatchBlocksAQueuedTaskThatHasSpentItsBudget) {
  ForgeOptions o;
  o.profile = "claude";
  o.workers = 1;
  o.max_attempts = 1;
  o.task_usd = 10;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("script", CostlyFailure("0.6"));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  ASSERT_TRUE(forge.ctl().Call("pause", json{{"reason", "lowering the budget"}}).ok());
  ASSERT_TRUE(forge.ctl().Call("retry", json{{"id", id}}).ok());
  ASSERT_EQ(forge.Task(id).state, TaskState::kReady);
  o.task_usd = 0.5;
  forge.Rewrite(o);
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent("", "config.reloaded"); }, 5000));
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  EXPECT_EQ(forge.Runs().size(), 1u) << "it ran again";
  EXPECT_EQ(forge.Attempts(id).size(), 1u);
  auto blocked = forge.Events(id, "task.blocked");
  ASSERT_EQ(blocked.size(), 2u);
  EXPECT_EQ(blocked[1].payload["reason"], "task budget exceeded");
  EXPECT_EQ(blocked[1].payload["from"], "ready");
  EXPECT_EQ(blocked[1].payload["task_usd"], 0.5);
  EXPECT_EQ(forge.Task(id).last_error, forge.Attempts(id).back().error)
      << "the last attempt's, not the reason";
  // The next task still runs: the worker the blocked one did not take is idle.
  std::string next = forge.Submit("cost", {{"FAKE_COST", "0.1"}});
  EXPECT_TRUE(forge.WaitState(next, TaskState::kDone)) << forge.SupervisorLog();
}

TEST(LoopGuards, OperatorPauseAndResume) {
  Forge forge;
  forge.Start();
  auto p = forge.ctl().Call("pause", json{{"reason", "maintenance"}});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE((*p)["paused"].get<bool>());
  std::string id = forge.Submit("succeed");
  EXPECT_FALSE(WaitFor([&] { return forge.Task(id).state != TaskState::kReady; }, 300));
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  EXPECT_TRUE(forge.WaitState(id, TaskState::kDone));
}

// An operator pauses to stop dispatch (and spending): a crash and restart
// (Restart=on-failure) must not resume it behind their back. It was held in
// memory only, so a restart started dispatching again.
TEST(LoopGuards, TheOperatorsPauseHoldsAcrossARestartUntilResumed) {
  Forge forge;
  forge.Start();
  ASSERT_TRUE(forge.ctl().Call("pause", json{{"reason", "rotating credentials"}}).ok());
  std::string id = forge.Submit("succeed");
  forge.Signal(SIGKILL);
  forge.Start();
  auto operator_pause = [&]() -> std::string {
    json status = forge.Status();
    for (const auto& p : status.value("pause_reasons", json::array())) {
      if (p.value("kind", "") == "operator") return p.value("reason", "");
    }
    return "";
  };
  EXPECT_EQ(operator_pause(), "rotating credentials");
  EXPECT_TRUE(forge.Status().value("paused", false));
  EXPECT_FALSE(WaitFor([&] { return forge.Task(id).state != TaskState::kReady; }, 300));
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  EXPECT_TRUE(forge.WaitState(id, TaskState::kDone));
  // Resumed is kept too.
  forge.Signal(SIGKILL);
  forge.Start();
  EXPECT_EQ(operator_pause(), "");
  EXPECT_TRUE(forge.WaitState(forge.Submit("succeed"), TaskState::kDone));
}

// A reload that lowers workers and critics retires the idle surplus at
// once and a busy one once its attempt is done, respawns none of them and
// counts no restart: concurrency drops to the new count without a restart
// (it stayed at the old one).
TEST(LoopGuards, AReloadThatLowersWorkersRetiresTheSurplus) {
  ForgeOptions o;
  o.workers = 3;
  o.critics = 2;
  Forge forge(o);
  forge.Start();
  auto children = [&](const std::string& role, const std::string& state) {
    int n = 0, restarts = 0;
    json status = forge.Status();  // kept alive: the loop iterates into it
    for (const auto& c : status["children"]) {
      if (c["role"] == role && (state.empty() || c["state"] == state)) ++n;
      restarts += c.value("restarts", 0);
    }
    return std::make_pair(n, restarts);
  };
  ASSERT_TRUE(WaitFor([&] { return children("worker", "idle").first == 3; }, 10'000));
  ASSERT_TRUE(WaitFor([&] { return children("critic", "idle").first == 2; }, 10'000));
  // Two busy workers and one idle; the count goes to 1.
  std::string slow1 = forge.Submit("slow_succeed", {{"FAKE_SLEEP", "1"}});
  std::string slow2 = forge.Submit("slow_succeed", {{"FAKE_SLEEP", "1"}});
  ASSERT_TRUE(forge.WaitState(slow1, TaskState::kRunning));
  ASSERT_TRUE(forge.WaitState(slow2, TaskState::kRunning));
  o.workers = 1;
  o.critics = 1;
  forge.Rewrite(o);
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(forge.WaitState(slow1, TaskState::kDone)) << forge.SupervisorLog();
  ASSERT_TRUE(forge.WaitState(slow2, TaskState::kDone)) << forge.SupervisorLog();
  ASSERT_TRUE(WaitFor([&] { return children("worker", "").first == 1; }, 10'000))
      << forge.Status().dump();
  ASSERT_TRUE(WaitFor([&] { return children("critic", "").first == 1; }, 10'000))
      << forge.Status().dump();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(forge.Submit("succeed"));
  for (const auto& id : ids) ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  EXPECT_EQ(children("worker", "").first, 1) << "a retired worker was respawned";
  EXPECT_EQ(children("critic", "").first, 1) << "a retired critic was respawned";
  EXPECT_EQ(children("worker", "").second, 0) << "a retirement counted as a restart";
  auto exited = forge.Events("", "child.exited");
  ASSERT_EQ(exited.size(), 3u);
  for (const auto& e : exited) EXPECT_EQ(e.payload.value("retired", false), true);
  // Raised again, it spawns them.
  o.workers = 2;
  forge.Rewrite(o);
  ::kill(forge.pid(), SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return children("worker", "idle").first == 2; }, 10'000))
      << forge.Status().dump();
}

// A reload that shortens the heartbeat does not kill the children started
// before it (they still beat at their own interval), and a task submitted
// after it gets the new retry.max_attempts.
TEST(LoopGuards, AReloadKeepsTheChildrenItDidNotStart) {
  ForgeOptions o;
  o.workers = 1;
  o.heartbeat_interval = "1s";
  o.heartbeat_timeout = "5s";
  Forge forge(o);
  forge.Start();
  std::string slow = forge.Submit("slow_succeed", {{"FAKE_SLEEP", "3"}});
  ASSERT_TRUE(forge.WaitState(slow, TaskState::kRunning));
  o.heartbeat_interval = "100ms";
  o.heartbeat_timeout = "300ms";
  o.max_attempts = 7;
  o.extra_yaml = "database: {synchronous: full}\n";
  forge.Rewrite(o);
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent("", "config.reloaded"); }, 5000));
  ASSERT_TRUE(forge.WaitState(slow, TaskState::kDone)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(slow);
  ASSERT_EQ(attempts.size(), 1u) << forge.SupervisorLog();
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_THAT(forge.SupervisorLog(), Not(HasSubstr("no heartbeat")));
  std::string next = forge.Submit("succeed");
  EXPECT_EQ(forge.Task(next).max_attempts, 7);
  EXPECT_EQ(forge.Events("", "config.reloaded").at(0).payload["restart_needed"], json::array());
  EXPECT_THAT(forge.SupervisorLog(), HasSubstr("SIGHUP: database.synchronous now full"));
}

// A reload naming an agent binary that does not exist is refused as bad
// YAML is: the running config stays (queued tasks run on it), and
// config.reload_failed names the key and the path. It was accepted, and the
// queue was blocked "not retryable" one task at a time.
TEST(LoopGuards, AReloadWithAMissingAgentBinaryKeepsTheOldConfig) {
  ForgeOptions o;
  o.workers = 1;
  Forge forge(o);
  forge.Start();
  ASSERT_TRUE(forge.ctl().Call("pause", json{{"reason", "queueing"}}).ok());
  std::vector<std::string> ids = forge.SubmitMany(3, "succeed");
  std::string yaml;
  {
    std::ifstream in(forge.dir() + "/forge.yaml");
    yaml.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string good = "  command: [sh, \"" + FakeAgent() + "\"]";
  const std::string missing = forge.dir() + "/agent-typo.sh";
  ASSERT_NE(yaml.find(good), std::string::npos) << yaml;
  yaml.replace(yaml.find(good), good.size(), "  command: [\"" + missing + "\"]");
  { std::ofstream(forge.dir() + "/forge.yaml") << yaml; }
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent("", "config.reload_failed"); }, 5000));
  EXPECT_FALSE(forge.HasEvent("", "config.reloaded"));
  auto failed = forge.Events("", "config.reload_failed");
  EXPECT_EQ(failed.at(0).payload["error"], forge.dir() +
                                               "/forge.yaml: key 'agent.command': agent "
                                               "binary '" +
                                               missing + "' does not exist or is not executable");
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  for (const auto& id : ids) EXPECT_TRUE(forge.WaitState(id, TaskState::kDone)) << id;
  // check-config refuses the file too, exit 2, with the same words.
  SpawnOptions check;
  check.argv = {BinPath("forge-supervisor"), "check-config", "--config",
                forge.dir() + "/forge.yaml"};
  check.env = CurrentEnvironment();
  auto r = RunCommand(check, 30'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status.exit_code, 2);
  EXPECT_THAT(r->output, HasSubstr("key 'agent.command': agent binary '" + missing + "'"));
}

TEST(LoopGuards, BadConfigOnSighupKeepsTheOldOne) {
  Forge forge;
  forge.Start();
  { std::ofstream(forge.dir() + "/forge.yaml") << "workers: [oops\n"; }
  ::kill(forge.pid(), SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent("", "config.reload_failed"); }, 5000));
  std::string id = forge.Submit("succeed");
  EXPECT_TRUE(forge.WaitState(id, TaskState::kDone));
}

TEST(Shutdown, SigtermWithAttemptsInFlightIsGracefulAndComplete) {
  ForgeOptions o;
  o.shutdown_grace = "1s";
  o.kill_grace = "300ms";
  Forge forge(o);
  forge.Start();
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) ids.push_back(forge.Submit("slow_succeed", {{"FAKE_SLEEP", "30"}}));
  ASSERT_TRUE(WaitFor(
      [&] {
        int started = 0;
        for (const auto& id : ids) {
          auto a = forge.Attempts(id);
          started += !a.empty() && a[0].agent_pid != 0;
        }
        return started == 2;
      },
      10'000));
  std::vector<pid_t> agents;
  for (const auto& id : ids) agents.push_back(static_cast<pid_t>(forge.Attempts(id)[0].agent_pid));
  auto t0 = std::chrono::steady_clock::now();
  ExitStatus st = forge.Signal(SIGTERM, 10'000);
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_EQ(st.exit_code, 0) << st.ToString();
  EXPECT_LE(took, 1000 + 300 + 700) << "shutdown took " << took << " ms";
  for (pid_t a : agents) EXPECT_FALSE(ProcessAlive(a)) << a;
  for (const auto& id : ids) {
    auto attempts = forge.Attempts(id);
    ASSERT_EQ(attempts.size(), 1u);
    EXPECT_EQ(attempts[0].outcome, "cancelled");
    EXPECT_FALSE(attempts[0].counted);
    EXPECT_EQ(forge.Task(id).state, TaskState::kReady);
  }
  EXPECT_TRUE(forge.HasEvent("", "supervisor.stopping"));
  EXPECT_TRUE(forge.HasEvent("", "supervisor.stopped"));
}

}  // namespace
}  // namespace forge::itest
