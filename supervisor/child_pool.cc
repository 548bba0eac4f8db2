#include "supervisor/child_pool.h"

#include <algorithm>

namespace forge::supervisor {

std::string_view ChildStateName(ChildState s) {
  switch (s) {
    case ChildState::kStarting:
      return "starting";
    case ChildState::kIdle:
      return "idle";
    case ChildState::kBusy:
      return "busy";
    case ChildState::kStopping:
      return "stopping";
    case ChildState::kExited:
      return "exited";
  }
  return "?";
}

std::string_view ChildEventName(ChildEvent e) {
  switch (e) {
    case ChildEvent::kSpawned:
      return "spawned";
    case ChildEvent::kHello:
      return "hello";
    case ChildEvent::kHeartbeat:
      return "heartbeat";
    case ChildEvent::kJobAssigned:
      return "job_assigned";
    case ChildEvent::kJobDone:
      return "job_done";
    case ChildEvent::kExited:
      return "exited";
    case ChildEvent::kKilled:
      return "killed";
    case ChildEvent::kShutdown:
      return "shutdown";
  }
  return "?";
}

std::string_view RoleName(Role r) {
  return r == Role::kWorker ? "worker" : "critic";
}

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "worker") return Role::kWorker;
  if (name == "critic") return Role::kCritic;
  return std::nullopt;
}

std::optional<ChildState> NextChildState(ChildState state, ChildEvent event) {
  using S = ChildState;
  using E = ChildEvent;
  constexpr int kEvents = 8;
  // Rows: starting, idle, busy, stopping, exited. Columns: ChildEvent order.
  // kExited doubles as "not allowed" in the exited row only, so use a sentinel.
  constexpr int kNo = -1;
  static constexpr int kTable[5][kEvents] = {
      // spawned hello        heartbeat    assigned     done         exited       killed
      // shutdown
      {kNo, int(S::kIdle), int(S::kStarting), kNo, kNo, int(S::kExited), int(S::kStopping),
       int(S::kStopping)},
      {kNo, int(S::kIdle), int(S::kIdle), int(S::kBusy), kNo, int(S::kExited), int(S::kStopping),
       int(S::kStopping)},
      {kNo, int(S::kBusy), int(S::kBusy), kNo, int(S::kIdle), int(S::kExited), int(S::kStopping),
       int(S::kStopping)},
      {kNo, int(S::kStopping), int(S::kStopping), kNo, int(S::kStopping), int(S::kExited),
       int(S::kStopping), int(S::kStopping)},
      {kNo, kNo, kNo, kNo, kNo, kNo, kNo, kNo},
  };
  (void)E::kSpawned;
  int next = kTable[static_cast<int>(state)][static_cast<int>(event)];
  if (next == kNo) return std::nullopt;
  return static_cast<ChildState>(next);
}

std::string ChildPool::RoutingId(Role role, pid_t pid) const {
  return std::string(RoleName(role)) + "-" + std::to_string(pid);
}

Child& ChildPool::Add(Role role, pid_t pid, int64_t start_time, int64_t now_mono_ms) {
  Child c;
  c.role = role;
  c.pid = pid;
  c.start_time = start_time;
  c.routing_id = RoutingId(role, pid);
  c.state = ChildState::kStarting;
  c.last_seen_mono_ms = now_mono_ms;
  return children_[pid] = c;
}

void ChildPool::Remove(pid_t pid) {
  children_.erase(pid);
}

Result<ChildState> ChildPool::Apply(pid_t pid, ChildEvent event, int64_t now_mono_ms) {
  Child* c = Find(pid);
  if (c == nullptr) {
    return MakeError(ErrorCode::kNotFound, "no child with pid " + std::to_string(pid));
  }
  auto next = NextChildState(c->state, event);
  if (!next) {
    return MakeError(ErrorCode::kConflict,
                     c->routing_id + ": event '" + std::string(ChildEventName(event)) +
                         "' not allowed in state '" + std::string(ChildStateName(c->state)) + "'");
  }
  c->state = *next;
  if (event == ChildEvent::kHello || event == ChildEvent::kHeartbeat ||
      event == ChildEvent::kJobDone) {
    c->last_seen_mono_ms = now_mono_ms;
  }
  return *next;
}

Status ChildPool::AssignJob(pid_t pid, int64_t attempt_id, const std::string& task_id, int n,
                            int64_t now_mono_ms, int64_t now_wall_ms) {
  auto r = Apply(pid, ChildEvent::kJobAssigned, now_mono_ms);
  if (!r.ok()) return r.error();
  Child* c = Find(pid);
  c->attempt_id = attempt_id;
  c->task_id = task_id;
  c->attempt_n = n;
  c->busy_since_wall_ms = now_wall_ms;
  c->agent_pid = c->agent_pgid = c->agent_start_time = 0;
  c->agent_timeout_ms = c->agent_kill_grace_ms = c->job_limit_ms = c->job_deadline_mono_ms = 0;
  c->cancel_sent = false;
  return Status::Ok();
}

Status ChildPool::FinishJob(pid_t pid, int64_t now_mono_ms) {
  Child* c = Find(pid);
  // An exited child's last words end its job; the child stays exited.
  if (c == nullptr || c->state != ChildState::kExited) {
    auto r = Apply(pid, ChildEvent::kJobDone, now_mono_ms);
    if (!r.ok()) return r.error();
    c = Find(pid);
  }
  c->attempt_id = 0;
  c->task_id.clear();
  c->attempt_n = 0;
  c->busy_since_wall_ms = 0;
  c->agent_pid = c->agent_pgid = c->agent_start_time = 0;
  c->agent_timeout_ms = c->agent_kill_grace_ms = c->job_limit_ms = c->job_deadline_mono_ms = 0;
  c->cancel_sent = false;
  return Status::Ok();
}

Child* ChildPool::Find(pid_t pid) {
  auto it = children_.find(pid);
  return it == children_.end() ? nullptr : &it->second;
}

Child* ChildPool::FindByRoutingId(const std::string& routing_id) {
  for (auto& [pid, c] : children_) {
    if (c.routing_id == routing_id) return &c;
  }
  return nullptr;
}

Child* ChildPool::FindByAttempt(int64_t attempt_id) {
  if (attempt_id == 0) return nullptr;
  for (auto& [pid, c] : children_) {
    if (c.attempt_id == attempt_id && c.state != ChildState::kExited) return &c;
  }
  return nullptr;
}

bool ChildPool::HoldsTask(const std::string& task_id) const {
  for (const auto& [pid, c] : children_) {
    if (c.attempt_id != 0 && c.task_id == task_id && c.state != ChildState::kExited) return true;
  }
  return false;
}

Child* ChildPool::FindIdle(Role role) {
  for (auto& [pid, c] : children_) {
    if (c.role == role && c.state == ChildState::kIdle) return &c;
  }
  return nullptr;
}

std::vector<Child*> ChildPool::All() {
  std::vector<Child*> out;
  for (auto& [pid, c] : children_) out.push_back(&c);
  return out;
}

int ChildPool::Count(Role role) const {
  return static_cast<int>(std::count_if(children_.begin(), children_.end(), [&](const auto& kv) {
    return kv.second.role == role && kv.second.state != ChildState::kExited;
  }));
}

std::vector<pid_t> ChildPool::Exited() const {
  std::vector<pid_t> out;
  for (const auto& [pid, c] : children_) {
    if (c.state == ChildState::kExited) out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> ChildPool::Silent(int64_t now_mono_ms, int64_t timeout_ms) const {
  std::vector<pid_t> out;
  for (const auto& [pid, c] : children_) {
    if (c.state == ChildState::kExited) continue;
    if (now_mono_ms - c.last_seen_mono_ms > HeartbeatTimeout(c, timeout_ms)) out.push_back(pid);
  }
  return out;
}

std::vector<pid_t> ChildPool::Overdue(int64_t now_mono_ms) const {
  std::vector<pid_t> out;
  for (const auto& [pid, c] : children_) {
    if (c.state == ChildState::kBusy && c.job_deadline_mono_ms > 0 &&
        now_mono_ms >= c.job_deadline_mono_ms) {
      out.push_back(pid);
    }
  }
  return out;
}

std::optional<int64_t> ChildPool::NextJobDeadline() const {
  std::optional<int64_t> next;
  for (const auto& [pid, c] : children_) {
    if (c.state != ChildState::kBusy || c.job_deadline_mono_ms <= 0) continue;
    if (!next || c.job_deadline_mono_ms < *next) next = c.job_deadline_mono_ms;
  }
  return next;
}

std::optional<int64_t> ChildPool::NextSilenceDeadline(int64_t timeout_ms) const {
  std::optional<int64_t> next;
  for (const auto& [pid, c] : children_) {
    // A stopping child is already being killed or shut down; its end comes by
    // SIGCHLD or the shutdown deadline, so it must not keep the loop awake.
    if (c.state == ChildState::kExited || c.state == ChildState::kStopping) continue;
    int64_t t = c.last_seen_mono_ms + HeartbeatTimeout(c, timeout_ms) + 1;
    if (!next || t < *next) next = t;
  }
  return next;
}

int64_t ChildPool::RecordRestart(Role role, int64_t now_mono_ms) {
  Throttle& t = throttle_[role];
  t.total++;
  t.recent.push_back(now_mono_ms);
  while (!t.recent.empty() && now_mono_ms - t.recent.front() > kRestartWindowMs) {
    t.recent.pop_front();
  }
  if (static_cast<int>(t.recent.size()) > kMaxRestarts) {
    t.delay_ms =
        t.delay_ms == 0 ? kRespawnDelayInitialMs : std::min(t.delay_ms * 2, kRespawnDelayMaxMs);
  } else {
    t.delay_ms = 0;
  }
  return t.delay_ms;
}

bool ChildPool::Degraded(Role role) const {
  auto it = throttle_.find(role);
  return it != throttle_.end() && it->second.delay_ms > 0;
}

int ChildPool::Restarts(Role role) const {
  auto it = throttle_.find(role);
  return it == throttle_.end() ? 0 : it->second.total;
}

}  // namespace forge::supervisor
