#include "common/duration.h"

#include <cstdint>
#include <limits>

namespace forge {
namespace {

constexpr std::string_view kExpected = "expected an integer followed by ms, s, m, h or d";

Error Invalid(std::string_view text, std::string_view why) {
  return MakeError(ErrorCode::kInvalid,
                   "invalid duration '" + std::string(text) + "': " + std::string(why));
}

// Milliseconds per unit, 0 for an unknown unit.
int64_t UnitMs(std::string_view unit) {
  if (unit == "ms") return 1;
  if (unit == "s") return 1000;
  if (unit == "m") return 60 * 1000;
  if (unit == "h") return 60 * 60 * 1000;
  if (unit == "d") return 24 * 60 * 60 * 1000;
  return 0;
}

}  // namespace

Result<Millis> ParseDuration(std::string_view text) {
  if (text.empty()) return Invalid(text, kExpected);
  if (text.front() == '-') return Invalid(text, "durations cannot be negative");
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return Invalid(text, kExpected);
  std::string_view unit = text.substr(digits);
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    int d = text[i] - '0';
    if (value > (std::numeric_limits<int64_t>::max() - d) / 10) return Invalid(text, "too large");
    value = value * 10 + d;
  }
  if (unit.empty()) {
    if (value == 0) return Millis(0);
    return Invalid(text, "missing unit (" + std::string(kExpected) + ")");
  }
  int64_t per = UnitMs(unit);
  if (per == 0) {
    return Invalid(text,
                   "unknown unit '" + std::string(unit) + "' (" + std::string(kExpected) + ")");
  }
  if (value > std::numeric_limits<int64_t>::max() / per) return Invalid(text, "too large");
  return Millis(value * per);
}

std::string FormatDuration(Millis d) {
  int64_t ms = d.count();
  if (ms == 0) return "0";
  std::string sign;
  // |INT64_MIN| does not fit; such a duration cannot come from ParseDuration.
  if (ms < 0) {
    if (ms == std::numeric_limits<int64_t>::min()) return std::to_string(ms) + "ms";
    sign = "-";
    ms = -ms;
  }
  struct Unit {
    int64_t per;
    const char* name;
  };
  static constexpr Unit kUnits[] = {
      {24 * 60 * 60 * 1000, "d"}, {60 * 60 * 1000, "h"}, {60 * 1000, "m"}, {1000, "s"}};
  for (const auto& u : kUnits) {
    if (ms % u.per == 0) return sign + std::to_string(ms / u.per) + u.name;
  }
  return sign + std::to_string(ms) + "ms";
}

}  // namespace forge
