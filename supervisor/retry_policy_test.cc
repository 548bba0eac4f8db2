#include "supervisor/retry_policy.h"

#include <gtest/gtest.h>

namespace forge::supervisor {
namespace {

using proto::Outcome;
using proto::TaskState;

constexpr int64_t kNow = 1'700'000'000'000;

UniformRng Fixed(double v) {
  return [v] { return v; };
}

PolicyConfig Cfg() {
  PolicyConfig c;
  c.retry.max_attempts = 3;
  c.retry.backoff_base_ms = 1000;
  c.retry.backoff_max_ms = 10'000;
  c.retry.max_infra_retries = 2;
  return c;
}

TaskRetryState State(int used, int max, int infra = 0, std::string fp = "", double cost = 0) {
  TaskRetryState t;
  t.attempts_used = used;
  t.max_attempts = max;
  t.infra_retries = infra;
  t.last_fingerprint = std::move(fp);
  t.cost_usd = cost;
  return t;
}

AttemptEnd Failure(std::string error, Outcome o = Outcome::kFailed) {
  AttemptEnd e;
  e.outcome = o;
  e.error = std::move(error);
  return e;
}

TEST(RetryPolicy, PassedIsDone) {
  AttemptEnd e;
  e.outcome = Outcome::kPassed;
  e.commit = "abc";
  auto c = Decide({}, e, Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kDone);
  EXPECT_EQ(c.commit, "abc");
  EXPECT_TRUE(c.counted);
  EXPECT_EQ(c.fingerprint, "");
}

TEST(RetryPolicy, FirstFailureCoolsDownWithBaseBackoff) {
  auto c = Decide(State(0, 3), Failure("boom"), Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kCooldown);
  EXPECT_TRUE(c.counted);
  EXPECT_EQ(c.not_before_ms, kNow + 1000);  // jitter 0.5 -> factor 1.0
  EXPECT_FALSE(c.fingerprint.empty());
}

TEST(RetryPolicy, BackoffDoublesCapsAndJitters) {
  RetryConfig r = Cfg().retry;
  EXPECT_EQ(BackoffMs(1, r, Fixed(0.5)), 1000);
  EXPECT_EQ(BackoffMs(2, r, Fixed(0.5)), 2000);
  EXPECT_EQ(BackoffMs(3, r, Fixed(0.5)), 4000);
  EXPECT_EQ(BackoffMs(5, r, Fixed(0.5)), 10'000);     // capped
  EXPECT_EQ(BackoffMs(60, r, Fixed(0.5)), 10'000);    // no overflow
  EXPECT_EQ(BackoffMs(1, r, Fixed(0.0)), 800);        // -20 %
  EXPECT_EQ(BackoffMs(1, r, Fixed(0.999999)), 1199);  // just under +20 %
}

TEST(RetryPolicy, AttemptsExhaustedBlocks) {
  auto c = Decide(State(2, 3), Failure("third"), Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kBlocked);
  EXPECT_NE(c.reason.find("attempts exhausted"), std::string::npos) << c.reason;
}

TEST(RetryPolicy, SameFailureTwiceBlocks) {
  AttemptEnd first = Failure("compile error at /tmp/forge-1234/x.cc:12 (pid 4711)");
  AttemptEnd second = Failure("Compile error at /tmp/forge-9999/y.cc:99 (pid 5)");
  std::string fp = Fingerprint(first);
  EXPECT_EQ(fp, Fingerprint(second));
  auto c = Decide(State(1, 5, 0, fp), second, Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kBlocked);
  EXPECT_EQ(c.reason, "same failure twice");
}

TEST(RetryPolicy, DifferentFailuresKeepRetrying) {
  std::string fp = Fingerprint(Failure("alpha went wrong"));
  auto c = Decide(State(1, 5, 0, fp), Failure("beta went wrong"), Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kCooldown);
  EXPECT_EQ(c.not_before_ms, kNow + 2000);
}

TEST(RetryPolicy, FingerprintCoversOutcomeAndFailingChecks) {
  EXPECT_NE(Fingerprint(Failure("x")), Fingerprint(Failure("x", Outcome::kTimedOut)));
  AttemptEnd a = Failure("", Outcome::kRejected);
  proto::CheckResult check;
  check.name = "make test";
  check.exit_code = 1;
  check.output_tail = "FAIL a";
  a.checks.push_back(check);
  AttemptEnd b = a;
  b.checks[0].output_tail = "FAIL b";
  EXPECT_NE(Fingerprint(a), Fingerprint(b));
  AttemptEnd c = a;
  check.name = "lint";
  check.exit_code = 0;
  check.passed = true;
  check.output_tail = "ok 123";
  c.checks.push_back(check);
  EXPECT_EQ(Fingerprint(a), Fingerprint(c));  // passing checks do not matter
}

TEST(RetryPolicy, NormalizeStripsNoise) {
  EXPECT_EQ(NormalizeFailureText("  Error  at 2026-11-21T15:04:05.123Z\n id DEADBEEFcafe0123 "),
            "error at --t::.z id <id>");
  EXPECT_EQ(NormalizeFailureText("open /tmp/abc/def: no such file"), "open <tmp>: no such file");
  EXPECT_EQ(NormalizeFailureText("commit 0xABCDEF12 vs deadbeef1 vs abcdefg123456"),
            "commit <id> vs <id> vs abcdefg");
}

TEST(RetryPolicy, NonRetryableBlocksAtOnce) {
  AttemptEnd e = Failure("agent binary 'nope' not found");
  e.retryable = false;
  auto c = Decide(State(0, 3), e, Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kBlocked);
  EXPECT_NE(c.reason.find("not retryable"), std::string::npos);
}

// A crash or a lost worker waits out the backoff of its infrastructure
// retry (the second here: base * 2); a supervisor restart's recovery does not.
TEST(RetryPolicy, InfraOutcomesRequeueUncountedUntilBounded) {
  for (Outcome o : {Outcome::kLost, Outcome::kCrashed, Outcome::kRecovered}) {
    auto c = Decide(State(2, 3, 1), Failure("", o), Cfg(), kNow, Fixed(0.5));
    if (o == Outcome::kRecovered) {
      EXPECT_EQ(c.next_state, TaskState::kReady);
    } else {
      EXPECT_EQ(c.next_state, TaskState::kCooldown) << proto::OutcomeName(o);
      EXPECT_EQ(c.not_before_ms, kNow + 2 * Cfg().retry.backoff_base_ms) << proto::OutcomeName(o);
    }
    EXPECT_FALSE(c.counted);
    auto blocked = Decide(State(0, 3, 2), Failure("", o), Cfg(), kNow, Fixed(0.5));
    EXPECT_EQ(blocked.next_state, TaskState::kBlocked) << proto::OutcomeName(o);
    EXPECT_NE(blocked.reason.find("max_infra_retries 2"), std::string::npos) << blocked.reason;
  }
}

TEST(RetryPolicy, WorkerInfraFailureRequeuesUncountedUntilBounded) {
  // The worker found no space for the prompt: failed, but not the task's
  // fault, even when the same failure came before and git said "fatal".
  AttemptEnd e = Failure("cannot write '/s/logs/t1/1.prompt': No space left on device");
  e.infra = true;
  e.retryable = false;
  auto c = Decide(State(2, 3, 1, Fingerprint(e)), e, Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kReady) << c.reason << ": the disk's pause paces it";
  EXPECT_FALSE(c.counted);
  EXPECT_TRUE(c.infra);
  EXPECT_EQ(c.reason, "infrastructure error: requeued without using an attempt");
  auto blocked = Decide(State(0, 3, 2), e, Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(blocked.next_state, TaskState::kBlocked);
  EXPECT_TRUE(blocked.infra);
  EXPECT_NE(blocked.reason.find("max_infra_retries 2"), std::string::npos) << blocked.reason;
  // A plain failure is still counted.
  auto counted = Decide(State(0, 3), Failure("exit 1"), Cfg(), kNow, Fixed(0.5));
  EXPECT_TRUE(counted.counted);
  EXPECT_FALSE(counted.infra);
}

TEST(RetryPolicy, CancelledRequeuesUncountedWithoutLimit) {
  auto c =
      Decide(State(0, 3, 99), Failure("shutdown", Outcome::kCancelled), Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kReady);
  EXPECT_FALSE(c.counted);
}

TEST(RetryPolicy, RateLimitedRequeuesUncounted) {
  AttemptEnd e = Failure("api_error_status 429");
  e.rate_limited = true;
  auto c = Decide(State(2, 3, 0, Fingerprint(e)), e, Cfg(), kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kReady);
  EXPECT_FALSE(c.counted);
}

TEST(RetryPolicy, TaskBudgetBlocks) {
  PolicyConfig cfg = Cfg();
  cfg.task_usd = 1.0;
  auto c = Decide(State(0, 3, 0, "", 1.5), Failure("x"), cfg, kNow, Fixed(0.5));
  EXPECT_EQ(c.next_state, TaskState::kBlocked);
  EXPECT_EQ(c.reason, "task budget exceeded");
}

// A crash after the agent spent is no free retry past the task's budget,
// nor is an agent a stop interrupted after it spent (operations.md: an
// overrun blocks the task "whatever ended its last attempt").
TEST(RetryPolicy, TaskBudgetBlocksAnUncountedRetryToo) {
  PolicyConfig cfg = Cfg();
  cfg.task_usd = 1.0;
  for (Outcome o : {Outcome::kLost, Outcome::kCrashed, Outcome::kRecovered, Outcome::kCancelled}) {
    auto over = Decide(State(0, 3, 0, "", 1.5), Failure("", o), cfg, kNow, Fixed(0.5));
    EXPECT_EQ(over.next_state, TaskState::kBlocked) << proto::OutcomeName(o);
    EXPECT_EQ(over.reason, "task budget exceeded");
    EXPECT_FALSE(over.counted);
    auto under = Decide(State(0, 3, 0, "", 0.5), Failure("", o), cfg, kNow, Fixed(0.5));
    EXPECT_NE(under.next_state, TaskState::kBlocked) << proto::OutcomeName(o);
  }
}

// A rate-limited requeue uses no attempt, so only the budget ends a task
// whose every run meets the limit and still costs.
TEST(RetryPolicy, TaskBudgetBlocksARateLimitedTaskToo) {
  PolicyConfig cfg = Cfg();
  cfg.task_usd = 1.0;
  AttemptEnd e = Failure("api_error_status 429");
  e.rate_limited = true;
  auto under = Decide(State(0, 3, 0, "", 0.5), e, cfg, kNow, Fixed(0.5));
  EXPECT_EQ(under.next_state, TaskState::kReady);
  auto over = Decide(State(0, 3, 0, "", 1.5), e, cfg, kNow, Fixed(0.5));
  EXPECT_EQ(over.next_state, TaskState::kBlocked);
  EXPECT_EQ(over.reason, "task budget exceeded");
  EXPECT_FALSE(over.counted) << "the limit, not the agent, ended it";
}

}  // namespace
}  // namespace forge::supervisor
