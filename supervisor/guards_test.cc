#include "supervisor/guards.h"

#include <gtest/gtest.h>

namespace forge::supervisor {
namespace {

using proto::Outcome;

GuardsConfig Cfg(int failures = 3, int64_t cooldown = 10'000, double daily = 0) {
  GuardsConfig c;
  c.circuit.consecutive_failures = failures;
  c.circuit.cooldown_ms = cooldown;
  c.budget.daily_usd = daily;
  return c;
}

std::vector<std::string> Kinds(const std::vector<GuardEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.kind + ":" + e.pause.kind);
  return out;
}

TEST(CountedSpend, AReportedCostCountsAsItIsAndTokensArePricedOnlyWithoutOne) {
  TokenPrices prices{.input_per_mtok = 2.0, .output_per_mtok = 10.0};
  Spend claude = CountedSpend(0.25, 1'000'000, 1'000'000, prices);
  EXPECT_DOUBLE_EQ(claude.usd, 0.25);
  EXPECT_FALSE(claude.estimated);
  Spend codex = CountedSpend(0, 500'000, 100'000, prices);  // 1.00 + 1.00
  EXPECT_DOUBLE_EQ(codex.usd, 2.0);
  EXPECT_TRUE(codex.estimated);
  // Not priced, nothing used, or nonsense counts: $0, not an estimate.
  EXPECT_FALSE(CountedSpend(0, 500'000, 100'000, TokenPrices{}).estimated);
  EXPECT_EQ(CountedSpend(0, 500'000, 100'000, TokenPrices{}).usd, 0);
  EXPECT_FALSE(CountedSpend(0, 0, 0, prices).estimated);
  Spend negative = CountedSpend(-1, -5, 100'000, prices);
  EXPECT_DOUBLE_EQ(negative.usd, 1.0);
  // A price typed a million times too high stays a finite amount.
  TokenPrices absurd{.input_per_mtok = 1e300, .output_per_mtok = 1e300};
  EXPECT_EQ(CountedSpend(0, INT64_MAX, INT64_MAX, absurd).usd, kMaxEstimatedUsd);
}

TEST(Guards, NothingPausesByDefault) {
  FakeClock clock;
  Guards g(clock, Cfg());
  g.Tick();
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_TRUE(g.Reasons().empty());
  EXPECT_FALSE(g.NextExpiryMonoMs());
  EXPECT_TRUE(g.TakeEvents().empty());
}

TEST(Guards, CircuitOpensHalfOpensAndClosesOnPass) {
  FakeClock clock;
  Guards g(clock, Cfg(3, 10'000));
  g.OnAttemptClosed(Outcome::kFailed);
  g.OnAttemptClosed(Outcome::kRejected);
  g.OnAttemptClosed(Outcome::kRecovered);  // the supervisor's restart: neither counts nor resets
  g.OnAttemptClosed(Outcome::kCancelled);
  EXPECT_TRUE(g.MayDispatch());
  g.OnAttemptClosed(Outcome::kStalled);
  EXPECT_FALSE(g.MayDispatch());
  auto reasons = g.Reasons();
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].kind, "circuit");
  EXPECT_EQ(reasons[0].until_ms, clock.WallMs() + 10'000);
  EXPECT_NE(reasons[0].reason.find("3 consecutive"), std::string::npos) << reasons[0].reason;
  EXPECT_EQ(Kinds(g.TakeEvents()), std::vector<std::string>{"dispatch.paused:circuit"});
  EXPECT_EQ(g.NextExpiryMonoMs(), clock.MonotonicMs() + 10'000);

  clock.Advance(9'999);
  g.Tick();
  EXPECT_FALSE(g.MayDispatch());
  clock.Advance(1);
  g.Tick();
  EXPECT_TRUE(g.MayDispatch());  // half-open: one probe
  EXPECT_EQ(Kinds(g.TakeEvents()), std::vector<std::string>{"dispatch.resumed:circuit"});
  g.OnDispatched();
  EXPECT_FALSE(g.MayDispatch());  // probe in flight
  g.OnAttemptClosed(Outcome::kPassed);
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_EQ(g.consecutive_failures(), 0);
  EXPECT_EQ(Kinds(g.TakeEvents()),
            (std::vector<std::string>{"dispatch.paused:circuit", "dispatch.resumed:circuit"}));
}

TEST(Guards, HalfOpenProbeFailureReopens) {
  FakeClock clock;
  Guards g(clock, Cfg(1, 1000));
  g.OnAttemptClosed(Outcome::kTimedOut);
  EXPECT_FALSE(g.MayDispatch());
  clock.Advance(1000);
  g.Tick();
  g.OnDispatched();
  g.OnAttemptClosed(Outcome::kRecovered);  // nothing about the run: another probe may go
  EXPECT_TRUE(g.MayDispatch());
  g.OnDispatched();
  g.OnAttemptClosed(Outcome::kFailed);
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 1000);
}

// A host that kills every attempt (the OOM killer, an agent that takes its
// worker down) is systemic: without the breaker each task would run
// 1 + max_infra_retries times, the whole queue through.
TEST(Guards, CrashedAndLostWorkersOpenTheCircuit) {
  FakeClock clock;
  Guards g(clock, Cfg(3, 1000));
  g.OnAttemptClosed(Outcome::kCrashed);
  g.OnAttemptClosed(Outcome::kLost);
  EXPECT_TRUE(g.MayDispatch());
  g.OnAttemptClosed(Outcome::kCrashed);
  ASSERT_FALSE(g.MayDispatch());
  EXPECT_EQ(g.Reasons()[0].reason,
            "circuit breaker open after 3 consecutive failed attempts (the last crashed)");
  clock.Advance(1000);
  g.Tick();
  g.OnDispatched();
  g.OnAttemptClosed(Outcome::kLost);  // the probe's worker went silent too
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 1000);
}

TEST(Guards, AProbeEndedWithoutAVerdictLetsTheNextOneGo) {
  FakeClock clock;
  Guards g(clock, Cfg(1, 1000));
  g.OnAttemptClosed(Outcome::kFailed);
  clock.Advance(1000);
  g.Tick();
  EXPECT_TRUE(g.MayDispatch());
  g.OnDispatched();
  EXPECT_FALSE(g.MayDispatch()) << "half-open: one probe at a time";
  g.TakeEvents();
  // Rate-limited, out of space or cancelled: no verdict, nothing counted.
  g.OnAttemptEndedWithoutVerdict();
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_EQ(g.consecutive_failures(), 1);
  EXPECT_EQ(Kinds(g.TakeEvents()), (std::vector<std::string>{"dispatch.resumed:circuit"}));
  g.OnDispatched();
  g.OnAttemptClosed(Outcome::kPassed);
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_EQ(g.consecutive_failures(), 0);
  EXPECT_EQ(Kinds(g.TakeEvents()),
            (std::vector<std::string>{"dispatch.paused:circuit", "dispatch.resumed:circuit"}));
  g.OnAttemptEndedWithoutVerdict();  // no probe out: nothing changes
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_TRUE(g.TakeEvents().empty());
}

TEST(Guards, ZeroThresholdDisablesTheBreaker) {
  FakeClock clock;
  Guards g(clock, Cfg(0));
  for (int i = 0; i < 50; ++i) g.OnAttemptClosed(Outcome::kFailed);
  EXPECT_TRUE(g.MayDispatch());
}

TEST(Guards, RateLimitUntilResetElseDoublingBackoff) {
  FakeClock clock;
  Guards g(clock, Cfg());
  g.OnRateLimited(clock.WallMs() + 5000);
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(g.Reasons()[0].kind, "rate_limit");
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 5000);
  clock.Advance(5000);
  g.Tick();
  EXPECT_TRUE(g.MayDispatch());

  g.OnRateLimited(0);
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 60'000);
  clock.Advance(60'000);
  g.Tick();
  g.OnRateLimited(0);
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 120'000);
  for (int i = 0; i < 10; ++i) {  // each report after the pause before it ended
    clock.Advance(g.Reasons()[0].until_ms - clock.WallMs());
    g.Tick();
    g.OnRateLimited(0);
  }
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + kRateLimitMaxMs);
  g.Resume();
  EXPECT_TRUE(g.MayDispatch());
  g.OnAttemptClosed(Outcome::kPassed);  // resets the backoff
  g.OnRateLimited(0);
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 60'000);
}

// Attempts and reviews already running when the limit came report it too:
// the pause was set for it, so they neither double it (W reports would wait
// 2^W times as long) nor shorten it; only a later reset extends it.
TEST(Guards, ReportsDuringARateLimitPauseNeitherDoubleNorShortenIt) {
  FakeClock clock;
  Guards g(clock, Cfg());
  g.OnRateLimited(0, "critic agent");
  for (int i = 0; i < 3; ++i) g.OnRateLimited(0);
  ASSERT_EQ(g.Reasons().size(), 1u);
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 60'000);
  EXPECT_EQ(g.Reasons()[0].reason, "critic agent reported a rate limit");
  g.OnRateLimited(clock.WallMs() + 5000);  // sooner: kept
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 60'000);
  g.OnRateLimited(clock.WallMs() + 90'000, "agent");  // later: extends
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 90'000);
  EXPECT_EQ(g.Reasons()[0].reason, "agent reported a rate limit");
  clock.Advance(90'000);
  g.Tick();
  EXPECT_TRUE(g.MayDispatch());
  g.OnRateLimited(clock.WallMs() + 400LL * 24 * 3600 * 1000);  // garbled: capped
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + kRateLimitMaxResetMs);
  g.Resume();
  g.OnRateLimited(0);  // after the pause: the limit again, the backoff doubled once
  EXPECT_EQ(g.Reasons()[0].until_ms, clock.WallMs() + 120'000);
}

TEST(Guards, DailyBudgetPausesUntilUtcMidnight) {
  // 2023-11-14T22:13:20Z
  FakeClock clock(1'700'000'000'000);
  Guards g(clock, Cfg(5, 1000, 2.0));
  g.OnCostToday(1.99);
  EXPECT_TRUE(g.MayDispatch());
  g.OnCostToday(2.0);
  EXPECT_FALSE(g.MayDispatch());
  int64_t midnight = Guards::NextUtcMidnight(clock.WallMs());
  EXPECT_EQ(midnight, 1'700'006'400'000);  // 2023-11-15T00:00:00Z
  auto r = g.Reasons();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].kind, "budget");
  EXPECT_EQ(r[0].until_ms, midnight);
  EXPECT_NE(r[0].reason.find("$2.00 of $2.00"), std::string::npos) << r[0].reason;
  g.Resume();  // the operator cannot resume past the budget
  EXPECT_FALSE(g.MayDispatch());
  clock.Advance(midnight - clock.WallMs());
  g.Tick();
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_EQ(Kinds(g.TakeEvents()),
            (std::vector<std::string>{"dispatch.paused:budget", "dispatch.resumed:budget"}));
}

TEST(Guards, RaisingTheBudgetLiftsThePause) {
  FakeClock clock;
  Guards g(clock, Cfg(5, 1000, 1.0));
  g.OnCostToday(1.5);
  EXPECT_FALSE(g.MayDispatch());
  g.Reconfigure(Cfg(5, 1000, 10.0));
  EXPECT_TRUE(g.MayDispatch());
  g.Reconfigure(Cfg(5, 1000, 1.0));
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(Kinds(g.TakeEvents()),
            (std::vector<std::string>{"dispatch.paused:budget", "dispatch.resumed:budget",
                                      "dispatch.paused:budget"}));
  // A reload that leaves it spent changes nothing anyone following sees.
  g.Reconfigure(Cfg(5, 1000, 1.0));
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_TRUE(g.TakeEvents().empty());
}

TEST(Guards, OperatorPauseAndShutdown) {
  FakeClock clock;
  Guards g(clock, Cfg());
  g.Pause("");
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(g.Reasons()[0].reason, "paused by operator");
  g.Pause("deploying");
  EXPECT_EQ(g.Reasons()[0].reason, "deploying");
  g.Resume();
  EXPECT_TRUE(g.MayDispatch());
  g.BeginShutdown();
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(Kinds(g.TakeEvents()),
            (std::vector<std::string>{"dispatch.paused:operator", "dispatch.paused:operator",
                                      "dispatch.resumed:operator", "dispatch.paused:shutdown"}));
}

// Wall-clock steps (NTP, `date -s`) while a pause runs: the pause ends after
// the time it was set for, measured on the monotonic clock.
constexpr int64_t kHour = 3600 * 1000;

TEST(GuardsClockJump, WallStepsNeitherLiftNorHoldTheCircuit) {
  for (int64_t step : {-kHour, kHour}) {
    FakeClock clock;
    Guards g(clock, Cfg(1, 10'000));
    g.OnAttemptClosed(Outcome::kFailed);
    ASSERT_FALSE(g.MayDispatch());
    clock.StepWall(step);
    clock.Advance(9'999);
    g.Tick();
    EXPECT_FALSE(g.MayDispatch()) << "step " << step << ": lifted early";
    EXPECT_EQ(g.NextExpiryMonoMs(), clock.MonotonicMs() + 1);
    clock.Advance(1);
    g.Tick();
    EXPECT_TRUE(g.MayDispatch()) << "step " << step << ": held past its cooldown";
  }
}

TEST(GuardsClockJump, WallStepsNeitherLiftNorHoldARateLimit) {
  for (int64_t step : {-kHour, kHour}) {
    for (bool reported : {true, false}) {
      FakeClock clock;
      Guards g(clock, Cfg());
      // Either the agent's reset time or our 60 s backoff.
      g.OnRateLimited(reported ? clock.WallMs() + 5000 : 0);
      int64_t wait = reported ? 5000 : 60'000;
      clock.StepWall(step);
      clock.Advance(wait - 1);
      g.Tick();
      EXPECT_FALSE(g.MayDispatch()) << "step " << step << " reported " << reported;
      clock.Advance(1);
      g.Tick();
      EXPECT_TRUE(g.MayDispatch()) << "step " << step << " reported " << reported;
    }
  }
}

TEST(GuardsClockJump, WallStepsNeitherLiftNorHoldTheBudget) {
  for (int64_t step : {-kHour, kHour}) {
    // 2023-11-14T22:13:20Z: midnight is 1 h 46 min 40 s away.
    FakeClock clock(1'700'000'000'000);
    Guards g(clock, Cfg(5, 1000, 2.0));
    g.OnCostToday(2.5);
    ASSERT_FALSE(g.MayDispatch());
    int64_t wait = Guards::NextUtcMidnight(clock.WallMs()) - clock.WallMs();
    clock.StepWall(step);
    g.OnCostToday(2.5);  // re-reported after an attempt: keeps its deadline
    clock.Advance(wait - 1);
    g.Tick();
    EXPECT_FALSE(g.MayDispatch()) << "step " << step;
    clock.Advance(1);
    g.Tick();
    EXPECT_TRUE(g.MayDispatch()) << "step " << step;
  }
}

TEST(GuardsStore, FailurePausesWithItsReasonAndTheNextRetry) {
  FakeClock clock;
  Guards g(clock, Cfg());
  EXPECT_TRUE(g.OnStoreFailed("leasing t5: database or disk is full"));
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_TRUE(g.store_paused());
  auto reasons = g.Reasons();
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0].kind, "store");
  EXPECT_EQ(reasons[0].reason, "leasing t5: database or disk is full");
  EXPECT_EQ(reasons[0].until_ms, clock.WallMs() + kStoreRetryInitialMs);
  EXPECT_EQ(g.NextExpiryMonoMs(), clock.MonotonicMs() + kStoreRetryInitialMs);
  auto events = g.TakeEvents();
  ASSERT_EQ(Kinds(events), std::vector<std::string>{"dispatch.paused:store"});
  EXPECT_EQ(events[0].pause.reason, "leasing t5: database or disk is full");
}

TEST(GuardsStore, FailuresBeforeTheRetryIsDueChangeNothing) {
  FakeClock clock;
  Guards g(clock, Cfg());
  ASSERT_TRUE(g.OnStoreFailed("leasing t5: full"));
  (void)g.TakeEvents();
  clock.Advance(500);
  g.Tick();
  EXPECT_FALSE(g.StoreRetryDue());
  // The same fault seen by another write: no new event, no new deadline, no log.
  EXPECT_FALSE(g.OnStoreFailed("emitting child.exited: full"));
  EXPECT_TRUE(g.TakeEvents().empty());
  ASSERT_EQ(g.Reasons().size(), 1u);
  EXPECT_EQ(g.Reasons()[0].reason, "leasing t5: full");
  EXPECT_EQ(g.NextExpiryMonoMs(), clock.MonotonicMs() + 500);
}

TEST(GuardsStore, RetryBackoffDoublesUpToItsMaximum) {
  FakeClock clock;
  Guards g(clock, Cfg());
  ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));
  std::vector<int64_t> waits;
  for (int i = 0; i < 7; ++i) {
    int64_t wait = *g.NextExpiryMonoMs() - clock.MonotonicMs();
    waits.push_back(wait);
    clock.Advance(wait - 1);
    g.Tick();
    EXPECT_FALSE(g.StoreRetryDue()) << "retry " << i;
    clock.Advance(1);
    g.Tick();
    ASSERT_TRUE(g.StoreRetryDue()) << "retry " << i;
    EXPECT_FALSE(g.MayDispatch()) << "a due retry is the caller's write, not a dispatch";
    EXPECT_FALSE(g.NextExpiryMonoMs()) << "nothing to wait for while the retry is due";
    (void)g.TakeEvents();
    EXPECT_TRUE(g.OnStoreFailed("store probe: full"));
    // The retry's failure is shown: a new reason and the next try.
    auto events = g.TakeEvents();
    ASSERT_EQ(Kinds(events), std::vector<std::string>{"dispatch.paused:store"});
    EXPECT_EQ(events[0].pause.reason, "store probe: full");
    EXPECT_EQ(events[0].pause.until_ms,
              clock.WallMs() + *g.NextExpiryMonoMs() - clock.MonotonicMs());
  }
  waits.push_back(*g.NextExpiryMonoMs() - clock.MonotonicMs());
  EXPECT_EQ(waits, (std::vector<int64_t>{1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000}));
}

TEST(GuardsStore, SuccessfulRetryResumes) {
  FakeClock clock;
  Guards g(clock, Cfg());
  ASSERT_TRUE(g.OnStoreFailed("closing attempt 3: full"));
  (void)g.TakeEvents();
  clock.Advance(kStoreRetryInitialMs);
  g.Tick();
  ASSERT_TRUE(g.StoreRetryDue());
  g.OnStoreOk();
  EXPECT_TRUE(g.MayDispatch());
  EXPECT_FALSE(g.store_paused());
  EXPECT_FALSE(g.StoreRetryDue());
  EXPECT_FALSE(g.NextExpiryMonoMs());
  auto events = g.TakeEvents();
  ASSERT_EQ(Kinds(events), std::vector<std::string>{"dispatch.resumed:store"});
  EXPECT_EQ(events[0].pause.reason, "closing attempt 3: full");
  g.OnStoreOk();  // nothing paused: no event
  EXPECT_TRUE(g.TakeEvents().empty());
}

TEST(GuardsStore, BackoffStartsOverOnlyAfterAQuietSpell) {
  FakeClock clock;
  Guards g(clock, Cfg());
  ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));
  clock.Advance(1000);
  g.Tick();
  ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));  // next wait 2 s
  clock.Advance(2000);
  g.Tick();
  g.OnStoreOk();
  // Fails again soon after: the wait goes on doubling (no 1 s flapping).
  clock.Advance(100);
  ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));
  EXPECT_EQ(*g.NextExpiryMonoMs() - clock.MonotonicMs(), 4000);
  clock.Advance(4000);
  g.Tick();
  g.OnStoreOk();
  // After kStoreRetryMaxMs without a failure it starts over at 1 s.
  clock.Advance(kStoreRetryMaxMs);
  ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));
  EXPECT_EQ(*g.NextExpiryMonoMs() - clock.MonotonicMs(), kStoreRetryInitialMs);
}

TEST(GuardsStore, ResumeMakesTheRetryDueButKeepsThePauseUntilAWriteSucceeds) {
  FakeClock clock;
  Guards g(clock, Cfg());
  ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));
  g.Pause("maintenance");
  (void)g.TakeEvents();
  g.Resume();
  EXPECT_TRUE(g.StoreRetryDue());
  EXPECT_FALSE(g.MayDispatch());
  EXPECT_EQ(Kinds(g.TakeEvents()), std::vector<std::string>{"dispatch.resumed:operator"});
  ASSERT_EQ(g.Reasons().size(), 1u);
  EXPECT_EQ(g.Reasons()[0].kind, "store");
  g.OnStoreOk();
  EXPECT_TRUE(g.MayDispatch());
}

TEST(GuardsStore, WallStepsNeitherLiftNorHoldTheRetry) {
  for (int64_t step : {-kHour, kHour}) {
    FakeClock clock;
    Guards g(clock, Cfg());
    ASSERT_TRUE(g.OnStoreFailed("leasing t1: full"));
    clock.StepWall(step);
    clock.Advance(kStoreRetryInitialMs - 1);
    g.Tick();
    EXPECT_FALSE(g.StoreRetryDue()) << "step " << step;
    clock.Advance(1);
    g.Tick();
    EXPECT_TRUE(g.StoreRetryDue()) << "step " << step;
  }
}

}  // namespace
}  // namespace forge::supervisor
