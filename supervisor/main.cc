// forge-supervisor: the queue owner and process supervisor. See daemon.h.
#include <CLI/CLI.hpp>
#include <iostream>
#ifdef FORGE_MIMALLOC
#include <mimalloc.h>

#include <cstdlib>
#include <string>
#endif

#include "common/cli_usage.h"
#include "supervisor/daemon.h"

#ifdef FORGE_MIMALLOC
// Linked is not enough: mimalloc replaces malloc only when it comes before
// libc in the symbol search order. The log says which one malloc() is.
std::string Allocator() {
  // calloc: GCC's -Wmaybe-uninitialized takes the const void* argument for a read.
  void* probe = std::calloc(1, 16);
  bool in_use = mi_is_in_heap_region(probe);
  std::free(probe);
  int v = mi_version();  // 209 for 2.0.9
  std::string name = "mimalloc " + std::to_string(v / 100) + "." + std::to_string(v / 10 % 10) +
                     "." + std::to_string(v % 10);
  return in_use ? name : "glibc malloc (" + name + " linked but not in use)";
}
#endif

int main(int argc, char** argv) {
  using namespace forge::supervisor;
  CLI::App app{"forge-supervisor: runs coding agents from the Forge queue"};
  app.footer(
      "Exit codes: 0 ok; 1 runtime failure, or a supervisor already runs for the state "
      "directory; 2 usage or configuration error.");
  app.require_subcommand(1);

  StartOptions start;
#ifdef FORGE_MIMALLOC
  start.allocator = Allocator();
#endif
  auto* start_cmd =
      app.add_subcommand("start", "start the supervisor (daemonises unless --foreground)");
  start_cmd
      ->add_option("--config", start.config_path, "forge.yaml (default: ./forge.yaml if present)")
      ->check(forge::NonEmpty());
  start_cmd
      ->add_option("--state-dir", start.state_dir,
                   "state directory (default: $FORGE_STATE_DIR, else .forge beside the config)")
      ->check(forge::NonEmpty());
  start_cmd->add_flag("--foreground", start.foreground,
                      "stay in the foreground, log to stderr too");

  std::string check_path;
  auto* check_cmd =
      app.add_subcommand("check-config", "validate forge.yaml and print the effective config");
  check_cmd->add_option("--config", check_path, "forge.yaml (default: ./forge.yaml if present)")
      ->check(forge::NonEmpty());

  try {
    forge::RefuseEmptyEqualsValues(argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help
      app.exit(e);
      return kExitOk;
    }
    std::cerr << "forge-supervisor: " << forge::UsageError(app, e) << "\n"
              << "Run 'forge-supervisor --help' or 'forge-supervisor COMMAND --help' for usage.\n";
    return kExitUsage;
  }
  if (*start_cmd) return RunStart(start);
  if (*check_cmd) return RunCheckConfig(check_path);
  return kExitUsage;
}
