// Clock jumps, end to end: the supervisor and its children run under
// libfaketime (Debian package `faketime`), whose offset file the test rewrites
// mid-run to step their wall clock by an hour either way while CLOCK_MONOTONIC
// stays real (FAKETIME_DONT_FAKE_MONOTONIC=1). A cooldown must end after its
// backoff, neither at once (forward step) nor an hour late (backward step); a
// running agent must be neither stalled nor timed out, and no child declared
// lost for want of heartbeats. The FakeClock unit tests (common/clock_test.cc,
// supervisor/guards_test.cc) cover the same logic for every guard pause.
#include <gtest/gtest.h>

#include <chrono>

#include "common/sanitizers.h"
#include "tests/reliability/reliability.h"

namespace forge::reliability {
namespace {

using proto::TaskState;

constexpr const char* kFaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
constexpr int64_t kHourMs = 3600 * 1000;

int64_t RealWallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Why the libfaketime tests cannot run here, or "" when they can.
std::string FaketimeUnavailable() {
#ifdef FORGE_ASAN
  return "sanitizer build: libfaketime in LD_PRELOAD comes before the ASan runtime, which ASan "
         "refuses ('ASan runtime does not come first in initial library list'); the normal build "
         "runs this test";
#else
  if (!std::filesystem::exists(kFaketime)) {
    return std::string(kFaketime) +
           " missing: install the Debian package faketime (deploy/setup.sh)";
  }
  return "";
#endif
}

// Runs f's supervisor (and its children) under libfaketime with the wall
// clock offset read from the returned file ("+0" now; "+N"/"-N" seconds),
// CLOCK_MONOTONIC left real.
std::string UnderFaketime(itest::Forge& f, ForgeOptions& o) {
  std::string offset = f.dir() + "/faketime-offset";
  WriteFile(offset, "+0\n");
  o.extra_env["LD_PRELOAD"] = kFaketime;
  o.extra_env["FAKETIME_TIMESTAMP_FILE"] = offset;
  o.extra_env["FAKETIME_NO_CACHE"] = "1";
  o.extra_env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1";
  f.Rewrite(o);
  return offset;
}

class ClockJump : public ::testing::TestWithParam<int64_t> {};

TEST_P(ClockJump, WallStepNeitherFiresNorStarvesTimeouts) {
  if (std::string why = FaketimeUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const int64_t step_ms = GetParam();
  ForgeOptions o;
  o.workers = 2;
  o.backoff_base = "3s";  // a cooldown of 2.4 .. 3.6 s (±20 % jitter)
  o.backoff_max = "3s";
  o.heartbeat_interval = "200ms";
  o.heartbeat_timeout = "1s";
  o.stall_timeout = "10s";
  o.timeout = "20s";
  itest::Forge f(o);
  std::string offset = UnderFaketime(f, o);
  f.Start();

  // A: an agent that runs across the step. B: fails once, then cools down.
  std::string slow = f.Submit("slow_succeed", {{"FAKE_SLEEP", "4"}});
  std::string flaky = f.Submit("fail_then_succeed", {{"FAKE_FAILS", "1"}});
  ASSERT_TRUE(f.WaitState(flaky, TaskState::kCooldown, 30'000)) << f.SupervisorLog();
  auto stepped_at = std::chrono::steady_clock::now();
  WriteFile(offset, (step_ms > 0 ? "+" : "") + std::to_string(step_ms / 1000) + "\n");

  // The cooldown ends after its backoff: not at once, not an hour later.
  ASSERT_TRUE(itest::WaitFor(
      [&] {
        auto t = f.db().GetTask(flaky);
        return t.ok() && t->state != TaskState::kCooldown;
      },
      20'000))
      << "cooldown starved by a wall step of " << step_ms << " ms\n"
      << f.SupervisorLog();
  auto cooled_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - stepped_at)
                       .count();
  // The cooldown began before we saw it (our poll), so allow for that.
  EXPECT_GE(cooled_ms, 1500) << "cooldown fired early after a wall step of " << step_ms << " ms";
  EXPECT_TRUE(f.WaitState(flaky, TaskState::kDone, 30'000)) << f.SupervisorLog();
  EXPECT_TRUE(f.WaitState(slow, TaskState::kDone, 30'000)) << f.SupervisorLog();

  // The slow agent ran once, through the step: no stall, timeout or loss.
  auto attempts = f.Attempts(slow);
  ASSERT_EQ(attempts.size(), 1u) << f.SupervisorLog();
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_TRUE(f.Events("", "child.lost").empty()) << f.SupervisorLog();
  EXPECT_TRUE(f.Events(slow, "child.lost").empty()) << f.SupervisorLog();

  // And the step really happened: events recorded after it carry the stepped
  // wall time (otherwise this test proves nothing).
  auto done = f.Events(flaky, "task.done");
  ASSERT_FALSE(done.empty());
  int64_t skew = done.back().ts_ms - RealWallMs();
  EXPECT_NEAR(static_cast<double>(skew), static_cast<double>(step_ms), 60'000.0)
      << "libfaketime did not step the supervisor's clock";
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

// A not_before persisted further ahead than the longest backoff (what a wall
// clock stepped back before a restart leaves behind, made here by lowering
// backoff_max across the restart) is clamped at startup, not waited out.
TEST(ClockJumpRestart, FarCooldownIsClampedAtStartup) {
  ForgeOptions o;
  o.backoff_base = "1h";
  o.backoff_max = "1h";
  itest::Forge f(o);
  f.Start();
  std::string id = f.Submit("fail_then_succeed", {{"FAKE_FAILS", "1"}});
  ASSERT_TRUE(f.WaitState(id, TaskState::kCooldown, 30'000)) << f.SupervisorLog();
  auto t = f.db().GetTask(id);
  ASSERT_TRUE(t.ok());
  EXPECT_GT(t->not_before_ms, RealWallMs() + 40 * 60 * 1000);  // 48 .. 72 min ahead
  ASSERT_EQ(f.Signal(SIGTERM).exit_code, 0);
  o.backoff_base = "1s";
  o.backoff_max = "1s";
  f.Rewrite(o);
  f.Start();
  EXPECT_TRUE(f.WaitState(id, TaskState::kDone, 30'000)) << f.SupervisorLog();
  EXPECT_NE(f.SupervisorLog().find("further ahead than the longest backoff"), std::string::npos)
      << f.SupervisorLog();
}

// The day's spend is kept by adding each result's cost; a new UTC day must
// start it over from the store, not carry yesterday's sum into the budget.
TEST(ClockJumpBudget, ANewDayStartsTheSpendOver) {
  if (std::string why = FaketimeUnavailable(); !why.empty()) GTEST_SKIP() << why;
  ForgeOptions o;
  o.profile = "claude";
  o.workers = 1;
  o.daily_usd = 1.0;
  itest::Forge f(o);
  std::string offset = UnderFaketime(f, o);
  f.Start();
  std::string yesterday = f.Submit("cost", {{"FAKE_COST", "0.6"}});
  ASSERT_TRUE(f.WaitState(yesterday, TaskState::kDone)) << f.SupervisorLog();
  EXPECT_NEAR(f.Status().value("cost_today_usd", 0.0), 0.6, 1e-9);

  WriteFile(offset, "+" + std::to_string(24 * kHourMs / 1000) + "\n");
  std::string today = f.Submit("cost", {{"FAKE_COST", "0.6"}});
  ASSERT_TRUE(f.WaitState(today, TaskState::kDone)) << f.SupervisorLog();
  auto started = f.Attempts(today).at(0).started_at_ms;
  ASSERT_GT(started - RealWallMs(), 23 * kHourMs) << "libfaketime did not step the clock";
  EXPECT_NEAR(f.Status().value("cost_today_usd", 0.0), 0.6, 1e-9) << f.Status().dump();
  // 0.6 + 0.6 would be over the budget: only a sum carried across days is.
  EXPECT_FALSE(f.PausedBy("budget")) << f.Status().dump();
  std::string next = f.Submit("cost", {{"FAKE_COST", "0.1"}});
  EXPECT_TRUE(f.WaitState(next, TaskState::kDone)) << f.Status().dump();
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(Steps, ClockJump, ::testing::Values(-kHourMs, kHourMs),
                         [](const auto& info) {
                           return info.param < 0 ? std::string("BackOneHour")
                                                 : std::string("ForwardOneHour");
                         });

}  // namespace
}  // namespace forge::reliability
