#include "worker/child_main.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "common/log.h"
#include "common/paths.h"
#include "proto/child_job.h"

namespace forge::worker {

std::optional<int> ParseChildFlags(int argc, const char* const* argv,
                                   const std::string& description, ChildMainOptions& options) {
  CLI::App app{description};
  app.add_option("--connect", options.connect, "supervisor children endpoint")->required();
  app.add_option("--state-dir", options.state_dir, "absolute state directory")->required();
  app.add_option("--heartbeat-ms", options.heartbeat_ms, "heartbeat interval")
      ->check(CLI::PositiveNumber);
  app.add_option("--briefs-dir", options.briefs_dir, "installed brief templates")
      ->envname("FORGE_BRIEFS_DIR");
  app.add_option("--workspace-lock-wait-ms", options.workspace_lock_wait_ms,
                 "how long to wait for a workspace another process holds")
      ->check(CLI::Range(int64_t{1}, kMaxWorkspaceLockWaitMs));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11's own codes (106, ...) would mean nothing to the supervisor's log.
    return app.exit(e) == 0 ? 0 : 2;
  }
  return std::nullopt;
}

int RunChild(const std::string& role, const ChildMainOptions& options,
             const std::function<int(ChildContext&)>& loop) {
  std::string program = "forge-" + role;
  std::string log_dir = options.state_dir + "/logs";
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  LogOptions log;
  log.name = role;
  log.file = log_dir + "/" + role + "-" + std::to_string(getpid()) + ".log";
  log.console = false;
  Status logging = SetupLogging(log);
  if (!logging.ok())
    fprintf(stderr, "%s: %s\n", program.c_str(), logging.error().ToString().c_str());

  // Agents and verify commands may leave grandchildren: they are reaped here.
  Status reaper = proto::BecomeChildReaper();
  if (!reaper.ok()) spdlog::warn("{}", reaper.error().ToString());
  IgnoreWriteSignals();
  // Before the ZeroMQ context exists, so its threads inherit the blocked mask.
  auto signals = SignalFd::Create({SIGCHLD, SIGTERM, SIGINT, SIGHUP});
  if (!signals.ok()) {
    spdlog::critical("{}", signals.error().ToString());
    return 1;
  }
  auto link = proto::ChildLink::Connect({options.connect, role, options.heartbeat_ms});
  if (!link.ok()) {
    spdlog::critical("{}", link.error().ToString());
    fprintf(stderr, "%s: %s\n", program.c_str(), link.error().ToString().c_str());
    return 1;
  }
  spdlog::info("{} {} connected to {} as {}", program, FORGE_VERSION, options.connect,
               (*link)->routing_id());
  BriefDirs dirs;
  dirs.state_dir = options.state_dir;
  // Installed layout: <prefix>/bin/forge-* finds <prefix>/share/forge/briefs.
  dirs.briefs_dir = options.briefs_dir.empty() ? JoinPath(SelfExeDir(), "../share/forge/briefs")
                                               : options.briefs_dir;
#ifdef FORGE_SOURCE_DIR
  dirs.source_dir = FORGE_SOURCE_DIR;
#endif
  int code;
  {
    ChildContext context{**link, *signals, dirs};
    code = loop(context);
  }
  (*link)->Close(1000);
  spdlog::info("{} exiting with {}", program, code);
  return code;
}

}  // namespace forge::worker
