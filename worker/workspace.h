// A task's workspace before an attempt. A task with a repo works in a git
// worktree <state>/worktrees/<task> on branch forge/<task>
// (common/workspace_paths.h names both). The first attempt resolves the base
// (after runner sync's fetch, when configured) to a commit, creates the
// worktree there and records the commit in the worktree's own ref
// refs/worktree/forge-base; the worker reports it and the supervisor keeps
// it (tasks.base_commit), and every later attempt's dispatch carries it
// (WorkspaceSpec::recorded_base). A later attempt resets to that same commit
// and removes everything untracked, so nothing of a failed attempt survives;
// when the worktree is gone (maintenance removed a settled task's before an
// operator's retry, or someone deleted it) it is made again at that commit,
// never at where the base ref or HEAD has moved since.
// The operator's checkout, index, HEAD and branches are never touched: git
// runs as `git -C <repo>` only to read refs, fetch and add/prune worktrees.
// A task without a repo gets a plain directory <state>/workspaces/<task>.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/git.h"
#include "common/result.h"
#include "common/workspace_paths.h"
#include "proto/child_link.h"

namespace forge::worker {

struct WorkspaceSpec {
  std::string task_id;
  std::string repo;  // empty: a plain directory
  std::string base;  // empty: the repo's HEAD (or the fetched tip with sync)
  std::string path;  // where the task works (TaskWorkspacePath)
  std::string sync_remote;
  std::string sync_branch;
  int64_t git_timeout_ms = kGitTimeoutMs;
  int64_t fetch_timeout_ms = kGitFetchTimeoutMs;
  // The commit the base resolved to at the task's first attempt, as the
  // supervisor recorded it (the dispatch's task.base_commit); empty: none
  // recorded yet (the first attempt, or a task from before schema 7), and
  // the worktree's own ref, else `base`, decides as before. Set, the
  // attempt starts from exactly it: no fetch, no resolving, and a worktree
  // that records another commit is reset to it.
  std::string recorded_base;
};

struct PreparedWorkspace {
  std::string path;
  std::string branch;       // empty for a plain directory
  std::string base_commit;  // empty for a plain directory
  bool created = false;     // the worktree was made by this call
};

// Errors: kConfig (bad repo, unknown base ref, a worktree that cannot be
// made; each names the repo and ref; a recorded_base the repository no
// longer has, naming the task, the commit and the repo) do not get better
// by retrying; kFull
// when git could not write (IsMachineFault); anything else (kUnavailable for
// a failed or timed-out fetch, naming remote and branch, and for a repo
// check or base ref resolution that timed out, was killed or failed
// otherwise than "no such ref", naming repo and ref; kIo) is an ordinary
// attempt error.
Result<PreparedWorkspace> PrepareWorkspace(const WorkspaceSpec& spec, const GitRunner& run);

struct SquashSpec {
  std::string path;  // the task's worktree
  std::string task_id;
  std::string title;  // the commit's subject ("Task <id>" when empty)
  int attempt = 0;
  bool allow_empty = false;
  int64_t git_timeout_ms = kGitTimeoutMs;
};

struct Squashed {
  bool no_changes = false;  // the tree equals the base's: nothing committed
  std::string commit;       // the one new commit on forge/<task>
};

// What an attempt left in its worktree: everything (tracked, untracked,
// commits the agent made) staged in the worktree's index and written as a
// tree. The critic takes it before the first check, so that what a pass
// commits is what the checks and the LLM critic saw, never a file a check
// wrote (a build's output, a test report) or an edit the critic made.
struct Snapshot {
  std::string base;  // the recorded base commit
  std::string tree;  // empty when git could not write one (nested_repos says why)
  bool unchanged = false;  // tree is the base's tree
  // Git repositories of the agent's own inside the worktree, whose files the
  // tree cannot hold: a gitlink new over the base that .gitmodules does not
  // declare (only the pointer to a commit only that repository has), or
  // one without a commit, which `git add` refuses. Such work is rejected,
  // never committed (NestedReposProblem says what to do).
  std::vector<std::string> nested_repos;
};
// kInvalid when path is not a Forge worktree (no recorded base, or a
// directory inside another checkout); kFull when git could not write.
Result<Snapshot> SnapshotAttempt(const std::string& path, const GitRunner& run,
                                 int64_t timeout_ms = kGitTimeoutMs);

// The snapshot a review of attempt_id reviews and commits. The first review
// of the attempt takes it (SnapshotAttempt) and keeps it in the worktree's
// own ref kReviewSnapshotRef (a commit on the base naming the attempt); a
// review again of the same attempt (the first gave no verdict: interrupted,
// a crash, a restart) puts the worktree back to the kept tree, ignored files
// aside, and takes it. So what an interrupted review's checks wrote is
// neither checked, reviewed nor committed as the attempt's work. Errors as
// SnapshotAttempt; a snapshot that could not be kept is no error (the
// review goes on; *keep_error says why). The caller holds the workspace
// lock, so no git of the task's runs: the locks an agent (or a critic)
// killed in the middle of git left in the worktree's git directory (index,
// HEAD, kReviewSnapshotRef) and on forge/<task_id> are removed first.
Result<Snapshot> SnapshotForReview(const std::string& path, const std::string& task_id,
                                   int64_t attempt_id, const GitRunner& run,
                                   int64_t timeout_ms = kGitTimeoutMs,
                                   std::string* keep_error = nullptr);

// A pass of a repo task: the snapshot becomes one commit whose parent is
// the recorded base, subject = title, trailers Forge-Task and
// Forge-Attempt, and forge/<task> (and HEAD) point at it. Hooks do not run
// (commit-tree). no_changes when the snapshot is the base's tree, unless
// allow_empty. kInvalid for a snapshot with nested_repos. kFull when git
// could not write (a full disk: not the attempt's fault).
Result<Squashed> CommitSnapshot(const SquashSpec& spec, const Snapshot& snapshot,
                                const GitRunner& run);

// Why a snapshot with nested_repos is not the attempt's work, and what the
// agent should do instead.
std::string NestedReposProblem(const std::vector<std::string>& paths);

// SnapshotAttempt, then CommitSnapshot.
Result<Squashed> SquashAttempt(const SquashSpec& spec, const GitRunner& run);

// A failure that is the machine's, not the task's: no space (or quota) left
// for a workspace, a commit, the prompt or the log. kFull, or read from the
// text, because it comes from many places (mkdir, std::filesystem, git) that
// do not keep errno; each of those includes strerror's words.
bool IsMachineFault(const Error& e);

// The attempt's change for the LLM critic: `git diff <base> <tree>` of the
// snapshot, new files whole, at most max_bytes (truncated set when cut).
// Empty when git cannot diff them.
struct Diff {
  std::string text;
  bool truncated = false;
};
Diff DiffSnapshot(const std::string& path, const Snapshot& snapshot, const GitRunner& run,
                  size_t max_bytes, int64_t timeout_ms = kGitTimeoutMs);

// A GitRunner for a child process's poll loop: waits for git with
// link.Poll, so heartbeats keep going while a fetch runs. Supervisor
// messages that arrive meanwhile stay queued for the caller's loop.
// Output past max_output bytes is dropped (the head is kept).
GitRunner HeartbeatingGitRunner(proto::ChildLink& link, size_t max_output = 64 * 1024);

}  // namespace forge::worker
