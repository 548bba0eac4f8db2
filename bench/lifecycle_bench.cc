// The store's share of one task: the supervisor's four transactions of a
// task that passes on its first attempt (lease, agent started, agent result,
// close after the critic's pass), in process, with the events file on, as
// the supervisor opens the store (manual checkpoints). Prints the median
// time of a whole lifecycle and the write-ahead-log frames each task wrote,
// against a baseline run in the same process: the same four transactions as
// bare SQL on a table with one row per task (what any durable ledger of the
// four steps writes at least).
//
//   lifecycle_bench [--tasks N] [--state-dir DIR]   (default 2,000 in $TMPDIR)
//
// Exit codes: 0 printed, 1 a step failed (named on stderr), 2 bad usage.
// The frames are exact and repeat from run to run; the times move with the
// machine. For instruction counts run it under `valgrind --tool=callgrind`.
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "supervisor/store/store.h"

namespace {

using forge::store::Store;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "lifecycle_bench: %s\n", what.c_str());
  std::exit(1);
}

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Frames in the write-ahead log (not checkpointed: the caller checkpoints
// before it starts counting).
int WalFrames(sqlite3* db) {
  int log = 0, done = 0;
  if (sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK)
    Die(std::string("checkpoint: ") + sqlite3_errmsg(db));
  return log;
}

void Truncate(sqlite3* db) {
  if (sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr) !=
      SQLITE_OK)
    Die(std::string("checkpoint: ") + sqlite3_errmsg(db));
}

struct Figures {
  double us_per_task = 0;
  double frames_per_task = 0;
  // Frames each of the store's four transactions wrote, per task.
  double lease = 0, started = 0, result = 0, close = 0;
};

Figures RunStore(const std::string& dir, int n) {
  forge::store::StoreOptions options;
  options.db_path = dir + "/forge.db";
  options.events_jsonl_path = dir + "/events.jsonl";
  options.manual_checkpoints = true;
  auto opened = Store::Open(options);
  if (!opened.ok()) Die(opened.error().ToString());
  Store& store = **opened;
  std::vector<forge::proto::SubmitTask> batch(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    batch[static_cast<size_t>(i)].title = "noop";
    batch[static_cast<size_t>(i)].brief = "b";
    batch[static_cast<size_t>(i)].verify = {"true"};
    batch[static_cast<size_t>(i)].allow_empty = true;
  }
  if (auto s = store.Submit(batch); !s.ok()) Die(s.error().ToString());
  Truncate(store.raw());
  std::vector<double> took;
  int64_t frames[4] = {0, 0, 0, 0};
  auto count = [&](int step, int64_t& before) {
    frames[step] += store.WalFrames() - before;
    before = store.WalFrames();
  };
  for (int i = 0; i < n; ++i) {
    int64_t before = store.WalFrames();
    auto start = Clock::now();
    auto next = store.NextReady();
    if (!next.ok() || !*next) Die("no ready task");
    forge::store::Lease lease;
    lease.worker_pid = 4242;
    lease.log_path = dir + "/logs/" + (*next)->id + ".1.log";
    auto attempt = store.LeaseAttempt((*next)->id, lease);
    if (!attempt.ok()) Die(attempt.error().ToString());
    count(0, before);
    if (auto s = store.MarkAgentStarted(attempt->id, 5000 + i, 5000 + i, 123456); !s.ok())
      Die(s.error().ToString());
    count(1, before);
    forge::store::AgentReport report;
    report.outcome = forge::proto::Outcome::kPassed;
    report.exit_code = 0;
    report.duration_ms = 1;
    report.log_path = lease.log_path;
    auto recorded = store.RecordAgentResult(attempt->id, report);
    if (!recorded.ok()) Die(recorded.error().ToString());
    count(2, before);
    forge::store::Close close;
    close.outcome = forge::proto::Outcome::kPassed;
    close.verdict = "pass";
    close.next_state = forge::proto::TaskState::kDone;
    forge::proto::CheckResult check;
    check.name = "true";
    check.passed = true;
    check.exit_code = 0;
    close.checks = {check};
    if (auto s = store.CloseAttempt(attempt->id, close); !s.ok()) Die(s.error().ToString());
    count(3, before);
    took.push_back(Micros(Clock::now() - start));
  }
  Figures f;
  f.us_per_task = Median(took);
  f.frames_per_task = static_cast<double>(WalFrames(store.raw())) / n;
  f.lease = static_cast<double>(frames[0]) / n;
  f.started = static_cast<double>(frames[1]) / n;
  f.result = static_cast<double>(frames[2]) / n;
  f.close = static_cast<double>(frames[3]) / n;
  return f;
}

void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK)
    Die(std::string(sql) + ": " + (err ? err : "?"));
}

// One row a task, one UPDATE a step, each its own transaction.
Figures RunBaseline(const std::string& dir, int n) {
  sqlite3* db = nullptr;
  if (sqlite3_open((dir + "/baseline.db").c_str(), &db) != SQLITE_OK) Die("open baseline.db");
  Exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;");
  Exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, state TEXT, pid INTEGER, outcome TEXT)");
  Exec(db, "BEGIN");
  for (int i = 0; i < n; ++i) Exec(db, "INSERT INTO t(state) VALUES('ready')");
  Exec(db, "COMMIT");
  Truncate(db);
  const char* steps[] = {"UPDATE t SET state='running' WHERE id=?",
                         "UPDATE t SET pid=42 WHERE id=?",
                         "UPDATE t SET state='reviewing', outcome='passed' WHERE id=?",
                         "UPDATE t SET state='done' WHERE id=?"};
  std::vector<sqlite3_stmt*> stmts;
  for (const char* sql : steps) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) Die(sqlite3_errmsg(db));
    stmts.push_back(s);
  }
  std::vector<double> took;
  for (int i = 1; i <= n; ++i) {
    auto start = Clock::now();
    for (sqlite3_stmt* s : stmts) {
      Exec(db, "BEGIN IMMEDIATE");
      sqlite3_bind_int(s, 1, i);
      if (sqlite3_step(s) != SQLITE_DONE) Die(sqlite3_errmsg(db));
      sqlite3_reset(s);
      Exec(db, "COMMIT");
    }
    took.push_back(Micros(Clock::now() - start));
  }
  Figures f;
  f.us_per_task = Median(took);
  f.frames_per_task = static_cast<double>(WalFrames(db)) / n;
  for (sqlite3_stmt* s : stmts) sqlite3_finalize(s);
  sqlite3_close(db);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 2000;
  std::string parent = std::filesystem::temp_directory_path().string();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--tasks" && i + 1 < argc) {
      std::string value = argv[++i];
      char* end = nullptr;
      long parsed = std::strtol(value.c_str(), &end, 10);
      if (end == value.c_str() || *end != '\0' || parsed <= 0 || parsed > 10'000'000)
        Die("--tasks must be a positive integer, got '" + value + "'");
      n = static_cast<int>(parsed);
    } else if (arg == "--state-dir" && i + 1 < argc) {
      parent = argv[++i];
    } else {
      std::fprintf(stderr, "usage: lifecycle_bench [--tasks N] [--state-dir DIR]\n");
      return 2;
    }
  }
  std::string tmpl = parent + "/forge-lifecycle-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp in " + parent + ": " + std::strerror(errno));
  Figures base = RunBaseline(tmpl, n);
  Figures store = RunStore(tmpl, n);
  std::filesystem::remove_all(tmpl);
  std::printf("%d tasks, one lifecycle each (lease, agent started, result, close)\n", n);
  std::printf("store     %7.1f us/task  %5.1f WAL frames/task\n", store.us_per_task,
              store.frames_per_task);
  std::printf("          (lease %.1f, agent started %.1f, result %.1f, close %.1f)\n", store.lease,
              store.started, store.result, store.close);
  std::printf("baseline  %7.1f us/task  %5.1f WAL frames/task (four UPDATEs of one row)\n",
              base.us_per_task, base.frames_per_task);
  std::printf("ratio     %7.2f          %5.2f\n", store.us_per_task / base.us_per_task,
              store.frames_per_task / base.frames_per_task);
  return 0;
}
