// Git, run as a program (argv, never a shell) with a timeout, for the
// workspaces of repo tasks: the worker's worktrees, the critic's squash
// commit, forge-ctl's submit-time checks. How a command is waited for is the
// caller's (GitRunner): forge-ctl blocks, the worker and critic keep their
// heartbeats going while git runs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/process.h"
#include "common/result.h"

namespace forge {

inline constexpr int64_t kGitTimeoutMs = 60 * 1000;        // local git commands
inline constexpr int64_t kGitFetchTimeoutMs = 120 * 1000;  // runner sync's fetch

// How long a worker or critic waits for a workspace's lock by default
// (worker/workspace_lock.h; config `watchdog.workspace_lock_wait`): longer
// than the git steps an old holder can still run before it reads its
// SIGTERM. A worker's first prepare is a fetch (kGitFetchTimeoutMs) and up
// to seven steps of kGitTimeoutMs; a critic's review, kReviewGitCommandsMax.
// Past this the holder is stuck (a hung mount, an unkillable git) and the
// task is blocked with its pid: retrying would not help, an operator must look.
inline constexpr int64_t kWorkspaceLockWaitMs = 10 * 60 * 1000;
// The longest it may be set to (a day), so a deadline in ms cannot overflow.
inline constexpr int64_t kMaxWorkspaceLockWaitMs = 24 * 60 * 60 * 1000;

// The most git commands one review of a repo task runs (the critic's
// worker::SnapshotForReview, DiffSnapshot and CommitSnapshot), each bounded
// by kGitTimeoutMs. The supervisor's time limit for a review counts on it
// (supervisor/job_limits.h); worker/workspace_test.cc checks it holds.
inline constexpr int kReviewGitCommandsMax = 18;  // 16 now, and headroom
// The same for a worker's worker::PrepareWorkspace, the sync's fetch aside
// (kGitFetchTimeoutMs).
inline constexpr int kPrepareGitCommandsMax = 16;

// Runs one spawned command to completion (or timeout: killed, timed_out set).
using GitRunner = std::function<Result<RunResult>(const SpawnOptions&, int64_t timeout_ms)>;

// Blocks in RunCommand.
GitRunner BlockingGitRunner();

// This process's environment for git, minus variables that would point git
// at another repository (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, ...), plus
// GIT_TERMINAL_PROMPT=0 and a batch-mode ssh so a fetch never waits for a
// password, and LC_ALL=C (without LANGUAGE): git's messages untranslated.
std::vector<std::string> GitEnvironment();

// `git -C dir args...`; any exit status is a result, a spawn failure an error.
Result<RunResult> RunGit(const GitRunner& run, const std::string& dir,
                         const std::vector<std::string>& args, int64_t timeout_ms = kGitTimeoutMs);

// The lines of git's output that are its answer: without the "warning:" and
// "hint:" lines of its stderr, which RunGit merges in (for error messages)
// and which a config git deprecates would otherwise put first.
std::vector<std::string> GitLines(const RunResult& r);
// GitLines' first, or "".
std::string GitFirstLine(const RunResult& r);

// For error messages: git's last "fatal:" or "error:" line (the cause, where
// a "hint:" may follow it), after the "error:" lines just before a "fatal:"
// one, else its last non-empty line.
// A git step's timeout as its messages give it: "60s", or "1500ms".
std::string Seconds(int64_t ms);
std::string GitMessage(const RunResult& r);

// kInvalid unless R is the top of a git work tree, naming what it is
// instead: "repo 'R' is not a git repository: ...", a repository without a
// work tree (bare, or a .git directory), or a subdirectory of one (the
// task's worktree would be the whole repository, and its checks would run
// at the top, not in R). The path must exist and be absolute. A git that
// timed out or was killed is no answer: kUnavailable "cannot check repo
// 'R': git rev-parse timed out after 60s".
Status CheckGitRepo(const GitRunner& run, const std::string& repo,
                    int64_t timeout_ms = kGitTimeoutMs);

// The commit `ref` names in repo (empty ref: HEAD); kInvalid "unknown base
// ref 'X' in repo 'R'" when it names none. When git could not say (it timed
// out, was killed, or failed otherwise: a corrupt repository, one it may
// not read), kUnavailable "cannot resolve base ref 'X' in repo 'R': git
// rev-parse timed out after 60s" (or "... failed: fatal: ..."): not the
// ref's fault, and another try may pass.
Result<std::string> ResolveCommit(const GitRunner& run, const std::string& repo,
                                  const std::string& ref, int64_t timeout_ms = kGitTimeoutMs);

// Submit-time check of a task's repo and base: both of the above.
Status CheckRepoAndBase(const GitRunner& run, const std::string& repo, const std::string& base);

}  // namespace forge
