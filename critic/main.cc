// forge-critic: verifies attempts for forge-supervisor (see critic/critic.h).
#include "critic/critic.h"

int main(int argc, char** argv) {
  forge::worker::ChildMainOptions options;
  if (auto exit_code = forge::worker::ParseChildFlags(
          argc, argv, "forge-critic: runs verify commands for forge-supervisor", options)) {
    return *exit_code;
  }
  return forge::critic::CriticMain(options);
}
