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
//   --pages           also each transaction's frames by b-tree (table or index)
//   --brief-bytes N   each task's brief N bytes long (default 1): rows of a
//                     few KB span more pages (the page size's trade-off)
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
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "supervisor/store/sqlite_util.h"
#include "supervisor/store/store.h"

namespace {

using forge::store::Store;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "lifecycle_bench: %s\n", what.c_str());
  std::exit(1);
}

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

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

int PageSize(sqlite3* db) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &s, nullptr) != SQLITE_OK)
    Die(std::string("page_size: ") + sqlite3_errmsg(db));
  int size = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
  sqlite3_finalize(s);
  return size;
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
  double step_frames[4] = {0, 0, 0, 0};  // in kSteps' order
  // --pages: for each step, the b-trees (tables, indexes) of its frames.
  std::map<std::string, double> pages[4];
  int page_size = 0;  // the database's, as the store created it
};

const char* const kSteps[4] = {"lease", "agent started", "result", "close"};

uint32_t BigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Which b-tree each page of the database belongs to (SQLite's dbstat table;
// empty when this SQLite lacks it).
std::map<uint32_t, std::string> PageOwners(sqlite3* db) {
  std::map<uint32_t, std::string> owners;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT name, pageno FROM dbstat", -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      owners[static_cast<uint32_t>(sqlite3_column_int64(s, 1))] =
          reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    }
  }
  sqlite3_finalize(s);
  return owners;
}

// Reads the -wal file (emptied before the lifecycles, so it holds exactly
// their 4 n transactions) and counts each transaction's frames by b-tree, a
// transaction ending at its commit frame (file format: a 32-byte header,
// then frames of a 24-byte header, whose bytes 4-7 are non-zero only in a
// commit frame, and a page).
void CountPages(const std::string& wal_path, sqlite3* db, int n, Figures& f) {
  std::ifstream in(wal_path, std::ios::binary);
  std::string wal((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (wal.size() < 32) return;
  const auto* bytes = reinterpret_cast<const unsigned char*>(wal.data());
  const size_t page_size = BigEndian32(bytes + 8);
  std::map<uint32_t, std::string> owners = PageOwners(db);
  int transaction = 0;
  for (size_t at = 32; at + 24 + page_size <= wal.size() && transaction < 4 * n;
       at += 24 + page_size) {
    if (std::memcmp(bytes + at + 8, bytes + 16, 8) != 0) break;  // salt: an older frame
    auto owner = owners.find(BigEndian32(bytes + at));
    f.pages[transaction % 4][owner == owners.end() ? "(new page)" : owner->second] += 1.0 / n;
    if (BigEndian32(bytes + at + 4) != 0) ++transaction;
  }
}

Figures RunStore(const std::string& dir, int n, bool pages, int brief_bytes) {
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
    batch[static_cast<size_t>(i)].brief = std::string(static_cast<size_t>(brief_bytes), 'b');
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
  if (pages) CountPages(dir + "/forge.db-wal", store.raw(), n, f);
  f.frames_per_task = static_cast<double>(WalFrames(store.raw())) / n;
  for (int step = 0; step < 4; ++step) f.step_frames[step] = static_cast<double>(frames[step]) / n;
  f.page_size = PageSize(store.raw());
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

// The value of a numeric option, in [least, most]; bad usage (exit 2) otherwise.
int Count(const std::string& flag, const std::string& value, long least, long most) {
  char* end = nullptr;
  long parsed = std::strtol(value.c_str(), &end, 10);
  if (end == value.c_str() || *end != '\0' || parsed < least || parsed > most) {
    std::fprintf(stderr, "lifecycle_bench: %s must be an integer from %ld to %ld, got '%s'\n",
                 flag.c_str(), least, most, value.c_str());
    std::exit(2);
  }
  return static_cast<int>(parsed);
}

}  // namespace

int main(int argc, char** argv) {
  // The baseline runs first and would initialize SQLite with its memory
  // statistics on, which the supervisor turns off: the store's lifecycle
  // took 8 % more instructions here than in the supervisor until session 19.
  forge::store::DisableMemoryStatistics();
  int n = 2000;
  int brief_bytes = 1;
  bool pages = false;
  std::string parent = std::filesystem::temp_directory_path().string();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--tasks" && i + 1 < argc) {
      n = Count(arg, argv[++i], 1, 10'000'000);
    } else if (arg == "--brief-bytes" && i + 1 < argc) {
      brief_bytes = Count(arg, argv[++i], 0, 1'000'000);
    } else if (arg == "--state-dir" && i + 1 < argc) {
      parent = argv[++i];
    } else if (arg == "--pages") {
      pages = true;
    } else {
      std::fprintf(stderr,
                   "usage: lifecycle_bench [--tasks N] [--state-dir DIR] [--pages] "
                   "[--brief-bytes N]\n");
      return 2;
    }
  }
  std::string tmpl = parent + "/forge-lifecycle-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp in " + parent + ": " + std::strerror(errno));
  Figures base = RunBaseline(tmpl, n);
  Figures store = RunStore(tmpl, n, pages, brief_bytes);
  std::filesystem::remove_all(tmpl);
  std::printf(
      "%d tasks, one lifecycle each (lease, agent started, result, close), briefs of %d "
      "bytes, %d-byte pages\n",
      n, brief_bytes, store.page_size);
  std::printf("store     %7.1f us/task  %5.1f WAL frames/task\n", store.us_per_task,
              store.frames_per_task);
  std::printf("          (%s %.1f, %s %.1f, %s %.1f, %s %.1f)\n", kSteps[0], store.step_frames[0],
              kSteps[1], store.step_frames[1], kSteps[2], store.step_frames[2], kSteps[3],
              store.step_frames[3]);
  for (int step = 0; pages && step < 4; ++step) {
    std::printf("          %s:", kSteps[step]);
    for (const auto& [btree, frames] : store.pages[step])
      std::printf(" %s %.2f", btree.c_str(), frames);
    std::printf("\n");
  }
  std::printf("baseline  %7.1f us/task  %5.1f WAL frames/task (four UPDATEs of one row)\n",
              base.us_per_task, base.frames_per_task);
  std::printf("ratio     %7.2f          %5.2f\n", store.us_per_task / base.us_per_task,
              store.frames_per_task / base.frames_per_task);
  return 0;
}
