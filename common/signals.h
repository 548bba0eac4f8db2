// SignalFd: blocks a set of signals for the calling thread and delivers them
// through a descriptor that an event loop polls (zmq_poll takes raw fds).
// Construct it before starting threads so the mask is inherited; Spawn()
// resets the mask and dispositions in the child.
#pragma once

#include <signal.h>

#include <initializer_list>
#include <optional>

#include "common/fd.h"
#include "common/result.h"

namespace forge {

class SignalFd {
 public:
  static Result<SignalFd> Create(std::initializer_list<int> signals);

  int fd() const { return fd_.get(); }
  // Next pending signal number, nullopt when none is pending (non-blocking).
  std::optional<int> Read();

 private:
  UniqueFd fd_;
};

// Whether SIGTERM or SIGINT is pending (blocked and not yet read from a
// SignalFd), without reading it: for a child in a long synchronous step,
// which its loop's signalfd does not see until the step ends.
bool StopSignalPending();

// Ignores SIGPIPE and SIGXFSZ: a write to a dead pipe (EPIPE) or past a
// file size limit (EFBIG: `ulimit -f`, systemd's LimitFSIZE=) fails the call,
// where the error is handled, instead of killing the process. Spawned
// commands get the default dispositions back (common/process.h).
void IgnoreWriteSignals();

}  // namespace forge
