// Process spawning and process groups, for everything Forge runs: the
// supervisor's children, the worker's agent, the critic's verify commands,
// git. Argv is exec'd directly (never through a shell unless the caller puts
// "sh -c" in argv itself), the environment is exactly what the caller gives,
// and the child can be put in its own process group so it and everything it
// forks can be signalled together.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace forge {

// kFile is for stdin only: SpawnOptions::stdin_file, opened read-only.
enum class Stdio { kPipe, kNull, kInherit, kFile };

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH of `env` if it has no '/'
  std::vector<std::string> env;   // "K=V" entries; the child's whole environment
  std::string cwd;                // empty: inherit
  bool new_process_group = true;  // setpgid(0, 0): pgid == pid
  // PR_SET_PDEATHSIG(SIGKILL). Note: the kernel ties it to the *thread* that
  // called Spawn, so spawn from a thread that lives as long as the child should.
  bool die_with_parent = true;
  Stdio stdin_mode = Stdio::kNull;
  std::string stdin_file;  // with stdin_mode kFile
  Stdio stdout_mode = Stdio::kPipe;
  Stdio stderr_mode = Stdio::kPipe;
  bool merge_stderr = false;  // stderr goes to the stdout pipe
  std::vector<int> keep_fds;  // extra fds left open in the child (others are closed)
};

struct SpawnedProcess {
  pid_t pid = -1;
  pid_t pgid = -1;
  UniqueFd stdin_fd;   // write end, when stdin_mode == kPipe (non-blocking, close-on-exec)
  UniqueFd stdout_fd;  // read end, when stdout_mode == kPipe (non-blocking, close-on-exec)
  UniqueFd stderr_fd;  // read end, when stderr_mode == kPipe and !merge_stderr
};

// clone(CLONE_VM | CLONE_VFORK) + exec, as posix_spawn does. An exec failure
// (binary missing, not executable, bad cwd) is reported here as an Error
// naming argv[0] and errno, never as a child that exits 127. kNotFound when
// the binary does not exist.
Result<SpawnedProcess> Spawn(const SpawnOptions& options);

// The open-files soft limit every child spawned from now on starts with
// (0, the default: inherit this process's). The supervisor raises its own
// for its sockets; its children, the agents and the checks get the usual
// limit back (select() and closing every fd up to the limit break on a high
// one).
void SetChildOpenFileLimit(uint64_t soft);

// How a process ended.
struct ExitStatus {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // 0 when it exited
  bool success() const { return exit_code == 0; }
  std::string ToString() const;  // "exit 3" / "signal 9 (Killed)"
  static ExitStatus FromWaitStatus(int status);
};

// Non-blocking waitpid: nullopt while still running. A pid that is not (or no
// longer) our child reports ExitStatus{} (exit_code -1, signal 0), so callers
// polling for an exit never spin forever.
std::optional<ExitStatus> TryReap(pid_t pid);
// Blocking waitpid.
ExitStatus Reap(pid_t pid);

// Signals a process group; ESRCH (already gone) is not an error.
Status KillGroup(pid_t pgid, int sig);

// SIGKILLs every live (not zombie) process whose parent is this process and
// which `spare` does not name, with its whole process group when it leads
// one (a check's `sh`, an agent's `setsid` server); returns the pids
// signalled. Neither waits nor reaps. It reads every /proc/<pid>/stat, so it
// is for the moments a subreaper expects orphans, not for a hot loop.
std::vector<pid_t> KillChildren(const std::function<bool(pid_t)>& spare = {});

// True when a process this one may inspect has `path` open (a descriptor in
// /proc/<pid>/fd naming the same file): a lock file a live program holds.
// False when the file does not exist. Reads every process's descriptors, so
// it is for a rare check (a lock found in the way), not a hot loop.
bool AnyProcessHasOpen(const std::string& path);

// The fields of /proc/<pid>/stat after the command name (which may hold
// spaces and parentheses: everything after the last ')'). [0] is field 3
// (state), so field k of proc(5) is [k - 3]. nullopt if the process is gone.
std::optional<std::vector<std::string>> StatFields(pid_t pid);
// Start time of a process from /proc/<pid>/stat (field 22, clock ticks since
// boot; parsed after the last ')' so odd command names are safe), nullopt if
// gone. A zombie still has one, so a parent can read its child's any time
// before reaping it. (pid, start time) names a process uniquely. Spawn does
// not read it: an open, a read and the kernel formatting 52 fields cost a
// critic more than the clone of its check, and only the agent's and the
// supervisor's children's identities are kept (issue 6).
std::optional<int64_t> ProcessStartTime(pid_t pid);
// True if pid is alive AND its start time is start_time (so never a reused pid).
// A zombie counts as dead: it has finished and only awaits reaping.
bool IsSameProcess(pid_t pid, int64_t start_time);

// Runs argv to completion collecting stdout+stderr (for short helper commands
// such as git). Output past max_output bytes is dropped from the front (the tail
// is kept). Times out with SIGKILL to the group after timeout_ms (<= 0: none).
struct RunResult {
  ExitStatus status;
  std::string output;
  bool timed_out = false;
};
Result<RunResult> RunCommand(const SpawnOptions& options, int64_t timeout_ms,
                             size_t max_output = 1 << 20);

// True for a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*): what
// a config's env and pass_env, forge-ctl's --env and a plan's env, and the
// supervisor's submit check accept. Another name ("", "A=B") would reach the
// child as an entry it reads as something else ("=x", A set to "B=y").
bool IsEnvName(std::string_view name);

// The environment of this process as "K=V" entries.
std::vector<std::string> CurrentEnvironment();
// Builds a child environment: the named variables taken from this process (if
// set), then `extra` (which overrides).
std::vector<std::string> BuildEnvironment(const std::vector<std::string>& pass_names,
                                          const std::map<std::string, std::string>& extra);

// A base environment split and sorted once, for a process that starts many
// children from it with a few variables changed each time (the critic runs
// every check with its own environment plus the task's). With() is the same
// as putting the base's entries and then the overrides into a map keyed by
// name, and listing the map as "K=V": the last entry of a duplicated name
// wins, entries without '=' are dropped, the result is sorted by name. It
// costs a copy of each entry instead of a split and two tree inserts (issue
// 6: 110 k instructions a check with 49 variables, against 35 k for the spawn).
class EnvironmentTemplate {
 public:
  explicit EnvironmentTemplate(const std::vector<std::string>& entries);
  std::vector<std::string> With(const std::map<std::string, std::string>& overrides) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    std::string text;  // "name=value"
  };
  std::vector<Entry> entries_;  // sorted by name, unique
};

// Makes a descriptor non-blocking / close-on-exec.
Status SetNonBlocking(int fd);
Status SetCloseOnExec(int fd);

}  // namespace forge
