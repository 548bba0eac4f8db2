// Secret redaction: values of environment variables whose names contain KEY,
// TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL (case-insensitive) never appear in logs, events,
// `forge-ctl show` or events.jsonl; except a number under a TOKENS name
// (MAX_TOKENS=4096, CLAUDE_CODE_MAX_OUTPUT_TOKENS=32000), a count of tokens.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace forge {

inline constexpr std::string_view kRedacted = "[redacted]";

bool IsSecretName(std::string_view name);
// Whether name=value is a secret (see above).
bool IsSecret(std::string_view name, std::string_view value);
// The env map with secret values replaced by kRedacted.
std::map<std::string, std::string> RedactEnv(const std::map<std::string, std::string>& env);
// Every occurrence of any secret value (length >= 4) in text replaced by kRedacted.
std::string RedactText(std::string text, const std::vector<std::string>& secret_values);
// The secret values of an env map, each in the forms it reaches a log in:
// as it is; JSON-escaped, as claude's and codex's JSON lines carry a tool's
// output (a PEM key's newlines as \n, a credential file's quotes as \"); and
// each line of 16 bytes or more of a value of several lines (printed on
// their own, or with \r\n).
std::vector<std::string> SecretValues(const std::map<std::string, std::string>& env);
// The secret values of an environment as exec takes it ("NAME=VALUE").
std::vector<std::string> SecretValues(const std::vector<std::string>& environment);

}  // namespace forge
