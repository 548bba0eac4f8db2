// The LLM critic's report: its output must end with one JSON line
//   {"overall":"approve|request_changes|block","findings":[{"severity":"sev1|sev2|sev3",
//    "category":"correctness|security|tests|product|performance|architecture|style|docs",
//    "file":...,"line":...,"message":...}]}
// and the verdict follows from it: block or any sev1 -> reject;
// request_changes with a sev2 -> reject; otherwise pass.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "proto/types.h"

namespace forge::critic {

struct CriticReport {
  std::string overall;
  std::vector<proto::Finding> findings;
};

// Parses the last non-empty line of text (a trailing ``` fence is skipped).
// kDecode errors say what is wrong ("finding 2: severity 'high' is not one of
// sev1, sev2, sev3").
Result<CriticReport> ParseCriticReport(std::string_view text);

struct Decision {
  bool pass = false;
  std::string reason;  // why it was rejected, one line
};
Decision Decide(const CriticReport& report);

}  // namespace forge::critic
