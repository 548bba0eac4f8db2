// The control client: one request, one reply, over a ZeroMQ DEALER connected
// to the supervisor's control ROUTER. Frames are [empty][json] both ways, so a
// ROUTER that answers REQ-style ([id][empty][json]) works unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "proto/types.h"

namespace forge::ctl {

using proto::json;

// Fails with kInvalid when the state directory is not a directory (a file),
// with kIo "permission denied: ..." naming it (its mode and owner when
// readable) when this user may not enter it; Ok when it is usable or absent
// (absence is reported by each command in its own way).
// Without this check every probe inside a 0700 directory of another user
// fails with EACCES and reads as "supervisor not running".
Status CheckStateDirAccess(const std::string& state_dir);

class ControlClient {
 public:
  // Connects to the control endpoint of state_dir (proto::ResolveEndpoints).
  // Connecting never blocks; a supervisor that does not answer within
  // timeout_ms makes Call() fail with kTimeout, and one that stops while a
  // Call waits (its lock is free: SupervisorPid) makes it fail with
  // kUnavailable at once, not at the end of the timeout.
  static Result<std::unique_ptr<ControlClient>> Connect(const std::string& state_dir,
                                                        int64_t timeout_ms);
  // Connects to an explicit endpoint ("ipc://..."), for tests.
  static Result<std::unique_ptr<ControlClient>> ConnectTo(const std::string& endpoint,
                                                          int64_t timeout_ms);
  ~ControlClient();

  // Sends {"v":1,"cmd":cmd, ...args} and returns the reply body on ok:true, or
  // the supervisor's error (its code mapped back to an ErrorCode) on ok:false.
  Result<json> Call(const std::string& cmd, const json& args = json::object());

  const std::string& endpoint() const { return endpoint_; }
  // The wait for the next Calls' answers (Connect's timeout_ms until then).
  void set_timeout_ms(int64_t timeout_ms) { timeout_ms_ = timeout_ms; }

 private:
  ControlClient() = default;
  Status Reconnect();

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string endpoint_;
  std::string state_dir_;  // empty (ConnectTo): no look at the lock while waiting
  int64_t timeout_ms_ = 10000;
};

}  // namespace forge::ctl
