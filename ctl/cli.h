// The forge-ctl command line (CLI11): flags, --help with an example on every
// command, usage errors exit 2. A function rather than main() so tests can
// check parsing and exit codes without spawning the binary.
#pragma once

#include <ostream>

namespace forge::ctl {

int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace forge::ctl
