// The maintenance pass end to end: a real supervisor sends the job to a real
// worker, which removes an old worktree (real git) and an old workspace, keeps
// fresh ones and the branch, deletes old per-attempt logs; and a worker killed
// in the middle of the job loses no task. Ageing: finished_at is backdated in
// the SQLite file while the supervisor is stopped, log mtimes with utimes.
#include <gmock/gmock.h>
#include <sys/time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "supervisor/store/wal_checkpoint.h"
#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

namespace fs = std::filesystem;
using proto::TaskState;
using ::testing::HasSubstr;
constexpr int64_t kDay = 24LL * 3600 * 1000;

std::string Sh(const std::string& script) {
  SpawnOptions o;
  o.argv = {"sh", "-c", script};
  o.env = CurrentEnvironment();
  for (const char* kv : {"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
                         "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"}) {
    o.env.push_back(kv);
  }
  o.stderr_mode = Stdio::kPipe;
  auto r = RunCommand(o, 30'000);
  EXPECT_TRUE(r.ok() && r->status.success()) << script << "\n" << (r.ok() ? r->output : "");
  return r.ok() ? r->output : "";
}

void Age(const std::string& path, int64_t age_ms) {
  struct timeval tv[2];
  gettimeofday(&tv[0], nullptr);
  tv[0].tv_sec -= age_ms / 1000;
  tv[1] = tv[0];
  ASSERT_EQ(::utimes(path.c_str(), tv), 0) << path;
}

std::string MakeRepo(const std::string& dir) {
  std::string repo = dir + "/repo";
  Sh("git init -q -b main " + repo + " && cd " + repo +
     " && echo a > a && git add a && git commit -qm init");
  return repo;
}

// The repo task's worktree and branch as the worker makes them; made here
// when the task settled before any attempt made them.
void EnsureWorktree(const std::string& repo, const std::string& state, const std::string& id) {
  std::string wt = state + "/worktrees/" + id;
  if (fs::exists(wt)) return;
  std::string branch = "forge/" + id;
  bool has_branch = !Sh("git -C " + repo + " branch --list " + branch).empty();
  Sh("git -C " + repo + " worktree add -q " + (has_branch ? "" : "-b " + branch + " ") + wt +
     (has_branch ? " " + branch : ""));
  ASSERT_TRUE(fs::exists(wt + "/a"));
}

std::string Settle(Forge& forge, const std::string& id) {
  // Cancelled before its agent matters: the test makes the worktree itself.
  auto r = forge.ctl().Call("cancel", json{{"id", id}, {"reason", "test"}});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  EXPECT_TRUE(forge.WaitState(id, TaskState::kCancelled));
  return id;
}

// A git (first in PATH) whose `worktree remove`, until the test creates
// `release`, touches `mark` and waits for it; everything else, and every
// removal after the release, goes to the real git. A worker killed meanwhile
// takes the waiting script with it (PR_SET_PDEATHSIG).
struct HangingGit {
  explicit HangingGit(const std::string& dir)
      : bin(dir + "/fakegit"), mark(dir + "/git-removing"), release(dir + "/git-release") {
    fs::create_directories(bin);
    std::string real_git = Sh("command -v git");
    while (!real_git.empty() && real_git.back() == '\n') real_git.pop_back();
    std::ofstream(bin + "/git") << "#!/bin/sh\n"
                                << "case \"$*\" in *'worktree remove'*)\n"
                                << "  if [ ! -e " << release << " ]; then\n"
                                << "    touch " << mark << "\n"
                                << "    while [ ! -e " << release << " ]; do sleep 0.05; done\n"
                                << "  fi;;\n"
                                << "esac\n"
                                << "exec " << real_git << " \"$@\"\n";
    fs::permissions(bin + "/git", fs::perms::owner_all);
  }
  const std::string bin, mark, release;
};

int CountEvents(Forge& forge, const std::string& task, const std::string& kind) {
  return static_cast<int>(forge.Events(task, kind).size());
}

// CPU time (user + system) the process has used so far, in ms.
int64_t CpuMs(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(line.substr(close + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt
  int64_t utime = 0, stime = 0;
  fields >> utime >> stime;
  return (utime + stime) * 1000 / ::sysconf(_SC_CLK_TCK);
}

ForgeOptions Options(const std::string& maintenance) {
  ForgeOptions o;
  o.workers = 1;
  o.extra_yaml = "maintenance: " + maintenance + "\n";
  return o;
}

// A repo task settled two days ago (`state_sql` may set more of its row,
// e.g. "state = 'blocked', "), with its worktree still there; then
// forge restarted with `workers`, a 300 ms maintenance interval and `git`
// first in PATH. Returns once the job is stuck removing that worktree.
struct StuckRemoval {
  std::string repo;
  std::string task;
};
StuckRemoval StartJobStuckOnOldWorktree(Forge& forge, const HangingGit& git, int workers,
                                        const std::string& state_sql) {
  StuckRemoval r;
  r.repo = MakeRepo(forge.dir());
  forge.Start();
  r.task = forge.Submit("hang_silent", {}, json{{"repo", r.repo}});
  Settle(forge, r.task);
  EXPECT_TRUE(forge.Signal(SIGTERM).success());
  const std::string state = forge.state_dir();
  EnsureWorktree(r.repo, state, r.task);
  int64_t old_ms = ::time(nullptr) * 1000LL - 2 * kDay;
  Sql(state + "/forge.db", "UPDATE tasks SET " + state_sql + "finished_at = " +
                               std::to_string(old_ms) + " WHERE id = '" + r.task + "'");
  ForgeOptions o = Options("{interval: 300ms, keep: 1d, timeout: 1h}");
  o.workers = workers;
  o.extra_env["PATH"] = git.bin + ":" + std::string(std::getenv("PATH"));
  forge.Rewrite(o);
  // Not waiting for idle children: the job may take the worker at once.
  forge.Start(/*wait_children=*/false);
  EXPECT_TRUE(WaitFor([&] { return fs::exists(git.mark); }, 20'000));
  return r;
}

TEST(Maintenance, RemovesOldWorkspacesKeepsFreshOnesBranchesAndNewLogs) {
  // Phase 1: produce the tasks with maintenance far away.
  Forge forge(Options("{interval: 1h, keep: 1d, keep_logs: 1d}"));
  std::string repo = MakeRepo(forge.dir());
  forge.Start();
  std::string old_plain = forge.Submit("succeed");
  std::string fresh_plain = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(old_plain, TaskState::kDone));
  ASSERT_TRUE(forge.WaitState(fresh_plain, TaskState::kDone));
  std::string old_repo = forge.Submit("hang_silent", {}, json{{"repo", repo}});
  Settle(forge, old_repo);
  ASSERT_TRUE(forge.Signal(SIGTERM).success());
  const std::string state = forge.state_dir();
  EnsureWorktree(repo, state, old_repo);
  // A repo task that passed: done, with its branch.
  int64_t old_ms = ::time(nullptr) * 1000LL - 2 * kDay;
  Sql(state + "/forge.db", "UPDATE tasks SET finished_at = " + std::to_string(old_ms) +
                               " WHERE id IN ('" + old_plain + "', '" + old_repo +
                               "'); UPDATE tasks SET state = 'done' WHERE id = '" + old_repo + "'");
  const std::string old_ws = state + "/workspaces/" + old_plain;
  const std::string fresh_ws = state + "/workspaces/" + fresh_plain;
  const std::string old_wt = state + "/worktrees/" + old_repo;
  ASSERT_TRUE(fs::exists(old_ws));
  ASSERT_TRUE(fs::exists(fresh_ws));
  const std::string old_log = state + "/logs/" + old_plain + "/1.log";
  const std::string new_log = state + "/logs/" + fresh_plain + "/1.log";
  ASSERT_TRUE(fs::exists(old_log));
  ASSERT_TRUE(fs::exists(new_log));
  Age(old_log, 2 * kDay);

  // Phase 2: maintenance every 200 ms.
  ForgeOptions o = Options("{interval: 200ms, keep: 1d, keep_logs: 1d, timeout: 30s}");
  forge.Rewrite(o);
  forge.Start();
  ASSERT_TRUE(
      WaitFor([&] { return forge.Events("", "maintenance.finished").size() >= 2; }, 20'000));
  EXPECT_FALSE(fs::exists(old_ws));
  EXPECT_FALSE(fs::exists(old_wt));
  EXPECT_TRUE(fs::exists(fresh_ws));
  EXPECT_EQ(Sh("git -C " + repo + " worktree list").find(old_wt), std::string::npos);
  EXPECT_NE(Sh("git -C " + repo + " branch --list forge/" + old_repo), "");
  EXPECT_FALSE(fs::exists(old_log));
  EXPECT_TRUE(fs::exists(new_log));
  // One removal event each, though two jobs ran; none for the fresh task.
  EXPECT_EQ(CountEvents(forge, old_plain, "maintenance.removed"), 1);
  EXPECT_EQ(CountEvents(forge, old_repo, "maintenance.removed"), 1);
  EXPECT_EQ(CountEvents(forge, fresh_plain, "maintenance.removed"), 0);
  auto removed = forge.Events(old_repo, "maintenance.removed");
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].payload["path"], old_wt);
  auto finished = forge.Events("", "maintenance.finished");
  const json& first = finished[0].payload;
  EXPECT_EQ(first["removed"], 2) << first.dump();
  EXPECT_GE(first["logs_deleted"].get<int>(), 1) << first.dump();
  EXPECT_TRUE(first["errors"].empty()) << first.dump();
  EXPECT_FALSE(first.contains("checkpoint")) << first.dump();  // the supervisor's own event now
  EXPECT_EQ(finished[1].payload["removed"], 0) << finished[1].payload.dump();
  // status shows the last pass that ended, and when the next one is due.
  const json status = forge.Status()["maintenance"];
  EXPECT_GE(status["last_job_id"].get<int64_t>(), finished[1].payload["job_id"].get<int64_t>())
      << status.dump();
  EXPECT_EQ(status["last_outcome"], "finished") << status.dump();
  EXPECT_TRUE(status["running_since"].is_string() || status["next_at"].is_string())
      << status.dump();
  // Each pass checkpoints the WAL on the supervisor's own thread, after the
  // pass's maintenance.started event: never an empty WAL.
  ASSERT_TRUE(WaitFor([&] { return !forge.Events("", "maintenance.checkpoint").empty(); }, 20'000));
  for (const auto& e : forge.Events("", "maintenance.checkpoint")) {
    EXPECT_TRUE(e.payload["ran"].get<bool>()) << e.payload.dump();
    EXPECT_FALSE(e.payload.contains("error")) << e.payload.dump();
    EXPECT_GT(e.payload["wal_bytes_before"].get<int64_t>(), 0) << e.payload.dump();
  }
  // Every task is still there, in its state.
  EXPECT_EQ(forge.Task(old_plain).state, TaskState::kDone);
  EXPECT_EQ(forge.Task(old_repo).state, TaskState::kDone);
}

// Under sustained writes the WAL is still bounded. The supervisor's PASSIVE
// checkpoints run beside its loop (store/wal_checkpoint.h), and each one ends
// a few frames behind the loop's commits, so the WAL never starts over by
// itself (session 5 found it growing ~200 KB a task that way): past
// kInlineCheckpointFrames the loop copies the rest itself and the WAL starts
// over. 500 tasks write about 20,000 frames, 1.5 times the bound.
TEST(Maintenance, TheWalStaysBoundedUnderSustainedLoad) {
  ForgeOptions o = Options("{interval: 1h}");
  o.workers = 2;
  Forge forge(o);
  forge.Start();
  const int n = 500;
  ASSERT_EQ(forge.SubmitMany(n, "succeed").size(), static_cast<size_t>(n));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto counts = forge.db().QueueCounts();
        return counts.ok() && (*counts)["done"] == n;
      },
      240'000));
  // A frame is a page and a 24-byte header (the page size is in the WAL's
  // header, bytes 8-11, big-endian); the bound may be passed by what is
  // written while the background pass that sees it finishes.
  const std::string wal = forge.state_dir() + "/forge.db-wal";
  const auto wal_bytes = fs::file_size(wal);
  if (wal_bytes < 32) return;  // truncated by a checkpoint: no header, nothing kept
  unsigned char header[12] = {};
  std::ifstream(wal, std::ios::binary).read(reinterpret_cast<char*>(header), sizeof header);
  const uint64_t page = uint64_t{header[8]} << 24 | header[9] << 16 | header[10] << 8 | header[11];
  ASSERT_GE(page, 512u) << "no WAL header in " << wal << " (" << wal_bytes << " bytes)";
  const uint64_t bound = (store::kInlineCheckpointFrames + 3000) * (page + 24);
  EXPECT_LT(wal_bytes, bound) << "the WAL did not start over while " << n << " tasks ran";
}

TEST(Maintenance, AWorkerKilledMidJobLosesNothing) {
  Forge forge(Options("{interval: 1h, keep: 1d}"));
  // The test kills the worker while the job is provably in the middle.
  HangingGit git(forge.dir());
  // (Not a structured binding: clang 14 cannot capture those in lambdas.)
  const StuckRemoval stuck = StartJobStuckOnOldWorktree(forge, git, 1, "");
  const std::string& repo = stuck.repo;
  const std::string& old_repo = stuck.task;
  if (::testing::Test::HasFailure()) return;
  const std::string state = forge.state_dir();
  auto started = forge.Events("", "maintenance.started");
  ASSERT_FALSE(started.empty());
  pid_t worker = started.back().payload["worker_pid"].get<pid_t>();
  EXPECT_TRUE(forge.Status()["maintenance"]["running_since"].is_string()) << forge.Status().dump();
  // The only worker is busy with the job: a task submitted now waits for it.
  std::string task = forge.Submit("succeed");
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return !forge.Events("", "maintenance.failed").empty(); }, 10'000));
  EXPECT_EQ(forge.Events("", "maintenance.failed")[0].payload["worker_pid"], worker);
  // status says so until a later pass ends (the next one hangs on git too).
  const json failed = forge.Status()["maintenance"];
  EXPECT_EQ(failed["last_outcome"], "failed") << failed.dump();
  ASSERT_EQ(failed["errors"].size(), 1u) << failed.dump();
  EXPECT_THAT(failed["errors"][0].get<std::string>(), HasSubstr("worker exited")) << failed.dump();
  EXPECT_EQ(CountEvents(forge, old_repo, "maintenance.removed"), 0);
  // Released now: the respawned worker may take the next job before the task
  // (a job overdue by twice the 300 ms interval goes first, as on a loaded
  // machine, where the respawn is slow), and that job must be able to end.
  std::ofstream(git.release) << "go";
  // The respawned worker runs the task: nothing was lost, no attempt was spent.
  ASSERT_TRUE(forge.WaitState(task, TaskState::kDone));
  auto attempts = forge.Attempts(task);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_EQ(forge.Task(old_repo).state, TaskState::kCancelled);
  // A later job finishes what the killed one started.
  ASSERT_TRUE(
      WaitFor([&] { return CountEvents(forge, old_repo, "maintenance.removed") == 1; }, 20'000));
  EXPECT_FALSE(fs::exists(state + "/worktrees/" + old_repo));
  EXPECT_NE(Sh("git -C " + repo + " branch --list forge/" + old_repo), "");
  EXPECT_EQ(forge.Task(old_repo).state, TaskState::kCancelled);
}

// A job that falls due while the only worker is busy waits for it without
// spinning the supervisor's loop (it once polled with a zero timeout until a
// worker was free: a whole core for as long as the agent ran). Measured as
// the supervisor's CPU time over a 3 s agent run while jobs fall due every
// 300 ms; a spinning loop uses most of those 3 s, an idle one a few tens of ms.
TEST(Maintenance, AJobWaitingForABusyWorkerDoesNotSpinTheLoop) {
  Forge forge(Options("{interval: 300ms, keep: 1d, timeout: 1h}"));
  forge.Start();
  ASSERT_TRUE(WaitFor([&] { return !forge.Events("", "maintenance.finished").empty(); }, 20'000));
  int64_t before = CpuMs(forge.pid());
  ASSERT_GE(before, 0);
  std::string id = forge.Submit("slow_succeed", {{"FAKE_SLEEP", "3"}});
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone, 30'000));
  int64_t used = CpuMs(forge.pid()) - before;
  EXPECT_LT(used, 1000) << "the supervisor used " << used
                        << " ms of CPU while its worker ran a 3 s agent";
  // The jobs that fell due meanwhile still ran once the worker was free.
  size_t finished = forge.Events("", "maintenance.finished").size();
  EXPECT_TRUE(
      WaitFor([&] { return forge.Events("", "maintenance.finished").size() > finished; }, 20'000));
}

// A task retried while the job in flight is removing its old workspace waits
// for the job, and the ready tasks behind it do not wait with it.
TEST(Maintenance, ATaskWaitingForItsWorkspaceRemovalDoesNotHoldUpOthers) {
  Forge forge(Options("{interval: 1h, keep: 1d}"));
  // The job stays in flight for as long as the test needs.
  HangingGit git(forge.dir());
  // Blocked two days ago, so the operator can retry it and the job removes it.
  const std::string old_repo =
      StartJobStuckOnOldWorktree(forge, git, 2, "state = 'blocked', ").task;
  if (::testing::Test::HasFailure()) return;
  size_t attempts_before = forge.Attempts(old_repo).size();
  auto retried = forge.ctl().Call("retry", json{{"id", old_repo}});
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  ASSERT_TRUE(forge.WaitState(old_repo, TaskState::kReady));
  // Submitted after old_repo at the same priority: behind it in the queue.
  std::string behind = forge.Submit("succeed");
  ASSERT_TRUE(forge.WaitState(behind, TaskState::kDone, 20'000))
      << "a ready task waited behind one whose workspace is being removed";
  EXPECT_EQ(forge.Task(old_repo).state, TaskState::kReady);
  EXPECT_EQ(forge.Attempts(old_repo).size(), attempts_before);

  // Once the job has removed the old workspace, the retried task runs.
  std::ofstream(git.release) << "go";
  ASSERT_TRUE(
      WaitFor([&] { return CountEvents(forge, old_repo, "maintenance.removed") == 1; }, 20'000));
  ASSERT_TRUE(
      WaitFor([&] { return forge.Attempts(old_repo).size() == attempts_before + 1; }, 20'000));
  int64_t removed_at = forge.Events(old_repo, "maintenance.removed")[0].ts_ms;
  EXPECT_GE(forge.Attempts(old_repo).back().started_at_ms, removed_at);
}

}  // namespace
}  // namespace forge::itest
