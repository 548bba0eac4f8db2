// Hung, runaway and crashing agents and children; supervisor crash recovery.
#include <dirent.h>
#include <gmock/gmock.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::Outcome;
using proto::TaskState;
using ::testing::HasSubstr;

// Live processes whose process group is pgid (from /proc).
std::vector<pid_t> ProcessesInGroup(pid_t pgid) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0, group = 0;
    rest >> state >> ppid >> group;
    if (group == pgid && state != "Z") out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

std::vector<pid_t> PidsFromFile(const std::string& path) {
  std::ifstream in(path);
  std::vector<pid_t> out;
  for (pid_t p; in >> p;) out.push_back(p);
  return out;
}

TEST(Watchdog, SilentAgentIsStalled) {
  ForgeOptions o;
  o.stall_timeout = "500ms";
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("hang_silent");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "stalled");
  EXPECT_GE(attempts[0].duration_ms, 500);
  EXPECT_TRUE(WaitFor([&] { return ProcessesInGroup(attempts[0].agent_pgid).empty(); }, 5000));
}

TEST(Watchdog, AgentThatPrintsForeverTimesOut) {
  ForgeOptions o;
  o.timeout = "1s";
  o.stall_timeout = "500ms";
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("print_forever");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "timed_out");
  EXPECT_TRUE(WaitFor([&] { return ProcessesInGroup(attempts[0].agent_pgid).empty(); }, 5000));
}

TEST(Watchdog, AgentIgnoringSigtermIsKilledAfterKillGrace) {
  ForgeOptions o;
  o.timeout = "800ms";
  o.kill_grace = "300ms";
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("ignore_term");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "timed_out");
  EXPECT_EQ(attempts[0].signal, SIGKILL) << attempts[0].error;
  EXPECT_GE(attempts[0].duration_ms, 800 + 300 - 50);
  EXPECT_LT(attempts[0].duration_ms, 800 + 300 + 2000);
  auto pids = PidsFromFile(forge.fake_state() + "/ignore_term.pid");
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pids[0]); }, 5000));
}

TEST(Watchdog, GrandchildrenHoldingPipesAreAllKilled) {
  Forge forge;
  forge.Start();
  std::string id = forge.Submit("grandchildren");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  auto pids = PidsFromFile(forge.fake_state() + "/grandchildren.pids");
  ASSERT_EQ(pids.size(), 2u);
  for (pid_t p : pids) EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(p); }, 5000)) << p;
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_TRUE(ProcessesInGroup(attempts[0].agent_pgid).empty());
}

TEST(Watchdog, KilledWorkerMeansCrashedThenDoneByARespawnedWorker) {
  ForgeOptions o;
  o.workers = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("slow_succeed", {{"FAKE_SLEEP", "1"}});
  ASSERT_TRUE(WaitFor(
      [&] {
        auto a = forge.Attempts(id);
        return !a.empty() && a[0].agent_pid != 0;
      },
      10'000));
  auto first = forge.Attempts(id)[0];
  ASSERT_EQ(::kill(static_cast<pid_t>(first.worker_pid), SIGKILL), 0);
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].outcome, "crashed");
  EXPECT_FALSE(attempts[0].counted);
  EXPECT_EQ(attempts[1].outcome, "passed");
  EXPECT_NE(attempts[1].worker_pid, first.worker_pid);
  EXPECT_TRUE(ProcessesInGroup(first.agent_pgid).empty());
  EXPECT_TRUE(forge.HasEvent("", "child.exited"));
  EXPECT_EQ(forge.Task(id).attempts, 1);  // the crash did not use an attempt
}

// A critic killed mid-check: its check's shell, the shell's child and a
// process the check put in a session of its own all die with it, before
// the task's next review runs in the same workspace.
// The pid of the critic reviewing task `id`, as status lists it; 0 for none.
pid_t CriticReviewing(Forge& forge, const std::string& id) {
  const json status = forge.Status();
  for (const auto& child : status["children"]) {
    if (child["role"] == "critic" && child["task_id"] == id) return child["pid"].get<pid_t>();
  }
  return 0;
}

// Task `id` ran its agent once, and its one attempt failed, counted, for
// its critic: "critic error: critic PID ..." with `how` in it.
void ExpectOneCountedCriticFailure(Forge& forge, const std::string& id, const std::string& how) {
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "failed");
  EXPECT_TRUE(attempts[0].counted);
  EXPECT_THAT(attempts[0].error, HasSubstr("critic error: critic "));
  EXPECT_THAT(attempts[0].error, HasSubstr(how));
  EXPECT_EQ(forge.Runs().size(), 1u) << "the agent ran again";
}

TEST(Watchdog, KilledCriticLeavesNoneOfItsCheckRunning) {
  Forge forge;
  forge.Start();
  const std::string pids_file = forge.fake_state() + "/check.pids";
  const std::string check = "echo $$ >> " + pids_file + "; sleep 1000 & echo $! >> " + pids_file +
                            "; setsid sleep 1000 & echo $! >> " + pids_file + "; wait";
  std::string id = forge.Submit("succeed", {}, json{{"verify", {check}}});
  ASSERT_TRUE(WaitFor([&] { return PidsFromFile(pids_file).size() >= 3; }, 10'000));
  auto pids = PidsFromFile(pids_file);
  const pid_t critic = CriticReviewing(forge, id);
  ASSERT_GT(critic, 0) << forge.Status().dump();
  ASSERT_EQ(::kill(critic, SIGKILL), 0);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pids[i]); }, 5000))
        << "check process " << pids[i];
  }
  // The work the critic was reviewing is reviewed again, not thrown away.
  EXPECT_TRUE(WaitFor([&] { return forge.HasEvent(id, "attempt.review_again"); }, 5000));
  EXPECT_EQ(forge.Attempts(id).size(), 1u);
  // Written just after the kill the loop above saw land.
  EXPECT_TRUE(WaitFor(
      [&] {
        return forge.SupervisorLog().find("left running by critic-" + std::to_string(critic)) !=
               std::string::npos;
      },
      5000))
      << forge.SupervisorLog();
  for (pid_t p : PidsFromFile(pids_file)) ::kill(p, SIGKILL);  // this run's and the next review's
}

// A critic that stops heartbeating mid-review (SIGSTOP) is killed as lost,
// and the work it held is reviewed again by its replacement, not thrown away
// with the agent run again (before, the attempt closed `lost`).
TEST(Watchdog, AStoppedCriticIsLostAndItsReviewRunsAgain) {
  ForgeOptions o;
  o.heartbeat_timeout = "1s";
  Forge forge(o);
  forge.Start();
  const std::string marker = forge.fake_state() + "/checked";
  // The first review's check waits; the second finds the marker and passes.
  std::string check = "test -e " + marker + " || { touch " + marker + "; sleep 1000; }";
  std::string id = forge.Submit("succeed", {}, json{{"verify", {check}}});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(marker); }, 10'000));
  const pid_t critic = CriticReviewing(forge, id);
  ASSERT_GT(critic, 0) << forge.Status().dump();
  ASSERT_EQ(::kill(critic, SIGSTOP), 0);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent(id, "child.lost"); }, 10'000))
      << forge.SupervisorLog();
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(critic); }, 5000));
  ASSERT_TRUE(WaitFor([&] { return forge.Task(id).state == TaskState::kDone; }, 20'000))
      << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);  // the agent ran once
  EXPECT_EQ(attempts[0].outcome, "passed");
  auto again = forge.Events(id, "attempt.review_again");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_THAT(again[0].payload["error"].get<std::string>(),
              HasSubstr("critic " + std::to_string(critic) + " sent no heartbeat for"));
}

// Three critics lost in a row on the same work: the third fails the
// attempt, counted (before, the first closed it `lost` and the agent ran
// again).
TEST(Watchdog, ThreeLostCriticsFailTheAttempt) {
  ForgeOptions o;
  o.heartbeat_timeout = "1s";
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("succeed", {}, json{{"verify", {"sleep 1000"}}});
  pid_t previous = 0;
  for (int i = 0; i < 3; ++i) {
    pid_t critic = 0;
    ASSERT_TRUE(WaitFor(
        [&] {
          critic = CriticReviewing(forge, id);
          return critic != 0 && critic != previous;
        },
        15'000))
        << "review " << i + 1 << "\n"
        << forge.SupervisorLog();
    ASSERT_EQ(::kill(critic, SIGSTOP), 0);
    ASSERT_TRUE(WaitFor([&] { return !ProcessAlive(critic); }, 10'000)) << forge.SupervisorLog();
    previous = critic;
  }
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked, 15'000)) << forge.SupervisorLog();
  ExpectOneCountedCriticFailure(forge, id, " sent no heartbeat for ");
}

TEST(Watchdog, StoppedWorkerIsLostWithinHeartbeatTimeout) {
  ForgeOptions o;
  o.workers = 1;
  o.heartbeat_timeout = "1s";
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("slow_succeed", {{"FAKE_SLEEP", "30"}});
  ASSERT_TRUE(WaitFor(
      [&] {
        auto a = forge.Attempts(id);
        return !a.empty() && a[0].agent_pid != 0;
      },
      10'000));
  auto first = forge.Attempts(id)[0];
  ASSERT_EQ(::kill(static_cast<pid_t>(first.worker_pid), SIGSTOP), 0);
  // Well before the 10 s stall timeout and the 20 s attempt timeout. How soon
  // after heartbeat_timeout is measured by bench figure 3, not asserted here.
  ASSERT_TRUE(WaitFor([&] { return forge.Attempts(id).at(0).outcome == "lost"; }, 5000));
  EXPECT_NE(forge.SupervisorLog().find("no heartbeat for"), std::string::npos)
      << forge.SupervisorLog();
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(static_cast<pid_t>(first.worker_pid)); }, 5000));
  EXPECT_TRUE(WaitFor([&] { return ProcessesInGroup(first.agent_pgid).empty(); }, 5000));
  EXPECT_FALSE(forge.Attempts(id)[0].counted);  // lost: not the task's fault
  // Requeued and picked up by the respawned worker.
  ASSERT_TRUE(WaitFor([&] { return forge.Attempts(id).size() == 2; }, 10'000));
}

TEST(Watchdog, SupervisorKilledMidRunRecoversEverythingOnRestart) {
  Forge forge;
  forge.Start();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(forge.Submit("slow_succeed", {{"FAKE_SLEEP", "2"}}));
  // Both agents started (the ledger has their pids) and have run far enough
  // to record themselves: an agent killed between its exec and its first
  // line would be an attempt with no run, and the count at the end would
  // differ for a reason that is not the supervisor's.
  ASSERT_TRUE(WaitFor(
      [&] {
        int started = 0;
        for (const auto& id : ids) {
          auto a = forge.Attempts(id);
          started += !a.empty() && a.back().agent_pid != 0 && a.back().ended_at_ms == 0;
        }
        return started == 2 && forge.Runs().size() == 2;
      },
      10'000));
  std::vector<pid_t> first_run_groups;
  for (const auto& id : ids) {
    for (const auto& a : forge.Attempts(id)) {
      if (a.agent_pgid != 0) first_run_groups.push_back(static_cast<pid_t>(a.agent_pgid));
    }
  }
  ASSERT_EQ(first_run_groups.size(), 2u);
  forge.Signal(SIGKILL);
  // What the killed supervisor left running is exactly what the restart
  // recovers (an attempt whose agent had passed is reviewed again instead).
  int open_at_kill = 0;
  for (const auto& id : ids) {
    if (forge.Task(id).state != TaskState::kRunning) continue;
    for (const auto& a : forge.Attempts(id)) open_at_kill += a.ended_at_ms == 0;
  }
  EXPECT_GE(open_at_kill, 1);
  forge.Start();
  for (pid_t g : first_run_groups) {
    EXPECT_TRUE(WaitFor([&] { return ProcessesInGroup(g).empty(); }, 5000))
        << "agent group " << g << " left over from the first run";
  }
  int recovered = 0;
  for (const auto& id : ids) {
    ASSERT_TRUE(forge.WaitState(id, TaskState::kDone, 30'000)) << id;
    int passed = 0;
    for (const auto& a : forge.Attempts(id)) {
      EXPECT_NE(a.ended_at_ms, 0) << id << " #" << a.n << " left open";
      passed += a.outcome == "passed";
      recovered += a.outcome == "recovered";
    }
    EXPECT_EQ(passed, 1) << id << " done more than once";
  }
  EXPECT_EQ(recovered, open_at_kill);
  EXPECT_EQ(forge.Events("", "attempt.ended").size(), forge.Runs().size());
}

// What a crash leaves behind, written with the store on a stopped Forge: a
// task t1 (fake agent "succeed") whose first attempt is leased, and the
// agent's report of it recorded. The store is returned open for more.
std::unique_ptr<store::Store> AttemptReportedWhileStopped(Forge& forge,
                                                          const store::AgentReport& report,
                                                          const std::string& kind = "") {
  EXPECT_EQ(forge.Signal(SIGTERM).exit_code, 0);
  store::StoreOptions o;
  o.db_path = forge.state_dir() + "/forge.db";
  auto writer = store::Store::Open(o);
  EXPECT_TRUE(writer.ok()) << writer.error().message;
  if (!writer.ok()) return nullptr;
  proto::SubmitTask t;
  t.title = "interrupted";
  t.brief = "b";
  t.env = {{"FAKE_MODE", "succeed"}};
  if (!kind.empty()) t.kind = kind;
  auto ids = (*writer)->Submit({t});
  EXPECT_TRUE(ids.ok() && ids->front() == "t1");
  auto a = (*writer)->LeaseAttempt("t1", store::Lease{});
  EXPECT_TRUE(a.ok() && a->id == 1);
  EXPECT_TRUE((*writer)->RecordAgentResult(1, report).ok());
  return std::move(*writer);
}

// A crash between recording an agent's failure and closing its attempt:
// the restart closes it `recovered`, and keeps what the agent reported.
TEST(Watchdog, ARecoveredAttemptKeepsItsAgentsReportedError) {
  Forge forge;
  forge.Start();
  store::AgentReport r;
  r.outcome = Outcome::kFailed;
  r.exit_code = 2;
  r.error = "exit 2: make test: 3 failures";
  ASSERT_NE(AttemptReportedWhileStopped(forge, r), nullptr);
  const int64_t attempt_id = 1;
  forge.Start();
  auto attempts = forge.Attempts("t1");
  ASSERT_FALSE(attempts.empty());
  EXPECT_EQ(attempts[0].id, attempt_id);
  EXPECT_EQ(attempts[0].outcome, "recovered");
  EXPECT_EQ(attempts[0].error,
            "attempt was open when the supervisor started (its agent had ended: exit 2: make "
            "test: 3 failures)");
  EXPECT_TRUE(forge.WaitState("t1", TaskState::kDone));
}

// A crash after an agent passed, before its review's verdict: the work is
// still in the workspace, so the restart reviews it again instead of
// closing the attempt `recovered` (which reset the workspace and ran the
// paid agent again). An earlier review without a verdict still counts.
TEST(Watchdog, AnAttemptInReviewAtACrashIsReviewedAgainNotRerun) {
  Forge forge;
  forge.Start();
  const int64_t attempt_id = 1;
  {
    store::AgentReport passed;
    passed.outcome = Outcome::kPassed;
    passed.exit_code = 0;
    auto writer = AttemptReportedWhileStopped(forge, passed);
    ASSERT_NE(writer, nullptr);
    ASSERT_TRUE(writer->AddCriticSpend(attempt_id, 1, 0.25, 10, 1).ok());
    ASSERT_TRUE(writer
                    ->Emit("attempt.review_again",
                           json{{"attempt_id", attempt_id}, {"review", 1}, {"error", "prose"}},
                           "t1", 1)
                    .ok());
    ASSERT_EQ(writer->GetTask("t1")->state, TaskState::kReviewing);
  }
  std::filesystem::create_directories(forge.state_dir() + "/workspaces/t1");  // the agent's work
  forge.Start();
  ASSERT_TRUE(forge.WaitState("t1", TaskState::kDone)) << forge.SupervisorLog();
  auto attempts = forge.Attempts("t1");
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].id, attempt_id);
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_DOUBLE_EQ(attempts[0].cost_usd, 0.25) << "the earlier review's spend";
  EXPECT_EQ(forge.Runs().size(), 0u) << "the agent ran again";
  auto again = forge.Events("t1", "attempt.review_again");
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[1].payload["review"], 2);
  EXPECT_EQ(again[1].payload["restarted"], true);
}

// Not reviewed after a restart: an expand attempt (closed on its spec, never
// reviewed: its agent runs again), and an attempt whose reviews a restart
// already interrupted kReviewsPerAttempt times (each paid for a critic run).
TEST(Watchdog, SomeAttemptsInReviewAtACrashAreRecoveredAsBefore) {
  for (const std::string which : {"expand", "restarts"}) {
    Forge forge;
    forge.Start();
    {
      store::AgentReport passed;
      passed.outcome = Outcome::kPassed;
      passed.exit_code = 0;
      auto writer = AttemptReportedWhileStopped(forge, passed, which == "expand" ? "expand" : "");
      ASSERT_NE(writer, nullptr);
      for (int review = 1; which == "restarts" && review <= 3; ++review) {
        ASSERT_TRUE(writer
                        ->Emit("attempt.review_again",
                               json{{"attempt_id", 1}, {"review", review}, {"restarted", true}},
                               "t1", 1)
                        .ok());
      }
      ASSERT_EQ(writer->GetTask("t1")->state, TaskState::kReviewing);
    }
    std::filesystem::create_directories(forge.state_dir() + "/workspaces/t1");
    forge.Start();
    ASSERT_TRUE(WaitFor([&] { return !forge.Attempts("t1").at(0).outcome.empty(); }, 10'000))
        << which;
    EXPECT_EQ(forge.Attempts("t1")[0].outcome, "recovered") << which;
  }
}

// A stop while an agent finishes its run: the run passes within the
// shutdown grace, and its work is kept, open and `reviewing`, for the next
// start to review. Before, the stop closed it `cancelled`, and the next
// start reset the workspace and paid for the agent again.
TEST(Watchdog, AStopDuringAReviewKeepsThePassedWorkForTheNextStart) {
  ForgeOptions o;
  o.workers = 1;
  o.shutdown_grace = "20s";
  Forge forge(o);
  forge.Start();
  const std::string started = forge.fake_state() + "/started";
  const std::string go = forge.fake_state() + "/go";
  std::string id = forge.Submit(
      "script", {{"FAKE_SCRIPT", "touch '" + started + "'; while [ ! -e '" + go +
                                     "' ]; do sleep 0.01; done; echo done > result.txt"}});
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(started); }, 20'000))
      << forge.SupervisorLog();
  ASSERT_EQ(::kill(forge.pid(), SIGTERM), 0);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent("", "supervisor.stopping"); }, 10'000));
  std::ofstream(go).put('\n');  // the agent passes during the shutdown grace
  ASSERT_TRUE(forge.Signal(SIGTERM).success()) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].ended_at_ms, 0) << attempts[0].outcome << ": " << attempts[0].error;
  EXPECT_EQ(forge.Task(id).state, TaskState::kReviewing);
  auto postponed = forge.Events(id, "attempt.review_postponed");
  ASSERT_EQ(postponed.size(), 1u);
  EXPECT_EQ(postponed[0].payload["reason"], "the supervisor stopped before its review");

  forge.Start();
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_EQ(forge.Runs().size(), 1u) << "the agent ran again";
  auto again = forge.Events(id, "attempt.review_again");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].payload["after_stop"], true) << again[0].payload.dump();
}

// The bound on restarts that interrupt a review is for a review that takes
// the supervisor down with it: stops do not count toward it. An attempt
// whose reviews four stops postponed is reviewed after the fifth too.
TEST(Watchdog, StopsAreNotCountedAsCrashesInAReview) {
  Forge forge;
  forge.Start();
  {
    store::AgentReport passed;
    passed.outcome = Outcome::kPassed;
    passed.exit_code = 0;
    auto writer = AttemptReportedWhileStopped(forge, passed);
    ASSERT_NE(writer, nullptr);
    for (int stop = 1; stop <= 4; ++stop) {
      ASSERT_TRUE(writer
                      ->Emit("attempt.review_again",
                             json{{"attempt_id", 1},
                                  {"review", stop},
                                  {"restarted", true},
                                  {"after_stop", true}},
                             "t1", 1)
                      .ok());
      ASSERT_TRUE(writer
                      ->Emit("attempt.review_postponed",
                             json{{"attempt_id", 1}, {"reason", "stopped"}}, "t1", 1)
                      .ok());
    }
  }
  std::filesystem::create_directories(forge.state_dir() + "/workspaces/t1");
  forge.Start();
  ASSERT_TRUE(forge.WaitState("t1", TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_EQ(forge.Attempts("t1").at(0).outcome, "passed");
  EXPECT_EQ(forge.Runs().size(), 0u) << "the agent ran again";
}

// A critic that dies in the middle of a review: the work it was reviewing
// is reviewed again by its replacement, and the agent does not run again
// (before: `crashed`, the workspace reset and the paid agent run again).
TEST(Watchdog, ACriticThatDiesInAReviewHasTheWorkReviewedAgain) {
  Forge forge;
  forge.Start();
  const std::string killed = forge.fake_state() + "/critic_killed";
  // The first run of the check kills the critic that runs it (its parent).
  const std::string check =
      "if [ ! -e '" + killed + "' ]; then touch '" + killed + "'; kill -9 $PPID; sleep 5; fi; true";
  std::string id = forge.Submit("succeed", {}, json{{"verify", json::array({check})}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_TRUE(std::filesystem::exists(killed));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_EQ(forge.Runs().size(), 1u) << "the agent ran again";
  auto again = forge.Events(id, "attempt.review_again");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again[0].payload["error"].get<std::string>().find("died"), std::string::npos)
      << again[0].payload.dump();
}

// A check that kills its critic every time: the third review without a
// verdict fails the attempt, counted, so the task's max_attempts bounds the
// agent's runs. Before, the third death closed it `crashed` (uncounted): the
// paid agent ran again up to max_infra_retries times and the crashes opened
// the circuit breaker, pausing every task.
TEST(Watchdog, ACheckThatAlwaysKillsItsCriticFailsTheAttemptAfterThreeReviews) {
  ForgeOptions o;
  o.max_attempts = 1;
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("succeed", {}, json{{"verify", {"kill -9 $PPID; sleep 5"}}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked, 30'000)) << forge.SupervisorLog();
  ExpectOneCountedCriticFailure(forge, id, " died (");
  EXPECT_EQ(forge.Events(id, "attempt.review_again").size(), 2u);
  EXPECT_FALSE(forge.PausedBy("circuit")) << forge.Status().dump();
}

TEST(Watchdog, WorkerCrashingOnEveryDispatchBlocksTheTaskAndThrottlesRespawns) {
  ForgeOptions o;
  o.max_infra_retries = 6;
  o.circuit_failures = 1000;  // crashes open it (LoopGuards): here the task's own bound is tested
  Forge forge(o);
  forge.Start();
  std::string id = forge.Submit("crash_worker");
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked, 30'000));
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 7u);
  for (const auto& a : attempts) EXPECT_EQ(a.outcome, "crashed");
  auto blocked = forge.Events(id, "task.blocked");
  ASSERT_EQ(blocked.size(), 1u);
  EXPECT_NE(blocked[0].payload.dump().find("max_infra_retries"), std::string::npos);
  EXPECT_TRUE(forge.HasEvent("", "child.respawn_delayed"));
  json status = forge.Status();
  ASSERT_TRUE(status.contains("pid")) << "supervisor must still answer";
  // Healthy: a good task still gets done once the throttled workers are back.
  std::string good = forge.Submit("succeed");
  EXPECT_TRUE(forge.WaitState(good, TaskState::kDone, 30'000));
}

}  // namespace
}  // namespace forge::itest
