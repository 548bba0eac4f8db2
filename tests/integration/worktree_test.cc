// Repo tasks end to end: real forge-supervisor, worker and critic, real git
// repositories in temp dirs. A pass leaves one commit on forge/<task> and
// nothing changes in the operator's checkout; attempts start from the same
// clean base; bad repos are refused at submit and blocked at dispatch; runner
// sync starts from the remote's tip; a retry after the worktree is gone starts
// from the base commit its first attempt resolved.
#include <gmock/gmock.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;

// Runs a shell command for setup or inspection; fails the test on non-zero exit.
std::string Sh(const std::string& cmd) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", cmd};
  o.env = CurrentEnvironment();
  auto r = RunCommand(o, 30000);
  EXPECT_TRUE(r.ok() && r->status.success()) << cmd << ": " << (r.ok() ? r->output : "");
  std::string out = r.ok() ? r->output : "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

constexpr const char* kIdentity = "-c user.name=op -c user.email=op@example.com";

// The operator's repository: main with one commit, plus a local edit and an
// untracked file that must survive everything Forge does.
std::string MakeRepo(const std::string& dir) {
  std::string repo = dir + "/repo";
  Sh("git init -q -b main " + repo + " && cd " + repo +
     " && echo one > a.txt && printf 'ignored.txt\\n' > .gitignore && git add a.txt .gitignore"
     " && git " +
     kIdentity +
     " commit -qm one && echo operator-edit >> a.txt"
     " && echo mine > operator-untracked.txt");
  return repo;
}

struct OperatorState {
  std::string head, main, symbolic, status, diff;
  bool operator==(const OperatorState&) const = default;
};
OperatorState Snapshot(const std::string& repo) {
  std::string g = "git -C " + repo + " ";
  return {Sh(g + "rev-parse HEAD"), Sh(g + "rev-parse main"), Sh(g + "symbolic-ref HEAD"),
          Sh(g + "status --porcelain"), Sh(g + "diff")};
}

json RepoTask(const std::string& repo, std::vector<std::string> verify = {}) {
  json t{{"repo", repo}, {"verify", verify}};
  return t;
}

TEST(Worktrees, PassLeavesOneCommitWithTrailersAndTheOperatorUntouched) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  OperatorState before = Snapshot(repo);
  forge.Start();
  std::string id = forge.Submit("succeed", {}, RepoTask(repo, {"test -f result.txt"}));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();

  std::string g = "git -C " + repo + " ";
  std::string branch = "forge/" + id;
  EXPECT_EQ(Sh(g + "rev-list --count main.." + branch), "1");
  EXPECT_EQ(Sh(g + "rev-parse " + branch + "~1"), before.main);
  EXPECT_EQ(Sh(g + "log -1 --format=%s " + branch), "fake succeed");
  std::string body = Sh(g + "log -1 --format=%B " + branch);
  EXPECT_THAT(body, HasSubstr("Forge-Task: " + id));
  EXPECT_THAT(body, HasSubstr("Forge-Attempt: 1"));
  EXPECT_EQ(Sh(g + "show --format= --name-only " + branch), "result.txt");
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].commit, Sh(g + "rev-parse " + branch));
  // What `forge-ctl show` prints as branch and commit.
  EXPECT_EQ(forge.Task(id).branch, branch);
  EXPECT_EQ(forge.Task(id).commit, attempts[0].commit);
  // The worktree is where the layout says.
  std::string wt = forge.state_dir() + "/worktrees/" + id;
  EXPECT_EQ(Sh("git -C " + wt + " symbolic-ref HEAD"), "refs/heads/" + branch);
  EXPECT_FALSE(std::filesystem::exists(forge.state_dir() + "/workspaces/" + id));
  EXPECT_EQ(Snapshot(repo), before);
}

TEST(Worktrees, NextAttemptStartsFromTheCleanBase) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  forge.Start();
  // Attempt 1 is rejected after leaving a file, an ignored file and a
  // commit behind; attempt 2 must see none of them.
  std::string leave = std::string(
                          "test \"$FORGE_ATTEMPT\" -ge 2 || { echo x > leftover.txt; "
                          "echo y > ignored.txt; echo z > committed.txt; "
                          "git add committed.txt; git ") +
                      kIdentity + " commit -qm wip; exit 1; }";
  std::string id = forge.Submit(
      "succeed", {},
      RepoTask(repo, {"test ! -e leftover.txt && test ! -e ignored.txt && test ! -e committed.txt",
                      leave}));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].verdict, "reject");
  EXPECT_EQ(attempts[1].verdict, "pass");
  std::string g = "git -C " + repo + " ";
  EXPECT_EQ(Sh(g + "rev-list --count main..forge/" + id), "1");
  EXPECT_EQ(Sh(g + "show --format= --name-only forge/" + id), "result.txt");
  EXPECT_THAT(Sh(g + "log -1 --format=%B forge/" + id), HasSubstr("Forge-Attempt: 2"));
}

TEST(Worktrees, AgentCommitsAreSquashedIntoOne) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  forge.Start();
  std::string commits = std::string("echo done > result.txt && git add result.txt && git ") +
                        kIdentity +
                        " commit -qm agent-1 && echo more > more.txt && git add more.txt && git " +
                        kIdentity + " commit -qm agent-2 && echo late > late.txt";
  std::string id = forge.Submit("script", {{"FAKE_SCRIPT", commits}}, RepoTask(repo, {"true"}));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  std::string g = "git -C " + repo + " ";
  EXPECT_EQ(Sh(g + "rev-list --count main..forge/" + id), "1");
  EXPECT_EQ(Sh(g + "show --format= --name-only forge/" + id + " | sort | tr '\\n' ' '"),
            "late.txt more.txt result.txt ");
  EXPECT_EQ(Sh(g + "log -1 --format=%s forge/" + id), "fake script");
}

// The commit is the tree the checks passed on: what a check writes (a
// report, a build's output) stays out of it.
TEST(Worktrees, WhatACheckWritesIsNotCommitted) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  forge.Start();
  std::string id = forge.Submit(
      "succeed", {}, RepoTask(repo, {"echo report > junit.xml && echo tampered >> result.txt"}));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  std::string g = "git -C " + repo + " ";
  EXPECT_EQ(Sh(g + "show --format= --name-only forge/" + id), "result.txt");
  EXPECT_EQ(Sh(g + "show forge/" + id + ":result.txt"), "done");
}

TEST(Worktrees, HollowPassIsRejected) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  // result.txt is all the fake agent writes: ignored, the attempt changes nothing.
  Sh("cd " + repo + " && echo result.txt >> .gitignore && git add .gitignore && git " + kIdentity +
     " commit -qm ignore-result");
  OperatorState before = Snapshot(repo);
  forge.Start();
  json t = RepoTask(repo);
  t["max_attempts"] = 1;
  std::string id = forge.Submit("succeed", {}, t);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = forge.Task(id).state;
        return s == TaskState::kBlocked || s == TaskState::kDone;
      },
      20000))
      << forge.SupervisorLog();
  EXPECT_EQ(forge.Task(id).state, TaskState::kBlocked);
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].verdict, "reject");
  ASSERT_FALSE(attempts[0].findings.empty());
  EXPECT_THAT(attempts[0].findings[0].message, HasSubstr("no_changes"));
  EXPECT_EQ(Sh("git -C " + repo + " rev-list --count main..forge/" + id), "0");
  EXPECT_EQ(Snapshot(repo), before);
}

// forge-ctl checks repo and base at submit: exit 2, naming both.
TEST(Worktrees, BadRepoAndUnknownRefRefusedAtSubmit) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  forge.Start();
  std::string plain = forge.dir() + "/plain";
  std::filesystem::create_directories(plain);
  auto ctl = [&](const std::vector<std::string>& args) {
    SpawnOptions o;
    o.argv = {BinPath("forge-ctl"), "--state-dir", forge.state_dir(), "submit", "--title", "T"};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.env = CurrentEnvironment();
    auto r = RunCommand(o, 30000);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : RunResult{};
  };
  RunResult r = ctl({"--repo", plain});
  EXPECT_EQ(r.status.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("repo '" + plain + "' is not a git repository"));
  r = ctl({"--repo", repo, "--base", "no-such-ref"});
  EXPECT_EQ(r.status.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("unknown base ref 'no-such-ref' in repo '" + repo + "'"));
  auto counts = forge.db().QueueCounts();
  ASSERT_TRUE(counts.ok());
  int total = 0;
  for (const auto& [state, n] : *counts) total += n;
  EXPECT_EQ(total, 0) << "a refused submit is never sent";
  r = ctl({"--repo", repo, "--base", "main"});
  EXPECT_EQ(r.status.exit_code, 0) << r.output;
}

// Past forge-ctl (the control socket takes the task as is), or a ref deleted
// after the submit: the worker blocks the task, naming repo and ref.
TEST(Worktrees, BadRepoAndDeletedRefBlockedAtDispatch) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  std::string plain = forge.dir() + "/plain";
  std::filesystem::create_directories(plain);
  Sh("git -C " + repo + " branch feature");
  forge.Start();
  ASSERT_TRUE(forge.ctl().Call("pause", json{{"reason", "submit first"}}).ok());
  std::string bad = forge.Submit("succeed", {}, RepoTask(plain));
  json t = RepoTask(repo);
  t["base"] = "feature";
  std::string gone = forge.Submit("succeed", {}, t);
  Sh("git -C " + repo + " branch -D feature");
  ASSERT_TRUE(forge.ctl().Call("resume").ok());
  ASSERT_TRUE(forge.WaitState(bad, TaskState::kBlocked)) << forge.SupervisorLog();
  ASSERT_TRUE(forge.WaitState(gone, TaskState::kBlocked)) << forge.SupervisorLog();
  auto a = forge.Attempts(bad);
  ASSERT_EQ(a.size(), 1u) << "not retried";
  EXPECT_THAT(a[0].error, HasSubstr("repo '" + plain + "' is not a git repository"));
  auto b = forge.Attempts(gone);
  ASSERT_EQ(b.size(), 1u) << "not retried";
  EXPECT_THAT(b[0].error, HasSubstr("unknown base ref 'feature' in repo '" + repo + "'"));
}

TEST(Worktrees, SyncStartsFromTheRemoteTip) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  std::string remote = forge.dir() + "/remote.git";
  Sh("git clone -q --bare " + repo + " " + remote + " && git clone -q " + remote + " " +
     forge.dir() + "/other && cd " + forge.dir() + "/other && echo tip > tip.txt && git add " +
     "tip.txt && git " + kIdentity + " commit -qm tip && git push -q origin main");
  std::string tip = Sh("git -C " + remote + " rev-parse main");
  OperatorState before = Snapshot(repo);
  ASSERT_NE(before.main, tip);
  std::ofstream(forge.dir() + "/forge.yaml", std::ios::app)
      << "sync: {remote: \"" << remote << "\", branch: main}\n";
  forge.Start();
  std::string id = forge.Submit("succeed", {}, RepoTask(repo, {"test -f tip.txt"}));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  std::string g = "git -C " + repo + " ";
  EXPECT_EQ(Sh(g + "rev-parse forge/" + id + "~1"), tip);
  EXPECT_EQ(Snapshot(repo), before);
}

// A fetch slower than the heartbeat timeout (1 s here): the worker keeps
// heartbeating while git runs, so it is not declared lost.
TEST(Worktrees, SlowFetchKeepsTheWorkerAlive) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  std::string remote = forge.dir() + "/remote.git";
  Sh("git clone -q --bare " + repo + " " + remote + " && git -C " + repo + " remote add slow " +
     remote + " && git -C " + repo + " config remote.slow.uploadpack 'sleep 2.5; git-upload-pack'");
  std::ofstream(forge.dir() + "/forge.yaml", std::ios::app)
      << "sync: {remote: slow, branch: main}\n";
  forge.Start();
  std::string id = forge.Submit("succeed", {}, RepoTask(repo));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_EQ(forge.Attempts(id).size(), 1u);
  EXPECT_TRUE(forge.Events("", "child.lost").empty()) << forge.SupervisorLog();
}

// What the workers' own logs say, all of them (the old ones' too).
std::string WorkerLogs(const Forge& forge) {
  std::string all;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(forge.state_dir() + "/logs", ec)) {
    if (e.path().filename().string().rfind("worker-", 0) != 0) continue;
    std::ifstream in(e.path());
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return all;
}

// A supervisor killed (SIGKILL, not under systemd) while its worker was in
// the runner-sync fetch: the worker gets PDEATHSIG but reads it only after
// the fetch. The supervisor started again gives the task to a new worker,
// which waits for the old one (the workspace's lock) instead of fetching and
// adding the worktree beside it; once the old one's fetch ends and it exits,
// the task passes with one commit.
TEST(Worktrees, AWorkerOfARestartWaitsForTheOldWorkersGitStep) {
  Forge forge;
  std::string repo = MakeRepo(forge.dir());
  std::string remote = forge.dir() + "/remote.git";
  std::string fetching = forge.dir() + "/fetching", go = forge.dir() + "/go";
  Sh("git clone -q --bare " + repo + " " + remote + " && git -C " + repo + " remote add held " +
     remote + " && git -C " + repo + " config remote.held.uploadpack 'echo >> " + fetching +
     "; while [ ! -e " + go + " ]; do sleep 0.01; done; git-upload-pack'");
  std::ofstream(forge.dir() + "/forge.yaml", std::ios::app)
      << "sync: {remote: held, branch: main}\n";
  forge.Start();
  std::string id = forge.Submit("succeed", {}, RepoTask(repo));
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(fetching); }, 10000));
  auto first = forge.Attempts(id);
  ASSERT_EQ(first.size(), 1u);
  const std::string old_worker = std::to_string(first[0].worker_pid);
  forge.Signal(SIGKILL);
  forge.Start(/*wait_children=*/false);  // a new worker takes the task at once
  EXPECT_TRUE(WaitFor(
      [&] {
        return WorkerLogs(forge).find("is in use by another process (pid " + old_worker) !=
               std::string::npos;
      },
      10000))
      << WorkerLogs(forge);
  std::ifstream lines(fetching);
  EXPECT_EQ(
      std::count(std::istreambuf_iterator<char>(lines), std::istreambuf_iterator<char>(), '\n'), 1)
      << "the new worker fetched beside the old one";
  std::ofstream(go).put('\n');
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone, 30000)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_GE(attempts.size(), 2u);
  EXPECT_EQ(attempts.front().outcome, "recovered");
  EXPECT_EQ(attempts.back().outcome, "passed");
  EXPECT_EQ(Sh("git -C " + repo + " rev-list --count main..forge/" + id), "1");
}

TEST(Worktrees, FetchFailureIsAnAttemptError) {
  ForgeOptions o;
  o.max_attempts = 1;
  Forge forge(o);
  std::string repo = MakeRepo(forge.dir());
  std::ofstream(forge.dir() + "/forge.yaml", std::ios::app)
      << "sync: {remote: \"" << forge.dir() << "/no-such-remote.git\", branch: main}\n";
  forge.Start();
  std::string id = forge.Submit("succeed", {}, RepoTask(repo));
  ASSERT_TRUE(WaitFor(
      [&] { return !forge.Attempts(id).empty() && !forge.Attempts(id)[0].outcome.empty(); }, 20000))
      << forge.SupervisorLog();
  auto a = forge.Attempts(id);
  EXPECT_EQ(a[0].outcome, "failed");
  EXPECT_THAT(a[0].error, HasSubstr("runner sync: git fetch " + forge.dir() +
                                    "/no-such-remote.git main in repo '" + repo + "'"));
  EXPECT_TRUE(Sh("git -C " + repo + " branch --list 'forge/*'").empty());
}

// The base resolved at a task's first attempt is the base of every later
// one, also when the worktree is gone: maintenance removed the blocked
// task's worktree, the operator's HEAD moved on, and the operator retried
// it. The retry starts from the first attempt's commit, not from HEAD now.
TEST(Worktrees, ARetryAfterMaintenanceRemovedTheWorktreeStartsFromTheFirstBase) {
  ForgeOptions o;
  o.max_attempts = 1;
  o.workers = 1;
  o.extra_yaml = "maintenance: {interval: 300ms, keep: 1ms}\n";
  Forge forge(o);
  std::string repo = MakeRepo(forge.dir());
  const std::string g = "git -C " + repo + " ";
  const std::string first_base = Sh(g + "rev-parse HEAD");
  const std::string go = forge.dir() + "/go";
  forge.Start();
  std::string id = forge.Submit("succeed", {}, RepoTask(repo, {"test -f " + go}));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  EXPECT_EQ(forge.Task(id).base_commit, first_base);
  const std::string wt = forge.state_dir() + "/worktrees/" + id;
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent(id, "maintenance.removed"); }, 20'000))
      << forge.SupervisorLog();
  ASSERT_FALSE(std::filesystem::exists(wt));
  Sh(g + kIdentity + " commit -q --allow-empty -m two");
  ASSERT_NE(Sh(g + "rev-parse HEAD"), first_base);
  std::ofstream(go) << "go";
  auto retried = forge.ctl().Call("retry", json{{"id", id}});
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone)) << forge.SupervisorLog();
  EXPECT_EQ(Sh(g + "rev-parse forge/" + id + "~1"), first_base);
  EXPECT_EQ(forge.Task(id).base_commit, first_base);
  EXPECT_EQ(forge.Events(id, "attempt.base_recorded").size(), 1u);
  // `show` says what every attempt started from.
  auto [code, out] = RunCtl(forge.state_dir(), {"show", id});
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("base commit  " + first_base + "\n"));
}

// The recorded base commit is no longer in the repository (the base branch
// was force-pushed, the task's branch deleted, a gc pruned it) and the
// worktree is gone: the retry is blocked, naming the task, the commit and
// the repo, instead of starting from where the branch points now.
TEST(Worktrees, ARetryWhoseRecordedBaseWasGarbageCollectedIsBlockedNamingIt) {
  ForgeOptions o;
  o.max_attempts = 1;
  Forge forge(o);
  std::string repo = MakeRepo(forge.dir());
  const std::string g = "git -C " + repo + " ";
  Sh(g + "branch feature && " + g + "worktree add -q " + forge.dir() +
     "/feature feature && git -C " + forge.dir() + "/feature " + kIdentity +
     " commit -q --allow-empty -m f");
  const std::string lost = Sh(g + "rev-parse feature");
  forge.Start();
  json t = RepoTask(repo, {"false"});
  t["base"] = "feature";
  std::string id = forge.Submit("succeed", {}, t);
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  ASSERT_EQ(forge.Task(id).base_commit, lost);
  // The worktree deleted by hand, the branches moved and deleted, a gc.
  const std::string wt = forge.state_dir() + "/worktrees/" + id;
  std::filesystem::remove_all(wt);
  Sh("git -C " + forge.dir() + "/feature reset -q --hard main && git -C " + forge.dir() +
     "/feature " + kIdentity + " commit -q --allow-empty -m g && " + g + "worktree prune && " + g +
     "branch -D forge/" + id + " && " + g + "reflog expire --expire=now --all && " + g +
     "gc -q --prune=now");
  ASSERT_NE(Sh(g + "cat-file -t " + lost + " 2>/dev/null || echo gone"), "commit");
  auto retried = forge.ctl().Call("retry", json{{"id", id}});
  ASSERT_TRUE(retried.ok()) << retried.error().message;
  ASSERT_TRUE(WaitFor([&] { return forge.Attempts(id).size() == 2u; }, 20'000));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  auto a = forge.Attempts(id);
  ASSERT_EQ(a.size(), 2u) << "not retried again";
  EXPECT_EQ(a[1].outcome, "failed");
  EXPECT_THAT(a[1].error, HasSubstr("task " + id + ": its base commit " + lost));
  EXPECT_THAT(a[1].error, HasSubstr("is not in repo '" + repo + "'"));
  EXPECT_FALSE(std::filesystem::exists(wt)) << "not made at another commit";
  EXPECT_EQ(forge.Task(id).base_commit, lost);
}

}  // namespace
}  // namespace forge::itest
