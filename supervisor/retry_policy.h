// The retry policy: given a task's retry bookkeeping and how its attempt
// ended, decides how the attempt closes and where the task goes next
// (store::Close). Pure: time and randomness come in as arguments so every
// branch is testable.
//
//   passed                        -> done
//   lost / crashed / recovered,   -> ready, not counted, unless the task has
//   or infra (worker's disk full)    used max_infra_retries -> blocked
//   cancelled                     -> ready, not counted (shutdown, not the task's fault)
//   rate limited (and retryable)  -> ready, not counted (the loop pauses dispatch instead)
//   non-retryable                 -> blocked
//   task budget spent             -> blocked
//   same fingerprint as the last  -> blocked "same failure twice"
//   counted attempts exhausted    -> blocked
//   otherwise                     -> cooldown, not_before = now + backoff ±20 %
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "proto/types.h"
#include "supervisor/config/config.h"
#include "supervisor/store/store.h"

namespace forge::supervisor {

// What the policy needs to know about the task, as it was before this attempt closes.
struct TaskRetryState {
  int attempts_used = 0;  // counted attempts closed before this one
  int max_attempts = 3;
  int infra_retries = 0;  // infra requeues before this one
  std::string last_fingerprint;
  double cost_usd = 0;  // the task's total cost including this attempt
};

// How the attempt ended (worker result or critic verdict, or a supervisor finding).
struct AttemptEnd {
  proto::Outcome outcome = proto::Outcome::kFailed;
  std::string error;
  std::string output_tail;  // agent output tail, part of the fingerprint
  std::vector<proto::CheckResult> checks;
  std::vector<proto::Finding> findings;
  std::string verdict;
  std::string commit;
  bool retryable = true;
  bool rate_limited = false;  // the agent hit a rate limit: not the task's fault
  bool infra = false;         // the worker could not prepare it (disk full): as an infra outcome
  std::string spec;           // expand: the checked spec that becomes a new task on a pass
  // The review log stopped early (proto::ReviewResult.log_error).
  std::string review_log_error;
  // Spend not in the attempt's row yet (the LLM critic's), added by the close.
  double cost_usd = 0;
  int64_t tokens_in = 0;
  int64_t tokens_out = 0;
  bool cost_estimated = false;  // cost_usd is its tokens priced (guards.h CountedSpend)
};

struct PolicyConfig {
  RetryConfig retry;
  double task_usd = 0;  // 0: no per-task budget
};

// Returns a uniform double in [0, 1); tests inject a fixed sequence.
using UniformRng = std::function<double()>;

// Lowercases and strips what differs between two runs of the same failure:
// digits, hex ids, temp paths, timestamps. Whitespace runs collapse to one space.
std::string NormalizeFailureText(const std::string& text);

// Stable 16-hex-digit hash of the normalised error, the agent output tail and
// the failing checks (name + output tail). Includes the outcome name, so a
// timeout and a failure with the same text differ. Empty for a pass.
std::string Fingerprint(const AttemptEnd& end);

// Backoff before counted attempt n (n >= 1): min(base * 2^(n-1), max) with
// ±20 % jitter from rng.
int64_t BackoffMs(int n, const RetryConfig& retry, const UniformRng& rng);

store::Close Decide(const TaskRetryState& task, const AttemptEnd& end, const PolicyConfig& config,
                    int64_t now_wall_ms, const UniformRng& rng);

}  // namespace forge::supervisor
