// An exclusive lock on a file, held by one process: the one supervisor of a
// state directory (supervisor.lock), and the one worker or critic working in
// a workspace (<workspace>.lock, worker/workspace_lock.h). A POSIX record
// lock (fcntl F_SETLK) rather than flock: forge-ctl can ask who holds it with
// F_GETLK without ever taking it, so a status query can never make a starting
// supervisor think another one runs. The lock dies with its process (also on
// SIGKILL); forked children do not inherit it. Locks do not conflict within
// one process, and closing any descriptor of the file drops them: a process
// takes each lock once and opens the file nowhere else.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/fd.h"
#include "common/result.h"

namespace forge {

class LockFile {
 public:
  // Takes the lock without waiting and writes our pid into the file (best
  // effort: Holder asks the kernel, not the file). kConflict when another
  // process holds it: the message is `held` followed by the holder's pid
  // and the lock's path.
  static Result<LockFile> Acquire(
      const std::string& path,
      const std::string& held = "a supervisor is already running for this state directory");
  // The pid holding the lock, nullopt when nobody does (or no file).
  static std::optional<pid_t> Holder(const std::string& path);

 private:
  UniqueFd fd_;
};

}  // namespace forge
