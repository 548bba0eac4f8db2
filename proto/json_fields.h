// Strict JSON field reading for the wire types: a missing or mistyped
// required field throws FieldError naming the field's path ("task.id");
// unknown fields are ignored. Used only inside decoders, which catch
// FieldError and turn it into a forge::Error (exceptions stop at the codec).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace forge::proto {

using json = nlohmann::json;

struct FieldError : std::runtime_error {
  FieldError(std::string path, std::string problem)
      : std::runtime_error("field '" + path + "' " + problem), path(std::move(path)) {}
  std::string path;
};

// ReadValue overloads: one per wire type. Structs provide
// `void ReadValue(const json&, T&)` in their own namespace (found by ADL).
void ReadValue(const json& j, std::string& out);
void ReadValue(const json& j, bool& out);
void ReadValue(const json& j, int64_t& out);
void ReadValue(const json& j, int& out);
void ReadValue(const json& j, double& out);
void ReadValue(const json& j, json& out);
void ReadValue(const json& j, std::map<std::string, std::string>& out);

template <typename T>
void ReadValue(const json& j, std::vector<T>& out);
template <typename T>
void ReadValue(const json& j, std::optional<T>& out);

// A path component: a key, or an array's index.
inline std::string PrefixText(std::string_view key) {
  return std::string(key);
}
inline std::string PrefixText(size_t index) {
  return std::to_string(index);
}

// Rethrows a FieldError from a nested read with `prefix.` in front of its
// path. The prefix becomes a string only then: every field of every message
// is read through here, and building its name each time was a tenth of
// reading a dispatch (bench/README.md, session 34).
template <typename Prefix, typename F>
void WithPrefix(const Prefix& prefix, F&& read) {
  try {
    read();
  } catch (const FieldError& e) {
    const std::string text = PrefixText(prefix);
    std::string inner = e.path.empty() ? text : text + "." + e.path;
    std::string what = e.what();
    // what() is "field '<path>' <problem>"; keep the problem.
    auto pos = what.find("' ");
    throw FieldError(inner, pos == std::string::npos ? what : what.substr(pos + 2));
  }
}

template <typename T>
void ReadValue(const json& j, std::vector<T>& out) {
  if (!j.is_array()) throw FieldError("", std::string("must be an array, got ") + j.type_name());
  out.clear();
  out.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    T item{};
    WithPrefix(i, [&] { ReadValue(j[i], item); });
    out.push_back(std::move(item));
  }
}

template <typename T>
void ReadValue(const json& j, std::optional<T>& out) {
  if (j.is_null()) {
    out.reset();
    return;
  }
  T value{};
  ReadValue(j, value);
  out = std::move(value);
}

// Required field: missing -> "is missing"; wrong type -> "must be ...".
// Keys are string_views: the object's lookup compares them with its keys
// without a strlen each comparison, and most keys a reader asks for are
// absent (left at their defaults).
template <typename T>
void Required(const json& obj, std::string_view key, T& out) {
  auto it = obj.find(key);
  if (it == obj.end()) throw FieldError(std::string(key), "is missing");
  WithPrefix(key, [&] { ReadValue(*it, out); });
}

// Optional field: absent or null leaves `out` as it is.
template <typename T>
void Optional(const json& obj, std::string_view key, T& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  WithPrefix(key, [&] { ReadValue(*it, out); });
}

// The writing side of Optional: sets j[key] unless value is the default
// the reader starts from, so the key's absence reads back the same.
template <typename T>
void PutUnlessDefault(json& j, const char* key, const T& value, const T& default_value) {
  if (!(value == default_value)) j[key] = value;
}

// Requires j to be an object.
void RequireObject(const json& j);

// Lenient readers, for JSON Forge does not write (an agent's output) or may
// not understand (a reply from a supervisor of another version): a missing
// or mistyped field reads as `fallback`, never throws. A number outside
// int64 (3e80, 2^64 - 1) reads as the fallback too: converting it would be
// undefined (found by the agent_output fuzzer); a fraction within range is
// truncated.
std::string LenientString(const json& j, const char* key);
int64_t LenientInt(const json& j, const char* key, int64_t fallback = 0);

// A JSON object from alternating keys and values:
//   JsonObject("attempt_id", a.id, "n", a.n)
// built key by key. nlohmann's initializer-list form, json{{"k", v}, ...},
// copies every pair through a temporary array and took 2.5 times as long
// for a 7-key object (issue 6); the text is the same (keys sort either way).
// Used for what every task builds: its messages and events.
inline void PutPairs(json&) {}
template <typename V, typename... Rest>
void PutPairs(json& j, const char* key, V&& value, Rest&&... rest) {
  j[key] = std::forward<V>(value);
  PutPairs(j, std::forward<Rest>(rest)...);
}
template <typename... KeysAndValues>
json JsonObject(KeysAndValues&&... kv) {
  static_assert(sizeof...(kv) % 2 == 0, "JsonObject takes keys and values in pairs");
  json j = json::object();
  PutPairs(j, std::forward<KeysAndValues>(kv)...);
  return j;
}

}  // namespace forge::proto
