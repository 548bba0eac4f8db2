// Integration-test harness: a real forge-supervisor (with real forge-worker
// and forge-critic children) in a temporary directory, configured with the
// fake agent tests/fakes/agent.sh, driven through its control socket and
// inspected through a read-only store. Every wait is on a condition with a
// deadline.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/process.h"
#include "common/result.h"
#include "proto/control.h"
#include "proto/types.h"
#include "supervisor/store/store.h"

namespace forge::itest {

using json = nlohmann::json;

inline std::string BinPath(const std::string& name);
inline std::string FakeAgent();

// Polls cond every 10 ms until it holds or timeout_ms passes.
inline bool WaitFor(const std::function<bool()>& cond, int64_t timeout_ms);

// Whether a pid is still a live (non-zombie) process.
inline bool ProcessAlive(pid_t pid);

// A whole forge-ctl process on a state directory: its exit code and its
// stdout and stderr together (-1 and "" when it could not run).
inline std::pair<int, std::string> RunCtl(const std::string& state_dir,
                                          const std::vector<std::string>& args);

// Runs sql on the database at db_path (a stopped supervisor's, to make a
// row as an older one left it); a failure fails the test.
inline void Sql(const std::string& db_path, const std::string& sql);

struct ForgeOptions {
  int workers = 2;
  int critics = 1;
  std::string profile = "command";
  std::string timeout = "20s";
  std::string stall_timeout = "10s";
  int max_attempts = 3;
  int max_infra_retries = 5;
  std::string backoff_base = "50ms";
  std::string backoff_max = "200ms";
  std::string heartbeat_interval = "200ms";
  // 3 s, not 1 s: a -O0 ASan worker on a loaded 2-core machine once went
  // 1 s without a heartbeat right after a dispatch (CI, Expand test). Tests
  // of hang detection set their own.
  std::string heartbeat_timeout = "3s";
  std::string kill_grace = "300ms";
  std::string shutdown_grace = "2s";
  std::string workspace_lock_wait;  // watchdog.workspace_lock_wait; "" leaves the default
  std::string verify_timeout = "10s";
  int circuit_failures = 5;
  std::string circuit_cooldown = "10m";
  double daily_usd = 0;
  double task_usd = 0;
  std::string token_prices;  // budget.token_prices, e.g. "{input: 2, output: 10}"; "" none
  std::vector<std::string> verify;
  std::map<std::string, std::string> extra_env;  // for the supervisor process
  std::vector<std::string> pass_env;             // agent.pass_env names beside FAKE_STATE
  std::string agent_yaml;                        // more "  key: value\n" lines of the agent section
  std::string critic_yaml;                       // the same, of the critic section
  std::string extra_yaml;  // more top-level sections, e.g. "maintenance: {...}\n"
};

inline std::string ConfigYaml(const ForgeOptions& o);

// A control-socket client (DEALER, like forge-ctl).
class ControlClient {
 public:
  explicit ControlClient(const std::string& state_dir);
  // Sends raw bytes (possibly garbage) and returns the raw reply, or nullopt on timeout.
  std::optional<std::string> RawCall(const std::string& bytes, int64_t timeout_ms = 5000);
  // A typed command: the reply body on ok, the Error otherwise.
  Result<json> Call(const std::string& cmd, json args = json::object(), int64_t timeout_ms = 5000);

 private:
  void Reset();
  std::string endpoint_;
  zmq::context_t context_{1};
  std::unique_ptr<zmq::socket_t> socket_;
};

class Forge {
 public:
  explicit Forge(ForgeOptions options = {});
  ~Forge();

  // Starts forge-supervisor --foreground and waits until it answers status.
  // wait_children: also wait until every child said hello (idle).
  void Start(bool wait_children = true);
  // Signals the supervisor and waits for it to exit; returns its exit status.
  ExitStatus Signal(int sig, int64_t timeout_ms = 30'000);
  void Rewrite(const ForgeOptions& options);  // rewrites forge.yaml (for SIGHUP)
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  const std::string& dir() const { return dir_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& fake_state() const { return fake_state_; }
  ControlClient& ctl() { return *ctl_; }

  // Submits one task running the fake agent in `mode`; returns its id.
  std::string Submit(const std::string& mode, std::map<std::string, std::string> env = {},
                     json extra = json::object());
  std::vector<std::string> SubmitMany(int n, const std::string& mode);

  store::Store& db();
  proto::TaskInfo Task(const std::string& id);
  std::vector<proto::AttemptInfo> Attempts(const std::string& id);
  std::vector<proto::EventInfo> Events(const std::string& task_id = "",
                                       const std::string& kind = "");
  bool HasEvent(const std::string& task_id, const std::string& kind);
  json Status();
  // status lists a pause of this kind ("budget", "circuit", "rate_limit", ...).
  bool PausedBy(const std::string& kind);
  // Waits until the task reaches `state`.
  bool WaitState(const std::string& id, proto::TaskState state, int64_t timeout_ms = 20'000);
  // The fake agent's run log: "<task> <attempt> <pid>" lines.
  std::vector<std::string> Runs();
  std::string SupervisorLog();

 private:
  ForgeOptions options_;
  std::string dir_, state_dir_, fake_state_, config_path_;
  pid_t pid_ = -1;
  std::unique_ptr<ControlClient> ctl_;
  std::unique_ptr<store::Store> db_;
};

}  // namespace forge::itest

// Header-only: the integration binary globs *_test.cc only.
#include "tests/integration/harness_impl.h"
