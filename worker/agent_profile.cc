#include "worker/agent_profile.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "proto/json_fields.h"

namespace forge::worker {
namespace {

using json = nlohmann::json;

// Claude's result object carries the whole answer text; keep plenty.
constexpr size_t kMaxJsonBytes = 32u << 20;
constexpr size_t kMaxErrorText = 600;

std::string Clip(std::string_view s, size_t max = kMaxErrorText) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max)) + "...";
}

std::string LastLine(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  size_t nl = text.rfind('\n');
  return Clip(nl == std::string_view::npos ? text : text.substr(nl + 1), 200);
}

std::string ExitText(const ExitStatus& status) {
  return status.signal != 0 ? "was killed by " + status.ToString()
                            : "exited with " + status.ToString();
}

void SetExit(const ExitStatus& status, proto::Result& out) {
  out.exit_code = status.exit_code;
  out.signal = status.signal;
}

// Agent output is read leniently: a missing or mistyped field is simply absent.
using proto::LenientInt;
using proto::LenientString;
// Sums an agent's counts without overflowing (its numbers are not trusted).
int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? INT64_MAX : INT64_MIN;
}
double NumberField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}
// A spend or a count as the agent reports it, never below 0: a negative one
// (a wrapper's bug) would take from the budgets' sums.
double SpendField(const json& j, const char* key) {
  return std::max(NumberField(j, key), 0.0);
}
int64_t CountField(const json& j, const char* key) {
  return std::max<int64_t>(LenientInt(j, key), 0);
}
bool BoolField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
const json* ObjectField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? &*it : nullptr;
}

constexpr size_t kMaxCommandText = 1u << 20;

class CommandParser final : public OutputParser {
 public:
  void Feed(std::string_view data) override {
    text_.append(data);
    if (text_.size() > 2 * kMaxCommandText) text_.erase(0, text_.size() - kMaxCommandText);
  }
  const std::string& FinalText() const override { return text_; }
  void Finish(const ExitStatus& status, std::string_view tail, proto::Result& out) override {
    SetExit(status, out);
    if (status.success()) {
      out.outcome = "passed";
      return;
    }
    out.outcome = "failed";
    out.error = "agent " + ExitText(status);
    std::string last = LastLine(tail);
    if (!last.empty()) out.error += ": " + last;
  }

 private:
  std::string text_;
};

bool IsResultObject(const json& j) {
  return j.is_object() && (LenientString(j, "type") == "result" || j.contains("is_error"));
}

// The final result object: the whole output as one object (json), the last
// result element of an array (json --verbose), or the last result line
// (stream-json).
std::optional<json> FindClaudeResult(const std::string& out, std::string* parse_error) {
  json whole = json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (IsResultObject(whole)) return whole;
  if (whole.is_array()) {
    for (auto it = whole.rbegin(); it != whole.rend(); ++it) {
      if (IsResultObject(*it)) return *it;
    }
  }
  size_t end = out.size();
  while (end > 0) {
    size_t start = out.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string_view line(out.data() + start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
      json j = json::parse(line, nullptr, false);
      if (IsResultObject(j)) return j;
    }
    end = start == 0 ? 0 : start - 1;
  }
  try {
    json ignored = json::parse(out);
    (void)ignored;
    *parse_error = "no result object in it";
  } catch (const json::exception& e) {
    *parse_error = e.what();
  }
  return std::nullopt;
}

bool MentionsRateLimit(const std::string& s) {
  return s.find("rate_limit") != std::string::npos;
}

// A subscription's usage limit ends claude's run with this result text and
// the reset as epoch seconds after a '|' ("Claude AI usage limit
// reached|1755615600", as claude-code issues #2490 and #6119 quote it), with
// no 429 in the result object. The reset in ms, 0 when it is not there;
// nullopt when the text is not that message.
constexpr std::string_view kUsageLimitText = "Claude AI usage limit reached";
std::optional<int64_t> UsageLimitReset(const std::string& text) {
  if (!text.starts_with(kUsageLimitText)) return std::nullopt;
  const size_t bar = text.find('|', kUsageLimitText.size());
  int64_t seconds = 0;
  if (bar == std::string::npos) return int64_t{0};
  const char* begin = text.data() + bar + 1;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, seconds);
  if (ec != std::errc() || ptr == begin || seconds <= 0 || seconds > 32503680000) return int64_t{0};
  return seconds * 1000;
}

bool MentionsModelTrouble(const std::string& s) {
  return s.find("overloaded") != std::string::npos || s.find("model") != std::string::npos;
}

class ClaudeParser final : public OutputParser {
 public:
  const std::string& FinalText() const override { return text_; }
  void Feed(std::string_view data) override {
    out_.append(data);
    if (out_.size() > 2 * kMaxJsonBytes) out_.erase(0, out_.size() - kMaxJsonBytes);
  }

  void Finish(const ExitStatus& status, std::string_view tail, proto::Result& out) override {
    SetExit(status, out);
    out.outcome = "failed";
    std::string parse_error;
    std::optional<json> r = FindClaudeResult(out_, &parse_error);
    if (!r) {
      out.error = "agent " + ExitText(status) + " without a claude JSON result (" +
                  Clip(parse_error, 200) +
                  "); output tail: " + TailText(out_.empty() ? tail : out_, 1024);
      return;
    }
    text_ = LenientString(*r, "result");
    out.session_id = LenientString(*r, "session_id");
    out.num_turns = LenientInt(*r, "num_turns");
    out.cost_usd = SpendField(*r, "total_cost_usd");
    if (const json* usage = ObjectField(*r, "usage")) {
      // Every input token the model read: claude counts the cached ones
      // apart (most of a long session's input), codex in input_tokens.
      out.tokens_in =
          SaturatingAdd(SaturatingAdd(CountField(*usage, "input_tokens"),
                                      CountField(*usage, "cache_creation_input_tokens")),
                        CountField(*usage, "cache_read_input_tokens"));
      out.tokens_out = CountField(*usage, "output_tokens");
    }
    const bool is_error = BoolField(*r, "is_error");
    const std::string subtype = LenientString(*r, "subtype");
    const std::string reason = LenientString(*r, "terminal_reason");
    const int64_t api_status = LenientInt(*r, "api_error_status");
    out.rate_limited = api_status == 429 || MentionsRateLimit(subtype) || MentionsRateLimit(reason);
    // Only a run that failed: an answer that quotes the message is not one.
    if (auto reset = UsageLimitReset(LenientString(*r, "result"));
        reset && (is_error || !status.success())) {
      out.rate_limited = true;
      out.rate_limit_reset_ms = *reset;
    }
    // Overloaded (529) or any other server-side API error, or the agent saying
    // the model is unavailable: the next attempt may use agent.fallback_model.
    out.model_failure = (api_status >= 500 && api_status <= 599) || MentionsModelTrouble(subtype) ||
                        MentionsModelTrouble(reason);
    const bool ok = !is_error && (subtype.empty() || subtype == "success");
    if (ok && status.success()) {
      out.outcome = "passed";
      return;
    }
    std::string what = "claude reported ";
    what += is_error || !ok ? "an error" : "success";
    std::string details;
    auto add = [&](const std::string& k, const std::string& v) {
      if (v.empty()) return;
      details += (details.empty() ? "" : ", ") + k + " " + v;
    };
    add("subtype", subtype);
    add("terminal_reason", reason);
    add("api_error_status", api_status != 0 ? std::to_string(api_status) : "");
    if (!details.empty()) what += " (" + details + ")";
    if (!status.success()) what += " and " + ExitText(status);
    std::string text = LenientString(*r, "result");
    if (!text.empty()) what += ": " + Clip(text);
    out.error = what;
  }

 private:
  std::string out_;
  std::string text_;
};

class CodexParser final : public OutputParser {
 public:
  const std::string& FinalText() const override { return text_; }
  void Feed(std::string_view data) override {
    partial_.append(data);
    size_t start = 0;
    for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
      Line(std::string_view(partial_).substr(start, nl - start));
    }
    partial_.erase(0, start);
    // A line longer than this is not an event we need; do not grow without bound.
    if (partial_.size() > kMaxJsonBytes) partial_.clear();
  }

  void Finish(const ExitStatus& status, std::string_view tail, proto::Result& out) override {
    if (!partial_.empty()) Line(partial_);
    partial_.clear();
    SetExit(status, out);
    out.session_id = thread_id_;
    out.tokens_in = tokens_in_;
    out.tokens_out = tokens_out_;
    out.num_turns = turns_;
    if (status.success() && failure_.empty()) {
      out.outcome = "passed";
      return;
    }
    out.outcome = "failed";
    if (!failure_.empty()) {
      out.error = "codex reported an error: " + Clip(failure_);
      if (!status.success()) out.error += " (agent " + ExitText(status) + ")";
    } else {
      out.error = "agent " + ExitText(status);
      std::string last = LastLine(tail);
      if (!last.empty()) out.error += ": " + last;
    }
  }

 private:
  void Line(std::string_view line) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) return;  // not an event: codex also prints plain text
    const std::string type = LenientString(j, "type");
    if (type == "thread.started") {
      thread_id_ = LenientString(j, "thread_id");
    } else if (type == "turn.completed") {
      ++turns_;
      if (const json* usage = ObjectField(j, "usage")) {
        tokens_in_ = SaturatingAdd(tokens_in_, CountField(*usage, "input_tokens"));
        tokens_out_ = SaturatingAdd(tokens_out_, CountField(*usage, "output_tokens"));
      }
    } else if (type == "item.completed") {
      const json* item = ObjectField(j, "item");
      if (item && LenientString(*item, "type") == "agent_message")
        text_ = LenientString(*item, "text");
    } else if (type == "turn.failed") {
      ++turns_;
      const json* err = ObjectField(j, "error");
      failure_ = err ? LenientString(*err, "message") : std::string();
      if (failure_.empty()) failure_ = "turn failed";
    } else if (type == "error") {
      failure_ = LenientString(j, "message");
      if (failure_.empty()) failure_ = "error event";
    }
  }

  std::string partial_;
  std::string thread_id_;
  int64_t tokens_in_ = 0;
  int64_t tokens_out_ = 0;
  int64_t turns_ = 0;
  std::string failure_;
  std::string text_;
};

}  // namespace

Result<Profile> ParseProfile(std::string_view name) {
  if (name == "claude") return Profile::kClaude;
  if (name == "codex") return Profile::kCodex;
  if (name == "command") return Profile::kCommand;
  return MakeError(ErrorCode::kConfig, "unknown agent profile '" + std::string(name) +
                                           "' (expected " + proto::AgentProfileChoices() + ")");
}

Result<std::vector<std::string>> BuildArgv(const proto::AgentSpec& spec) {
  FORGE_ASSIGN_OR_RETURN(Profile profile, ParseProfile(spec.profile));
  if (spec.command.empty() || spec.command[0].empty()) {
    return MakeError(ErrorCode::kConfig, "agent profile '" + spec.profile + "' has no command");
  }
  std::vector<std::string> argv = spec.command;
  switch (profile) {
    case Profile::kCommand:
      break;
    case Profile::kClaude:
      // stream-json, not json: json prints nothing until the run ends, so the
      // stall watchdog would kill any claude run longer than stall_timeout.
      // stream-json prints each message as it happens and ends with the same
      // result object; claude requires --verbose with it.
      argv.insert(argv.end(), {"-p", "--output-format", "stream-json", "--verbose"});
      if (!spec.model.empty()) argv.insert(argv.end(), {"--model", spec.model});
      break;
    case Profile::kCodex:
      argv.insert(argv.end(), {"exec", "--json"});
      if (!spec.model.empty()) argv.insert(argv.end(), {"--model", spec.model});
      break;
  }
  argv.insert(argv.end(), spec.args.begin(), spec.args.end());
  // codex exec reads the prompt from stdin when the prompt argument is "-".
  if (profile == Profile::kCodex) argv.push_back("-");
  return argv;
}

std::unique_ptr<OutputParser> MakeOutputParser(Profile profile) {
  switch (profile) {
    case Profile::kClaude:
      return std::make_unique<ClaudeParser>();
    case Profile::kCodex:
      return std::make_unique<CodexParser>();
    case Profile::kCommand:
      break;
  }
  return std::make_unique<CommandParser>();
}

std::string TailText(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::string_view tail = text.substr(text.size() - max_bytes);
  size_t nl = tail.find('\n');
  if (nl != std::string_view::npos && nl < max_bytes / 4) tail.remove_prefix(nl + 1);
  return std::string(tail);
}

}  // namespace forge::worker
