#include "common/clock.h"

#include <gtest/gtest.h>
#include <time.h>

#include <cstdio>
#include <random>
#include <string>

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

TEST(FormatRfc3339, KnownInstants) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(951'782'400'123), "2000-02-29T00:00:00.123Z");
  EXPECT_EQ(FormatRfc3339(1'795'359'845'007), "2026-11-22T15:04:05.007Z");
  EXPECT_EQ(FormatRfc3339(253'402'300'799'999), "9999-12-31T23:59:59.999Z");
  // Past year 9999 the year takes the digits it needs.
  EXPECT_EQ(FormatRfc3339(253'402'300'800'000), "10000-01-01T00:00:00.000Z");
  // Year 70000 would wrap std::chrono::year (16 bits) back into 0000-9999.
  EXPECT_EQ(FormatRfc3339(2'146'819'420'800'000), "70000-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(-62'167'219'200'000), "0000-01-01T00:00:00.000Z");
}

// The civil-date path agrees with gmtime_r over 0000-9999, every field.
TEST(FormatRfc3339, AgreesWithGmtime) {
  auto oracle = [](int64_t wall_ms) {
    int64_t secs = wall_ms / 1000;
    int64_t ms = wall_ms % 1000;
    if (ms < 0) {
      ms += 1000;
      secs -= 1;
    }
    time_t t = static_cast<time_t>(secs);
    tm utc{};
    gmtime_r(&t, &utc);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                  static_cast<int>(ms));
    return std::string(buf);
  };
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> any(-62'167'219'200'000, 253'402'300'799'999);
  for (int i = 0; i < 20000; ++i) {
    int64_t ms = any(rng);
    ASSERT_EQ(FormatRfc3339(ms), oracle(ms)) << ms;
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
