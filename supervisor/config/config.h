// forge.yaml (contract: key names). Every key has a default; unknown keys,
// wrong types and bad durations are errors naming file:line:column.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/git.h"
#include "common/result.h"
#include "proto/types.h"

namespace forge {

struct AgentConfig {
  std::string profile = "claude";  // claude | codex | command
  std::vector<std::string> command = {"claude"};
  std::vector<std::string> args;
  std::string model;
  std::string fallback_model;
  std::map<std::string, std::string> env;
  std::vector<std::string> pass_env;
  int64_t timeout_ms = 60 * 60 * 1000;
  int64_t stall_timeout_ms = 10 * 60 * 1000;

  friend bool operator==(const AgentConfig&, const AgentConfig&) = default;
};

struct CriticAgentConfig {
  std::string profile = "claude";
  std::vector<std::string> command = {"claude"};
  std::vector<std::string> args;
  std::string model;
  std::map<std::string, std::string> env;

  friend bool operator==(const CriticAgentConfig&, const CriticAgentConfig&) = default;
};

struct CriticConfig {
  std::vector<std::string> verify;
  int64_t verify_timeout_ms = 10 * 60 * 1000;
  std::optional<CriticAgentConfig> agent;

  friend bool operator==(const CriticConfig&, const CriticConfig&) = default;
};

struct RetryConfig {
  int max_attempts = 3;
  int64_t backoff_base_ms = 30 * 1000;
  int64_t backoff_max_ms = 30 * 60 * 1000;
  int max_infra_retries = 5;

  friend bool operator==(const RetryConfig&, const RetryConfig&) = default;
};

struct WatchdogConfig {
  int64_t heartbeat_interval_ms = 1000;
  int64_t heartbeat_timeout_ms = 5000;
  int64_t kill_grace_ms = 10 * 1000;
  int64_t shutdown_grace_ms = 30 * 1000;
  // How long a worker or critic waits for a task's workspace while another
  // process still holds it, before the task is blocked naming the holder.
  // Children keep the value they were started with.
  int64_t workspace_lock_wait_ms = kWorkspaceLockWaitMs;

  friend bool operator==(const WatchdogConfig&, const WatchdogConfig&) = default;
};

struct CircuitBreakerConfig {
  int consecutive_failures = 5;
  int64_t cooldown_ms = 10 * 60 * 1000;

  friend bool operator==(const CircuitBreakerConfig&, const CircuitBreakerConfig&) = default;
};

// What an agent's tokens cost, for an agent that reports tokens but no cost
// (codex; claude reports its own): USD per million tokens. 0: not priced,
// and such a run counts $0 toward the budgets.
struct TokenPrices {
  double input_per_mtok = 0;
  double output_per_mtok = 0;

  friend bool operator==(const TokenPrices&, const TokenPrices&) = default;
};

struct BudgetConfig {
  double task_usd = 0;   // 0 = no limit
  double daily_usd = 0;  // 0 = no limit
  TokenPrices token_prices;

  friend bool operator==(const BudgetConfig&, const BudgetConfig&) = default;
};

struct SyncConfig {
  std::string remote;
  std::string branch;

  friend bool operator==(const SyncConfig&, const SyncConfig&) = default;
};

// The shortest maintenance.interval but 0 (off).
inline constexpr int64_t kMinMaintenanceIntervalMs = 100;

struct MaintenanceConfig {
  int64_t interval_ms = 10 * 60 * 1000;
  int64_t keep_ms = 7LL * 24 * 3600 * 1000;
  int64_t keep_logs_ms = 30LL * 24 * 3600 * 1000;
  // A job running longer gets its worker killed (it holds no task lease).
  int64_t timeout_ms = 10 * 60 * 1000;

  friend bool operator==(const MaintenanceConfig&, const MaintenanceConfig&) = default;
};

struct DatabaseConfig {
  std::string synchronous = "normal";  // normal | full

  friend bool operator==(const DatabaseConfig&, const DatabaseConfig&) = default;
};

struct Config {
  std::string path;  // the file it was loaded from; empty: defaults only
  int workers = 2;
  int critics = 1;
  AgentConfig agent;
  CriticConfig critic;
  RetryConfig retry;
  WatchdogConfig watchdog;
  CircuitBreakerConfig circuit_breaker;
  BudgetConfig budget;
  SyncConfig sync;
  MaintenanceConfig maintenance;
  DatabaseConfig database;

  friend bool operator==(const Config&, const Config&) = default;
};

// Loads and validates a file. Errors (kConfig) list every problem found, one
// per line, each "FILE:LINE:COLUMN: key 'retry.max_attempts': must be ...".
// A config file past this is refused unread (a device, a wrong path).
inline constexpr size_t kMaxConfigBytes = 1u << 20;
Result<Config> LoadConfig(const std::string& path);
// Same, from text (path is used in messages only).
Result<Config> ParseConfig(const std::string& text, const std::string& path);
// What would fail every task but does not stop the config from loading:
// an agent (agent.command, critic.agent.command) named by a bare command
// that is not in the PATH its agents get: the agent's env PATH, else
// `inherited_path` (the supervisor's own, which its children pass on: as
// exec searches it, ExecPath in common/paths.h, so the default when unset). One
// line each, naming the key, the command and the PATH searched. The worker
// looks again at each dispatch (a task's env may set PATH, and relative
// entries are the workspace's, so a PATH with one is not judged here); this
// says it at start, at a reload, in check-config and in doctor, before
// each queued task is blocked on it in turn.
std::vector<std::string> ConfigWarnings(const Config& config, const std::string& inherited_path);
// The effective config as YAML (check-config prints it).
std::string DumpConfig(const Config& config);

// The agent spec for a task: the config's profile, overridden by the task's
// agent/model/env. kill_grace comes from the watchdog. A task naming another
// profile than the config's gets that profile's default argv ([claude] /
// [codex]) without the config's args and model, which belong to the config's
// profile; a switch to `command` keeps the config's argv. Task env entries
// override the config's.
proto::AgentSpec ResolveAgent(const Config& config, const proto::TaskInfo& task);

// The state directory, absolute: `flag` when non-empty, else $FORGE_STATE_DIR
// when set and non-empty, else `.forge` beside the config file (config_path's
// directory), else `./.forge`.
std::string ResolveStateDir(const std::string& flag, const std::string& config_path);
// "./forge.yaml" when it exists, else "" (meaning: all defaults).
std::string DefaultConfigPath();

}  // namespace forge
