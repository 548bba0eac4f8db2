#include "proto/json_fields.h"

#include <cmath>

namespace forge::proto {
namespace {
[[noreturn]] void Mistyped(const json& j, const char* want) {
  throw FieldError("", std::string("must be ") + want + ", got " + j.type_name());
}
}  // namespace

void ReadValue(const json& j, std::string& out) {
  if (!j.is_string()) Mistyped(j, "a string");
  out = j.get<std::string>();
}

void ReadValue(const json& j, bool& out) {
  if (!j.is_boolean()) Mistyped(j, "a boolean");
  out = j.get<bool>();
}

void ReadValue(const json& j, int64_t& out) {
  if (j.is_number_unsigned()) {
    uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) throw FieldError("", "is out of range");
    out = static_cast<int64_t>(u);
    return;
  }
  if (!j.is_number_integer()) Mistyped(j, "an integer");
  out = j.get<int64_t>();
}

void ReadValue(const json& j, int& out) {
  int64_t wide = 0;
  ReadValue(j, wide);
  if (wide < INT32_MIN || wide > INT32_MAX) throw FieldError("", "is out of range");
  out = static_cast<int>(wide);
}

void ReadValue(const json& j, double& out) {
  if (!j.is_number()) Mistyped(j, "a number");
  out = j.get<double>();
}

void ReadValue(const json& j, json& out) { out = j; }

void ReadValue(const json& j, std::map<std::string, std::string>& out) {
  if (!j.is_object()) Mistyped(j, "an object of strings");
  out.clear();
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string value;
    WithPrefix(it.key(), [&] { ReadValue(it.value(), value); });
    out.emplace(it.key(), std::move(value));
  }
}

void RequireObject(const json& j) {
  if (!j.is_object()) Mistyped(j, "an object");
}

std::string LenientString(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t LenientInt(const json& j, const char* key, int64_t fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    return u <= static_cast<uint64_t>(INT64_MAX) ? static_cast<int64_t>(u) : fallback;
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    // [-2^63, 2^63): both bounds are exact doubles.
    if (std::isfinite(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
      return static_cast<int64_t>(d);
    }
  }
  return fallback;
}

}  // namespace forge::proto
