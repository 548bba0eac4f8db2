// The one-line message of a command-line usage error, for the programs'
// own "<program>: <what is wrong>" line (exit 2).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace forge {

// CLI11's message, except where CLI11 says "A subcommand is required" for
// both a missing and a mistyped command: then which word was not a command
// (or not a flag), and the commands there are. `app` is the top-level app
// after its parse threw `e`.
std::string UsageError(CLI::App& app, const CLI::ParseError& e);

}  // namespace forge
