#include "common/redact.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace forge {

namespace {
constexpr std::string_view kMarkers[] = {"KEY",      "TOKEN",  "SECRET",
                                         "PASSWORD", "PASSWD", "CREDENTIAL"};

// Whether the upper-cased name holds a marker other than `except`.
bool Marked(const std::string& upper, std::string_view except = {}) {
  for (std::string_view marker : kMarkers) {
    if (marker != except && upper.find(marker) != std::string::npos) return true;
  }
  return false;
}

std::string Upper(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return upper;
}
}  // namespace

bool IsSecretName(std::string_view name) {
  return Marked(Upper(name));
}

bool IsSecret(std::string_view name, std::string_view value) {
  std::string upper = Upper(name);
  if (!Marked(upper)) return false;
  // A number under a name that only TOKENS marks (MAX_TOKENS=4096,
  // CLAUDE_CODE_MAX_OUTPUT_TOKENS=32000) counts a model's tokens: as a
  // secret, every occurrence of that number would be scrubbed from logs and
  // events. NPM_TOKENS=npm_abc... stays a secret.
  bool number = !value.empty() && value.find_first_not_of("0123456789") == std::string_view::npos;
  bool count = number && upper.find("TOKENS") != std::string::npos && !Marked(upper, "TOKEN");
  return !count;
}

std::map<std::string, std::string> RedactEnv(const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> out = env;
  for (auto& [name, value] : out) {
    if (IsSecret(name, value)) value = std::string(kRedacted);
  }
  return out;
}

std::string RedactText(std::string text, const std::vector<std::string>& secret_values) {
  // Longest first, so a secret that contains a shorter one is replaced whole.
  std::vector<std::string> values;
  for (const auto& v : secret_values) {
    if (v.size() >= 4 && v != kRedacted) values.push_back(v);
  }
  std::sort(values.begin(), values.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& v : values) {
    size_t pos = 0;
    while ((pos = text.find(v, pos)) != std::string::npos) {
      text.replace(pos, v.size(), kRedacted);
      pos += kRedacted.size();
    }
  }
  return text;
}

namespace {
void AddSecretForms(std::vector<std::string>& out, std::string_view value) {
  if (value.empty()) return;
  out.emplace_back(value);
  std::string escaped = nlohmann::json(std::string(value))
                            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  escaped = escaped.substr(1, escaped.size() - 2);  // the quotes
  if (escaped != value) out.push_back(std::move(escaped));
  if (value.find('\n') == std::string_view::npos) return;
  for (size_t start = 0; start < value.size();) {
    size_t end = std::min(value.find('\n', start), value.size());
    std::string_view line = value.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() >= 16) out.emplace_back(line);
    start = end + 1;
  }
}
}  // namespace

std::vector<std::string> SecretValues(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const auto& [name, value] : env) {
    if (IsSecret(name, value)) AddSecretForms(out, value);
  }
  return out;
}

std::vector<std::string> SecretValues(const std::vector<std::string>& environment) {
  std::vector<std::string> out;
  for (const auto& entry : environment) {
    size_t eq = entry.find('=');
    if (eq != std::string::npos && eq + 1 < entry.size() &&
        IsSecret(entry.substr(0, eq), std::string_view(entry).substr(eq + 1))) {
      AddSecretForms(out, std::string_view(entry).substr(eq + 1));
    }
  }
  return out;
}

}  // namespace forge
