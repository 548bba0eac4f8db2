// The maintenance job (proto::Maintain): removes the workspaces and git
// worktrees of long-finished tasks, deletes old per-attempt logs and
// checkpoints the WAL. It runs on a worker, never in the supervisor's loop,
// and on its own thread inside the worker so that heartbeats keep flowing
// while git or a large `rm -r` takes its time. It holds no task lease: a
// worker that dies mid-job loses nothing, and whatever was not reported as
// removed is listed again by the next job.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "proto/messages.h"

namespace forge::worker {

// How long one git command of the job may take before it is killed.
inline constexpr int64_t kMaintenanceGitTimeoutMs = 5 * 60 * 1000;
inline constexpr int kCheckpointBusyTimeoutMs = 5000;

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
// before_wall_ms, then the task directories left empty. Files directly in
// logs_dir (the processes' own logs) are not per-attempt logs and stay.
// Returns how many files were deleted; problems are appended to errors.
int64_t DeleteOldLogs(const std::string& logs_dir, int64_t before_wall_ms,
                      std::vector<std::string>& errors);

// PRAGMA wal_checkpoint(TRUNCATE) on a connection of its own, waiting up to
// busy_timeout_ms for the supervisor's write lock.
proto::CheckpointReport CheckpointWal(const std::string& db_path, int busy_timeout_ms);

// The whole job, synchronously.
proto::MaintenanceResult RunMaintenance(const proto::Maintain& job);

// RunMaintenance on a thread; fd() becomes readable when it has finished.
class MaintenanceJob {
 public:
  static Result<std::unique_ptr<MaintenanceJob>> Start(proto::Maintain job);
  ~MaintenanceJob();  // joins

  int fd() const { return event_.get(); }
  int64_t job_id() const { return job_id_; }
  // True once the thread is done; then Take() returns its result.
  bool Finished();
  proto::MaintenanceResult Take();

 private:
  MaintenanceJob() = default;
  UniqueFd event_;
  int64_t job_id_ = 0;
  std::thread thread_;
  proto::MaintenanceResult result_;
  bool finished_ = false;
};

}  // namespace forge::worker
