// Chaos soak: many tasks with a mix of fake agents (pass, fail-then-pass,
// hang, crash, slow) while a driver kill -9s random workers and critics every
// few hundred milliseconds and kill -9s the supervisor itself several times
// (restarting it). Afterwards every invariant of issue 7 is checked from the
// database and events.jsonl.
//
//   FORGE_CHAOS_SEED=N      reproduce a run (the seed is printed)
//   FORGE_CHAOS_TASKS=N     tasks (default 60: the CI variant, ~2-3 min)
//   FORGE_CHAOS_SUPERVISOR_KILLS=N  supervisor kill -9s (default 3)
//   FORGE_CHAOS_MINUTES=N   give up waiting for terminal states after N (default 6)
// The long run by hand: FORGE_CHAOS_TASKS=300 FORGE_CHAOS_MINUTES=30.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <random>
#include <set>
#include <thread>

#include "tests/reliability/reliability.h"

namespace forge::reliability {
namespace {

using proto::TaskState;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoll(v) : fallback;
}

bool Settled(TaskState s) {
  return s == TaskState::kDone || s == TaskState::kBlocked || s == TaskState::kCancelled;
}

// Pids of live processes whose environment holds `marker` (every process of
// a run inherits FAKE_STATE=<this test's dir>: supervisor, children, agents
// and their children).
std::vector<pid_t> ProcessesWithEnv(const std::string& marker) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = ::readdir(proc)) {
    pid_t pid = std::atoi(e->d_name);
    if (pid <= 0 || pid == ::getpid()) continue;
    std::string env = ReadFile("/proc/" + std::to_string(pid) + "/environ");
    if (env.find(marker) != std::string::npos && itest::ProcessAlive(pid)) out.push_back(pid);
  }
  ::closedir(proc);
  return out;
}

struct Mix {
  const char* mode;
  std::map<std::string, std::string> env;
  int weight;
};

const std::vector<Mix> kMix = {
    {"succeed", {}, 40},
    {"fail_then_succeed", {{"FAKE_FAILS", "1"}}, 20},
    {"hang_silent", {}, 10},
    {"crash_worker", {}, 5},
    {"slow_succeed", {{"FAKE_SLEEP", "1"}}, 20},
};

json MakeTasks(int n, std::mt19937_64& rng) {
  int total = 0;
  for (const auto& m : kMix) total += m.weight;
  json tasks = json::array();
  for (int i = 0; i < n; ++i) {
    int pick = static_cast<int>(rng() % total);
    const Mix* m = &kMix[0];
    for (const auto& candidate : kMix) {
      if (pick < candidate.weight) {
        m = &candidate;
        break;
      }
      pick -= candidate.weight;
    }
    auto env = m->env;
    env["FAKE_MODE"] = m->mode;
    tasks.push_back({{"title", std::string("chaos ") + m->mode + " " + std::to_string(i)},
                     {"brief", "b"},
                     {"env", env}});
  }
  return tasks;
}

class ChaosDriver {
 public:
  ChaosDriver(itest::Forge& f, uint64_t seed) : f_(f), rng_(seed) {}

  // kill -9 one random child named by status; false when none was found.
  bool KillRandomChild() {
    json s = f_.Status();
    std::vector<pid_t> pids;
    for (const auto& c : s.value("children", json::array())) {
      if (c.value("pid", 0) > 0 && c.value("state", "") != "exited")
        pids.push_back(c["pid"].get<pid_t>());
    }
    if (pids.empty()) return false;
    pid_t victim = pids[rng_() % pids.size()];
    ::kill(victim, SIGKILL);
    ++child_kills_;
    return true;
  }

  void RestartSupervisor() {
    f_.Signal(SIGKILL);
    ++supervisor_kills_;
    f_.Start(false);
  }

  int DelayMs() { return 200 + static_cast<int>(rng_() % 400); }
  int child_kills() const { return child_kills_; }
  int supervisor_kills() const { return supervisor_kills_; }

 private:
  itest::Forge& f_;
  std::mt19937_64 rng_;
  int child_kills_ = 0, supervisor_kills_ = 0;
};

std::vector<proto::TaskInfo> AllTasks(itest::Forge& f) {
  store::ListFilter all;
  all.newest_first = false;
  auto tasks = f.db().ListTasks(all);
  return tasks.ok() ? *tasks : std::vector<proto::TaskInfo>{};
}

int SettledCount(itest::Forge& f) {
  int n = 0;
  for (const auto& t : AllTasks(f)) n += Settled(t.state);
  return n;
}

void CheckInvariants(itest::Forge& f, int expected_tasks) {
  auto tasks = AllTasks(f);
  ASSERT_EQ(static_cast<int>(tasks.size()), expected_tasks);
  auto events = f.Events();
  std::map<std::string, int> done_events;
  for (const auto& e : events) done_events[e.task_id] += e.kind == "task.done";
  for (const auto& t : tasks) {
    SCOPED_TRACE(t.id + " " + t.title);
    EXPECT_TRUE(Settled(t.state)) << "not settled: " << proto::StateName(t.state);
    EXPECT_LE(done_events[t.id], 1) << "done twice";
    EXPECT_EQ(done_events[t.id], t.state == TaskState::kDone ? 1 : 0);
    auto attempts = f.Attempts(t.id);
    std::sort(attempts.begin(), attempts.end(),
              [](const auto& a, const auto& b) { return a.n < b.n; });
    int passes = 0;
    for (size_t i = 0; i < attempts.size(); ++i) {
      const auto& a = attempts[i];
      EXPECT_GT(a.ended_at_ms, 0) << "attempt " << a.n << " still open";
      EXPECT_FALSE(a.outcome.empty()) << "attempt " << a.n << " has no outcome";
      passes += a.verdict == "pass";
      if (i + 1 < attempts.size()) {
        EXPECT_LE(a.ended_at_ms, attempts[i + 1].started_at_ms)
            << "attempts " << a.n << " and " << attempts[i + 1].n << " overlap";
      }
    }
    EXPECT_LE(passes, 1) << "passed review twice";
  }
  // The event log: seq 1..N without gaps, and it replays to the same states.
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].seq, static_cast<int64_t>(i + 1)) << "gap in the event sequence";
  }
  auto replay = f.db().ReplayStates();
  ASSERT_TRUE(replay.ok()) << replay.error().message;
  for (const auto& t : tasks) {
    auto it = replay->find(t.id);
    ASSERT_NE(it, replay->end()) << t.id << " missing from replay";
    EXPECT_EQ(it->second, t.state) << t.id << " replays to another state";
  }
  // events.jsonl holds exactly the committed events.
  std::istringstream in(ReadFile(f.state_dir() + "/events.jsonl"));
  size_t i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    ASSERT_LT(i, events.size()) << "events.jsonl has more lines than the table";
    auto j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "line " << i + 1 << ": " << line;
    EXPECT_EQ(j.value("seq", int64_t{-1}), events[i].seq);
    EXPECT_EQ(j.value("kind", ""), events[i].kind) << "seq " << events[i].seq;
  }
  EXPECT_EQ(i, events.size()) << "events.jsonl has fewer lines than the table";
  EXPECT_EQ(Integrity(f), "ok");
}

TEST(Chaos, SoakWithRandomKills) {
  uint64_t seed = EnvInt("FORGE_CHAOS_SEED", std::random_device{}());
  int n_tasks = EnvInt("FORGE_CHAOS_TASKS", 60);
  int supervisor_kills = EnvInt("FORGE_CHAOS_SUPERVISOR_KILLS", 3);
  int64_t minutes = EnvInt("FORGE_CHAOS_MINUTES", 6);
  std::cout << "chaos seed " << seed << " (FORGE_CHAOS_SEED=" << seed << " reproduces), " << n_tasks
            << " tasks" << std::endl;
  RecordProperty("chaos_seed", std::to_string(seed));
  std::mt19937_64 rng(seed);

  ForgeOptions o;
  o.workers = 3;
  o.critics = 2;
  o.timeout = "3s";  // hang_silent ends timed_out
  o.stall_timeout = "10s";
  o.max_attempts = 3;
  o.max_infra_retries = 8;  // chaos kills are infra failures: rarely block on them
  o.heartbeat_interval = "200ms";
  o.heartbeat_timeout = "3s";
  o.kill_grace = "200ms";
  o.shutdown_grace = "1s";
  o.circuit_failures = 100000;  // hangs and crashes must not pause dispatch for minutes
  o.circuit_cooldown = "1s";
  itest::Forge f(o);
  f.Start();
  auto submitted = f.ctl().Call("submit", json{{"tasks", MakeTasks(n_tasks, rng)}}, 30'000);
  ASSERT_TRUE(submitted.ok()) << submitted.error().message;

  ChaosDriver driver(f, rng());
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::minutes(minutes);
  // Supervisor kills fall at evenly spread fractions of the settled tasks.
  int next_kill = 1;
  while (std::chrono::steady_clock::now() < deadline) {
    int settled = SettledCount(f);
    if (settled >= n_tasks) break;
    if (next_kill <= supervisor_kills && settled >= n_tasks * next_kill / (supervisor_kills + 1)) {
      driver.RestartSupervisor();
      ++next_kill;
      continue;
    }
    // Kill phases of 4 s in every 10 s: continuous kills would keep both roles
    // in the respawn throttle (more than 5 restarts in 10 s delay respawns up
    // to 60 s), which tests the throttle, not the bookkeeping.
    auto elapsed = std::chrono::steady_clock::now() - start;
    if (std::chrono::duration_cast<std::chrono::seconds>(elapsed).count() % 10 < 4) {
      driver.KillRandomChild();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(driver.DelayMs()));  // the pace
  }
  std::cout << "chaos: " << driver.child_kills() << " child kills, " << driver.supervisor_kills()
            << " supervisor kills, "
            << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                start)
                   .count()
            << " s" << std::endl;
  ASSERT_EQ(SettledCount(f), n_tasks)
      << "not every task settled within " << minutes << " min (seed " << seed << ")";
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);

  // No process from any run is left: supervisor, children, agents, their children.
  std::string marker = "FAKE_STATE=" + f.fake_state();
  bool none_left = itest::WaitFor([&] { return ProcessesWithEnv(marker).empty(); }, 30000);
  std::string left;
  for (pid_t p : ProcessesWithEnv(marker))
    left += " " + ReadFile("/proc/" + std::to_string(p) + "/cmdline");
  EXPECT_TRUE(none_left) << "processes left:" << left;
  for (pid_t p : ProcessesWithEnv(marker)) ::kill(p, SIGKILL);

  CheckInvariants(f, n_tasks);
  EXPECT_GT(driver.child_kills(), 0);
  EXPECT_EQ(driver.supervisor_kills(), supervisor_kills);
}

}  // namespace
}  // namespace forge::reliability
