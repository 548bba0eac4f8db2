#include "fuzz/entries.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "critic/findings.h"
#include "ctl/plan.h"
#include "proto/codec.h"
#include "proto/control.h"
#include "supervisor/config/config.h"
#include "worker/agent_profile.h"

namespace forge::fuzz {
namespace {

// A broken property: say which, then abort so libFuzzer keeps the input.
[[noreturn]] void Broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz property broken: %s: %s\n", what, detail.c_str());
  std::abort();
}

template <typename Decoded>
void CheckRoundTrip(const Decoded& message, const char* what,
                    Result<Decoded> (*decode)(std::string_view)) {
  std::string again = proto::Encode(message);
  auto decoded = decode(again);
  if (!decoded.ok()) Broken(what, decoded.error().message + " in " + again);
}

}  // namespace

void Codec(std::string_view data) {
  if (auto m = proto::DecodeChildMessage(data); m.ok()) {
    CheckRoundTrip<proto::ChildMessage>(*m, "child message re-encodes", proto::DecodeChildMessage);
  }
  if (auto m = proto::DecodeSupervisorMessage(data); m.ok()) {
    CheckRoundTrip<proto::SupervisorMessage>(*m, "supervisor message re-encodes",
                                             proto::DecodeSupervisorMessage);
  }
  (void)proto::ParseObject(data);
}

void Control(std::string_view data) {
  (void)proto::DecodeControlRequest(data);
  (void)proto::DecodeReply(data);
}

void Config(std::string_view data) {
  auto config = forge::ParseConfig(std::string(data), "fuzz.yaml");
  if (!config.ok()) return;
  std::string dumped = forge::DumpConfig(*config);
  auto again = forge::ParseConfig(dumped, "dumped.yaml");
  if (!again.ok()) Broken("dumped config parses again", again.error().message + "\n" + dumped);
}

void Plan(std::string_view data) {
  (void)ctl::ParsePlan(std::string(data), "/nonexistent-forge-fuzz/plan.yaml");
}

void AgentOutput(std::string_view data) {
  size_t split = data.empty() ? 0 : static_cast<unsigned char>(data[0]) % (data.size() + 1);
  for (auto profile : {worker::Profile::kClaude, worker::Profile::kCodex}) {
    for (int code : {0, 1}) {
      auto parser = worker::MakeOutputParser(profile);
      parser->Feed(data.substr(0, split));
      parser->Feed(data.substr(split));
      proto::Result result;
      ExitStatus status;
      status.exit_code = code;
      parser->Finish(status, worker::TailText(data), result);
      if (result.outcome != "passed" && result.outcome != "failed") {
        Broken("parser outcome is passed or failed", result.outcome);
      }
      if (code != 0 && result.outcome == "passed") Broken("exit 1 never passes", std::string(data));
      (void)parser->FinalText();
    }
  }
}

void CriticReport(std::string_view data) {
  auto report = critic::ParseCriticReport(data);
  if (report.ok()) (void)critic::Decide(*report);
}

Entry EntryByName(std::string_view name) {
  if (name == "codec") return Codec;
  if (name == "control") return Control;
  if (name == "config") return Config;
  if (name == "plan") return Plan;
  if (name == "agent_output") return AgentOutput;
  if (name == "critic") return CriticReport;
  return nullptr;
}

}  // namespace forge::fuzz
