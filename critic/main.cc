// forge-critic: verifies attempts for forge-supervisor (see critic/critic.h).
#include <CLI/CLI.hpp>

#include "critic/critic.h"

int main(int argc, char** argv) {
  CLI::App app{"forge-critic: runs verify commands for forge-supervisor"};
  forge::critic::CriticMainOptions options;
  app.add_option("--connect", options.connect, "supervisor children endpoint")->required();
  app.add_option("--state-dir", options.state_dir, "absolute state directory")->required();
  app.add_option("--heartbeat-ms", options.heartbeat_ms, "heartbeat interval")
      ->check(CLI::PositiveNumber);
  app.add_option("--briefs-dir", options.briefs_dir, "installed brief templates")
      ->envname("FORGE_BRIEFS_DIR");
  CLI11_PARSE(app, argc, argv);
  return forge::critic::CriticMain(options);
}
