// forge-worker: runs agents for forge-supervisor (see worker/worker.h).
#include "worker/worker.h"

int main(int argc, char** argv) {
  forge::worker::ChildMainOptions options;
  if (auto exit_code = forge::worker::ParseChildFlags(
          argc, argv, "forge-worker: runs coding agents for forge-supervisor", options)) {
    return *exit_code;
  }
  return forge::worker::WorkerMain(options);
}
