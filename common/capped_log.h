// The line a capped log starts with once its cap has cut it
// (worker/output_capture.h): written by the worker and critic, read by
// `forge-ctl logs --follow`, which skips what the cut copied from the file
// before it (the follower has printed that already).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace forge {

// "[forge: earlier output dropped; each time this log reaches MAX bytes it
// keeps only its last KEEP bytes; the first REPEATED bytes after this line
// were in it before]\n"
std::string CappedLogMarker(size_t max_bytes, size_t keep_bytes, size_t repeated_bytes);

// REPEATED of a marker line (its newline excluded); nullopt for any other
// line, and for the marker of an older Forge, which did not say.
std::optional<size_t> RepeatedAfterCappedLogMarker(std::string_view line);

}  // namespace forge
