#include "supervisor/config/yaml_reader.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "common/duration.h"
#include "common/process.h"
#include "common/utf8.h"

namespace forge {

int EditDistance(std::string_view a, std::string_view b) {
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diagonal = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string SuggestKey(std::string_view key, const std::vector<std::string_view>& candidates) {
  std::string best;
  int best_distance = 3;
  for (std::string_view candidate : candidates) {
    int d = EditDistance(key, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

namespace {

// yaml-cpp tags quoted scalars "!" and plain ones "?".
bool IsQuoted(const YAML::Node& node) {
  return node.Tag() == "!";
}

std::string Quote(std::string_view text) {
  std::string out = "'";
  out += ShowBytes(text);
  out += "'";
  return out;
}

}  // namespace

std::string DescribeNode(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return IsQuoted(node) ? "string \"" + ShowBytes(node.Scalar()) + "\"" : Quote(node.Scalar());
    default:
      return "nothing";
  }
}

Error YamlReader::ToError(ErrorCode code) const {
  std::string message;
  for (const std::string& problem : problems_) {
    if (!message.empty()) message += '\n';
    message += problem;
  }
  return MakeError(code, std::move(message));
}

std::string YamlReader::Where(const YAML::Mark& mark) const {
  if (mark.is_null() || mark.line < 0) return file_;
  return file_ + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

void YamlReader::Problem(const YAML::Mark& mark, std::string_view message) {
  problems_.push_back(Where(mark) + ": " + std::string(message));
}

void YamlReader::Problem(const YAML::Node& node, std::string_view message) {
  // An empty value ("workers:") is positioned where the parser noticed it
  // ended, often the next line: its key is the better place to point at.
  if (!node.IsDefined() || node.IsNull()) {
    Problem(current_key_, message);
    return;
  }
  Problem(node.Mark(), message);
}

namespace {

// Notes where documents start; the rest of the events are not needed.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

std::string RestOfLine(const std::string& text, int pos) {
  if (pos < 0 || static_cast<size_t>(pos) >= text.size()) return "";
  return text.substr(pos, text.find('\n', pos) - pos);
}

}  // namespace

std::optional<YAML::Node> YamlReader::Parse(const std::string& text) {
  // A raw NUL is in no YAML text (a "\0" escape in a quoted string is, and
  // is refused as a value later): yaml-cpp ends the stream at one or garbles
  // what follows, so a file of NUL bytes passed as an empty config, the
  // defaults, and a plan with one gave a misleading syntax error.
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    YAML::Mark at;
    at.pos = static_cast<int>(nul);
    const size_t newline = text.rfind('\n', nul);
    const size_t line_start = newline == std::string::npos ? 0 : newline + 1;
    at.line =
        static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(nul), '\n'));
    // Characters, not bytes: UTF-8 continuation bytes do not count.
    at.column = static_cast<int>(std::count_if(
        text.begin() + static_cast<long>(line_start), text.begin() + static_cast<long>(nul),
        [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
    Problem(at, "a NUL byte, which no YAML text has (a binary file, or a file saved as UTF-16?)");
    return std::nullopt;
  }
  try {
    YAML::Node doc = YAML::Load(text);
    // YAML::Load ignores documents after the first, so look for a second one,
    // at most one: on some malformed input (a line starting with ',') yaml-cpp
    // 0.7 reports endless empty documents without advancing, which is why
    // YAML::LoadAll must not be used.
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts documents;
    if (parser.HandleNextDocument(documents) && parser.HandleNextDocument(documents) &&
        documents.starts.size() == 2) {
      const YAML::Mark& second = documents.starts[1];
      if (second.pos == documents.starts[0].pos) {
        Problem(second, "YAML syntax error: cannot parse '" +
                            ShowBytes(RestOfLine(text, second.pos)) + "'");
      } else {
        Problem(second, "only one YAML document is allowed; another starts here");
      }
      return std::nullopt;
    }
    return doc;
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp says only "bad file" when its recursion guard stops it.
    Problem(e.mark,
            "YAML nested too deeply (lists or maps hundreds of levels inside one another); "
            "no config or plan nests this far");
    return std::nullopt;
  } catch (const YAML::Exception& e) {
    Problem(e.mark, "YAML syntax error: " + e.msg);
    return std::nullopt;
  }
}

void YamlReader::WrongValue(const YAML::Node& node, const std::string& key, std::string_view want) {
  Problem(node, "key '" + key + "': must be " + std::string(want) + ", got " + DescribeNode(node));
}

std::map<std::string, YAML::Mark> YamlReader::ReadMap(const YAML::Node& node,
                                                      const std::string& key,
                                                      const std::vector<Field>& fields) {
  std::map<std::string, YAML::Mark> present;
  if (node.IsNull()) return present;
  if (!node.IsMap()) {
    if (key.empty()) {
      Problem(node, "the document must be a map of keys, got " + DescribeNode(node));
    } else {
      WrongValue(node, key, "a map");
    }
    return present;
  }
  std::vector<std::string_view> names;
  for (const Field& field : fields) names.push_back(field.name);
  std::map<std::string, YAML::Mark> key_marks;
  for (const auto& entry : node) {
    const YAML::Node& k = entry.first;
    const std::string prefix = key.empty() ? "" : key + ".";
    if (!k.IsScalar()) {
      Problem(k, "keys of " + (key.empty() ? std::string("the document") : "'" + key + "'") +
                     " must be names, got " + DescribeNode(k));
      continue;
    }
    const std::string name = k.Scalar();
    const std::string shown = ShowBytes(name);
    auto field =
        std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.name == name; });
    if (field == fields.end()) {
      std::string message = "unknown key '" + prefix + shown + "'";
      std::string suggestion = SuggestKey(name, names);
      if (!suggestion.empty()) message += " (did you mean '" + suggestion + "'?)";
      Problem(k, message);
      continue;
    }
    if (auto first = key_marks.find(name); first != key_marks.end()) {
      Problem(k, "duplicate key '" + prefix + name + "' (first at " + Where(first->second) + ")");
      continue;
    }
    key_marks[name] = k.Mark();
    present[name] = entry.second.IsNull() ? k.Mark() : entry.second.Mark();
    YAML::Mark outer_key = current_key_;
    current_key_ = k.Mark();
    field->read(entry.second, prefix + name);
    current_key_ = outer_key;
  }
  return present;
}

std::optional<std::string> YamlReader::Scalar(const YAML::Node& node, const std::string& key,
                                              std::string_view want) {
  if (!node.IsScalar()) {
    WrongValue(node, key, want);
    return std::nullopt;
  }
  if (!RefuseNul(node, key)) return std::nullopt;
  return node.Scalar();
}

bool YamlReader::RefuseNul(const YAML::Node& node, const std::string& key) {
  if (node.Scalar().find('\0') == std::string::npos) return true;
  // The value is not shown: it may be a secret (an env value).
  Problem(node, "key '" + key + "': contains a NUL byte");
  return false;
}

std::optional<std::string> YamlReader::PlainScalar(const YAML::Node& node, const std::string& key,
                                                   std::string_view want) {
  if (!node.IsScalar() || IsQuoted(node)) {
    WrongValue(node, key, want);
    return std::nullopt;
  }
  return node.Scalar();
}

void YamlReader::ReadInt(const YAML::Node& node, const std::string& key, int* out, int64_t min,
                         int64_t max) {
  std::string want;
  if (min <= INT32_MIN && max >= INT32_MAX) {
    want = "an integer";
  } else if (max < INT32_MAX) {
    want = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
  } else if (min == 1) {
    want = "a positive integer";
  } else if (min == 0) {
    want = "a non-negative integer";
  } else {
    want = "an integer >= " + std::to_string(min);
  }
  std::optional<std::string> text = PlainScalar(node, key, want);
  if (!text) return;
  int64_t value = 0;
  const char* begin = text->data();
  const char* end = begin + text->size();
  if (begin != end && *begin == '+') ++begin;
  auto [ptr, ec] = std::from_chars(begin, end, value);
  bool integer = ptr == end && (ec == std::errc() || ec == std::errc::result_out_of_range);
  if (integer && (ec != std::errc() || value < INT32_MIN || value > INT32_MAX)) {
    // Past the bound `want` leaves unstated ("must be a positive integer,
    // got '3000000000'" reads as a contradiction): name it.
    WrongValue(node, key, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
    return;
  }
  if (!integer || value < min || value > max) {
    WrongValue(node, key, want);
    return;
  }
  *out = static_cast<int>(value);
}

void YamlReader::ReadDuration(const YAML::Node& node, const std::string& key, int64_t* out_ms,
                              int64_t min_ms, int64_t max_ms) {
  const std::string want = std::string(min_ms > 0 ? "a positive" : "a") +
                           " duration like 250ms, 30s, 10m, 2h or 7d, at most " +
                           FormatDuration(Millis(max_ms));
  std::optional<std::string> text = Scalar(node, key, want);
  if (!text) return;
  Result<Millis> parsed = ParseDuration(*text);
  if (!parsed.ok() || parsed->count() < min_ms || parsed->count() > max_ms) {
    WrongValue(node, key, want);
    return;
  }
  *out_ms = parsed->count();
}

void YamlReader::ReadDouble(const YAML::Node& node, const std::string& key, double* out,
                            double min) {
  const std::string want = min == 0 ? "a non-negative number" : "a number";
  std::optional<std::string> text = PlainScalar(node, key, want);
  if (!text) return;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size() || !std::isfinite(value) ||
      value < min) {
    WrongValue(node, key, want);
    return;
  }
  *out = value;
}

void YamlReader::ReadBool(const YAML::Node& node, const std::string& key, bool* out) {
  std::optional<std::string> text = PlainScalar(node, key, "true or false");
  if (!text) return;
  if (*text == "true" || *text == "True" || *text == "TRUE") {
    *out = true;
  } else if (*text == "false" || *text == "False" || *text == "FALSE") {
    *out = false;
  } else {
    WrongValue(node, key, "true or false");
  }
}

void YamlReader::ReadString(const YAML::Node& node, const std::string& key, std::string* out) {
  if (node.IsNull()) {
    out->clear();
    return;
  }
  if (std::optional<std::string> text = Scalar(node, key, "a string")) *out = *text;
}

void YamlReader::ReadEnum(const YAML::Node& node, const std::string& key, std::string* out,
                          const std::vector<std::string_view>& values) {
  std::string want = "one of ";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) want += i + 1 == values.size() ? " or " : ", ";
    want += values[i];
  }
  std::optional<std::string> text = Scalar(node, key, want);
  if (!text) return;
  if (std::find(values.begin(), values.end(), *text) == values.end()) {
    WrongValue(node, key, want);
    return;
  }
  *out = *text;
}

void YamlReader::ReadStringList(const YAML::Node& node, const std::string& key,
                                std::vector<std::string>* out) {
  if (node.IsNull()) {
    out->clear();
    return;
  }
  if (!node.IsSequence()) {
    WrongValue(node, key, "a list of strings");
    return;
  }
  std::vector<std::string> items;
  bool good = true;
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    if (!item.IsScalar() || item.Scalar().empty()) {
      WrongValue(item, item_key, "a non-empty string");
      good = false;
      continue;
    }
    if (!RefuseNul(item, item_key)) {
      good = false;
      continue;
    }
    items.push_back(item.Scalar());
  }
  if (good) *out = std::move(items);
}

void YamlReader::ReadEnvNames(const YAML::Node& node, const std::string& key,
                              std::vector<std::string>* out) {
  std::vector<std::string> names;
  size_t before = problems_.size();
  ReadStringList(node, key, &names);
  if (problems_.size() != before) return;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!IsEnvName(names[i])) {
      WrongValue(node[i], key + "[" + std::to_string(i) + "]", "an environment variable name");
      return;
    }
  }
  *out = std::move(names);
}

void YamlReader::ReadEnvMap(const YAML::Node& node, const std::string& key,
                            std::map<std::string, std::string>* out) {
  if (node.IsNull()) {
    out->clear();
    return;
  }
  if (!node.IsMap()) {
    WrongValue(node, key, "a map of environment variables");
    return;
  }
  std::map<std::string, std::string> env;
  bool good = true;
  for (const auto& entry : node) {
    const YAML::Node& name = entry.first;
    if (!name.IsScalar() || !IsEnvName(name.Scalar())) {
      Problem(name,
              "key '" + key + "': " + DescribeNode(name) + " is not an environment variable name");
      good = false;
      continue;
    }
    const std::string value_key = key + "." + name.Scalar();
    if (env.count(name.Scalar())) {
      Problem(name, "duplicate key '" + value_key + "'");
      good = false;
      continue;
    }
    std::string value;
    size_t before = problems_.size();
    ReadString(entry.second, value_key, &value);
    if (problems_.size() != before) {
      good = false;
      continue;
    }
    env[name.Scalar()] = value;
  }
  if (good) *out = std::move(env);
}

}  // namespace forge
