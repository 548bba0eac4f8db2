// forge.yaml (contract: key names). Every key has a default; unknown keys,
// wrong types and bad durations are errors naming file:line:column.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

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
};

struct CriticAgentConfig {
  std::string profile = "claude";
  std::vector<std::string> command = {"claude"};
  std::vector<std::string> args;
  std::string model;
  std::map<std::string, std::string> env;
};

struct CriticConfig {
  std::vector<std::string> verify;
  int64_t verify_timeout_ms = 10 * 60 * 1000;
  std::optional<CriticAgentConfig> agent;
};

struct RetryConfig {
  int max_attempts = 3;
  int64_t backoff_base_ms = 30 * 1000;
  int64_t backoff_max_ms = 30 * 60 * 1000;
  int max_infra_retries = 5;
};

struct WatchdogConfig {
  int64_t heartbeat_interval_ms = 1000;
  int64_t heartbeat_timeout_ms = 5000;
  int64_t kill_grace_ms = 10 * 1000;
  int64_t shutdown_grace_ms = 30 * 1000;
};

struct CircuitBreakerConfig {
  int consecutive_failures = 5;
  int64_t cooldown_ms = 10 * 60 * 1000;
};

struct BudgetConfig {
  double task_usd = 0;   // 0 = no limit
  double daily_usd = 0;  // 0 = no limit
};

struct SyncConfig {
  std::string remote;
  std::string branch;
};

struct MaintenanceConfig {
  int64_t interval_ms = 10 * 60 * 1000;
  int64_t keep_ms = 7LL * 24 * 3600 * 1000;
  int64_t keep_logs_ms = 30LL * 24 * 3600 * 1000;
};

struct DatabaseConfig {
  std::string synchronous = "normal";  // normal | full
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
};

// Loads and validates a file. Errors (kConfig) list every problem found, one
// per line, each "FILE:LINE:COLUMN: key 'retry.max_attempts': must be ...".
Result<Config> LoadConfig(const std::string& path);
// Same, from text (path is used in messages only).
Result<Config> ParseConfig(const std::string& text, const std::string& path);
// The effective config as YAML (check-config prints it).
std::string DumpConfig(const Config& config);

// The agent spec for a task: the config's profile, overridden by the task's
// agent/model/env. kill_grace comes from the watchdog.
proto::AgentSpec ResolveAgent(const Config& config, const proto::TaskInfo& task);

}  // namespace forge
