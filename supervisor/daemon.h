// The forge-supervisor commands behind main(): `start` (foreground or
// daemonised with a readiness pipe) and `check-config`. Each returns the
// process exit code: 0 ok, 1 runtime failure / already running, 2 usage or
// configuration error.
#pragma once

#include <string>

namespace forge::supervisor {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct StartOptions {
  std::string config_path;  // empty: ./forge.yaml if it exists, else defaults
  std::string state_dir;    // empty: FORGE_STATE_DIR, beside the config, ./.forge
  bool foreground = false;
  // The malloc the binary runs on, logged at start (main.cc knows it: the
  // library is also linked into tests, which keep glibc's).
  std::string allocator = "glibc malloc";
};

// Without foreground: forks, the child detaches (setsid, stdio to /dev/null)
// and the parent returns 0 only once the child accepts commands (after lock,
// recovery and binding), or prints the child's error and returns 1.
int RunStart(const StartOptions& options);

// Prints the effective config (0) or every error (2).
int RunCheckConfig(const std::string& config_path);

}  // namespace forge::supervisor
