// The one-line message of a command-line usage error, for the programs'
// own "<program>: <what is wrong>" line (exit 2).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace forge {

// CLI11's message, except where CLI11 says "A subcommand is required" for
// both a missing and a mistyped command: then which word was not a command
// (or not a flag), and the commands there are. `app` is the top-level app
// after its parse threw `e`.
std::string UsageError(CLI::App& app, const CLI::ParseError& e);

// Refuses an option given an empty value ("--repo ''", "--state-dir=").
// Without it CLI11 stores "" and the program reads the option as left out:
// a script's `--repo "$REPO"` with REPO unset queued a task with no
// repository, and `--state-dir "$DIR"` steered ./.forge instead. The
// message is CLI11's "--repo: must not be empty" (a usage error, exit 2).
const CLI::Validator& NonEmpty();

// Throws CLI::ValidationError ("--model: must not be empty") for an argument
// "--name=" with nothing after the '=', before the first bare "--". Call it
// before App::parse: CLI11 2.1 takes such an argument as the option with no
// value and gives it the next argument instead, so `--model="$MODEL"
// --needs-approval` with MODEL unset queued a task that skipped approval.
void RefuseEmptyEqualsValues(int argc, const char* const* argv);

// Refuses a value that is not a plain decimal integer from min to max
// ("--limit: must be an integer from -2147483648 to 2147483647, got
// '3000000000'"). CLI11 alone said "Could not convert" past an int's
// range, read "0x10" as 16 and " 5" as 5, and took a number past int64's
// range as its largest.
CLI::Validator IntegerIn(int64_t min, int64_t max);

}  // namespace forge
