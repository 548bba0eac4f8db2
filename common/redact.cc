#include "common/redact.h"

#include <algorithm>
#include <cctype>

namespace forge {

namespace {
// "TOKENS" as a word of the name (MAX_TOKENS, CLAUDE_CODE_MAX_OUTPUT_TOKENS)
// is a count of a model's tokens, not a credential. Treating it as a secret
// would scrub every occurrence of its number from logs and events.
bool IsTokenCount(std::string_view upper, size_t token_at) {
  size_t end = token_at + std::string_view("TOKENS").size();
  return upper.substr(token_at, 6) == "TOKENS" &&
         (end == upper.size() || !std::isalpha(static_cast<unsigned char>(upper[end])));
}
}  // namespace

bool IsSecretName(std::string_view name) {
  std::string upper(name);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (std::string_view marker : {"KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"}) {
    if (upper.find(marker) != std::string::npos) return true;
  }
  for (size_t at = upper.find("TOKEN"); at != std::string::npos; at = upper.find("TOKEN", at + 1)) {
    if (!IsTokenCount(upper, at)) return true;
  }
  return false;
}

std::map<std::string, std::string> RedactEnv(const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> out = env;
  for (auto& [name, value] : out) {
    if (IsSecretName(name)) value = std::string(kRedacted);
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

std::vector<std::string> SecretValues(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const auto& [name, value] : env) {
    if (IsSecretName(name) && !value.empty()) out.push_back(value);
  }
  return out;
}

std::vector<std::string> SecretValues(const std::vector<std::string>& environment) {
  std::vector<std::string> out;
  for (const auto& entry : environment) {
    size_t eq = entry.find('=');
    if (eq != std::string::npos && eq + 1 < entry.size() && IsSecretName(entry.substr(0, eq))) {
      out.push_back(entry.substr(eq + 1));
    }
  }
  return out;
}

}  // namespace forge
