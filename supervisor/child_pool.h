// The supervisor's children: their lifecycle as an explicit state x event
// table, the routing id <-> pid <-> current job bookkeeping, heartbeat
// deadlines and the per-role respawn throttle. Pure bookkeeping: it never
// spawns, signals or sends; the supervisor does, and tells the pool.
//
//            spawned      hello   heartbeat job_assigned job_done exited  killed     shutdown
//  starting  -            idle    starting  -            -        exited  stopping   stopping
//  idle      -            idle    idle      busy         -        exited  stopping   stopping
//  busy      -            busy    busy      -            idle     exited  stopping   stopping
//  stopping  -            stopping stopping -            stopping exited  stopping   stopping
//  exited    -            -       -         -            -        -       -          -
// ("-": not allowed; the event is refused and the caller logs it.)
//
// An exited child stays in the pool, in `exited`, until the supervisor has
// read its last messages (a result sent just before it exited can still be
// on its way when SIGCHLD comes); its job can still end then (FinishJob).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace forge::supervisor {

enum class ChildState { kStarting, kIdle, kBusy, kStopping, kExited };
enum class ChildEvent {
  kSpawned,
  kHello,
  kHeartbeat,
  kJobAssigned,
  kJobDone,
  kExited,
  kKilled,  // by the supervisor: silent past its timeout, or a job overrunning
  kShutdown
};
enum class Role { kWorker, kCritic };

std::string_view ChildStateName(ChildState s);
std::string_view ChildEventName(ChildEvent e);
std::string_view RoleName(Role r);
std::optional<Role> ParseRole(std::string_view name);

// The table above: the next state, or nullopt when the event is not allowed.
std::optional<ChildState> NextChildState(ChildState state, ChildEvent event);

struct Child {
  Role role = Role::kWorker;
  pid_t pid = 0;
  int64_t start_time = 0;  // /proc starttime, for IsSameProcess
  std::string routing_id;  // "<role>-<pid>"
  ChildState state = ChildState::kStarting;
  int64_t last_seen_mono_ms = 0;  // spawn, then every message
  // The heartbeat timeout in force at its spawn. A child keeps the heartbeat
  // interval it was started with (--heartbeat-ms), so a reload that shortens
  // the timeout must not judge it by the new one: it would be killed as silent.
  int64_t spawn_heartbeat_timeout_ms = 0;
  // The workspace lock wait it was started with (--workspace-lock-wait-ms):
  // part of a review's limit, which a reload must not shorten under it.
  int64_t spawn_workspace_lock_wait_ms = 0;
  // The current job (busy, or stopping with a job).
  int64_t attempt_id = 0;
  std::string task_id;
  int attempt_n = 0;
  int64_t busy_since_wall_ms = 0;
  // The agent the worker started for the job (from `started`).
  int64_t agent_pid = 0;
  int64_t agent_pgid = 0;
  int64_t agent_start_time = 0;
  // A worker's job: its agent timeout (0: none) and kill grace as
  // dispatched. The limit the job was sent with (0: none): a dispatch's or
  // a review's. When the child is overdue to have ended the job (0: not
  // set): from the sending, and for a worker from its agent's `started`
  // on; see Supervisor::KillOverdueChildren and supervisor/job_limits.h.
  int64_t agent_timeout_ms = 0;
  int64_t agent_kill_grace_ms = 0;
  int64_t job_limit_ms = 0;
  int64_t job_deadline_mono_ms = 0;
  bool cancel_sent = false;  // its job's attempt was cancelled
  // Set when the process has been reaped (state exited): how it ended.
  std::string exit_status;
  int64_t exited_mono_ms = 0;
};

// Respawn throttle: more than kMaxRestarts restarts of a role within
// kRestartWindowMs -> the next respawn waits, 1 s doubling up to 60 s, and the
// role is degraded. Never given up.
inline constexpr int kMaxRestarts = 5;
inline constexpr int64_t kRestartWindowMs = 10'000;
inline constexpr int64_t kRespawnDelayInitialMs = 1'000;
inline constexpr int64_t kRespawnDelayMaxMs = 60'000;

class ChildPool {
 public:
  std::string RoutingId(Role role, pid_t pid) const;

  // spawned: a new child in `starting`.
  Child& Add(Role role, pid_t pid, int64_t start_time, int64_t now_mono_ms);
  void Remove(pid_t pid);

  // Applies an event; kConflict (naming the child, state and event) when the
  // table does not allow it. Heartbeat/hello refresh last_seen.
  Result<ChildState> Apply(pid_t pid, ChildEvent event, int64_t now_mono_ms);

  // Job bookkeeping; AssignJob applies job_assigned, FinishJob job_done.
  Status AssignJob(pid_t pid, int64_t attempt_id, const std::string& task_id, int n,
                   int64_t now_mono_ms, int64_t now_wall_ms);
  Status FinishJob(pid_t pid, int64_t now_mono_ms);

  Child* Find(pid_t pid);
  Child* FindByRoutingId(const std::string& routing_id);
  Child* FindByAttempt(int64_t attempt_id);
  // True while a child holds a job (an attempt, a review) of this task,
  // including one the store has closed already (a cancel) until the child
  // reports its end or is reaped.
  bool HoldsTask(const std::string& task_id) const;
  // An idle child of the role (lowest pid for determinism), or nullptr.
  Child* FindIdle(Role role);
  std::vector<Child*> All();
  int Count(Role role) const;  // not exited
  // Reaped children still in the pool, waiting for their last messages.
  std::vector<pid_t> Exited() const;
  bool Empty() const { return children_.empty(); }

  // Children whose last message is older than their timeout
  // (starting/idle/busy/stopping): timeout_ms, or the one in force at their
  // spawn if longer (Child::spawn_heartbeat_timeout_ms).
  std::vector<pid_t> Silent(int64_t now_mono_ms, int64_t timeout_ms) const;
  // Busy children whose job_deadline_mono_ms has passed, and the earliest
  // deadline set (for the poll).
  std::vector<pid_t> Overdue(int64_t now_mono_ms) const;
  std::optional<int64_t> NextJobDeadline() const;
  // The earliest moment a child may become silent, for the loop's timer
  // (stopping children are not watched).
  std::optional<int64_t> NextSilenceDeadline(int64_t timeout_ms) const;
  // The timeout `child` is judged by when the config's is timeout_ms.
  static int64_t HeartbeatTimeout(const Child& child, int64_t timeout_ms) {
    return std::max(timeout_ms, child.spawn_heartbeat_timeout_ms);
  }

  // A child of the role exited and is to be replaced: records the restart and
  // returns the delay before respawning (0: at once).
  int64_t RecordRestart(Role role, int64_t now_mono_ms);
  bool Degraded(Role role) const;
  int Restarts(Role role) const;  // total since start

 private:
  struct Throttle {
    std::deque<int64_t> recent;  // restart times inside the window
    int64_t delay_ms = 0;
    int total = 0;
  };
  std::map<pid_t, Child> children_;
  std::map<Role, Throttle> throttle_;
};

}  // namespace forge::supervisor
