// A task's workspace before an attempt. A task with a repo works in a git
// worktree <state>/worktrees/<task> on branch forge/<task>
// (common/workspace_paths.h names both). The first attempt resolves the base
// (after runner sync's fetch, when configured) to a commit, creates the
// worktree there and records the commit in the worktree's own ref
// refs/worktree/forge-base; every later attempt resets to that same commit
// and removes everything untracked, so nothing of a failed attempt survives.
// The operator's checkout, index, HEAD and branches are never touched: git
// runs as `git -C <repo>` only to read refs, fetch and add/prune worktrees.
// A task without a repo gets a plain directory <state>/workspaces/<task>.
#pragma once

#include <cstdint>
#include <string>

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
};

struct PreparedWorkspace {
  std::string path;
  std::string branch;       // empty for a plain directory
  std::string base_commit;  // empty for a plain directory
  bool created = false;     // the worktree was made by this call
};

// Errors: kConfig (bad repo, unknown base ref, a worktree that cannot be
// made; each names the repo and ref) do not get better by retrying; anything
// else (kUnavailable for a failed or timed-out fetch, naming remote and
// branch; kIo) is an ordinary attempt error.
Result<PreparedWorkspace> PrepareWorkspace(const WorkspaceSpec& spec, const GitRunner& run);

// A GitRunner for a child process's poll loop: waits for git with
// link.Poll, so heartbeats keep going while a fetch runs. Supervisor
// messages that arrive meanwhile stay queued for the caller's loop.
GitRunner HeartbeatingGitRunner(proto::ChildLink& link);

}  // namespace forge::worker
