#include "worker/spec.h"

#include <algorithm>
#include <cctype>

namespace forge::worker {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s, std::string_view chars = " \t\r") {
  size_t b = s.find_first_not_of(chars);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(chars);
  return s.substr(b, e - b + 1);
}

// The lower-cased title of a Markdown heading line, or "" when it is not one.
std::string HeadingTitle(std::string_view line) {
  line = Trim(line);
  size_t hashes = 0;
  while (hashes < line.size() && line[hashes] == '#') ++hashes;
  if (hashes == 0 || hashes > 6 || hashes == line.size() || line[hashes] != ' ') return "";
  std::string_view title = Trim(line.substr(hashes), " \t\r#:");
  return Lower(title);
}

// Offset of the first heading naming a required section, or npos.
size_t FirstSectionOffset(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string title = HeadingTitle(text.substr(pos, end - pos));
    for (const auto& name : RequiredSpecSections()) {
      if (!title.empty() && title == Lower(name)) return pos;
    }
    pos = end + 1;
  }
  return std::string_view::npos;
}

}  // namespace

const std::vector<std::string>& RequiredSpecSections() {
  static const std::vector<std::string> kSections = {
      "Problem", "Acceptance criteria", "Test matrix", "Out of scope", "File pointers"};
  return kSections;
}

std::vector<std::string> MissingSpecSections(std::string_view spec) {
  std::vector<std::string> titles;
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find('\n', pos);
    if (end == std::string_view::npos) end = spec.size();
    std::string title = HeadingTitle(spec.substr(pos, end - pos));
    if (!title.empty()) titles.push_back(title);
    pos = end + 1;
  }
  std::vector<std::string> missing;
  for (const auto& name : RequiredSpecSections()) {
    if (std::find(titles.begin(), titles.end(), Lower(name)) == titles.end()) {
      missing.push_back(name);
    }
  }
  return missing;
}

Result<std::string> ExtractSpec(std::string_view agent_text, size_t max_bytes) {
  auto missing = MissingSpecSections(agent_text);
  if (!missing.empty()) {
    std::string names;
    for (const auto& m : missing) names += (names.empty() ? "" : ", ") + ("'" + m + "'");
    return MakeError(ErrorCode::kInvalid, "the spec is missing required section" +
                                              std::string(missing.size() > 1 ? "s " : " ") + names +
                                              " (a Markdown heading each)");
  }
  std::string_view spec = Trim(agent_text.substr(FirstSectionOffset(agent_text)), " \t\r\n");
  if (spec.size() > max_bytes) {
    return MakeError(ErrorCode::kInvalid, "the spec is " + std::to_string(spec.size()) +
                                              " bytes, over the limit of " +
                                              std::to_string(max_bytes));
  }
  return std::string(spec) + "\n";
}

}  // namespace forge::worker
