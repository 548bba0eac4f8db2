// Where forge-ctl finds things: the state directory, the database, the
// supervisor lock, the logs; and whether a supervisor is running (asked of the
// lock, never by taking it).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace forge::ctl {

// Exit codes (contract).
inline constexpr int kExitOk = 0;
inline constexpr int kExitRejected = 1;  // rejected / not found / red doctor finding
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNoSupervisor = 3;
inline constexpr int kExitTimeout = 124;  // wait --timeout

// --state-dir, else $FORGE_STATE_DIR, else ./.forge; made absolute.
std::string ResolveStateDir(const std::string& flag);
// How a hint starts a forge-ctl command for state_dir (resolved): "forge-ctl",
// with "--state-dir D" when D is not where forge-ctl looks by default from
// here, so that the hint can be copied and run as printed.
std::string CtlCommand(const std::string& state_dir);

std::string DbPath(const std::string& state_dir);
std::string EventsJsonlPath(const std::string& state_dir);
std::string LockPath(const std::string& state_dir);
std::string LogsDir(const std::string& state_dir);
// <state>/logs/<task>/<n>.log (the worker's capture of the agent's output).
std::string AttemptLogPath(const std::string& state_dir, const std::string& task_id, int n);
// Attempt n's review log: its checks' output and the critic agent's.
std::string ReviewLogPath(const std::string& state_dir, const std::string& task_id, int n);

// The pid of the supervisor holding the state directory's lock, if any.
std::optional<pid_t> SupervisorPid(const std::string& state_dir);

// The config file the state directory's supervisor last started with
// (common/paths.h StartedConfigFile): "" when it ran on defaults, nullopt
// when nothing is recorded (it never started, or an older Forge did).
std::optional<std::string> StartedConfig(const std::string& state_dir);

// "forge-supervisor start [--config F] --state-dir D", quoted for a shell
// when needed: F is the config it last started with, so that following the
// hint does not bring it back on defaults.
std::string StartCommand(const std::string& state_dir);
// Quotes a word for a POSIX shell when it has anything but [A-Za-z0-9_./=:@%+-].
std::string ShellQuote(const std::string& word);

}  // namespace forge::ctl
