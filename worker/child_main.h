// What forge-worker and forge-critic share before their loops run: their
// flags, and the process setup (log file, child reaper, SIGPIPE ignored,
// signalfd, the link to the supervisor, where brief templates are found).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/signals.h"
#include "proto/child_link.h"
#include "worker/brief.h"
#include "worker/workspace_lock.h"

namespace forge::worker {

struct ChildMainOptions {
  std::string connect;    // the supervisor's children endpoint
  std::string state_dir;  // absolute
  int64_t heartbeat_ms = 1000;
  std::string briefs_dir;  // installed templates; empty: <bin>/../share/forge/briefs
  // How long a workspace held by another process is waited for
  // (worker/workspace_lock.h); the supervisor leaves the default. At most a
  // day, so a deadline in ms cannot overflow.
  int64_t workspace_lock_wait_ms = kWorkspaceLockWaitMs;
};

// Parses a child's command line into `options`: --connect, --state-dir,
// --heartbeat-ms, --briefs-dir (env FORGE_BRIEFS_DIR), --workspace-lock-wait-ms. nullopt to go on;
// otherwise the code to exit with, after CLI11 has printed the help (0) or
// the usage error naming the flag (2). Here rather than in each
// main(), so that CLI11, which costs seconds to compile, is built once.
std::optional<int> ParseChildFlags(int argc, const char* const* argv,
                                   const std::string& description, ChildMainOptions& options);

struct ChildContext {
  proto::ChildLink& link;
  SignalFd& signals;
  BriefDirs brief_dirs;
};

// Sets the process up as a forge child of `role` ("worker" | "critic"), runs
// `loop` and returns its exit code; 1 when the setup fails (logged, and
// printed to stderr, which the supervisor's log keeps).
int RunChild(const std::string& role, const ChildMainOptions& options,
             const std::function<int(ChildContext&)>& loop);

}  // namespace forge::worker
