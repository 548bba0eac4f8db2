#include "common/clock.h"

#include <time.h>

#include <chrono>
#include <cstdio>

namespace forge {
namespace {
// Years outside 0000-9999, which the fixed-width path cannot print.
std::string FormatRfc3339Slow(int64_t wall_ms) {
  time_t secs = static_cast<time_t>(wall_ms / 1000);
  int ms = static_cast<int>(wall_ms % 1000);
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, ms);
  return buf;
}

int64_t Read(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}
}  // namespace

int64_t SystemClock::WallMs() const {
  return Read(CLOCK_REALTIME);
}
int64_t SystemClock::MonotonicMs() const {
  return Read(CLOCK_MONOTONIC);
}

SystemClock& SystemClock::Get() {
  static SystemClock clock;
  return clock;
}

std::string FormatRfc3339(int64_t wall_ms) {
  // 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z. Checked on the
  // milliseconds: std::chrono::year is 16 bits and wraps far outside.
  constexpr int64_t kFirst = -62'167'219'200'000, kLast = 253'402'300'799'999;
  if (wall_ms < kFirst || wall_ms > kLast) return FormatRfc3339Slow(wall_ms);
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds{wall_ms}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const int year = static_cast<int>(ymd.year());
  // Every task and event carries several of these: civil-date arithmetic
  // and fixed-width digits, without gmtime_r's lock or snprintf's parsing.
  const int64_t ms_of_day = (t - day).count();
  char buf[] = "0000-00-00T00:00:00.000Z";
  auto put = [&buf](size_t at, int64_t value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10)
      buf[at + static_cast<size_t>(i)] = static_cast<char>('0' + value % 10);
  };
  put(0, year, 4);
  put(5, static_cast<unsigned>(ymd.month()), 2);
  put(8, static_cast<unsigned>(ymd.day()), 2);
  put(11, ms_of_day / 3'600'000, 2);
  put(14, ms_of_day / 60'000 % 60, 2);
  put(17, ms_of_day / 1000 % 60, 2);
  put(20, ms_of_day % 1000, 3);
  return std::string(buf, sizeof buf - 1);
}

}  // namespace forge
