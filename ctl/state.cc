#include "ctl/state.h"

#include <cstdlib>
#include <filesystem>

#include "common/lockfile.h"
#include "common/paths.h"

namespace forge::ctl {

std::string ResolveStateDir(const std::string& flag) {
  std::string dir = flag;
  if (dir.empty()) {
    const char* env = std::getenv("FORGE_STATE_DIR");
    dir = env && *env ? env : ".forge";
  }
  std::error_code ec;
  auto abs = std::filesystem::absolute(dir, ec);
  return ec ? dir : abs.lexically_normal().string();
}

std::string CtlCommand(const std::string& state_dir) {
  if (state_dir == ResolveStateDir("")) return "forge-ctl";
  return "forge-ctl --state-dir " + ShellQuote(state_dir);
}

std::string DbPath(const std::string& state_dir) {
  return state_dir + "/forge.db";
}
std::string EventsJsonlPath(const std::string& state_dir) {
  return state_dir + "/events.jsonl";
}
std::string LockPath(const std::string& state_dir) {
  return state_dir + "/supervisor.lock";
}
std::string LogsDir(const std::string& state_dir) {
  return state_dir + "/logs";
}

std::string AttemptLogPath(const std::string& state_dir, const std::string& task_id, int n) {
  return LogsDir(state_dir) + "/" + task_id + "/" + std::to_string(n) + ".log";
}

std::string ReviewLogPath(const std::string& state_dir, const std::string& task_id, int n) {
  return LogsDir(state_dir) + "/" + task_id + "/" + std::to_string(n) + ".review.log";
}

std::optional<pid_t> SupervisorPid(const std::string& state_dir) {
  return LockFile::Holder(LockPath(state_dir));
}

std::string ShellQuote(const std::string& word) {
  if (word.empty()) return "''";
  bool plain = true;
  for (char c : word) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("_./=:@%+-").find(c) != std::string_view::npos;
    if (!ok) plain = false;
  }
  if (plain) return word;
  std::string out = "'";
  for (char c : word) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::optional<std::string> StartedConfig(const std::string& state_dir) {
  auto text = ReadFile(StartedConfigFile(state_dir));
  if (!text.ok()) return std::nullopt;
  std::string path = text->substr(0, text->find('\n'));
  return path;
}

std::string StartCommand(const std::string& state_dir) {
  std::string config = StartedConfig(state_dir).value_or("");
  return "forge-supervisor start " +
         (config.empty() ? "" : "--config " + ShellQuote(config) + " ") + "--state-dir " +
         ShellQuote(state_dir);
}

}  // namespace forge::ctl
