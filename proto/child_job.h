// ChildJob: a command a child process runs for the supervisor (the worker's
// agent, one of the critic's verify commands), driven from the child's poll
// loop without ever blocking: its own process group, its output pipes read
// as they become ready, its stdin fed from memory, termination as SIGTERM to
// the group then SIGKILL after a grace period, and, once the leader has
// exited, SIGKILL to whatever is left of the group (grandchildren holding the
// pipes). Exit statuses come from the child's own SIGCHLD reaping (ReapAll).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/process.h"
#include "common/result.h"
#include "proto/child_link.h"

namespace forge::proto {

class ChildJob {
 public:
  // Receives output as it is read: stream 1 = stdout, 2 = stderr.
  using OutputSink = std::function<void(int stream, std::string_view data)>;

  // Spawns `options` in a new process group. When stdin_data is non-empty
  // the child's stdin is a pipe fed with it (then closed); otherwise stdin
  // is options.stdin_mode. Spawn errors are returned as they are (kNotFound
  // when the binary does not exist).
  static forge::Result<std::unique_ptr<ChildJob>> Start(SpawnOptions options,
                                                        std::string stdin_data, OutputSink sink);
  ~ChildJob();

  pid_t pid() const { return proc_.pid; }
  pid_t pgid() const { return proc_.pgid; }
  // The leader's /proc start time (0 if unreadable), read now: call it before
  // the leader is reaped (ReapAll), as the worker does right after Start.
  int64_t start_time() const { return ProcessStartTime(proc_.pid).value_or(0); }

  // Appends the descriptors to watch now (open pipes; stdin while data is left).
  void AppendPollFds(std::vector<PollFd>& fds) const;
  // Handles the readiness Poll reported; fds not belonging to this job are ignored.
  void HandleReady(const std::vector<PollFd>& fds);

  // The leader exited with `status`: SIGKILLs the group, takes what is left
  // in the pipes (at most kReadBudget of each: a process outside the group
  // may still write), closes the pipes. After this, exited() is true.
  void OnExit(const ExitStatus& status);
  bool exited() const { return status_.has_value(); }
  const ExitStatus& status() const { return *status_; }

  // SIGTERM to the group now; Tick() escalates to SIGKILL at now + grace_ms.
  void Terminate(int64_t now_ms, int64_t grace_ms);
  // SIGKILL to the group now.
  void Kill();
  bool terminating() const { return kill_at_ms_ >= 0 || killed_; }
  // When Tick() next has something to do (-1: nothing pending).
  int64_t NextDeadline() const { return killed_ || exited() ? -1 : kill_at_ms_; }
  void Tick(int64_t now_ms);

 private:
  ChildJob() = default;
  // What one call reads from a pipe before it returns to the caller's poll:
  // a command that writes faster than its sink takes it (`yes`, a log loop)
  // must not keep the loop from its heartbeats, timeouts and cancels.
  static constexpr size_t kReadBudget = 1 << 20;
  void ReadAvailable(UniqueFd& fd, int stream);
  void WriteStdin();

  SpawnedProcess proc_;
  std::string stdin_data_;
  size_t stdin_written_ = 0;
  OutputSink sink_;
  std::optional<ExitStatus> status_;
  int64_t kill_at_ms_ = -1;
  bool killed_ = false;
};

// Reaps every child that has exited (a subreaper also gets orphans here), without blocking.
std::vector<std::pair<pid_t, ExitStatus>> ReapAll();

// Kills the job's group and waits (up to timeout_ms) to reap its leader, for
// a child about to exit: a zombie left behind would be reaped by init, which
// may take its time.
void KillAndReap(ChildJob& job, int64_t timeout_ms);

// SIGKILLs every live process whose parent is this process, with its group
// when it leads one: the orphans a subreaper inherited from an agent that
// put them in another process group; then, pass after pass, the orphans of
// those (handed to this process as each killed one dies) until none is left
// (at most 16 passes, each waiting up to 1 s for its killed to die). Returns
// how many were signalled by pid (not the members of their groups). Reaps
// nothing: the dead stay zombies for ReapAll.
int KillOrphans();

// Makes this process the reaper of its descendants' orphans
// (PR_SET_CHILD_SUBREAPER) and asks for SIGTERM when its parent dies.
Status BecomeChildReaper();

}  // namespace forge::proto
