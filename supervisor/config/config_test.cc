#include "supervisor/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <tuple>

namespace forge {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A private temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/forge_config_test.XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& text) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file) << text;
    return file;
  }

 private:
  std::string path_;
};

// The error message of parsing `text` as file "f.yaml"; fails the test when it parses.
std::string ErrorOf(const std::string& text) {
  Result<Config> config = ParseConfig(text, "f.yaml");
  EXPECT_FALSE(config.ok()) << "parsed without error:\n" << text;
  if (config.ok()) return "";
  EXPECT_EQ(config.error().code, ErrorCode::kConfig);
  return config.error().message;
}

Config Parse(const std::string& text) {
  Result<Config> config = ParseConfig(text, "f.yaml");
  EXPECT_TRUE(config.ok()) << config.error().message;
  return config.ok() ? *config : Config{};
}

Config Defaults() {
  Config config;
  config.path = "f.yaml";
  return config;
}

TEST(ConfigTest, EmptyOrCommentOnlyFileIsAllDefaults) {
  EXPECT_EQ(Parse(""), Defaults());
  EXPECT_EQ(Parse("# nothing here\n\n"), Defaults());
  Config config = Parse("");
  EXPECT_EQ(config.workers, 2);
  EXPECT_EQ(config.agent.command, std::vector<std::string>{"claude"});
  EXPECT_FALSE(config.critic.agent.has_value());
  EXPECT_EQ(config.watchdog.heartbeat_timeout_ms, 5000);
}

TEST(ConfigTest, ReadsEveryKey) {
  Config c = Parse(R"(
workers: 8
critics: 3
agent:
  profile: codex
  command: [/opt/codex, exec]
  args: [--full-auto]
  model: o3
  fallback_model: o4-mini
  env: {FOO: bar, N: 3}
  pass_env: [HOME, PATH]
  timeout: 2h
  stall_timeout: 90s
critic:
  verify: [make test, "ctest --output-on-failure"]
  verify_timeout: 5m
  agent: {profile: claude, command: [claude], args: [--x], model: sonnet, env: {A: b}}
retry: {max_attempts: 4, backoff_base: 250ms, backoff_max: 1h, max_infra_retries: 0}
watchdog: {heartbeat_interval: 2s, heartbeat_timeout: 9s, kill_grace: 0, shutdown_grace: 1m,
           workspace_lock_wait: 90s}
circuit_breaker: {consecutive_failures: 7, cooldown: 30m}
budget: {task_usd: 2.5, daily_usd: 100, token_prices: {input: 1.25, output: 10}}
sync: {remote: origin, branch: main}
maintenance: {interval: 1h, keep: 14d, keep_logs: 60d, timeout: 200ms}
database: {synchronous: full}
)");
  EXPECT_EQ(c.workers, 8);
  EXPECT_EQ(c.critics, 3);
  EXPECT_EQ(c.agent.profile, "codex");
  EXPECT_EQ(c.agent.command, (std::vector<std::string>{"/opt/codex", "exec"}));
  EXPECT_EQ(c.agent.args, std::vector<std::string>{"--full-auto"});
  EXPECT_EQ(c.agent.model, "o3");
  EXPECT_EQ(c.agent.fallback_model, "o4-mini");
  EXPECT_EQ(c.agent.env, (std::map<std::string, std::string>{{"FOO", "bar"}, {"N", "3"}}));
  EXPECT_EQ(c.agent.pass_env, (std::vector<std::string>{"HOME", "PATH"}));
  EXPECT_EQ(c.agent.timeout_ms, 2 * 3600 * 1000);
  EXPECT_EQ(c.agent.stall_timeout_ms, 90 * 1000);
  EXPECT_EQ(c.critic.verify, (std::vector<std::string>{"make test", "ctest --output-on-failure"}));
  EXPECT_EQ(c.critic.verify_timeout_ms, 5 * 60 * 1000);
  ASSERT_TRUE(c.critic.agent.has_value());
  EXPECT_EQ(c.critic.agent->model, "sonnet");
  EXPECT_EQ(c.critic.agent->args, std::vector<std::string>{"--x"});
  EXPECT_EQ(c.critic.agent->env.at("A"), "b");
  EXPECT_EQ(c.retry.max_attempts, 4);
  EXPECT_EQ(c.retry.backoff_base_ms, 250);
  EXPECT_EQ(c.retry.backoff_max_ms, 3600 * 1000);
  EXPECT_EQ(c.retry.max_infra_retries, 0);
  EXPECT_EQ(c.watchdog.heartbeat_interval_ms, 2000);
  EXPECT_EQ(c.watchdog.heartbeat_timeout_ms, 9000);
  EXPECT_EQ(c.watchdog.kill_grace_ms, 0);
  EXPECT_EQ(c.watchdog.shutdown_grace_ms, 60 * 1000);
  EXPECT_EQ(c.watchdog.workspace_lock_wait_ms, 90 * 1000);
  EXPECT_EQ(c.circuit_breaker.consecutive_failures, 7);
  EXPECT_EQ(c.circuit_breaker.cooldown_ms, 30 * 60 * 1000);
  EXPECT_DOUBLE_EQ(c.budget.task_usd, 2.5);
  EXPECT_DOUBLE_EQ(c.budget.daily_usd, 100);
  EXPECT_DOUBLE_EQ(c.budget.token_prices.input_per_mtok, 1.25);
  EXPECT_DOUBLE_EQ(c.budget.token_prices.output_per_mtok, 10);
  EXPECT_EQ(c.sync.remote, "origin");
  EXPECT_EQ(c.sync.branch, "main");
  EXPECT_EQ(c.maintenance.interval_ms, 3600 * 1000);
  EXPECT_EQ(c.maintenance.keep_ms, 14LL * 24 * 3600 * 1000);
  EXPECT_EQ(c.maintenance.keep_logs_ms, 60LL * 24 * 3600 * 1000);
  EXPECT_EQ(c.maintenance.timeout_ms, 200);
  EXPECT_EQ(c.database.synchronous, "full");
}

TEST(ConfigTest, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  std::string path = dir.path() + "/nope.yaml";
  Result<Config> config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(config.error().message, HasSubstr(path));
}

// A wrong path to a huge file is refused after kMaxConfigBytes, not read
// until memory runs out; a device that never ends, or a FIFO whose open
// would wait for a writer (on the supervisor's loop, at SIGHUP), is not read.
TEST(ConfigTest, AFileThatNeverEndsIsAConfigError) {
  TempDir dir;
  std::string huge = dir.path() + "/huge.yaml";
  { std::ofstream(huge) << "workers: 1\n"; }
  std::filesystem::resize_file(huge, 2 << 20);
  Result<Config> config = LoadConfig(huge);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, ErrorCode::kConfig);
  EXPECT_EQ(config.error().message,
            "config file '" + huge + "' is more than 1048576 bytes; no more is read");

  Result<Config> device = LoadConfig("/dev/zero");
  ASSERT_FALSE(device.ok());
  EXPECT_EQ(device.error().code, ErrorCode::kConfig);
  EXPECT_EQ(device.error().message,
            "config file /dev/zero: not a regular file (a FIFO or a device)");
  std::string fifo = dir.path() + "/fifo.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Result<Config> pipe = LoadConfig(fifo);  // no writer: an open would never return
  ASSERT_FALSE(pipe.ok());
  EXPECT_THAT(pipe.error().message, HasSubstr("not a regular file"));
}

TEST(ConfigTest, DirectoryIsAnError) {
  TempDir dir;
  Result<Config> config = LoadConfig(dir.path());
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.error().message, HasSubstr(dir.path() + ": is a directory"));
}

TEST(ConfigTest, LoadsFromFileAndErrorsNameTheFile) {
  TempDir dir;
  std::string good = dir.Write("good.yaml", "workers: 5\n");
  Result<Config> config = LoadConfig(good);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->workers, 5);
  EXPECT_EQ(config->path, good);

  std::string bad = dir.Write("bad.yaml", "\nworkers: many\n");
  config = LoadConfig(bad);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().message,
            bad + ":2:10: key 'workers': must be an integer from 1 to 256, got 'many'");
}

TEST(ConfigTest, SyntaxErrorNamesItsLine) {
  std::string message = ErrorOf("workers: 2\nagent:\n  command: [a, b\ncritics: 1\n");
  EXPECT_THAT(message, HasSubstr("YAML syntax error"));
  EXPECT_THAT(message, ::testing::StartsWith("f.yaml:4:"));
  message = ErrorOf("workers: 2\n  critics: 1\n");
  EXPECT_THAT(message, ::testing::MatchesRegex("f\\.yaml:2:[0-9]+: YAML syntax error: .*"));
}

// yaml-cpp's recursion guard said only "bad file".
TEST(ConfigTest, NestingPastTheParsersLimitSaysSo) {
  std::string deep = "agent:\n  command: " + std::string(600, '[') + std::string(600, ']') + "\n";
  EXPECT_THAT(ErrorOf(deep), HasSubstr("YAML nested too deeply"));
}

TEST(ConfigTest, UnknownKeySuggestsTheClosest) {
  EXPECT_EQ(ErrorOf("agent:\n  comand: [x]\n"),
            "f.yaml:2:3: unknown key 'agent.comand' (did you mean 'command'?)");
  EXPECT_EQ(ErrorOf("wrokers: 3\n"), "f.yaml:1:1: unknown key 'wrokers' (did you mean 'workers'?)");
  EXPECT_EQ(ErrorOf("retry:\n  max_atempts: 2\n"),
            "f.yaml:2:3: unknown key 'retry.max_atempts' (did you mean 'max_attempts'?)");
  EXPECT_EQ(ErrorOf("colour: blue\n"), "f.yaml:1:1: unknown key 'colour'");
  EXPECT_EQ(ErrorOf("critic:\n  agent:\n    modle: x\n"),
            "f.yaml:3:5: unknown key 'critic.agent.modle' (did you mean 'model'?)");
}

TEST(ConfigTest, WrongTypes) {
  EXPECT_EQ(ErrorOf("agent: claude\n"), "f.yaml:1:8: key 'agent': must be a map, got 'claude'");
  EXPECT_EQ(ErrorOf("agent:\n  command: claude\n"),
            "f.yaml:2:12: key 'agent.command': must be a list of strings, got 'claude'");
  EXPECT_EQ(ErrorOf("agent:\n  command: [claude, [x]]\n"),
            "f.yaml:2:21: key 'agent.command[1]': must be a non-empty string, got a list");
  EXPECT_EQ(ErrorOf("retry: [1, 2]\n"), "f.yaml:1:8: key 'retry': must be a map, got a list");
  EXPECT_EQ(ErrorOf("agent:\n  model: {a: 1}\n"),
            "f.yaml:2:10: key 'agent.model': must be a string, got a map");
  EXPECT_EQ(ErrorOf("workers: \"2\"\n"),
            "f.yaml:1:10: key 'workers': must be an integer from 1 to 256, got string \"2\"");
  EXPECT_EQ(ErrorOf("- workers\n"), "f.yaml:1:1: the document must be a map of keys, got a list");
  EXPECT_EQ(ErrorOf("just text\n"),
            "f.yaml:1:1: the document must be a map of keys, got 'just text'");
  EXPECT_EQ(ErrorOf("budget: {task_usd: lots}\n"),
            "f.yaml:1:20: key 'budget.task_usd': must be a non-negative number, got 'lots'");
  EXPECT_EQ(ErrorOf("workers:\n"),
            "f.yaml:1:1: key 'workers': must be an integer from 1 to 256, got nothing");
}

TEST(ConfigTest, IntegerRanges) {
  EXPECT_EQ(ErrorOf("retry:\n  max_attempts: x\n"),
            "f.yaml:2:17: key 'retry.max_attempts': must be a positive integer, got 'x'");
  EXPECT_EQ(ErrorOf("retry: {max_attempts: 0}\n"),
            "f.yaml:1:23: key 'retry.max_attempts': must be a positive integer, got '0'");
  EXPECT_EQ(ErrorOf("workers: 0\n"),
            "f.yaml:1:10: key 'workers': must be an integer from 1 to 256, got '0'");
  EXPECT_EQ(ErrorOf("workers: 257\n"),
            "f.yaml:1:10: key 'workers': must be an integer from 1 to 256, got '257'");
  EXPECT_EQ(ErrorOf("workers: 2.5\n"),
            "f.yaml:1:10: key 'workers': must be an integer from 1 to 256, got '2.5'");
  EXPECT_EQ(ErrorOf("critics: 65\n"),
            "f.yaml:1:10: key 'critics': must be an integer from 1 to 64, got '65'");
  EXPECT_EQ(ErrorOf("retry: {max_infra_retries: -1}\n"),
            "f.yaml:1:28: key 'retry.max_infra_retries': must be a non-negative integer, got '-1'");
  // Past a bound the message names (no 'positive integer, got 3000000000').
  EXPECT_EQ(ErrorOf("retry: {max_attempts: 99999999999999999999}\n"),
            "f.yaml:1:23: key 'retry.max_attempts': must be an integer from 1 to 2147483647, got "
            "'99999999999999999999'");
  EXPECT_EQ(ErrorOf("retry: {max_attempts: 3000000000}\n"),
            "f.yaml:1:23: key 'retry.max_attempts': must be an integer from 1 to 2147483647, got "
            "'3000000000'");
  EXPECT_EQ(ErrorOf("retry: {max_infra_retries: -3000000000}\n"),
            "f.yaml:1:28: key 'retry.max_infra_retries': must be an integer from 0 to "
            "2147483647, got '-3000000000'");
  EXPECT_EQ(ErrorOf("budget: {daily_usd: -1}\n"),
            "f.yaml:1:21: key 'budget.daily_usd': must be a non-negative number, got '-1'");
  EXPECT_EQ(ErrorOf("budget: {daily_usd: .inf}\n"),
            "f.yaml:1:21: key 'budget.daily_usd': must be a non-negative number, got '.inf'");
  EXPECT_EQ(ErrorOf("budget: {token_prices: {input: -1}}\n"),
            "f.yaml:1:32: key 'budget.token_prices.input': must be a non-negative number, got "
            "'-1'");
  EXPECT_THAT(ErrorOf("budget: {token_prices: {inptu: 1}}\n"),
              HasSubstr("unknown key 'budget.token_prices.inptu'"));
}

TEST(ConfigTest, BadDurations) {
  EXPECT_EQ(ErrorOf("agent:\n  timeout: 10 minutes\n"),
            "f.yaml:2:12: key 'agent.timeout': must be a positive duration like 250ms, 30s, 10m, "
            "2h or 7d, at most 365d, got '10 minutes'");
  EXPECT_EQ(ErrorOf("agent: {stall_timeout: 0}\n"),
            "f.yaml:1:24: key 'agent.stall_timeout': must be a positive duration like 250ms, 30s, "
            "10m, 2h or 7d, at most 365d, got '0'");
  EXPECT_EQ(ErrorOf("watchdog: {kill_grace: 5}\n"),
            "f.yaml:1:24: key 'watchdog.kill_grace': must be a duration like 250ms, 30s, 10m, 2h "
            "or 7d, at most 365d, got '5'");
  EXPECT_EQ(ErrorOf("maintenance: {keep: [1d]}\n"),
            "f.yaml:1:21: key 'maintenance.keep': must be a positive duration like 250ms, 30s, "
            "10m, 2h or 7d, at most 36500d, got a list");
  // Past a year: a deadline that leaves RFC 3339's years, or int64's.
  EXPECT_EQ(ErrorOf("maintenance: {interval: 366d}\n"),
            "f.yaml:1:25: key 'maintenance.interval': must be a duration like 250ms, 30s, "
            "10m, 2h or 7d, at most 365d, got '366d'");
  EXPECT_THAT(ErrorOf("agent: {timeout: 9223372036854775807ms}\n"), HasSubstr("at most 365d"));
  // Retention is no deadline: a century.
  EXPECT_EQ(Parse("maintenance: {keep_logs: 730d}\n").maintenance.keep_logs_ms,
            730LL * 24 * 3600 * 1000);
  EXPECT_THAT(ErrorOf("maintenance: {keep: 36501d}\n"), HasSubstr("at most 36500d, got '36501d'"));
  // What its children accept (--workspace-lock-wait-ms): a positive day at most.
  EXPECT_EQ(ErrorOf("watchdog: {workspace_lock_wait: 0}\n"),
            "f.yaml:1:33: key 'watchdog.workspace_lock_wait': must be a positive duration like "
            "250ms, 30s, 10m, 2h or 7d, at most 1d, got '0'");
  EXPECT_THAT(ErrorOf("watchdog: {workspace_lock_wait: 25h}\n"),
              HasSubstr("at most 1d, got '25h'"));
  // Zero is allowed where it means "at once".
  Config config = Parse("retry: {backoff_base: 0, backoff_max: 0}\nwatchdog: {kill_grace: 0}\n");
  EXPECT_EQ(config.retry.backoff_base_ms, 0);
  EXPECT_EQ(config.watchdog.kill_grace_ms, 0);
  // And where it means "never": maintenance off. Else at least 100ms: a
  // "10ms" typed for "10m" ran passes back to back.
  EXPECT_EQ(Parse("maintenance: {interval: 0}\n").maintenance.interval_ms, 0);
  EXPECT_EQ(Parse("maintenance: {interval: 100ms}\n").maintenance.interval_ms, 100);
  EXPECT_EQ(ErrorOf("maintenance: {interval: 10ms}\n"),
            "f.yaml:1:25: key 'maintenance.interval': must be 0 (off) or at least 100ms, got 10ms");
}

// yaml-cpp reads such bytes as U+FFFD: a check that is not what was written.
TEST(ConfigTest, TextThatIsNotUtf8IsAConfigError) {
  EXPECT_EQ(ErrorOf("workers: 1\ncritic: {verify: [\"echo caf\xe9\"]}\n"),
            "f.yaml: not UTF-8 (byte 0xe9 at line 2, column 28); save it as UTF-8");
}

// A raw NUL byte is no YAML: yaml-cpp stopped at one, so a file of NULs
// passed as an empty config (the defaults), and one inside garbled the key
// after it. Its line and column (in characters) are named.
TEST(ConfigTest, ARawNulByteIsAConfigErrorNamingWhereItIs) {
  const std::string nuls(64, '\0');
  EXPECT_EQ(ErrorOf(nuls),
            "f.yaml:1:1: a NUL byte, which no YAML text has (a binary file, or a "
            "file saved as UTF-16?)");
  EXPECT_EQ(ErrorOf(std::string("workers: 1\n# caf\xc3\xa9 \0\nbogus: 2\n", 30)),
            "f.yaml:2:8: a NUL byte, which no YAML text has (a binary file, or a file saved as "
            "UTF-16?)");
}

TEST(ConfigTest, EnumValues) {
  EXPECT_EQ(ErrorOf("agent:\n  profile: gpt\n"),
            "f.yaml:2:12: key 'agent.profile': must be one of claude, codex or command, got 'gpt'");
  EXPECT_EQ(ErrorOf("sync: {remote: origin}\n"),
            "f.yaml:1:16: key 'sync.branch': required with sync.remote");
  EXPECT_EQ(ErrorOf("sync:\n  branch: main\n"),
            "f.yaml:2:11: key 'sync.remote': required with sync.branch");
  EXPECT_EQ(ErrorOf("database: {synchronous: off}\n"),
            "f.yaml:1:25: key 'database.synchronous': must be one of normal or full, got 'off'");
  EXPECT_EQ(Parse("database: {synchronous: full}\n").database.synchronous, "full");
}

TEST(ConfigTest, RulesBetweenKeys) {
  EXPECT_EQ(ErrorOf("watchdog:\n  heartbeat_timeout: 1s\n"),
            "f.yaml:2:22: key 'watchdog.heartbeat_timeout': must be greater than "
            "heartbeat_interval (1s <= 1s)");
  EXPECT_EQ(ErrorOf("watchdog:\n  heartbeat_interval: 10s\n"),
            "f.yaml:2:23: key 'watchdog.heartbeat_timeout': must be greater than "
            "heartbeat_interval (5s <= 10s)");
  EXPECT_EQ(ErrorOf("retry:\n  backoff_base: 1h\n"),
            "f.yaml:2:17: key 'retry.backoff_max': must be at least backoff_base (30m < 1h)");
}

TEST(ConfigTest, CollectsEveryProblem) {
  std::string message = ErrorOf(R"(workers: 0
agent:
  profile: gpt
  comand: [x]
  timeout: soon
retry: {max_attempts: x}
database: {synchronous: off}
bogus: 1
)");
  EXPECT_EQ(message,
            "f.yaml:1:10: key 'workers': must be an integer from 1 to 256, got '0'\n"
            "f.yaml:3:12: key 'agent.profile': must be one of claude, codex or command, got 'gpt'\n"
            "f.yaml:4:3: unknown key 'agent.comand' (did you mean 'command'?)\n"
            "f.yaml:5:12: key 'agent.timeout': must be a positive duration like 250ms, 30s, 10m, "
            "2h or 7d, at most 365d, got 'soon'\n"
            "f.yaml:6:23: key 'retry.max_attempts': must be a positive integer, got 'x'\n"
            "f.yaml:7:25: key 'database.synchronous': must be one of normal or full, got 'off'\n"
            "f.yaml:8:1: unknown key 'bogus'");
}

TEST(ConfigTest, DuplicateKeyNamesTheFirst) {
  EXPECT_EQ(ErrorOf("workers: 2\ncritics: 1\nworkers: 3\n"),
            "f.yaml:3:1: duplicate key 'workers' (first at f.yaml:1:1)");
}

TEST(ConfigTest, OnlyOneDocument) {
  EXPECT_EQ(ErrorOf("workers: 2\n---\nworkers: 3\n"),
            "f.yaml:2:1: only one YAML document is allowed; another starts here");
  EXPECT_EQ(Parse("workers: 3\n...\n").workers, 3);  // an explicit end is still one document
}

// yaml-cpp 0.7 takes this for an empty document (then endless more): it must
// not load as all defaults.
TEST(ConfigTest, StrayCommaIsAnError) {
  EXPECT_EQ(ErrorOf("# comment\n,workers: 1\n"),
            "f.yaml:2:1: YAML syntax error: cannot parse ',workers: 1'");
}

TEST(ConfigTest, DeepNestingIsAnErrorNotACrash) {
  std::string text = "workers: " + std::string(100000, '[');
  EXPECT_THAT(ErrorOf(text), ::testing::StartsWith("f.yaml:1:"));
}

// Mutations of a valid file either parse or give one located line per problem.
TEST(ConfigTest, MangledInputNeverCrashes) {
  std::ifstream in(std::string(FORGE_SOURCE_DIR) + "/examples/forge.yaml");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string base = buffer.str();
  ASSERT_FALSE(base.empty());
  const std::string special = ":-[]{}#&*!|>'\"%@`,?~ \n\t0s";
  std::mt19937 rng(20261121);
  int failures = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string text = base;
    for (int edits = 1 + static_cast<int>(rng() % 6); edits > 0; --edits) {
      size_t pos = rng() % text.size();
      char c = rng() % 2 ? special[rng() % special.size()] : static_cast<char>(rng() % 256);
      switch (rng() % 3) {
        case 0:
          text[pos] = c;
          break;
        case 1:
          text.insert(pos, 1, c);
          break;
        default:
          text.erase(pos, 1 + rng() % 8);
          break;
      }
      if (text.empty()) text = "x";
    }
    Result<Config> config = ParseConfig(text, "f.yaml");
    if (config.ok()) continue;
    ++failures;
    ASSERT_EQ(config.error().code, ErrorCode::kConfig);
    std::istringstream lines(config.error().message);
    for (std::string line; std::getline(lines, line);) {
      ASSERT_THAT(line, ::testing::StartsWith("f.yaml")) << config.error().message;
    }
  }
  EXPECT_GT(failures, 0);  // the mutations did reach the validation
}

TEST(ConfigTest, AgentCommandFollowsTheProfile) {
  EXPECT_EQ(Parse("agent: {profile: codex}\n").agent.command, std::vector<std::string>{"codex"});
  EXPECT_EQ(Parse("agent: {profile: claude}\n").agent.command, std::vector<std::string>{"claude"});
  EXPECT_EQ(Parse("agent: {profile: command, command: [my-agent, --go]}\n").agent.command,
            (std::vector<std::string>{"my-agent", "--go"}));
  EXPECT_EQ(ErrorOf("agent:\n  profile: command\n"),
            "f.yaml:2:12: key 'agent.command': required when the profile is 'command'");
  EXPECT_EQ(ErrorOf("agent:\n  profile: command\n  command: []\n"),
            "f.yaml:3:12: key 'agent.command': must not be empty");
  EXPECT_EQ(ErrorOf("agent:\n  command: [\"\"]\n"),
            "f.yaml:2:13: key 'agent.command[0]': must be a non-empty string, got string \"\"");
}

TEST(ConfigTest, CriticAgentIsOptional) {
  EXPECT_FALSE(Parse("critic: {agent: null}\n").critic.agent.has_value());
  EXPECT_FALSE(Parse("critic:\n  agent:\n").critic.agent.has_value());
  EXPECT_FALSE(Parse("critic: {verify: [make]}\n").critic.agent.has_value());
  Config config = Parse("critic: {agent: {}}\n");
  ASSERT_TRUE(config.critic.agent.has_value());
  EXPECT_EQ(config.critic.agent->profile, "claude");
  EXPECT_EQ(config.critic.agent->command, std::vector<std::string>{"claude"});
  config = Parse("critic: {agent: {profile: codex}}\n");
  ASSERT_TRUE(config.critic.agent.has_value());
  EXPECT_EQ(config.critic.agent->command, std::vector<std::string>{"codex"});
  EXPECT_EQ(ErrorOf("critic: {agent: {profile: command}}\n"),
            "f.yaml:1:27: key 'critic.agent.command': required when the profile is 'command'");
  EXPECT_EQ(ErrorOf("critic: {agent: yes}\n"),
            "f.yaml:1:17: key 'critic.agent': must be a map, got 'yes'");
  // sh -c "  " exits 0: a blank check would pass every task.
  EXPECT_EQ(ErrorOf("critic:\n  verify: [make test, \"  \"]\n"),
            "f.yaml:2:23: key 'critic.verify[1]': a check must not be blank");
}

TEST(ConfigTest, EnvironmentNames) {
  EXPECT_EQ(ErrorOf("agent:\n  env: {1X: y}\n"),
            "f.yaml:2:9: key 'agent.env': '1X' is not an environment variable name");
  EXPECT_EQ(ErrorOf("agent:\n  env: {X: [1]}\n"),
            "f.yaml:2:12: key 'agent.env.X': must be a string, got a list");
  EXPECT_EQ(ErrorOf("agent:\n  pass_env: [HOME, \"A-B\"]\n"),
            "f.yaml:2:20: key 'agent.pass_env[1]': must be an environment variable name, got "
            "string \"A-B\"");
  EXPECT_EQ(ErrorOf("agent:\n  env: [A]\n"),
            "f.yaml:2:8: key 'agent.env': must be a map of environment variables, got a list");
  EXPECT_EQ(Parse("agent: {env: {EMPTY: }}\n").agent.env.at("EMPTY"), "");
}

// "\0" in YAML, "\u0000" in JSON: every string may reach argv or the
// environment, where a NUL cuts it short unseen (a check `true\0; false`
// would run `true` and pass). Each is a problem at its value, naming the
// key and not the value (it may be a secret).
TEST(ConfigTest, ANulByteInAnyStringIsAnErrorNamingTheKey) {
  EXPECT_EQ(ErrorOf("critic:\n  verify: [\"true\\0; false\"]\n"),
            "f.yaml:2:12: key 'critic.verify[0]': contains a NUL byte");
  EXPECT_EQ(ErrorOf("agent:\n  command: [\"/bin/sh\\0x\"]\n"),
            "f.yaml:2:13: key 'agent.command[0]': contains a NUL byte");
  EXPECT_EQ(ErrorOf("agent:\n  model: \"a\\0b\"\n"),
            "f.yaml:2:10: key 'agent.model': contains a NUL byte");
  EXPECT_EQ(ErrorOf("agent:\n  env: {A: \"sk-secret\\0y\"}\n"),
            "f.yaml:2:12: key 'agent.env.A': contains a NUL byte");
  EXPECT_EQ(ErrorOf("agent:\n  pass_env: [\"HOME\\0\"]\n"),
            "f.yaml:2:14: key 'agent.pass_env[0]': contains a NUL byte");
  EXPECT_EQ(ErrorOf("agent:\n  args: [\"--x\\0\"]\n"),
            "f.yaml:2:10: key 'agent.args[0]': contains a NUL byte");
  EXPECT_EQ(ErrorOf("critic:\n  agent: {profile: command, command: [\"a\\0\"]}\n"),
            "f.yaml:2:39: key 'critic.agent.command[0]': contains a NUL byte");
  EXPECT_EQ(ErrorOf("agent:\n  profile: \"claude\\0\"\n"),
            "f.yaml:2:12: key 'agent.profile': contains a NUL byte");
  EXPECT_EQ(ErrorOf(R"({"critic": {"verify": ["true\u0000; false"]}})"),
            "f.yaml:1:24: key 'critic.verify[0]': contains a NUL byte");
}

TEST(ConfigTest, DumpReloadsToTheSameConfig) {
  Config original = Defaults();
  Result<Config> reloaded = ParseConfig(DumpConfig(original), "f.yaml");
  ASSERT_TRUE(reloaded.ok()) << reloaded.error().message << "\n" << DumpConfig(original);
  EXPECT_EQ(*reloaded, original);

  Config c = Defaults();
  c.workers = 17;
  c.budget.token_prices = {.input_per_mtok = 1.25, .output_per_mtok = 0.1};
  c.agent.profile = "command";
  c.agent.command = {"sh", "-c", "echo \"hi\" # not a comment"};
  c.agent.args = {"--flag", "yes", "null", "123", "a: b", "[x]"};
  c.agent.model = "model: weird 'quotes' \u00e9";
  c.agent.env = {{"TOKEN", "~"}, {"N", "007"}, {"EMPTY", ""}};
  c.agent.pass_env = {"HOME"};
  c.agent.timeout_ms = 90 * 1000;
  c.agent.stall_timeout_ms = 1500;
  c.critic.verify = {"make test", "true"};
  c.critic.agent = CriticAgentConfig{};
  c.critic.agent->model = "opus";
  c.retry.backoff_base_ms = 0;
  c.retry.max_infra_retries = 0;
  c.watchdog.heartbeat_interval_ms = 250;
  c.budget.task_usd = 0.1;
  c.budget.daily_usd = 12345.678;
  c.sync.remote = "origin";
  c.sync.branch = "main";
  c.maintenance.keep_ms = 3LL * 24 * 3600 * 1000;
  c.database.synchronous = "full";
  std::string dump = DumpConfig(c);
  reloaded = ParseConfig(dump, "f.yaml");
  ASSERT_TRUE(reloaded.ok()) << reloaded.error().message << "\n" << dump;
  EXPECT_EQ(*reloaded, c) << dump;
  EXPECT_THAT(dump, HasSubstr("timeout: 90s"));
  EXPECT_THAT(dump, HasSubstr("heartbeat_interval: 250ms"));
  EXPECT_THAT(dump, HasSubstr("keep: 3d"));
}

// An agent (or LLM critic) named by an absolute path that is not an
// executable file is refused, naming the file, the key and the path; a
// relative path (the workspace's) and a bare name (the agent's PATH) are
// left to the worker.
TEST(ConfigTest, AnAbsoluteAgentPathMustBeAnExecutableFile) {
  TempDir dir;
  std::string script = dir.Write("agent.sh", "#!/bin/sh\n");
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  std::string plain = dir.Write("plain.sh", "#!/bin/sh\n");
  std::string ok = dir.Write("ok.yaml", "agent: {profile: command, command: [" + script +
                                            "]}\ncritic: {agent: {profile: claude, command: [" +
                                            script + "]}}\n");
  EXPECT_TRUE(LoadConfig(ok).ok());
  std::string wrappers = dir.Write("wrappers.yaml",
                                   "agent: {profile: command, command: [sh, ./run.sh]}\n"
                                   "critic: {agent: {profile: claude, command: [bin/critic]}}\n");
  EXPECT_TRUE(LoadConfig(wrappers).ok());
  const std::string missing = dir.path() + "/agent-typo.sh";
  for (const auto& [yaml, key, bad] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"agent: {profile: command, command: [" + missing + "]}\n", "agent.command", missing},
           {"agent: {profile: command, command: [" + plain + "]}\n", "agent.command", plain},
           {"agent: {profile: command, command: [" + dir.path() + "]}\n", "agent.command",
            dir.path()},
           {"critic: {agent: {profile: claude, command: [" + missing + ", -p]}}\n",
            "critic.agent.command", missing}}) {
    std::string file = dir.Write("bad.yaml", yaml);
    Result<Config> config = LoadConfig(file);
    ASSERT_FALSE(config.ok()) << yaml;
    EXPECT_EQ(config.error().code, ErrorCode::kConfig);
    EXPECT_EQ(config.error().message, file + ": key '" + key + "': agent binary '" + bad +
                                          "' does not exist or is not executable");
  }
}

// A bare agent command not in the PATH the agents get loads, with a
// warning naming the key, the command and that PATH; the agent's env PATH
// is the one searched when it sets one; a PATH with a relative or empty
// entry (the workspace's, unknown here) is not judged.
TEST(ConfigTest, ABareAgentCommandNotInThePathIsWarnedAbout) {
  TempDir dir;
  std::string bin = dir.path() + "/bin";
  ASSERT_EQ(::mkdir(bin.c_str(), 0755), 0);
  std::string tool = dir.Write("bin/my-agent", "#!/bin/sh\n");
  ASSERT_EQ(::chmod(tool.c_str(), 0755), 0);
  dir.Write("bin/not-executable", "#!/bin/sh\n");
  auto warnings = [&](const std::string& yaml, const std::string& inherited) {
    Result<Config> config = ParseConfig(yaml, "f.yaml");
    EXPECT_TRUE(config.ok()) << yaml;
    return config.ok() ? ConfigWarnings(*config, inherited) : std::vector<std::string>{"?"};
  };
  const std::string agent = "agent: {profile: command, command: [my-agent, -x]}\n";
  EXPECT_THAT(warnings(agent, "/nonexistent:" + bin), ::testing::IsEmpty());
  EXPECT_THAT(warnings(agent, "/nonexistent:/usr/bin"),
              ::testing::ElementsAre(
                  "key 'agent.command': agent command 'my-agent' is not in PATH "
                  "'/nonexistent:/usr/bin': every task would fail on it; install it there, give "
                  "its absolute path, or set PATH in the agent's env"));
  EXPECT_THAT(warnings("agent: {profile: command, command: [not-executable]}\n", bin),
              ::testing::SizeIs(1));
  // The agent's own PATH wins over the inherited one, either way.
  EXPECT_THAT(
      warnings("agent: {profile: command, command: [my-agent], env: {PATH: /usr/bin}}\n", bin),
      ::testing::ElementsAre(::testing::HasSubstr("'/usr/bin' (from the agent's env)")));
  EXPECT_THAT(warnings("agent: {profile: command, command: [my-agent], env: {PATH: " + bin + "}}\n",
                       "/usr/bin"),
              ::testing::IsEmpty());
  // The LLM critic's command too, by its key.
  EXPECT_THAT(warnings("critic: {agent: {profile: claude, command: [no-such-critic]}}\n"
                       "agent: {profile: command, command: [sh]}\n",
                       "/usr/bin:/bin"),
              ::testing::ElementsAre(::testing::StartsWith(
                  "key 'critic.agent.command': agent command 'no-such-critic'")));
  // Not judged: a relative or empty PATH entry, a path with a slash.
  for (const char* path : {"/usr/bin:", "/usr/bin::/bin", "bin:/usr/bin", ""}) {
    EXPECT_THAT(warnings(agent, path), ::testing::IsEmpty()) << "PATH '" << path << "'";
  }
  EXPECT_THAT(warnings("agent: {profile: command, command: [./run.sh]}\n", "/usr/bin"),
              ::testing::IsEmpty());
}

TEST(ConfigTest, DumpShowsNoCriticAgentAsNull) {
  std::string dump = DumpConfig(Defaults());
  EXPECT_THAT(dump, HasSubstr("agent: ~"));
  EXPECT_THAT(dump, HasSubstr("workers: 2"));
}

TEST(ConfigTest, ExampleConfigLoadsAsTheDefaults) {
  std::string path = std::string(FORGE_SOURCE_DIR) + "/examples/forge.yaml";
  Result<Config> config = LoadConfig(path);
  ASSERT_TRUE(config.ok()) << config.error().message;
  Config expected;
  expected.path = path;
  EXPECT_EQ(*config, expected);
}

TEST(ConfigTest, DemoConfigLoads) {
  Result<Config> config = LoadConfig(std::string(FORGE_SOURCE_DIR) + "/examples/demo.yaml");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->agent.profile, "command");
}

proto::TaskInfo Task() {
  proto::TaskInfo task;
  task.id = "t1";
  return task;
}

TEST(ResolveAgentTest, UsesTheConfigProfile) {
  Config config = Defaults();
  config.agent.args = {"--allowedTools", "Write"};
  config.agent.model = "sonnet";
  config.agent.env = {{"A", "1"}};
  config.agent.pass_env = {"HOME"};
  config.agent.timeout_ms = 1234;
  config.agent.stall_timeout_ms = 567;
  config.watchdog.kill_grace_ms = 89;
  proto::AgentSpec spec = ResolveAgent(config, Task());
  EXPECT_EQ(spec.profile, "claude");
  EXPECT_EQ(spec.command, std::vector<std::string>{"claude"});
  EXPECT_EQ(spec.args, config.agent.args);
  EXPECT_EQ(spec.model, "sonnet");
  EXPECT_EQ(spec.env, config.agent.env);
  EXPECT_EQ(spec.pass_env, config.agent.pass_env);
  EXPECT_EQ(spec.timeout_ms, 1234);
  EXPECT_EQ(spec.stall_timeout_ms, 567);
  EXPECT_EQ(spec.kill_grace_ms, 89);
}

TEST(ResolveAgentTest, TaskOverridesModelAndEnv) {
  Config config = Defaults();
  config.agent.model = "sonnet";
  config.agent.env = {{"A", "1"}, {"B", "2"}};
  proto::TaskInfo task = Task();
  task.model = "opus";
  task.env = {{"B", "task"}, {"C", "3"}};
  proto::AgentSpec spec = ResolveAgent(config, task);
  EXPECT_EQ(spec.model, "opus");
  EXPECT_EQ(spec.env, (std::map<std::string, std::string>{{"A", "1"}, {"B", "task"}, {"C", "3"}}));
}

TEST(ResolveAgentTest, TaskProfileUsesThatProfilesDefaults) {
  Config config = Defaults();
  config.agent.command = {"/opt/claude"};
  config.agent.args = {"--allowedTools", "Write"};
  config.agent.model = "sonnet";
  proto::TaskInfo task = Task();
  task.agent = "codex";
  proto::AgentSpec spec = ResolveAgent(config, task);
  EXPECT_EQ(spec.profile, "codex");
  EXPECT_EQ(spec.command, std::vector<std::string>{"codex"});
  EXPECT_TRUE(spec.args.empty());
  EXPECT_EQ(spec.model, "");

  task.agent = "claude";  // the config's own profile: nothing changes
  spec = ResolveAgent(config, task);
  EXPECT_EQ(spec.command, std::vector<std::string>{"/opt/claude"});
  EXPECT_EQ(spec.model, "sonnet");
}

// Sets or clears an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(StateDirTest, FlagThenEnvironmentThenBesideTheConfig) {
  std::string cwd = fs::current_path().string();
  {
    ScopedEnv env("FORGE_STATE_DIR", "/srv/env-state");
    EXPECT_EQ(ResolveStateDir("/srv/flag/", "/etc/forge/forge.yaml"), "/srv/flag");
    EXPECT_EQ(ResolveStateDir("rel/dir", ""), cwd + "/rel/dir");
    EXPECT_EQ(ResolveStateDir("", "/etc/forge/forge.yaml"), "/srv/env-state");
  }
  ScopedEnv env("FORGE_STATE_DIR", nullptr);
  EXPECT_EQ(ResolveStateDir("", "/etc/forge/forge.yaml"), "/etc/forge/.forge");
  EXPECT_EQ(ResolveStateDir("", "conf/forge.yaml"), cwd + "/conf/.forge");
  EXPECT_EQ(ResolveStateDir("", "forge.yaml"), cwd + "/.forge");
  EXPECT_EQ(ResolveStateDir("", ""), cwd + "/.forge");
  ScopedEnv empty("FORGE_STATE_DIR", "");
  EXPECT_EQ(ResolveStateDir("", "/etc/forge/forge.yaml"), "/etc/forge/.forge");
}

TEST(StateDirTest, DefaultConfigPathIsForgeYamlInTheWorkingDirectory) {
  TempDir dir;
  fs::path cwd = fs::current_path();
  fs::current_path(dir.path());
  EXPECT_EQ(DefaultConfigPath(), "");
  dir.Write("forge.yaml", "workers: 1\n");
  EXPECT_EQ(DefaultConfigPath(), "./forge.yaml");
  fs::current_path(cwd);
}

}  // namespace
}  // namespace forge
