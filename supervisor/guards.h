// Loop-level guards: what may pause all dispatch, each with a kind, a reason
// and an end (proto::PauseReason), and the dispatch.paused / dispatch.resumed
// events emitted when that set changes.
//
//   circuit    consecutive failed/rejected/timed_out/stalled/lost/crashed
//              attempts across tasks reach
//              circuit_breaker.consecutive_failures -> open for
//              cooldown, then half-open: one dispatch goes through as a probe;
//              its pass closes the breaker, its failure reopens it.
//   rate_limit the agent reported a rate limit: paused until its reset, else
//              60 s doubling up to 1 h (reset to 60 s by the next pass).
//   budget     today's (UTC) cost >= budget.daily_usd: paused until the next
//              UTC midnight. Not lifted by `resume`: raise the budget (SIGHUP).
//   operator   forge-ctl pause, until resume.
//   store      a store write on the loop's path failed (disk full, I/O
//              error, locked past the busy timeout): the reason names the
//              operation, the task and SQLite's
//              error; or a worker found no space for an attempt (the
//              reason is its error). The caller retries a write once
//              until_ms has passed (1 s doubling up to 30 s); the first retry
//              that succeeds lifts it. `resume` makes the retry due at once.
//   shutdown   the supervisor is stopping.
//
// until_ms is wall ms, shown to operators. Expiries run on the monotonic
// clock: each pause remembers its monotonic deadline when it is set, so a
// wall-clock step neither lifts it early nor holds it for the size of the
// step. Nothing here is persisted, so a restart starts with no pause, but
// for the operator's: the supervisor keeps it in the store (Store::
// SetOperatorPause) and pauses again with it at its start. The clock is
// injected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "proto/control.h"
#include "supervisor/config/config.h"

namespace forge::supervisor {

struct GuardsConfig {
  CircuitBreakerConfig circuit;
  BudgetConfig budget;
};

struct GuardEvent {
  std::string kind;  // dispatch.paused | dispatch.resumed
  proto::PauseReason pause;
};

inline constexpr int64_t kRateLimitInitialMs = 60 * 1000;
inline constexpr int64_t kRateLimitMaxMs = 60 * 60 * 1000;
// The longest wait an agent's reported reset sets (a subscription's weekly
// limit is the longest there is).
inline constexpr int64_t kRateLimitMaxResetMs = 8LL * 24 * 60 * 60 * 1000;
inline constexpr int64_t kStoreRetryInitialMs = 1000;
inline constexpr int64_t kStoreRetryMaxMs = 30 * 1000;

// The spend one agent run counts toward the budgets: the cost it reported,
// else (it reported none, or a negative one: codex) its tokens at `prices`,
// marked estimated. A negative token count is 0; an estimate is capped at
// kMaxEstimatedUsd (a price typed far too high stays a finite amount).
struct Spend {
  double usd = 0;
  bool estimated = false;
};
inline constexpr double kMaxEstimatedUsd = 1e9;
// "$1.25": what the budgets' messages (the pause, a refused retry) show.
std::string FormatUsd(double usd);
Spend CountedSpend(double reported_usd, int64_t tokens_in, int64_t tokens_out,
                   const TokenPrices& prices);

class Guards {
 public:
  Guards(const Clock& clock, GuardsConfig config);

  void Reconfigure(GuardsConfig config);

  // An attempt closed with this outcome (after review for passes/rejections).
  void OnAttemptClosed(proto::Outcome outcome);
  // An attempt ended saying nothing of the agent's work: a rate limit, no
  // space for its files, an operator's cancel. Counts nothing, but a probe
  // in flight is over, so the next dispatch probes (else half-open would
  // wait for a verdict that never comes, and nothing would dispatch).
  void OnAttemptEndedWithoutVerdict();
  // An agent (`who`: "agent", "critic agent") reported a rate limit;
  // reset_wall_ms 0 when unknown. During the pause, reports from work that
  // was already running change it only to a later reset: no shortening,
  // no doubling of the backoff.
  void OnRateLimited(int64_t reset_wall_ms, std::string_view who = "agent");
  // Today's spend; pauses when it reaches budget.daily_usd.
  void OnCostToday(double usd);
  // A store write on the loop's path failed with an error that pauses
  // dispatch. Starts the store pause, or, when its retry was due, records the
  // retry's failure and schedules the next one (backoff doubled). While the
  // pause is on and no retry is due, further failures are the same fault:
  // nothing changes and false is returned, so the caller need not log them.
  bool OnStoreFailed(std::string reason);
  // The store pause's retry wrote successfully: lifts the pause. The backoff
  // starts over only after kStoreRetryMaxMs without a failure, so a store that
  // accepts a small write and refuses the next (a WAL reusing its space on a
  // full disk) cannot make the pause flap faster than the backoff.
  void OnStoreOk();
  // The store pause is on and its retry is due (after Tick): the caller tries
  // a write now and reports OnStoreOk or OnStoreFailed.
  bool StoreRetryDue() const { return store_paused() && store_retry_due_; }
  bool store_paused() const { return store_until_ms_ != 0; }
  // The operator's pause reason as shown, nullopt when not paused by them.
  const std::optional<std::string>& operator_reason() const { return operator_reason_; }
  void Pause(std::string reason);
  // Lifts operator, circuit and rate-limit pauses (the budget stays) and
  // makes a store pause's retry due now (it lifts when that write succeeds).
  void Resume();
  void BeginShutdown();

  // Applies expiries (open -> half-open, rate limit end, budget at midnight).
  void Tick();
  // True when nothing pauses dispatch (call Tick first).
  bool MayDispatch() const;
  // A dispatch went out; in half-open it is the probe.
  void OnDispatched();

  std::vector<proto::PauseReason> Reasons() const;
  // The earliest monotonic time at which Tick may change something.
  std::optional<int64_t> NextExpiryMonoMs() const;
  // Events since the last call, in order.
  std::vector<GuardEvent> TakeEvents();

  int consecutive_failures() const { return consecutive_failures_; }
  bool budget_paused() const { return budget_until_ms_ > 0; }
  // A rate-limit pause in force now (its end read from the clock, not
  // waiting for Tick).
  bool rate_limited() const {
    return rate_limit_until_ms_ != 0 && clock_.MonotonicMs() < rate_limit_due_mono_;
  }

  // The next UTC midnight after wall_ms.
  static int64_t NextUtcMidnight(int64_t wall_ms);

 private:
  enum class Circuit { kClosed, kOpen, kHalfOpen };
  // Runs a mutation and turns the difference in Reasons() into events.
  template <typename F>
  void Change(F&& mutate);
  // OnCostToday's state change, for use inside a Change.
  void ApplyCostToday(double usd);

  const Clock& clock_;
  GuardsConfig config_;
  Circuit circuit_ = Circuit::kClosed;
  int64_t circuit_until_ms_ = 0;  // wall, shown
  int64_t circuit_due_mono_ = 0;  // when it half-opens
  bool probe_in_flight_ = false;
  int consecutive_failures_ = 0;
  proto::Outcome last_failure_ = proto::Outcome::kFailed;  // shown in the circuit's reason
  int64_t rate_limit_until_ms_ = 0;  // wall, shown; 0 when not limited
  int64_t rate_limit_due_mono_ = 0;
  int64_t rate_limit_backoff_ms_ = kRateLimitInitialMs;  // the wait after the next report
  std::string rate_limit_source_;                        // who reported it, shown
  int64_t budget_until_ms_ = 0;  // wall, shown; 0 when within budget
  int64_t budget_due_mono_ = 0;
  double cost_today_ = 0;
  bool store_retry_due_ = false;
  std::string store_reason_;
  int64_t store_until_ms_ = 0;  // wall, shown: the next retry; 0 when not paused
  int64_t store_due_mono_ = 0;
  int64_t store_backoff_ms_ = kStoreRetryInitialMs;  // the wait after the next failure
  std::optional<int64_t> store_last_failure_mono_;
  std::optional<std::string> operator_reason_;
  bool shutdown_ = false;
  std::vector<GuardEvent> events_;
};

}  // namespace forge::supervisor
