// forge-worker: runs agents for forge-supervisor (see worker/worker.h).
#include <CLI/CLI.hpp>

#include "worker/worker.h"

int main(int argc, char** argv) {
  CLI::App app{"forge-worker: runs coding agents for forge-supervisor"};
  forge::worker::ChildMainOptions options;
  forge::worker::AddChildFlags(app, options);
  CLI11_PARSE(app, argc, argv);
  return forge::worker::WorkerMain(options);
}
