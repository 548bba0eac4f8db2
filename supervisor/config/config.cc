#include "supervisor/config/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>

#include "common/duration.h"
#include "common/paths.h"
#include "common/utf8.h"
#include "proto/types.h"
#include "supervisor/config/yaml_reader.h"

namespace forge {
namespace {

namespace fs = std::filesystem;
using Node = YAML::Node;
using Marks = std::map<std::string, YAML::Mark>;

// claude and codex run the binary of their name; `command` has no default.
std::vector<std::string> DefaultCommand(const std::string& profile) {
  if (profile == "command") return {};
  return {profile};
}

// After an agent section is read: an absent command follows the profile, and
// the `command` profile must be given one.
void SettleCommand(YamlReader& r, const Node& node, const std::string& key, const Marks& present,
                   const std::string& profile, std::vector<std::string>* command) {
  auto given = present.find("command");
  if (given == present.end()) {
    *command = DefaultCommand(profile);
    if (command->empty()) {
      auto where = present.find("profile");
      r.Problem(where != present.end() ? where->second : node.Mark(),
                "key '" + key + ".command': required when the profile is 'command'");
    }
    return;
  }
  if (command->empty()) r.Problem(given->second, "key '" + key + ".command': must not be empty");
}

void ReadAgent(YamlReader& r, const Node& node, const std::string& key, AgentConfig* a) {
  Marks present = r.ReadMap(
      node, key,
      {
          {"profile",
           [&](auto& v, auto& k) { r.ReadEnum(v, k, &a->profile, proto::AgentProfiles()); }},
          {"command", [&](auto& v, auto& k) { r.ReadStringList(v, k, &a->command); }},
          {"args", [&](auto& v, auto& k) { r.ReadStringList(v, k, &a->args); }},
          {"model", [&](auto& v, auto& k) { r.ReadString(v, k, &a->model); }},
          {"fallback_model", [&](auto& v, auto& k) { r.ReadString(v, k, &a->fallback_model); }},
          {"env", [&](auto& v, auto& k) { r.ReadEnvMap(v, k, &a->env); }},
          {"pass_env", [&](auto& v, auto& k) { r.ReadEnvNames(v, k, &a->pass_env); }},
          {"timeout", [&](auto& v, auto& k) { r.ReadDuration(v, k, &a->timeout_ms, 1); }},
          {"stall_timeout",
           [&](auto& v, auto& k) { r.ReadDuration(v, k, &a->stall_timeout_ms, 1); }},
      });
  SettleCommand(r, node, key, present, a->profile, &a->command);
}

void ReadCriticAgent(YamlReader& r, const Node& node, const std::string& key,
                     std::optional<CriticAgentConfig>* out) {
  if (node.IsNull()) {  // no LLM critic
    out->reset();
    return;
  }
  CriticAgentConfig a;
  Marks present = r.ReadMap(
      node, key,
      {
          {"profile",
           [&](auto& v, auto& k) { r.ReadEnum(v, k, &a.profile, proto::AgentProfiles()); }},
          {"command", [&](auto& v, auto& k) { r.ReadStringList(v, k, &a.command); }},
          {"args", [&](auto& v, auto& k) { r.ReadStringList(v, k, &a.args); }},
          {"model", [&](auto& v, auto& k) { r.ReadString(v, k, &a.model); }},
          {"env", [&](auto& v, auto& k) { r.ReadEnvMap(v, k, &a.env); }},
      });
  if (!node.IsMap()) return;  // already reported
  SettleCommand(r, node, key, present, a.profile, &a.command);
  *out = std::move(a);
}

void ReadCritic(YamlReader& r, const Node& node, const std::string& key, CriticConfig* c) {
  r.ReadMap(node, key,
            {
                {"verify",
                 [&](auto& v, auto& k) {
                   r.ReadStringList(v, k, &c->verify);
                   // `sh -c "  "` exits 0: a blank check would pass every task.
                   for (size_t i = 0; i < c->verify.size() && v.IsSequence(); ++i) {
                     if (c->verify[i].find_first_not_of(" \t\r\n") == std::string::npos) {
                       r.Problem(v[i], "key '" + k + "[" + std::to_string(i) +
                                           "]': a check must not be blank");
                     }
                   }
                 }},
                {"verify_timeout",
                 [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->verify_timeout_ms, 1); }},
                {"agent", [&](auto& v, auto& k) { ReadCriticAgent(r, v, k, &c->agent); }},
            });
}

// Where to point at for a rule between two keys: the later one if given.
YAML::Mark MarkOf(const Marks& present, const std::string& preferred, const std::string& other,
                  const Node& section) {
  if (auto it = present.find(preferred); it != present.end()) return it->second;
  if (auto it = present.find(other); it != present.end()) return it->second;
  return section.Mark();
}

void ReadRetry(YamlReader& r, const Node& node, const std::string& key, RetryConfig* c) {
  size_t before = r.problems().size();
  Marks present = r.ReadMap(
      node, key,
      {
          {"max_attempts", [&](auto& v, auto& k) { r.ReadInt(v, k, &c->max_attempts, 1); }},
          {"backoff_base", [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->backoff_base_ms, 0); }},
          {"backoff_max", [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->backoff_max_ms, 0); }},
          {"max_infra_retries",
           [&](auto& v, auto& k) { r.ReadInt(v, k, &c->max_infra_retries, 0); }},
      });
  if (r.problems().size() == before && c->backoff_max_ms < c->backoff_base_ms) {
    r.Problem(MarkOf(present, "backoff_max", "backoff_base", node),
              "key '" + key + ".backoff_max': must be at least backoff_base (" +
                  FormatDuration(Millis(c->backoff_max_ms)) + " < " +
                  FormatDuration(Millis(c->backoff_base_ms)) + ")");
  }
}

void ReadWatchdog(YamlReader& r, const Node& node, const std::string& key, WatchdogConfig* c) {
  size_t before = r.problems().size();
  Marks present = r.ReadMap(
      node, key,
      {
          {"heartbeat_interval",
           [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->heartbeat_interval_ms, 1); }},
          {"heartbeat_timeout",
           [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->heartbeat_timeout_ms, 1); }},
          {"kill_grace", [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->kill_grace_ms, 0); }},
          {"shutdown_grace",
           [&](auto& v, auto& k) { r.ReadDuration(v, k, &c->shutdown_grace_ms, 0); }},
          {"workspace_lock_wait",
           [&](auto& v, auto& k) {
             r.ReadDuration(v, k, &c->workspace_lock_wait_ms, 1, kMaxWorkspaceLockWaitMs);
           }},
      });
  if (r.problems().size() == before && c->heartbeat_timeout_ms <= c->heartbeat_interval_ms) {
    r.Problem(MarkOf(present, "heartbeat_timeout", "heartbeat_interval", node),
              "key '" + key + ".heartbeat_timeout': must be greater than heartbeat_interval (" +
                  FormatDuration(Millis(c->heartbeat_timeout_ms)) +
                  " <= " + FormatDuration(Millis(c->heartbeat_interval_ms)) + ")");
  }
}

void ReadCircuitBreaker(YamlReader& r, const Node& node, const std::string& key,
                        CircuitBreakerConfig* b) {
  r.ReadMap(node, key,
            {
                {"consecutive_failures",
                 [&](auto& v, auto& k) { r.ReadInt(v, k, &b->consecutive_failures, 1); }},
                {"cooldown", [&](auto& v, auto& k) { r.ReadDuration(v, k, &b->cooldown_ms, 0); }},
            });
}

void ReadBudget(YamlReader& r, const Node& node, const std::string& key, BudgetConfig* b) {
  r.ReadMap(
      node, key,
      {
          {"task_usd", [&](auto& v, auto& k) { r.ReadDouble(v, k, &b->task_usd, 0); }},
          {"daily_usd", [&](auto& v, auto& k) { r.ReadDouble(v, k, &b->daily_usd, 0); }},
          {"token_prices",
           [&](auto& v, auto& k) {
             TokenPrices* p = &b->token_prices;
             r.ReadMap(
                 v, k,
                 {
                     {"input",
                      [&](auto& v2, auto& k2) { r.ReadDouble(v2, k2, &p->input_per_mtok, 0); }},
                     {"output",
                      [&](auto& v2, auto& k2) { r.ReadDouble(v2, k2, &p->output_per_mtok, 0); }},
                 });
           }},
      });
}

void ReadSync(YamlReader& r, const Node& node, const std::string& key, SyncConfig* s) {
  Marks present =
      r.ReadMap(node, key,
                {
                    {"remote", [&](auto& v, auto& k) { r.ReadString(v, k, &s->remote); }},
                    {"branch", [&](auto& v, auto& k) { r.ReadString(v, k, &s->branch); }},
                });
  // A runner syncs only with both: one alone would be silently ignored.
  if (s->remote.empty() != s->branch.empty()) {
    const char* missing = s->remote.empty() ? "remote" : "branch";
    const char* given = s->remote.empty() ? "branch" : "remote";
    r.Problem(MarkOf(present, given, missing, node),
              "key '" + key + "." + missing + "': required with " + key + "." + given);
  }
}

void ReadMaintenance(YamlReader& r, const Node& node, const std::string& key,
                     MaintenanceConfig* m) {
  size_t before = r.problems().size();
  Marks present = r.ReadMap(
      node, key,
      {
          // 0: maintenance off (no pass is ever due; status says "disabled").
          {"interval", [&](auto& v, auto& k) { r.ReadDuration(v, k, &m->interval_ms, 0); }},
          {"keep",
           [&](auto& v, auto& k) { r.ReadDuration(v, k, &m->keep_ms, 1, kMaxRetentionMs); }},
          {"keep_logs",
           [&](auto& v, auto& k) { r.ReadDuration(v, k, &m->keep_logs_ms, 1, kMaxRetentionMs); }},
          {"timeout", [&](auto& v, auto& k) { r.ReadDuration(v, k, &m->timeout_ms, 1); }},
      });
  // Passes back to back (a "10ms" typed for "10m") wrote three events each,
  // gigabytes a day, and kept a worker and the loop busy.
  if (r.problems().size() == before && m->interval_ms > 0 &&
      m->interval_ms < kMinMaintenanceIntervalMs) {
    r.Problem(MarkOf(present, "interval", "interval", node),
              "key '" + key + ".interval': must be 0 (off) or at least " +
                  FormatDuration(Millis(kMinMaintenanceIntervalMs)) + ", got " +
                  FormatDuration(Millis(m->interval_ms)));
  }
}

void ReadDatabase(YamlReader& r, const Node& node, const std::string& key, DatabaseConfig* d) {
  r.ReadMap(node, key,
            {
                {"synchronous",
                 [&](auto& v, auto& k) {
                   r.ReadEnum(v, k, &d->synchronous, {"normal", "full"});
                 }},
            });
}

void ReadDocument(YamlReader& r, const Node& doc, Config* c) {
  r.ReadMap(
      doc, "",
      {
          {"workers", [&](auto& v, auto& k) { r.ReadInt(v, k, &c->workers, 1, 256); }},
          {"critics", [&](auto& v, auto& k) { r.ReadInt(v, k, &c->critics, 1, 64); }},
          {"agent", [&](auto& v, auto& k) { ReadAgent(r, v, k, &c->agent); }},
          {"critic", [&](auto& v, auto& k) { ReadCritic(r, v, k, &c->critic); }},
          {"retry", [&](auto& v, auto& k) { ReadRetry(r, v, k, &c->retry); }},
          {"watchdog", [&](auto& v, auto& k) { ReadWatchdog(r, v, k, &c->watchdog); }},
          {"circuit_breaker",
           [&](auto& v, auto& k) { ReadCircuitBreaker(r, v, k, &c->circuit_breaker); }},
          {"budget", [&](auto& v, auto& k) { ReadBudget(r, v, k, &c->budget); }},
          {"sync", [&](auto& v, auto& k) { ReadSync(r, v, k, &c->sync); }},
          {"maintenance", [&](auto& v, auto& k) { ReadMaintenance(r, v, k, &c->maintenance); }},
          {"database", [&](auto& v, auto& k) { ReadDatabase(r, v, k, &c->database); }},
      });
}

// ---- dump ----

void EmitString(YAML::Emitter& out, const std::string& key, const std::string& value) {
  out << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << value;
}

void EmitList(YAML::Emitter& out, const std::string& key, const std::vector<std::string>& items) {
  out << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const std::string& item : items) out << YAML::DoubleQuoted << item;
  out << YAML::EndSeq;
}

void EmitEnv(YAML::Emitter& out, const std::string& key,
             const std::map<std::string, std::string>& env) {
  out << YAML::Key << key << YAML::Value;
  if (env.empty()) {
    out << YAML::Flow;
  }
  out << YAML::BeginMap;
  for (const auto& [name, value] : env) EmitString(out, name, value);
  out << YAML::EndMap;
}

void EmitDuration(YAML::Emitter& out, const std::string& key, int64_t ms) {
  out << YAML::Key << key << YAML::Value << FormatDuration(Millis(ms));
}

// The shortest text that reads back as the same double.
void EmitDouble(YAML::Emitter& out, const std::string& key, double value) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out << YAML::Key << key << YAML::Value << std::string(buffer, ec == std::errc() ? end : buffer);
}

void EmitAgent(YAML::Emitter& out, const AgentConfig& a) {
  out << YAML::Key << "agent" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "profile" << YAML::Value << a.profile;
  EmitList(out, "command", a.command);
  EmitList(out, "args", a.args);
  EmitString(out, "model", a.model);
  EmitString(out, "fallback_model", a.fallback_model);
  EmitEnv(out, "env", a.env);
  EmitList(out, "pass_env", a.pass_env);
  EmitDuration(out, "timeout", a.timeout_ms);
  EmitDuration(out, "stall_timeout", a.stall_timeout_ms);
  out << YAML::EndMap;
}

void EmitCritic(YAML::Emitter& out, const CriticConfig& c) {
  out << YAML::Key << "critic" << YAML::Value << YAML::BeginMap;
  EmitList(out, "verify", c.verify);
  EmitDuration(out, "verify_timeout", c.verify_timeout_ms);
  out << YAML::Key << "agent" << YAML::Value;
  if (!c.agent) {
    out << YAML::Null;
  } else {
    out << YAML::BeginMap;
    out << YAML::Key << "profile" << YAML::Value << c.agent->profile;
    EmitList(out, "command", c.agent->command);
    EmitList(out, "args", c.agent->args);
    EmitString(out, "model", c.agent->model);
    EmitEnv(out, "env", c.agent->env);
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

}  // namespace

Result<Config> ParseConfig(const std::string& text, const std::string& path) {
  // yaml-cpp would read other bytes as U+FFFD: a check or an env value that
  // is not what the operator wrote.
  if (size_t bad = FindInvalidUtf8(text); bad != std::string::npos) {
    return MakeError(ErrorCode::kConfig, path + ": not UTF-8 (" + DescribeInvalidUtf8(text, bad) +
                                             "); save it as UTF-8");
  }
  YamlReader reader(path);
  Config config;
  config.path = path;
  std::optional<YAML::Node> doc = reader.Parse(text);
  if (doc) ReadDocument(reader, *doc, &config);
  if (!reader.ok()) return reader.ToError(ErrorCode::kConfig);
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  std::error_code ec;
  fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) {
    return MakeError(ErrorCode::kNotFound, "config file " + path + ": not found");
  }
  if (fs::is_directory(status)) {
    return MakeError(ErrorCode::kConfig, "config file " + path + ": is a directory");
  }
  // A FIFO's open waits for a writer, and SIGHUP reads the config on the
  // supervisor's loop: a config replaced by one hung the supervisor.
  if (!fs::is_regular_file(status)) {
    return MakeError(ErrorCode::kConfig,
                     "config file " + path + ": not a regular file (a FIFO or a device)");
  }
  // ReadFile checks the type again on the file it opened: one swapped in
  // since the stat above is refused there, not waited on.
  auto text = ReadFile(path, kMaxConfigBytes);
  if (!text.ok() && text.error().code == ErrorCode::kInvalid) {
    return MakeError(ErrorCode::kConfig, "config file " + text.error().message);
  }
  if (!text.ok()) return MakeError(ErrorCode::kIo, "config file: " + text.error().message);
  FORGE_ASSIGN_OR_RETURN(Config config, ParseConfig(*text, path));
  // An agent named by an absolute path that is not an executable file would
  // fail every attempt "not retryable", one after another, until the circuit
  // breaker stopped dispatch: start, check-config, doctor and a reload
  // (which keeps the running config) refuse it here. A relative path is the
  // workspace's, and a bare name is looked up in the agent's PATH, both by
  // the worker at each dispatch (ConfigWarnings warns of a bare name the
  // PATH lacks).
  auto check = [&](const std::string& key, const std::vector<std::string>& command) -> Status {
    if (command.empty() || command[0].empty() || command[0][0] != '/') return Status::Ok();
    if (IsExecutableFile(command[0])) return Status::Ok();
    return MakeError(ErrorCode::kConfig, path + ": key '" + key + "': agent binary '" + command[0] +
                                             "' does not exist or is not executable");
  };
  FORGE_RETURN_IF_ERROR(check("agent.command", config.agent.command));
  if (config.critic.agent) {
    FORGE_RETURN_IF_ERROR(check("critic.agent.command", config.critic.agent->command));
  }
  return config;
}

namespace {
// The warning for one agent command, or "".
std::string BareCommandWarning(const std::string& key, const std::vector<std::string>& command,
                               const std::map<std::string, std::string>& env,
                               const std::string& inherited_path) {
  if (command.empty() || command[0].empty() || command[0].find('/') != std::string::npos) {
    return "";
  }
  auto set = env.find("PATH");
  const std::string& path = set != env.end() ? set->second : inherited_path;
  // A relative or empty entry is looked up in the task's workspace,
  // unknown here: such a PATH is not judged.
  for (size_t start = 0;; start = path.find(':', start) + 1) {
    if (start >= path.size() || path[start] != '/') return "";
    if (path.find(':', start) == std::string::npos) break;
  }
  if (!FindInPath(command[0], path, "").empty()) return "";
  return "key '" + key + "': agent command '" + command[0] + "' is not in PATH '" + path + "'" +
         (set != env.end() ? " (from the agent's env)" : "") +
         ": every task would fail on it; install it there, give its absolute path, or set PATH "
         "in the agent's env";
}
}  // namespace

std::vector<std::string> ConfigWarnings(const Config& config, const std::string& inherited_path) {
  std::vector<std::string> out;
  auto add = [&](std::string warning) {
    if (!warning.empty()) out.push_back(std::move(warning));
  };
  add(BareCommandWarning("agent.command", config.agent.command, config.agent.env, inherited_path));
  if (config.critic.agent) {
    add(BareCommandWarning("critic.agent.command", config.critic.agent->command,
                           config.critic.agent->env, inherited_path));
  }
  return out;
}

std::string DumpConfig(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "workers" << YAML::Value << c.workers;
  out << YAML::Key << "critics" << YAML::Value << c.critics;
  EmitAgent(out, c.agent);
  EmitCritic(out, c.critic);

  out << YAML::Key << "retry" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_attempts" << YAML::Value << c.retry.max_attempts;
  EmitDuration(out, "backoff_base", c.retry.backoff_base_ms);
  EmitDuration(out, "backoff_max", c.retry.backoff_max_ms);
  out << YAML::Key << "max_infra_retries" << YAML::Value << c.retry.max_infra_retries;
  out << YAML::EndMap;

  out << YAML::Key << "watchdog" << YAML::Value << YAML::BeginMap;
  EmitDuration(out, "heartbeat_interval", c.watchdog.heartbeat_interval_ms);
  EmitDuration(out, "heartbeat_timeout", c.watchdog.heartbeat_timeout_ms);
  EmitDuration(out, "kill_grace", c.watchdog.kill_grace_ms);
  EmitDuration(out, "shutdown_grace", c.watchdog.shutdown_grace_ms);
  EmitDuration(out, "workspace_lock_wait", c.watchdog.workspace_lock_wait_ms);
  out << YAML::EndMap;

  out << YAML::Key << "circuit_breaker" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "consecutive_failures" << YAML::Value
      << c.circuit_breaker.consecutive_failures;
  EmitDuration(out, "cooldown", c.circuit_breaker.cooldown_ms);
  out << YAML::EndMap;

  out << YAML::Key << "budget" << YAML::Value << YAML::BeginMap;
  EmitDouble(out, "task_usd", c.budget.task_usd);
  EmitDouble(out, "daily_usd", c.budget.daily_usd);
  out << YAML::Key << "token_prices" << YAML::Value << YAML::BeginMap;
  EmitDouble(out, "input", c.budget.token_prices.input_per_mtok);
  EmitDouble(out, "output", c.budget.token_prices.output_per_mtok);
  out << YAML::EndMap;
  out << YAML::EndMap;

  out << YAML::Key << "sync" << YAML::Value << YAML::BeginMap;
  EmitString(out, "remote", c.sync.remote);
  EmitString(out, "branch", c.sync.branch);
  out << YAML::EndMap;

  out << YAML::Key << "maintenance" << YAML::Value << YAML::BeginMap;
  EmitDuration(out, "interval", c.maintenance.interval_ms);
  EmitDuration(out, "keep", c.maintenance.keep_ms);
  EmitDuration(out, "keep_logs", c.maintenance.keep_logs_ms);
  EmitDuration(out, "timeout", c.maintenance.timeout_ms);
  out << YAML::EndMap;

  out << YAML::Key << "database" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "synchronous" << YAML::Value << c.database.synchronous;
  out << YAML::EndMap;

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

proto::AgentSpec ResolveAgent(const Config& config, const proto::TaskInfo& task) {
  const AgentConfig& a = config.agent;
  proto::AgentSpec spec;
  spec.profile = a.profile;
  spec.command = a.command;
  spec.args = a.args;
  spec.model = a.model;
  spec.env = a.env;
  spec.pass_env = a.pass_env;
  spec.timeout_ms = a.timeout_ms;
  spec.stall_timeout_ms = a.stall_timeout_ms;
  spec.kill_grace_ms = config.watchdog.kill_grace_ms;
  // Another profile than the config's: the config's argv, extra arguments and
  // model belong to its own profile, so claude/codex fall back to their
  // defaults. `command` has no default argv and keeps the config's.
  if (!task.agent.empty() && task.agent != a.profile) {
    spec.profile = task.agent;
    spec.model.clear();
    if (task.agent != "command") {
      spec.command = DefaultCommand(task.agent);
      spec.args.clear();
    }
  }
  if (!task.model.empty()) spec.model = task.model;
  for (const auto& [name, value] : task.env) spec.env[name] = value;
  return spec;
}

std::string ResolveStateDir(const std::string& flag, const std::string& config_path) {
  fs::path dir;
  const char* env = std::getenv("FORGE_STATE_DIR");
  if (!flag.empty()) {
    dir = flag;
  } else if (env != nullptr && *env != '\0') {
    dir = env;
  } else if (!config_path.empty()) {
    dir = fs::path(config_path).parent_path() / ".forge";
  } else {
    dir = ".forge";
  }
  std::error_code ec;
  fs::path absolute = fs::absolute(dir, ec);
  std::string out = (ec ? dir : absolute).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string DefaultConfigPath() {
  std::error_code ec;
  return fs::exists("./forge.yaml", ec) ? "./forge.yaml" : "";
}

}  // namespace forge
