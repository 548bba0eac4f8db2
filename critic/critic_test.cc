// forge-critic end to end: this test plays the supervisor (a real ROUTER) and
// runs the real binary on verify commands.
#include "critic/critic.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "worker/test_supervisor.h"
#include "worker/workspace.h"
#include "worker/workspace_lock.h"

namespace forge::critic {
namespace {

using forge::testing::FakeSupervisor;
using forge::testing::FileSizeLimit;
using forge::testing::NowMs;
using forge::testing::ReadAll;
using forge::testing::WaitForFile;
using forge::testing::WaitGone;
using forge::testing::WriteExecutable;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kCritic = std::string(FORGE_BIN_DIR) + "/forge-critic";

class CriticTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pid_ = sup_.StartChild(kCritic, 50, std::nullopt, extra_args_);
    auto hello = sup_.WaitFor<proto::Hello>();
    ASSERT_TRUE(hello) << "no hello from forge-critic";
    EXPECT_EQ(hello->role, "critic");
    EXPECT_EQ(hello->pid, pid_);
    EXPECT_EQ(sup_.last_identity, "critic-" + std::to_string(pid_));
  }

  proto::Review MakeReview(std::vector<std::string> verify, int64_t attempt_id = 7) {
    proto::Review r;
    r.attempt_id = attempt_id;
    r.n = 1;
    r.task.id = "t-" + std::to_string(attempt_id);
    r.task.title = "Make it work";
    r.task.env = {{"TASK_VAR", "from-task"}};
    r.workspace = sup_.state_dir + "/workspaces/" + r.task.id;
    std::filesystem::create_directories(r.workspace);
    r.verify = std::move(verify);
    r.verify_timeout_ms = 20000;
    r.log_path = sup_.state_dir + "/logs/" + r.task.id + "/1.review.log";
    return r;
  }

  std::optional<proto::ReviewResult> Review(const proto::Review& r) {
    sup_.Send(r);
    auto result = sup_.WaitFor<proto::ReviewResult>(15000);
    if (!result) {
      ADD_FAILURE() << "no review_result";
      return std::nullopt;
    }
    EXPECT_EQ(result->attempt_id, r.attempt_id);
    return result;
  }

  FakeSupervisor sup_;
  std::vector<std::string> extra_args_;  // the critic's flags after the usual ones
  pid_t pid_ = -1;
};

class CriticWithAShortLockWaitTest : public CriticTest {
 protected:
  void SetUp() override {
    extra_args_ = {"--workspace-lock-wait-ms", "300"};
    CriticTest::SetUp();
  }
};

// A critic whose files stop growing at 64 KiB, as on a disk that fills.
class CriticOnAFullDiskTest : public CriticTest {
 protected:
  void SetUp() override {
    FileSizeLimit full(64 << 10);
    CriticTest::SetUp();
  }
};

TEST_F(CriticTest, AllChecksPass) {
  auto r = Review(MakeReview(
      {"echo one; test \"$(pwd)\" = \"$PWD\"", "echo task=$TASK_VAR id=$FORGE_TASK_ID"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
  EXPECT_EQ(r->error, "");
  ASSERT_EQ(r->checks.size(), 2u);
  EXPECT_TRUE(r->checks[0].passed);
  EXPECT_EQ(r->checks[0].exit_code, 0);
  EXPECT_EQ(r->checks[1].name, "echo task=$TASK_VAR id=$FORGE_TASK_ID");
  EXPECT_EQ(r->checks[1].output_tail, "task=from-task id=t-7\n");
  EXPECT_THAT(ReadAll(sup_.state_dir + "/logs/t-7/1.review.log"), HasSubstr("task=from-task"));
}

// The disk fills while a check prints: the review goes on to its verdict,
// the check's tail has its end, and the result says where the log stops.
TEST_F(CriticOnAFullDiskTest, AReviewLogThatStopsEarlySaysSoInTheResult) {
  auto review = MakeReview({"yes 'a line of output' | head -c 200000; echo the last line"});
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
  EXPECT_THAT(r->log_error, HasSubstr("the review log stops after 65536 bytes: writing '" +
                                      review.log_path + "': File too large; "));
  ASSERT_EQ(r->checks.size(), 1u);
  EXPECT_THAT(r->checks[0].output_tail, HasSubstr("the last line"));
  struct stat st {};
  ASSERT_EQ(::stat(review.log_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 64 << 10);
}

// A review log that cannot be created: the review goes on and says so.
TEST_F(CriticTest, AReviewLogThatCannotBeCreatedIsInTheResult) {
  auto review = MakeReview({"echo checked"});
  std::ofstream(sup_.dir + "/not-a-dir") << "a file\n";
  review.log_path = sup_.dir + "/not-a-dir/1.review.log";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
  EXPECT_THAT(r->log_error, ::testing::StartsWith("no review log: "));
  EXPECT_THAT(r->log_error, HasSubstr(review.log_path));
  ASSERT_EQ(r->checks.size(), 1u);
  EXPECT_EQ(r->checks[0].output_tail, "checked\n");
}

// A review log written to the end reports nothing.
TEST_F(CriticTest, AWholeReviewLogHasNoLogError) {
  auto r = Review(MakeReview({"yes 'a line of output' | head -c 200000"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
  EXPECT_EQ(r->log_error, "");
}

// A review again appends to the attempt's review log: the log says where
// the review without a verdict (here cut off mid-line) ends.
TEST_F(CriticTest, AReviewAgainMarksWhereTheReviewBeforeItEnded) {
  auto review = MakeReview({"echo second run"});
  std::filesystem::create_directories(std::filesystem::path(review.log_path).parent_path());
  std::ofstream(review.log_path) << "$ make test\nhalf a li";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
  EXPECT_THAT(ReadAll(review.log_path),
              ::testing::StartsWith("$ make test\nhalf a li\n[forge: the review above gave no "
                                    "verdict; the attempt is reviewed again from here]\n$ echo "
                                    "second run\nsecond run\n"));
  // A first review's log starts with its first check.
  auto first = MakeReview({"echo first"}, 8);
  ASSERT_TRUE(Review(first));
  EXPECT_THAT(ReadAll(first.log_path), ::testing::StartsWith("$ echo first\n"));
}

TEST_F(CriticTest, ChecksRunInTheWorkspace) {
  auto review = MakeReview({"test -f marker.txt"});
  std::ofstream(review.workspace + "/marker.txt") << "x";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
}

TEST_F(CriticTest, OneFailingCheckRejectsWithItsTail) {
  auto r = Review(MakeReview({"true", "echo 'FAIL: test_parse'; echo boom >&2; exit 2", "true"}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("echo 'FAIL: test_parse'"));
  EXPECT_THAT(r->error, HasSubstr("exit 2"));
  ASSERT_EQ(r->checks.size(), 3u);
  EXPECT_TRUE(r->checks[0].passed);
  EXPECT_FALSE(r->checks[1].passed);
  EXPECT_EQ(r->checks[1].exit_code, 2);
  EXPECT_EQ(r->checks[1].output_tail, "FAIL: test_parse\nboom\n");
  EXPECT_TRUE(r->checks[2].passed);
}

// A check that prints a secret of the task's env: neither its tail (shown
// by `show` and quoted in the retry's brief) nor the review log has it.
TEST_F(CriticTest, AChecksOutputNeverCarriesATasksSecret) {
  auto review = MakeReview({"echo tok=$API_TOKEN; exit 1"});
  review.task.env["API_TOKEN"] = "supersecretvalue123";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  ASSERT_EQ(r->checks.size(), 1u);
  EXPECT_EQ(r->checks[0].output_tail, "tok=[redacted]\n");
  std::string log = ReadAll(review.log_path);
  EXPECT_THAT(log, HasSubstr("tok=[redacted]"));
  EXPECT_THAT(log, Not(HasSubstr("supersecretvalue123")));
}

// A failing check whose command quotes a secret of the task's env: the
// verdict's error (which the supervisor logs and stores) and the critic's
// log name the check redacted; the result's check keeps its name (show
// redacts it).
TEST_F(CriticTest, AFailingChecksCommandNeverCarriesATasksSecretIntoALog) {
  auto review = MakeReview({"echo supersecretvalue123 >/dev/null; exit 1"});
  review.task.env["API_TOKEN"] = "supersecretvalue123";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_EQ(r->error, "check 'echo [redacted] >/dev/null; exit 1' failed with exit 1");
  std::string log = ReadAll(sup_.state_dir + "/logs/critic-" + std::to_string(pid_) + ".log");
  EXPECT_THAT(log, HasSubstr("check 'echo [redacted] >/dev/null; exit 1'"));
  EXPECT_THAT(log, Not(HasSubstr("supersecretvalue123")));
}

// A secret printed over and over: wherever the tail was cut, no piece of
// it is left at the cut.
TEST_F(CriticTest, ATailCutInsideASecretKeepsNoPieceOfIt) {
  auto review =
      MakeReview({"yes \"$API_TOKEN\" | tr -d '\\n' | head -c 20011; printf '\\nend\\n'; exit 1"});
  const std::string secret = "supersecretvalue123";
  review.task.env["API_TOKEN"] = secret;
  auto r = Review(review);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->checks.size(), 1u);
  const std::string& tail = r->checks[0].output_tail;
  EXPECT_THAT(tail, HasSubstr("[redacted]"));
  for (size_t i = 0; i + 6 <= secret.size(); ++i) {
    EXPECT_THAT(tail, Not(HasSubstr(secret.substr(i, 6)))) << tail.substr(0, 80);
  }
}

// Nor one of the critic's own environment (the checks inherit it).
class CriticWithASecretTest : public CriticTest {
 protected:
  void SetUp() override {
    ::setenv("FORGE_TEST_DEPLOY_KEY", "ownsecretvalue42", 1);
    CriticTest::SetUp();
    ::unsetenv("FORGE_TEST_DEPLOY_KEY");
  }
};

TEST_F(CriticWithASecretTest, AChecksOutputNeverCarriesTheCriticsSecret) {
  auto r = Review(MakeReview({"echo key=$FORGE_TEST_DEPLOY_KEY; exit 1"}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->checks.size(), 1u);
  EXPECT_EQ(r->checks[0].output_tail, "key=[redacted]\n");
}

// A process from before a supervisor restart still works in the workspace
// (the test holds its lock): the critic waits, heartbeating for the attempt,
// before its checks run or its log is opened, reviews once the lock is free,
// holds it while a check runs and lets it go before the verdict.
TEST_F(CriticTest, AWorkspaceInUseIsWaitedForAndHeldThroughTheReview) {
  auto review = MakeReview({"echo > running; while [ ! -e go ]; do sleep 0.01; done"});
  const std::string lock_path = worker::WorkspaceLockPath(review.workspace);
  auto old = worker::LockWorkspace(review.workspace, 0, nullptr);
  ASSERT_TRUE(old.ok()) << old.error().ToString();
  std::optional<LockFile> old_lock = std::move(old).value();
  sup_.Send(review);
  ASSERT_TRUE(sup_.WaitForAttemptHeartbeats(review.attempt_id, 3));
  EXPECT_FALSE(std::filesystem::exists(review.log_path))
      << "reviewed while another process held it";
  old_lock.reset();
  WaitForFile(review.workspace + "/running", 5000);
  EXPECT_TRUE(std::filesystem::exists(review.workspace + "/running"));
  EXPECT_EQ(LockFile::Holder(lock_path), pid_);
  WriteExecutable(review.workspace + "/go", "");
  auto r = sup_.WaitFor<proto::ReviewResult>(15000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  EXPECT_EQ(LockFile::Holder(lock_path), std::nullopt);
}

// A workspace whose holder never lets go: past the wait there is no verdict,
// and reviewing again would wait again, so the result says not retryable
// (the supervisor blocks the task, Protocol.AReviewThatCannotBeDoneBlocksTheTask),
// naming the holder. No check ran; the critic takes the next review.
TEST_F(CriticWithAShortLockWaitTest, AWorkspaceHeldPastTheWaitIsNotRetryable) {
  auto review = MakeReview({"echo > ran"});
  auto old = worker::LockWorkspace(review.workspace, 0, nullptr);
  ASSERT_TRUE(old.ok()) << old.error().ToString();
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_FALSE(r->retryable);
  EXPECT_FALSE(r->infra);
  EXPECT_THAT(r->error, HasSubstr("in use by another process (pid " + std::to_string(getpid())));
  EXPECT_THAT(r->error, HasSubstr("waited 300ms"));
  EXPECT_FALSE(std::filesystem::exists(review.workspace + "/ran"));

  auto next = Review(MakeReview({"true"}, 8));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->verdict, "pass");
}

// A check with a NUL byte (a task stored before the submit check refused
// them) is not run, and not retried: every review would refuse it again,
// and the supervisor would run the paid agent again for each. The message
// shows the byte escaped.
TEST_F(CriticTest, ACheckSpawnRefusesIsNotRetryable) {
  auto r = Review(MakeReview({std::string("true\0; false", 12)}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_FALSE(r->retryable);
  EXPECT_THAT(r->error, HasSubstr("cannot run check 'true\\x00; false'"));
  EXPECT_THAT(r->error, HasSubstr("contains a NUL byte"));
}

// A shutdown while the critic waits for a workspace in use ends the wait
// without a verdict (the supervisor, stopping, cancels the attempt), and the
// critic exits.
TEST_F(CriticTest, AShutdownEndsTheWaitForAWorkspaceInUse) {
  auto review = MakeReview({"echo > ran"});
  auto old = worker::LockWorkspace(review.workspace, 0, nullptr);
  ASSERT_TRUE(old.ok()) << old.error().ToString();
  sup_.Send(review);
  ASSERT_TRUE(sup_.WaitForAttemptHeartbeats(review.attempt_id, 2));
  sup_.Send(proto::Shutdown{60000});
  auto r = sup_.WaitFor<proto::ReviewResult>(5000);
  ASSERT_TRUE(r) << "the critic went on waiting";
  EXPECT_EQ(r->verdict, "error");
  EXPECT_TRUE(r->retryable);
  EXPECT_FALSE(std::filesystem::exists(review.workspace + "/ran"));
  auto st = sup_.WaitExit(pid_, 5000);
  ASSERT_TRUE(st) << "the critic did not exit";
  EXPECT_EQ(st->exit_code, 0);
}

TEST_F(CriticTest, OutputTailIsBounded) {
  auto r =
      Review(MakeReview({"i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; exit 1"}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->checks.size(), 1u);
  EXPECT_LE(r->checks[0].output_tail.size(), 4096u);
  EXPECT_THAT(r->checks[0].output_tail, HasSubstr("line 2999\n"));
}

TEST_F(CriticTest, CheckTimeoutRejects) {
  auto review = MakeReview({"echo $$ > pid; exec sleep 1000", "true"});
  review.verify_timeout_ms = 300;
  const int64_t t0 = NowMs();
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("timed out"));
  ASSERT_EQ(r->checks.size(), 2u);
  EXPECT_TRUE(r->checks[0].timed_out);
  EXPECT_FALSE(r->checks[0].passed);
  EXPECT_GE(r->checks[0].duration_ms, 300);
  EXPECT_LT(NowMs() - t0, 5000);
  pid_t pid = std::stoi(ReadAll(review.workspace + "/pid"));
  EXPECT_TRUE(WaitGone(pid, 5000));
}

TEST_F(CriticTest, CancelKillsTheCheck) {
  auto review = MakeReview({"echo $$ > pid; exec sleep 1000"});
  sup_.Send(review);
  std::string pid_text = forge::testing::WaitForFile(review.workspace + "/pid", 5000);
  ASSERT_FALSE(pid_text.empty());
  sup_.Send(proto::Cancel{12345});  // not ours: ignored
  sup_.Send(proto::Cancel{7});
  auto r = sup_.WaitFor<proto::ReviewResult>();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_EQ(r->error, "cancelled");
  EXPECT_TRUE(WaitGone(std::stoi(pid_text), 5000));
  // Idle again: the next review runs.
  auto again = Review(MakeReview({"true"}, 8));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->verdict, "pass");
}

TEST_F(CriticTest, MissingWorkspaceIsAnError) {
  auto review = MakeReview({"true"});
  review.workspace = sup_.dir + "/nowhere";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_THAT(r->error, HasSubstr(sup_.dir + "/nowhere"));
}

TEST_F(CriticTest, HeartbeatsNameTheAttemptWhileACheckRuns) {
  auto review = MakeReview({"while [ ! -e go ]; do sleep 0.01; done"});
  sup_.Send(review);
  const int64_t deadline = NowMs() + 3000;
  int with_attempt = 0;
  while (with_attempt < 5 && NowMs() < deadline) {
    auto m = sup_.Receive(deadline - NowMs());
    ASSERT_TRUE(m);
    auto* hb = std::get_if<proto::Heartbeat>(&m->message);
    ASSERT_NE(hb, nullptr);
    if (hb->attempt_id) {
      EXPECT_EQ(*hb->attempt_id, 7);
      ++with_attempt;
    }
  }
  EXPECT_GE(with_attempt, 5);
  std::ofstream(review.workspace + "/go") << "";
  auto r = sup_.WaitFor<proto::ReviewResult>();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
}

TEST_F(CriticTest, ShutdownIdleExits) {
  sup_.Send(proto::Shutdown{1000});
  auto st = sup_.WaitExit(pid_, 3000);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->exit_code, 0);
}

TEST_F(CriticTest, ShutdownGraceExpiredCancelsTheReview) {
  auto review = MakeReview({"exec sleep 1000"});
  sup_.Send(review);
  sup_.Send(proto::Shutdown{200});
  auto r = sup_.WaitFor<proto::ReviewResult>();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_EQ(r->error, "cancelled");
  auto st = sup_.WaitExit(pid_, 3000);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->exit_code, 0);
}

// Nothing to run: a pass, with a finding that says nothing verified it.
TEST_F(CriticTest, NoChecksPasses) {
  auto r = Review(MakeReview({}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass");
  EXPECT_TRUE(r->checks.empty());
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].message,
            "unverified: no verify command and no critic agent; only the agent's exit status was "
            "checked");
}

// ---- repo tasks: squash commit and hollow pass ----

std::string Sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

class RepoTaskTest : public CriticTest {
 protected:
  proto::Review RepoReview() {
    auto r = MakeReview({"test -f a.txt"});
    r.task.repo = sup_.dir + "/origin";
    r.n = 2;
    std::string git = "mkdir -p '" + r.task.repo + "' && cd '" + r.task.repo +
                      "' && git init -q -b main && git config user.email t@t &&"
                      " git config user.name t"
                      " && echo one > a.txt && git add a.txt && git commit -qm base";
    EXPECT_EQ(std::system(git.c_str()), 0);
    // The worktree the worker would have made for the attempt.
    std::filesystem::remove_all(r.workspace);
    r.workspace = WorktreePath(sup_.state_dir, r.task.id);
    worker::WorkspaceSpec spec;
    spec.task_id = r.task.id;
    spec.repo = r.task.repo;
    spec.path = r.workspace;
    auto ws = worker::PrepareWorkspace(spec, BlockingGitRunner());
    EXPECT_TRUE(ws.ok()) << ws.error().ToString();
    base_ = Sh("cd '" + r.workspace + "' && git rev-parse HEAD");
    operator_head_ = Sh("cd '" + r.task.repo + "' && git rev-parse HEAD");
    return r;
  }
  void ExpectOperatorUntouched(const proto::Review& r) {
    std::string repo = "cd '" + r.task.repo + "' && ";
    EXPECT_EQ(Sh(repo + "git rev-parse HEAD"), operator_head_);
    EXPECT_EQ(Sh(repo + "git symbolic-ref HEAD"), "refs/heads/main\n");
    EXPECT_EQ(Sh(repo + "git status --porcelain"), "");
    EXPECT_EQ(Sh(repo + "git rev-parse main"), operator_head_);
  }
  std::string base_;
  std::string operator_head_;
};

TEST_F(RepoTaskTest, PassSquashesTheWorkIntoOneCommitWithTrailers) {
  auto review = RepoReview();
  ASSERT_EQ(
      std::system(("cd '" + review.workspace + "' && echo two > a.txt && echo b > b.txt").c_str()),
      0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  std::string ws = "cd '" + review.workspace + "' && ";
  EXPECT_EQ(*r->commit + "\n", Sh(ws + "git rev-parse HEAD"));
  EXPECT_EQ(Sh(ws + "git rev-parse HEAD~1"), base_);
  EXPECT_EQ(Sh(ws + "git log -1 --format=%s"), "Make it work\n");
  std::string body = Sh(ws + "git log -1 --format=%B");
  EXPECT_THAT(body, HasSubstr("Forge-Task: t-7\nForge-Attempt: 2"));
  EXPECT_EQ(Sh(ws + "git status --porcelain"), "");
  EXPECT_EQ(Sh(ws + "git show --stat --format= HEAD | grep -c txt"), "2\n");
  EXPECT_EQ(Sh(ws + "git rev-parse forge/t-7"), *r->commit + "\n");
  EXPECT_EQ(Sh(ws + "git symbolic-ref HEAD"), "refs/heads/forge/t-7\n");
  ExpectOperatorUntouched(review);
}

TEST_F(RepoTaskTest, AgentCommitsAreSquashedIntoOne) {
  auto review = RepoReview();
  std::string ws = "cd '" + review.workspace + "' && ";
  ASSERT_EQ(std::system((ws + "echo two > a.txt && git commit -qam c1 && echo b > b.txt && "
                              "git add b.txt && git commit -qm c2 && echo c > c.txt")
                            .c_str()),
            0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  EXPECT_EQ(Sh(ws + "git rev-list --count " + base_.substr(0, 40) + "..forge/t-7"), "1\n");
  EXPECT_EQ(Sh(ws + "git rev-parse forge/t-7~1"), base_);
  EXPECT_EQ(Sh(ws + "git show --format= --name-only forge/t-7 | sort | tr '\\n' ' '"),
            "a.txt b.txt c.txt ");
  ExpectOperatorUntouched(review);
}

TEST_F(RepoTaskTest, CommittedThenRevertedIsHollow) {
  auto review = RepoReview();
  std::string ws = "cd '" + review.workspace + "' && ";
  ASSERT_EQ(std::system((ws + "echo two > a.txt && git commit -qam c1 && git revert --no-edit "
                              "HEAD >/dev/null")
                            .c_str()),
            0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("no_changes"));
  EXPECT_FALSE(r->commit.has_value());
}

TEST_F(RepoTaskTest, NoChangesIsAHollowPassRejected) {
  auto review = RepoReview();
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("no_changes"));
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_THAT(r->findings[0].message, HasSubstr("no_changes"));
  EXPECT_FALSE(r->commit.has_value());
  EXPECT_EQ(Sh("cd '" + review.workspace + "' && git rev-parse HEAD"), base_);
}

TEST_F(RepoTaskTest, AllowEmptyPassesWithAnEmptyCommit) {
  auto review = RepoReview();
  review.task.allow_empty = true;
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  EXPECT_EQ(Sh("cd '" + review.workspace + "' && git rev-parse HEAD~1"), base_);
}

// What a pass commits is what the checks ran on: a file a check writes (a
// build's output, a test report) is not part of it.
TEST_F(RepoTaskTest, AFileACheckWritesIsNotCommitted) {
  auto review = RepoReview();
  review.verify = {"test -f a.txt", "echo built > artifact.txt && echo more >> a.txt"};
  ASSERT_EQ(std::system(("cd '" + review.workspace + "' && echo two > a.txt").c_str()), 0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  std::string ws = "cd '" + review.workspace + "' && ";
  EXPECT_EQ(Sh(ws + "git show --format= --name-only " + *r->commit), "a.txt\n");
  EXPECT_EQ(Sh(ws + "git show " + *r->commit + ":a.txt"), "two\n");
}

// A review again of the same attempt (the first was interrupted: a cancel
// here, a crash or a restart in production) checks, reviews and commits
// what the attempt left, as the first review snapshotted it, not what the
// interrupted checks wrote meanwhile (their ignored files stay). Another
// attempt's review snapshots anew.
TEST_F(RepoTaskTest, AReviewAgainCommitsWhatTheFirstReviewSaw) {
  auto review = RepoReview();
  std::string ws = "cd '" + review.workspace + "' && ";
  ASSERT_EQ(std::system((ws + "echo two > a.txt && echo cache > .gitignore").c_str()), 0);
  review.verify = {
      "echo built > artifact.txt && echo more >> a.txt && mkdir -p cache && echo kept > cache/c "
      "&& echo $$ > pid && exec sleep 1000"};
  sup_.Send(review);
  std::string pid_text = forge::testing::WaitForFile(review.workspace + "/pid", 5000);
  ASSERT_FALSE(pid_text.empty());
  sup_.Send(proto::Cancel{review.attempt_id});
  auto cancelled = sup_.WaitFor<proto::ReviewResult>();
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->error, "cancelled");

  // The checks run on the attempt's work, the ignored files as they are.
  review.verify = {"test \"$(cat a.txt)\" = two && test ! -e artifact.txt && test ! -e pid",
                   "test -f cache/c"};
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  EXPECT_EQ(Sh(ws + "git show --format= --name-only " + *r->commit), ".gitignore\na.txt\n");
  EXPECT_EQ(Sh(ws + "git show " + *r->commit + ":a.txt"), "two\n");
  // The kept snapshot is a commit on the base, in the worktree's own refs.
  EXPECT_EQ(Sh(ws + "git rev-parse " + std::string(kReviewSnapshotRef) + "~1"), base_);
  EXPECT_EQ(Sh("cd '" + review.task.repo + "' && git for-each-ref refs/worktree"), "");

  // Another attempt's review (the kept one names attempt 7) takes its own.
  ASSERT_EQ(std::system((ws + "echo three > a.txt").c_str()), 0);
  auto next = review;
  next.attempt_id = review.attempt_id + 1;
  next.n = review.n + 1;
  next.verify = {"true"};
  auto r2 = Review(next);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->verdict, "pass") << r2->error;
  ASSERT_TRUE(r2->commit.has_value());
  EXPECT_EQ(Sh(ws + "git show " + *r2->commit + ":a.txt"), "three\n");
}

// An attempt that changed nothing stays hollow on a review again, whatever
// the interrupted review's checks edited.
TEST_F(RepoTaskTest, AnUnchangedAttemptIsHollowOnAReviewAgainToo) {
  auto review = RepoReview();
  review.verify = {"echo more >> a.txt && echo $$ > pid && exec sleep 1000"};
  sup_.Send(review);
  ASSERT_FALSE(forge::testing::WaitForFile(review.workspace + "/pid", 5000).empty());
  sup_.Send(proto::Cancel{review.attempt_id});
  ASSERT_TRUE(sup_.WaitFor<proto::ReviewResult>());
  review.verify = {"true"};
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("no_changes"));
}

// An attempt that changed nothing is hollow even when its checks write files.
TEST_F(RepoTaskTest, AnUnchangedAttemptIsHollowWhateverItsChecksWrite) {
  auto review = RepoReview();
  review.verify = {"echo built > artifact.txt"};
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("no_changes"));
  EXPECT_FALSE(r->commit.has_value());
}

TEST_F(RepoTaskTest, FailingCheckLeavesNoCommit) {
  auto review = RepoReview();
  review.verify = {"false"};
  ASSERT_EQ(std::system(("cd '" + review.workspace + "' && echo two > a.txt").c_str()), 0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_FALSE(r->commit.has_value());
  EXPECT_EQ(Sh("cd '" + review.workspace + "' && git rev-parse HEAD"), base_);
}

// Work in a git repository the agent made inside its worktree would be
// committed as a pointer only (a clone of forge/<task> has an empty sub/):
// rejected before any check, naming it, with nothing committed.
TEST_F(RepoTaskTest, ANestedRepositoryIsRejectedNamingIt) {
  auto review = RepoReview();
  review.verify = {"touch checked"};
  std::string ws = "cd '" + review.workspace + "' && ";
  ASSERT_EQ(std::system((ws + "mkdir sub && cd sub && git init -q && echo work > code.py && "
                              "git add . && git commit -qm sub")
                            .c_str()),
            0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("sub is a git repository of its own inside the worktree"));
  EXPECT_THAT(r->error, HasSubstr("remove its .git"));
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].message, r->error);
  EXPECT_TRUE(r->checks.empty());
  EXPECT_FALSE(r->commit.has_value());
  EXPECT_EQ(Sh(ws + "git rev-parse forge/t-7"), base_);
  EXPECT_EQ(Sh(ws + "ls checked 2>&1 >/dev/null | grep -c 'No such'"), "1\n");
}

// One without a commit, which `git add` refuses, is the agent's too.
TEST_F(RepoTaskTest, ANestedRepositoryWithoutACommitIsRejectedNamingIt) {
  auto review = RepoReview();
  ASSERT_EQ(std::system(("cd '" + review.workspace +
                         "' && echo two > a.txt && mkdir -p lib/sub && cd lib/sub && git init -q")
                            .c_str()),
            0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("lib/sub is a git repository of its own"));
  EXPECT_FALSE(r->commit.has_value());
}

// An agent killed with a git of its own running (its process group goes)
// leaves that git's locks: they are stale by the review, which clears those
// in its way and commits the work. The operator's other locks stay.
TEST_F(RepoTaskTest, StaleGitLocksTheAgentLeftDoNotFailTheReview) {
  auto review = RepoReview();
  std::string ws = "cd '" + review.workspace + "' && ";
  std::string locks = std::string("\"$g/index.lock\" \"$g/HEAD.lock\" \"$g/") + kReviewSnapshotRef +
                      ".lock\" \"$c/refs/heads/forge/t-7.lock\" \"$c/refs/heads/main.lock\"";
  ASSERT_EQ(std::system((ws +
                         "echo two > a.txt && git commit -qam work && "
                         "g=$(git rev-parse --absolute-git-dir) && "
                         "c=$(git rev-parse --git-common-dir) && "
                         "mkdir -p \"$g/refs/worktree\" && touch " +
                         locks)
                            .c_str()),
            0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  EXPECT_EQ(Sh(ws + "git show " + *r->commit + ":a.txt"), "two\n");
  EXPECT_EQ(Sh(ws + "git rev-parse forge/t-7"), *r->commit + "\n");
  EXPECT_EQ(Sh(ws + "git rev-parse " + std::string(kReviewSnapshotRef) + "~1"), base_);
  EXPECT_EQ(Sh("cd '" + review.task.repo + "' && ls .git/refs/heads/main.lock"),
            ".git/refs/heads/main.lock\n");
}

// A lock some process has open is live (the operator's git in the
// worktree, an editor's `git status`): left alone, and the review waits for
// another go rather than have two gits write the index.
TEST_F(RepoTaskTest, AGitLockALiveProcessHoldsIsLeftAlone) {
  auto review = RepoReview();
  std::string ws = "cd '" + review.workspace + "' && ";
  ASSERT_EQ(std::system((ws + "echo two > a.txt").c_str()), 0);
  std::string lock = Sh(ws + "printf %s \"$(git rev-parse --absolute-git-dir)/index.lock\"");
  int held = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(held, 0) << lock;
  auto r = Review(review);
  ::close(held);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_THAT(r->error, HasSubstr("index.lock"));
  EXPECT_TRUE(std::filesystem::exists(lock));
}

TEST_F(RepoTaskTest, PlainWorkspaceInsideAnotherRepoIsNeverCommittedTo) {
  // Not a Forge worktree: the review is an error, and nothing is committed.
  // The operator's checkout contains the state dir, as .forge beside forge.yaml would.
  auto review = MakeReview({"true"});
  review.task.repo = sup_.dir;
  std::string git = "cd '" + sup_.dir +
                    "' && git init -q && git config user.email t@t && git config user.name t"
                    " && git commit -q --allow-empty -m operator";
  ASSERT_EQ(std::system(git.c_str()), 0);
  std::string before = Sh("cd '" + sup_.dir + "' && git rev-parse HEAD");
  std::ofstream(review.workspace + "/new.txt") << "x";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_THAT(r->error, HasSubstr("not a Forge worktree"));
  EXPECT_FALSE(r->commit.has_value());
  EXPECT_EQ(Sh("cd '" + sup_.dir + "' && git rev-parse HEAD"), before);
  EXPECT_EQ(Sh("cd '" + sup_.dir + "' && git diff --cached --name-only"), "");
}

// ---- the optional LLM critic (a fake agent script standing in for it) ----

class LlmCriticTest : public RepoTaskTest {
 protected:
  // A review whose critic agent is `script` (command profile).
  proto::Review WithCritic(std::vector<std::string> verify, const std::string& script) {
    return WithCriticOn(MakeReview(std::move(verify)), script);
  }
  proto::Review WithCriticOn(proto::Review r, const std::string& script) {
    std::string path = sup_.dir + "/critic-agent.sh";
    forge::testing::WriteExecutable(path, "#!/bin/sh\n" + script);
    proto::AgentSpec a;
    a.profile = "command";
    a.command = {path};
    a.timeout_ms = 10000;
    a.kill_grace_ms = 200;
    r.critic = a;
    return r;
  }
  std::string Marker() const { return sup_.dir + "/critic-ran"; }
};

TEST_F(LlmCriticTest, ApproveWithMinorFindingsPasses) {
  auto review = WithCritic(
      {"true"},
      "cat > " + sup_.dir +
          "/critic-prompt\n"
          "echo 'Reviewed.'\n"
          "echo '{\"overall\":\"approve\",\"findings\":[{\"severity\":\"sev3\",\"category\":"
          "\"style\",\"file\":\"a.c\",\"line\":2,\"message\":\"nit\"}]}'\n");
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].message, "nit");
  EXPECT_EQ(r->findings[0].line, 2);
  std::string prompt = ReadAll(sup_.dir + "/critic-prompt");
  EXPECT_THAT(prompt, HasSubstr("Review of task t-7: Make it work"));
  EXPECT_THAT(prompt, HasSubstr("\"overall\":\"approve|request_changes|block\""));
  EXPECT_THAT(prompt, HasSubstr("sev2 product"));
}

TEST_F(LlmCriticTest, RequestChangesWithSev2Rejects) {
  auto r = Review(
      WithCritic({},
                 "echo '{\"overall\":\"request_changes\",\"findings\":[{\"severity\":\"sev2\","
                 "\"category\":\"product\",\"message\":\"adapter with no consumer\"}]}'\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_THAT(r->error, HasSubstr("adapter with no consumer"));
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].category, "product");
}

TEST_F(LlmCriticTest, FailingCheckRejectsWithoutAskingTheCritic) {
  auto r =
      Review(WithCritic({"exit 1"}, "touch " + Marker() + "\necho '{\"overall\":\"approve\"}'\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  EXPECT_NE(::access(Marker().c_str(), F_OK), 0) << "the critic agent ran after a failing check";
}

TEST_F(LlmCriticTest, UnparsableOutputIsRetriedOnceThenError) {
  auto r = Review(WithCritic({}, "echo x >> " + Marker() + "\necho 'LGTM, ship it'\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_THAT(r->error, HasSubstr("no verdict after a retry: its output did not parse"));
  EXPECT_THAT(r->error, HasSubstr("LGTM, ship it"));
  EXPECT_EQ(ReadAll(Marker()), "x\nx\n");
}

// An approval from a critic that then crashed, or exited non-zero, is no
// verdict: it is asked once more, then the review is an error.
TEST_F(LlmCriticTest, AnApprovalFromACriticThatFailedIsNoVerdict) {
  for (const std::string end : {"kill -9 $$", "exit 7"}) {
    std::filesystem::remove(Marker());
    auto r = Review(WithCritic(
        {}, "echo x >> " + Marker() + "\necho '{\"overall\":\"approve\"}'\n" + end + "\n"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->verdict, "error") << end;
    EXPECT_THAT(r->error, HasSubstr("no verdict after a retry")) << end;
    EXPECT_THAT(r->error, HasSubstr(end == "exit 7" ? "exit 7" : "signal 9")) << r->error;
    EXPECT_EQ(ReadAll(Marker()), "x\nx\n") << end;
  }
}

TEST_F(LlmCriticTest, RetryThatParsesCounts) {
  auto r = Review(WithCritic({}, "if [ -e " + Marker() +
                                     " ]; then echo '{\"overall\":\"approve\",\"findings\":[]}';"
                                     " else touch " +
                                     Marker() + "; echo 'oops'; fi\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
}

// What the critic agent costs is reported with the verdict, both runs' when
// its first output did not parse, so the task's budget and the daily one
// see it.
TEST_F(LlmCriticTest, ReportsWhatItsRunsCost) {
  auto review = WithCritic(
      {}, "if [ -e " + Marker() +
              " ]; then echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
              "\"result\":\"{\\\"overall\\\":\\\"approve\\\"}\",\"total_cost_usd\":0.25,"
              "\"usage\":{\"input_tokens\":100,\"output_tokens\":10}}';"
              " else touch " +
              Marker() +
              "; echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
              "\"result\":\"LGTM\",\"total_cost_usd\":0.5,"
              "\"usage\":{\"input_tokens\":200,\"output_tokens\":20}}'; fi\n");
  review.critic->profile = "claude";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  EXPECT_DOUBLE_EQ(r->cost_usd, 0.75);
  EXPECT_EQ(r->tokens_in, 300);
  EXPECT_EQ(r->tokens_out, 30);
}

// A critic agent that hit its rate limit is not asked again (that only
// spends): the review ends without a verdict and says so, for the
// supervisor's rate-limit pause.
TEST_F(LlmCriticTest, ARateLimitedCriticIsNotAskedAgain) {
  auto review =
      WithCritic({}, "echo x >> " + Marker() +
                         "\necho '{\"type\":\"result\",\"subtype\":\"error_during_execution\","
                         "\"is_error\":true,\"api_error_status\":429,\"result\":\"rate limited\","
                         "\"total_cost_usd\":0.01}'\nexit 1\n");
  review.critic->profile = "claude";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_TRUE(r->rate_limited);
  EXPECT_THAT(r->error, HasSubstr("critic agent hit a rate limit"));
  EXPECT_THAT(r->error, HasSubstr("api_error_status 429"));
  EXPECT_EQ(ReadAll(Marker()), "x\n");
  EXPECT_DOUBLE_EQ(r->cost_usd, 0.01);
}

// The diff is of the snapshot taken before the checks: the agent's edits
// and its new files whole, not what a check wrote.
TEST_F(LlmCriticTest, SeesTheDiffOfTheAttemptNotOfItsChecks) {
  auto review = WithCriticOn(
      RepoReview(), "cat > " + sup_.dir + "/critic-prompt\necho '{\"overall\":\"approve\"}'\n");
  review.verify = {"echo built > artifact.txt"};
  ASSERT_EQ(std::system(
                ("cd '" + review.workspace + "' && echo two > a.txt && echo new > b.txt").c_str()),
            0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  std::string prompt = ReadAll(sup_.dir + "/critic-prompt");
  EXPECT_THAT(prompt, HasSubstr("+two"));
  EXPECT_THAT(prompt, HasSubstr("+++ b/b.txt"));
  EXPECT_THAT(prompt, HasSubstr("+new"));
  EXPECT_THAT(prompt, Not(HasSubstr("+built"))) << "the file the check wrote";
}

// A finding that quotes a secret of the task's env is stored redacted.
TEST_F(LlmCriticTest, AFindingNeverCarriesASecret) {
  auto review = WithCritic({},
                           "echo '{\"overall\":\"block\",\"findings\":[{\"severity\":"
                           "\"sev1\",\"category\":\"security\",\"message\":\"prints "
                           "supersecretvalue123\"}]}'\n");
  review.task.env["API_TOKEN"] = "supersecretvalue123";
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "reject");
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_EQ(r->findings[0].message, "prints [redacted]");
  EXPECT_THAT(r->error, Not(HasSubstr("supersecretvalue123")));
}

// An LLM critic that edits the workspace and approves: the commit is the
// tree it reviewed, without its edit.
TEST_F(LlmCriticTest, AnEditTheCriticMakesIsNotCommitted) {
  auto review = WithCriticOn(
      RepoReview(), "echo 'os.system(\"rm -rf /\")' >> a.txt\necho '{\"overall\":\"approve\"}'\n");
  ASSERT_EQ(std::system(("cd '" + review.workspace + "' && echo two > a.txt").c_str()), 0);
  auto r = Review(review);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "pass") << r->error;
  ASSERT_TRUE(r->commit.has_value());
  EXPECT_EQ(Sh("cd '" + review.workspace + "' && git show " + *r->commit + ":a.txt"), "two\n");
}

TEST_F(LlmCriticTest, CancelDuringTheCriticAgent) {
  auto review = WithCritic({}, "echo $$ > " + Marker() + "\nexec sleep 1000\n");
  sup_.Send(review);
  std::string pid = forge::testing::WaitForFile(Marker(), 5000);
  ASSERT_FALSE(pid.empty());
  sup_.Send(proto::Cancel{7});
  auto r = sup_.WaitFor<proto::ReviewResult>();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "error");
  EXPECT_EQ(r->error, "cancelled");
  EXPECT_TRUE(WaitGone(std::stoi(pid), 5000));
}

}  // namespace
}  // namespace forge::critic
