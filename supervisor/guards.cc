#include "supervisor/guards.h"

#include <algorithm>
#include <cstdio>

namespace forge::supervisor {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

// What the breaker counts: the agent's failures, and a worker that died or
// went silent under it. A host that kills every attempt (the OOM killer, an
// agent that takes its worker down) is as systemic as expired credentials:
// without this each task would run 1 + max_infra_retries times, the queue
// through, and a crashed agent may have spent before it died. Not counted:
// `recovered` (the supervisor's own restart), `cancelled`, and closes with
// no verdict on the work (rate limit, no space: OnAttemptEndedWithoutVerdict).
bool CountsAsFailure(proto::Outcome o) {
  using proto::Outcome;
  return o == Outcome::kFailed || o == Outcome::kRejected || o == Outcome::kTimedOut ||
         o == Outcome::kStalled || o == Outcome::kLost || o == Outcome::kCrashed;
}

}  // namespace

std::string FormatUsd(double usd) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "$%.2f", usd);
  return buf;
}

Spend CountedSpend(double reported_usd, int64_t tokens_in, int64_t tokens_out,
                   const TokenPrices& prices) {
  if (reported_usd > 0) return {reported_usd, false};
  double usd = static_cast<double>(std::max<int64_t>(0, tokens_in)) * prices.input_per_mtok / 1e6 +
               static_cast<double>(std::max<int64_t>(0, tokens_out)) * prices.output_per_mtok / 1e6;
  if (usd <= 0) return {};
  return {std::min(usd, kMaxEstimatedUsd), true};
}

Guards::Guards(const Clock& clock, GuardsConfig config) : clock_(clock), config_(config) {}

int64_t Guards::NextUtcMidnight(int64_t wall_ms) {
  return (wall_ms / kDayMs + 1) * kDayMs;
}

template <typename F>
void Guards::Change(F&& mutate) {
  auto before = Reasons();
  mutate();
  auto after = Reasons();
  auto find = [](const std::vector<proto::PauseReason>& v, const std::string& kind) {
    return std::find_if(v.begin(), v.end(), [&](const auto& p) { return p.kind == kind; });
  };
  for (const auto& p : before) {
    if (find(after, p.kind) == after.end()) events_.push_back({"dispatch.resumed", p});
  }
  for (const auto& p : after) {
    auto it = find(before, p.kind);
    bool changed = it == before.end() || it->reason != p.reason || it->until_ms != p.until_ms;
    if (changed) events_.push_back({"dispatch.paused", p});
  }
}

void Guards::Reconfigure(GuardsConfig config) {
  // One change: a reload that leaves the budget spent must not show a
  // resume and a pause to whoever follows the events.
  Change([&] {
    config_ = config;
    if (config_.circuit.consecutive_failures <= 0) circuit_ = Circuit::kClosed;
    // A raised (or removed) daily budget lifts the pause; a lowered one may set it.
    ApplyCostToday(cost_today_);
  });
}

void Guards::OnAttemptClosed(proto::Outcome outcome) {
  Change([&] {
    if (outcome == proto::Outcome::kPassed) {
      consecutive_failures_ = 0;
      circuit_ = Circuit::kClosed;
      probe_in_flight_ = false;
      rate_limit_backoff_ms_ = kRateLimitInitialMs;
      return;
    }
    if (!CountsAsFailure(outcome)) {
      // Nothing about the agent's run (recovered, cancelled): a probe may be retried.
      probe_in_flight_ = false;
      return;
    }
    ++consecutive_failures_;
    last_failure_ = outcome;
    int threshold = config_.circuit.consecutive_failures;
    bool trip = circuit_ == Circuit::kHalfOpen || (circuit_ == Circuit::kClosed && threshold > 0 &&
                                                   consecutive_failures_ >= threshold);
    if (trip) {
      circuit_ = Circuit::kOpen;
      circuit_until_ms_ = clock_.WallMs() + config_.circuit.cooldown_ms;
      circuit_due_mono_ = clock_.MonotonicMs() + config_.circuit.cooldown_ms;
      probe_in_flight_ = false;
    }
  });
}

void Guards::OnAttemptEndedWithoutVerdict() {
  if (!probe_in_flight_) return;
  Change([&] { probe_in_flight_ = false; });
}

void Guards::OnRateLimited(int64_t reset_wall_ms, std::string_view who) {
  Change([&] {
    int64_t now = clock_.WallMs();
    const bool paused = rate_limit_until_ms_ != 0;
    int64_t wait_ms = 0;
    if (reset_wall_ms > now) {
      // The agent's reset is a wall time: turned into a wait now, so a later
      // wall step does not move it. Capped: a garbled reset must not stop
      // everything until an operator resumes.
      wait_ms = std::min(reset_wall_ms - now, kRateLimitMaxResetMs);
    } else if (paused) {
      // Attempts and reviews that were already running when the pause began
      // report the same limit: the pause was set for it (W such reports
      // doubling it would multiply the wait by 2^W).
      return;
    } else {
      wait_ms = rate_limit_backoff_ms_;
      rate_limit_backoff_ms_ = std::min(rate_limit_backoff_ms_ * 2, kRateLimitMaxMs);
    }
    // A later report never shortens the pause another one set.
    const int64_t due_mono = clock_.MonotonicMs() + wait_ms;
    if (paused && due_mono <= rate_limit_due_mono_) return;
    rate_limit_until_ms_ = now + wait_ms;
    rate_limit_due_mono_ = due_mono;
    rate_limit_source_ = std::string(who);
  });
}

void Guards::OnCostToday(double usd) {
  Change([&] { ApplyCostToday(usd); });
}

void Guards::ApplyCostToday(double usd) {
  cost_today_ = usd;
  double limit = config_.budget.daily_usd;
  if (limit > 0 && usd >= limit) {
    int64_t now = clock_.WallMs();
    int64_t midnight = NextUtcMidnight(now);
    // Re-reported spend for the same day keeps the deadline set first.
    if (budget_until_ms_ != midnight) {
      budget_until_ms_ = midnight;
      budget_due_mono_ = clock_.MonotonicMs() + (midnight - now);
    }
  } else {
    budget_until_ms_ = 0;
  }
}

bool Guards::OnStoreFailed(std::string reason) {
  if (store_paused() && !store_retry_due_) return false;
  Change([&] {
    int64_t now = clock_.MonotonicMs();
    if (!store_paused() &&
        (!store_last_failure_mono_ || now - *store_last_failure_mono_ >= kStoreRetryMaxMs)) {
      store_backoff_ms_ = kStoreRetryInitialMs;
    }
    store_retry_due_ = false;
    store_reason_ = std::move(reason);
    store_until_ms_ = clock_.WallMs() + store_backoff_ms_;
    store_due_mono_ = now + store_backoff_ms_;
    store_last_failure_mono_ = now;
    store_backoff_ms_ = std::min(store_backoff_ms_ * 2, kStoreRetryMaxMs);
  });
  return true;
}

void Guards::OnStoreOk() {
  if (!store_paused()) return;
  Change([&] {
    store_retry_due_ = false;
    store_until_ms_ = 0;
  });
}

void Guards::Pause(std::string reason) {
  Change([&] { operator_reason_ = reason.empty() ? "paused by operator" : std::move(reason); });
}

void Guards::Resume() {
  Change([&] {
    operator_reason_.reset();
    rate_limit_until_ms_ = 0;
    // The store pause stays shown until a write succeeds; only its wait ends.
    if (store_paused()) store_retry_due_ = true;
    if (circuit_ != Circuit::kClosed) {
      circuit_ = Circuit::kClosed;
      consecutive_failures_ = 0;
      probe_in_flight_ = false;
    }
  });
}

void Guards::BeginShutdown() {
  Change([&] { shutdown_ = true; });
}

void Guards::Tick() {
  Change([&] {
    int64_t now = clock_.MonotonicMs();
    if (circuit_ == Circuit::kOpen && now >= circuit_due_mono_) {
      circuit_ = Circuit::kHalfOpen;
      probe_in_flight_ = false;
    }
    if (rate_limit_until_ms_ != 0 && now >= rate_limit_due_mono_) rate_limit_until_ms_ = 0;
    if (store_paused() && now >= store_due_mono_) store_retry_due_ = true;
    // At midnight the day's spend starts over; the supervisor re-reports it.
    if (budget_until_ms_ != 0 && now >= budget_due_mono_) {
      budget_until_ms_ = 0;
      cost_today_ = 0;
    }
  });
}

bool Guards::MayDispatch() const {
  return Reasons().empty();
}

void Guards::OnDispatched() {
  if (circuit_ != Circuit::kHalfOpen || probe_in_flight_) return;
  Change([&] { probe_in_flight_ = true; });
}

std::vector<proto::PauseReason> Guards::Reasons() const {
  std::vector<proto::PauseReason> out;
  if (shutdown_) out.push_back({"shutdown", "supervisor is stopping", 0});
  if (operator_reason_) out.push_back({"operator", *operator_reason_, 0});
  if (circuit_ == Circuit::kOpen) {
    out.push_back({"circuit",
                   "circuit breaker open after " + std::to_string(consecutive_failures_) +
                       " consecutive failed attempts (the last " +
                       std::string(proto::OutcomeName(last_failure_)) + ")",
                   circuit_until_ms_});
  } else if (circuit_ == Circuit::kHalfOpen && probe_in_flight_) {
    out.push_back({"circuit", "circuit breaker half-open: waiting for the probe attempt", 0});
  }
  if (rate_limit_until_ms_ != 0) {
    out.push_back(
        {"rate_limit", rate_limit_source_ + " reported a rate limit", rate_limit_until_ms_});
  }
  if (store_paused()) out.push_back({"store", store_reason_, store_until_ms_});
  if (budget_until_ms_ != 0) {
    out.push_back({"budget",
                   "daily budget spent: " + FormatUsd(cost_today_) + " of " +
                       FormatUsd(config_.budget.daily_usd),
                   budget_until_ms_});
  }
  return out;
}

std::optional<int64_t> Guards::NextExpiryMonoMs() const {
  std::optional<int64_t> next;
  auto consider = [&](bool set, int64_t t) {
    if (set && (!next || t < *next)) next = t;
  };
  consider(circuit_ == Circuit::kOpen, circuit_due_mono_);
  consider(rate_limit_until_ms_ != 0, rate_limit_due_mono_);
  consider(budget_until_ms_ != 0, budget_due_mono_);
  consider(store_paused() && !store_retry_due_, store_due_mono_);
  return next;
}

std::vector<GuardEvent> Guards::TakeEvents() {
  return std::exchange(events_, {});
}

}  // namespace forge::supervisor
