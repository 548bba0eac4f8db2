// Durations as written in forge.yaml and on the command line: an integer and
// a unit, "250ms", "30s", "10m", "2h", "7d". A bare "0" means zero.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.h"

namespace forge {

using Millis = std::chrono::milliseconds;

// Errors name the offending text and what is accepted.
Result<Millis> ParseDuration(std::string_view text);
// The shortest exact form: 90000ms -> "90s", 5400000 -> "90m".
std::string FormatDuration(Millis d);

}  // namespace forge
