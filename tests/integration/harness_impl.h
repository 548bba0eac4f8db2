// Definitions for harness.h (header-only; see there).
#pragma once

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "proto/endpoints.h"
#include "tests/integration/harness.h"

namespace forge::itest {

// FORGE_TEST_BIN_DIR overrides the build's bin dir, e.g. to run these tests
// against the sanitizer build's binaries.
inline std::string BinPath(const std::string& name) {
  const char* dir = std::getenv("FORGE_TEST_BIN_DIR");
  return std::string(dir != nullptr && *dir != '\0' ? dir : FORGE_BIN_DIR) + "/" + name;
}
inline std::string FakeAgent() {
  return std::string(FORGE_FAKES_DIR) + "/agent.sh";
}

inline bool WaitFor(const std::function<bool()>& cond, int64_t timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

inline bool ProcessAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

inline std::pair<int, std::string> RunCtl(const std::string& state_dir,
                                          const std::vector<std::string>& args) {
  SpawnOptions c;
  c.argv = {BinPath("forge-ctl"), "--state-dir", state_dir};
  c.argv.insert(c.argv.end(), args.begin(), args.end());
  c.env = CurrentEnvironment();
  auto r = RunCommand(c, 30'000);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().ToString());
  return r.ok() ? std::make_pair(r->status.exit_code, r->output) : std::make_pair(-1, "");
}

inline void Sql(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
      << sql << ": " << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

inline std::string ConfigYaml(const ForgeOptions& o) {
  std::ostringstream y;
  y << "workers: " << o.workers << "\n"
    << "critics: " << o.critics << "\n"
    << "agent:\n"
    << "  profile: " << o.profile << "\n"
    << "  command: [sh, \"" << FakeAgent() << "\"]\n"
    << "  timeout: " << o.timeout << "\n"
    << "  stall_timeout: " << o.stall_timeout << "\n"
    << "  pass_env: [FAKE_STATE";
  for (const auto& name : o.pass_env) y << ", " << name;
  y << "]\n"
    << o.agent_yaml << "critic:\n"
    << "  verify_timeout: " << o.verify_timeout << "\n"
    << "  verify: [";
  for (size_t i = 0; i < o.verify.size(); ++i) y << (i ? ", " : "") << json(o.verify[i]).dump();
  y << "]\n"
    << o.critic_yaml << "retry: {max_attempts: " << o.max_attempts
    << ", backoff_base: " << o.backoff_base << ", backoff_max: " << o.backoff_max
    << ", max_infra_retries: " << o.max_infra_retries << "}\n"
    << "watchdog: {heartbeat_interval: " << o.heartbeat_interval
    << ", heartbeat_timeout: " << o.heartbeat_timeout << ", kill_grace: " << o.kill_grace
    << ", shutdown_grace: " << o.shutdown_grace
    << (o.workspace_lock_wait.empty() ? "" : ", workspace_lock_wait: " + o.workspace_lock_wait)
    << "}\n"
    << "circuit_breaker: {consecutive_failures: " << o.circuit_failures
    << ", cooldown: " << o.circuit_cooldown << "}\n"
    << "budget: {daily_usd: " << o.daily_usd << ", task_usd: " << o.task_usd
    << (o.token_prices.empty() ? "" : ", token_prices: " + o.token_prices) << "}\n"
    << o.extra_yaml;
  return y.str();
}

// ---- ControlClient ----

inline ControlClient::ControlClient(const std::string& state_dir)
    : endpoint_(proto::ResolveEndpoints(state_dir).control) {
  Reset();
}

inline void ControlClient::Reset() {
  socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  socket_->set(zmq::sockopt::linger, 0);
  socket_->connect(endpoint_);
}

inline std::optional<std::string> ControlClient::RawCall(const std::string& bytes,
                                                         int64_t timeout_ms) {
  socket_->send(zmq::message_t(), zmq::send_flags::sndmore);
  socket_->send(zmq::buffer(bytes), zmq::send_flags::none);
  zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) {
    Reset();  // a late reply must not answer the next request
    return std::nullopt;
  }
  std::string body;
  while (true) {
    zmq::message_t frame;
    (void)socket_->recv(frame);
    if (frame.size() > 0) body = frame.to_string();
    if (!frame.more()) break;
  }
  return body;
}

inline Result<json> ControlClient::Call(const std::string& cmd, json args, int64_t timeout_ms) {
  auto reply = RawCall(proto::EncodeControlRequest(cmd, std::move(args)), timeout_ms);
  if (!reply) return MakeError(ErrorCode::kTimeout, "no reply to " + cmd);
  return proto::DecodeReply(*reply);
}

// ---- Forge ----

inline Forge::Forge(ForgeOptions options) : options_(std::move(options)) {
  char tmpl[] = "/tmp/forge-itest-XXXXXX";
  char* d = ::mkdtemp(tmpl);
  if (d == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = d;
  state_dir_ = dir_ + "/state";
  fake_state_ = dir_ + "/fake";
  config_path_ = dir_ + "/forge.yaml";
  std::filesystem::create_directories(fake_state_);
  Rewrite(options_);
}

inline Forge::~Forge() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Reap(pid_);
  }
  db_.reset();
  if (::testing::Test::HasFailure()) {
    std::string log = SupervisorLog();
    if (log.size() > 6000) log = log.substr(log.size() - 6000);
    std::cerr << "---- supervisor.log (tail) ----\n" << log << "\n----\n";
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

inline void Forge::Rewrite(const ForgeOptions& options) {
  options_ = options;
  std::ofstream(config_path_) << ConfigYaml(options_);
}

inline void Forge::Start(bool wait_children) {
  SpawnOptions o;
  o.argv = {BinPath("forge-supervisor"),
            "start",
            "--foreground",
            "--config",
            config_path_,
            "--state-dir",
            state_dir_};
  auto env = options_.extra_env;
  env["FAKE_STATE"] = fake_state_;
  // extra_env replaces a variable of the same name (PATH for a fake git).
  for (auto& kv : CurrentEnvironment()) {
    if (env.count(kv.substr(0, kv.find('='))) == 0) o.env.push_back(std::move(kv));
  }
  for (const auto& [k, v] : env) o.env.push_back(k + "=" + v);
  o.stdin_mode = Stdio::kNull;
  o.stdout_mode = Stdio::kNull;
  o.stderr_mode = Stdio::kNull;
  o.die_with_parent = true;
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().message;
  pid_ = p->pid;
  ctl_.reset();
  bool up = WaitFor(
      [&] {
        if (!std::filesystem::exists(state_dir_ + "/supervisor.lock")) return false;
        if (!ctl_) ctl_ = std::make_unique<ControlClient>(state_dir_);
        return ctl_->Call("status", json::object(), 200).ok();
      },
      15'000);
  ASSERT_TRUE(up) << "supervisor did not answer status\n" << SupervisorLog();
  if (!wait_children) return;
  // Children up too, so tests start from a known pool.
  ASSERT_TRUE(WaitFor(
      [&] {
        json s = Status();
        int idle = 0;
        for (const auto& c : s["children"]) idle += c["state"] == "idle";
        return idle >= options_.workers + options_.critics;
      },
      15'000))
      << Status().dump();
}

inline ExitStatus Forge::Signal(int sig, int64_t timeout_ms) {
  ExitStatus st;
  if (pid_ <= 0) return st;
  ::kill(pid_, sig);
  std::optional<ExitStatus> got;
  WaitFor([&] { return (got = TryReap(pid_)).has_value(); }, timeout_ms);
  if (!got) {
    ADD_FAILURE() << "supervisor did not exit within " << timeout_ms << " ms after signal " << sig;
    ::kill(pid_, SIGKILL);
    got = Reap(pid_);
  }
  pid_ = -1;
  return *got;
}

inline std::string Forge::Submit(const std::string& mode, std::map<std::string, std::string> env,
                                 json extra) {
  env["FAKE_MODE"] = mode;
  json task = extra;
  if (!task.contains("title")) task["title"] = "fake " + mode;
  if (!task.contains("brief")) task["brief"] = "run the fake agent in mode " + mode;
  task["env"] = env;
  auto r = ctl().Call("submit", json{{"tasks", json::array({task})}});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return "";
  return (*r)["ids"][0].get<std::string>();
}

inline std::vector<std::string> Forge::SubmitMany(int n, const std::string& mode) {
  json tasks = json::array();
  for (int i = 0; i < n; ++i) {
    tasks.push_back(json{
        {"title", "task " + std::to_string(i)}, {"brief", "b"}, {"env", {{"FAKE_MODE", mode}}}});
  }
  auto r = ctl().Call("submit", json{{"tasks", tasks}});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return {};
  return (*r)["ids"].get<std::vector<std::string>>();
}

inline store::Store& Forge::db() {
  if (!db_) {
    store::StoreOptions o;
    o.db_path = state_dir_ + "/forge.db";
    o.read_only = true;
    auto s = store::Store::Open(o);
    if (!s.ok()) throw std::runtime_error("open store: " + s.error().message);
    db_ = std::move(*s);
  }
  return *db_;
}

inline proto::TaskInfo Forge::Task(const std::string& id) {
  auto t = db().GetTask(id);
  EXPECT_TRUE(t.ok()) << id;
  return t.ok() ? *t : proto::TaskInfo{};
}

inline std::vector<proto::AttemptInfo> Forge::Attempts(const std::string& id) {
  auto a = db().Attempts(id);
  EXPECT_TRUE(a.ok()) << id;
  return a.ok() ? *a : std::vector<proto::AttemptInfo>{};
}

inline std::vector<proto::EventInfo> Forge::Events(const std::string& task_id,
                                                   const std::string& kind) {
  store::EventFilter f;
  f.task_id = task_id;
  f.kind = kind;
  f.limit = 100000;
  auto e = db().Events(f);
  return e.ok() ? *e : std::vector<proto::EventInfo>{};
}

inline bool Forge::HasEvent(const std::string& task_id, const std::string& kind) {
  return !Events(task_id, kind).empty();
}

inline bool Forge::PausedBy(const std::string& kind) {
  for (const auto& p : Status().value("pause_reasons", json::array())) {
    if (p.value("kind", "") == kind) return true;
  }
  return false;
}

inline json Forge::Status() {
  auto s = ctl().Call("status", json::object(), 2000);
  return s.ok() ? *s : json::object();
}

inline bool Forge::WaitState(const std::string& id, proto::TaskState state, int64_t timeout_ms) {
  return WaitFor(
      [&] {
        auto t = db().GetTask(id);
        return t.ok() && t->state == state;
      },
      timeout_ms);
}

inline std::vector<std::string> Forge::Runs() {
  std::ifstream in(fake_state_ + "/runs");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

inline std::string Forge::SupervisorLog() {
  std::ifstream in(state_dir_ + "/supervisor.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace forge::itest
