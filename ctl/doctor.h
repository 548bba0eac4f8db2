// forge-ctl doctor: checks a state directory and says, for each problem, the
// command that fixes it. Reads the database read-only; never changes anything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ctl/commands.h"

namespace forge::ctl {

enum class Severity { kOk, kWarn, kRed };
std::string_view SeverityName(Severity s);  // ok | warn | red

struct DoctorFinding {
  std::string check;  // database | replay | attempts | workspaces | config | disk | supervisor
  Severity severity = Severity::kOk;
  std::string message;
  std::string fix;  // a command (or short instruction); empty when nothing to do
};

struct DoctorOptions {
  std::string state_dir;
  std::string config_path;  // empty: <state dir>/../forge.yaml when it exists
  int64_t now_ms = 0;
  // Disk thresholds (tests lower them): red below red_bytes free, warn below warn_bytes.
  uint64_t red_bytes = 512ull << 20;
  uint64_t warn_bytes = 2ull << 30;
  // How long a running supervisor has to answer a `status` request.
  int64_t answer_timeout_ms = 10'000;
};

std::vector<DoctorFinding> RunDoctor(const DoctorOptions& options);
std::string RenderDoctor(const std::vector<DoctorFinding>& findings, const Style& style);
proto::json DoctorJson(const std::vector<DoctorFinding>& findings);

// Exit 1 when any finding is red.
int CmdDoctor(Env& env);

}  // namespace forge::ctl
