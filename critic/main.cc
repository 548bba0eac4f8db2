// forge-critic: verifies attempts for forge-supervisor (see critic/critic.h).
#include <CLI/CLI.hpp>

#include "critic/critic.h"

int main(int argc, char** argv) {
  CLI::App app{"forge-critic: runs verify commands for forge-supervisor"};
  forge::worker::ChildMainOptions options;
  forge::worker::AddChildFlags(app, options);
  CLI11_PARSE(app, argc, argv);
  return forge::critic::CriticMain(options);
}
