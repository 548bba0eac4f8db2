// Workspaces against real git repositories in temp dirs.
#include "worker/workspace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace forge::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Runs a setup command; the test fails on a non-zero exit.
std::string Sh(const std::string& dir, const std::string& cmd) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", cmd};
  o.cwd = dir;
  o.env = GitEnvironment();
  o.env.push_back("GIT_AUTHOR_NAME=t");
  o.env.push_back("GIT_AUTHOR_EMAIL=t@t");
  o.env.push_back("GIT_COMMITTER_NAME=t");
  o.env.push_back("GIT_COMMITTER_EMAIL=t@t");
  auto r = RunCommand(o, 30000);
  EXPECT_TRUE(r.ok() && r->status.success()) << cmd << ": " << (r.ok() ? r->output : "");
  std::string out = r.ok() ? r->output : "";
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class WorkspaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-ws-XXXXXX";
    root_ = mkdtemp(tmpl);
    repo_ = root_ + "/repo";
    state_ = root_ + "/state";
    fs::create_directories(repo_);
    Sh(repo_, "git init -q -b main && echo one > a.txt && git add a.txt && git commit -qm one");
  }
  void TearDown() override { fs::remove_all(root_); }

  WorkspaceSpec Spec(const std::string& task = "t1", const std::string& base = "") {
    WorkspaceSpec s;
    s.task_id = task;
    s.repo = repo_;
    s.base = base;
    s.path = WorktreePath(state_, task);
    return s;
  }

  std::string root_, repo_, state_;
  GitRunner run_ = BlockingGitRunner();
};

TEST_F(WorkspaceTest, PlainDirectoryWithoutRepo) {
  WorkspaceSpec s;
  s.task_id = "t1";
  s.path = PlainWorkspacePath(state_, "t1");
  auto p = PrepareWorkspace(s, run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_TRUE(fs::is_directory(state_ + "/workspaces/t1"));
  EXPECT_TRUE(p->branch.empty());
}

TEST_F(WorkspaceTest, WorktreeOnTaskBranchAtHeadOperatorUntouched) {
  Sh(repo_, "echo dirty > a.txt && echo new > untracked.txt");
  std::string head = Sh(repo_, "git rev-parse HEAD");
  std::string status = Sh(repo_, "git status --porcelain");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_TRUE(p->created);
  EXPECT_EQ(p->path, state_ + "/worktrees/t1");
  EXPECT_EQ(p->branch, "forge/t1");
  EXPECT_EQ(p->base_commit, head);
  EXPECT_EQ(Sh(p->path, "git symbolic-ref HEAD"), "refs/heads/forge/t1");
  EXPECT_EQ(Sh(p->path, "cat a.txt"), "one");  // the commit, not the operator's edits
  EXPECT_EQ(Sh(repo_, "git symbolic-ref HEAD"), "refs/heads/main");
  EXPECT_EQ(Sh(repo_, "git rev-parse HEAD"), head);
  EXPECT_EQ(Sh(repo_, "git status --porcelain"), status);
}

TEST_F(WorkspaceTest, NextAttemptResetsToTheSameBase) {
  auto first = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  std::string wt = first->path;
  // The failed attempt's leftovers: an edit, an untracked and an ignored
  // file, a commit, and HEAD moved to another branch.
  Sh(wt,
     "echo left > a.txt && echo x > junk.txt && echo junk.txt > .gitignore && "
     "git add .gitignore && git commit -qm agent && mkdir -p d && echo y > d/z && "
     "git checkout -qb elsewhere");
  // And its review's kept snapshot, which is no review's of the next attempt.
  Sh(wt, std::string("git update-ref ") + kReviewSnapshotRef + " HEAD");
  ASSERT_NE(Sh(wt, std::string("git for-each-ref ") + kReviewSnapshotRef), "");
  // The operator moves on meanwhile: the base stays the first attempt's.
  Sh(repo_, "echo two > a.txt && git commit -qam two");
  auto second = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->base_commit, first->base_commit);
  EXPECT_EQ(Sh(wt, "cat a.txt"), "one");
  EXPECT_FALSE(fs::exists(wt + "/junk.txt"));
  EXPECT_FALSE(fs::exists(wt + "/.gitignore"));
  EXPECT_FALSE(fs::exists(wt + "/d"));
  EXPECT_EQ(Sh(wt, "git symbolic-ref HEAD"), "refs/heads/forge/t1");
  EXPECT_EQ(Sh(wt, "git rev-parse forge/t1"), first->base_commit);
  EXPECT_EQ(Sh(wt, "git status --porcelain --ignored"), "");
  EXPECT_EQ(Sh(wt, std::string("git for-each-ref ") + kReviewSnapshotRef), "");
}

// The worktree goes away between two attempts (maintenance removed a
// settled task's before an operator's retry; its agent or the operator
// deleted it, without git) while the base ref moves on: the next attempt,
// given the base the supervisor recorded, makes it again at that commit.
TEST_F(WorkspaceTest, AWorktreeGoneIsMadeAgainAtTheRecordedBase) {
  for (const char* removal : {"git worktree remove", "rm -rf"}) {
    SCOPED_TRACE(removal);
    const std::string task = removal[0] == 'g' ? "t1" : "t2";
    auto first = PrepareWorkspace(Spec(task, "main"), run_);
    ASSERT_TRUE(first.ok()) << first.error().ToString();
    const std::string base = first->base_commit;
    EXPECT_EQ(base, Sh(repo_, "git rev-parse main"));
    if (removal[0] == 'g') {
      Sh(repo_, "git worktree remove --force '" + first->path + "' && git worktree prune");
    } else {
      fs::remove_all(first->path);  // still registered with git, its branch checked out there
    }
    Sh(repo_, "echo moved > a.txt && git commit -qam moved");
    ASSERT_NE(Sh(repo_, "git rev-parse main"), base);
    auto s = Spec(task, "main");
    s.recorded_base = base;
    auto again = PrepareWorkspace(s, run_);
    ASSERT_TRUE(again.ok()) << again.error().ToString();
    EXPECT_TRUE(again->created);
    EXPECT_EQ(again->base_commit, base);
    EXPECT_EQ(Sh(again->path, "git rev-parse HEAD"), base);
    EXPECT_EQ(Sh(again->path, std::string("git rev-parse ") + kWorktreeBaseRef), base);
    EXPECT_EQ(Sh(again->path, "git symbolic-ref HEAD"), "refs/heads/forge/" + task);
    EXPECT_EQ(Sh(again->path, "cat a.txt"), "one");
    // And the attempt after it resets there, as ever.
    Sh(again->path, "echo agent > a.txt");
    auto next = PrepareWorkspace(s, run_);
    ASSERT_TRUE(next.ok()) << next.error().ToString();
    EXPECT_FALSE(next->created);
    EXPECT_EQ(Sh(next->path, "git rev-parse HEAD"), base);
    EXPECT_EQ(Sh(next->path, "cat a.txt"), "one");
    Sh(repo_, "git reset -q --hard HEAD~1");  // main back where the next round starts
  }
}

// A worktree that records another commit than the task's (one left from
// before a database was restored from a backup): the task's wins, and the
// worktree's record follows it, which the review reads.
TEST_F(WorkspaceTest, AWorktreeRecordingAnotherBaseIsResetToTheRecordedOne) {
  const std::string recorded = Sh(repo_, "git rev-parse HEAD");
  Sh(repo_, "echo two > a.txt && git commit -qam two");
  auto first = PrepareWorkspace(Spec(), run_);  // at "two"
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  ASSERT_NE(first->base_commit, recorded);
  auto s = Spec();
  s.recorded_base = recorded;
  auto p = PrepareWorkspace(s, run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_FALSE(p->created);
  EXPECT_EQ(p->base_commit, recorded);
  EXPECT_EQ(Sh(p->path, "git rev-parse HEAD"), recorded);
  EXPECT_EQ(Sh(p->path, std::string("git rev-parse ") + kWorktreeBaseRef), recorded);
  EXPECT_EQ(Sh(p->path, "cat a.txt"), "one");
  auto snapshot = SnapshotAttempt(p->path, run_);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().ToString();
  EXPECT_EQ(snapshot->base, recorded);
  EXPECT_TRUE(snapshot->unchanged);
}

// The recorded commit is gone from the repository (the branch was
// force-pushed, the task's branch deleted, and a gc pruned it): the attempt
// fails naming the task, the commit and the repo, and does not start from
// where the base ref points now, whether the worktree is there or not.
TEST_F(WorkspaceTest, ARecordedBaseTheRepoNoLongerHasIsAnErrorNamingIt) {
  Sh(repo_, "git checkout -qb feature && echo f > a.txt && git commit -qam f");
  auto first = PrepareWorkspace(Spec("t1", "feature"), run_);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  const std::string lost = first->base_commit;
  auto other = PrepareWorkspace(Spec("t2", "main"), run_);  // a worktree recording another commit
  ASSERT_TRUE(other.ok()) << other.error().ToString();
  Sh(repo_, "git worktree remove --force '" + first->path + "' && git branch -D forge/t1");
  Sh(repo_,
     "git reset -q --hard main && echo g > a.txt && git commit -qam g && git checkout -q main && "
     "git reflog expire --expire=now --all && git gc -q --prune=now");
  ASSERT_NE(Sh(repo_, "git cat-file -t " + lost + " 2>&1 || true"), "commit");
  for (const std::string task : {"t1", "t2"}) {
    SCOPED_TRACE(task);
    auto s = Spec(task, "feature");
    s.recorded_base = lost;
    auto p = PrepareWorkspace(s, run_);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().code, ErrorCode::kConfig) << "no retry brings it back";
    EXPECT_THAT(p.error().message, HasSubstr("task " + task + ": its base commit " + lost));
    EXPECT_THAT(p.error().message, HasSubstr("is not in repo '" + repo_ + "'"));
  }
  EXPECT_FALSE(fs::exists(WorktreePath(state_, "t1"))) << "not made at another commit";
  EXPECT_EQ(Sh(other->path, "git rev-parse HEAD"), other->base_commit) << "left as it was";
}

// An agent killed in the middle of git (a stall, a timeout, a cancel) leaves
// a lock and a rebase in progress: the next attempt starts clean anyway,
// with nothing to resume.
TEST_F(WorkspaceTest, NextAttemptClearsWhatAKilledGitLeft) {
  auto first = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  std::string wt = first->path;
  Sh(wt,
     "echo b > a.txt && git commit -qam b && git checkout -q HEAD~1 && echo c > a.txt && "
     "git commit -qam c && (git rebase forge/t1 >/dev/null 2>&1; true)");
  std::string git_dir = Sh(wt, "git rev-parse --absolute-git-dir");
  ASSERT_TRUE(fs::exists(git_dir + "/rebase-merge")) << "the rebase did not stop on its conflict";
  std::ofstream(git_dir + "/index.lock") << "";
  fs::create_directories(git_dir + "/refs/worktree");
  std::ofstream(git_dir + "/" + kReviewSnapshotRef + ".lock") << "";
  std::string common = Sh(wt, "cd \"$(git rev-parse --git-common-dir)\" && pwd");
  std::ofstream(common + "/refs/heads/forge/t1.lock") << "";
  // A deprecated key makes git print a warning before every answer (its
  // stderr is merged in): read as the git dir, nothing would be cleared.
  Sh(repo_, "git config core.fsyncObjectFiles true");
  auto second = PrepareWorkspace(Spec(), run_);
  Sh(repo_, "git config --unset core.fsyncObjectFiles 2>/dev/null");
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_FALSE(fs::exists(git_dir + "/index.lock"));
  EXPECT_FALSE(fs::exists(git_dir + "/" + kReviewSnapshotRef + ".lock"));
  EXPECT_FALSE(fs::exists(git_dir + "/rebase-merge"));
  EXPECT_FALSE(fs::exists(common + "/refs/heads/forge/t1.lock"));
  EXPECT_EQ(Sh(wt, "git status --porcelain --ignored"), "");
  EXPECT_EQ(Sh(wt, "git rev-parse HEAD"), first->base_commit);
  EXPECT_EQ(Sh(wt, "git status | grep -c rebas || true"), "0");
}

// Edits and new files inside a submodule are reset with the superproject.
TEST_F(WorkspaceTest, NextAttemptResetsSubmodulesToo) {
  Sh(root_,
     "git init -q -b main sub && cd sub && echo s > f && git add f && git commit -qm s && cd " +
         repo_ +
         " && git -c protocol.file.allow=always submodule add -q ../sub sub && git commit -qm sub");
  auto first = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  std::string wt = first->path;
  Sh(wt, "git -c protocol.file.allow=always submodule update -q --init");
  std::string recorded = Sh(wt + "/sub", "git rev-parse HEAD");
  Sh(wt + "/sub", "echo agent > f && echo junk > junk && git commit -qam moved && echo again > f");
  auto second = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_EQ(Sh(wt + "/sub", "cat f"), "s");
  EXPECT_FALSE(fs::exists(wt + "/sub/junk"));
  EXPECT_EQ(Sh(wt + "/sub", "git rev-parse HEAD"), recorded);
  EXPECT_EQ(Sh(wt, "git status --porcelain --ignored"), "");
}

// Another state directory's t1 passed on this repo: its commit on forge/t1
// is kept, and this t1 is refused naming it. An earlier attempt's own
// commits (no Forge trailer) are reset as usual.
TEST_F(WorkspaceTest, AnotherForgesPassOnTheBranchIsKept) {
  WorkspaceSpec other = Spec();
  other.path = WorktreePath(root_ + "/other-state", "t1");
  auto made = PrepareWorkspace(other, run_);
  ASSERT_TRUE(made.ok()) << made.error().ToString();
  Sh(made->path, "echo theirs > a.txt");
  SquashSpec squash;
  squash.path = other.path;
  squash.task_id = "t1";
  squash.title = "Theirs";
  squash.attempt = 1;
  auto squashed = SquashAttempt(squash, run_);
  ASSERT_TRUE(squashed.ok()) << squashed.error().ToString();
  Sh(repo_, "git worktree remove --force " + other.path);
  std::string theirs = Sh(repo_, "git rev-parse forge/t1");
  ASSERT_EQ(theirs, squashed->commit);
  Sh(repo_, "git config core.fsyncObjectFiles true");  // a warning before every answer
  auto p = PrepareWorkspace(Spec(), run_);
  Sh(repo_, "git config --unset core.fsyncObjectFiles 2>/dev/null");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kConfig);
  EXPECT_THAT(p.error().message, HasSubstr("branch forge/t1 of repo '" + repo_ + "' holds " +
                                           theirs.substr(0, 12) + ", a Forge pass of task t1"));
  EXPECT_THAT(p.error().message, HasSubstr("branch -m forge/t1 forge/t1-kept"));
  EXPECT_EQ(Sh(repo_, "git rev-parse forge/t1"), theirs);
  // Once the operator moved it, the task goes ahead.
  Sh(repo_, "git branch -m forge/t1 forge/t1-kept");
  Sh(repo_,
     "git checkout -qb forge/t1 && echo wip > a.txt && git commit -qam wip && "
     "git checkout -q main");
  p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(Sh(repo_, "git rev-parse forge/t1"), Sh(repo_, "git rev-parse main"));
}

// The operator initialised the submodule in their own checkout (its url is
// in the config worktrees share): a reset does not clone it into the
// task's worktree, which has not checked it out.
TEST_F(WorkspaceTest, TheOperatorsSubmodulesAreNotClonedIntoAWorktree) {
  Sh(root_,
     "git init -q -b main sub && cd sub && echo s > f && git add f && git commit -qm s && cd " +
         repo_ +
         " && git -c protocol.file.allow=always submodule add -q ../sub sub && git commit -qm sub");
  auto first = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  auto second = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  EXPECT_FALSE(fs::exists(first->path + "/sub/f")) << "cloned into the worktree";
}

// A repository the agent made (or cloned) inside its worktree would be
// committed as a pointer to a commit only it has: named, and refused by the
// squash, whether the agent left it untracked or committed the gitlink
// itself (over a file of the base, even). Its files are not the work.
TEST_F(WorkspaceTest, ANestedRepositoryIsNamedAndNotCommitted) {
  Sh(repo_, "echo lib > lib && git add lib && git commit -qm lib");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  Sh(p->path,
     "echo two > a.txt && mkdir sub && cd sub && git init -q && echo work > code.py && "
     "git add . && git commit -qm sub && cd .. && git clone -q '" +
         repo_ + "' 'deps/x y' && rm lib && git clone -q '" + repo_ +
         "' lib && git add lib 2>/dev/null && git commit -qm 'the gitlink, committed'");
  std::string agents = Sh(repo_, "git rev-parse forge/t1");
  Sh(repo_, "git config core.fsyncObjectFiles true");  // a warning before every answer
  auto snapshot = SnapshotAttempt(p->path, run_);
  Sh(repo_, "git config --unset core.fsyncObjectFiles 2>/dev/null");
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().ToString();
  EXPECT_EQ(snapshot->nested_repos, (std::vector<std::string>{"deps/x y", "lib", "sub"}));
  SquashSpec squash;
  squash.path = p->path;
  squash.task_id = "t1";
  auto squashed = SquashAttempt(squash, run_);
  ASSERT_FALSE(squashed.ok());
  EXPECT_EQ(squashed.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(squashed.error().message,
              HasSubstr("deps/x y, lib, sub are git repositories of their own inside the "
                        "worktree: at most pointers to their commits would be committed"));
  EXPECT_EQ(Sh(repo_, "git rev-parse forge/t1"), agents);
}

// One without a commit is refused by `git add`: named all the same.
TEST_F(WorkspaceTest, ANestedRepositoryWithoutACommitIsNamed) {
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  Sh(p->path, "echo two > a.txt && mkdir sub && cd sub && git init -q && echo work > code.py");
  auto snapshot = SnapshotAttempt(p->path, run_);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().ToString();
  EXPECT_EQ(snapshot->nested_repos, (std::vector<std::string>{"sub"}));
  EXPECT_THAT(NestedReposProblem(snapshot->nested_repos),
              HasSubstr("sub is a git repository of its own inside the worktree"));
}

// Submodules are the way to have one: a submodule the agent adds to
// .gitmodules and a bumped pointer (of a submodule, or of a gitlink the
// base already has without one) are work like any other.
TEST_F(WorkspaceTest, SubmodulesAndBumpedPointersAreNoNestedRepositories) {
  Sh(root_, "git init -q -b main sub && cd sub && echo s > f && git add f && git commit -qm s");
  Sh(repo_,
     "git -c protocol.file.allow=always submodule add -q ../sub sub && git clone -q ../sub old "
     "2>/dev/null && git add old 2>/dev/null && git commit -qm subs");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  Sh(p->path,
     "git -c protocol.file.allow=always submodule update -q --init sub && cd sub && "
     "echo t > f && git commit -qam bump && cd .. && rmdir old && git clone -q '" +
         repo_ + "/old' old && cd old && echo t > f && git commit -qam bump && cd .. && " +
         "git -c protocol.file.allow=always submodule add -q '" + root_ + "/sub' more/");
  auto snapshot = SnapshotAttempt(p->path, run_);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().ToString();
  EXPECT_EQ(snapshot->nested_repos, std::vector<std::string>{});
  SquashSpec squash;
  squash.path = p->path;
  squash.task_id = "t1";
  auto squashed = SquashAttempt(squash, run_);
  ASSERT_TRUE(squashed.ok()) << squashed.error().ToString();
  EXPECT_EQ(
      Sh(p->path, "git diff-tree -r --name-only " + p->base_commit + " forge/t1 | tr '\\n' ' '"),
      ".gitmodules more old sub ");
}

// Git's stderr is merged into what is parsed: a warning in front of it (a
// config it cannot read, say) must not make the first declared submodule
// undeclared, nor hide the first new gitlink.
TEST_F(WorkspaceTest, AWarningBeforeGitsAnswerChangesNoVerdictOnNestedRepositories) {
  Sh(root_, "git init -q -b main sub && cd sub && echo s > f && git add f && git commit -qm s");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  GitRunner warning = [&](const SpawnOptions& o, int64_t timeout_ms) {
    auto r = run_(o, timeout_ms);
    const bool parsed = std::find(o.argv.begin(), o.argv.end(), "--get-regexp") != o.argv.end() ||
                        std::find(o.argv.begin(), o.argv.end(), "diff-tree") != o.argv.end();
    if (r.ok() && parsed)
      r->output = "warning: unable to access 'x': Permission denied\n" + r->output;
    return r;
  };
  Sh(p->path, "git -c protocol.file.allow=always submodule add -q '" + root_ + "/sub' lib");
  auto declared = SnapshotAttempt(p->path, warning);
  ASSERT_TRUE(declared.ok()) << declared.error().ToString();
  EXPECT_EQ(declared->nested_repos, std::vector<std::string>{});
  // Named to come before .gitmodules: the first of diff-tree's entries.
  Sh(p->path, "git clone -q '" + root_ + "/sub' +nested");
  auto nested = SnapshotAttempt(p->path, warning);
  ASSERT_TRUE(nested.ok()) << nested.error().ToString();
  EXPECT_EQ(nested->nested_repos, std::vector<std::string>{"+nested"});
}

// A .gitmodules git cannot parse declares nothing it could read: an error
// naming git's line, not every gitlink rejected with the advice to declare
// it there.
TEST_F(WorkspaceTest, AGitmodulesThatDoesNotParseIsAnErrorNamingGitsLine) {
  Sh(root_, "git init -q -b main sub && cd sub && echo s > f && git add f && git commit -qm s");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  Sh(p->path, "git -c protocol.file.allow=always submodule add -q '" + root_ +
                  "/sub' lib && printf '[submodule \"lib\"\\n path = lib\\n' > .gitmodules");
  auto snapshot = SnapshotAttempt(p->path, run_);
  ASSERT_FALSE(snapshot.ok());
  // Git's own diff-tree reads the worktree's .gitmodules and says so first.
  EXPECT_THAT(snapshot.error().message, HasSubstr("bad config line 2"));
  EXPECT_THAT(snapshot.error().message, HasSubstr(".gitmodules"));
}

TEST_F(WorkspaceTest, ExplicitBaseRef) {
  std::string one = Sh(repo_, "git rev-parse HEAD");
  Sh(repo_, "git branch old && echo two > a.txt && git commit -qam two");
  auto p = PrepareWorkspace(Spec("t1", "old"), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->base_commit, one);
}

TEST_F(WorkspaceTest, NotAGitRepoIsAConfigError) {
  fs::create_directories(root_ + "/plain");
  auto s = Spec();
  s.repo = root_ + "/plain";
  auto p = PrepareWorkspace(s, run_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kConfig);
  EXPECT_THAT(p.error().message, HasSubstr("repo '" + root_ + "/plain' is not a git repository"));
  EXPECT_THAT(p.error().message, HasSubstr("'HEAD'"));
  s.repo = root_ + "/missing";
  p = PrepareWorkspace(s, run_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kConfig);
}

TEST_F(WorkspaceTest, UnknownBaseRefIsAConfigError) {
  auto p = PrepareWorkspace(Spec("t1", "no-such-branch"), run_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kConfig);
  EXPECT_THAT(p.error().message,
              HasSubstr("unknown base ref 'no-such-branch' in repo '" + repo_ + "'"));
  EXPECT_FALSE(fs::exists(state_ + "/worktrees/t1"));
}

// Resolving the base ref timed out (slow disk, another git holding a lock, a
// huge repository): no verdict on the ref, so not kConfig, which blocks the
// task as if the operator had named a wrong ref; the attempt is retried. The
// message names repo, ref and what happened. A git that answered with exit
// 128 gave its verdict: kConfig, with git's reason.
TEST_F(WorkspaceTest, ABaseRefGitCouldNotResolveIsNotAConfigError) {
  bool timed_out = true;
  GitRunner resolve_fails = [&](const SpawnOptions& o, int64_t timeout_ms) -> Result<RunResult> {
    const bool resolving =
        std::find(o.argv.begin(), o.argv.end(), "--end-of-options") != o.argv.end();
    if (!resolving) return run_(o, timeout_ms);
    RunResult r;
    r.timed_out = timed_out;
    r.status.exit_code = timed_out ? -1 : 128;
    r.status.signal = timed_out ? SIGKILL : 0;
    r.output = timed_out ? "" : "fatal: unable to read refs: Input/output error\n";
    return r;
  };
  auto s = Spec("t1", "main");
  s.git_timeout_ms = 5000;
  auto p = PrepareWorkspace(s, resolve_fails);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(p.error().message, "cannot resolve base ref 'main' in repo '" + repo_ +
                                   "': git rev-parse timed out after 5s");
  EXPECT_FALSE(fs::exists(state_ + "/worktrees/t1"));
  timed_out = false;
  p = PrepareWorkspace(s, resolve_fails);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kConfig);
  EXPECT_EQ(p.error().message, "unknown base ref 'main' in repo '" + repo_ +
                                   "' (fatal: unable to read refs: Input/output error)");
  // The next try, with git answering, makes the worktree.
  p = PrepareWorkspace(s, run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
}

// The repo check's git timing out is no verdict on the repo either.
TEST_F(WorkspaceTest, ARepoCheckThatTimedOutIsNotAConfigError) {
  GitRunner hangs = [&](const SpawnOptions&, int64_t) -> Result<RunResult> {
    RunResult r;
    r.timed_out = true;
    r.status.signal = SIGKILL;
    return r;
  };
  auto s = Spec();
  s.git_timeout_ms = 5000;
  auto p = PrepareWorkspace(s, hangs);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(p.error().message,
            "cannot check repo '" + repo_ + "': git rev-parse timed out after 5s");
}

TEST_F(WorkspaceTest, BranchCheckedOutElsewhereIsAConfigError) {
  Sh(repo_, "git worktree add -q -b forge/t1 " + root_ + "/other");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kConfig);
  EXPECT_THAT(p.error().message, HasSubstr("cannot create worktree"));
  EXPECT_THAT(p.error().message, HasSubstr(repo_));
  EXPECT_THAT(p.error().message, HasSubstr("forge/t1"));
}

// Mounts a tmpfs of size_kib at dir (root only); false (and the reason in
// *why) when it cannot.
bool MountSmallTmpfs(const std::string& dir, int size_kib, std::string* why) {
  if (::geteuid() != 0) return *why = "not root: cannot mount", false;
  fs::create_directories(dir);
  std::string options = "size=" + std::to_string(size_kib) + "k";
  if (::mount("forge-test", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    return *why = std::string("mount tmpfs failed: ") + std::strerror(errno), false;
  }
  return true;
}

TEST_F(WorkspaceTest, StaleDirectoryIsReplaced) {
  fs::create_directories(state_ + "/worktrees/t1/junk");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_FALSE(fs::exists(p->path + "/junk"));
  EXPECT_EQ(Sh(p->path, "git symbolic-ref HEAD"), "refs/heads/forge/t1");
}

// A stale directory that cannot be removed (here a mount point inside it:
// EBUSY) is an error naming the path and the cause, not git's later
// "already exists".
TEST_F(WorkspaceTest, AStaleDirectoryThatCannotBeRemovedIsNamed) {
  const std::string busy = state_ + "/worktrees/t1/busy";
  std::string why;
  if (!MountSmallTmpfs(busy, 64, &why)) GTEST_SKIP() << why;
  auto p = PrepareWorkspace(Spec(), run_);
  ::umount2(busy.c_str(), MNT_DETACH);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kIo);
  EXPECT_THAT(p.error().message,
              HasSubstr("cannot remove the stale workspace " + state_ + "/worktrees/t1"));
  // Once it can go, it goes.
  auto again = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
}

// A checkout that does not fit: git says only "unable to write file", with
// no errno. That is the machine's fault (kFull: requeued, dispatch paused),
// not a configuration error that blocks the task for good.
TEST_F(WorkspaceTest, AWorktreeThatDoesNotFitIsTheMachinesFault) {
  Sh(repo_,
     "for i in 1 2 3 4 5 6 7 8; do head -c 65536 /dev/urandom > big$i; done"
     " && git add . && git commit -qm big");
  std::string why;
  if (!MountSmallTmpfs(state_, 256, &why)) GTEST_SKIP() << why;
  auto p = PrepareWorkspace(Spec(), run_);
  ::umount2(state_.c_str(), MNT_DETACH);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kFull) << p.error().message;
  EXPECT_TRUE(IsMachineFault(p.error()));
  EXPECT_THAT(p.error().message, HasSubstr("cannot create worktree '" + Spec().path + "'"));
  EXPECT_THAT(p.error().message, HasSubstr("git could not write: disk full?"));
}

// A pass that cannot be committed for lack of space is the machine's fault too.
TEST_F(WorkspaceTest, ASquashOnAFullDiskIsTheMachinesFault) {
  const std::string full = root_ + "/full";
  std::string why;
  if (!MountSmallTmpfs(full, 512, &why)) GTEST_SKIP() << why;
  repo_ = full + "/repo";
  state_ = full + "/state";
  fs::create_directories(repo_);
  Sh(repo_, "git init -q -b main && echo one > a.txt && git add a.txt && git commit -qm one");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  Sh(p->path, "head -c 65536 /dev/urandom > new.bin; head -c 1048576 /dev/zero > " + full +
                  "/filler || true");
  SquashSpec squash;
  squash.path = p->path;
  squash.task_id = "t1";
  squash.attempt = 1;
  auto squashed = SquashAttempt(squash, run_);
  ::umount2(full.c_str(), MNT_DETACH);
  ASSERT_FALSE(squashed.ok());
  EXPECT_EQ(squashed.error().code, ErrorCode::kFull) << squashed.error().message;
}

// The supervisor gives a review kReviewGitCommandsMax git commands of
// kGitTimeoutMs (supervisor/job_limits.h) before it kills its critic as
// lost: a review, first or again, must not run more.
TEST_F(WorkspaceTest, AReviewRunsNoMoreGitCommandsThanItsLimitCounts) {
  Sh(root_, "git init -q -b main sub && cd sub && echo s > f && git add f && git commit -qm s");
  auto p = PrepareWorkspace(Spec(), run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  // The longest path: a new gitlink, so .gitmodules is read too.
  Sh(p->path,
     "echo two > a.txt && echo b > b.txt && git -c protocol.file.allow=always "
     "submodule add -q '" +
         root_ + "/sub' lib");
  int commands = 0;
  GitRunner counted = [&](const SpawnOptions& o, int64_t timeout_ms) {
    ++commands;
    return run_(o, timeout_ms);
  };
  SquashSpec squash;
  squash.path = p->path;
  squash.task_id = "t1";
  squash.attempt = 1;
  for (const char* review : {"first", "again"}) {
    commands = 0;
    auto snapshot = SnapshotForReview(p->path, "t1", 7, counted);
    ASSERT_TRUE(snapshot.ok()) << review << ": " << snapshot.error().ToString();
    EXPECT_FALSE(DiffSnapshot(p->path, *snapshot, counted, 1 << 20).text.empty()) << review;
    auto commit = CommitSnapshot(squash, *snapshot, counted);
    ASSERT_TRUE(commit.ok()) << review << ": " << commit.error().ToString();
    EXPECT_FALSE(commit->no_changes) << review;
    EXPECT_GE(commands, 12) << review;  // it counted them all
    EXPECT_LE(commands, kReviewGitCommandsMax) << review;
    EXPECT_EQ(snapshot->nested_repos, std::vector<std::string>{}) << review;
  }
}

// The same for a worker's preparation (kPrepareGitCommandsMax): the first
// attempt's, a later one's reset with a submodule to reset too, and one
// that makes again at the recorded base a worktree deleted without git
// (its `worktree add` refused until a prune).
TEST_F(WorkspaceTest, APrepareRunsNoMoreGitCommandsThanItsLimitCounts) {
  const std::string sub = root_ + "/sub";
  fs::create_directories(sub);
  Sh(sub, "git init -q -b main && echo s > s.txt && git add s.txt && git commit -qm s");
  Sh(repo_, "git -c protocol.file.allow=always submodule add -q '" + sub +
                "' lib && git commit -qm 'add lib'");
  int commands = 0;
  GitRunner counted = [&](const SpawnOptions& o, int64_t timeout_ms) {
    ++commands;
    return run_(o, timeout_ms);
  };
  WorkspaceSpec spec = Spec();
  for (const char* attempt : {"first", "next", "remade"}) {
    commands = 0;
    auto p = PrepareWorkspace(spec, counted);
    ASSERT_TRUE(p.ok()) << attempt << ": " << p.error().ToString();
    EXPECT_GE(commands, 5) << attempt;  // it counted them all
    EXPECT_LE(commands, kPrepareGitCommandsMax) << attempt;
    // What an agent leaves: the submodule checked out and edited, edits.
    Sh(p->path,
       "git -c protocol.file.allow=always submodule update -q --init && echo e > lib/s.txt"
       " && echo edit > a.txt && echo new > new.txt");
    if (std::string(attempt) == "next") {
      spec.recorded_base = p->base_commit;
      fs::remove_all(p->path);
    }
  }
}

TEST_F(WorkspaceTest, SyncStartsFromTheRemoteTip) {
  std::string bare = root_ + "/remote.git";
  Sh(root_, "git clone -q --bare repo remote.git");
  Sh(root_,
     "git clone -q remote.git pusher && cd pusher && echo tip > a.txt && "
     "git commit -qam tip && git push -q origin main");
  std::string tip = Sh(bare, "git rev-parse main");
  auto s = Spec();
  s.sync_remote = bare;
  s.sync_branch = "main";
  auto p = PrepareWorkspace(s, run_);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->base_commit, tip);
  EXPECT_NE(Sh(repo_, "git rev-parse HEAD"), tip);  // the operator's checkout stays
  EXPECT_EQ(Sh(repo_, "git for-each-ref refs/forge"), "");
}

// Runner sync fetches for the task's first attempt only: a later one with
// the recorded base starts from it, though the remote's tip moved on and the
// worktree is gone, and fetches nothing.
TEST_F(WorkspaceTest, ARecordedBaseIsNotFetchedAgain) {
  std::string bare = root_ + "/remote.git";
  Sh(root_, "git clone -q --bare repo remote.git");
  Sh(root_,
     "git clone -q remote.git pusher && cd pusher && echo tip > a.txt && "
     "git commit -qam tip && git push -q origin main");
  auto s = Spec();
  s.sync_remote = bare;
  s.sync_branch = "main";
  auto first = PrepareWorkspace(s, run_);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  const std::string tip = first->base_commit;
  EXPECT_EQ(tip, Sh(bare, "git rev-parse main"));
  Sh(root_ + "/pusher", "echo later > a.txt && git commit -qam later && git push -q origin main");
  Sh(repo_, "git worktree remove --force '" + first->path + "'");
  int fetches = 0;
  GitRunner counted = [&](const SpawnOptions& o, int64_t timeout_ms) {
    if (std::find(o.argv.begin(), o.argv.end(), "fetch") != o.argv.end()) ++fetches;
    return run_(o, timeout_ms);
  };
  s.recorded_base = tip;
  auto again = PrepareWorkspace(s, counted);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->base_commit, tip);
  EXPECT_EQ(Sh(again->path, "cat a.txt"), "tip");
  EXPECT_EQ(fetches, 0);
  EXPECT_EQ(Sh(repo_, "git for-each-ref refs/forge"), "");
}

TEST_F(WorkspaceTest, FetchFailureNamesRemoteAndBranch) {
  auto s = Spec();
  s.sync_remote = root_ + "/nowhere.git";
  s.sync_branch = "main";
  auto p = PrepareWorkspace(s, run_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(p.error().message,
              HasSubstr("runner sync: git fetch " + root_ + "/nowhere.git main"));
}

TEST_F(WorkspaceTest, FetchTimeoutIsAnError) {
  Sh(root_, "git clone -q --bare repo remote.git");
  // upload-pack that hangs: the fetch must be cut off, not waited for.
  Sh(repo_, "git remote add slow " + root_ +
                "/remote.git && "
                "git config remote.slow.uploadpack 'sleep 30; git-upload-pack'");
  auto s = Spec();
  s.sync_remote = "slow";
  s.sync_branch = "main";
  s.fetch_timeout_ms = 300;
  auto p = PrepareWorkspace(s, run_);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kUnavailable);
  EXPECT_THAT(p.error().message, HasSubstr("git fetch slow main"));
  EXPECT_THAT(p.error().message, HasSubstr("timed out after 300ms"));
}

}  // namespace
}  // namespace forge::worker
