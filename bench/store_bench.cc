// Dispatch cost against queue length: the median cost of one
// NextReady + LeaseAttempt + CloseAttempt(done) cycle with 1,000 and with
// 1,000,000 ready tasks queued. The ready selection reads an index, so the
// ratio should stay within 2x (issue 2).
//
//   store_bench            1,000 vs 1,000,000
//   store_bench --quick    1,000 vs 20,000 (CI smoke)
//   --check                exit 1 when the ratio is over 2x
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "supervisor/store/store.h"

namespace {

using forge::store::Close;
using forge::store::Lease;
using forge::store::Store;
using forge::store::StoreOptions;
using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "store_bench: %s\n", what.c_str());
  std::exit(2);
}

void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Die(std::string(sql) + ": " + (err ? err : "?"));
  }
}

// Loads n ready tasks straight into the table in one transaction (the
// benchmark measures dispatch, not submission).
void BulkLoad(sqlite3* db, int64_t n) {
  Exec(db, "BEGIN IMMEDIATE");
  sqlite3_stmt* stmt = nullptr;
  const char* sql =
      "INSERT INTO tasks(seq, id, title, state, priority, max_attempts, created_at, updated_at) "
      "VALUES(?, ?, 'bulk', 'ready', ?, 3, 0, 0)";
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) Die(sqlite3_errmsg(db));
  std::mt19937 rng(1);
  for (int64_t seq = 1; seq <= n; ++seq) {
    std::string id = std::to_string(seq);
    id.insert(id.begin(), 't');  // not "t" + ...: GCC 12 -O3 false -Wrestrict (PR 105329)
    sqlite3_bind_int64(stmt, 1, seq);
    sqlite3_bind_text(stmt, 2, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(stmt, 3, static_cast<int>(rng() % 10));
    if (sqlite3_step(stmt) != SQLITE_DONE) Die(sqlite3_errmsg(db));
    sqlite3_reset(stmt);
  }
  sqlite3_finalize(stmt);
  Exec(db, "COMMIT");
}

struct Figures {
  double cycle_us;
  double select_us;
  double load_s;
};

Figures Measure(int64_t queued, int cycles) {
  char tmpl[] = "/tmp/forge-store-bench-XXXXXX";
  if (!mkdtemp(tmpl)) Die("mkdtemp failed");
  std::string dir = tmpl;
  StoreOptions options;
  options.db_path = dir + "/forge.db";
  options.events_jsonl_path = dir + "/events.jsonl";
  auto opened = Store::Open(options);
  if (!opened.ok()) Die(opened.error().ToString());
  Store& store = **opened;

  auto t0 = Clock::now();
  BulkLoad(store.raw(), queued);
  if (!store.Checkpoint().ok()) Die("checkpoint failed");
  double load_s = Micros(Clock::now() - t0) / 1e6;

  std::vector<double> cycle, select;
  for (int i = 0; i < cycles + cycles / 10; ++i) {  // the first tenth warms up
    auto start = Clock::now();
    auto next = store.NextReady();
    if (!next.ok() || !*next) Die("no ready task");
    auto selected = Clock::now();
    auto attempt = store.LeaseAttempt((*next)->id, Lease{});
    if (!attempt.ok()) Die(attempt.error().ToString());
    Close close;
    close.outcome = forge::proto::Outcome::kPassed;
    close.next_state = forge::proto::TaskState::kDone;
    if (!store.CloseAttempt(attempt->id, close).ok()) Die("close failed");
    auto end = Clock::now();
    // Keep the queue length constant (not timed).
    forge::proto::SubmitTask refill;
    refill.title = "refill";
    refill.priority = static_cast<int>(i % 10);
    if (!store.Submit({refill}).ok()) Die("refill failed");
    if (i >= cycles / 10) {
      cycle.push_back(Micros(end - start));
      select.push_back(Micros(selected - start));
    }
  }
  opened->reset();
  std::filesystem::remove_all(dir);
  return {Median(cycle), Median(select), load_s};
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, check = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--check") {
      check = true;
    } else {
      std::fprintf(stderr, "usage: store_bench [--quick] [--check]\n");
      return 2;
    }
  }
  const int64_t small = 1000, large = quick ? 20'000 : 1'000'000;
  const int cycles = quick ? 500 : 2000;
  Figures a = Measure(small, cycles);
  Figures b = Measure(large, cycles);
  double ratio = b.cycle_us / a.cycle_us;
  std::printf("queued %9lld: load %6.2f s, select %7.1f us, select+lease+close %7.1f us (median)\n",
              static_cast<long long>(small), a.load_s, a.select_us, a.cycle_us);
  std::printf("queued %9lld: load %6.2f s, select %7.1f us, select+lease+close %7.1f us (median)\n",
              static_cast<long long>(large), b.load_s, b.select_us, b.cycle_us);
  std::printf("ratio %.2fx (select alone %.2fx), target <= 2x: %s\n", ratio,
              b.select_us / a.select_us, ratio <= 2.0 ? "ok" : "OVER");
  return check && ratio > 2.0 ? 1 : 0;
}
