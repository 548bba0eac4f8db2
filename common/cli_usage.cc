#include "common/cli_usage.h"

#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

namespace forge {

std::string UsageError(CLI::App& app, const CLI::ParseError& e) {
  bool no_command =
      dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && app.get_subcommands().empty();
  if (!no_command) return e.what();
  std::string names;
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
  }
  std::vector<std::string> words = app.remaining();
  if (words.empty()) return "no command given (commands: " + names + ")";
  const std::string& word = words.front();
  if (word.starts_with('-')) return "unknown flag '" + word + "'";
  return "unknown command '" + word + "' (commands: " + names + ")";
}

void RefuseEmptyEqualsValues(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") return;
    if (arg.size() > 3 && arg.starts_with("--") && arg.find('=') == arg.size() - 1) {
      throw CLI::ValidationError(std::string(arg.substr(0, arg.size() - 1)), "must not be empty");
    }
  }
}

CLI::Validator IntegerIn(int64_t min, int64_t max) {
  return CLI::Validator(
      [min, max](const std::string& value) -> std::string {
        int64_t n = 0;
        const char* end = value.data() + value.size();
        auto [ptr, ec] = std::from_chars(value.data(), end, n);
        if (!value.empty() && ptr == end && ec == std::errc() && n >= min && n <= max) return "";
        return "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) +
               ", got '" + value + "'";
      },
      "");
}

const CLI::Validator& NonEmpty() {
  static const CLI::Validator validator(
      [](const std::string& value) { return value.empty() ? "must not be empty" : ""; }, "");
  return validator;
}

}  // namespace forge
