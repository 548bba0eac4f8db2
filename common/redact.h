// Secret redaction: values of environment variables whose names contain KEY,
// TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL (case-insensitive) never appear in logs, events,
// `forge-ctl show` or events.jsonl. TOKENS ending a word of the name
// (MAX_TOKENS, MAX_OUTPUT_TOKENS) is a count, not a secret.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace forge {

inline constexpr std::string_view kRedacted = "[redacted]";

bool IsSecretName(std::string_view name);
// The env map with secret values replaced by kRedacted.
std::map<std::string, std::string> RedactEnv(const std::map<std::string, std::string>& env);
// Every occurrence of any secret value (length >= 4) in text replaced by kRedacted.
std::string RedactText(std::string text, const std::vector<std::string>& secret_values);
// The secret values of an env map.
std::vector<std::string> SecretValues(const std::map<std::string, std::string>& env);
// The secret values of an environment as exec takes it ("NAME=VALUE").
std::vector<std::string> SecretValues(const std::vector<std::string>& environment);

}  // namespace forge
