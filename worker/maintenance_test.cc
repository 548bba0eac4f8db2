#include "worker/maintenance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/process.h"
#include "common/test_lock_holder.h"
#include "worker/workspace_lock.h"

namespace forge::worker {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class MaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-maint-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    state_ = root_ + "/state";
    fs::create_directories(state_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Sh(const std::string& script) {
    SpawnOptions o;
    o.argv = {"sh", "-c", script};
    o.env = CurrentEnvironment();
    o.env.push_back("GIT_AUTHOR_NAME=t");
    o.env.push_back("GIT_AUTHOR_EMAIL=t@example.com");
    o.env.push_back("GIT_COMMITTER_NAME=t");
    o.env.push_back("GIT_COMMITTER_EMAIL=t@example.com");
    o.stderr_mode = Stdio::kPipe;
    auto r = RunCommand(o, 30'000);
    EXPECT_TRUE(r.ok() && r->status.success()) << script << "\n" << (r.ok() ? r->output : "");
    return r.ok() ? r->output : "";
  }

  void Touch(const std::string& path, int64_t age_s) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << "log\n";
    struct timeval tv[2];
    gettimeofday(&tv[0], nullptr);
    tv[0].tv_sec -= age_s;
    tv[1] = tv[0];
    ASSERT_EQ(::utimes(path.c_str(), tv), 0);
  }

  std::string root_, state_;
};

TEST_F(MaintenanceTest, InsideDirIsStrict) {
  EXPECT_TRUE(IsInsideDir(state_, state_ + "/workspaces/t-1"));
  EXPECT_TRUE(IsInsideDir(state_, state_ + "/not/created/yet"));
  EXPECT_FALSE(IsInsideDir(state_, state_));
  EXPECT_FALSE(IsInsideDir(state_, state_ + "/"));
  EXPECT_FALSE(IsInsideDir(state_, state_ + "/workspaces/../.."));
  EXPECT_FALSE(IsInsideDir(state_, root_));
  EXPECT_FALSE(IsInsideDir(state_, state_ + "-other/x"));
  EXPECT_FALSE(IsInsideDir(state_, "relative/path"));
  EXPECT_FALSE(IsInsideDir("", state_ + "/x"));
  // A symlink inside the state directory that points out of it.
  fs::create_directory_symlink(root_, state_ + "/escape");
  EXPECT_FALSE(IsInsideDir(state_, state_ + "/escape/victim"));
}

TEST_F(MaintenanceTest, RemovesAPlainWorkspace) {
  std::string ws = state_ + "/workspaces/t-1";
  fs::create_directories(ws + "/deep/er");
  std::ofstream(ws + "/deep/er/f") << "x";
  auto r = RemoveWorkspace(state_, {"t-1", ws, "", ""});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(r->existed);
  EXPECT_FALSE(fs::exists(ws));
  // Again: nothing there, still ok.
  r = RemoveWorkspace(state_, {"t-1", ws, "", ""});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->existed);
}

// A workspace another process works in (worker/workspace_lock.h) is left for
// the next pass; once free, it goes with its lock file.
TEST_F(MaintenanceTest, AWorkspaceInUseIsLeftForTheNextPass) {
  std::string ws = state_ + "/workspaces/t-1";
  fs::create_directories(ws);
  {
    forge::testing::LockHolder holder(WorkspaceLockPath(ws));
    auto r = RemoveWorkspace(state_, {"t-1", ws, "", ""});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kConflict);
    EXPECT_THAT(r.error().message, HasSubstr("pid " + std::to_string(holder.pid())));
    EXPECT_TRUE(fs::exists(ws));
  }
  auto r = RemoveWorkspace(state_, {"t-1", ws, "", ""});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(fs::exists(ws));
  EXPECT_FALSE(fs::exists(WorkspaceLockPath(ws)));
}

TEST_F(MaintenanceTest, RefusesAPathOutsideTheStateDir) {
  std::string victim = root_ + "/victim";
  fs::create_directories(victim);
  auto r = RemoveWorkspace(state_, {"t-1", victim, "", ""});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("refusing to remove '" + victim + "'"));
  EXPECT_THAT(r.error().message, HasSubstr("task t-1"));
  EXPECT_TRUE(fs::exists(victim));
  r = RemoveWorkspace(state_, {"t-1", state_ + "/../victim", "", ""});
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(fs::exists(victim));
}

TEST_F(MaintenanceTest, RemovesAWorktreeAndKeepsItsBranch) {
  std::string repo = root_ + "/repo";
  std::string wt = state_ + "/worktrees/t-1";
  Sh("git init -q -b main " + repo + " && cd " + repo +
     " && echo a > a && git add a && git commit -qm init && git worktree add -q -b forge/t-1 " +
     wt);
  ASSERT_TRUE(fs::exists(wt + "/a"));
  std::ofstream(wt + "/untracked") << "dirty";
  auto r = RemoveWorkspace(state_, {"t-1", wt, repo, "forge/t-1"});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(r->existed);
  EXPECT_FALSE(fs::exists(wt));
  EXPECT_THAT(Sh("git -C " + repo + " worktree list"), ::testing::Not(HasSubstr(wt)));
  EXPECT_THAT(Sh("git -C " + repo + " branch --list forge/t-1"), HasSubstr("forge/t-1"));
}

TEST_F(MaintenanceTest, RemovesAWorktreeDirectoryGitNoLongerKnows) {
  std::string repo = root_ + "/repo";
  std::string wt = state_ + "/worktrees/t-2";
  Sh("git init -q -b main " + repo + " && cd " + repo +
     " && echo a > a && git add a && git commit -qm init");
  fs::create_directories(wt);
  std::ofstream(wt + "/f") << "x";
  auto r = RemoveWorkspace(state_, {"t-2", wt, repo, "forge/t-2"});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(fs::exists(wt));
}

TEST_F(MaintenanceTest, DeletesOnlyOldPerAttemptLogs) {
  std::string logs = state_ + "/logs";
  Touch(logs + "/t-old/1.log", 3600);
  Touch(logs + "/t-old/1.prompt", 3600);
  Touch(logs + "/t-mixed/1.log", 3600);
  Touch(logs + "/t-mixed/2.log", 0);
  Touch(logs + "/worker-1.log", 3600);  // a process log: not maintenance's
  std::vector<std::string> errors;
  int64_t cutoff = (::time(nullptr) - 60) * 1000LL;
  EXPECT_EQ(DeleteOldLogs(logs, cutoff, errors), 3);
  EXPECT_TRUE(errors.empty()) << errors[0];
  EXPECT_FALSE(fs::exists(logs + "/t-old"));
  EXPECT_FALSE(fs::exists(logs + "/t-mixed/1.log"));
  EXPECT_TRUE(fs::exists(logs + "/t-mixed/2.log"));
  EXPECT_TRUE(fs::exists(logs + "/worker-1.log"));  // pid 1 lives
  // No cutoff, or no directory: nothing, no error.
  EXPECT_EQ(DeleteOldLogs(logs, 0, errors), 0);
  EXPECT_EQ(DeleteOldLogs(root_ + "/none", cutoff, errors), 0);
  EXPECT_TRUE(errors.empty());
}

// Every child restart starts its own log: a dead child's old ones go, a
// live child's and a recent one stay, and so does every other file.
TEST_F(MaintenanceTest, DeletesTheOldLogsOfChildrenThatAreGone) {
  pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string d = std::to_string(dead), me = std::to_string(::getpid());
  std::string logs = state_ + "/logs";
  Touch(logs + "/worker-" + d + ".log", 3600);
  Touch(logs + "/worker-" + d + ".2.log", 3600);
  Touch(logs + "/critic-" + d + ".log", 0);
  Touch(logs + "/critic-" + me + ".log", 3600);
  Touch(logs + "/supervisor.log", 3600);
  Touch(logs + "/worker-" + d + ".log.bak", 3600);
  Touch(logs + "/worker-x" + d + ".log", 3600);
  std::vector<std::string> errors;
  int64_t cutoff = (::time(nullptr) - 60) * 1000LL;
  EXPECT_EQ(DeleteOldLogs(logs, cutoff, errors), 2);
  EXPECT_TRUE(errors.empty()) << errors[0];
  EXPECT_FALSE(fs::exists(logs + "/worker-" + d + ".log"));
  EXPECT_FALSE(fs::exists(logs + "/worker-" + d + ".2.log"));
  for (const std::string& kept :
       std::vector<std::string>{"critic-" + d + ".log", "critic-" + me + ".log", "supervisor.log",
                                "worker-" + d + ".log.bak", "worker-x" + d + ".log"}) {
    EXPECT_TRUE(fs::exists(logs + "/" + kept)) << kept;
  }
}

TEST_F(MaintenanceTest, JobRunsOnAThreadAndSignalsItsFd) {
  std::string ws = state_ + "/workspaces/t-9";
  fs::create_directories(ws);
  proto::Maintain m;
  m.job_id = 42;
  m.state_dir = state_;
  m.remove = {{"t-9", ws, "", ""}, {"t-x", "/etc", "", ""}};
  auto job = MaintenanceJob::Start(m);
  ASSERT_TRUE(job.ok());
  pollfd p{(*job)->fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10'000), 1);
  ASSERT_TRUE((*job)->Finished());
  proto::MaintenanceResult r = (*job)->Take();
  EXPECT_EQ(r.job_id, 42);
  ASSERT_EQ(r.removed.size(), 1u);
  EXPECT_EQ(r.removed[0].task_id, "t-9");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr("refusing to remove '/etc'"));
  EXPECT_FALSE(fs::exists(ws));
  EXPECT_TRUE(fs::exists("/etc"));
}

}  // namespace
}  // namespace forge::worker
