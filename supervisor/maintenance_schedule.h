// When the maintenance pass runs and what it removes. The pass is a job on an
// idle worker (proto::Maintain), never work in the supervisor's loop: the loop
// only decides, sends and records. Pure bookkeeping here (no I/O), driven by
// the caller's clock, so the decisions are unit-tested with a fake one.
//
// Timing: the first job is due one interval after start, the next one
// interval after the previous job *started* (so a job that failed, or whose
// worker died, is simply retried at the next interval). At most one job is in
// flight. A job that runs past its timeout gets its worker killed; it holds no
// task lease, so nothing but the job is lost.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/messages.h"
#include "supervisor/config/config.h"

namespace forge::supervisor {

// A settled task old enough to be looked at (from the store).
struct SettledTask {
  std::string id;
  proto::TaskState state = proto::TaskState::kDone;
  std::string repo;
  int64_t finished_at_ms = 0;  // wall
};

// How many workspaces one job removes at most; the rest wait for the next.
inline constexpr size_t kMaxRemovalsPerJob = 200;

// The workspaces to remove: tasks settled (done, blocked, cancelled) longer
// than keep_ms before now_wall_ms, oldest first, at most `limit`. A repo task's
// entry is its worktree (with the repo, so the worker uses git) and names the
// branch, which is kept; a plain task's entry is its workspace directory.
std::vector<proto::MaintainEntry> SelectRemovals(const std::vector<SettledTask>& tasks,
                                                 const std::string& state_dir, int64_t now_wall_ms,
                                                 int64_t keep_ms,
                                                 size_t limit = kMaxRemovalsPerJob);

// The wall time before which per-attempt logs are deleted (0: never).
int64_t LogsCutoff(int64_t now_wall_ms, int64_t keep_logs_ms);

class MaintenanceSchedule {
 public:
  // The first job is due one interval after start_mono_ms.
  void Start(int64_t start_mono_ms) { last_start_mono_ms_ = start_mono_ms; }

  // A job may start now: none in flight and the interval has passed.
  bool Due(int64_t now_mono_ms, const MaintenanceConfig& c) const;
  // Overdue by a whole further interval: dispatch kept every worker busy, so
  // the job goes before dispatch this time rather than starve.
  bool Starved(int64_t now_mono_ms, const MaintenanceConfig& c) const;

  // A job was sent to `worker`; returns its id (unique across restarts:
  // never below the wall clock's ms at start).
  int64_t Begin(pid_t worker, int64_t now_mono_ms, int64_t now_wall_ms,
                std::vector<std::string> removing = {});
  // Whether the job in flight is removing this task's workspace: a task an
  // operator retried after the job was sent must not start in it meanwhile.
  bool Removing(const std::string& task_id) const;
  // How many task ids Removing can be true for (0 with no job in flight).
  size_t RemovingCount() const { return in_flight() ? removing_.size() : 0; }
  // The worker's result: true when it is the job in flight on that worker
  // (a stray or late one is ignored).
  bool Finish(pid_t worker, int64_t job_id);
  // The worker is gone: returns the abandoned job's id, or 0 if it had none.
  int64_t Abandon(pid_t worker);
  // The worker of a job running past c.timeout_ms.
  std::optional<pid_t> Overrun(int64_t now_mono_ms, const MaintenanceConfig& c) const;
  // The loop's next wake-up for maintenance: the due time, or the running
  // job's timeout.
  int64_t NextDeadline(const MaintenanceConfig& c) const;

  bool in_flight() const { return worker_ != 0; }
  // When the job in flight (or else the last one) started; the start time
  // until the first job.
  int64_t last_start_mono_ms() const { return last_start_mono_ms_; }
  pid_t worker() const { return worker_; }
  int64_t job_id() const { return job_id_; }

 private:
  int64_t last_start_mono_ms_ = 0;
  int64_t last_job_id_ = 0;
  pid_t worker_ = 0;
  int64_t job_id_ = 0;
  std::vector<std::string> removing_;
};

}  // namespace forge::supervisor
