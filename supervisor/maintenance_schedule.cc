#include "supervisor/maintenance_schedule.h"

#include <algorithm>

#include "common/workspace_paths.h"

namespace forge::supervisor {

std::vector<proto::MaintainEntry> SelectRemovals(const std::vector<SettledTask>& tasks,
                                                 const std::string& state_dir, int64_t now_wall_ms,
                                                 int64_t keep_ms, size_t limit) {
  std::vector<const SettledTask*> old;
  for (const auto& t : tasks) {
    if (!proto::IsSettled(t.state) || t.finished_at_ms <= 0) continue;
    // Strictly longer than keep: a task settled exactly keep ago stays one more round.
    if (now_wall_ms - t.finished_at_ms <= keep_ms) continue;
    old.push_back(&t);
  }
  std::stable_sort(old.begin(), old.end(), [](const SettledTask* a, const SettledTask* b) {
    return a->finished_at_ms < b->finished_at_ms;
  });
  std::vector<proto::MaintainEntry> out;
  for (const SettledTask* t : old) {
    if (out.size() >= limit) break;
    proto::MaintainEntry e;
    e.task_id = t->id;
    e.path = TaskWorkspacePath(state_dir, t->id, t->repo);
    if (!t->repo.empty()) {
      e.repo = t->repo;
      e.branch = WorktreeBranch(t->id);
    }
    out.push_back(std::move(e));
  }
  return out;
}

int64_t LogsCutoff(int64_t now_wall_ms, int64_t keep_logs_ms) {
  if (keep_logs_ms <= 0 || now_wall_ms <= keep_logs_ms) return 0;
  return now_wall_ms - keep_logs_ms;
}

bool MaintenanceSchedule::Due(int64_t now_mono_ms, const MaintenanceConfig& c) const {
  return !in_flight() && c.interval_ms > 0 && now_mono_ms >= last_start_mono_ms_ + c.interval_ms;
}

bool MaintenanceSchedule::Starved(int64_t now_mono_ms, const MaintenanceConfig& c) const {
  return !in_flight() && c.interval_ms > 0 &&
         now_mono_ms >= last_start_mono_ms_ + 2 * c.interval_ms;
}

int64_t MaintenanceSchedule::Begin(pid_t worker, int64_t now_mono_ms, int64_t now_wall_ms,
                                   std::vector<std::string> removing) {
  removing_ = std::move(removing);
  last_start_mono_ms_ = now_mono_ms;
  last_job_id_ = std::max(last_job_id_ + 1, now_wall_ms);
  worker_ = worker;
  job_id_ = last_job_id_;
  return job_id_;
}

bool MaintenanceSchedule::Removing(const std::string& task_id) const {
  return in_flight() && std::find(removing_.begin(), removing_.end(), task_id) != removing_.end();
}

bool MaintenanceSchedule::Finish(pid_t worker, int64_t job_id) {
  if (worker_ == 0 || worker != worker_ || job_id != job_id_) return false;
  removing_.clear();
  worker_ = 0;
  job_id_ = 0;
  return true;
}

int64_t MaintenanceSchedule::Abandon(pid_t worker) {
  if (worker_ == 0 || worker != worker_) return 0;
  int64_t id = job_id_;
  removing_.clear();
  worker_ = 0;
  job_id_ = 0;
  return id;
}

std::optional<pid_t> MaintenanceSchedule::Overrun(int64_t now_mono_ms,
                                                  const MaintenanceConfig& c) const {
  if (!in_flight() || c.timeout_ms <= 0) return std::nullopt;
  if (now_mono_ms < last_start_mono_ms_ + c.timeout_ms) return std::nullopt;
  return worker_;
}

int64_t MaintenanceSchedule::NextDeadline(const MaintenanceConfig& c) const {
  if (in_flight()) {
    return c.timeout_ms > 0 ? last_start_mono_ms_ + c.timeout_ms : INT64_MAX;
  }
  return c.interval_ms > 0 ? last_start_mono_ms_ + c.interval_ms : INT64_MAX;
}

}  // namespace forge::supervisor
