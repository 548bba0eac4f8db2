// The supervisor's side of the maintenance pass: choose what is due, send it
// to an idle worker, record what the worker did. Nothing here touches the
// filesystem: the job runs on the worker (see worker/maintenance.h). The
// pass's WAL checkpoint is the one part done here, on a thread, because the
// supervisor is the only process that opens the database.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>

#include "common/paths.h"
#include "supervisor/supervisor.h"

namespace forge::supervisor {

void Supervisor::TryMaintenance(bool before_dispatch) {
  if (stopping_) return;
  const MaintenanceConfig& mc = config_.maintenance;
  int64_t now = clock_.MonotonicMs();
  if (before_dispatch ? !maintenance_.Starved(now, mc) : !maintenance_.Due(now, mc)) return;
  Child* worker = pool_.FindIdle(Role::kWorker);
  if (worker == nullptr) return;
  int64_t wall = clock_.WallMs();
  std::vector<SettledTask> settled;
  if (wall > mc.keep_ms) {
    auto rows = store_->SettledWorkspaces(wall - mc.keep_ms, static_cast<int>(kMaxRemovalsPerJob));
    if (!rows.ok()) {
      // The job still deletes logs and the WAL is still checkpointed; the removals wait.
      spdlog::error("maintenance: listing settled tasks: {}", rows.error().ToString());
    } else {
      for (auto& r : *rows) settled.push_back({r.id, r.state, r.repo, r.finished_at_ms});
    }
  }
  proto::Maintain job;
  job.state_dir = options_.state_dir;
  job.remove = SelectRemovals(settled, options_.state_dir, wall, mc.keep_ms);
  job.logs_dir = JoinPath(options_.state_dir, "logs");
  job.logs_before_ms = LogsCutoff(wall, mc.keep_logs_ms);
  std::vector<std::string> removing;
  for (const auto& e : job.remove) removing.push_back(e.task_id);
  job.job_id = maintenance_.Begin(worker->pid, now, wall, std::move(removing));
  // The worker is busy with no attempt: dispatch passes it by, and its death
  // closes no attempt.
  auto assigned = pool_.AssignJob(worker->pid, 0, "", 0, now, wall);
  if (!assigned.ok()) spdlog::error("maintenance bookkeeping: {}", assigned.error().message);
  spdlog::info("maintenance job {} on {}: {} workspace(s) to remove", job.job_id,
               worker->routing_id, job.remove.size());
  EmitEvent("maintenance.started", json{{"job_id", job.job_id},
                                        {"worker_pid", worker->pid},
                                        {"remove", job.remove.size()},
                                        {"keep_ms", mc.keep_ms},
                                        {"keep_logs_ms", mc.keep_logs_ms}});
  if (!Send(*worker, job)) {
    KillChild(*worker, "unreachable");  // OnChildExited abandons the job
  }
  // One checkpointer at a time: after a passive one that is running (a
  // truncate still running from the last pass is this pass's too).
  if (!checkpoint_) {
    StartCheckpoint(store::CheckpointMode::kTruncate);
  } else if (checkpoint_mode_ == store::CheckpointMode::kPassive) {
    maintenance_checkpoint_due_ = true;
  }
}

void Supervisor::MaybeCheckpoint() {
  int64_t frames = store_->WalFrames();
  switch (store::NextCheckpoint(frames, wal_frames_at_checkpoint_, checkpoint_ != nullptr)) {
    case store::CheckpointAction::kNone:
      return;
    case store::CheckpointAction::kBackground:
      wal_frames_at_checkpoint_ = frames;
      StartCheckpoint(store::CheckpointMode::kPassive);
      return;
    case store::CheckpointAction::kInline: {
      wal_frames_at_checkpoint_ = frames;
      int64_t start = clock_.MonotonicMs();
      forge::Status st = store_->Checkpoint(store::CheckpointMode::kPassive);
      if (!st.ok()) {
        spdlog::warn("WAL checkpoint at {} frames: {}", frames, st.error().ToString());
      } else {
        spdlog::debug("WAL checkpoint at {} frames, on the loop: {} ms", frames,
                      clock_.MonotonicMs() - start);
      }
      return;
    }
  }
}

void Supervisor::StartCheckpoint(store::CheckpointMode mode) {
  if (!checkpointer_) {
    checkpointer_ = std::make_shared<store::WalCheckpointer>(
        JoinPath(options_.state_dir, "forge.db"), store::kCheckpointBusyTimeoutMs);
  }
  auto started = Background<store::CheckpointReport>::Start(
      [checkpointer = checkpointer_, mode] { return checkpointer->Run(mode); });
  if (!started.ok()) {
    spdlog::error("cannot start a WAL checkpoint: {}", started.error().ToString());
    return;
  }
  checkpoint_ = std::move(started).value();
  checkpoint_mode_ = mode;
}

void Supervisor::FinishCheckpoint() {
  store::CheckpointReport r = checkpoint_->Take();
  checkpoint_.reset();
  if (checkpoint_mode_ == store::CheckpointMode::kPassive) {
    // Routine (every 1,000 frames): no event; a failure is the store's and
    // shows in the writes too.
    if (!r.error.empty()) spdlog::warn("WAL checkpoint: {}", r.error);
    if (maintenance_checkpoint_due_) {
      maintenance_checkpoint_due_ = false;
      StartCheckpoint(store::CheckpointMode::kTruncate);
    }
    return;
  }
  json payload{{"ran", r.ran},
               {"busy", r.busy},
               {"log_frames", r.log_frames},
               {"checkpointed_frames", r.checkpointed_frames},
               {"wal_bytes_before", r.wal_bytes_before},
               {"wal_bytes_after", r.wal_bytes_after},
               {"duration_ms", r.duration_ms}};
  if (!r.error.empty()) {
    payload["error"] = r.error;
    spdlog::error("maintenance: {}", r.error);
  } else if (r.busy) {
    spdlog::info("maintenance: WAL checkpoint busy ({} of {} frames copied); retried next interval",
                 r.checkpointed_frames, r.log_frames);
  }
  EmitEvent("maintenance.checkpoint", payload);
}

void Supervisor::OnMaintenanceResult(Child& child, const proto::MaintenanceResult& m) {
  if (child.role != Role::kWorker || !maintenance_.Finish(child.pid, m.job_id)) {
    ++counters_.stray_messages;
    spdlog::warn("{}: maintenance_result for job {} which it does not hold; ignored",
                 child.routing_id, m.job_id);
    return;
  }
  auto done = pool_.FinishJob(child.pid, clock_.MonotonicMs());
  if (!done.ok()) spdlog::warn("{}", done.error().message);
  int removed = 0;
  int absent = 0;
  for (const auto& r : m.removed) {
    // The event is also the mark: SettledWorkspaces skips tasks that have one
    // newer than their finish.
    if (r.existed) {
      ++removed;
      EmitEvent("maintenance.removed", json{{"job_id", m.job_id}, {"path", r.path}}, r.task_id);
    } else {
      ++absent;
      EmitEvent("maintenance.absent", json{{"job_id", m.job_id}, {"path", r.path}}, r.task_id);
    }
  }
  for (const auto& e : m.errors) spdlog::warn("maintenance job {}: {}", m.job_id, e);
  EmitEvent("maintenance.finished", json{{"job_id", m.job_id},
                                         {"worker_pid", child.pid},
                                         {"removed", removed},
                                         {"absent", absent},
                                         {"logs_deleted", m.logs_deleted},
                                         {"errors", m.errors},
                                         {"duration_ms", m.duration_ms}});
  spdlog::info("maintenance job {}: removed {}, absent {}, {} log(s) deleted, {} error(s)",
               m.job_id, removed, absent, m.logs_deleted, m.errors.size());
  last_maintenance_ = {.last_job_id = m.job_id,
                       .last_outcome = "finished",
                       .last_at_ms = clock_.WallMs(),
                       .removed = removed,
                       .logs_deleted = m.logs_deleted,
                       .errors = m.errors};
}

void Supervisor::OnMaintenanceWorkerGone(pid_t pid, const std::string& why) {
  int64_t job = maintenance_.Abandon(pid);
  if (job == 0) return;
  spdlog::warn("maintenance job {} lost with worker {} ({}); retried at the next interval", job,
               pid, why);
  const std::string error = "worker exited: " + why;
  EmitEvent("maintenance.failed", json{{"job_id", job}, {"worker_pid", pid}, {"error", error}});
  last_maintenance_ = {.last_job_id = job,
                       .last_outcome = "failed",
                       .last_at_ms = clock_.WallMs(),
                       .errors = {error}};
}

proto::MaintenanceStatus Supervisor::MaintenanceForStatus() const {
  proto::MaintenanceStatus s = last_maintenance_;
  const int64_t now_mono = clock_.MonotonicMs();
  const int64_t now_wall = clock_.WallMs();
  if (maintenance_.in_flight()) {
    s.running_since_ms = now_wall - (now_mono - maintenance_.last_start_mono_ms());
  } else if (int64_t due = maintenance_.NextDeadline(config_.maintenance); due != INT64_MAX) {
    s.next_at_ms = now_wall + std::max<int64_t>(0, due - now_mono);
  }
  return s;
}

}  // namespace forge::supervisor
