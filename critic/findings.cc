#include "critic/findings.h"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>

namespace forge::critic {
namespace {

using json = nlohmann::json;

const std::vector<std::string> kOveralls = {"approve", "request_changes", "block"};
const std::vector<std::string> kSeverities = {"sev1", "sev2", "sev3"};
const std::vector<std::string> kCategories = {"correctness", "security",     "tests", "product",
                                              "performance", "architecture", "style", "docs"};

bool OneOf(const std::string& v, const std::vector<std::string>& allowed) {
  return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

Error Bad(const std::string& message) {
  return MakeError(ErrorCode::kDecode, message);
}

// The last line that is not blank and not a closing code fence.
std::string_view LastLine(std::string_view text) {
  while (!text.empty()) {
    size_t end = text.find_last_not_of(" \t\r\n");
    if (end == std::string_view::npos) return {};
    text = text.substr(0, end + 1);
    size_t start = text.rfind('\n');
    std::string_view line = start == std::string_view::npos ? text : text.substr(start + 1);
    size_t first = line.find_first_not_of(" \t");
    line = line.substr(first);
    if (line.rfind("```", 0) != 0) return line;
    text = start == std::string_view::npos ? std::string_view() : text.substr(0, start);
  }
  return {};
}

Result<std::string> StringAt(const json& obj, const char* key, const std::string& where,
                             bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return Bad(where + ": '" + key + "' is missing");
    return std::string();
  }
  if (!it->is_string()) return Bad(where + ": '" + key + "' must be a string");
  return it->get<std::string>();
}

Result<proto::Finding> ParseFinding(const json& j, const std::string& where) {
  if (!j.is_object()) return Bad(where + " must be an object");
  proto::Finding f;
  FORGE_ASSIGN_OR_RETURN(f.severity, StringAt(j, "severity", where, true));
  if (!OneOf(f.severity, kSeverities)) {
    return Bad(where + ": severity '" + f.severity + "' is not one of " + Join(kSeverities));
  }
  FORGE_ASSIGN_OR_RETURN(f.category, StringAt(j, "category", where, true));
  if (!OneOf(f.category, kCategories)) {
    return Bad(where + ": category '" + f.category + "' is not one of " + Join(kCategories));
  }
  FORGE_ASSIGN_OR_RETURN(f.file, StringAt(j, "file", where, false));
  FORGE_ASSIGN_OR_RETURN(f.message, StringAt(j, "message", where, true));
  auto line = j.find("line");
  if (line != j.end() && !line->is_null()) {
    if (!line->is_number_integer()) return Bad(where + ": 'line' must be an integer");
    // Checked as the widest type first: get<int>() would wrap 2^32 + 7 to 7.
    bool fits = line->is_number_unsigned()
                    ? line->get<uint64_t>() <= INT_MAX
                    : line->get<int64_t>() >= INT_MIN && line->get<int64_t>() <= INT_MAX;
    if (!fits) return Bad(where + ": 'line' is out of range");
    f.line = line->get<int>();
  }
  return f;
}

}  // namespace

Result<CriticReport> ParseCriticReport(std::string_view text) {
  std::string_view line = LastLine(text);
  if (line.empty()) return Bad("critic output is empty");
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    std::string shown(line.substr(0, 200));
    return Bad("critic output does not end with a JSON object line: '" + shown + "'");
  }
  CriticReport report;
  FORGE_ASSIGN_OR_RETURN(report.overall, StringAt(j, "overall", "critic report", true));
  if (!OneOf(report.overall, kOveralls)) {
    return Bad("critic report: overall '" + report.overall + "' is not one of " + Join(kOveralls));
  }
  auto findings = j.find("findings");
  if (findings != j.end() && !findings->is_null()) {
    if (!findings->is_array()) return Bad("critic report: 'findings' must be an array");
    int i = 0;
    for (const auto& f : *findings) {
      ++i;
      FORGE_ASSIGN_OR_RETURN(proto::Finding finding,
                             ParseFinding(f, "critic report finding " + std::to_string(i)));
      report.findings.push_back(std::move(finding));
    }
  }
  return report;
}

Decision Decide(const CriticReport& report) {
  auto first = [&](const std::string& severity) -> const proto::Finding* {
    for (const auto& f : report.findings) {
      if (f.severity == severity) return &f;
    }
    return nullptr;
  };
  auto describe = [](const proto::Finding& f) {
    // Built by appending, not `" at " + f.file`: GCC 12 at -O3 reports a false
    // -Wrestrict inside libstdc++ for a literal + std::string (PR 105329).
    std::string out = f.severity;
    out += ' ';
    out += f.category;
    if (!f.file.empty()) {
      out += " at ";
      out += f.file;
      if (f.line > 0) {
        out += ':';
        out += std::to_string(f.line);
      }
    }
    out += ": ";
    out += f.message;
    return out;
  };
  if (report.overall == "block") {
    const proto::Finding* f = report.findings.empty() ? nullptr : &report.findings.front();
    return {false, "critic blocked the change" + (f ? " (" + describe(*f) + ")" : std::string())};
  }
  if (const proto::Finding* f = first("sev1")) return {false, "critic finding " + describe(*f)};
  if (report.overall == "request_changes") {
    if (const proto::Finding* f = first("sev2")) return {false, "critic finding " + describe(*f)};
  }
  return {true, ""};
}

}  // namespace forge::critic
