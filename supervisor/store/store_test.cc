#include "supervisor/store/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>

#include "common/redact.h"
#include "common/sanitizers.h"
#include "common/utf8.h"
#include "supervisor/store/events_file.h"
#include "supervisor/store/rows.h"
#include "supervisor/store/schema.h"
#include "supervisor/store/sqlite_util.h"
#include "supervisor/store/submit_check.h"

namespace forge::store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/forge-store-test-XXXXXX";
    char* p = mkdtemp(tmpl);
    if (!p) std::abort();
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

proto::SubmitTask Task(const std::string& title, const std::string& id = "",
                       std::vector<std::string> deps = {}, int priority = 0) {
  proto::SubmitTask t;
  t.id = id;
  t.title = title;
  t.brief = "brief of " + title;
  t.depends_on = std::move(deps);
  t.priority = priority;
  return t;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class StoreTest : public ::testing::Test {
 protected:
  StoreOptions Options(bool read_only = false) {
    StoreOptions o;
    o.db_path = dir_.Path("forge.db");
    o.events_jsonl_path = read_only ? "" : dir_.Path("events.jsonl");
    o.read_only = read_only;
    o.clock = &clock_;
    return o;
  }

  std::unique_ptr<Store> OpenStore(bool read_only = false) {
    auto s = Store::Open(Options(read_only));
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // forge.db as a forge of schema `version` left it: its migrations, then `rows`.
  void CreateOldDatabase(int version, const std::string& rows) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.Path("forge.db").c_str(), &db), SQLITE_OK);
    for (int v = 0; v < version; ++v) {
      ASSERT_EQ(
          sqlite3_exec(db, Migrations()[static_cast<size_t>(v)].c_str(), nullptr, nullptr, nullptr),
          SQLITE_OK);
    }
    std::string meta =
        "INSERT INTO meta VALUES('schema_version', '" + std::to_string(version) + "');";
    ASSERT_EQ(sqlite3_exec(db, (meta + rows).c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }

  std::vector<std::string> MustSubmit(Store& s, const std::vector<proto::SubmitTask>& tasks) {
    auto ids = s.Submit(tasks);
    EXPECT_TRUE(ids.ok()) << ids.error().ToString();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  // The tasks a task's task.waiting events name.
  std::set<std::string> NamedAsStuck(Store& s, const std::string& id) {
    auto events = s.Events({.since_seq = 0, .task_id = id, .kind = "task.waiting"});
    EXPECT_TRUE(events.ok());
    std::set<std::string> named;
    if (!events.ok()) return named;
    for (const auto& e : *events) named.insert(e.payload["dependency"].get<std::string>());
    return named;
  }

  AttemptInfo MustLease(Store& s, const std::string& id, bool counted = true) {
    Lease lease;
    lease.worker_pid = 4242;
    lease.model = "m1";
    lease.counted = counted;
    auto a = s.LeaseAttempt(id, lease);
    EXPECT_TRUE(a.ok()) << a.error().ToString();
    return a.ok() ? *a : AttemptInfo{};
  }

  // Lease -> passed result -> close done.
  void Finish(Store& s, const std::string& id, double cost = 0.5) {
    AttemptInfo a = MustLease(s, id);
    AgentReport r;
    r.outcome = Outcome::kPassed;
    r.exit_code = 0;
    r.cost_usd = cost;
    r.tokens_in = 10;
    r.tokens_out = 20;
    ASSERT_TRUE(s.RecordAgentResult(a.id, r).ok());
    Close c;
    c.outcome = Outcome::kPassed;
    c.next_state = TaskState::kDone;
    c.commit = "c0ffee" + id;
    c.verdict = "pass";
    Status st = s.CloseAttempt(a.id, c);
    ASSERT_TRUE(st.ok()) << st.error().ToString();
  }

  TaskState StateOf(Store& s, const std::string& id) {
    auto t = s.GetTask(id);
    EXPECT_TRUE(t.ok()) << t.error().ToString();
    return t.ok() ? t->state : TaskState::kPending;
  }

  std::vector<std::string> EventKinds(Store& s, const std::string& task_id) {
    EventFilter f;
    f.task_id = task_id;
    auto events = s.Events(f);
    EXPECT_TRUE(events.ok());
    std::vector<std::string> kinds;
    for (const auto& e : *events) kinds.push_back(e.kind);
    return kinds;
  }

  // events.jsonl holds exactly the events table, in order.
  void ExpectJsonlMatches(Store& s) {
    EventFilter f;
    f.limit = 0;
    auto events = s.Events(f);
    ASSERT_TRUE(events.ok());
    auto lines = ReadLines(dir_.Path("events.jsonl"));
    ASSERT_EQ(lines.size(), events->size());
    for (size_t i = 0; i < lines.size(); ++i) {
      json j = json::parse(lines[i]);
      EXPECT_EQ(j["seq"].get<int64_t>(), (*events)[i].seq);
      EXPECT_EQ(j["kind"].get<std::string>(), (*events)[i].kind);
      EXPECT_EQ(j["payload"], (*events)[i].payload);
      // Byte for byte what Line() makes of the stored event: the lines the
      // store builds at insert time must not differ from a read-back.
      EXPECT_EQ(lines[i], EventsFile::Line((*events)[i])) << "line " << i;
    }
  }

  // The per-state counts status reads agree with the tasks table.
  void ExpectCountsMatch(Store& s) {
    auto mismatches = s.CountMismatches();
    ASSERT_TRUE(mismatches.ok()) << mismatches.error().ToString();
    EXPECT_THAT(*mismatches, ::testing::IsEmpty());
    ListFilter all;
    all.limit = 0;
    auto tasks = s.ListTasks(all);
    ASSERT_TRUE(tasks.ok());
    std::map<std::string, int64_t> actual;
    for (TaskState st : proto::AllStates()) actual[std::string(proto::StateName(st))] = 0;
    for (const auto& t : *tasks) ++actual[std::string(proto::StateName(t.state))];
    auto counts = s.QueueCounts();
    ASSERT_TRUE(counts.ok()) << counts.error().ToString();
    EXPECT_EQ(*counts, actual);
  }

  void ExpectReplayMatchesTables(Store& s) {
    auto replay = s.ReplayStates();
    ASSERT_TRUE(replay.ok()) << replay.error().ToString();
    ListFilter all;
    auto tasks = s.ListTasks(all);
    ASSERT_TRUE(tasks.ok());
    ASSERT_EQ(replay->size(), tasks->size());
    for (const auto& t : *tasks) {
      ASSERT_TRUE(replay->count(t.id)) << t.id;
      EXPECT_EQ(proto::StateName(replay->at(t.id)), proto::StateName(t.state)) << t.id;
    }
    ExpectCountsMatch(s);
  }

  TempDir dir_;
  FakeClock clock_;
};

// ---------------------------------------------------------------- submit / dispatch

// A long submit reports progress from inside its transaction (the
// supervisor pets systemd's watchdog there): every 1,000 tasks.
TEST_F(StoreTest, ALongSubmitReportsProgressFromInsideItsTransaction) {
  auto s = OpenStore();
  int calls = 0;
  s->SetProgressHook([&] { ++calls; });
  std::vector<proto::SubmitTask> batch;
  for (int i = 0; i < 2500; ++i) batch.push_back(Task("t" + std::to_string(i)));
  MustSubmit(*s, batch);
  EXPECT_GE(calls, 3);  // twice in the rows' pass, and before the commit
}

// database.synchronous on a reload applies to the open connection.
TEST_F(StoreTest, SynchronousChangesOnTheOpenConnection) {
  auto s = OpenStore();
  EXPECT_EQ(s->Synchronous().value(), 1);  // NORMAL, the default
  ASSERT_TRUE(s->SetSynchronous(true).ok());
  EXPECT_EQ(s->Synchronous().value(), 2);  // FULL
  ASSERT_TRUE(s->SetSynchronous(false).ok());
  EXPECT_EQ(s->Synchronous().value(), 1);
}

TEST_F(StoreTest, SubmitLeaseFinishInPriorityThenAgeOrder) {
  auto s = OpenStore();
  std::mt19937 rng(7);
  std::vector<proto::SubmitTask> batch;
  const int kN = 40;
  for (int i = 0; i < kN; ++i)
    batch.push_back(Task("task " + std::to_string(i), "", {}, rng() % 4));
  auto ids = MustSubmit(*s, batch);
  ASSERT_EQ(ids.size(), size_t{kN});
  EXPECT_EQ(ids.front(), "t1");

  // Expected: priority descending, then submission order.
  std::vector<int> order(kN);
  for (int i = 0; i < kN; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return batch[a].priority > batch[b].priority; });
  std::vector<std::string> expected, got;
  for (int i : order) expected.push_back(ids[i]);

  for (;;) {
    auto next = s->NextReady();
    ASSERT_TRUE(next.ok());
    if (!*next) break;
    got.push_back((*next)->id);
    Finish(*s, (*next)->id);
  }
  EXPECT_EQ(got, expected);
  for (const auto& id : ids) {
    auto t = s->GetTask(id);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->state, TaskState::kDone);
    EXPECT_EQ(t->attempts, 1);
    EXPECT_EQ(t->commit, "c0ffee" + id);
    EXPECT_GT(t->finished_at_ms, 0);
    EXPECT_DOUBLE_EQ(t->cost_usd, 0.5);
    EXPECT_THAT(EventKinds(*s, id),
                ElementsAre("task.submitted", "attempt.started", "task.running", "attempt.result",
                            "task.reviewing", "attempt.ended", "task.done"));
  }
  auto counts = s->QueueCounts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->at("done"), kN);
  EXPECT_EQ(counts->size(), proto::AllStates().size());
  EXPECT_EQ(counts->at("ready"), 0);
  EXPECT_EQ(counts->at("cancelled"), 0);
}

// A submit retried under its idempotency key (the client got no answer, or
// crashed) gets the first submit's ids back and queues nothing, also after
// a restart; the key with other tasks is refused naming it, and the key of
// a refused submit stays free.
TEST_F(StoreTest, ASubmitUnderAnIdempotencyKeyIsDoneOnce) {
  auto s = OpenStore();
  const std::vector<proto::SubmitTask> plan = {Task("build", "b"), Task("ship", "s", {"b"})};
  auto first = s->SubmitOnce("release-42", plan);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_FALSE(first->existing);
  ASSERT_EQ(first->ids.size(), 2u);
  auto again = s->SubmitOnce("release-42", plan);
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_TRUE(again->existing);
  EXPECT_EQ(again->ids, first->ids);
  EXPECT_EQ(s->ListTasks({})->size(), 2u);

  auto other = s->SubmitOnce("release-42", {Task("build"), Task("ship and tell")});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(other.error().message,
            "idempotency key 'release-42' was used for a different submit "
            "(task " +
                first->ids[0] + " and 1 more); a new submit needs a new key");
  EXPECT_EQ(s->ListTasks({})->size(), 2u);

  auto refused = s->SubmitOnce("release-43", {Task("after", "", {"t999"})});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
  auto fixed = s->SubmitOnce("release-43", {Task("after")});
  ASSERT_TRUE(fixed.ok()) << fixed.error().ToString();
  EXPECT_FALSE(fixed->existing);

  s.reset();
  s = OpenStore();
  auto after_restart = s->SubmitOnce("release-42", plan);
  ASSERT_TRUE(after_restart.ok()) << after_restart.error().ToString();
  EXPECT_TRUE(after_restart->existing);
  EXPECT_EQ(after_restart->ids, first->ids);
  EXPECT_EQ(s->ListTasks({})->size(), 3u);
}

// What a key is stored with: the same tasks hash the same in any build (a
// retry may span an upgrade), so the scheme is pinned here; a field at its
// default is left out of it. The hash goes task by task with the submit's
// progress hook (a staged plan of a million tasks takes seconds).
TEST_F(StoreTest, AKeysRequestHashIsStableAndPetsTheWatchdog) {
  auto s = OpenStore();
  proto::SubmitTask t = Task("build", "b");
  ASSERT_TRUE(s->SubmitOnce("k1", {t}).ok());
  t.priority = 0;  // the default, said out loud
  t.verify = {};
  ASSERT_TRUE(s->SubmitOnce("k1", {t})->existing);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(s->raw(), "SELECT request_hash FROM submit_keys WHERE key = 'k1'",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  const std::string hash = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  // FNV-1a 64 of `{"brief":"brief of build","id":"b","title":"build"}\n`,
  // worked out apart from this code (Python's json.dumps, sort_keys).
  EXPECT_EQ(hash, "v1:52cead298ae50535");

  int pets = 0;
  s->SetProgressHook([&] { ++pets; });
  std::vector<proto::SubmitTask> many(2500, Task("bulk"));
  MustSubmit(*s, many);
  const int plain = pets;
  pets = 0;
  ASSERT_TRUE(s->SubmitOnce("bulk", many).ok());
  EXPECT_EQ(pets, plain + 2) << "the hash's 2,500 tasks pet it twice more";
}

TEST_F(StoreTest, BadIdempotencyKeysAreRefusedNamingWhy) {
  auto s = OpenStore();
  auto empty = s->SubmitOnce("", {Task("x")});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().message, "idempotency key is empty");
  auto long_key = s->SubmitOnce(std::string(kMaxIdempotencyKeyBytes + 1, 'k'), {Task("x")});
  ASSERT_FALSE(long_key.ok());
  EXPECT_EQ(long_key.error().message, "idempotency key is 201 bytes; at most 200");
  auto control = s->SubmitOnce("line\nbreak", {Task("x")});
  ASSERT_FALSE(control.ok());
  EXPECT_EQ(control.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(control.error().message, "idempotency key has a control character (byte 0x0a at 5)");
  EXPECT_TRUE(s->ListTasks({})->empty());
  EXPECT_TRUE(s->SubmitOnce(std::string(kMaxIdempotencyKeyBytes, 'k'), {Task("x")}).ok());
}

TEST_F(StoreTest, SubmitFillsDefaults) {
  auto s = OpenStore();
  auto t = Task("with repo");
  t.repo = "/src/repo";
  t.verify = {"make test"};
  t.env = {{"MODE", "x"}};
  auto t2 = Task("explicit attempts");
  t2.max_attempts = 7;
  auto ids = MustSubmit(*s, {t, t2});
  auto a = s->GetTask(ids[0]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->branch, "forge/" + ids[0]);
  EXPECT_EQ(a->max_attempts, 3);
  EXPECT_THAT(a->verify, ElementsAre("make test"));
  EXPECT_EQ(a->env.at("MODE"), "x");
  EXPECT_EQ(a->state, TaskState::kReady);
  EXPECT_EQ(a->created_at_ms, clock_.WallMs());
  auto b = s->GetTask(ids[1]);
  EXPECT_EQ(b->branch, "");
  EXPECT_EQ(b->max_attempts, 7);
}

// A task's JSON columns are read strictly, the empty ones (read without the
// parser) included: the wrong container or broken JSON is an error naming
// the column and the task, not an empty value.
TEST_F(StoreTest, ABadJsonColumnIsAnErrorNamingTheColumnAndTask) {
  auto s = OpenStore();
  std::string id = MustSubmit(*s, {Task("plain")})[0];
  auto plain = s->GetTask(id);
  ASSERT_TRUE(plain.ok()) << plain.error().ToString();
  EXPECT_TRUE(plain->env.empty());
  EXPECT_TRUE(plain->verify.empty());
  EXPECT_TRUE(plain->depends_on.empty());
  for (std::string column : {"env", "verify", "depends_on"}) {
    std::string wrong = column == "env" ? "[]" : "{}";
    for (const std::string& bad : {wrong, std::string("[1")}) {
      std::string sql = "UPDATE tasks SET " + column + " = '" + bad + "'";
      ASSERT_EQ(sqlite3_exec(s->raw(), sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
      auto read = s->GetTask(id);
      ASSERT_FALSE(read.ok()) << sql;
      EXPECT_EQ(read.error().code, ErrorCode::kDb);
      EXPECT_THAT(read.error().message,
                  HasSubstr("tasks." + column + " of " + id + " holds bad JSON"))
          << sql;
    }
    std::string empty = column == "env" ? "{}" : "[]";
    std::string restore = "UPDATE tasks SET " + column + " = '" + empty + "'";
    ASSERT_EQ(sqlite3_exec(s->raw(), restore.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    ASSERT_TRUE(s->GetTask(id).ok());
  }
}

// The supervisor passes over a task whose old workspace maintenance is still
// removing; the next ready one in the usual order is chosen instead.
TEST_F(StoreTest, NextReadyPassesOverSkippedTasksWithinTheLimit) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a", "a"), Task("b", "b"), Task("c", "c")});
  auto skip_a = [&](const std::string& id) { return id == ids[0]; };
  auto next = s->NextReady(2, skip_a);
  ASSERT_TRUE(next.ok() && *next);
  EXPECT_EQ((*next)->id, ids[1]);
  auto skip_ab = [&](const std::string& id) { return id == ids[0] || id == ids[1]; };
  next = s->NextReady(3, skip_ab);
  ASSERT_TRUE(next.ok() && *next);
  EXPECT_EQ((*next)->id, ids[2]);
  // Only `limit` tasks are looked at.
  next = s->NextReady(2, skip_ab);
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(next->has_value());
  next = s->NextReady(1, nullptr);
  ASSERT_TRUE(next.ok() && *next);
  EXPECT_EQ((*next)->id, ids[0]);
}

TEST_F(StoreTest, DependentBecomesReadyOnlyWhenItsDependenciesAreDone) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("c", "c", {"a", "b"}), Task("a", "a"), Task("b", "b", {"a"})});
  const std::string c = ids[0], a = ids[1], b = ids[2];
  EXPECT_EQ(StateOf(*s, a), TaskState::kReady);
  EXPECT_EQ(StateOf(*s, b), TaskState::kPending);
  EXPECT_EQ(StateOf(*s, c), TaskState::kPending);
  EXPECT_THAT(s->GetTask(c)->depends_on, ElementsAre(a, b));

  auto next = s->NextReady();
  ASSERT_TRUE(next.ok() && *next);
  EXPECT_EQ((*next)->id, a);
  Finish(*s, a);
  EXPECT_EQ(StateOf(*s, b), TaskState::kReady);
  EXPECT_EQ(StateOf(*s, c), TaskState::kPending);  // b is not done yet
  Finish(*s, b);
  EXPECT_EQ(StateOf(*s, c), TaskState::kReady);

  // A later batch may depend on existing ids: done ones count as met.
  auto later = MustSubmit(*s, {Task("d", "", {a}), Task("e", "", {c})});
  EXPECT_EQ(StateOf(*s, later[0]), TaskState::kReady);
  EXPECT_EQ(StateOf(*s, later[1]), TaskState::kPending);
  ExpectReplayMatchesTables(*s);
}

// A dependency that is blocked or cancelled is retried by nobody but an
// operator: its pending dependents say so (task.waiting, naming it), when it
// gets stuck and when they are submitted after; replay is unaffected.
TEST_F(StoreTest, ADependentOfAStuckTaskIsToldWhyItWaits) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a", "a"), Task("b", "b", {"a"}), Task("c", "c", {"b"})});
  const std::string a = ids[0], b = ids[1], c = ids[2];
  auto waiting = [&](const std::string& id) {
    auto events = s->Events({.since_seq = 0, .task_id = id, .kind = "task.waiting"});
    EXPECT_TRUE(events.ok());
    return events.ok() ? *events : std::vector<proto::EventInfo>{};
  };
  ASSERT_TRUE(s->Cancel(a, "not needed").ok());
  ASSERT_EQ(waiting(b).size(), 1u);
  EXPECT_EQ(waiting(b)[0].payload["dependency"], a);
  EXPECT_EQ(waiting(b)[0].payload["dependency_state"], "cancelled");
  EXPECT_THAT(waiting(b)[0].payload["reason"].get<std::string>(),
              HasSubstr(a + " is cancelled: this task waits until it is retried and done"));
  EXPECT_FALSE(waiting(b)[0].payload.contains("via"));
  ASSERT_EQ(waiting(c).size(), 1u) << "c waits on a through b";
  EXPECT_EQ(waiting(c)[0].payload["dependency"], a);
  EXPECT_EQ(waiting(c)[0].payload["via"], b);
  EXPECT_THAT(waiting(c)[0].payload["reason"].get<std::string>(),
              HasSubstr(a + " is cancelled: this task waits (through " + b + ") until"));
  EXPECT_EQ(StateOf(*s, b), TaskState::kPending);

  // Submitted later: on the stuck task, on a pending task that waits on it,
  // and through a task of the same batch (declared after its dependent).
  auto later = MustSubmit(*s, {Task("d", "", {a}), Task("e", "", {c}), Task("f", "f", {"g"}),
                               Task("g", "g", {b}), Task("h")});
  const std::string d = later[0], e = later[1], f = later[2], g = later[3], h = later[4];
  ASSERT_EQ(waiting(d).size(), 1u);
  EXPECT_EQ(waiting(d)[0].payload["dependency"], a);
  EXPECT_FALSE(waiting(d)[0].payload.contains("via"));
  ASSERT_EQ(waiting(e).size(), 1u);
  EXPECT_EQ(waiting(e)[0].payload["dependency"], a);
  EXPECT_EQ(waiting(e)[0].payload["via"], c);
  ASSERT_EQ(waiting(f).size(), 1u);
  EXPECT_EQ(waiting(f)[0].payload["dependency"], a);
  EXPECT_EQ(waiting(f)[0].payload["via"], g);
  ASSERT_EQ(waiting(g).size(), 1u);
  EXPECT_EQ(waiting(g)[0].payload["via"], b);
  EXPECT_TRUE(waiting(h).empty());
  // A task that waits on a running one is not stuck.
  AttemptInfo running = MustLease(*s, h);
  (void)running;
  auto on_running = MustSubmit(*s, {Task("i", "", {h})});
  EXPECT_TRUE(waiting(on_running[0]).empty());

  // Retried and done: the dependents go on as before.
  ASSERT_TRUE(s->Retry(a).ok());
  Finish(*s, a);
  EXPECT_EQ(StateOf(*s, b), TaskState::kReady);
  EXPECT_EQ(StateOf(*s, d), TaskState::kReady);
  EXPECT_EQ(waiting(b).size(), 1u);
  // Stuck again further down: only what waits on that one is told.
  Finish(*s, b);
  EXPECT_EQ(StateOf(*s, g), TaskState::kReady);
  ASSERT_TRUE(s->Cancel(g, "").ok());
  EXPECT_EQ(waiting(f).size(), 2u);
  EXPECT_EQ(waiting(f)[1].payload["dependency"], g);
  EXPECT_EQ(waiting(e).size(), 1u);
  ExpectReplayMatchesTables(*s);
  ExpectJsonlMatches(*s);
}

// Whatever the order of blocks, cancels and retries, a pending task that
// waits on a stuck task has an event naming one that is still stuck; a
// chain cancelled from its top does not write an event per pair.
TEST_F(StoreTest, TheWaitingEventsFollowRetriesAndStayLinear) {
  auto s = OpenStore();
  auto waiting = [&](const std::string& id) { return NamedAsStuck(*s, id); };
  // x runs; y waits on it, z on y. y is cancelled, then x blocks: z was told
  // of y, not of x (y is not pending). Retried, y waits on x: both are told.
  auto ids = MustSubmit(*s, {Task("x", "x"), Task("y", "y", {"x"}), Task("z", "z", {"y"})});
  const std::string x = ids[0], y = ids[1], z = ids[2];
  AttemptInfo a = MustLease(*s, x);
  ASSERT_TRUE(s->Cancel(y, "").ok());
  Close block;
  block.outcome = Outcome::kFailed;
  block.next_state = TaskState::kBlocked;
  ASSERT_TRUE(s->CloseAttempt(a.id, block).ok());
  EXPECT_EQ(waiting(z), std::set<std::string>{y});
  auto retried = s->Retry(y);
  ASSERT_TRUE(retried.ok());
  EXPECT_EQ(retried->stuck_on, x) << "the retry says what it still waits on";
  EXPECT_EQ(retried->stuck_on_state, TaskState::kBlocked);
  EXPECT_EQ(StateOf(*s, y), TaskState::kPending);
  EXPECT_EQ(waiting(y), std::set<std::string>{x});
  EXPECT_EQ(waiting(z), (std::set<std::string>{x, y}));

  // A chain on a blocked task, cancelled from its top.
  const int n = 30;
  std::vector<proto::SubmitTask> chain;
  for (int i = 0; i < n; ++i) {
    chain.push_back(Task("c" + std::to_string(i), "c" + std::to_string(i),
                         {i == 0 ? x : "c" + std::to_string(i - 1)}));
  }
  auto c = MustSubmit(*s, chain);
  const size_t before =
      s->Events({.since_seq = 0, .task_id = "", .kind = "task.waiting", .limit = 100'000})->size();
  EXPECT_EQ(waiting(c[n - 1]), std::set<std::string>{x});
  for (int i = 0; i < n / 2; ++i) ASSERT_TRUE(s->Cancel(c[i], "").ok());
  const size_t after =
      s->Events({.since_seq = 0, .task_id = "", .kind = "task.waiting", .limit = 100'000})->size();
  EXPECT_LE(after - before, static_cast<size_t>(n)) << "one a cancel, not the whole chain";
  // x retried: c14 (cancelled) is now what the rest of the chain waits on.
  auto head = s->Retry(x);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->stuck_on, "");
  EXPECT_EQ(StateOf(*s, x), TaskState::kReady);
  for (int i = n / 2; i < n; ++i) {
    EXPECT_TRUE(waiting(c[i]).count(c[n / 2 - 1]) == 1) << "c" << i;
  }
  ExpectJsonlMatches(*s);
}

// The second review's sequences: a task that waits on two stuck tasks but
// names one, which is retried; several roots cancelled above one subtree; a
// cancelled chain retried from its end.
TEST_F(StoreTest, TheWaitingEventsHoldThroughRetriesOfOneOfTwoAndStayLinear) {
  auto s = OpenStore();
  auto waiting = [&](const std::string& id) { return NamedAsStuck(*s, id); };
  auto all_waiting = [&] {
    return s->Events({.since_seq = 0, .task_id = "", .kind = "task.waiting", .limit = 100'000})
        ->size();
  };
  auto roots = MustSubmit(*s, {Task("a"), Task("b")});
  const std::string a = roots[0], b = roots[1];
  ASSERT_TRUE(s->Cancel(a, "").ok());
  ASSERT_TRUE(s->Cancel(b, "").ok());
  auto c = MustSubmit(*s, {Task("c", "", {a, b})});
  EXPECT_EQ(waiting(c[0]), std::set<std::string>{a}) << "one stuck task is named";
  ASSERT_TRUE(s->Retry(a).ok());
  EXPECT_TRUE(waiting(c[0]).count(b) == 1) << "a retried: c still waits on b and is told";

  // Three roots above one chain of 20: the chain is told once, not thrice.
  auto r = MustSubmit(*s, {Task("r1"), Task("r2"), Task("r3")});
  std::vector<proto::SubmitTask> chain = {Task("k0", "k0", {r[0], r[1], r[2]})};
  for (int i = 1; i < 20; ++i) {
    chain.push_back(
        Task("k" + std::to_string(i), "k" + std::to_string(i), {"k" + std::to_string(i - 1)}));
  }
  auto k = MustSubmit(*s, chain);
  size_t before = all_waiting();
  for (const auto& root : r) ASSERT_TRUE(s->Cancel(root, "").ok());
  EXPECT_LE(all_waiting() - before, 20u + 2u) << "the chain, then k0 for each other root";
  EXPECT_EQ(waiting(k.back()), std::set<std::string>{r[0]});
  // r1 retried: the chain still waits on r2 (k0 was told of it).
  ASSERT_TRUE(s->Retry(r[0]).ok());
  EXPECT_TRUE(waiting(k.back()).count(r[1]) == 1);

  // Each of the chain cancelled from its end, then retried from its end.
  before = all_waiting();
  for (int i = 19; i >= 0; --i) ASSERT_TRUE(s->Cancel(k[i], "").ok());
  for (int i = 19; i >= 0; --i) ASSERT_TRUE(s->Retry(k[i]).ok());
  EXPECT_LE(all_waiting() - before, 3u * 20u) << "linear in the chain";
  for (int i = 1; i < 20; ++i) {
    EXPECT_EQ(StateOf(*s, k[i]), TaskState::kPending);
    bool names_a_stuck_one = false;
    for (const auto& id : waiting(k[i])) {
      auto st = StateOf(*s, id);
      names_a_stuck_one |= st == TaskState::kCancelled || st == TaskState::kBlocked;
    }
    EXPECT_TRUE(names_a_stuck_one) << "k" << i;
  }
  ExpectJsonlMatches(*s);
}

// A plan that is one long chain on a cancelled task, declared from its end:
// every task of it is told, each through the one it depends on.
TEST_F(StoreTest, EveryTaskOfALongChainOnAStuckTaskIsTold) {
  auto s = OpenStore();
  auto root = MustSubmit(*s, {Task("root")});
  ASSERT_TRUE(s->Cancel(root[0], "").ok());
  const int n = 3000;
  std::vector<proto::SubmitTask> chain;
  for (int i = n - 1; i >= 0; --i) {  // c<i> depends on c<i-1>; c0 on the root
    chain.push_back(Task("c" + std::to_string(i), "c" + std::to_string(i),
                         {i == 0 ? root[0] : "c" + std::to_string(i - 1)}));
  }
  auto ids = MustSubmit(*s, chain);
  auto waiting = s->Events({.since_seq = 0, .task_id = "", .kind = "task.waiting", .limit = 2 * n});
  ASSERT_TRUE(waiting.ok());
  ASSERT_EQ(waiting->size(), static_cast<size_t>(n));
  std::map<std::string, json> by_task;
  for (const auto& e : *waiting) by_task[e.task_id] = e.payload;
  EXPECT_EQ(by_task[ids.back()]["dependency"], root[0]) << "c0";
  EXPECT_FALSE(by_task[ids.back()].contains("via"));
  EXPECT_EQ(by_task[ids.front()]["dependency"], root[0]) << "c" << n - 1;
  EXPECT_EQ(by_task[ids.front()]["via"], ids[1]);
  // The root retried: the chain waits on nothing stuck, and is told nothing
  // (a lookup an edge: walking up the chain from each task was quadratic).
  ASSERT_TRUE(s->Retry(root[0]).ok());
  EXPECT_EQ(
      s->Events({.since_seq = 0, .task_id = "", .kind = "task.waiting", .limit = 2 * n})->size(),
      static_cast<size_t>(n));
  EXPECT_EQ(StateOf(*s, ids.front()), TaskState::kPending);
}

TEST_F(StoreTest, NeedsApprovalWaitsForApprovalAndDependencies) {
  auto s = OpenStore();
  auto gated = Task("gated", "g", {"a"});
  gated.needs_approval = true;
  auto ids = MustSubmit(*s, {Task("a", "a"), gated});
  Finish(*s, ids[0]);
  EXPECT_EQ(StateOf(*s, ids[1]), TaskState::kPending);  // deps done, not approved
  auto change = s->Approve(ids[1]);
  ASSERT_TRUE(change.ok()) << change.error().ToString();
  EXPECT_EQ(change->previous, TaskState::kPending);
  EXPECT_EQ(change->current, TaskState::kReady);
  auto again = s->Approve(ids[1]);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->previous, TaskState::kReady);
  EXPECT_EQ(again->current, TaskState::kReady);
  EXPECT_THAT(EventKinds(*s, ids[1]), ElementsAre("task.submitted", "task.approved", "task.ready"));

  // Approved first, dependency later.
  auto gated2 = Task("gated2", "g2", {"b"});
  gated2.needs_approval = true;
  auto ids2 = MustSubmit(*s, {Task("b", "b"), gated2});
  ASSERT_TRUE(s->Approve(ids2[1]).ok());
  EXPECT_EQ(StateOf(*s, ids2[1]), TaskState::kPending);
  Finish(*s, ids2[0]);
  EXPECT_EQ(StateOf(*s, ids2[1]), TaskState::kReady);
}

TEST_F(StoreTest, ClosingAnExpandTaskDoneCreatesItsSpecTaskInTheSameTransaction) {
  auto s = OpenStore();
  auto expand = Task("x", "Expand me");
  expand.kind = "expand";
  auto ids = MustSubmit(*s, {expand});
  AttemptInfo a = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  Close c;
  c.outcome = Outcome::kPassed;
  c.next_state = TaskState::kDone;
  proto::SubmitTask spec;
  spec.title = "Expand me";
  spec.brief = "## Problem\n...";
  spec.needs_approval = true;
  c.spawn = spec;
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  // Closing again (a duplicate result) creates nothing more.
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());

  auto all = s->ListTasks(ListFilter{});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  auto child = s->GetTask("t2");
  ASSERT_TRUE(child.ok()) << child.error().ToString();
  EXPECT_EQ(child->parent, ids[0]);
  EXPECT_EQ(child->brief, "## Problem\n...");
  EXPECT_EQ(child->kind, "work");
  EXPECT_EQ(child->state, TaskState::kPending);  // waits for approval
  EXPECT_TRUE(child->needs_approval);
  EXPECT_THAT(EventKinds(*s, ids[0]), ::testing::Contains("task.expanded"));
  EventFilter f;
  f.kind = "task.expanded";
  auto expanded = s->Events(f);
  ASSERT_TRUE(expanded.ok());
  ASSERT_EQ(expanded->size(), 1u);
  EXPECT_EQ((*expanded)[0].payload["spec_task"], "t2");
  ExpectJsonlMatches(*s);
  ExpectReplayMatchesTables(*s);
}

TEST_F(StoreTest, UnknownDependencyIsRefusedNamingIt) {
  auto s = OpenStore();
  auto r = s->Submit({Task("a", "a"), Task("b", "b", {"a", "zz"})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "task 'b' depends on unknown task 'zz'");
  auto r2 = s->Submit({Task("x", "", {"t99"})});
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().message, "task #1 depends on unknown task 't99'");
  // All or nothing: the valid first task of the batch was not kept.
  EXPECT_TRUE(s->ListTasks({})->empty());
  EXPECT_EQ(*s->LastEventSeq(), 0);
}

// The cycle check walks without recursion: a chain declared from its end
// (each task naming the next) is as deep as it is long.
TEST(CheckBatch, AChainOfTwoHundredThousandDeclaredFromItsEnd) {
  const int n = 200'000;
  std::vector<proto::SubmitTask> chain;
  for (int i = 0; i < n; ++i) {
    chain.push_back(Task("c" + std::to_string(i), "c" + std::to_string(i),
                         i + 1 < n ? std::vector<std::string>{"c" + std::to_string(i + 1)}
                                   : std::vector<std::string>{}));
  }
  EXPECT_TRUE(CheckBatch(chain).ok());
  chain.back().depends_on = {"c0"};
  auto looped = CheckBatch(chain);
  ASSERT_FALSE(looped.ok());
  EXPECT_THAT(looped.error().message, HasSubstr("dependency cycle: c0 -> c1 -> c2 -> "));
}

TEST_F(StoreTest, DependencyCycleIsRefusedNamingTheTasks) {
  auto s = OpenStore();
  auto r = s->Submit({Task("a", "a", {"b"}), Task("b", "b", {"a"})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "dependency cycle: a -> b -> a");
  auto r3 = s->Submit(
      {Task("x", "x"), Task("p", "p", {"x", "r"}), Task("q", "q", {"p"}), Task("r", "r", {"q"})});
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().message, "dependency cycle: p -> r -> q -> p");
  auto self = s->Submit({Task("s", "s", {"s"})});
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.error().message, "dependency cycle: s -> s");
  EXPECT_TRUE(s->ListTasks({})->empty());
}

TEST_F(StoreTest, BadSubmissionsNameTheTask) {
  auto s = OpenStore();
  auto empty_title = s->Submit({Task("ok"), Task("  ")});
  ASSERT_FALSE(empty_title.ok());
  EXPECT_EQ(empty_title.error().message, "task #2: title is empty");
  auto dup = s->Submit({Task("a", "a"), Task("b", "b"), Task("a2", "a")});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().message, "duplicate task id 'a' (tasks #1 and #3)");
  auto zero = Task("z", "z");
  zero.max_attempts = 0;
  auto bad_attempts = s->Submit({zero});
  ASSERT_FALSE(bad_attempts.ok());
  EXPECT_EQ(bad_attempts.error().message, "task 'z': max_attempts must be at least 1, got 0");
  auto blank_check = Task("v", "v");
  blank_check.verify = {"make test", " "};
  auto bad_verify = s->Submit({blank_check});
  ASSERT_FALSE(bad_verify.ok());
  EXPECT_EQ(bad_verify.error().message, "task 'v': verify command 2 is empty");
  auto huge = Task("h", "h");
  huge.brief.assign(kMaxBriefBytes + 1, 'b');
  auto too_big = s->Submit({huge});
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().message,
            "task 'h': brief is 2097153 bytes as sent, more than the 2097152 a brief may be");
  // Measured as sent: a quote is two bytes in JSON, a control byte up to six.
  auto quoted = Task("q", "q");
  quoted.brief.assign(kMaxBriefBytes / 2 + 1, '"');
  auto too_big_quoted = s->Submit({quoted});
  ASSERT_FALSE(too_big_quoted.ok());
  EXPECT_THAT(too_big_quoted.error().message, HasSubstr("brief is 2097154 bytes as sent"));
  EXPECT_EQ(EncodedBriefSize("a\x01\"\\"), 1u + 6 + 2 + 2);
  auto kind = Task("k", "k");
  kind.kind = "bogus";
  auto bad_kind = s->Submit({kind});
  ASSERT_FALSE(bad_kind.ok());
  EXPECT_THAT(bad_kind.error().message, HasSubstr("task 'k': kind must be"));
  auto wordy = Task("w", "w");
  wordy.env["BIG"] = std::string(kMaxTaskTextBytes, 'x');
  auto too_wordy = s->Submit({wordy});
  ASSERT_FALSE(too_wordy.ok());
  EXPECT_THAT(too_wordy.error().message,
              HasSubstr("task 'w': its text besides the brief is 1048585 bytes as sent"));
  auto based = Task("b", "b");
  based.base = "main";
  auto no_repo = s->Submit({based});
  ASSERT_FALSE(no_repo.ok());
  EXPECT_EQ(no_repo.error().message, "task 'b': base 'main' needs a repo");
  auto none = s->Submit({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().message, "no tasks to submit");
  EXPECT_TRUE(s->ListTasks({})->empty());
}

// What forge-ctl refuses (--agent, --env, a plan's keys), the store refuses
// from any client: a profile no worker runs, a name that is no variable's.
TEST_F(StoreTest, AnAgentProfileOrEnvNameForgeCtlRefusesIsRefused) {
  auto s = OpenStore();
  auto bogus = Task("g", "g");
  bogus.agent = "bogus";
  auto r = s->Submit({bogus});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "task 'g': agent must be claude, codex or command, got 'bogus'");
  for (const std::string& name :
       std::vector<std::string>{"", "A=B", "1A", "A-B", std::string("A\0B", 3)}) {
    auto bad = Task("e", "e");
    bad.env = {{"OK", "1"}, {name, "x"}};
    auto refused = s->Submit({bad});
    ASSERT_FALSE(refused.ok()) << name;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
    EXPECT_EQ(refused.error().message,
              "task 'e': env name '" + ShowBytes(name) +
                  "' is not a variable name (letters, digits and _, not led by a digit)");
  }
  EXPECT_TRUE(s->ListTasks({})->empty());
  auto good = Task("ok", "ok");
  good.agent = "codex";
  good.env = {{"_A1", "x=y"}};
  EXPECT_TRUE(s->Submit({good}).ok());
}

// A NUL ends a C string where a task's text is passed on (argv, the
// environment): a check `true\0; false` ran `true` and passed. Refused in
// every text field, from any client, naming task and field.
TEST_F(StoreTest, ANulByteInAnyTextFieldIsRefusedNamingIt) {
  auto s = OpenStore();
  const std::string nul(1, '\0');
  const std::vector<std::pair<std::function<void(proto::SubmitTask&)>, std::string>> cases = {
      {[&](auto& t) {
         t.verify = {"make", "true" + nul + "; false"};
       },
       "verify[1]"},
      {[&](auto& t) { t.title += nul; }, "title"},
      {[&](auto& t) { t.brief = "do" + nul + "it"; }, "brief"},
      {[&](auto& t) { t.repo = "/src" + nul; }, "repo"},
      {[&](auto& t) { t.repo = "/src", t.base = "main" + nul; }, "base"},
      {[&](auto& t) { t.agent = "claude" + nul; }, "agent"},
      {[&](auto& t) { t.model = "m" + nul + "x"; }, "model"},
      {[&](auto& t) { t.kind = "work" + nul; }, "kind"},
      {[&](auto& t) { t.depends_on = {"t1" + nul}; }, "depends_on[0]"},
      {[&](auto& t) {
         t.env = {{"OK", "1"}, {"A", "x" + nul + "y"}};
       },
       "env 'A'"},
  };
  for (const auto& [spoil, field] : cases) {
    auto t = Task("a", "a");
    spoil(t);
    auto r = s->Submit({t});
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_EQ(r.error().message, "task 'a': " + field + " contains a NUL byte");
  }
  EXPECT_TRUE(s->ListTasks({})->empty());
}

// The check is at submit only: a task queued before it (by an older
// supervisor) still loads and is leased as it was stored.
TEST_F(StoreTest, ATaskStoredBeforeTheAgentAndEnvChecksStillLoadsAndRuns) {
  auto s = OpenStore();
  std::string id = MustSubmit(*s, {Task("old")})[0];
  const char* sql = R"(UPDATE tasks SET agent = 'bogus', env = '{"":"x","A=B":"y"}')";
  ASSERT_EQ(sqlite3_exec(s->raw(), sql, nullptr, nullptr, nullptr), SQLITE_OK);
  auto task = s->GetTask(id);
  ASSERT_TRUE(task.ok()) << task.error().ToString();
  EXPECT_EQ(task->agent, "bogus");
  EXPECT_EQ(task->env.at("A=B"), "y");
  AttemptInfo a = MustLease(*s, id);
  EXPECT_EQ(a.n, 1);
}

TEST_F(StoreTest, SecretEnvIsKeptForTheWorkerButRedactedInEvents) {
  auto s = OpenStore();
  auto t = Task("secret");
  t.env = {{"API_KEY", "sk-very-secret-value"}, {"MODE", "plain"}};
  auto ids = MustSubmit(*s, {t});
  EXPECT_EQ(s->GetTask(ids[0])->env.at("API_KEY"), "sk-very-secret-value");
  auto events = s->Events({});
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].payload["env"]["API_KEY"], std::string(kRedacted));
  EXPECT_EQ((*events)[0].payload["env"]["MODE"], "plain");
  std::ifstream in(dir_.Path("events.jsonl"));
  std::stringstream all;
  all << in.rdbuf();
  EXPECT_THAT(all.str(), Not(HasSubstr("sk-very-secret-value")));
  EXPECT_THAT(all.str(), HasSubstr("plain"));
}

// A title, brief, verify command or cancel reason that quotes a task env
// secret: the events table and events.jsonl hold it redacted (the task row
// keeps it for the worker), a task id stays, and so does another task's
// text. A task submitted before the store was opened again is redacted too.
TEST_F(StoreTest, EventPayloadsAreScrubbedOfTheirTasksSecretsAsTheyAreWritten) {
  const std::string secret = "sk-very-secret-value";
  std::string id;
  {
    auto s = OpenStore();
    auto t = Task("title has " + secret);
    t.brief = "brief quotes " + secret;
    t.verify = {"echo " + secret};
    t.env = {{"API_KEY", secret}};
    auto other = Task("other quotes " + secret);
    auto ids = MustSubmit(*s, {t, other});
    id = ids[0];
    EXPECT_EQ(s->GetTask(id)->title, "title has " + secret);
    ASSERT_TRUE(s->Cancel(ids[1], "other's reason " + secret).ok());
  }
  auto s = OpenStore();  // a new open: the task's secrets are not cached
  ASSERT_TRUE(s->Cancel(id, "cancelled: " + secret + " leaked").ok());
  auto events = s->Events({});
  ASSERT_TRUE(events.ok());
  std::string own, others;
  for (const auto& e : *events) (e.task_id == id ? own : others) += e.payload.dump() + "\n";
  EXPECT_THAT(own, Not(HasSubstr(secret)));
  EXPECT_THAT(own, HasSubstr("title has [redacted]"));
  EXPECT_THAT(own, HasSubstr("echo [redacted]"));
  EXPECT_THAT(own, HasSubstr("cancelled: [redacted] leaked"));
  EXPECT_THAT(own, HasSubstr("\"id\":\"" + id + "\""));
  EXPECT_THAT(others, HasSubstr("other's reason " + secret));
  for (const auto& line : ReadLines(dir_.Path("events.jsonl"))) {
    if (line.find("\"" + id + "\"") != std::string::npos) {
      EXPECT_THAT(line, Not(HasSubstr(secret)));
    }
  }
}

// ---------------------------------------------------------------- attempts

TEST_F(StoreTest, FailedAttemptGoesToCooldownAndIsPromotedWhenDue) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("flaky")});
  AttemptInfo a = MustLease(*s, ids[0]);
  EXPECT_EQ(a.n, 1);
  AgentReport r;
  r.outcome = Outcome::kFailed;
  r.exit_code = 2;
  r.error = "exit 2";
  r.duration_ms = 1234;
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kRunning);  // only a passed agent goes to review
  Close c;
  c.outcome = Outcome::kFailed;
  c.error = "exit 2";
  c.fingerprint = "fp1";
  c.next_state = TaskState::kCooldown;
  c.not_before_ms = clock_.WallMs() + 30'000;
  c.reason = "retry in 30s";
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  auto t = s->GetTask(ids[0]);
  EXPECT_EQ(t->state, TaskState::kCooldown);
  EXPECT_EQ(t->not_before_ms, c.not_before_ms);
  EXPECT_EQ(t->last_error, "exit 2");
  EXPECT_EQ(t->last_fingerprint, "fp1");
  EXPECT_EQ(t->attempts, 1);
  auto closed = s->GetAttempt(a.id);
  EXPECT_EQ(closed->outcome, "failed");
  EXPECT_EQ(closed->duration_ms, 1234);  // from the report
  EXPECT_EQ(closed->ended_at_ms, clock_.WallMs());

  EXPECT_EQ(*s->NextDue(), c.not_before_ms);
  EXPECT_FALSE(s->NextReady()->has_value());
  EXPECT_EQ(*s->PromoteDue(clock_.WallMs() + 29'999), 0);
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kCooldown);
  EXPECT_EQ(*s->PromoteDue(clock_.WallMs() + 30'000), 1);
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kReady);
  EXPECT_FALSE(s->NextDue()->has_value());

  AttemptInfo a2 = MustLease(*s, ids[0]);
  EXPECT_EQ(a2.n, 2);
  auto history = s->History(ids[0], 5);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);  // the open attempt is not history
  EXPECT_EQ((*history)[0].n, 1);
  EXPECT_EQ((*history)[0].error, "exit 2");
}

TEST_F(StoreTest, UncountedCloseIsAnInfraRetryNotAnAttempt) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("crashy")});
  AttemptInfo a = MustLease(*s, ids[0]);
  EXPECT_EQ(s->GetTask(ids[0])->attempts, 1);  // counted at lease
  Close c;
  c.outcome = Outcome::kCrashed;
  c.error = "worker died";
  c.next_state = TaskState::kReady;
  c.counted = false;
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  auto t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 0);
  EXPECT_EQ(t->infra_retries, 1);
  EXPECT_EQ(t->total_attempts, 1);
  EXPECT_FALSE(s->GetAttempt(a.id)->counted);

  // Uncounted but not an infra failure (shutdown): neither counter moves.
  AttemptInfo shutdown = MustLease(*s, ids[0]);
  Close cancelled;
  cancelled.outcome = Outcome::kCancelled;
  cancelled.next_state = TaskState::kReady;
  cancelled.counted = false;
  ASSERT_TRUE(s->CloseAttempt(shutdown.id, cancelled).ok());
  t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 0);
  EXPECT_EQ(t->infra_retries, 1);

  // A failed attempt flagged infra (the worker had no space): an infra retry.
  AttemptInfo nospace = MustLease(*s, ids[0]);
  Close full;
  full.outcome = Outcome::kFailed;
  full.error = "cannot write 'x.prompt': No space left on device";
  full.next_state = TaskState::kReady;
  full.counted = false;
  full.infra = true;
  ASSERT_TRUE(s->CloseAttempt(nospace.id, full).ok());
  t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 0);
  EXPECT_EQ(t->infra_retries, 2);
  EXPECT_EQ(s->GetAttempt(nospace.id)->outcome, "failed");

  // An uncounted lease that then fails for real is counted at close.
  AttemptInfo a2 = MustLease(*s, ids[0], /*counted=*/false);
  EXPECT_EQ(s->GetTask(ids[0])->attempts, 0);
  Close fail;
  fail.outcome = Outcome::kFailed;
  fail.next_state = TaskState::kBlocked;
  fail.reason = "same failure twice";
  ASSERT_TRUE(s->CloseAttempt(a2.id, fail).ok());
  t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 1);
  EXPECT_EQ(t->total_attempts, 4);
  EXPECT_EQ(t->state, TaskState::kBlocked);
  EXPECT_EQ(t->last_error, "same failure twice");
}

TEST_F(StoreTest, RecoveryClosesOpenAttempts) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  AttemptInfo a = MustLease(*s, ids[0]);
  ASSERT_TRUE(s->MarkAgentStarted(a.id, 555, 555, 123456).ok());
  s.reset();
  s = OpenStore();
  auto open = s->OpenAttempts();
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].id, a.id);
  EXPECT_EQ((*open)[0].agent_pid, 555);
  EXPECT_EQ((*open)[0].agent_start_time, 123456);
  Close c;
  c.outcome = Outcome::kRecovered;
  c.next_state = TaskState::kReady;
  c.counted = false;
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  EXPECT_TRUE(s->OpenAttempts()->empty());
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kReady);
}

// A result whose attempt log stopped early (a full disk) says so in its
// event, for `forge-ctl events`; a whole log adds nothing.
TEST_F(StoreTest, AnAttemptLogThatStoppedEarlyIsInTheResultEvent) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("cut"), Task("whole")});
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.log_error = "the attempt log stops after 4096 bytes: no space left on device";
  ASSERT_TRUE(s->RecordAgentResult(MustLease(*s, ids[0]).id, r).ok());
  r.log_error.clear();
  ASSERT_TRUE(s->RecordAgentResult(MustLease(*s, ids[1]).id, r).ok());
  auto cut = s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.result"});
  ASSERT_TRUE(cut.ok());
  ASSERT_EQ(cut->size(), 1u);
  EXPECT_EQ((*cut)[0].payload["log_error"],
            "the attempt log stops after 4096 bytes: no space left on device");
  auto whole = s->Events({.since_seq = 0, .task_id = ids[1], .kind = "attempt.result"});
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(whole->size(), 1u);
  EXPECT_FALSE((*whole)[0].payload.contains("log_error"));
}

// The same for a review log that stopped early: in attempt.ended.
TEST_F(StoreTest, AReviewLogThatStoppedEarlyIsInTheEndedEvent) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("cut"), Task("whole")});
  Close c;
  c.outcome = Outcome::kPassed;
  c.next_state = TaskState::kDone;
  c.review_log_error = "the review log stops after 4096 bytes: no space left on device";
  ASSERT_TRUE(s->CloseAttempt(MustLease(*s, ids[0]).id, c).ok());
  c.review_log_error.clear();
  ASSERT_TRUE(s->CloseAttempt(MustLease(*s, ids[1]).id, c).ok());
  auto cut = s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.ended"});
  ASSERT_TRUE(cut.ok());
  ASSERT_EQ(cut->size(), 1u);
  EXPECT_EQ((*cut)[0].payload["review_log_error"],
            "the review log stops after 4096 bytes: no space left on device");
  auto whole = s->Events({.since_seq = 0, .task_id = ids[1], .kind = "attempt.ended"});
  ASSERT_TRUE(whole.ok());
  ASSERT_EQ(whole->size(), 1u);
  EXPECT_FALSE((*whole)[0].payload.contains("review_log_error"));
}

// A worker reports the start of an agent that ended within
// kStartedReportDelayMs in its result: recorded as a `started` would be,
// with its event before the result's, and only once.
TEST_F(StoreTest, AResultCarriesTheStartOfAnAgentThatEndedFirst) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("quick"), Task("slow")});
  AttemptInfo quick = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.agent_pid = 4242;
  r.pgid = 4242;
  ASSERT_TRUE(s->RecordAgentResult(quick.id, r).ok());
  auto a = s->GetAttempt(quick.id);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->agent_pid, 4242);
  EXPECT_EQ(a->agent_pgid, 4242);
  EXPECT_EQ(a->agent_start_time, 0) << "gone: nothing for a kill check to match";
  EventFilter f;
  f.task_id = ids[0];
  f.kind = "attempt.";
  auto events = s->Events(f);
  ASSERT_TRUE(events.ok());
  std::vector<std::string> kinds;
  for (const auto& e : *events) kinds.push_back(e.kind);
  EXPECT_THAT(kinds, ElementsAre("attempt.started", "attempt.agent_started", "attempt.result"));
  EXPECT_EQ(events->at(1).payload["agent_pid"], 4242);

  // One that did report its start keeps it: a result naming another pid
  // (there is none; this is the store's guard) changes nothing.
  AttemptInfo slow = MustLease(*s, ids[1]);
  ASSERT_TRUE(s->MarkAgentStarted(slow.id, 555, 555, 123).ok());
  r.agent_pid = r.pgid = 999;
  ASSERT_TRUE(s->RecordAgentResult(slow.id, r).ok());
  EXPECT_EQ(s->GetAttempt(slow.id)->agent_pid, 555);
  f.task_id = ids[1];
  f.kind = "attempt.agent_started";
  EXPECT_EQ(s->Events(f)->size(), 1u);
}

// The commit a repo task's worktree was made at, as its worker reports it
// (`started`, or the result when no `started` came): kept on the task for
// every later attempt, the first report only, also across a retry of the
// settled task and a reopen, with one attempt.base_recorded event.
TEST_F(StoreTest, TheFirstReportedBaseCommitIsKeptForEveryLaterAttempt) {
  const std::string first(40, 'a'), other(40, 'b');
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("started"), Task("quick")});
  EXPECT_EQ(s->GetTask(ids[0])->base_commit, "") << "not known before an attempt";
  AttemptInfo a1 = MustLease(*s, ids[0]);
  ASSERT_TRUE(s->MarkAgentStarted(a1.id, 555, 555, 123, first).ok());
  EXPECT_EQ(s->GetTask(ids[0])->base_commit, first);
  Close fail;
  fail.outcome = Outcome::kFailed;
  fail.next_state = TaskState::kBlocked;
  ASSERT_TRUE(s->CloseAttempt(a1.id, fail).ok());
  ASSERT_TRUE(s->Retry(ids[0]).ok());
  // A later report (a worktree that outlived a restored database) changes
  // nothing: the first attempt's commit is the task's.
  AttemptInfo a2 = MustLease(*s, ids[0]);
  EXPECT_EQ(s->GetTask(ids[0])->base_commit, first) << "kept across the retry";
  ASSERT_TRUE(s->MarkAgentStarted(a2.id, 556, 556, 124, other).ok());
  AgentReport r;
  r.outcome = Outcome::kFailed;
  r.base_commit = other;
  ASSERT_TRUE(s->RecordAgentResult(a2.id, r).ok());
  EXPECT_EQ(s->GetTask(ids[0])->base_commit, first);
  auto recorded = s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.base_recorded"});
  ASSERT_TRUE(recorded.ok());
  ASSERT_EQ(recorded->size(), 1u);
  EXPECT_EQ((*recorded)[0].payload["base_commit"], first);
  EXPECT_EQ((*recorded)[0].payload["attempt_id"], a1.id);
  EXPECT_EQ((*recorded)[0].attempt, 1);

  // An agent that ended before its `started`: the result carries the base,
  // recorded even for an attempt closed before its result came (a cancel).
  AttemptInfo q = MustLease(*s, ids[1]);
  ASSERT_TRUE(s->Cancel(ids[1], "stop").ok());
  r.base_commit = other;
  ASSERT_TRUE(s->RecordAgentResult(q.id, r).ok());
  EXPECT_EQ(s->GetTask(ids[1])->base_commit, other);
  // The task.submitted event never carries it (unknown at a submit).
  auto submitted = s->Events({.since_seq = 0, .task_id = ids[1], .kind = "task.submitted"});
  ASSERT_EQ(submitted->size(), 1u);
  EXPECT_FALSE((*submitted)[0].payload.contains("base_commit"));
  s.reset();
  s = OpenStore();
  EXPECT_EQ(s->GetTask(ids[0])->base_commit, first);
  EXPECT_EQ(s->ListTasks({})->at(0).base_commit, other);  // newest first
  ExpectJsonlMatches(*s);
}

TEST_F(StoreTest, CostAndRecentAttempts) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  int64_t before = clock_.WallMs();
  Finish(*s, ids[0], 1.25);
  clock_.Advance(1000);
  Finish(*s, ids[1], 2.0);
  EXPECT_DOUBLE_EQ(*s->CostSince(before), 3.25);
  EXPECT_DOUBLE_EQ(*s->CostSince(before + 1), 2.0);
  auto recent = s->RecentAttempts(10);
  ASSERT_TRUE(recent.ok());
  ASSERT_EQ(recent->size(), 2u);
  EXPECT_EQ((*recent)[0].task_id, ids[1]);
  EXPECT_EQ(s->RecentAttempts(1)->size(), 1u);
}

// ---------------------------------------------------------------- idempotency

TEST_F(StoreTest, RepeatedEmissionsAndReportsChangeNothing) {
  auto s = OpenStore();
  ASSERT_TRUE(s->Emit("supervisor.started", json{{"pid", 1}}, "", 0, "boot-1").ok());
  ASSERT_TRUE(s->Emit("supervisor.started", json{{"pid", 2}}, "", 0, "boot-1").ok());
  auto events = s->Events({});
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].payload["pid"], 1);
  ASSERT_TRUE(s->Emit("supervisor.paused", json::object()).ok());
  ASSERT_TRUE(s->Emit("supervisor.paused", json::object()).ok());  // no key: each is new
  EXPECT_EQ(s->Events({})->size(), 3u);

  auto ids = MustSubmit(*s, {Task("x")});
  AttemptInfo a = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 1.0;
  r.session_id = "first";
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  int64_t seq = *s->LastEventSeq();
  r.cost_usd = 5.0;
  r.session_id = "second";
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  EXPECT_EQ(*s->LastEventSeq(), seq);
  EXPECT_EQ(s->GetAttempt(a.id)->session_id, "first");
  EXPECT_DOUBLE_EQ(s->GetTask(ids[0])->cost_usd, 1.0);

  Close c;
  c.outcome = Outcome::kPassed;
  c.next_state = TaskState::kDone;
  c.commit = "abc";
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  seq = *s->LastEventSeq();
  auto task_before = s->GetTask(ids[0]);
  Close other;
  other.outcome = Outcome::kFailed;
  other.next_state = TaskState::kBlocked;
  ASSERT_TRUE(s->CloseAttempt(a.id, other).ok());
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  ASSERT_TRUE(s->MarkAgentStarted(a.id, 1, 1, 1).ok());
  EXPECT_EQ(*s->LastEventSeq(), seq);
  EXPECT_EQ(json(*s->GetTask(ids[0])), json(*task_before));
  EXPECT_EQ(s->GetAttempt(a.id)->outcome, "passed");
  ExpectJsonlMatches(*s);
}

// An LLM critic's spend arrives with its verdict: the close adds it to the
// attempt and the task (whose budget and the day's sum read those rows) and
// names it in attempt.ended.
TEST_F(StoreTest, ACloseAddsTheCriticsSpendToTheAttemptAndTheTask) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("x")});
  const double before = *s->CostSince(0);
  AttemptInfo a = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 1.0;
  r.tokens_in = 10;
  r.tokens_out = 20;
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  Close c;
  c.outcome = Outcome::kPassed;
  c.next_state = TaskState::kDone;
  c.cost_usd = 0.25;
  c.tokens_in = 300;
  c.tokens_out = 30;
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  auto attempt = s->GetAttempt(a.id);
  EXPECT_DOUBLE_EQ(attempt->cost_usd, 1.25);
  EXPECT_EQ(attempt->tokens_in, 310);
  EXPECT_EQ(attempt->tokens_out, 50);
  auto task = s->GetTask(ids[0]);
  EXPECT_DOUBLE_EQ(task->cost_usd, 1.25);
  EXPECT_EQ(task->tokens_in, 310);
  EXPECT_EQ(task->tokens_out, 50);
  EXPECT_DOUBLE_EQ(*s->CostSince(0), before + 1.25);
  auto ended = s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.ended"});
  ASSERT_TRUE(ended.ok());
  ASSERT_EQ(ended->size(), 1u);
  EXPECT_DOUBLE_EQ((*ended)[0].payload["critic_cost_usd"].get<double>(), 0.25);
  EXPECT_EQ((*ended)[0].payload["critic_tokens_in"], 300);
  EXPECT_FALSE((*ended)[0].payload.contains("critic_cost_estimated")) << "a reported cost";
  auto result = s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.result"});
  EXPECT_FALSE((*result)[0].payload.contains("cost_estimated"));
  ExpectJsonlMatches(*s);
}

// A cost the supervisor priced from tokens (codex: budget.token_prices) is
// counted like a reported one, and each event carrying it says so.
TEST_F(StoreTest, AnEstimatedCostIsMarkedInEachEventThatCarriesIt) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("x"), Task("y")});
  AttemptInfo a = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 0.95;
  r.cost_estimated = true;
  r.tokens_in = 750;
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  ASSERT_TRUE(s->AddCriticSpend(a.id, 1, 0.5, 400, 0, /*estimated=*/true)->has_value());
  Close c;
  c.outcome = Outcome::kPassed;
  c.next_state = TaskState::kDone;
  c.cost_usd = 0.25;
  c.cost_estimated = true;
  c.tokens_in = 300;
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  EXPECT_DOUBLE_EQ(s->GetTask(ids[0])->cost_usd, 1.7);
  auto payload = [&](const std::string& kind) {
    auto events = s->Events({.since_seq = 0, .task_id = ids[0], .kind = kind});
    return events.ok() && events->size() == 1 ? (*events)[0].payload : json();
  };
  EXPECT_EQ(payload("attempt.result")["cost_estimated"], true);
  EXPECT_EQ(payload("attempt.critic_cost")["cost_estimated"], true);
  EXPECT_EQ(payload("attempt.ended")["critic_cost_estimated"], true);
  // The default: reported, unmarked.
  AttemptInfo b = MustLease(*s, ids[1]);
  ASSERT_TRUE(s->AddCriticSpend(b.id, 1, 0.5, 400, 0)->has_value());
  auto plain = s->Events({.since_seq = 0, .task_id = ids[1], .kind = "attempt.critic_cost"});
  ASSERT_EQ(plain->size(), 1u);
  EXPECT_FALSE((*plain)[0].payload.contains("cost_estimated"));
  ExpectJsonlMatches(*s);
}

// A cancel closes the attempt before its agent's result or its critic's
// verdict comes. Neither moves the task then, but what the agent and the
// critic spent reaches the attempt, the task and the day's sum, once each.
TEST_F(StoreTest, SpendReportedAfterTheCloseStillCountsOnce) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("cancelled"), Task("open")});
  AttemptInfo a = MustLease(*s, ids[0]);
  ASSERT_TRUE(s->Cancel(ids[0], "").ok());
  const AttemptInfo closed = *s->GetAttempt(a.id);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 1.5;
  r.tokens_in = 10;
  r.tokens_out = 2;
  r.session_id = "s1";
  r.error = "the agent's words";
  r.duration_ms = closed.duration_ms + 100'000;
  auto late = s->RecordAgentResult(a.id, r);
  ASSERT_TRUE(late.ok()) << late.error().ToString();
  EXPECT_TRUE(late->closed);
  EXPECT_TRUE(late->recorded);
  EXPECT_FALSE(late->task.has_value()) << "nothing to review";
  auto attempt = s->GetAttempt(a.id);
  EXPECT_DOUBLE_EQ(attempt->cost_usd, 1.5);
  EXPECT_EQ(attempt->tokens_in, 10);
  EXPECT_EQ(attempt->session_id, "s1");
  EXPECT_EQ(attempt->outcome, "cancelled");
  EXPECT_EQ(attempt->error, closed.error) << "the close's error stands";
  EXPECT_EQ(attempt->duration_ms, closed.duration_ms);
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kCancelled);
  EXPECT_DOUBLE_EQ(s->GetTask(ids[0])->cost_usd, 1.5);
  EXPECT_DOUBLE_EQ(*s->CostSince(0), 1.5);
  auto result = s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.result"});
  ASSERT_EQ(result->size(), 1u);
  EXPECT_EQ((*result)[0].payload["after_close"], true);
  auto again = s->RecordAgentResult(a.id, r);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->recorded);
  EXPECT_DOUBLE_EQ(s->GetTask(ids[0])->cost_usd, 1.5);

  auto added = s->AddCriticSpend(a.id, 0, 0.25, 30, 3);
  ASSERT_TRUE(added.ok()) << added.error().ToString();
  ASSERT_TRUE(added->has_value());
  EXPECT_DOUBLE_EQ((*added)->cost_usd, 1.75);
  EXPECT_EQ((*added)->started_at_ms, a.started_at_ms);
  auto twice = s->AddCriticSpend(a.id, 0, 0.25, 30, 3);
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(twice->has_value()) << "a kept write's retry adds nothing";
  EXPECT_DOUBLE_EQ(s->GetAttempt(a.id)->cost_usd, 1.75);
  EXPECT_EQ(s->GetAttempt(a.id)->tokens_in, 40);
  auto task = s->GetTask(ids[0]);
  EXPECT_DOUBLE_EQ(task->cost_usd, 1.75);
  EXPECT_EQ(task->tokens_out, 5);
  EXPECT_DOUBLE_EQ(*s->CostSince(0), 1.75);
  EXPECT_EQ(s->Events({.since_seq = 0, .task_id = ids[0], .kind = "attempt.critic_cost"})->size(),
            1u);

  AttemptInfo open = MustLease(*s, ids[1]);
  auto refused = s->AddCriticSpend(open.id, 0, 1.0, 0, 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_DOUBLE_EQ(s->GetTask(ids[1])->cost_usd, 0);
  // A review of the open attempt that gave no verdict: added at once, once
  // per review; the close then adds its own review's.
  ASSERT_TRUE(s->AddCriticSpend(open.id, 1, 0.5, 0, 0)->has_value());
  EXPECT_FALSE(s->AddCriticSpend(open.id, 1, 0.5, 0, 0)->has_value());
  ASSERT_TRUE(s->AddCriticSpend(open.id, 2, 0.25, 0, 0)->has_value());
  Close close;
  close.outcome = Outcome::kPassed;
  close.next_state = TaskState::kDone;
  close.cost_usd = 0.125;
  ASSERT_TRUE(s->CloseAttempt(open.id, close).ok());
  EXPECT_DOUBLE_EQ(s->GetTask(ids[1])->cost_usd, 0.875);
  EXPECT_DOUBLE_EQ(s->GetAttempt(open.id)->cost_usd, 0.875);
  ExpectJsonlMatches(*s);
}

// The supervisor sends the critic the task RecordAgentResult returns instead
// of reading it again: it must be the row as the transaction left it.
TEST_F(StoreTest, RecordAgentResultReturnsTheRowsItRead) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("passes"), Task("fails")});
  AttemptInfo passing = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 0.5;
  r.tokens_in = 7;
  auto first = s->RecordAgentResult(passing.id, r);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  EXPECT_TRUE(first->recorded);
  EXPECT_FALSE(first->closed);
  EXPECT_EQ(first->attempt.id, passing.id);
  EXPECT_EQ(first->attempt.task_id, ids[0]);
  EXPECT_EQ(first->attempt.n, 1);
  ASSERT_TRUE(first->task.has_value()) << "a passed agent's task goes to the critic";
  EXPECT_EQ(json(*first->task), json(*s->GetTask(ids[0])));
  EXPECT_EQ(first->task->state, TaskState::kReviewing);
  EXPECT_DOUBLE_EQ(first->task->cost_usd, 0.5);
  EXPECT_EQ(first->task->tokens_in, 7);

  auto again = s->RecordAgentResult(passing.id, r);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->recorded) << "a second report changes nothing";
  EXPECT_FALSE(again->closed);
  EXPECT_FALSE(again->task.has_value());

  AttemptInfo failing = MustLease(*s, ids[1]);
  r.outcome = Outcome::kFailed;
  auto failed = s->RecordAgentResult(failing.id, r);
  ASSERT_TRUE(failed.ok());
  EXPECT_TRUE(failed->recorded);
  EXPECT_FALSE(failed->task.has_value()) << "no review: the close decides, nothing to send";
  EXPECT_EQ(StateOf(*s, ids[1]), TaskState::kRunning);

  Close c;
  c.outcome = Outcome::kFailed;
  c.next_state = TaskState::kBlocked;
  ASSERT_TRUE(s->CloseAttempt(failing.id, c).ok());
  auto late = s->RecordAgentResult(failing.id, r);
  ASSERT_TRUE(late.ok());
  EXPECT_TRUE(late->closed);
  EXPECT_FALSE(late->recorded);

  auto unknown = s->RecordAgentResult(999, r);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_F(StoreTest, CloseAttemptDecidesFromTheRowsOfItsTransaction) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("x")});
  AttemptInfo a = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kFailed;
  r.cost_usd = 2.0;
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());

  // A decision that is refused rolls everything back.
  auto refused = s->CloseAttempt(a.id, [](const AttemptInfo&, const TaskInfo&) {
    Close c;
    c.next_state = TaskState::kRunning;
    return c;
  });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(refused.error().message, HasSubstr("cannot be running"));
  EXPECT_EQ(s->GetAttempt(a.id)->ended_at_ms, 0);

  int calls = 0;
  auto closed = s->CloseAttempt(a.id, [&](const AttemptInfo& attempt, const TaskInfo& task) {
    ++calls;
    EXPECT_EQ(attempt.id, a.id);
    EXPECT_EQ(attempt.ended_at_ms, 0);
    EXPECT_EQ(task.id, ids[0]);
    EXPECT_EQ(task.attempts, 1);
    EXPECT_DOUBLE_EQ(task.cost_usd, 2.0) << "the result's cost is in the row decided from";
    Close c;
    c.outcome = Outcome::kFailed;
    c.next_state = TaskState::kCooldown;
    c.not_before_ms = 123456789;
    c.reason = "retry";
    return c;
  });
  ASSERT_TRUE(closed.ok()) << closed.error().ToString();
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(closed->has_value());
  EXPECT_EQ((*closed)->next_state, TaskState::kCooldown);
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kCooldown);
  EXPECT_EQ(s->GetTask(ids[0])->not_before_ms, 123456789);

  auto twice = s->CloseAttempt(a.id, [&](const AttemptInfo&, const TaskInfo&) {
    ++calls;
    return Close{};
  });
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(twice->has_value()) << "closed before: nothing written";
  EXPECT_EQ(calls, 1) << "and nothing decided";
}

// ---------------------------------------------------------------- operator actions

TEST_F(StoreTest, OperatorActionsOnUnknownTasksAreNotFound) {
  auto s = OpenStore();
  for (auto r : {s->Approve("t404"), s->Retry("t404"), s->Cancel("t404", "why")}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(r.error().message, "task 't404' not found");
  }
  auto get = s->GetTask("nope");
  ASSERT_FALSE(get.ok());
  EXPECT_EQ(get.error().message, "task 'nope' not found");
  EXPECT_EQ(s->Attempts("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(s->History("nope", 3).error().code, ErrorCode::kNotFound);
  auto lease = s->LeaseAttempt("t9", Lease{});
  ASSERT_FALSE(lease.ok());
  EXPECT_EQ(lease.error().code, ErrorCode::kNotFound);
  Status close = s->CloseAttempt(77, Close{});
  ASSERT_FALSE(close.ok());
  EXPECT_EQ(close.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(close.error().message, "attempt 77 not found");
  EXPECT_EQ(s->RecordAgentResult(77, AgentReport{}).error().message, "attempt 77 not found");
  EXPECT_EQ(s->MarkAgentStarted(77, 1, 1, 1).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(s->GetAttempt(77).error().code, ErrorCode::kNotFound);
}

TEST_F(StoreTest, OperatorActionsInTheWrongStateAreConflicts) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  auto retry = s->Retry(ids[0]);
  ASSERT_FALSE(retry.ok());
  EXPECT_EQ(retry.error().code, ErrorCode::kConflict);
  EXPECT_EQ(retry.error().message,
            "task t1 is ready; only blocked or cancelled tasks can be retried");
  Finish(*s, ids[0]);
  auto cancel = s->Cancel(ids[0], "");
  ASSERT_FALSE(cancel.ok());
  EXPECT_EQ(cancel.error().code, ErrorCode::kConflict);
  EXPECT_EQ(cancel.error().message, "task t1 is already done; nothing to cancel");
  auto approve_done = s->Approve(ids[0]);
  ASSERT_FALSE(approve_done.ok());
  EXPECT_EQ(approve_done.error().code, ErrorCode::kConflict);
  EXPECT_EQ(approve_done.error().message, "task t1 is done; nothing to approve");
  MustLease(*s, ids[1]);
  auto lease = s->LeaseAttempt(ids[1], Lease{});
  ASSERT_FALSE(lease.ok());
  EXPECT_EQ(lease.error().code, ErrorCode::kConflict);
  EXPECT_EQ(lease.error().message, "task t2 is running, not ready");
  Close bad;
  bad.next_state = TaskState::kRunning;
  auto close = s->CloseAttempt(1, bad);
  ASSERT_FALSE(close.ok());
  EXPECT_EQ(close.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(close.error().message, "closing attempt 1: next state cannot be running");

  // Not gated: nothing to approve, and no task.approved in its history.
  auto not_gated = s->Approve(ids[1]);
  ASSERT_FALSE(not_gated.ok());
  EXPECT_EQ(not_gated.error().code, ErrorCode::kConflict);
  EXPECT_EQ(not_gated.error().message,
            "task t2 does not need approval (it was submitted without needs_approval)");
  EXPECT_TRUE(s->Events({.task_id = ids[1], .kind = "task.approved"}).value().empty());

  auto gated = Task("gated");
  gated.needs_approval = true;
  auto g = MustSubmit(*s, {gated});
  ASSERT_TRUE(s->Cancel(g[0], "not now").ok());
  auto approve = s->Approve(g[0]);
  ASSERT_FALSE(approve.ok());
  EXPECT_EQ(approve.error().code, ErrorCode::kConflict);
  EXPECT_EQ(approve.error().message, "task t3 is cancelled; retry it before approving");

  // Cancelled again: nothing to do, and not refused (session 35); no
  // event, and the reason stays the first cancel's.
  EventFilter of_task;
  of_task.task_id = g[0];
  const auto history = s->Events(of_task).value();
  auto again = s->Cancel(g[0], "again");
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ(again->previous, TaskState::kCancelled);
  EXPECT_EQ(again->current, TaskState::kCancelled);
  EXPECT_FALSE(again->open_attempt.has_value());
  EXPECT_EQ(s->Events(of_task).value(), history);
  EXPECT_EQ(s->Show(g[0], 0)->state_reason, "not now");
  // Blocked is still refused: it is retried, not cancelled.
  auto b = MustSubmit(*s, {Task("blocked")});
  ASSERT_TRUE(s->Block(b[0], "task budget exceeded").ok());
  auto cancel_blocked = s->Cancel(b[0], "");
  ASSERT_FALSE(cancel_blocked.ok());
  EXPECT_EQ(cancel_blocked.error().code, ErrorCode::kConflict);
  EXPECT_EQ(cancel_blocked.error().message, "task t4 is already blocked; nothing to cancel");
  EXPECT_FALSE(s->Emit("", json::object()).ok());
  EXPECT_FALSE(s->SetCursor("", 1).ok());
}

TEST_F(StoreTest, CancelClosesTheOpenAttemptAndRetryRequeues) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a", "a"), Task("b", "b", {"a"})});
  AttemptInfo a = MustLease(*s, ids[0]);
  ASSERT_TRUE(s->MarkAgentStarted(a.id, 999, 999, 42).ok());
  auto change = s->Cancel(ids[0], "operator changed their mind");
  ASSERT_TRUE(change.ok()) << change.error().ToString();
  EXPECT_EQ(change->previous, TaskState::kRunning);
  EXPECT_EQ(change->current, TaskState::kCancelled);
  ASSERT_TRUE(change->open_attempt.has_value());
  EXPECT_EQ(change->open_attempt->id, a.id);
  EXPECT_EQ(change->open_attempt->agent_pgid, 999);
  auto closed = s->GetAttempt(a.id);
  EXPECT_EQ(closed->outcome, "cancelled");
  EXPECT_GT(closed->ended_at_ms, 0);
  EXPECT_TRUE(s->OpenAttempts()->empty());
  // The worker's late result for the cancelled attempt changes nothing.
  AgentReport late;
  late.outcome = Outcome::kPassed;
  ASSERT_TRUE(s->RecordAgentResult(a.id, late).ok());
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kCancelled);

  // Cancel a pending task: no attempt.
  auto pending = s->Cancel(ids[1], "");
  ASSERT_TRUE(pending.ok());
  EXPECT_FALSE(pending->open_attempt.has_value());

  // Retry: dependent goes back to pending, its dependency to ready.
  auto rb = s->Retry(ids[1]);
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->current, TaskState::kPending);
  auto ra = s->Retry(ids[0]);
  ASSERT_TRUE(ra.ok());
  EXPECT_EQ(ra->previous, TaskState::kCancelled);
  EXPECT_EQ(ra->current, TaskState::kReady);
  auto t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 0);
  EXPECT_EQ(t->finished_at_ms, 0);
  Finish(*s, ids[0]);
  EXPECT_EQ(StateOf(*s, ids[1]), TaskState::kReady);
  EXPECT_EQ(s->Attempts(ids[0])->size(), 2u);
  ExpectReplayMatchesTables(*s);
}

TEST_F(StoreTest, RetryOfBlockedTaskResetsCounters) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a")});
  for (int i = 0; i < 2; ++i) {
    AttemptInfo a = MustLease(*s, ids[0]);
    Close c;
    c.outcome = i == 0 ? Outcome::kLost : Outcome::kFailed;
    c.counted = i != 0;
    c.fingerprint = "fp";
    c.next_state = i == 0 ? TaskState::kReady : TaskState::kBlocked;
    ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  }
  auto t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 1);
  EXPECT_EQ(t->infra_retries, 1);
  auto r = s->Retry(ids[0]);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->previous, TaskState::kBlocked);
  EXPECT_EQ(r->current, TaskState::kReady);
  t = s->GetTask(ids[0]);
  EXPECT_EQ(t->attempts, 0);
  EXPECT_EQ(t->infra_retries, 0);
  EXPECT_EQ(t->last_fingerprint, "");
  EXPECT_EQ(t->total_attempts, 2);
}

// The dispatch's budget guard: a ready task goes to blocked without an
// attempt, its dependents told they wait; any other state is refused.
TEST_F(StoreTest, BlockMovesAReadyTaskWithoutAnAttempt) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a", "a"), Task("b", "b", {"a"})});
  auto b = s->Block(ids[0], "task budget exceeded", json{{"cost_usd", 0.6}});
  ASSERT_TRUE(b.ok()) << b.error().ToString();
  EXPECT_EQ(b->previous, TaskState::kReady);
  EXPECT_EQ(b->current, TaskState::kBlocked);
  auto t = s->GetTask(ids[0]);
  EXPECT_EQ(t->state, TaskState::kBlocked);
  EXPECT_EQ(t->last_error, "") << "the last attempt's (none here), not the reason";
  EXPECT_GT(t->finished_at_ms, 0);
  EXPECT_TRUE(s->Attempts(ids[0])->empty());
  EventFilter f;
  f.task_id = ids[0];
  f.kind = "task.blocked";
  auto events = s->Events(f);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ(events->at(0).payload["reason"], "task budget exceeded");
  EXPECT_EQ(events->at(0).payload["cost_usd"], 0.6);
  EXPECT_EQ(events->at(0).payload["from"], "ready");
  f.task_id = ids[1];
  f.kind = "task.waiting";
  EXPECT_EQ(s->Events(f)->size(), 1u) << "its dependent is told it waits";
  auto again = s->Block(ids[0], "task budget exceeded");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  auto pending = s->Block(ids[1], "task budget exceeded");
  ASSERT_FALSE(pending.ok());
  EXPECT_EQ(pending.error().message,
            "task " + ids[1] + " is pending; only a ready task is blocked this way");
  EXPECT_EQ(s->Block("nope", "x").error().code, ErrorCode::kNotFound);
  ExpectReplayMatchesTables(*s);
}

// ---------------------------------------------------------------- queries

TEST_F(StoreTest, ListAndEventFilters) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b"), Task("c")});
  Finish(*s, ids[1]);
  ListFilter done;
  done.state = TaskState::kDone;
  auto list = s->ListTasks(done);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, ids[1]);
  ListFilter oldest;
  oldest.newest_first = false;
  oldest.limit = 2;
  auto first2 = s->ListTasks(oldest);
  ASSERT_EQ(first2->size(), 2u);
  EXPECT_EQ((*first2)[0].id, ids[0]);
  EXPECT_EQ((*s->ListTasks({}))[0].id, ids[2]);

  EventFilter attempts;
  attempts.kind = "attempt.";
  auto attempt_events = s->Events(attempts);
  ASSERT_TRUE(attempt_events.ok());
  for (const auto& e : *attempt_events) EXPECT_EQ(e.kind.rfind("attempt.", 0), 0u);
  EXPECT_EQ(attempt_events->size(), 3u);
  EventFilter exact;
  exact.kind = "task.done";
  EXPECT_EQ(s->Events(exact)->size(), 1u);
  EventFilter since;
  since.since_seq = 3;
  since.limit = 2;
  auto page = s->Events(since);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].seq, 4);
  EventFilter partial_kind;
  partial_kind.kind = "task";  // not a prefix form: exact match only
  EXPECT_TRUE(s->Events(partial_kind)->empty());
}

TEST_F(StoreTest, ReadySelectionUsesTheIndex) {
  auto s = OpenStore();
  std::vector<proto::SubmitTask> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Task("t", "", {}, i % 5));
  MustSubmit(*s, batch);
  auto plan = [&](const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(
        sqlite3_prepare_v2(s->raw(), ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &stmt, nullptr),
        SQLITE_OK);
    std::string out;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      out += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
      out += "\n";
    }
    sqlite3_finalize(stmt);
    return out;
  };
  std::string ready =
      plan(std::string("SELECT ") + kTaskColumns + " FROM tasks " + kNextReadyWhere);
  EXPECT_THAT(ready, HasSubstr("USING INDEX tasks_ready"));
  EXPECT_THAT(ready, Not(HasSubstr("SCAN tasks\n")));
  EXPECT_THAT(ready, Not(HasSubstr("TEMP B-TREE")));
  // tasks_due is partial (cooldown only): the planner would rather take
  // tasks_ready's state prefix, so the store names it, and INDEXED BY fails
  // to prepare if the query does not imply the index's WHERE.
  std::string due =
      plan("SELECT MIN(not_before) FROM tasks INDEXED BY tasks_due WHERE state = 'cooldown'");
  EXPECT_THAT(due, HasSubstr("tasks_due"));
  std::string deps = plan("SELECT task_id FROM task_deps WHERE dep_id = 't1'");
  EXPECT_THAT(deps, HasSubstr("task_deps_dep"));
  std::string promote = plan(std::string("SELECT ") + kTaskColumns +
                             " FROM tasks INDEXED BY tasks_due WHERE state = 'cooldown' AND "
                             "not_before <= 5");
  EXPECT_THAT(promote, HasSubstr("USING INDEX tasks_due"));
  std::string dependents =
      plan(std::string("SELECT ") + kTaskColumns +
           " FROM tasks WHERE id IN (SELECT task_id FROM task_deps WHERE dep_id = 't1') "
           "AND state = 'pending'");
  EXPECT_THAT(dependents, HasSubstr("task_deps_dep"));
  EXPECT_THAT(dependents, Not(HasSubstr("SCAN tasks")));
  std::string open = plan(std::string("SELECT ") + kAttemptColumns +
                          " FROM attempts WHERE ended_at IS NULL ORDER BY id");
  EXPECT_THAT(open, HasSubstr("attempts_open"));
  std::string timeline = plan(
      "SELECT seq, ts, kind, task_id, attempt, payload FROM events WHERE seq > 0 AND "
      "task_id = 't1' ORDER BY seq LIMIT 1000");
  EXPECT_THAT(timeline, HasSubstr("events_task"));
  EXPECT_THAT(timeline, Not(HasSubstr("TEMP B-TREE")));
}

// ---------------------------------------------------------------- durability

// forge-ctl pause holds across a restart: an operator who paused to stop
// spending must not find dispatch running again after a crash.
TEST_F(StoreTest, TheOperatorsPauseSurvivesReopenUntilCleared) {
  auto s = OpenStore();
  EXPECT_EQ(*s->OperatorPause(), std::nullopt);
  ASSERT_TRUE(s->SetOperatorPause("credentials expired").ok());
  ASSERT_TRUE(s->SetOperatorPause("credentials expired; rotating").ok());  // a second pause
  s.reset();
  s = OpenStore();
  EXPECT_EQ(*s->OperatorPause(), "credentials expired; rotating");
  ASSERT_TRUE(s->SetOperatorPause(std::nullopt).ok());
  ASSERT_TRUE(s->SetOperatorPause(std::nullopt).ok());  // resumed twice
  s.reset();
  s = OpenStore();
  EXPECT_EQ(*s->OperatorPause(), std::nullopt);
  ASSERT_TRUE(s->SetOperatorPause("").ok());  // no reason given is still a pause
  EXPECT_EQ(*s->OperatorPause(), "");
}

TEST_F(StoreTest, EverythingSurvivesCloseAndReopen) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a", "a"), Task("b", "b", {"a"})});
  AttemptInfo a = MustLease(*s, ids[0]);
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 0.75;
  r.session_id = "sess";
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  Close c;
  c.outcome = Outcome::kRejected;
  c.verdict = "fail";
  c.findings = {proto::Finding{"sev1", "correctness", "x.cc", 3, "wrong"}};
  c.checks = {proto::CheckResult{"make test", 2, 0, 50, false, false, "boom"}};
  c.next_state = TaskState::kCooldown;
  c.not_before_ms = clock_.WallMs() + 5000;
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  ASSERT_TRUE(s->Emit("custom", json{{"k", "v"}}, ids[0], 1, "custom-1").ok());
  ASSERT_TRUE(s->SetCursor("projection", 4).ok());
  json tasks_before = *s->ListTasks({});
  json attempts_before = *s->Attempts(ids[0]);
  EventFilter all;
  all.limit = 0;
  auto before = s->Events(all);
  ASSERT_TRUE(before.ok());
  json events_before = *before;
  s.reset();

  s = OpenStore();
  EXPECT_EQ(s->SchemaVersion(), kSchemaVersion);
  EXPECT_EQ(json(*s->ListTasks({})), tasks_before);
  EXPECT_EQ(json(*s->Attempts(ids[0])), attempts_before);
  auto after = s->Events(all);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(json(*after), events_before);
  EXPECT_EQ(*s->GetCursor("projection"), 4);
  EXPECT_EQ(*s->GetCursor("never-set"), 0);
  EXPECT_EQ(*s->GetCursor("events.jsonl"), *s->LastEventSeq());
  auto attempt = s->GetAttempt(a.id);
  ASSERT_EQ(attempt->findings.size(), 1u);
  EXPECT_EQ(attempt->findings[0].message, "wrong");
  auto history = s->History(ids[0], 3);
  ASSERT_EQ(history->size(), 1u);
  ASSERT_EQ((*history)[0].failing_checks.size(), 1u);
  EXPECT_EQ((*history)[0].failing_checks[0].output_tail, "boom");
  ExpectReplayMatchesTables(*s);
  ExpectJsonlMatches(*s);
  EXPECT_EQ(*s->IntegrityCheck(), "ok");
  EXPECT_TRUE(s->Checkpoint().ok());
}

// With manual_checkpoints no commit checkpoints: the WAL grows past SQLite's
// 1,000-frame threshold (an automatic checkpoint would have started it over)
// until the owner checkpoints; then the next write starts it over.
TEST_F(StoreTest, ManualCheckpointsLeaveTheWalToTheOwner) {
  StoreOptions o = Options();
  o.manual_checkpoints = true;
  auto opened = Store::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.error().ToString();
  Store& s = **opened;
  int64_t last = s.WalFrames();
  for (int i = 0; s.WalFrames() < 1500; ++i) {
    ASSERT_LT(i, 2000) << "the WAL stopped growing at " << s.WalFrames() << " frames";
    MustSubmit(s, {Task("t" + std::to_string(i))});
    ASSERT_GT(s.WalFrames(), last) << "a commit started the WAL over";
    last = s.WalFrames();
  }
  ASSERT_TRUE(s.Checkpoint(CheckpointMode::kPassive).ok());
  MustSubmit(s, {Task("after")});
  EXPECT_LT(s.WalFrames(), 50);
  EXPECT_EQ(s.ListTasks({})->size(), static_cast<size_t>(s.QueueCounts()->at("ready")));
  EXPECT_EQ(*s.IntegrityCheck(), "ok");
}

int64_t PageSize(sqlite3* db) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &stmt, nullptr) != SQLITE_OK) return -1;
  int64_t size = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  return size;
}

// A database the store creates has 2 KiB pages (fewer WAL bytes a
// transaction, issue 6), in the file's header as well as in the connection.
TEST_F(StoreTest, NewDatabaseHasSmallPages) {
  auto s = OpenStore();
  ASSERT_TRUE(s);
  MustSubmit(*s, {Task("a")});
  EXPECT_EQ(PageSize(s->raw()), 2048);
  ASSERT_TRUE(s->Checkpoint().ok());
  s.reset();
  std::ifstream db(dir_.Path("forge.db"), std::ios::binary);
  unsigned char header[18] = {};
  ASSERT_TRUE(db.read(reinterpret_cast<char*>(header), sizeof header));
  EXPECT_EQ(header[16] << 8 | header[17], 2048);  // big-endian, bytes 16-17
}

// One created with other pages (SQLite's default, 4 KiB) keeps them: SQLite
// changes a database's page size only before its first table, never in WAL.
TEST_F(StoreTest, ExistingDatabaseKeepsItsPageSize) {
  CreateOldDatabase(1,
                    "INSERT INTO tasks(id, title, state, max_attempts, created_at, "
                    "updated_at) VALUES('a', 'a', 'ready', 3, 0, 0);");
  auto s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(PageSize(s->raw()), 4096);
  Finish(*s, "a");
  auto ids = MustSubmit(*s, {Task("b")});
  Finish(*s, ids[0]);
  s.reset();
  s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(PageSize(s->raw()), 4096);
  EXPECT_EQ(StateOf(*s, "a"), TaskState::kDone);
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kDone);
  EXPECT_EQ(*s->IntegrityCheck(), "ok");
}

// AppendLine quotes plain kinds and task ids itself and leaves anything with
// a quote, a backslash, a control or a non-ASCII byte to nlohmann: either way
// byte for byte what Line() makes of the same event.
TEST(EventsFileLine, AppendLineMatchesLineForEveryKindOfText) {
  for (const std::string text : {"task.done", "t-1_a.b", "q\"uote", "back\\slash", "tab\there",
                                 "caf\xc3\xa9", "bad \xff utf8", "del\x7f", ""}) {
    for (int64_t ts : {int64_t{0}, int64_t{1'795'359'845'007}}) {
      proto::EventInfo e{7, ts, text, text, 2, json{{"k", text}}};
      std::string payload = e.payload.dump(-1, ' ', false, json::error_handler_t::replace);
      std::string out;
      EventsFile::AppendLine(out, e.seq, e.ts_ms, e.kind, e.task_id, e.attempt, payload);
      EXPECT_EQ(out, EventsFile::Line(e) + "\n") << "text '" << text << "' ts " << ts;
    }
  }
}

TEST_F(StoreTest, EventsJsonlIsRepairedOnOpen) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  Finish(*s, ids[0]);
  ExpectJsonlMatches(*s);
  s.reset();

  // A crash mid-append leaves a torn line: it is cut and the file completed.
  {
    std::ofstream out(dir_.Path("events.jsonl"), std::ios::app);
    out << R"({"seq":999,"ts":"2026-01-01T00:00:00.000Z","kin)";
  }
  s = OpenStore();
  ExpectJsonlMatches(*s);
  Finish(*s, ids[1]);
  ExpectJsonlMatches(*s);
  s.reset();

  // A crash after commit, before the append: missing lines are added.
  auto lines = ReadLines(dir_.Path("events.jsonl"));
  ASSERT_GT(lines.size(), 4u);
  {
    std::ofstream out(dir_.Path("events.jsonl"), std::ios::trunc);
    for (size_t i = 0; i + 4 < lines.size(); ++i) out << lines[i] << "\n";
  }
  s = OpenStore();
  ExpectJsonlMatches(*s);
  s.reset();

  // A lost file is rebuilt whole.
  std::filesystem::remove(dir_.Path("events.jsonl"));
  s = OpenStore();
  ExpectJsonlMatches(*s);
  EXPECT_EQ(*s->GetCursor("events.jsonl"), *s->LastEventSeq());
}

// A restored backup (or a power loss that kept the file's last lines and not
// the WAL's last commits): the file runs ahead of the table. It is moved
// aside and rebuilt, not appended to after lines the database never had.
TEST_F(StoreTest, EventsJsonlAheadOfTheDatabaseIsRebuilt) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  Finish(*s, ids[0]);
  s.reset();
  std::filesystem::copy_file(dir_.Path("forge.db"), dir_.Path("backup.db"));
  s = OpenStore();
  Finish(*s, ids[1]);
  s.reset();
  const auto ahead = ReadLines(dir_.Path("events.jsonl"));
  std::filesystem::remove(dir_.Path("forge.db-wal"));
  std::filesystem::remove(dir_.Path("forge.db-shm"));
  std::filesystem::copy_file(dir_.Path("backup.db"), dir_.Path("forge.db"),
                             std::filesystem::copy_options::overwrite_existing);
  s = OpenStore();
  MustSubmit(*s, {Task("c")});  // new events take the seqs the file had used
  ExpectJsonlMatches(*s);
  std::vector<std::string> aside;
  for (const auto& e : std::filesystem::directory_iterator(dir_.Path(""))) {
    if (e.path().filename().string().starts_with("events.jsonl.diverged-")) {
      aside.push_back(e.path());
    }
  }
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(ReadLines(aside[0]), ahead) << "the operator keeps the old file";
  s.reset();
  s = OpenStore();  // a file that matches is left as it is
  ExpectJsonlMatches(*s);
}

TEST_F(StoreTest, EventsJsonlFailureNeverFailsTheDatabase) {
  // A directory where the file should be: every open/append fails.
  std::filesystem::create_directory(dir_.Path("events.jsonl"));
  auto s = OpenStore();
  ASSERT_TRUE(s);
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  Finish(*s, ids[0]);
  EXPECT_EQ(StateOf(*s, ids[0]), TaskState::kDone);
  // Once the path is usable again, the next commit writes everything missed.
  std::filesystem::remove(dir_.Path("events.jsonl"));
  Finish(*s, ids[1]);
  ExpectJsonlMatches(*s);
}

TEST_F(StoreTest, ReplayAfterReopenEqualsLiveStates) {
  auto s = OpenStore();
  auto ids =
      MustSubmit(*s, {Task("a", "a"), Task("b", "b", {"a"}), Task("c"), Task("d"), Task("e")});
  Finish(*s, ids[0]);
  AttemptInfo c = MustLease(*s, ids[2]);
  Close cool;
  cool.outcome = Outcome::kFailed;
  cool.next_state = TaskState::kCooldown;
  cool.not_before_ms = clock_.WallMs() + 1;
  ASSERT_TRUE(s->CloseAttempt(c.id, cool).ok());
  ASSERT_TRUE(s->Cancel(ids[3], "x").ok());
  MustLease(*s, ids[4]);
  ExpectReplayMatchesTables(*s);
  s.reset();
  s = OpenStore();
  ExpectReplayMatchesTables(*s);
  auto replay = s->ReplayStates();
  EXPECT_EQ(replay->at(ids[1]), TaskState::kReady);
  EXPECT_EQ(replay->at(ids[2]), TaskState::kCooldown);
  EXPECT_EQ(replay->at(ids[3]), TaskState::kCancelled);
  EXPECT_EQ(replay->at(ids[4]), TaskState::kRunning);
}

// ---------------------------------------------------------------- schema

TEST_F(StoreTest, OlderDatabaseIsMigratedAndNewerRefused) {
  {  // A version-0 database: a meta table saying 0 and nothing else.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.Path("forge.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                           "INSERT INTO meta VALUES('schema_version', '0');",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto ro = Store::Open(Options(/*read_only=*/true));
  ASSERT_FALSE(ro.ok());
  EXPECT_EQ(ro.error().code, ErrorCode::kConflict);
  EXPECT_THAT(ro.error().message, HasSubstr("database schema version 0 is older than this forge"));

  auto s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->SchemaVersion(), kSchemaVersion);
  MustSubmit(*s, {Task("after migration")});
  ASSERT_EQ(sqlite3_exec(s->raw(), "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  s.reset();
  for (bool read_only : {false, true}) {
    auto newer = Store::Open(Options(read_only));
    ASSERT_FALSE(newer.ok());
    EXPECT_EQ(newer.error().code, ErrorCode::kConflict);
    EXPECT_THAT(newer.error().message,
                HasSubstr("database schema version 99 is newer than this forge (" +
                          std::to_string(kSchemaVersion) + "); upgrade forge"));
    EXPECT_THAT(newer.error().message, HasSubstr(dir_.Path("forge.db")));
  }
}

TEST_F(StoreTest, Version1DatabaseGetsCountsFilledFromItsRows) {
  // A version-1 database with tasks in several states, as an older forge left it.
  CreateOldDatabase(1,
                    "INSERT INTO tasks(id, title, state, max_attempts, created_at, "
                    "updated_at) VALUES('a', 'a', 'ready', 3, 0, 0), "
                    "('b', 'b', 'ready', 3, 0, 0), ('c', 'c', 'done', 3, 0, 0), "
                    "('d', 'd', 'cooldown', 3, 0, 0);");
  auto s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->SchemaVersion(), kSchemaVersion);
  auto counts = s->QueueCounts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->at("ready"), 2);
  EXPECT_EQ(counts->at("done"), 1);
  EXPECT_EQ(counts->at("cooldown"), 1);
  EXPECT_EQ(counts->at("running"), 0);
  ExpectCountsMatch(*s);
  // Later changes keep them, including a row changed behind the store's back.
  auto ids = MustSubmit(*s, {Task("new")});
  Finish(*s, ids[0]);
  ASSERT_EQ(sqlite3_exec(s->raw(), "DELETE FROM tasks WHERE id = 'd'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(s->raw(), "UPDATE tasks SET state = 'cancelled' WHERE id = 'a'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  ExpectCountsMatch(*s);
  EXPECT_EQ(s->QueueCounts()->at("done"), 2);
  EXPECT_EQ(s->QueueCounts()->at("ready"), 1);

  // A drift (a hand edit of the counts) is reported, naming the state.
  ASSERT_EQ(sqlite3_exec(s->raw(), "UPDATE task_counts SET n = 7 WHERE state = 'ready'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  auto mismatches = s->CountMismatches();
  ASSERT_TRUE(mismatches.ok());
  EXPECT_THAT(*mismatches, ElementsAre("ready: counted 7, actual 1"));
}

TEST_F(StoreTest, Version3DatabaseKeepsItsCooldownTasksDue) {
  // A version-3 database with a due cooldown task and a ready one.
  CreateOldDatabase(3,
                    "INSERT INTO tasks(id, title, state, max_attempts, not_before, "
                    "created_at, updated_at) VALUES('c', 'c', 'cooldown', 3, 5, 0, 0), "
                    "('r', 'r', 'ready', 3, 0, 0, 0);");
  auto s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->SchemaVersion(), kSchemaVersion);
  // tasks_due now holds cooldown tasks only, so no other state change writes it.
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(s->raw(), "SELECT sql FROM sqlite_master WHERE name = 'tasks_due'",
                               -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_THAT(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)),
              HasSubstr("WHERE state = 'cooldown'"));
  sqlite3_finalize(stmt);
  EXPECT_EQ(*s->NextDue(), std::optional<int64_t>(5));
  EXPECT_EQ(*s->PromoteDue(4), 0);
  EXPECT_EQ(*s->PromoteDue(5), 1);
  EXPECT_EQ(StateOf(*s, "c"), TaskState::kReady);
  EXPECT_EQ(*s->NextDue(), std::nullopt);
}

// A version-5 database (before submit keys) reads as it is read-only, for a
// forge-ctl upgraded before its supervisor restarted; opened read-write it
// gets the keys' table, and keyed submits work beside its tasks.
TEST_F(StoreTest, Version5DatabaseIsReadAsItIsAndTakesKeysOnceMigrated) {
  CreateOldDatabase(5,
                    "INSERT INTO tasks(id, title, state, max_attempts, created_at, updated_at) "
                    "VALUES('t1', 'old', 'ready', 3, 0, 0);");
  {
    auto ro = Store::Open(Options(/*read_only=*/true));
    ASSERT_TRUE(ro.ok()) << ro.error().ToString();
    EXPECT_EQ((*ro)->SchemaVersion(), 5);
    EXPECT_EQ((*ro)->GetTask("t1")->title, "old");
    EXPECT_EQ((*ro)->ListTasks({})->size(), 1u);
    EXPECT_TRUE((*ro)->Events({})->empty());
    EXPECT_TRUE((*ro)->CountMismatches().ok());
    EXPECT_TRUE((*ro)->QueueCounts().ok());
  }
  auto s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->SchemaVersion(), kSchemaVersion);
  auto keyed = s->SubmitOnce("after-upgrade", {Task("new")});
  ASSERT_TRUE(keyed.ok()) << keyed.error().ToString();
  EXPECT_FALSE(keyed->existing);
  auto again = s->SubmitOnce("after-upgrade", {Task("new")});
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_TRUE(again->existing);
  EXPECT_EQ(again->ids, keyed->ids);
  EXPECT_EQ(s->ListTasks({})->size(), 2u);
}

// A version-6 database (before tasks.base_commit) reads as it is read-only,
// its tasks with no base recorded; migrated, its tasks have none either
// (their worktrees' refs still hold it, and the next attempt reports it)
// and take one.
TEST_F(StoreTest, Version6DatabaseReadsWithoutBaseCommitsAndTakesThemOnceMigrated) {
  CreateOldDatabase(6,
                    "INSERT INTO tasks(id, title, state, max_attempts, repo, created_at, "
                    "updated_at) VALUES('t1', 'old', 'ready', 3, '/r', 0, 0);");
  {
    auto ro = Store::Open(Options(/*read_only=*/true));
    ASSERT_TRUE(ro.ok()) << ro.error().ToString();
    EXPECT_EQ((*ro)->SchemaVersion(), 6);
    auto t = (*ro)->GetTask("t1");
    ASSERT_TRUE(t.ok()) << t.error().ToString();
    EXPECT_EQ(t->title, "old");
    EXPECT_EQ(t->base_commit, "");
    auto listed = (*ro)->ListTasks({});
    ASSERT_TRUE(listed.ok()) << listed.error().ToString();
    EXPECT_EQ(listed->size(), 1u);
  }
  auto s = OpenStore();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->SchemaVersion(), kSchemaVersion);
  EXPECT_EQ(s->GetTask("t1")->base_commit, "");
  AttemptInfo a = MustLease(*s, "t1");
  ASSERT_TRUE(s->MarkAgentStarted(a.id, 555, 555, 123, std::string(40, 'c')).ok());
  EXPECT_EQ(s->GetTask("t1")->base_commit, std::string(40, 'c'));
  // And a read-only open of the migrated database reads it.
  s.reset();
  auto ro = Store::Open(Options(/*read_only=*/true));
  ASSERT_TRUE(ro.ok()) << ro.error().ToString();
  EXPECT_EQ((*ro)->GetTask("t1")->base_commit, std::string(40, 'c'));
}

TEST_F(StoreTest, EventsJsonlCursorIsWrittenOnceItLagsAndOnOpen) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a")});
  Finish(*s, ids[0]);
  // A handful of events behind: not worth a write in every transaction.
  EXPECT_EQ(*s->GetCursor("events.jsonl"), 0);
  EXPECT_GT(*s->LastEventSeq(), 0);
  std::vector<proto::SubmitTask> batch(1000, Task("bulk"));
  MustSubmit(*s, batch);
  int64_t after_batch = *s->LastEventSeq();
  // The first write once the file is 1,000 events ahead records where it
  // was when that write began; the next few leave it.
  auto b = MustSubmit(*s, {Task("b")});
  EXPECT_EQ(*s->GetCursor("events.jsonl"), after_batch);
  Finish(*s, b[0]);
  EXPECT_EQ(*s->GetCursor("events.jsonl"), after_batch);
  ExpectJsonlMatches(*s);
  s.reset();
  s = OpenStore();
  EXPECT_EQ(*s->GetCursor("events.jsonl"), *s->LastEventSeq());
}

TEST_F(StoreTest, ReadOnlyOpenReadsButNeverWrites) {
  auto missing = Store::Open(Options(/*read_only=*/true));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "database " + dir_.Path("forge.db") + " not found");
  EXPECT_FALSE(std::filesystem::exists(dir_.Path("forge.db")));

  auto writer = OpenStore();
  auto ids = MustSubmit(*writer, {Task("a")});
  auto reader = OpenStore(/*read_only=*/true);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->GetTask(ids[0])->title, "a");
  auto w = reader->Submit({Task("b")});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::kConflict);
  EXPECT_THAT(w.error().message, HasSubstr("read-only"));
  EXPECT_FALSE(reader->Cancel(ids[0], "").ok());
  EXPECT_NE(sqlite3_exec(reader->raw(), "DELETE FROM tasks", nullptr, nullptr, nullptr), SQLITE_OK);
  // A reader in the middle of a read transaction does not block the writer,
  // and sees the writes once it starts a new one.
  ASSERT_EQ(
      sqlite3_exec(reader->raw(), "BEGIN; SELECT COUNT(*) FROM tasks;", nullptr, nullptr, nullptr),
      SQLITE_OK);
  Finish(*writer, ids[0]);
  ASSERT_EQ(sqlite3_exec(reader->raw(), "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(StateOf(*reader, ids[0]), TaskState::kDone);
  EXPECT_EQ(*reader->IntegrityCheck(), "ok");

  // forge-ctl's usual case: no writer running at all.
  reader.reset();
  writer.reset();
  reader = OpenStore(/*read_only=*/true);
  ASSERT_TRUE(reader);
  EXPECT_EQ(StateOf(*reader, ids[0]), TaskState::kDone);
  EXPECT_EQ(reader->Attempts(ids[0])->size(), 1u);
}

// ---------------------------------------------------------------- crash safety

// The child: recover open attempts, then submit and finish tasks forever,
// reporting each finished id on `fd` after its commit.
[[noreturn]] void CrashChild(const std::string& dir, int fd, int round) {
  StoreOptions o;
  o.db_path = dir + "/forge.db";
  o.events_jsonl_path = dir + "/events.jsonl";
  auto opened = Store::Open(o);
  if (!opened.ok()) _exit(10);
  Store& s = **opened;
  auto open = s.OpenAttempts();
  if (!open.ok()) _exit(11);
  for (const auto& a : *open) {
    Close c;
    c.outcome = Outcome::kRecovered;
    c.next_state = TaskState::kReady;
    c.counted = false;
    if (!s.CloseAttempt(a.id, c).ok()) _exit(12);
  }
  for (int i = 0;; ++i) {
    std::string local = "r" + std::to_string(round) + "-" + std::to_string(i);
    auto ids = s.Submit({Task(local, local), Task(local + "-dep", "", {local})});
    if (!ids.ok()) _exit(13);
    for (;;) {
      auto next = s.NextReady();
      if (!next.ok()) _exit(14);
      if (!*next) break;
      Lease lease;
      lease.worker_pid = getpid();
      auto a = s.LeaseAttempt((*next)->id, lease);
      if (!a.ok()) _exit(15);
      AgentReport r;
      r.outcome = Outcome::kPassed;
      if (!s.RecordAgentResult(a->id, r).ok()) _exit(16);
      Close c;
      c.outcome = Outcome::kPassed;
      c.next_state = TaskState::kDone;
      if (!s.CloseAttempt(a->id, c).ok()) _exit(17);
      std::string line = (*next)->id + "\n";
      if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(18);
    }
  }
}

// Reads '\n'-terminated ids from fd until `want` are seen (want < 0: EOF).
void ReadIds(int fd, int want, std::vector<std::string>& ids, std::string& partial) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (want < 0 || static_cast<int>(ids.size()) < want) {
    pollfd p{fd, POLLIN, 0};
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    ASSERT_GT(left, 0) << "timed out waiting for the child";
    ASSERT_GE(poll(&p, 1, left), 0);
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return;  // EOF: the child is gone
    partial.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
      ids.push_back(partial.substr(0, nl));
      partial.erase(0, nl + 1);
    }
  }
}

TEST_F(StoreTest, SurvivesSigkillAtRandomMoments) {
  unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const std::string dir = dir_.Path("");
  std::vector<std::string> reported;
  for (int round = 0; round < SanitizerScaledRounds(20); ++round) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      CrashChild(dir, fds[1], round);
    }
    close(fds[1]);
    int k = 1 + static_cast<int>(rng() % 12);
    std::vector<std::string> ids;
    std::string partial;
    ReadIds(fds[0], k, ids, partial);
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ReadIds(fds[0], -1, ids, partial);  // whatever it reported before dying
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status))
        << "child exited by itself with " << WEXITSTATUS(status) << " in round " << round;
    ASSERT_GE(static_cast<int>(ids.size()), k);
    reported.insert(reported.end(), ids.begin(), ids.end());

    auto s = OpenStore();
    ASSERT_TRUE(s);
    ASSERT_EQ(*s->IntegrityCheck(), "ok") << "round " << round;
    for (const auto& id : reported) {
      auto t = s->GetTask(id);
      ASSERT_TRUE(t.ok()) << id << " reported but missing in round " << round;
      EXPECT_EQ(t->state, TaskState::kDone) << id;
      auto kinds = EventKinds(*s, id);
      EXPECT_EQ(kinds.front(), "task.submitted") << id;
      EXPECT_EQ(kinds.back(), "task.done") << id;
    }
    ExpectReplayMatchesTables(*s);
    ExpectJsonlMatches(*s);
  }
  // No floor on reported.size() beyond each round's k: under ASan there are
  // five rounds, and five draws of k can sum to less than any fixed floor.
}

// SQLite's memory statistics take a global mutex around every allocation;
// the first open turns them off, so its counter stays at zero however much
// the store allocates.
// doctor compares the event log's replay with the tasks table while the
// supervisor writes: both reads must see one state.
TEST_F(StoreTest, ReadConsistentlySeesOneSnapshotWhileAWriterCommits) {
  auto writer = OpenStore();
  MustSubmit(*writer, {Task("first")});
  auto reader = OpenStore(/*read_only=*/true);
  ASSERT_NE(reader, nullptr);
  size_t before = 0, after = 0;
  Status read = reader->ReadConsistently([&] {
    before = reader->ListTasks(ListFilter{})->size();
    MustSubmit(*writer, {Task("committed meanwhile")});
    after = reader->ReplayStates()->size();
    return Status::Ok();
  });
  ASSERT_TRUE(read.ok()) << read.error().ToString();
  EXPECT_EQ(before, 1u);
  EXPECT_EQ(after, 1u) << "the second read saw a commit made after the first";
  EXPECT_EQ(reader->ListTasks(ListFilter{})->size(), 2u);
}

TEST_F(StoreTest, SqliteMemoryStatisticsAreOff) {
  auto s = OpenStore();
  MustSubmit(*s, {Task("one"), Task("two")});
  ASSERT_TRUE(s->NextReady().ok());
  EXPECT_EQ(sqlite3_memory_used(), 0);
}

// The default VFS, but while `failing` is set every write, sync and
// truncate of a file fails with SQLITE_IOERR: a device failing under the
// database (a yanked disk, an I/O error on the WAL). Registered as the
// default VFS for its lifetime, so the store under test uses it unchanged.
// Use the one ProcessFailingVfs() returns (see there).
class FailingVfs {
 public:
  FailingVfs() {
    base_ = sqlite3_vfs_find(nullptr);
    vfs_ = *base_;
    vfs_.zName = "forge-test-failing";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + base_->szOsFile;
    vfs_.xOpen = &Open;
    instance_ = this;
    sqlite3_vfs_register(&vfs_, /*makeDflt=*/1);
  }
  ~FailingVfs() {
    sqlite3_vfs_unregister(&vfs_);
    instance_ = nullptr;
  }
  FailingVfs(const FailingVfs&) = delete;
  FailingVfs& operator=(const FailingVfs&) = delete;

  std::atomic<bool> failing{false};
  std::atomic<int> refused{0};  // writes, syncs and truncates failed so far

 private:
  // Our file, with the base VFS's file right after it in the same block.
  struct File {
    sqlite3_file base;
    sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
  };
  static sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real(); }
  static bool Refuse() {
    if (!instance_->failing) return false;
    ++instance_->refused;
    return true;
  }

  static int Open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out) {
    File* file = reinterpret_cast<File*>(f);
    file->base.pMethods = nullptr;
    int rc = instance_->base_->xOpen(instance_->base_, name, file->real(), flags, out);
    if (rc == SQLITE_OK && file->real()->pMethods != nullptr) {
      instance_->methods_ = *file->real()->pMethods;
      instance_->methods_.xClose = [](sqlite3_file* g) {
        return Real(g)->pMethods->xClose(Real(g));
      };
      instance_->methods_.xRead = [](sqlite3_file* g, void* b, int n, sqlite3_int64 o) {
        return Real(g)->pMethods->xRead(Real(g), b, n, o);
      };
      instance_->methods_.xWrite = [](sqlite3_file* g, const void* b, int n, sqlite3_int64 o) {
        return Refuse() ? SQLITE_IOERR_WRITE : Real(g)->pMethods->xWrite(Real(g), b, n, o);
      };
      instance_->methods_.xTruncate = [](sqlite3_file* g, sqlite3_int64 n) {
        return Refuse() ? SQLITE_IOERR_TRUNCATE : Real(g)->pMethods->xTruncate(Real(g), n);
      };
      instance_->methods_.xSync = [](sqlite3_file* g, int flags) {
        return Refuse() ? SQLITE_IOERR_FSYNC : Real(g)->pMethods->xSync(Real(g), flags);
      };
      instance_->methods_.xFileSize = [](sqlite3_file* g, sqlite3_int64* n) {
        return Real(g)->pMethods->xFileSize(Real(g), n);
      };
      instance_->methods_.xLock = [](sqlite3_file* g, int l) {
        return Real(g)->pMethods->xLock(Real(g), l);
      };
      instance_->methods_.xUnlock = [](sqlite3_file* g, int l) {
        return Real(g)->pMethods->xUnlock(Real(g), l);
      };
      instance_->methods_.xCheckReservedLock = [](sqlite3_file* g, int* r) {
        return Real(g)->pMethods->xCheckReservedLock(Real(g), r);
      };
      instance_->methods_.xFileControl = [](sqlite3_file* g, int op, void* arg) {
        return Real(g)->pMethods->xFileControl(Real(g), op, arg);
      };
      instance_->methods_.xSectorSize = [](sqlite3_file* g) {
        return Real(g)->pMethods->xSectorSize(Real(g));
      };
      instance_->methods_.xDeviceCharacteristics = [](sqlite3_file* g) {
        return Real(g)->pMethods->xDeviceCharacteristics(Real(g));
      };
      instance_->methods_.xShmMap = [](sqlite3_file* g, int pg, int sz, int extend,
                                       void volatile** p) {
        return Real(g)->pMethods->xShmMap(Real(g), pg, sz, extend, p);
      };
      instance_->methods_.xShmLock = [](sqlite3_file* g, int off, int n, int flags) {
        return Real(g)->pMethods->xShmLock(Real(g), off, n, flags);
      };
      instance_->methods_.xShmBarrier = [](sqlite3_file* g) {
        Real(g)->pMethods->xShmBarrier(Real(g));
      };
      instance_->methods_.xShmUnmap = [](sqlite3_file* g, int del) {
        return Real(g)->pMethods->xShmUnmap(Real(g), del);
      };
      // No memory-mapped reads: every page goes through xRead above.
      instance_->methods_.iVersion = std::min(instance_->methods_.iVersion, 2);
      file->base.pMethods = &instance_->methods_;
    }
    return rc;
  }

  static inline FailingVfs* instance_ = nullptr;
  sqlite3_vfs* base_ = nullptr;
  sqlite3_vfs vfs_{};
  sqlite3_io_methods methods_{};
};

// The store opens its files through its own VFS (WalWriteBufferVfs), which
// wraps whatever VFS is the default when the first store of the process
// opens and keeps it for the process. A FailingVfs registered by a test
// would be under the store's files only when that test ran first in its
// process, so one is installed for the whole process before any test runs
// (a global test environment) and never removed; it passes everything
// through until a test sets `failing`.
FailingVfs& ProcessFailingVfs() {
  static FailingVfs* const vfs = new FailingVfs;
  return *vfs;
}

class FailingVfsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // Registering a VFS initializes SQLite, after which Conn::Open can no
    // longer turn its memory statistics off (SqliteMemoryStatisticsAreOff):
    // a connection on the default VFS opens first, as a store's would.
    Conn first;
    ASSERT_TRUE(first.Open(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE).ok());
    ProcessFailingVfs();
  }
};
[[maybe_unused]] ::testing::Environment* const kFailingVfsEnvironment =
    ::testing::AddGlobalTestEnvironment(new FailingVfsEnvironment);

// The supervisor's store pause assumes that a write refused with an I/O
// error leaves the database as it was, and that the same open store writes
// again once the device recovers (it retries on it; it never reopens). Both
// are shown here with every write, sync and truncate failing meanwhile.
TEST_F(StoreTest, AnIoErrorRefusesTheWriteAndTheStoreRecoversWhenTheDeviceDoes) {
  FailingVfs& vfs = ProcessFailingVfs();
  struct Heal {  // an assertion failing midway must not fail the tests after it
    FailingVfs& vfs;
    ~Heal() { vfs.failing = false; }
  } heal{vfs};
  vfs.refused = 0;
  auto s = OpenStore();
  ASSERT_NE(s, nullptr);
  auto before = MustSubmit(*s, {Task("before")});
  ASSERT_EQ(before.size(), 1u);
  AttemptInfo a = MustLease(*s, before[0]);

  vfs.failing = true;
  auto refused = s->Submit({Task("refused")});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kIo) << refused.error().ToString();
  EXPECT_THAT(refused.error().message, HasSubstr("disk I/O error"));
  EXPECT_THAT(refused.error().message, HasSubstr("forge.db")) << "the file is named";
  AgentReport r;
  r.outcome = Outcome::kPassed;
  r.cost_usd = 0.25;
  auto result = s->RecordAgentResult(a.id, r);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kIo) << result.error().ToString();
  EXPECT_GT(vfs.refused.load(), 0);
  // Reads still work meanwhile (status, ls).
  EXPECT_EQ(StateOf(*s, before[0]), TaskState::kRunning);

  vfs.failing = false;
  // The refused writes changed nothing; the same store writes again.
  auto tasks = s->ListTasks(ListFilter{});
  ASSERT_TRUE(tasks.ok()) << tasks.error().ToString();
  EXPECT_EQ(tasks->size(), 1u);
  EXPECT_EQ(s->GetAttempt(a.id)->cost_usd, 0);
  ASSERT_TRUE(s->RecordAgentResult(a.id, r).ok());
  EXPECT_EQ(s->GetAttempt(a.id)->cost_usd, 0.25);
  auto after = MustSubmit(*s, {Task("after")});
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(StateOf(*s, after[0]), TaskState::kReady);
  auto integrity = s->IntegrityCheck();
  ASSERT_TRUE(integrity.ok());
  EXPECT_EQ(*integrity, "ok");
  // And it is all on disk: a fresh open sees it.
  s.reset();
  auto reopened = OpenStore();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->ListTasks(ListFilter{})->size(), 2u);
  EXPECT_EQ(reopened->GetAttempt(a.id)->cost_usd, 0.25);
}

}  // namespace
}  // namespace forge::store

namespace forge::store {
namespace {

// `show`'s timeline keeps a task's newest events (where why it stopped is)
// and counts the ones it leaves out; the reason of a blocked task comes from
// its task.blocked event even when later events pushed that one out.
TEST_F(StoreTest, ShowKeepsTheNewestEventsAndSaysWhyATaskIsBlocked) {
  auto s = OpenStore();
  auto ids = MustSubmit(*s, {Task("a"), Task("b")});
  const std::string id = ids[0];
  AttemptInfo a = MustLease(*s, id);
  Close c;
  c.outcome = Outcome::kFailed;
  c.error = "the agent's own error";
  c.next_state = TaskState::kBlocked;
  c.reason = "task budget exceeded";
  ASSERT_TRUE(s->CloseAttempt(a.id, c).ok());
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(s->Emit("note", json{{"i", i}}, id).ok());
  ASSERT_TRUE(s->Emit("note", json{{"other", true}}, ids[1]).ok());
  EventFilter every;
  every.task_id = id;
  every.limit = 0;
  auto all = s->Events(every);
  ASSERT_TRUE(all.ok());
  ASSERT_GT(all->size(), 12u);

  auto show = s->Show(id, 10);
  ASSERT_TRUE(show.ok()) << show.error().ToString();
  EXPECT_EQ(show->task.id, id);
  ASSERT_EQ(show->attempts.size(), 1u);
  ASSERT_EQ(show->timeline.size(), 10u);
  EXPECT_EQ(show->timeline.front().seq, (*all)[all->size() - 10].seq);
  EXPECT_EQ(show->timeline.back().seq, all->back().seq);
  EXPECT_EQ(show->timeline_omitted, static_cast<int64_t>(all->size()) - 10);
  EXPECT_EQ(show->state_reason, "task budget exceeded");

  auto whole = s->Show(id, 1000);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->timeline.size(), all->size());
  EXPECT_EQ(whole->timeline_omitted, 0);
  EXPECT_EQ(whole->state_reason, "task budget exceeded");

  // Cancelled: the operator's reason. Neither: none.
  ASSERT_TRUE(s->Cancel(ids[1], "not needed").ok());
  EXPECT_EQ(s->Show(ids[1], 1000)->state_reason, "not needed");
  ASSERT_TRUE(s->Retry(id).ok());
  EXPECT_EQ(s->Show(id, 1000)->state_reason, "");
  EXPECT_EQ(s->Show("t99", 10).error().code, ErrorCode::kNotFound);
}

// events --limit N without --since: the newest N, oldest first; `before`
// pages back from there.
TEST_F(StoreTest, EventsNewestAndBefore) {
  auto s = OpenStore();
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(s->Emit(i % 2 ? "odd" : "even", json::object()).ok());
  auto seqs = [&](int64_t since, int64_t before, const std::string& kind, bool newest) {
    EventFilter f;
    f.since_seq = since;
    f.before_seq = before;
    f.kind = kind;
    f.limit = kind.empty() ? 3 : 2;
    f.newest = newest;
    std::vector<int64_t> out;
    auto events = s->Events(f);
    EXPECT_TRUE(events.ok());
    if (events.ok()) {
      for (const auto& e : *events) out.push_back(e.seq);
    }
    return out;
  };
  EXPECT_THAT(seqs(0, 0, "", true), ElementsAre(6, 7, 8));
  EXPECT_THAT(seqs(0, 6, "", true), ElementsAre(3, 4, 5));
  EXPECT_THAT(seqs(0, 0, "odd", true), ElementsAre(6, 8));
  EXPECT_THAT(seqs(6, 0, "", true), ElementsAre(7, 8));
  EXPECT_THAT(seqs(0, 0, "", false), ElementsAre(1, 2, 3));
  EXPECT_THAT(seqs(0, 3, "", false), ElementsAre(1, 2));
}

}  // namespace
}  // namespace forge::store
