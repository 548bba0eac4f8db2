// Time sources. Wall time (ms since the Unix epoch) is what is recorded;
// the monotonic clock is what every timer and timeout uses, so a wall-clock
// step neither fires nor starves a timeout. Both come through Clock so that
// logic can be tested with FakeClock.
#pragma once

#include <cstdint>
#include <string>

namespace forge {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t WallMs() const = 0;       // CLOCK_REALTIME, ms since epoch
  virtual int64_t MonotonicMs() const = 0;  // CLOCK_MONOTONIC, ms
};

class SystemClock final : public Clock {
 public:
  int64_t WallMs() const override;
  int64_t MonotonicMs() const override;
  static SystemClock& Get();
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t wall_ms = 1'700'000'000'000, int64_t mono_ms = 1'000)
      : wall_(wall_ms), mono_(mono_ms) {}
  int64_t WallMs() const override { return wall_; }
  int64_t MonotonicMs() const override { return mono_; }
  void Advance(int64_t ms) {
    wall_ += ms;
    mono_ += ms;
  }
  void SetWall(int64_t ms) { wall_ = ms; }

 private:
  int64_t wall_;
  int64_t mono_;
};

// RFC 3339 UTC with milliseconds: "2026-11-21T15:04:05.123Z" (contract for --json).
std::string FormatRfc3339(int64_t wall_ms);

}  // namespace forge
