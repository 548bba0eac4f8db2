// forge_bench_floor: the least a program built to Forge's design can do per
// task, to tell figure 1's gap apart (bench/README.md, "the design floor").
//
//   forge_bench_floor run DIR N W    # prints nothing; writes DIR/figures
//   forge_bench_floor worker|critic ENDPOINT   (spawned by `run`)
//
// `run` is the supervisor: it owns a SQLite database in WAL mode
// (synchronous=NORMAL, as Forge's default), binds a ZeroMQ ROUTER on an ipc
// socket and spawns W workers and W critics as separate processes that
// connect with DEALER sockets and exchange JSON messages with it. For each
// task it commits the lease before sending the dispatch, the agent's exit
// before sending the check, and the verdict; a worker spawns the agent
// (`/bin/true`), a critic the check (`sh -c true`), each with posix_spawn,
// and waits for it. That is the design's irreducible work: the separate
// processes, the ledger written before each message, the messages, the
// spawns. Nothing else: no event log, no logging, no workspace or log
// directory, no prompt, no heartbeats, no retries, no recovery.
//
// DIR/figures holds, one per line: the time from inserting the N ready
// tasks (one transaction, once every child has said hello) to the last
// verdict committed, the same span as figure 1's Forge time (its submit
// request to all done); then the CPU milliseconds over that span of the
// supervisor, of the workers, of the critics (each from its first job), and
// of the agents and of the checks they ran.
#include <spawn.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "cpu_time.h"

extern char** environ;

namespace {

using json = nlohmann::json;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "forge_bench_floor: %s\n", what.c_str());
  std::exit(1);
}

// posix_spawn is glibc's clone(CLONE_VM | CLONE_VFORK): the cheapest spawn.
pid_t Spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) {
    Die("posix_spawn " + argv[0]);
  }
  return pid;
}

int SpawnAndWait(const std::vector<std::string>& argv) {
  pid_t pid = Spawn(argv);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) Die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void Send(zmq::socket_t& s, const json& body) {
  s.send(zmq::buffer(body.dump()), zmq::send_flags::none);
}

// ---------------------------------------------------------------- worker / critic

int Child(const std::string& role, const std::string& endpoint) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 5000);  // the last message (cpu) must leave before exit
  s.connect(endpoint);
  Send(s, {{"type", "hello"}, {"role", role}});
  const std::vector<std::string> argv = role == "worker"
                                            ? std::vector<std::string>{"/bin/true"}
                                            : std::vector<std::string>{"/bin/sh", "-c", "true"};
  double self0 = -1, children0 = 0;  // at the first message: startup is not counted
  while (true) {
    zmq::message_t m;
    if (!s.recv(m)) continue;
    json in = json::parse(m.to_string_view());
    if (self0 < 0) {
      self0 = CpuMs(RUSAGE_SELF);
      children0 = CpuMs(RUSAGE_CHILDREN);
    }
    if (in["type"] == "stop") {
      Send(s, {{"type", "cpu"},
               {"self_ms", CpuMs(RUSAGE_SELF) - self0},
               {"children_ms", CpuMs(RUSAGE_CHILDREN) - children0}});
      return 0;
    }
    int code = SpawnAndWait(argv);
    Send(s, {{"type", role == "worker" ? "result" : "verdict"},
             {"task", in["task"]},
             {"attempt", in["attempt"]},
             {"exit_code", code}});
  }
}

// ---------------------------------------------------------------- supervisor

class Db {
 public:
  explicit Db(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) Die("open " + path);
    Exec(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
        "CREATE TABLE tasks(id INTEGER PRIMARY KEY, state TEXT NOT NULL,"
        "  attempts INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL);"
        "CREATE INDEX tasks_ready ON tasks(state, id);"
        "CREATE TABLE attempts(task INTEGER NOT NULL, n INTEGER NOT NULL, outcome TEXT,"
        "  exit_code INTEGER, started_at INTEGER NOT NULL, ended_at INTEGER,"
        "  PRIMARY KEY(task, n));");
  }
  ~Db() {
    for (auto* s : stmts_) sqlite3_finalize(s);
    sqlite3_close(db_);
  }
  void Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      Die(std::string("sql: ") + (err ? err : "?"));
    }
  }
  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) != SQLITE_OK) {
      Die(std::string("prepare: ") + sqlite3_errmsg(db_));
    }
    stmts_.push_back(s);
    return s;
  }
  // Steps a prepared statement bound with integers; returns the first
  // column of its row, or -1 when it returned none.
  int64_t Run(sqlite3_stmt* s, std::initializer_list<int64_t> args) {
    int i = 1;
    for (int64_t a : args) sqlite3_bind_int64(s, i++, a);
    int rc = sqlite3_step(s);
    int64_t out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) Die(std::string("step: ") + sqlite3_errmsg(db_));
    sqlite3_reset(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> stmts_;
};

int64_t NowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

class Floor {
 public:
  Floor(const std::string& dir, int n, int w)
      : n_(n), w_(w), db_(dir + "/floor.db"), router_(ctx_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    // A child that died (it says why on stderr) would otherwise hang the run.
    router_.set(zmq::sockopt::rcvtimeo, 60'000);
    endpoint_ = "ipc://" + dir + "/floor.sock";
    router_.bind(endpoint_);
    lease_ = db_.Prepare(
        "UPDATE tasks SET state = 'running', attempts = attempts + 1, updated_at = ?1"
        " WHERE id = (SELECT id FROM tasks WHERE state = 'ready' ORDER BY id LIMIT 1)"
        " RETURNING id");
    attempt_ = db_.Prepare(
        "INSERT INTO attempts(task, n, started_at) SELECT id, attempts, ?2 FROM tasks"
        " WHERE id = ?1 RETURNING n");
    ended_ = db_.Prepare(
        "UPDATE attempts SET outcome = 'exited', exit_code = ?3, ended_at = ?4"
        " WHERE task = ?1 AND n = ?2");
    verifying_ = db_.Prepare("UPDATE tasks SET state = 'verifying', updated_at = ?2 WHERE id = ?1");
    done_ = db_.Prepare("UPDATE tasks SET state = 'done', updated_at = ?2 WHERE id = ?1");
    insert_ = db_.Prepare("INSERT INTO tasks(id, state, updated_at) VALUES(?1, 'ready', ?2)");
  }

  struct Figures {
    double elapsed_ms = 0, supervisor_ms = 0, workers_ms = 0, critics_ms = 0, agents_ms = 0,
           checks_ms = 0;
  };
  Figures Run(const std::string& self) {
    for (int i = 0; i < w_; ++i) {
      children_.push_back(Spawn({self, "worker", endpoint_}));
      children_.push_back(Spawn({self, "critic", endpoint_}));
    }
    for (int hellos = 0; hellos < 2 * w_;) {
      auto [from, in] = Receive();
      (in["role"] == "worker" ? idle_workers_ : idle_critics_).push_back(from);
      if (in["role"] == "worker") workers_.push_back(from);
      ++hellos;
    }
    Figures out;
    double cpu0 = CpuMs(RUSAGE_SELF);
    auto t0 = std::chrono::steady_clock::now();
    db_.Exec("BEGIN");
    for (int i = 1; i <= n_; ++i) db_.Run(insert_, {i, NowMs()});
    db_.Exec("COMMIT");
    while (!idle_workers_.empty() && Dispatch(idle_workers_.front())) idle_workers_.pop_front();
    for (int done = 0; done < n_;) {
      auto [from, in] = Receive();
      int64_t task = in["task"], attempt = in["attempt"], code = in["exit_code"];
      if (code != 0) Die("task " + std::to_string(task) + ": exit code " + std::to_string(code));
      if (in["type"] == "result") {
        Commit([&] {
          db_.Run(ended_, {task, attempt, code, NowMs()});
          db_.Run(verifying_, {task, NowMs()});
        });
        checks_.push_back({task, attempt});
        if (!Dispatch(from)) idle_workers_.push_back(from);
      } else {
        Commit([&] { db_.Run(done_, {task, NowMs()}); });
        ++done;
        idle_critics_.push_back(from);
      }
      while (!checks_.empty() && !idle_critics_.empty()) {
        auto [t, a] = checks_.front();
        checks_.pop_front();
        SendTo(idle_critics_.front(), {{"type", "verify"}, {"task", t}, {"attempt", a}});
        idle_critics_.pop_front();
      }
    }
    out.elapsed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    out.supervisor_ms = CpuMs(RUSAGE_SELF) - cpu0;
    for (const auto& id : all_) SendTo(id, {{"type", "stop"}});
    for (size_t i = 0; i < all_.size(); ++i) {
      auto [from, in] = Receive();
      bool worker = std::find(workers_.begin(), workers_.end(), from) != workers_.end();
      (worker ? out.workers_ms : out.critics_ms) += in["self_ms"].get<double>();
      (worker ? out.agents_ms : out.checks_ms) += in["children_ms"].get<double>();
    }
    for (pid_t pid : children_) waitpid(pid, nullptr, 0);
    return out;
  }

 private:
  template <typename F>
  void Commit(F writes) {
    db_.Exec("BEGIN IMMEDIATE");
    writes();
    db_.Exec("COMMIT");
  }
  // Leases the next ready task to `worker` (committed before the dispatch
  // is sent); false when none is ready.
  bool Dispatch(const std::string& worker) {
    int64_t task = -1, attempt = -1;
    Commit([&] {
      task = db_.Run(lease_, {NowMs()});
      if (task >= 0) attempt = db_.Run(attempt_, {task, NowMs()});
    });
    if (task < 0) return false;
    SendTo(worker, {{"type", "dispatch"},
                    {"task", task},
                    {"attempt", attempt},
                    {"agent", {{"argv", {"/bin/true"}}}}});
    return true;
  }
  std::pair<std::string, json> Receive() {
    zmq::message_t id, body;
    if (!router_.recv(id) || !router_.recv(body)) Die("no message from the children for 60 s");
    std::string from = id.to_string();
    if (std::find(all_.begin(), all_.end(), from) == all_.end()) all_.push_back(from);
    return {from, json::parse(body.to_string_view())};
  }
  void SendTo(const std::string& id, const json& body) {
    router_.send(zmq::buffer(id), zmq::send_flags::sndmore);
    Send(router_, body);
  }

  int n_, w_;
  Db db_;
  zmq::context_t ctx_{1};
  zmq::socket_t router_;
  std::string endpoint_;
  sqlite3_stmt *lease_, *attempt_, *ended_, *verifying_, *done_, *insert_;
  std::vector<pid_t> children_;
  std::vector<std::string> all_, workers_;
  std::deque<std::string> idle_workers_, idle_critics_;
  std::deque<std::pair<int64_t, int64_t>> checks_;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && (args[0] == "worker" || args[0] == "critic")) {
    return Child(args[0], args[1]);
  }
  if (args.size() != 4 || args[0] != "run") {
    Die("usage: forge_bench_floor run DIR N W | worker|critic ENDPOINT");
  }
  int n = std::atoi(args[2].c_str()), w = std::atoi(args[3].c_str());
  if (n < 1 || w < 1)
    Die("N and W must be positive integers, got '" + args[2] + "' '" + args[3] + "'");
  Floor floor(args[1], n, w);
  auto f = floor.Run(argv[0]);
  std::ofstream(args[1] + "/figures") << f.elapsed_ms << "\n"
                                      << f.supervisor_ms << "\n"
                                      << f.workers_ms << "\n"
                                      << f.critics_ms << "\n"
                                      << f.agents_ms << "\n"
                                      << f.checks_ms << "\n";
  return 0;
}
