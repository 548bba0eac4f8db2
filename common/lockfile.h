// The one-supervisor-per-state-directory lock. A POSIX record lock (fcntl
// F_SETLK) rather than flock: forge-ctl can ask who holds it with F_GETLK
// without ever taking it, so a status query can never make a starting
// supervisor think another one runs. The lock dies with its process (also on
// SIGKILL); forked children do not inherit it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/fd.h"
#include "common/result.h"

namespace forge {

class LockFile {
 public:
  // Takes the lock and writes our pid into the file. kConflict when another
  // process holds it; the message names its pid.
  static Result<LockFile> Acquire(const std::string& path);
  // The pid holding the lock, nullopt when nobody does (or no file).
  static std::optional<pid_t> Holder(const std::string& path);

 private:
  UniqueFd fd_;
};

}  // namespace forge
