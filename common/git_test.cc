// The repo check and git's messages, against real repositories in a temp dir.
#include "common/git.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

#include "common/utf8.h"

namespace forge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(GitMessage, NamesTheCauseNotTheHintAfterIt) {
  RunResult r;
  r.output =
      "fatal: Unable to create '/r/.git/worktrees/t1/index.lock': File exists.\n\n"
      "Another git process seems to be running in this repository.\n"
      "hint: remove the file manually to continue.\n";
  EXPECT_EQ(GitMessage(r),
            "fatal: Unable to create '/r/.git/worktrees/t1/index.lock': File exists.");
  r.output = "error: one\nwarning: two\nerror: three\n";
  EXPECT_EQ(GitMessage(r), "error: three");
  r.output = "plain words\nlast line  \n\n";
  EXPECT_EQ(GitMessage(r), "last line");
}

// `git add -A` over a nested repository without a commit: its fatal line
// only sums up the error before it, which names the path.
TEST(GitMessage, KeepsTheErrorsAFatalLineSumsUp) {
  RunResult r;
  r.output =
      "error: early\nfatal: first\nerror: 'sub/' does not have a commit checked out\n"
      "error: 'two/' does not have a commit checked out\nfatal: adding files failed\n";
  EXPECT_EQ(GitMessage(r),
            "error: 'sub/' does not have a commit checked out; error: 'two/' does not have a "
            "commit checked out; fatal: adding files failed");
}

// Cut to its 300 bytes, the message keeps its fatal line whole and cuts
// the errors before it, never inside a UTF-8 character.
TEST(GitMessage, ACutKeepsTheFatalLineAndWholeCharacters) {
  RunResult r;
  std::string errors;
  for (int i = 0; i < 40; ++i) errors += "error: '\xc3\xa9t\xc3\xa9" + std::to_string(i) + "/' x\n";
  const std::string fatal = "fatal: " + std::string(150, 'f');
  r.output = errors + fatal + "\n";
  std::string m = GitMessage(r);
  EXPECT_LE(m.size(), 300u + 3);
  EXPECT_TRUE(m.ends_with("; " + fatal)) << m;
  EXPECT_NE(m.find("...; fatal:"), std::string::npos) << m;
  EXPECT_EQ(FindInvalidUtf8(m), std::string::npos) << m;
  // One line past the size, cut at a character.
  r.output = "fatal: " + std::string(292, 'x') + "\xc3\xa9\xc3\xa9\n";
  m = GitMessage(r);
  EXPECT_EQ(FindInvalidUtf8(m), std::string::npos) << m;
  EXPECT_TRUE(m.ends_with("...")) << m;
}

TEST(GitLines, LeaveOutWarningsAndHints) {
  RunResult r;
  r.output =
      "warning: core.fsyncObjectFiles is deprecated; use core.fsync instead\n/r/.git\n"
      "hint: a hint\n/r/.git/common\n";
  EXPECT_EQ(GitLines(r), (std::vector<std::string>{"/r/.git", "/r/.git/common"}));
  EXPECT_EQ(GitFirstLine(r), "/r/.git");
  r.output = "";
  EXPECT_EQ(GitFirstLine(r), "");
}

// Untranslated messages: GitLines and the full-disk check read git's words.
TEST(GitEnvironment, AsksForUntranslatedMessages) {
  ::setenv("LANGUAGE", "de", 1);
  ::setenv("LC_ALL", "de_DE.UTF-8", 1);
  auto env = GitEnvironment();
  ::unsetenv("LANGUAGE");
  ::unsetenv("LC_ALL");
  EXPECT_EQ(std::count(env.begin(), env.end(), "LC_ALL=C"), 1);
  for (const auto& e : env) {
    EXPECT_NE(e.rfind("LANGUAGE=", 0), 0u) << e;
    EXPECT_NE(e, "LC_ALL=de_DE.UTF-8");
  }
}

class CheckGitRepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge_git_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    repo_ = root_ + "/repo";
    Run("git init -q -b main " + repo_ + " && mkdir " + repo_ + "/pkg && git clone -q --bare " +
        repo_ + " " + root_ + "/bare.git 2>/dev/null; mkdir -p " + root_ + "/plain");
  }
  void TearDown() override { fs::remove_all(root_); }
  void Run(const std::string& cmd) { ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd; }
  std::string Refusal(const std::string& repo) {
    Status s = CheckGitRepo(BlockingGitRunner(), repo);
    EXPECT_FALSE(s.ok()) << repo;
    if (s.ok()) return "";
    EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
    return s.error().message;
  }
  std::string root_, repo_;
};

TEST_F(CheckGitRepoTest, TheTopOfAWorkTreeIsARepo) {
  EXPECT_TRUE(CheckGitRepo(BlockingGitRunner(), repo_).ok());
  EXPECT_TRUE(CheckGitRepo(BlockingGitRunner(), repo_ + "/").ok());
}

TEST_F(CheckGitRepoTest, EachRefusalSaysWhatThePathIsInstead) {
  EXPECT_THAT(Refusal(root_ + "/plain"), HasSubstr("is not a git repository: fatal: not a git"));
  EXPECT_THAT(Refusal(root_ + "/none"), HasSubstr("is not a git repository: no such directory"));
  EXPECT_THAT(Refusal(root_ + "/bare.git"), HasSubstr("without a work tree (bare"));
  EXPECT_THAT(Refusal(repo_ + "/.git"), HasSubstr("without a work tree"));
  // A subdirectory: its checks would run at the top, not in it.
  EXPECT_THAT(Refusal(repo_ + "/pkg"),
              HasSubstr("repo '" + repo_ + "/pkg' is inside the git repository '" + repo_ +
                        "', not its top: give '" + repo_ + "'"));
  EXPECT_THAT(Refusal("relative/path"), HasSubstr("not an absolute path"));
}

// A git that answers as told: rev-parse's ways to end, without a
// repository that hangs or breaks on cue.
GitRunner Answering(int exit_code, std::string output, bool timed_out = false, int signal = 0) {
  return [=](const SpawnOptions&, int64_t) -> Result<RunResult> {
    RunResult r;
    r.status.exit_code = exit_code;
    r.status.signal = signal;
    r.output = output;
    r.timed_out = timed_out;
    return r;
  };
}

// Exit 1, nothing said: --verify --quiet's "no such commit", the
// operator's to fix.
TEST(ResolveCommit, ARefThatNamesNoCommitIsInvalid) {
  auto r = ResolveCommit(Answering(1, ""), "/r", "gone");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "unknown base ref 'gone' in repo '/r'");
  r = ResolveCommit(Answering(1, "warning: core.x is deprecated\n"), "/r", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "unknown base ref 'HEAD' in repo '/r'");
  // Exit 128 after the repository answered its check: a ref git cannot
  // follow (no upstream, past the reflog) or a corrupt repository, the
  // operator's to fix too, with git's reason.
  r = ResolveCommit(Answering(128, "fatal: no upstream configured for branch 'main'\n"), "/r",
                    "main@{u}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message,
            "unknown base ref 'main@{u}' in repo '/r' (fatal: no upstream configured for branch "
            "'main')");
  r = ResolveCommit(Answering(128, ""), "/r", "HEAD@{99}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "unknown base ref 'HEAD@{99}' in repo '/r' (exit 128)");
}

// A git that timed out or was killed said nothing about the ref:
// retryable, naming repo, ref and what happened, never "unknown base ref",
// which blocks the task.
TEST(ResolveCommit, AGitThatCouldNotAnswerIsRetryable) {
  auto r = ResolveCommit(Answering(-1, "", true, 9), "/r", "main", 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(r.error().message,
            "cannot resolve base ref 'main' in repo '/r': git rev-parse timed out after 5s");
  r = ResolveCommit(Answering(-1, "", false, 9), "/r", "main");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(r.error().message,
            "cannot resolve base ref 'main' in repo '/r': git rev-parse was killed by signal 9 "
            "(Killed)");
  r = ResolveCommit(Answering(0, "\n"), "/r", "main");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  const std::string sha(40, 'a');
  r = ResolveCommit(Answering(0, sha + "\n"), "/r", "main");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(*r, sha);
}

// The repo check likewise: a timeout is not "not a git repository".
TEST_F(CheckGitRepoTest, AGitThatCouldNotAnswerIsRetryable) {
  Status s = CheckGitRepo(Answering(-1, "", true, 9), repo_, 7000);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(s.error().message,
            "cannot check repo '" + repo_ + "': git rev-parse timed out after 7s");
  int runs = 0;
  GitRunner second_hangs = [&](const SpawnOptions& o, int64_t timeout_ms) {
    if (++runs == 2) return Answering(-1, "", true, 9)(o, timeout_ms);
    return BlockingGitRunner()(o, timeout_ms);
  };
  s = CheckGitRepo(second_hangs, repo_, 7000);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(s.error().message,
            "cannot check repo '" + repo_ + "': git rev-parse timed out after 7s");
  // A git that ran and said no is still the operator's to fix.
  EXPECT_EQ(CheckGitRepo(Answering(128, "fatal: not a git repository\n"), repo_).error().code,
            ErrorCode::kInvalid);
}

}  // namespace
}  // namespace forge
