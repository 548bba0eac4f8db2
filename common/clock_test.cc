#include "common/clock.h"

#include <gtest/gtest.h>

namespace forge {
namespace {

TEST(FakeClock, StepWallMovesOnlyTheWallClock) {
  FakeClock clock(1'000'000, 50);
  clock.StepWall(-3600'000);
  EXPECT_EQ(clock.WallMs(), 1'000'000 - 3600'000);
  EXPECT_EQ(clock.MonotonicMs(), 50);
  clock.Advance(10);
  EXPECT_EQ(clock.WallMs(), 1'000'000 - 3600'000 + 10);
  EXPECT_EQ(clock.MonotonicMs(), 60);
}

// A cooldown set for 30 s comes due after 30 s of monotonic time, whichever
// way the wall clock steps in between.
TEST(SteadyWall, FollowsTheMonotonicClockAcrossWallSteps) {
  for (int64_t step : {-3600'000LL, 3600'000LL}) {
    FakeClock clock;
    SteadyWall steady(clock);
    EXPECT_EQ(steady.NowMs(), clock.WallMs());
    int64_t due = steady.NowMs() + 30'000;
    clock.StepWall(step);
    EXPECT_LT(steady.NowMs(), due) << "step " << step << ": fired early";
    clock.Advance(29'999);
    EXPECT_LT(steady.NowMs(), due) << "step " << step << ": fired early";
    clock.Advance(1);
    EXPECT_EQ(steady.NowMs(), due) << "step " << step << ": starved";
  }
}

TEST(SystemClock, MonotonicIsClockMonotonic) {
  timespec ts{};
  auto mono_ms = [&] {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
  };
  int64_t before = mono_ms();
  int64_t read = SystemClock::Get().MonotonicMs();
  int64_t after = mono_ms();
  EXPECT_LE(before, read);
  EXPECT_LE(read, after);
}

}  // namespace
}  // namespace forge
