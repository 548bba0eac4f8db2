// Helpers shared by the reliability tests, on top of the integration harness
// (tests/integration/harness.h): a forge.yaml whose agent is any script,
// whole-file reads, running a program and capturing its output.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/process.h"
#include "tests/integration/harness.h"

namespace forge::reliability {

using itest::ForgeOptions;
using json = nlohmann::json;

inline std::string ReliabilityFile(const std::string& name) {
  return std::string(FORGE_RELIABILITY_DIR) + "/" + name;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// The harness's forge.yaml with the fake agent replaced by `agent_script`.
inline std::string ConfigWithAgent(const ForgeOptions& o, const std::string& agent_script) {
  std::string y = itest::ConfigYaml(o);
  std::string from = itest::FakeAgent();
  auto at = y.find(from);
  if (at != std::string::npos) y.replace(at, from.size(), agent_script);
  return y;
}

// Every regular file below dir (recursively), ignoring errors.
inline std::vector<std::string> FilesBelow(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) out.push_back(it->path().string());
  }
  return out;
}

struct RunOutput {
  ExitStatus status;
  std::string output;  // stdout and stderr together
};

// Runs argv to completion (stdin null), capturing stdout+stderr through a file.
inline RunOutput RunCapture(const std::vector<std::string>& argv, const std::string& scratch,
                            int64_t timeout_ms = 60'000) {
  std::string out_path = scratch + "/run-output." + std::to_string(::getpid());
  std::vector<std::string> sh = {"/bin/sh", "-c", "exec \"$@\" >\"$0\" 2>&1", out_path};
  sh.insert(sh.end(), argv.begin(), argv.end());
  SpawnOptions o;
  o.argv = sh;
  o.env = CurrentEnvironment();
  o.stdin_mode = Stdio::kNull;
  o.stdout_mode = Stdio::kNull;
  o.stderr_mode = Stdio::kNull;
  o.die_with_parent = true;
  RunOutput r;
  auto p = Spawn(o);
  if (!p.ok()) {
    r.output = "spawn failed: " + p.error().message;
    return r;
  }
  std::optional<ExitStatus> got;
  itest::WaitFor([&] { return (got = TryReap(p->pid)).has_value(); }, timeout_ms);
  if (!got) {
    ::kill(p->pid, SIGKILL);
    got = Reap(p->pid);
    r.output = "[timed out]\n";
  }
  r.status = *got;
  r.output += ReadFile(out_path);
  std::filesystem::remove(out_path);
  return r;
}

// PRAGMA integrity_check through the read-only store, or the error.
inline std::string Integrity(itest::Forge& f) {
  auto r = f.db().IntegrityCheck();
  return r.ok() ? *r : r.error().message;
}

inline int Mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return st.st_mode & 07777;
}

}  // namespace forge::reliability
