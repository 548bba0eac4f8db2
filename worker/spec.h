// Spec expansion: an `expand` task's agent turns a short issue into a
// specification (briefs/po.mustache). The spec is accepted only when it has
// every required section; otherwise the attempt fails naming what is missing,
// so the retry's brief tells the agent exactly what to add.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace forge::worker {

// The sections every spec must have, in the order the PO brief asks for them.
const std::vector<std::string>& RequiredSpecSections();

// The required sections `spec` lacks. A section is a Markdown heading line
// (one to six '#', then the name; case and trailing '#'/':' ignored).
std::vector<std::string> MissingSpecSections(std::string_view spec);

// The spec cut to what the agent wrote from its first required heading on
// (agents often preface it with chatter). kInvalid naming every missing
// section when one is missing; kInvalid when the spec exceeds `max_bytes`.
Result<std::string> ExtractSpec(std::string_view agent_text, size_t max_bytes = 256 * 1024);

}  // namespace forge::worker
