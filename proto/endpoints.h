// Where the sockets of a state directory live. ipc:// paths are limited to
// 107 bytes (sun_path); when <state_dir>/control.sock would be longer the
// sockets go to a private 0700 directory under $XDG_RUNTIME_DIR (or /tmp),
// and that directory is written to <state_dir>/sockets.path so forge-ctl
// finds it.
#pragma once

#include <string>

#include "common/result.h"

namespace forge::proto {

struct Endpoints {
  std::string children;  // "ipc://.../children.sock"
  std::string control;   // "ipc://.../control.sock"
  std::string socket_dir;
};

// Supervisor side: picks (and creates, 0700) the socket directory and records it.
forge::Result<Endpoints> PrepareEndpoints(const std::string& state_dir);
// Client side: reads what the supervisor recorded (or the default in state_dir).
Endpoints ResolveEndpoints(const std::string& state_dir);

}  // namespace forge::proto
