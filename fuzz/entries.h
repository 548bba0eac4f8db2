// Fuzz entry points, shared by the libFuzzer targets (fuzz/*_fuzz.cc) and the
// regression test that replays every corpus and regression input with the
// normal build (tests/reliability/fuzz_regressions_test.cc). Each feeds bytes
// to one parser and abort()s when a property that must hold for every input
// is broken (beyond "does not crash"), so the fuzzer reports it as a crash.
#pragma once

#include <string_view>

namespace forge::fuzz {

// proto::DecodeChildMessage / DecodeSupervisorMessage; a decoded message
// re-encodes to bytes that decode again.
void Codec(std::string_view data);
// proto::DecodeControlRequest / DecodeReply.
void Control(std::string_view data);
// forge::ParseConfig; a parsed config dumps to YAML that parses again.
void Config(std::string_view data);
// ctl::ParsePlan (the plan's path is in a directory that does not exist, so
// relative brief_file entries are read from nowhere).
void Plan(std::string_view data);
// worker OutputParser for claude and codex: the data is fed in two pieces
// split at a point taken from the first byte, then Finish with exit 0 and 1.
void AgentOutput(std::string_view data);
// critic::ParseCriticReport and Decide.
void CriticReport(std::string_view data);

// Name ("codec", "control", "config", "plan", "agent_output", "critic") to
// entry; nullptr for an unknown name.
using Entry = void (*)(std::string_view);
Entry EntryByName(std::string_view name);

}  // namespace forge::fuzz
