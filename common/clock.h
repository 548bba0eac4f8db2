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
  // Steps the wall clock alone (an NTP step, an operator's `date -s`).
  void SetWall(int64_t ms) { wall_ = ms; }
  void StepWall(int64_t delta_ms) { wall_ += delta_ms; }

 private:
  int64_t wall_;
  int64_t mono_;
};

// A wall time that, once made, advances with the monotonic clock. Deadlines
// that are persisted as wall times (a cooldown's not_before, which must
// survive a restart) are set and compared on this, so a wall-clock step
// while the process runs neither fires nor starves them. It drifts from the
// real wall clock by the size of any step; a restart re-anchors it.
class SteadyWall {
 public:
  explicit SteadyWall(const Clock& clock)
      : clock_(clock), wall_(clock.WallMs()), mono_(clock.MonotonicMs()) {}
  int64_t NowMs() const { return wall_ + (clock_.MonotonicMs() - mono_); }

 private:
  const Clock& clock_;
  int64_t wall_;
  int64_t mono_;
};

// RFC 3339 UTC with milliseconds: "2026-11-21T15:04:05.123Z" (contract for --json).
std::string FormatRfc3339(int64_t wall_ms);

}  // namespace forge
