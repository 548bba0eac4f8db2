// Faults: a busy database, corrupt or unusable files, misbehaving children,
// a full disk. (Clock jumps: clock_jump_test.cc.) Each fault must be contained:
// the supervisor keeps serving, the fault is recorded, no task is lost.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <thread>

#include "tests/reliability/reliability.h"

namespace forge::reliability {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;
using ::testing::Not;

bool AllIn(itest::Forge& f, const std::vector<std::string>& ids, TaskState state) {
  for (const auto& id : ids) {
    auto t = f.db().GetTask(id);
    if (!t.ok() || t->state != state) return false;
  }
  return true;
}

// Holds a write lock (BEGIN IMMEDIATE) on db for hold_ms from another connection.
class WriteLockHolder {
 public:
  WriteLockHolder(const std::string& db, int64_t hold_ms) {
    thread_ = std::thread([this, db, hold_ms] {
      sqlite3* c = nullptr;
      // The supervisor may be mid-commit when we start: wait for our turn.
      if (sqlite3_open(db.c_str(), &c) == SQLITE_OK &&
          sqlite3_busy_timeout(c, 10'000) == SQLITE_OK &&
          sqlite3_exec(c, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK) {
        held_ = true;
        // The fault's duration, not a synchronisation: the lock is held this long.
        std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
        sqlite3_exec(c, "COMMIT", nullptr, nullptr, nullptr);
      }
      sqlite3_close(c);
      done_ = true;
    });
  }
  ~WriteLockHolder() { thread_.join(); }
  bool held() const { return held_; }
  bool done() const { return done_; }

 private:
  std::atomic<bool> held_{false}, done_{false};
  std::thread thread_;
};

TEST(Faults, BusyDatabaseDelaysButFailsNothing) {
  ForgeOptions o;
  o.heartbeat_timeout = "20s";  // the loop itself waits on the lock meanwhile
  itest::Forge f(o);
  f.Start();
  auto first = f.SubmitMany(5, "slow_succeed");
  std::vector<std::string> later;
  {
    WriteLockHolder lock(f.state_dir() + "/forge.db", 3000);
    ASSERT_TRUE(itest::WaitFor([&] { return lock.held() || lock.done(); }, 10'000));
    ASSERT_TRUE(lock.held());
    // A submit while the lock is held waits for it (busy timeout) instead of failing.
    json tasks = json::array();
    for (int i = 0; i < 5; ++i)
      tasks.push_back({{"title", "busy " + std::to_string(i)},
                       {"brief", "b"},
                       {"env", {{"FAKE_MODE", "succeed"}}}});
    auto r = f.ctl().Call("submit", json{{"tasks", tasks}}, 30'000);
    ASSERT_TRUE(r.ok()) << r.error().message;
    later = (*r)["ids"].get<std::vector<std::string>>();
    EXPECT_TRUE(lock.done()) << "the submit returned while the lock was still held";
  }
  auto all = first;
  all.insert(all.end(), later.begin(), later.end());
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, all, TaskState::kDone); }, 120'000))
      << f.SupervisorLog();
  for (const auto& id : all) {
    for (const auto& a : f.Attempts(id)) EXPECT_EQ(a.outcome, "passed") << id;
  }
}

// A submit that waits on a locked database stalls the loop for seconds, the
// children's heartbeats queued unread meanwhile: they are read before any
// child is judged silent, so a stall longer than heartbeat_timeout loses
// no child. (It killed every one, their attempts `lost`.)
TEST(Faults, ALoopStalledOnALockLosesNoChild) {
  ForgeOptions o;
  o.heartbeat_interval = "200ms";
  o.heartbeat_timeout = "1s";
  itest::Forge f(o);
  f.Start();
  std::vector<std::string> first;
  for (int i = 0; i < 2; ++i) first.push_back(f.Submit("slow_succeed", {{"FAKE_SLEEP", "5"}}));
  for (const auto& id : first) ASSERT_TRUE(f.WaitState(id, TaskState::kRunning));
  {
    WriteLockHolder lock(f.state_dir() + "/forge.db", 3000);
    ASSERT_TRUE(itest::WaitFor([&] { return lock.held() || lock.done(); }, 10'000));
    ASSERT_TRUE(lock.held());
    json tasks =
        json::array({{{"title", "t"}, {"brief", "b"}, {"env", {{"FAKE_MODE", "succeed"}}}}});
    auto r = f.ctl().Call("submit", json{{"tasks", tasks}}, 30'000);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(lock.done()) << "the submit returned while the lock was still held";
  }
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, first, TaskState::kDone); }, 60'000))
      << f.SupervisorLog();
  for (const auto& id : first) {
    for (const auto& a : f.Attempts(id)) EXPECT_EQ(a.outcome, "passed") << id;
  }
  EXPECT_FALSE(f.HasEvent("", "child.lost"));
  EXPECT_THAT(f.SupervisorLog(), Not(HasSubstr("no heartbeat")));
}

// The whole supervisor stopped (SIGSTOP; a frozen cgroup or a paused VM
// alike) past the heartbeat timeout: its ZeroMQ I/O thread stopped with it,
// the children's heartbeats wait in the socket's buffer, and a drain on the
// first turn after SIGCONT could not yet read them. Every child was killed
// as lost, and the attempts' work with them, on most stops.
TEST(Faults, ASupervisorStoppedAndContinuedLosesNoChild) {
  ForgeOptions o;
  o.heartbeat_interval = "100ms";
  o.heartbeat_timeout = "500ms";
  itest::Forge f(o);
  f.Start();
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) ids.push_back(f.Submit("slow_succeed", {{"FAKE_SLEEP", "7"}}));
  for (const auto& id : ids) ASSERT_TRUE(f.WaitState(id, TaskState::kRunning));
  auto children = [&f] {
    std::set<pid_t> pids;
    const json status = f.Status();
    for (const auto& c : status["children"]) pids.insert(c["pid"].get<pid_t>());
    return pids;
  };
  const std::set<pid_t> before = children();
  for (int stop = 0; stop < 4; ++stop) {
    ASSERT_EQ(::kill(f.pid(), SIGSTOP), 0);
    // The stalls and the runs between them are what is tested: stopped for
    // twice the heartbeat timeout, then running for one (the last two
    // stops each right after the one before).
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    ASSERT_EQ(::kill(f.pid(), SIGCONT), 0);
    if (stop < 2) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, ids, TaskState::kDone); }, 60'000))
      << f.SupervisorLog();
  for (const auto& id : ids) {
    auto attempts = f.Attempts(id);
    ASSERT_EQ(attempts.size(), 1u) << id << "\n" << f.SupervisorLog();
    EXPECT_EQ(attempts[0].outcome, "passed") << id;
  }
  EXPECT_FALSE(f.HasEvent("", "child.lost"));
  EXPECT_THAT(f.SupervisorLog(), Not(HasSubstr("no heartbeat")));
  EXPECT_EQ(children(), before);
}

// A write lock held past the store's busy timeout (5 s): the loop's writes
// meanwhile (here the agents' starts; a result or a close alike) are
// refused with SQLITE_BUSY. They are kept and written once the lock is let
// go (dispatch paused meanwhile, reason "database is locked"). They were
// only logged: a dropped start lost the agent's pid and group (what
// recovery kills), a dropped result or close left its attempt open with no
// child holding it.
TEST(Faults, ALockHeldPastTheBusyTimeoutPausesAndLosesNoWrite) {
  ForgeOptions o;
  o.heartbeat_timeout = "30s";  // the loop itself waits on the lock meanwhile
  itest::Forge f(o);
  f.Start();
  auto ids = f.SubmitMany(2, "slow_succeed");
  for (const auto& id : ids) ASSERT_TRUE(f.WaitState(id, TaskState::kRunning));
  {
    WriteLockHolder lock(f.state_dir() + "/forge.db", 7000);
    ASSERT_TRUE(itest::WaitFor([&] { return lock.held() || lock.done(); }, 10'000));
    ASSERT_TRUE(lock.held());
  }
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, ids, TaskState::kDone); }, 60'000))
      << f.SupervisorLog();
  for (const auto& id : ids) {
    for (const auto& a : f.Attempts(id)) {
      EXPECT_EQ(a.outcome, "passed") << id;
      EXPECT_GT(a.agent_pid, 0) << id << ": the agent's start was lost";
    }
  }
  auto paused = f.Events("", "dispatch.paused");
  ASSERT_FALSE(paused.empty()) << "no write was refused:\n" << f.SupervisorLog();
  EXPECT_EQ(paused[0].payload["kind"], "store");
  EXPECT_THAT(paused[0].payload["reason"].get<std::string>(), HasSubstr("database is locked"));
}

// A review without a verdict records its critic's spend as it ends
// (Supervisor::ReviewAgain). Refused by a lock held past the busy timeout,
// that write is kept and retried with the store pause: the task's cost
// counts every critic run once.
TEST(Faults, ACriticsSpendRefusedByALockIsKeptAndCountedOnce) {
  char tmpl[] = "/tmp/forge-critic-agent-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string runs = dir + "/critic-runs", locked = dir + "/locked";
  const std::string script = dir + "/critic.sh";
  // Each run costs $0.125; the first two (one review: the critic is asked
  // twice) answer in prose, the first once the test holds the lock; the
  // third approves.
  std::ofstream(script)
      << "#!/bin/sh\ncat >/dev/null\necho x >> '" << runs << "'\n"
      << "while [ ! -e '" << locked << "' ]; do sleep 0.01; done\n"
      << "if [ $(wc -l < '" << runs << "') -lt 3 ]; then text='LGTM'; "
      << "else text='{\\\"overall\\\":\\\"approve\\\"}'; fi\n"
      << "echo "
         "\"{\\\"type\\\":\\\"result\\\",\\\"subtype\\\":\\\"success\\\",\\\"is_error\\\":false,"
         "\\\"result\\\":\\\"$text\\\",\\\"total_cost_usd\\\":0.125}\"\n";
  ASSERT_EQ(::chmod(script.c_str(), 0755), 0);
  ForgeOptions o;
  o.max_attempts = 1;
  o.heartbeat_timeout = "30s";  // the loop itself waits on the lock meanwhile
  o.critic_yaml = "  agent: {profile: claude, command: [\"" + script + "\"]}\n";
  itest::Forge f(o);
  f.Start();
  std::string id = f.Submit("succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return std::filesystem::exists(runs); }, 20'000));
  {
    // Past the busy timeout (5 s) from the review's end, which follows the lock.
    WriteLockHolder lock(f.state_dir() + "/forge.db", 8000);
    ASSERT_TRUE(itest::WaitFor([&] { return lock.held() || lock.done(); }, 10'000));
    ASSERT_TRUE(lock.held());
    std::ofstream(locked) << "";
  }
  ASSERT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.SupervisorLog();
  auto attempts = f.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_DOUBLE_EQ(attempts[0].cost_usd, 3 * 0.125) << f.SupervisorLog();
  EXPECT_DOUBLE_EQ(f.Task(id).cost_usd, 3 * 0.125);
  auto paused = f.Events("", "dispatch.paused");
  ASSERT_FALSE(paused.empty()) << "no write was refused:\n" << f.SupervisorLog();
  EXPECT_EQ(paused[0].payload["kind"], "store");
  EXPECT_THAT(paused[0].payload["reason"].get<std::string>(),
              HasSubstr("recording the critic's spend for attempt"));
  std::filesystem::remove_all(dir);
}

TEST(Faults, LongReaderNeverBlocksTheSupervisor) {
  itest::Forge f;
  f.Start();
  // forge-ctl's offline reads are read transactions: hold one for the whole run.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2((f.state_dir() + "/forge.db").c_str(), &reader, SQLITE_OPEN_READONLY,
                            nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM tasks;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto ids = f.SubmitMany(10, "succeed");
  bool done = itest::WaitFor([&] { return AllIn(f, ids, TaskState::kDone); }, 120'000);
  sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  EXPECT_TRUE(done) << f.SupervisorLog();
}

// events.jsonl as JSON lines: each line's seq.
std::vector<int64_t> JsonlSeqs(const std::string& path) {
  std::vector<int64_t> seqs;
  std::istringstream in(ReadFile(path));
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    seqs.push_back(j.is_object() && j.contains("seq") ? j["seq"].get<int64_t>() : -1);
  }
  return seqs;
}

TEST(Faults, TruncatedEventsJsonlIsRepairedAtRestart) {
  itest::Forge f;
  f.Start();
  auto ids = f.SubmitMany(6, "succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, ids, TaskState::kDone); }, 60'000));
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
  std::string path = f.state_dir() + "/events.jsonl";
  std::string text = ReadFile(path);
  ASSERT_GT(text.size(), 100u);
  WriteFile(path, text.substr(0, text.size() / 2 + 7));  // cut mid-line
  f.Start();
  auto more = f.SubmitMany(2, "succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, more, TaskState::kDone); }, 60'000));
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
  // Exactly the committed events, in order, every line whole.
  auto events = f.Events();
  std::vector<int64_t> want;
  for (const auto& e : events) want.push_back(e.seq);
  EXPECT_EQ(JsonlSeqs(path), want);
}

TEST(Faults, CorruptBriefTemplateIsAClearErrorNotACrash) {
  itest::Forge f;
  f.Start();
  std::filesystem::create_directories(f.state_dir() + "/briefs");
  WriteFile(f.state_dir() + "/briefs/worker.mustache", "{{#task}} never closed {{/wrong}}");
  std::string id = f.Submit("succeed");
  ASSERT_TRUE(itest::WaitFor(
      [&] {
        auto t = f.db().GetTask(id);
        return t.ok() && (t->state == TaskState::kBlocked || t->state == TaskState::kDone);
      },
      60'000));
  auto t = f.Task(id);
  EXPECT_EQ(t.state, TaskState::kBlocked);
  EXPECT_THAT(t.last_error, HasSubstr("worker.mustache"));
  // Fixed template, retry: nothing was lost.
  std::filesystem::remove(f.state_dir() + "/briefs/worker.mustache");
  ASSERT_TRUE(f.ctl().Call("retry", json{{"id", id}}).ok());
  EXPECT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.SupervisorLog();
  EXPECT_TRUE(itest::ProcessAlive(f.pid()));
}

TEST(Faults, UnwritableLogDirIsAClearErrorAndNothingIsLost) {
  itest::Forge f;
  f.Start();
  // Root ignores permission bits, so block the log directory with a file:
  // mkdir of <state>/logs/<id> then fails for everyone (ENOTDIR/EEXIST).
  auto r = f.ctl().Call("submit",
                        json{{"tasks", json::array({json{{"title", "x"},
                                                         {"brief", "b"},
                                                         {"needs_approval", true},
                                                         {"env", {{"FAKE_MODE", "succeed"}}}}})}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::string id = (*r)["ids"][0].get<std::string>();
  std::filesystem::create_directories(f.state_dir() + "/logs");
  WriteFile(f.state_dir() + "/logs/" + id, "not a directory");
  ASSERT_TRUE(f.ctl().Call("approve", json{{"id", id}}).ok());
  ASSERT_TRUE(itest::WaitFor(
      [&] {
        auto a = f.db().Attempts(id);
        return a.ok() && !a->empty() && a->front().ended_at_ms > 0;
      },
      60'000))
      << f.SupervisorLog();
  auto first = f.Attempts(id).front();
  EXPECT_NE(first.outcome, "passed");
  EXPECT_THAT(first.error, HasSubstr(id)) << "the error should name the log path";
  std::filesystem::remove(f.state_dir() + "/logs/" + id);
  auto t = f.Task(id);
  if (t.state == TaskState::kBlocked) {
    ASSERT_TRUE(f.ctl().Call("retry", json{{"id", id}}).ok());
  }
  EXPECT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.SupervisorLog();
}

// ---- child faults: FORGE_WORKER_BIN runs forge_fake_child in a mode ----

// Every worker the supervisor spawns is the fake (workers=1): for faults that
// must end in the task being given up on.
std::unique_ptr<itest::Forge> StartWithFakeWorker(const std::string& mode, ForgeOptions o = {}) {
  o.workers = 1;
  auto f = std::make_unique<itest::Forge>(o);
  std::string wrapper = f->dir() + "/fake-worker.sh";
  WriteFile(wrapper, "#!/bin/sh\nexec " + itest::BinPath("forge_fake_child") + " --mode " + mode +
                         " \"$@\"\n");
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  o.extra_env["FORGE_WORKER_BIN"] = wrapper;
  f->Rewrite(o);
  f->Start();
  return f;
}

// workers=2: the first worker spawned is the fake, every other one (its
// partner and any replacement) the real forge-worker, so real work still gets
// done while the fake misbehaves. mkdir is the atomic "first spawn" test.
std::unique_ptr<itest::Forge> StartWithOneFakeWorker(const std::string& mode) {
  ForgeOptions o;
  o.workers = 2;
  auto f = std::make_unique<itest::Forge>(o);
  std::string wrapper = f->dir() + "/fake-worker.sh";
  WriteFile(wrapper, "#!/bin/sh\nif mkdir \"" + f->dir() +
                         "/fake-spawned\" 2>/dev/null; then\n"
                         "  exec " +
                         itest::BinPath("forge_fake_child") + " --mode " + mode +
                         " \"$@\"\nfi\nexec " + itest::BinPath("forge-worker") + " \"$@\"\n");
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  o.extra_env["FORGE_WORKER_BIN"] = wrapper;
  f->Rewrite(o);
  f->Start();
  return f;
}

int64_t Counter(itest::Forge& f, const std::string& name) {
  json s = f.Status();
  return s.contains("counters") ? s["counters"].value(name, int64_t{0}) : -1;
}

std::vector<std::string> FakeChildLog(itest::Forge& f) {
  std::vector<std::string> lines;
  std::istringstream in(ReadFile(f.state_dir() + "/fake_child.log"));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::set<std::string> FakeChildPids(itest::Forge& f) {
  std::set<std::string> pids;
  for (const auto& line : FakeChildLog(f)) pids.insert(line.substr(0, line.find(' ')));
  return pids;
}

bool FakeChildSaid(itest::Forge& f, const std::string& what) {
  for (const auto& line : FakeChildLog(f)) {
    if (line.find(what) != std::string::npos) return true;
  }
  return false;
}

bool SupervisorLogHas(itest::Forge& f, const std::string& what) {
  return f.SupervisorLog().find(what) != std::string::npos;
}

// Both workers said hello and are idle (the fake and the real one).
bool TwoWorkersUp(itest::Forge& f) {
  json s = f.Status();
  if (!s.contains("children")) return false;
  int up = 0;
  for (const auto& c : s["children"]) {
    if (c.value("role", "") == "worker" && c.value("state", "") == "idle") ++up;
  }
  return up >= 2;
}

TEST(ChildFaults, MalformedMessagesAreCountedAndIgnored) {
  auto f = StartWithOneFakeWorker("malformed");
  // Each kind of garbage (6 of them) reached the supervisor and was counted.
  ASSERT_TRUE(itest::WaitFor([&] { return Counter(*f, "bad_child_messages") >= 6; }, 30'000))
      << f->Status().dump();
  EXPECT_TRUE(FakeChildSaid(*f, "garbage 5")) << f->SupervisorLog();
  EXPECT_TRUE(SupervisorLogHas(*f, "undecodable message ignored")) << f->SupervisorLog();
  EXPECT_TRUE(SupervisorLogHas(*f, "hello says role 'critic'")) << f->SupervisorLog();
  // Contained: the supervisor is up, and real work is still done.
  auto ids = f->SubmitMany(3, "succeed");
  EXPECT_TRUE(itest::WaitFor([&] { return AllIn(*f, ids, TaskState::kDone); }, 90'000))
      << f->SupervisorLog();
  EXPECT_TRUE(itest::ProcessAlive(f->pid()));
  EXPECT_EQ(Integrity(*f), "ok");
}

TEST(ChildFaults, SilentAfterHelloIsKilledAndReplaced) {
  ForgeOptions o;
  o.max_infra_retries = 2;
  auto f = StartWithFakeWorker("silent", o);
  std::string id = f->Submit("succeed");
  // Each silent worker is declared lost after heartbeat_timeout and respawned;
  // the task is requeued uncounted until max_infra_retries, then blocked.
  ASSERT_TRUE(f->WaitState(id, TaskState::kBlocked, 90'000)) << f->SupervisorLog();
  EXPECT_GE(FakeChildPids(*f).size(), 3u);
  auto attempts = f->Attempts(id);
  ASSERT_GE(attempts.size(), 2u);
  for (const auto& a : attempts) {
    EXPECT_EQ(a.outcome, "lost");
    EXPECT_FALSE(a.counted);
  }
  EXPECT_TRUE(f->HasEvent("", "child.lost") || f->HasEvent(id, "child.lost") ||
              !f->Events("", "child.exited").empty());
  EXPECT_FALSE(f->Status().empty()) << "supervisor stopped answering";
}

// Every fake critic the supervisor spawns runs in `mode` (critics=1).
// `first_only`: the critics after the first are real ones.
std::unique_ptr<itest::Forge> StartWithFakeCritic(const std::string& mode, ForgeOptions o = {},
                                                  bool first_only = false) {
  o.critics = 1;
  auto f = std::make_unique<itest::Forge>(o);
  std::string wrapper = f->dir() + "/fake-critic.sh";
  std::string real = first_only ? "mkdir " + f->dir() + "/fake-critic-ran 2>/dev/null || exec " +
                                      itest::BinPath("forge-critic") + " \"$@\"\n"
                                : "";
  WriteFile(wrapper, "#!/bin/sh\n" + real + "exec " + itest::BinPath("forge_fake_child") +
                         " --mode " + mode + " --role critic \"$@\"\n");
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  o.extra_env["FORGE_CRITIC_BIN"] = wrapper;
  f->Rewrite(o);
  f->Start();
  return f;
}

// The first attempt of task `id` once it closed `lost` as the watchdog
// closes an overdue child's: uncounted, the child (pid `child`) killed, a
// `child.lost` event written. Empty when it did not (the test has failed).
std::optional<proto::AttemptInfo> LostToTheWatchdog(itest::Forge& f, const std::string& id,
                                                    const std::string& child) {
  bool lost = itest::WaitFor(
      [&] {
        auto a = f.Attempts(id);
        return !a.empty() && a[0].outcome == "lost";
      },
      30'000);
  EXPECT_TRUE(lost) << f.SupervisorLog();
  if (!lost) return std::nullopt;
  auto attempt = f.Attempts(id)[0];
  EXPECT_FALSE(attempt.counted);
  EXPECT_TRUE(itest::WaitFor([&] { return !itest::ProcessAlive(std::stoi(child)); }, 10'000));
  EXPECT_TRUE(f.HasEvent(id, "child.lost"));
  return attempt;
}

// A worker that never ends its agent (one SIGKILL cannot end, stuck in the
// kernel) held its slot and the task's workspace for ever, heartbeating.
// Past the agent's timeout, or a cancel, plus two kill graces and 5 s, the
// supervisor kills it as lost. The timeout here; the cancel below.
TEST(ChildFaults, AWorkerThatNeverEndsItsTimedOutAgentIsKilledAsLost) {
  ForgeOptions o;
  o.timeout = "1s";
  auto f = StartWithFakeWorker("stuck", o);
  std::string id = f->Submit("succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return FakeChildSaid(*f, "started attempt 1"); }, 30'000))
      << f->SupervisorLog();
  const std::string first = *FakeChildPids(*f).begin();
  auto attempt = LostToTheWatchdog(*f, id, first);
  ASSERT_TRUE(attempt);
  EXPECT_THAT(attempt->error,
              HasSubstr("did not end the attempt: it had not reported the end of its agent (pid " +
                        first + ") 5600 ms after its timeout"));
}

TEST(ChildFaults, AWorkerThatNeverEndsItsCancelledAgentIsKilled) {
  auto f = StartWithFakeWorker("stuck");  // the timeout (20 s) is not reached
  std::string id = f->Submit("succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return FakeChildSaid(*f, "started attempt 1"); }, 30'000))
      << f->SupervisorLog();
  const std::string first = *FakeChildPids(*f).begin();
  ASSERT_TRUE(f->ctl().Call("cancel", json{{"id", id}}).ok());
  EXPECT_TRUE(itest::WaitFor([&] { return !itest::ProcessAlive(std::stoi(first)); }, 15'000))
      << f->SupervisorLog();
  EXPECT_THAT(f->SupervisorLog(),
              HasSubstr("killing worker-" + first + ": it had not reported the end of its agent"));
  EXPECT_THAT(f->SupervisorLog(), HasSubstr("ms after its cancel"));
  ASSERT_EQ(f->Attempts(id).size(), 1u);
  EXPECT_EQ(f->Attempts(id)[0].outcome, "cancelled");
  // Its slot is free again: a retry runs on the next worker (stuck too).
  ASSERT_TRUE(f->ctl().Call("retry", json{{"id", id}}).ok());
  EXPECT_TRUE(itest::WaitFor([&] { return f->Attempts(id).size() == 2; }, 30'000))
      << f->SupervisorLog();
}

// A worker that never starts its agent (a git step of its workspace that
// SIGKILL cannot end) held its slot for ever, heartbeating: no deadline
// applied before `started`. Past the dispatch's limit (a lock wait of 1 s,
// the agent's timeout of 1 s, two kill graces of 300 ms and 5 s) it is
// killed as lost.
TEST(ChildFaults, AWorkerThatNeverStartsItsAgentIsKilledAsLost) {
  ForgeOptions o;
  o.timeout = "1s";
  o.workspace_lock_wait = "1s";
  auto f = StartWithFakeWorker("unstarted", o);
  std::string id = f->Submit("succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return FakeChildSaid(*f, "holding attempt"); }, 30'000))
      << f->SupervisorLog();
  const std::string first = *FakeChildPids(*f).begin();
  auto attempt = LostToTheWatchdog(*f, id, first);
  ASSERT_TRUE(attempt);
  EXPECT_THAT(attempt->error,
              HasSubstr("worker-" + first + " did not end the attempt: it had neither started " +
                        "the agent of attempt " + std::to_string(attempt->id) +
                        " nor ended the attempt within the dispatch's limit (7600 ms)"));
}

// A critic whose check never ends (one SIGKILL cannot end, stuck in the
// kernel) held its slot, and its attempt in `reviewing`, for ever,
// heartbeating. Past the review's limit (the sum of the timeouts of every
// step a review may take: here a lock wait of 1 s, one check of 1 s with
// its 2 s kill grace and 1 s for its orphans, and the 5 s margin) the
// supervisor kills it as lost.
TEST(ChildFaults, ACriticThatNeverRepliesIsKilledAsLostAndItsReviewRunsAgain) {
  ForgeOptions o;
  o.verify = {"true"};
  o.verify_timeout = "1s";
  o.workspace_lock_wait = "1s";
  auto f = StartWithFakeCritic("stuck", o, /*first_only=*/true);
  std::string id = f->Submit("succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return FakeChildSaid(*f, "reviewing attempt"); }, 30'000))
      << f->SupervisorLog();
  const std::string first = *FakeChildPids(*f).begin();
  ASSERT_TRUE(itest::WaitFor([&] { return f->HasEvent(id, "child.lost"); }, 30'000))
      << f->SupervisorLog();
  EXPECT_TRUE(itest::WaitFor([&] { return !itest::ProcessAlive(std::stoi(first)); }, 10'000));
  // The work it held is reviewed again by its replacement (a real critic),
  // not thrown away: the agent ran once and the task is done. Before, the
  // attempt closed `lost` and the agent ran again.
  ASSERT_TRUE(itest::WaitFor([&] { return f->Task(id).state == TaskState::kDone; }, 30'000))
      << f->SupervisorLog();
  auto attempts = f->Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  auto again = f->Events(id, "attempt.review_again");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_THAT(again[0].payload["error"].get<std::string>(),
              HasSubstr("critic-" + first + " gave no verdict: it had not replied to its review " +
                        "of attempt " + std::to_string(attempts[0].id) +
                        " within the review's limit (10000 ms)"));
}

// A flood of valid heartbeats is not counted anywhere by the supervisor (each
// one is a valid message); what is checked is that it is contained: control
// requests are answered promptly and work still gets done.
TEST(ChildFaults, HeartbeatFloodDoesNotStarveTheLoop) {
  auto f = StartWithOneFakeWorker("flood");
  ASSERT_TRUE(itest::WaitFor([&] { return FakeChildSaid(*f, "flood"); }, 30'000))
      << f->SupervisorLog();
  // The control socket still answers promptly while the flood goes on.
  for (int i = 0; i < 5; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto s = f->ctl().Call("status", json::object(), 10'000);
    ASSERT_TRUE(s.ok()) << s.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  }
  EXPECT_TRUE(FakeChildSaid(*f, "flood")) << "the flood was not running during the checks";
  // And the real worker's work still gets done.
  auto ids = f->SubmitMany(3, "succeed");
  EXPECT_TRUE(itest::WaitFor([&] { return AllIn(*f, ids, TaskState::kDone); }, 90'000))
      << f->SupervisorLog();
  EXPECT_TRUE(itest::ProcessAlive(f->pid()));
}

TEST(ChildFaults, AnswersForAnotherAttemptAreStrayAndIgnored) {
  auto f = StartWithOneFakeWorker("stray");
  ASSERT_TRUE(itest::WaitFor([&] { return TwoWorkersUp(*f); }, 30'000)) << f->Status().dump();
  // Two tasks for two idle workers: the fake gets one of them.
  auto ids = f->SubmitMany(2, "succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return FakeChildSaid(*f, "stray"); }, 30'000))
      << f->SupervisorLog();
  EXPECT_TRUE(itest::WaitFor([&] { return AllIn(*f, ids, TaskState::kDone); }, 90'000))
      << f->SupervisorLog();
  // Recorded: the started and the result for an attempt it does not hold.
  EXPECT_GE(Counter(*f, "stray_child_messages"), 2) << f->SupervisorLog();
  EXPECT_TRUE(SupervisorLogHas(*f, "which it does not hold")) << f->SupervisorLog();
  // Contained: the stray started{pid 1, pgid 1} was never recorded or acted on.
  for (const auto& id : ids) {
    for (const auto& a : f->Attempts(id)) EXPECT_NE(a.agent_pid, 1) << id << " #" << a.n;
  }
  EXPECT_TRUE(itest::ProcessAlive(1));
  EXPECT_TRUE(itest::ProcessAlive(f->pid()));
}

// ---- disk full: a small tmpfs as the state directory (root only) ----

// A 4 MiB tmpfs over f's state directory for the test's lifetime. `skip`
// says why there is none (not root, or no permission to mount, as in some
// containers): the test skips. With log_off_disk, supervisor.log is a
// symlink to a file beside the state directory, as under systemd (the
// journal): on the full tmpfs its lines would be lost, and the lines the
// supervisor writes while the disk is full are what the tests read.
class SmallStateDisk {
 public:
  SmallStateDisk(itest::Forge& f, bool log_off_disk) : dir_(f.state_dir()) {
    if (::geteuid() != 0) {
      skip = "not root: cannot mount a small tmpfs";
      return;
    }
    std::filesystem::create_directories(dir_);
    if (::mount("forge-test", dir_.c_str(), "tmpfs", 0, "size=4m,mode=0700") != 0) {
      skip = std::string("mount tmpfs failed: ") + std::strerror(errno);
      return;
    }
    mounted_ = true;
    if (log_off_disk &&
        ::symlink((f.dir() + "/supervisor.log").c_str(), (dir_ + "/supervisor.log").c_str()) != 0) {
      error = "symlinking supervisor.log: " + std::string(std::strerror(errno));
    }
  }
  ~SmallStateDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallStateDisk(const SmallStateDisk&) = delete;
  SmallStateDisk& operator=(const SmallStateDisk&) = delete;

  std::string skip;
  std::string error;

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST(Faults, DiskFullRefusesSubmitsAndRecovers) {
  itest::Forge f;
  SmallStateDisk disk(f, /*log_off_disk=*/false);
  if (!disk.skip.empty()) GTEST_SKIP() << disk.skip;
  f.Start();
  auto before = f.SubmitMany(3, "succeed");
  ASSERT_TRUE(itest::WaitFor([&] { return AllIn(f, before, TaskState::kDone); }, 60'000));
  // Fill the filesystem.
  std::string filler = f.state_dir() + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    std::string block(64 * 1024, 'x');
    for (int i = 0; i < 200 && out; ++i) out.write(block.data(), block.size()), out.flush();
  }
  json big_tasks = json::array();
  for (int i = 0; i < 50; ++i) {
    big_tasks.push_back(
        {{"title", "full " + std::to_string(i)}, {"brief", std::string(20000, 'b')}});
  }
  auto refused = f.ctl().Call("submit", json{{"tasks", big_tasks}}, 30'000);
  ASSERT_FALSE(refused.ok()) << "submit succeeded on a full disk";
  EXPECT_THAT(refused.error().message, ::testing::AnyOf(HasSubstr("full"), HasSubstr("space")))
      << refused.error().message;
  EXPECT_TRUE(itest::ProcessAlive(f.pid()));
  EXPECT_FALSE(f.Status().empty());
  // Space returns: submits work again and the earlier records are intact.
  std::filesystem::remove(filler);
  auto after = f.SubmitMany(3, "succeed");
  ASSERT_EQ(after.size(), 3u);
  EXPECT_TRUE(itest::WaitFor([&] { return AllIn(f, after, TaskState::kDone); }, 60'000))
      << f.SupervisorLog();
  EXPECT_TRUE(AllIn(f, before, TaskState::kDone));
  EXPECT_EQ(Integrity(f), "ok");
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

// Writes to path until the filesystem refuses with ENOSPC (partial writes
// fill the last pages too); false if it failed for another reason.
bool FillFilesystem(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  std::string block(64 * 1024, 'x');
  int err = 0;
  while (true) {
    ssize_t n = ::write(fd, block.data(), block.size());
    if (n < 0) {
      err = errno;
      if (err == EINTR) continue;
      break;
    }
  }
  ::close(fd);
  return err == ENOSPC;
}

size_t CountLines(const std::string& log, const std::string& needle) {
  size_t n = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

// Runs PRAGMA wal_checkpoint(mode) from a connection of the test's own,
// until it is not busy (the supervisor between two writes).
bool Checkpoint(itest::Forge& f, const std::string& mode) {
  sqlite3* c = nullptr;
  if (sqlite3_open((f.state_dir() + "/forge.db").c_str(), &c) != SQLITE_OK) {
    sqlite3_close(c);
    return false;
  }
  sqlite3_busy_timeout(c, 10'000);
  std::string sql = "PRAGMA wal_checkpoint(" + mode + ")";
  bool done = itest::WaitFor(
      [&] {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(c, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return false;
        int busy = -1;
        if (sqlite3_step(st) == SQLITE_ROW) busy = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return busy == 0;
      },
      10'000);
  sqlite3_close(c);
  return done;
}

// The end of supervisor.log, for failure messages (the harness prints the
// log only while the tests' symlink to it still stands).
std::string LogTail(itest::Forge& f) {
  std::string log = f.SupervisorLog();
  return log.substr(log.size() > 6000 ? log.size() - 6000 : 0);
}

// Installs, as f's agent, a script that runs until the test creates
// $FAKE_STATE/go and then prints `last_line`.
void UseGatedAgent(itest::Forge& f, const ForgeOptions& o, const std::string& last_line) {
  std::string agent = f.dir() + "/gate_agent.sh";
  WriteFile(agent,
            "#!/bin/sh\n"
            "while [ ! -e \"$FAKE_STATE/go\" ]; do sleep 0.02; done\n"
            "echo '" +
                last_line + "'\n");
  ASSERT_EQ(::chmod(agent.c_str(), 0755), 0);
  WriteFile(f.dir() + "/forge.yaml", ConfigWithAgent(o, agent));
}

// Submits a task for the gated agent and, once its agent runs, leaves the
// database no room: the WAL is emptied (every commit must grow it) and the
// filesystem filled by `filler`. The task's id, or "" (with a failure).
std::string SubmitGatedThenFillDisk(itest::Forge& f, const std::string& filler) {
  std::string id = f.Submit("gate");
  bool started = itest::WaitFor(
      [&] {
        auto a = f.Attempts(id);
        return !a.empty() && a[0].agent_pid != 0;
      },
      20'000);
  EXPECT_TRUE(started) << LogTail(f);
  bool full = started && Checkpoint(f, "TRUNCATE") && FillFilesystem(filler);
  EXPECT_TRUE(full) << "could not empty the WAL and fill " << filler;
  return full ? id : "";
}

json StorePause(itest::Forge& f) {
  json s = f.Status();
  for (const auto& p : s.value("pause_reasons", json::array())) {
    if (p.value("kind", "") == "store") return p;
  }
  return nullptr;
}

// The supervisor's own writes on a full disk (the lease of a ready task, the
// events of a resume): dispatch pauses with a visible reason (kind `store`)
// instead of retrying every loop turn, status keeps answering, and once
// space returns the pause lifts by itself and the tasks run.
TEST(Faults, DiskFullPausesDispatchUntilSpaceReturns) {
  itest::Forge f;
  SmallStateDisk disk(f, /*log_off_disk=*/true);
  if (!disk.skip.empty()) GTEST_SKIP() << disk.skip;
  ASSERT_TRUE(disk.error.empty()) << disk.error;
  f.Start();
  ASSERT_TRUE(f.ctl().Call("pause", json{{"reason", "disk test"}}).ok());
  auto ids = f.SubmitMany(3, "succeed");
  ASSERT_EQ(ids.size(), 3u);
  // The WAL decides which write meets the full disk first: a commit that
  // fits in the WAL file's existing length succeeds on a full disk (a
  // checkpointed WAL is reused from its start), one that grows it fails. So:
  // empty the WAL, let the supervisor commit one event (a changed pause
  // reason, the size of the resume's dispatch.resumed), checkpoint so that
  // space is reused, then fill. The resume's event then fits, and the lease
  // after it, larger, is the write that fails (the incident this guards).
  ASSERT_TRUE(Checkpoint(f, "TRUNCATE"));
  ASSERT_EQ(std::filesystem::file_size(f.state_dir() + "/forge.db-wal"), 0u);
  ASSERT_TRUE(f.ctl().Call("pause", json{{"reason", "disk test, again"}}).ok());
  ASSERT_TRUE(Checkpoint(f, "RESTART"));
  ASSERT_GT(std::filesystem::file_size(f.state_dir() + "/forge.db-wal"), 0u);
  std::string filler = f.state_dir() + "/filler";
  ASSERT_TRUE(FillFilesystem(filler));
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(f.state_dir().c_str(), &vfs), 0);
  EXPECT_EQ(vfs.f_bavail, 0u);

  auto resumed = f.ctl().Call("resume");
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  json pause;
  ASSERT_TRUE(itest::WaitFor([&] { return !(pause = StorePause(f)).is_null(); }, 20'000))
      << f.Status().dump() << "\n"
      << CountLines(f.SupervisorLog(), "leasing") << " leasing line(s); log tail:\n"
      << LogTail(f);
  EXPECT_THAT(pause.value("reason", ""), HasSubstr("full")) << pause.dump();
  EXPECT_FALSE(pause["until"].is_null()) << "the next retry is shown: " << pause.dump();
  EXPECT_TRUE(itest::ProcessAlive(f.pid()));
  // Status keeps answering, and each request is a loop turn that used to
  // retry the lease (and log it) at once: the pause holds them back.
  for (int i = 0; i < 50; ++i) ASSERT_FALSE(f.Status().empty()) << "status " << i;
  for (const auto& id : ids) EXPECT_EQ(f.Task(id).state, TaskState::kReady) << id;
  std::string log = f.SupervisorLog();
  EXPECT_LE(CountLines(log, "leasing"), 2u) << log;
  std::cerr << "while full: " << CountLines(log, "database or disk is full")
            << " log line(s) name the full disk; pause " << pause.dump() << "\n";

  // Space returns: the next retry succeeds, the pause lifts, the tasks run.
  std::filesystem::remove(filler);
  EXPECT_TRUE(itest::WaitFor([&] { return AllIn(f, ids, TaskState::kDone); }, 90'000))
      << f.Status().dump() << "\n"
      << LogTail(f);
  EXPECT_TRUE(StorePause(f).is_null()) << f.Status().dump();
  EXPECT_EQ(f.Status().value("paused", true), false) << f.Status().dump();
  bool resumed_event = false;
  for (const auto& e : f.Events("", "dispatch.resumed")) {
    resumed_event |= e.payload.value("kind", "") == "store";
  }
  EXPECT_TRUE(resumed_event) << "no dispatch.resumed {kind: store} event";
  EXPECT_EQ(Integrity(f), "ok");
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

// A worker that finds no space for the attempt's prompt (the database still
// has room in its WAL) is not the task's fault: the attempt closes `failed`
// with the ENOSPC error, uncounted, as an infra retry (not "same failure
// twice", not the circuit breaker), and dispatch pauses (kind store) until a
// probe file fits in the state directory, so the task is not run into its
// infra bound meanwhile; once space returns it runs to done.
TEST(Faults, WorkerOutOfSpaceRequeuesWithoutUsingAttempts) {
  ForgeOptions o;
  o.workers = 1;
  o.max_infra_retries = 3;
  itest::Forge f(o);
  SmallStateDisk disk(f, /*log_off_disk=*/true);
  if (!disk.skip.empty()) GTEST_SKIP() << disk.skip;
  ASSERT_TRUE(disk.error.empty()) << disk.error;
  f.Start();
  ASSERT_TRUE(f.ctl().Call("pause", json{{"reason", "disk test"}}).ok());
  std::string id = f.Submit("succeed");
  ASSERT_FALSE(id.empty());
  // Room in the WAL for the database's side of every attempt (see
  // DiskFullPausesDispatchUntilSpaceReturns): committed events,
  // checkpointed so that their space is reused; then the disk is full for
  // everything else.
  ASSERT_TRUE(Checkpoint(f, "TRUNCATE"));
  // (Each is a commit of a few pages: 60 leave ~1 MiB of the 4.)
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(f.ctl().Call("pause", json{{"reason", "room " + std::to_string(i)}}).ok());
  }
  ASSERT_TRUE(Checkpoint(f, "RESTART"));
  std::cerr << "WAL room: " << std::filesystem::file_size(f.state_dir() + "/forge.db-wal")
            << " bytes\n";
  std::string filler = f.state_dir() + "/filler";
  ASSERT_TRUE(FillFilesystem(filler));
  ASSERT_TRUE(f.ctl().Call("resume").ok());
  auto closed = [&] {
    std::vector<proto::AttemptInfo> out;
    for (auto& a : f.Attempts(id)) {
      if (a.ended_at_ms != 0) out.push_back(a);
    }
    return out;
  };
  ASSERT_TRUE(itest::WaitFor([&] { return !closed().empty(); }, 20'000)) << LogTail(f);
  // The next tasks would fail alike: dispatch pauses, naming the error.
  json pause;
  ASSERT_TRUE(itest::WaitFor([&] { return !(pause = StorePause(f)).is_null(); }, 20'000))
      << f.Status().dump() << "\n"
      << LogTail(f);
  EXPECT_THAT(pause.value("reason", ""), HasSubstr("No space left on device")) << pause.dump();
  // Loop turns go by (each status request is one) and the retries' probe
  // file finds no space either: no further attempt.
  for (int i = 0; i < 50; ++i) ASSERT_FALSE(f.Status().empty()) << "status " << i;
  ASSERT_EQ(closed().size(), 1u) << LogTail(f);
  const auto a1 = closed()[0];
  EXPECT_EQ(a1.outcome, "failed");
  EXPECT_THAT(a1.error, HasSubstr("No space left on device"));
  EXPECT_FALSE(a1.counted) << "the attempt used one of the task's attempts";
  proto::TaskInfo t = f.Task(id);
  EXPECT_EQ(t.state, TaskState::kReady);
  EXPECT_EQ(t.attempts, 0);
  EXPECT_EQ(t.infra_retries, 1);
  std::cerr << "while full: pause " << pause.dump() << "\n";
  // The circuit breaker does not count it either.
  json status = f.Status();
  for (const auto& p : status.value("pause_reasons", json::array())) {
    EXPECT_NE(p.value("kind", ""), "circuit") << status.dump();
  }

  // Space returns: the probe succeeds, the pause lifts, the task runs.
  std::filesystem::remove(filler);
  EXPECT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.Status().dump() << "\n" << LogTail(f);
  EXPECT_TRUE(StorePause(f).is_null()) << f.Status().dump();
  EXPECT_EQ(f.Task(id).attempts, 1);
  EXPECT_EQ(Integrity(f), "ok");
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

// A repo on its own full disk (the state directory has room): the worker
// cannot make the task's worktree (git: "couldn't write '...lock'"), the
// attempt is an infra retry and dispatch pauses, and the pause's probe
// looks at the repo's .git too, so it holds until that disk has room. With
// only the state directory probed the pause lifted at its first retry and
// the task ran into its infra bound.
TEST(Faults, ARepoOnAFullDiskHoldsThePauseUntilItHasRoom) {
  ForgeOptions o;
  o.workers = 1;
  o.max_infra_retries = 3;
  itest::Forge f(o);
  if (::geteuid() != 0) GTEST_SKIP() << "not root: cannot mount a small tmpfs";
  const std::string disk = f.dir() + "/repo-disk";
  std::filesystem::create_directories(disk);
  if (::mount("forge-test", disk.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "mount tmpfs failed: " << std::strerror(errno);
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{disk};
  const std::string repo = disk + "/repo";
  ASSERT_EQ(std::system(("git init -q -b main " + repo + " && git -C " + repo +
                         " -c user.name=t -c user.email=t@t commit -q --allow-empty -m init")
                            .c_str()),
            0);
  const std::string filler = disk + "/filler";
  ASSERT_TRUE(FillFilesystem(filler));
  f.Start();
  std::string id = f.Submit("succeed", {}, json{{"repo", repo}});
  ASSERT_FALSE(id.empty());
  json pause;
  ASSERT_TRUE(itest::WaitFor([&] { return !(pause = StorePause(f)).is_null(); }, 20'000))
      << f.Status().dump() << "\n"
      << LogTail(f);
  // The pause's first retry has run (one log line a failed retry) and found
  // the repo's disk still full.
  auto paused_lines = [&] {
    std::string log = f.SupervisorLog();
    size_t n = 0;
    for (size_t at = 0; (at = log.find("dispatch paused (store)", at)) != std::string::npos; ++at)
      ++n;
    return n;
  };
  ASSERT_TRUE(itest::WaitFor([&] { return paused_lines() >= 2; }, 20'000)) << LogTail(f);
  auto attempts = f.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u) << LogTail(f);
  EXPECT_FALSE(attempts[0].counted);
  EXPECT_THAT(attempts[0].error, HasSubstr("cannot create worktree"));
  EXPECT_EQ(f.Task(id).state, TaskState::kReady);
  EXPECT_NE(f.SupervisorLog().find("and " + repo + "/.git"), std::string::npos) << LogTail(f);

  // Room on the repo's disk: the pause lifts and the task runs to done.
  std::filesystem::remove(filler);
  EXPECT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.Status().dump() << "\n" << LogTail(f);
  EXPECT_TRUE(StorePause(f).is_null()) << f.Status().dump();
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

// The disk fills while an attempt runs: its result and its close are refused.
// They are kept and written by the store pause's retry once space returns, so
// the attempt is closed and the task finishes without a restart (before, the
// attempt stayed open, its task `running` with no child, until the next
// start's recovery).
TEST(Faults, AttemptClosedOnceSpaceReturns) {
  ForgeOptions o;
  o.workers = 1;
  itest::Forge f(o);
  UseGatedAgent(f, o, "finished");
  SmallStateDisk disk(f, /*log_off_disk=*/true);
  if (!disk.skip.empty()) GTEST_SKIP() << disk.skip;
  ASSERT_TRUE(disk.error.empty()) << disk.error;
  f.Start();
  const std::string filler = f.state_dir() + "/filler";
  const std::string id = SubmitGatedThenFillDisk(f, filler);
  ASSERT_FALSE(id.empty());
  WriteFile(f.fake_state() + "/go", "");
  json pause;
  ASSERT_TRUE(itest::WaitFor([&] { return !(pause = StorePause(f)).is_null(); }, 20'000))
      << f.Status().dump() << "\n"
      << LogTail(f);
  // The worker is free, the attempt still open: its close waits for space.
  ASSERT_TRUE(itest::WaitFor(
      [&] {
        for (const auto& c : f.Status().value("children", json::array())) {
          if (c.value("role", "") == "worker" && c.value("state", "") == "idle") return true;
        }
        return false;
      },
      20'000))
      << f.Status().dump();
  EXPECT_EQ(f.Attempts(id).at(0).ended_at_ms, 0);
  EXPECT_EQ(f.Task(id).state, TaskState::kRunning);
  std::cerr << "while full: pause " << pause.dump() << "\n";

  std::filesystem::remove(filler);
  EXPECT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.Status().dump() << "\n" << LogTail(f);
  auto attempts = f.Attempts(id);
  ASSERT_FALSE(attempts.empty());
  EXPECT_NE(attempts[0].ended_at_ms, 0) << "attempt 1 still open";
  std::cerr << "after: " << attempts.size() << " attempt(s); attempt 1 closed "
            << attempts[0].outcome << " " << attempts[0].error << "\n";
  // The critic's close can succeed before the pause's next retry (reviews
  // are not paused): the pause lifts at that retry, not with the close.
  EXPECT_TRUE(itest::WaitFor([&] { return StorePause(f).is_null(); }, 60'000)) << f.Status().dump();
  EXPECT_EQ(Integrity(f), "ok");
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

// A critic's pass refused on a full disk is kept with the result before it;
// space returns and the operator stops the supervisor before the pause's
// next retry. The stop writes the kept writes before it closes the open
// attempts `cancelled`: it used to close this one `cancelled` (the task
// back to ready, the pass dropped) with the kept close never written.
TEST(Faults, AKeptCloseIsWrittenAtAGracefulStop) {
  ForgeOptions o;
  o.workers = 1;
  itest::Forge f(o);
  const std::string verify_go = f.fake_state() + "/verify_go";
  o.verify = {"while [ ! -e '" + verify_go + "' ]; do sleep 0.02; done"};
  UseGatedAgent(f, o, "finished");
  SmallStateDisk disk(f, /*log_off_disk=*/true);
  if (!disk.skip.empty()) GTEST_SKIP() << disk.skip;
  ASSERT_TRUE(disk.error.empty()) << disk.error;
  f.Start();
  const std::string filler = f.state_dir() + "/filler";
  const std::string id = SubmitGatedThenFillDisk(f, filler);
  ASSERT_FALSE(id.empty());
  WriteFile(f.fake_state() + "/go", "");
  ASSERT_TRUE(itest::WaitFor([&] { return !StorePause(f).is_null(); }, 20'000)) << LogTail(f);
  auto critic_is = [&](const std::string& state) {
    for (const auto& c : f.Status().value("children", json::array())) {
      if (c.value("role", "") == "critic" && c.value("state", "") == state) return true;
    }
    return false;
  };
  ASSERT_TRUE(itest::WaitFor([&] { return critic_is("busy"); }, 20'000)) << f.Status().dump();
  WriteFile(verify_go, "");
  // The critic idle again: its pass was handled, the close refused and kept.
  ASSERT_TRUE(itest::WaitFor([&] { return critic_is("idle"); }, 20'000)) << f.Status().dump();
  ASSERT_EQ(f.Attempts(id).at(0).ended_at_ms, 0) << "the close was not refused";

  std::filesystem::remove(filler);
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
  auto attempts = f.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed") << LogTail(f);
  EXPECT_EQ(f.Task(id).state, TaskState::kDone);
  EXPECT_EQ(Integrity(f), "ok");
}

// The disk fills as an agent that reported a cost finishes: its result is
// refused and kept, behind an earlier refused write (an idle worker's exit).
// Space returns while the pause waits for its next retry, and the critic's
// pass closes the attempt first. The close writes the kept writes through
// the result, in order, before itself: otherwise the retry's result write
// finds the attempt closed and does nothing, and the cost is lost to the
// task, the daily budget and the operator.
TEST(Faults, AResultKeptOnAFullDiskIsWrittenBeforeTheClose) {
  ForgeOptions o;
  o.workers = 2;
  o.profile = "claude";
  o.daily_usd = 0.5;  // the kept result's cost alone spends it
  itest::Forge f(o);
  const std::string agent_go = f.fake_state() + "/go";
  const std::string verify_go = f.fake_state() + "/verify_go";
  o.verify = {"while [ ! -e '" + verify_go + "' ]; do sleep 0.02; done"};
  UseGatedAgent(f, o,
                R"({"type":"result","subtype":"success","is_error":false,"result":"ok",)"
                R"("total_cost_usd":0.75,"num_turns":1,"session_id":"s"})");
  SmallStateDisk disk(f, /*log_off_disk=*/true);
  if (!disk.skip.empty()) GTEST_SKIP() << disk.skip;
  ASSERT_TRUE(disk.error.empty()) << disk.error;
  f.Start();
  const std::string filler = f.state_dir() + "/filler";
  const std::string id = SubmitGatedThenFillDisk(f, filler);
  ASSERT_FALSE(id.empty());
  // The other worker's exit: its child.exited event is refused and kept.
  const auto busy = static_cast<pid_t>(f.Attempts(id).at(0).worker_pid);
  auto worker_in = [&](const std::string& state, pid_t other_than) -> pid_t {
    for (const auto& c : f.Status().value("children", json::array())) {
      if (c.value("role", "") == "worker" && c.value("state", "") == state &&
          c.value("pid", 0) != other_than) {
        return c.value("pid", 0);
      }
    }
    return 0;
  };
  const pid_t idle = worker_in("idle", busy);
  ASSERT_NE(idle, 0) << f.Status().dump();
  ASSERT_EQ(::kill(idle, SIGKILL), 0);
  std::set<std::string> untils;
  auto note_until = [&] {
    json pause = StorePause(f);
    if (!pause.is_null()) untils.insert(pause["until"].dump());
    return untils.size();
  };
  ASSERT_TRUE(itest::WaitFor([&] { return note_until() >= 1; }, 20'000)) << LogTail(f);
  // Then the result, refused and kept behind it once the busy worker is free
  // again, and two of the pause's retries after that: the next one is at
  // least 2 s away (1 s, 2 s, 4 s, ...), ample for the close to win.
  WriteFile(agent_go, "");
  ASSERT_TRUE(itest::WaitFor([&] { return worker_in("idle", 0) == busy; }, 20'000))
      << f.Status().dump();
  const size_t before = note_until();
  ASSERT_TRUE(itest::WaitFor([&] { return note_until() >= before + 2; }, 30'000))
      << f.Status().dump() << "\n"
      << LogTail(f);
  EXPECT_EQ(f.Attempts(id).at(0).ended_at_ms, 0);
  EXPECT_EQ(f.Attempts(id).at(0).cost_usd, 0) << "the result was not refused";

  std::filesystem::remove(filler);
  WriteFile(verify_go, "");
  ASSERT_TRUE(f.WaitState(id, TaskState::kDone, 60'000)) << f.Status().dump() << "\n" << LogTail(f);
  auto attempts = f.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  EXPECT_DOUBLE_EQ(attempts[0].cost_usd, 0.75) << LogTail(f);
  EXPECT_DOUBLE_EQ(f.Task(id).cost_usd, 0.75);
  // The close came before the pause's retry: the pause lifts at that retry.
  EXPECT_FALSE(StorePause(f).is_null()) << "the retry, not the close, wrote the result";
  EXPECT_TRUE(itest::WaitFor([&] { return StorePause(f).is_null(); }, 60'000)) << f.Status().dump();
  EXPECT_NEAR(f.Status().value("cost_today_usd", 0.0), 0.75, 1e-9) << f.Status().dump();
  // The supervisor adds each result's cost to the day's spend as it records
  // it; a result written late, from the kept writes, is summed again.
  EXPECT_TRUE(itest::WaitFor([&] { return f.PausedBy("budget"); }, 10'000)) << f.Status().dump();
  // In the order they happened: the exit, the result, the close.
  int64_t exited = 0;
  for (const auto& e : f.Events("", "child.exited")) {
    if (e.payload.value("pid", 0) == idle) exited = e.seq;
  }
  auto result = f.Events(id, "attempt.result");
  auto ended = f.Events(id, "attempt.ended");
  ASSERT_EQ(result.size(), 1u);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_NE(exited, 0) << "no child.exited event for worker " << idle;
  EXPECT_LT(exited, result[0].seq);
  EXPECT_LT(result[0].seq, ended[0].seq);
  EXPECT_EQ(Integrity(f), "ok");
  EXPECT_EQ(f.Signal(SIGTERM).exit_code, 0);
}

}  // namespace
}  // namespace forge::reliability
