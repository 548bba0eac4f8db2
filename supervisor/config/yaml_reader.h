// Strict reading of YAML documents written by people (forge.yaml, plan files).
// Every problem is collected, not just the first, and each names where it is:
// "FILE:LINE:COLUMN: key 'retry.max_attempts': must be a positive integer, got 'x'".
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace forge {

// Levenshtein distance, for "did you mean" suggestions.
int EditDistance(std::string_view a, std::string_view b);

// The closest candidate at edit distance <= 2, or "" when none is that close.
std::string SuggestKey(std::string_view key, const std::vector<std::string_view>& candidates);

// "a map", "a list", "nothing", or the scalar quoted ('x').
std::string DescribeNode(const YAML::Node& node);

// The longest duration a file may give: a year. Longer is a typo, and
// past it deadlines (now + duration) leave the years RFC 3339 can write
// (status's next maintenance run) or overflow int64 milliseconds.
inline constexpr int64_t kMaxConfigDurationMs = 365LL * 24 * 3600 * 1000;
// A retention window (how long to keep what is settled) is no deadline:
// a century, still within RFC 3339's years when taken from now.
inline constexpr int64_t kMaxRetentionMs = 100 * kMaxConfigDurationMs;

class YamlReader {
 public:
  // One key of a map: its name and how to read its value. `key` is the
  // dotted path of the value ("agent.timeout"), for messages.
  struct Field {
    std::string_view name;
    std::function<void(const YAML::Node& value, const std::string& key)> read;
  };

  explicit YamlReader(std::string file) : file_(std::move(file)) {}

  const std::string& file() const { return file_; }
  bool ok() const { return problems_.empty(); }
  const std::vector<std::string>& problems() const { return problems_; }
  // Every problem, one per line, as one Error.
  Error ToError(ErrorCode code) const;

  // Records a problem at a position (printed 1-based), or at the file alone
  // when the position is unknown.
  void Problem(const YAML::Mark& mark, std::string_view message);
  void Problem(const YAML::Node& node, std::string_view message);
  // "FILE:LINE:COLUMN" (or "FILE" when mark is null).
  std::string Where(const YAML::Mark& mark) const;

  // Parses a document; a syntax error is recorded with its line and nullopt
  // returned. An empty document is a null node.
  std::optional<YAML::Node> Parse(const std::string& text);

  // Reads a map: each key must be one of `fields` (unknown keys are reported
  // with a suggestion, duplicates with the first position), and each value is
  // handed to its field's reader. A null node is an empty map. Returns the
  // value position of every key present (empty when node is not a map).
  std::map<std::string, YAML::Mark> ReadMap(const YAML::Node& node, const std::string& key,
                                            const std::vector<Field>& fields);

  // Scalar readers: on a problem they record it and leave *out unchanged.
  void ReadInt(const YAML::Node& node, const std::string& key, int* out, int64_t min,
               int64_t max = INT32_MAX);
  // Non-negative milliseconds from a duration ("30s"); positive when min_ms > 0;
  // at most max_ms.
  void ReadDuration(const YAML::Node& node, const std::string& key, int64_t* out_ms, int64_t min_ms,
                    int64_t max_ms = kMaxConfigDurationMs);
  void ReadDouble(const YAML::Node& node, const std::string& key, double* out, double min);
  void ReadBool(const YAML::Node& node, const std::string& key, bool* out);
  // Any scalar as text; null reads as "".
  void ReadString(const YAML::Node& node, const std::string& key, std::string* out);
  void ReadEnum(const YAML::Node& node, const std::string& key, std::string* out,
                const std::vector<std::string_view>& values);
  // A list of non-empty strings (null: empty list).
  void ReadStringList(const YAML::Node& node, const std::string& key,
                      std::vector<std::string>* out);
  // A list of environment variable names.
  void ReadEnvNames(const YAML::Node& node, const std::string& key, std::vector<std::string>* out);
  // A map of environment variable name -> value (null: empty map).
  void ReadEnvMap(const YAML::Node& node, const std::string& key,
                  std::map<std::string, std::string>* out);

  // Records "key 'KEY': must be WANT, got GOT" at node.
  void WrongValue(const YAML::Node& node, const std::string& key, std::string_view want);

 private:
  // The scalar's text when node is a scalar; otherwise records the problem.
  std::optional<std::string> Scalar(const YAML::Node& node, const std::string& key,
                                    std::string_view want);
  // False, with the problem recorded, when a scalar holds a NUL byte ("\0"
  // in YAML, "\u0000" in JSON): every string may end up in argv or the
  // environment, where a NUL would cut it short unseen (a check `true\0;
  // false` would run `true`).
  bool RefuseNul(const YAML::Node& node, const std::string& key);
  // A plain (unquoted) scalar's text: numbers and booleans must not be quoted.
  std::optional<std::string> PlainScalar(const YAML::Node& node, const std::string& key,
                                         std::string_view want);

  std::string file_;
  std::vector<std::string> problems_;
  // The key whose value is being read, where problems with empty values point.
  YAML::Mark current_key_ = YAML::Mark::null_mark();
};

}  // namespace forge
