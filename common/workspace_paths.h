// Where a task works, in one place: the supervisor (dispatch, review,
// maintenance), the worker, the critic, forge-ctl (show, doctor) all name a
// task's worktree, branch and plain workspace through these, so a layout
// change cannot leave one of them looking in the old place.
#pragma once

#include <string>

namespace forge {

// Branch a repo task's worktree is on; a pass leaves its one commit here.
inline std::string WorktreeBranch(const std::string& task_id) {
  return "forge/" + task_id;
}

// <state>/worktrees/<task>: the git worktree of a task with a repo.
inline std::string WorktreePath(const std::string& state_dir, const std::string& task_id) {
  return state_dir + "/worktrees/" + task_id;
}

// <state>/workspaces/<task>: the plain directory of a task without a repo.
inline std::string PlainWorkspacePath(const std::string& state_dir, const std::string& task_id) {
  return state_dir + "/workspaces/" + task_id;
}

// The directory a task works in: its worktree when it has a repo.
inline std::string TaskWorkspacePath(const std::string& state_dir, const std::string& task_id,
                                     const std::string& repo) {
  return repo.empty() ? PlainWorkspacePath(state_dir, task_id) : WorktreePath(state_dir, task_id);
}

// Per-worktree ref (refs/worktree/* is private to one worktree and goes away
// with it) holding the base commit resolved at the first attempt: every reset,
// the hollow-pass check and the squash use the same base.
inline constexpr const char* kWorktreeBaseRef = "refs/worktree/forge-base";
// What the current attempt's first review snapshotted (a commit on the
// recorded base, worker::SnapshotForReview); deleted by the next attempt's
// reset.
inline constexpr const char* kReviewSnapshotRef = "refs/worktree/forge-review";

}  // namespace forge
