// The maintenance job (proto::Maintain): removes the workspaces and git
// worktrees of long-finished tasks and deletes old per-attempt logs (the WAL
// checkpoint of the same pass is the supervisor's: store/wal_checkpoint.h).
// It runs on a worker, never in the supervisor's loop, and on its own thread
// inside the worker so that heartbeats keep flowing while git or a large
// `rm -r` takes its time. It holds no task lease: a worker that dies mid-job
// loses nothing, and whatever was not reported as removed is listed again by
// the next job.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/background.h"
#include "common/result.h"
#include "proto/messages.h"

namespace forge::worker {

// How long one git command of the job may take before it is killed.
inline constexpr int64_t kMaintenanceGitTimeoutMs = 5 * 60 * 1000;

// Whether `path` names something strictly inside `root` once symlinks in
// both are resolved (the path itself need not exist). The job removes nothing
// else: a path that escapes the state directory is refused.
bool IsInsideDir(const std::string& root, const std::string& path);

// Removes one workspace (plain: recursively) or worktree (repo set: `git
// worktree remove --force`, falling back to removing the directory when git
// does not know it, then `git worktree prune`). Never touches the branch.
// ok with existed=false when nothing was there; an error names the path.
Result<proto::RemovedEntry> RemoveWorkspace(const std::string& state_dir,
                                            const proto::MaintainEntry& entry);

// Deletes regular files under <logs_dir>/<task>/ last written before
// before_wall_ms, then the task directories left empty. Of the files
// directly in logs_dir (the processes' own logs), only a worker's or
// critic's (worker-<pid>[.<n>].log) whose pid is gone and that is as old
// goes: every child restart starts a new one.
// Returns how many files were deleted; problems are appended to errors.
int64_t DeleteOldLogs(const std::string& logs_dir, int64_t before_wall_ms,
                      std::vector<std::string>& errors);

// The whole job, synchronously.
proto::MaintenanceResult RunMaintenance(const proto::Maintain& job);

// RunMaintenance on a thread; fd() becomes readable when it has finished.
class MaintenanceJob {
 public:
  static Result<std::unique_ptr<MaintenanceJob>> Start(proto::Maintain job);

  int fd() const { return run_->fd(); }
  int64_t job_id() const { return job_id_; }
  // True once the thread is done; then Take() returns its result.
  bool Finished() { return run_->Finished(); }
  proto::MaintenanceResult Take() { return run_->Take(); }

 private:
  MaintenanceJob() = default;
  int64_t job_id_ = 0;
  std::unique_ptr<Background<proto::MaintenanceResult>> run_;  // joins when destroyed
};

}  // namespace forge::worker
