// Agent profiles: how an agent is invoked and how its output becomes the
// fields of a result message.
//  - command: argv = command + args; only the exit code counts.
//  - claude:  `claude -p --output-format stream-json --verbose [--model M]
//             args...`; stdout is one JSON message a line as the run goes
//             (the agent's output keeps the stall watchdog quiet), ending
//             with the result object (is_error, subtype, result,
//             total_cost_usd, usage.{input,output}_tokens, num_turns,
//             session_id, terminal_reason, api_error_status).
//  - codex:   `codex exec --json [--model M] args... -`; stdout is JSONL
//             events (thread.started, turn.completed{usage}, turn.failed, error).
// The prompt goes to the agent's stdin in every profile.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/process.h"
#include "common/result.h"
#include "proto/messages.h"

namespace forge::worker {

enum class Profile { kCommand, kClaude, kCodex };

// "claude" | "codex" | "command"; anything else is a kConfig error naming it.
Result<Profile> ParseProfile(std::string_view name);

// The agent's argv. kConfig error when the spec has no command.
Result<std::vector<std::string>> BuildArgv(const proto::AgentSpec& spec);

// Reads an agent's stdout as it arrives and fills the result at the end.
class OutputParser {
 public:
  virtual ~OutputParser() = default;
  virtual void Feed(std::string_view stdout_data) = 0;
  // Sets outcome ("passed"/"failed"), error and the profile's fields for an
  // agent that ended on its own with `status`. `tail` is the end of the
  // agent's combined output, quoted in errors.
  virtual void Finish(const ExitStatus& status, std::string_view tail, proto::Result& out) = 0;
  // The agent's final message, valid after Finish: claude's `result`, codex's
  // last agent_message, a command's stdout (its last MiB).
  virtual const std::string& FinalText() const = 0;
};

std::unique_ptr<OutputParser> MakeOutputParser(Profile profile);

// The last `max_bytes` of text, cut at a line start when one is near.
std::string TailText(std::string_view text, size_t max_bytes = 2048);

}  // namespace forge::worker
