// The live paths against a fake supervisor: real lock holder process, real
// ZeroMQ ROUTER on the control endpoint, canned replies.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "ctl/doctor.h"
#include "ctl/test_support.h"
#include "proto/messages.h"
#include "supervisor/store/schema.h"
#include "supervisor/store/sqlite_util.h"
#include "supervisor/store/submit_check.h"

namespace forge::ctl {
namespace {

using testing::CtlHarness;
using testing::FakeSupervisor;
using ::testing::HasSubstr;
using ::testing::Not;
using json = proto::json;

json TaskJson(const std::string& id, const std::string& state) {
  proto::ShowReply show;
  show.task.id = id;
  show.task.title = "Task " + id;
  show.task.state = *proto::ParseState(state);
  proto::EventInfo e;
  e.seq = 1;
  e.ts_ms = 1'700'000'000'000;
  e.kind = "task.submitted";
  e.task_id = id;
  show.timeline = {e};
  return json(show);
}

TEST(ControlClientTest, OkErrorAndTimeout) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) -> json {
    if (r["cmd"] == "silent") return nullptr;
    if (r["cmd"] == "show") return FakeSupervisor::Err("not_found", "no task t9");
    return FakeSupervisor::Ok({{"echo", r}});
  });
  auto client = ControlClient::Connect(h.state_dir, 300);
  ASSERT_TRUE(client.ok());
  auto ok = (*client)->Call("status", json{{"x", 1}});
  ASSERT_TRUE(ok.ok()) << ok.error().ToString();
  EXPECT_EQ((*ok)["echo"]["v"], 1);
  EXPECT_EQ((*ok)["echo"]["cmd"], "status");
  EXPECT_EQ((*ok)["echo"]["x"], 1);
  EXPECT_FALSE(ok->contains("ok"));

  auto missing = (*client)->Call("show", json{{"id", "t9"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "no task t9");

  auto silent = (*client)->Call("silent");
  ASSERT_FALSE(silent.ok());
  EXPECT_EQ(silent.error().code, ErrorCode::kTimeout);
  EXPECT_THAT(silent.error().message, HasSubstr("did not answer 'silent'"));

  // After a timeout the next call still gets its own answer.
  auto again = (*client)->Call("status");
  ASSERT_TRUE(again.ok()) << again.error().ToString();
  EXPECT_EQ((*again)["echo"]["cmd"], "status");
}

// A request that cannot be encoded (text that is not UTF-8) is an error
// naming the command, not an exception, and leaves nothing half-sent: the
// next request on the same client gets its own answer.
TEST(ControlClientTest, ARequestThatIsNotUtf8IsAnErrorAndSendsNothing) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) -> json {
    return FakeSupervisor::Ok({{"echo", r}});
  });
  auto client = ControlClient::Connect(h.state_dir, 2000);
  ASSERT_TRUE(client.ok());
  auto bad = (*client)->Call("pause", json{{"reason", "caf\xe9"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(bad.error().message, HasSubstr("cannot send 'pause' to the supervisor"));
  auto next = (*client)->Call("status");
  ASSERT_TRUE(next.ok()) << next.error().ToString();
  EXPECT_EQ((*next)["echo"]["cmd"], "status");
  EXPECT_EQ(fake.requests().size(), 1u);
}

// Text that is not UTF-8 (a Windows-1252 brief file, a Latin-1 plan, an id
// or reason typed in another encoding) is refused before anything is sent,
// exit 2 naming it; before, forge-ctl aborted (json type_error 316).
TEST(LiveTest, TextThatIsNotUtf8IsRefusedBeforeAnythingIsSent) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"ids", {"t1"}}});
  });
  testing::ExpectNotUtf8IsRefused(h);
  EXPECT_EQ(fake.requests().size(), 0u);
}

// The supervisor puts no bound on a reply (ls carries every task with its
// brief): one over 4 MiB is read and printed, live. forge-ctl's socket used
// to drop it, which read as "did not answer" and fell back to the database.
TEST(LiveTest, AReplyOver4MiBIsReadNotDropped) {
  CtlHarness h;
  auto writer = h.OpenWriter();  // a database to fall back to, as a state directory has
  ASSERT_NE(writer, nullptr);
  h.env.timeout_ms = 2000;
  const std::string brief(store::kMaxBriefBytes, 'b');  // the most a brief may be
  auto task = [&](int n) {
    proto::TaskInfo t;
    t.id = "t" + std::to_string(n);
    t.title = "Task " + t.id;
    t.brief = brief;
    return t;
  };
  auto event = [&](int seq) {
    proto::EventInfo e;
    e.seq = seq;
    e.ts_ms = 1'700'000'000'000;
    e.kind = "attempt.output";
    e.task_id = "t1";
    e.payload = {{"text", brief}};
    return e;
  };
  FakeSupervisor fake(h.state_dir, [&](const json& r) -> json {
    if (r["cmd"] == "ls") {
      proto::ListReply list;
      for (int n = 1; n <= 3; ++n) list.tasks.push_back(task(n));
      return FakeSupervisor::Ok(json(list));
    }
    if (r["cmd"] == "show") {
      proto::ShowReply show;
      show.task = task(1);
      for (int seq = 1; seq <= 2; ++seq) show.timeline.push_back(event(seq));
      return FakeSupervisor::Ok(json(show));
    }
    if (r["cmd"] == "events") {
      proto::EventsReply events;
      if (r.value("since", int64_t{0}) == 0) {
        for (int seq = 1; seq <= 3; ++seq) events.events.push_back(event(seq));
      }
      events.last_seq = 3;
      return FakeSupervisor::Ok(json(events));
    }
    return FakeSupervisor::Err("invalid", "unexpected");
  });
  h.env.json = true;

  ASSERT_EQ(CmdList(h.env, {}), kExitOk) << h.err.str();
  EXPECT_EQ(h.err.str(), "") << "no fallback notice";
  EXPECT_GT(h.out.str().size(), proto::kMaxMessageBytes);
  json list = json::parse(h.out.str());
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2]["id"], "t3");
  EXPECT_EQ(list[2]["brief"], brief);

  h.Clear();
  ASSERT_EQ(CmdShow(h.env, "t1"), kExitOk) << h.err.str();
  EXPECT_EQ(h.err.str(), "");
  json show = json::parse(h.out.str());
  EXPECT_EQ(show["brief"], brief);
  ASSERT_EQ(show["timeline"].size(), 2u);
  EXPECT_EQ(show["timeline"][1]["payload"]["text"], brief);

  h.Clear();
  ASSERT_EQ(CmdEvents(h.env, {}), kExitOk) << h.err.str();
  EXPECT_EQ(h.err.str(), "");
  std::istringstream lines(h.out.str());
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    EXPECT_EQ(json::parse(line)["payload"]["text"], brief);
  }
  EXPECT_EQ(n, 3);
}

// A git repository with a main branch at h.dir/name.
std::string MakeRepo(CtlHarness& h, const std::string& name) {
  std::string repo = h.dir.Path(name);
  std::string cmd = "git init -q -b main '" + repo + "' && git -C '" + repo +
                    "' -c user.name=t -c user.email=t@t commit -q --allow-empty -m init";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return repo;
}

TEST(LiveTest, SubmitSendsEveryFlag) {
  CtlHarness h;
  std::string repo = MakeRepo(h, "app");
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"ids", {"t17"}}});
  });
  std::ofstream(h.dir.Path("brief.md")) << "Do the thing.\n";
  SubmitArgs a;
  a.title = "Fix it";
  a.brief_file = h.dir.Path("brief.md");
  a.repo = repo;
  a.base = "main";
  a.verify = {"make test", "make lint"};
  a.depends_on = {"t3"};
  a.priority = 5;
  a.max_attempts = 2;
  a.needs_approval = true;
  a.allow_empty = true;
  a.env = {"A=1", "B=x=y"};
  a.agent = "codex";
  a.model = "m2";
  a.expand = true;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t17\n");
  auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  EXPECT_EQ(r["cmd"], "submit");
  ASSERT_EQ(r["tasks"].size(), 1u);
  const auto& t = r["tasks"][0];
  EXPECT_EQ(t["title"], "Fix it");
  EXPECT_EQ(t["brief"], "Do the thing.\n");
  EXPECT_EQ(t["kind"], "expand");
  EXPECT_EQ(t["repo"], repo);
  EXPECT_EQ(t["base"], "main");
  EXPECT_EQ(t["verify"], json({"make test", "make lint"}));
  EXPECT_EQ(t["depends_on"], json({"t3"}));
  EXPECT_EQ(t["priority"], 5);
  EXPECT_EQ(t["max_attempts"], 2);
  EXPECT_EQ(t["needs_approval"], true);
  EXPECT_EQ(t["allow_empty"], true);
  EXPECT_EQ(t["env"], json({{"A", "1"}, {"B", "x=y"}}));
  EXPECT_EQ(t["agent"], "codex");
  EXPECT_EQ(t["model"], "m2");

  h.Clear();
  h.env.json = true;
  a.expand = false;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk);
  EXPECT_EQ(json::parse(h.out.str()), json({{"id", "t17"}}));
}

// --idempotency-key goes with the submit; a reply that says the key was
// used before prints its ids as any submit does, with a line on stderr
// (`existing` in --json). A supervisor that does not echo the key (one from
// before keys) queued the tasks without it: a warning says so. A bad key is
// exit 2 before anything is sent.
TEST(LiveTest, SubmitSendsItsIdempotencyKeyAndSaysWhenItWasDoneBefore) {
  CtlHarness h;
  std::atomic<bool> existing{false};
  std::atomic<bool> old_supervisor{false};
  FakeSupervisor fake(h.state_dir, [&](const json& r) {
    json reply = {{"ids", {"t5"}}};
    if (existing) reply["existing"] = true;
    if (!old_supervisor) reply["idempotency_key"] = r["idempotency_key"];
    return FakeSupervisor::Ok(reply);
  });
  SubmitArgs a;
  a.title = "Ship it";
  a.idempotency_key = "ship-1";
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t5\n");
  EXPECT_EQ(h.err.str(), "");
  ASSERT_EQ(fake.requests().size(), 1u);
  EXPECT_EQ(fake.requests()[0]["idempotency_key"], "ship-1");

  h.Clear();
  existing = true;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t5\n");
  EXPECT_EQ(h.err.str(),
            "forge-ctl: idempotency key 'ship-1' was submitted before: its task ids, nothing "
            "queued now\n");
  h.Clear();
  h.env.json = true;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(json::parse(h.out.str()), json({{"id", "t5"}, {"existing", true}}));
  h.env.json = false;

  h.Clear();
  existing = false;
  old_supervisor = true;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t5\n");
  EXPECT_EQ(h.err.str(),
            "forge-ctl: warning: the supervisor ignored --idempotency-key (it runs a forge from "
            "before keys: restart it); these tasks were queued without the key, and a retry "
            "would queue them again\n");

  const size_t sent = fake.requests().size();
  for (const auto& [key, why] : std::vector<std::pair<std::string, std::string>>{
           {"", "--idempotency-key is empty"},
           {std::string(201, 'k'), "--idempotency-key is 201 bytes; at most 200"},
           {"tab\there", "--idempotency-key has a control character (byte 0x09 at 4)"},
           {"caf\xe9", "--idempotency-key 'caf\\xe9': not UTF-8 (byte 0xe9 at character 4)"}}) {
    h.Clear();
    a.idempotency_key = key;
    EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage) << key;
    EXPECT_EQ(h.err.str(), "forge-ctl: " + why + "\n");
  }
  EXPECT_EQ(fake.requests().size(), sent) << "a bad key sent something";
}

// A supervisor runs its database at its own schema: one from before keys
// (schema 5) would queue a keyed submit without the key, so forge-ctl
// refuses it (exit 1) and sends nothing; a submit without a key goes.
TEST(LiveTest, AKeyedSubmitToASupervisorFromBeforeKeysIsRefused) {
  CtlHarness h;
  {
    store::Conn db;
    ASSERT_TRUE(
        db.Open(h.state_dir + "/forge.db", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE).ok());
    for (int v = 0; v < 5; ++v) ASSERT_TRUE(db.Exec(store::Migrations()[v]).ok()) << v;
    ASSERT_TRUE(db.Exec("INSERT INTO meta VALUES('schema_version', '5')").ok());
  }
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"ids", {"t9"}}});
  });
  SubmitArgs a;
  a.title = "Ship it";
  a.idempotency_key = "ship-2";
  EXPECT_EQ(CmdSubmit(h.env, a), kExitRejected);
  EXPECT_EQ(h.err.str(),
            "forge-ctl: --idempotency-key: the running supervisor predates idempotency keys (its "
            "database is at schema 5); restart it to use them. Nothing was submitted\n");
  EXPECT_TRUE(fake.requests().empty());
  h.Clear();
  a.idempotency_key.reset();
  EXPECT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t9\n");
}

// The repo and base are checked before anything is sent: exit 2 naming them.
TEST(LiveTest, SubmitRefusesABadRepoOrBase) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"ids", {"t1"}}});
  });
  std::string repo = MakeRepo(h, "app");
  std::string plain = h.dir.Path("plain");
  std::filesystem::create_directories(plain);
  SubmitArgs a;
  a.title = "Fix it";
  a.repo = plain;
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_THAT(h.err.str(), HasSubstr("repo '" + plain + "' is not a git repository"));
  EXPECT_THAT(h.err.str(), HasSubstr("base ref 'HEAD'"));
  h.Clear();
  a.repo = h.dir.Path("missing");
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_THAT(h.err.str(), HasSubstr("repo '" + h.dir.Path("missing") + "'"));
  h.Clear();
  a.repo = repo;
  a.base = "no-such-branch";
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_THAT(h.err.str(), HasSubstr("unknown base ref 'no-such-branch' in repo '" + repo + "'"));
  h.Clear();
  std::ofstream(h.dir.Path("plan.yaml")) << "tasks:\n"
                                            "  - {id: a, title: First, repo: "
                                         << repo
                                         << "}\n"
                                            "  - {id: b, title: Second, repo: "
                                         << repo << ", base: gone}\n";
  SubmitArgs p;
  p.plan = h.dir.Path("plan.yaml");
  EXPECT_EQ(CmdSubmit(h.env, p), kExitUsage);
  EXPECT_THAT(h.err.str(), HasSubstr("task 'b': unknown base ref 'gone' in repo '" + repo + "'"));
  EXPECT_TRUE(fake.requests().empty()) << "a refused submit is never sent";
  // A relative repo is made absolute (the supervisor runs elsewhere).
  h.Clear();
  SubmitArgs rel;
  rel.title = "Fix it";
  std::string cwd = std::filesystem::current_path();
  std::filesystem::current_path(h.dir.Path(""));
  rel.repo = "app";
  int code = CmdSubmit(h.env, rel);
  std::filesystem::current_path(cwd);
  ASSERT_EQ(code, kExitOk) << h.err.str();
  ASSERT_EQ(fake.requests().size(), 1u);
  EXPECT_EQ(fake.requests()[0]["tasks"][0]["repo"], repo);
  // So is a plan's, against the current directory too (not the plan's, as
  // brief_file is): `repo: .` is the checkout forge-ctl runs in.
  h.Clear();
  std::filesystem::create_directories(h.dir.Path("plans"));
  std::ofstream(h.dir.Path("plans/plan.yaml")) << "tasks:\n  - {id: a, title: First, repo: app}\n";
  SubmitArgs rel_plan;
  rel_plan.plan = h.dir.Path("plans/plan.yaml");
  std::filesystem::current_path(h.dir.Path(""));
  code = CmdSubmit(h.env, rel_plan);
  std::filesystem::current_path(cwd);
  ASSERT_EQ(code, kExitOk) << h.err.str();
  ASSERT_EQ(fake.requests().size(), 2u);
  EXPECT_EQ(fake.requests()[1]["tasks"][0]["repo"], repo);
}

// A base git could not resolve (it timed out: a hung mount, a lock, a huge
// repository) is not a wrong base: exit 1, which a script may retry, naming
// repo, ref and what happened, not 2 and "unknown base ref". Nothing is sent.
TEST(LiveTest, SubmitSaysWhenGitCouldNotResolveTheBase) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"ids", {"t1"}}});
  });
  std::string repo = MakeRepo(h, "app");
  h.env.git = [real = BlockingGitRunner()](const SpawnOptions& o,
                                           int64_t timeout_ms) -> Result<RunResult> {
    if (std::find(o.argv.begin(), o.argv.end(), "--end-of-options") == o.argv.end()) {
      return real(o, timeout_ms);
    }
    RunResult r;
    r.timed_out = true;
    r.status.signal = 9;
    return r;
  };
  SubmitArgs a;
  a.title = "Fix it";
  a.repo = repo;
  a.base = "main";
  EXPECT_EQ(CmdSubmit(h.env, a), kExitRejected);
  EXPECT_EQ(h.err.str(), "forge-ctl: cannot resolve base ref 'main' in repo '" + repo +
                             "': git rev-parse timed out after 60s\n");
  EXPECT_TRUE(fake.requests().empty());
}

// A plan's tasks mostly share one repo (`repo: .` in each): git checks each
// distinct (repo, base) once per submit, not each task. A bad pair is still
// refused under the label of the task that names it.
TEST(LiveTest, SubmitPlanChecksEachRepoAndBaseOnce) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    json ids = json::array();
    for (size_t i = 0; i < r["tasks"].size(); ++i) ids.push_back("t" + std::to_string(i + 1));
    return FakeSupervisor::Ok({{"ids", ids}});
  });
  std::string repo = MakeRepo(h, "app");
  std::string plain = h.dir.Path("plain");
  std::filesystem::create_directories(plain);
  int git_runs = 0;
  h.env.git = [&, real = BlockingGitRunner()](const SpawnOptions& o, int64_t timeout_ms) {
    ++git_runs;
    return real(o, timeout_ms);
  };
  ASSERT_TRUE(CheckRepoAndBase(h.env.git, repo, "").ok());
  const int per_check = git_runs;
  ASSERT_GT(per_check, 0);

  // 200 tasks, `repo: .` or its absolute path (the same repo once resolved),
  // on HEAD or on main: two pairs, two checks.
  auto write_plan = [&](const std::string& last) {
    std::ofstream plan(h.dir.Path("plan.yaml"));
    plan << "tasks:\n";
    for (int i = 0; i < 200; ++i) {
      plan << "  - {id: t" << i << ", title: T, repo: " << (i % 3 ? "." : repo)
           << (i % 2 ? ", base: main" : "") << "}\n";
    }
    plan << last;
  };
  SubmitArgs p;
  p.plan = h.dir.Path("plan.yaml");
  std::string cwd = std::filesystem::current_path();
  auto submit_in_repo = [&] {
    git_runs = 0;
    std::filesystem::current_path(repo);
    int code = CmdSubmit(h.env, p);
    std::filesystem::current_path(cwd);
    return code;
  };
  write_plan("");
  ASSERT_EQ(submit_in_repo(), kExitOk) << h.err.str();
  EXPECT_EQ(git_runs, 2 * per_check);
  const auto requests = fake.requests();  // a copy: the loop must not outlive it
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_EQ(requests[0]["tasks"].size(), 200u);
  for (const json& t : requests[0]["tasks"]) EXPECT_EQ(t["repo"], repo);

  // Then a task on a base that names no commit: one more check, refused as
  // that task, and nothing sent.
  h.Clear();
  write_plan("  - {id: last, title: Last, repo: ., base: gone}\n");
  EXPECT_EQ(submit_in_repo(), kExitUsage);
  EXPECT_EQ(h.err.str(),
            "forge-ctl: task 'last': unknown base ref 'gone' in repo '" + repo + "'\n");
  EXPECT_EQ(git_runs, 3 * per_check);
  EXPECT_EQ(fake.requests().size(), 1u);

  // A directory that is no repository, named by the last 50 tasks: refused
  // as the first of them, with the message a lone task gets.
  h.Clear();
  std::string bad;
  for (int i = 0; i < 50; ++i) {
    bad += "  - {id: bad" + std::to_string(i) + ", title: Bad, repo: " + plain + "}\n";
  }
  write_plan(bad);
  EXPECT_EQ(submit_in_repo(), kExitUsage);
  EXPECT_THAT(h.err.str(),
              HasSubstr("forge-ctl: task 'bad0': repo '" + plain + "' is not a git repository: "));
  EXPECT_THAT(h.err.str(), HasSubstr(" (base ref 'HEAD')\n"));
  EXPECT_EQ(fake.requests().size(), 1u);
}

TEST(LiveTest, SubmitPlanSendsAllTasksAndPrintsIds) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    json ids = json::array();
    for (size_t i = 0; i < r["tasks"].size(); ++i) ids.push_back("t" + std::to_string(40 + i));
    return FakeSupervisor::Ok({{"ids", ids}});
  });
  std::ofstream(h.dir.Path("plan.yaml")) << "tasks:\n"
                                            "  - id: a\n    title: First\n    brief: one\n"
                                            "  - id: b\n    title: Second\n    brief: two\n"
                                            "    depends_on: [a]\n";
  SubmitArgs a;
  a.plan = h.dir.Path("plan.yaml");
  h.env.json = true;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(json::parse(h.out.str()), json({{"ids", {"t40", "t41"}}}));
  auto r = fake.requests().at(0);
  ASSERT_EQ(r["tasks"].size(), 2u);
  EXPECT_EQ(r["tasks"][1]["depends_on"], json({"a"}));

  h.Clear();
  std::ofstream(h.dir.Path("cycle.yaml")) << "tasks:\n"
                                             "  - {id: a, title: A, brief: x, depends_on: [b]}\n"
                                             "  - {id: b, title: B, brief: x, depends_on: [a]}\n";
  a.plan = h.dir.Path("cycle.yaml");
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_THAT(h.err.str(), HasSubstr("cycle"));
  EXPECT_EQ(fake.requests().size(), 1u) << "an invalid plan is never sent";
}

// A dependency on an id that looks like a task's (t<digits>) but names no
// task passes forge-ctl's checks; the supervisor's store refuses it. That is
// the input's fault, as every other check of a submit: exit 2 naming the
// flag or the plan line (it was exit 1, a refusal, with the store's words).
TEST(LiveTest, ADependencyOnNoTaskExits2NamingTheFlagOrThePlanLine) {
  CtlHarness h;
  auto store = h.OpenWriter();
  ASSERT_TRUE(store->Submit({testing::Task("existing")}).ok());  // t1
  // The real store answers, so that its wording is what is matched.
  FakeSupervisor fake(h.state_dir, [&](const json& r) {
    auto request = proto::ReadAs<proto::SubmitRequest>(r);
    if (!request.ok()) return FakeSupervisor::Err("decode", request.error().message);
    auto ids = store->Submit(request->tasks);
    if (!ids.ok()) {
      return FakeSupervisor::Err(std::string(ErrorCodeName(ids.error().code)), ids.error().message);
    }
    return FakeSupervisor::Ok({{"ids", *ids}});
  });
  SubmitArgs a;
  a.title = "x";
  a.depends_on = {"t1", "t999"};
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_EQ(h.err.str(), "forge-ctl: --depends-on 't999': no such task\n");

  h.Clear();
  const std::string plan = h.dir.Path("plan.yaml");
  std::ofstream(plan) << "tasks:\n"
                         "  - id: parser\n    title: Port the parser\n"
                         "  - id: docs\n    title: Document it\n"
                         "    depends_on: [parser, t1, t999]\n";
  SubmitArgs p;
  p.plan = plan;
  EXPECT_EQ(CmdSubmit(h.env, p), kExitUsage);
  EXPECT_EQ(h.err.str(),
            "forge-ctl: " + plan + ":6:30: key 'tasks[1].depends_on[2]': 't999': no such task\n");

  // A flag's id is not checked for the t<digits> form: the store names it.
  h.Clear();
  a.depends_on = {"parser"};
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_EQ(h.err.str(), "forge-ctl: --depends-on 'parser': no such task\n");
  EXPECT_EQ(fake.requests().size(), 3u);

  h.Clear();
  a.depends_on = {"t1"};
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t2\n");
}

// A plan of three 1.5 MiB briefs (a, b, c; c depends on a): 4.5 MiB as
// one submit, over the 4 MiB cap, so it is staged. Its path.
std::string WriteStagedPlan(CtlHarness& h) {
  std::string big(1536 * 1024, 'x');
  std::ofstream plan(h.dir.Path("plan.yaml"));
  plan << "tasks:\n";
  for (const char* id : {"a", "b", "c"}) {
    std::ofstream(h.dir.Path(std::string(id) + ".md")) << big;
    plan << "  - {id: " << id << ", title: T" << id << ", brief_file: " << id << ".md"
         << (std::string(id) == "c" ? ", depends_on: [a]" : "") << "}\n";
  }
  return h.dir.Path("plan.yaml");
}

TEST(LiveTest, PlanOverTheMessageCapIsStagedInChunks) {
  CtlHarness h;
  const std::string plan = WriteStagedPlan(h);
  std::atomic<int> chunk_tasks{0};  // the fake answers on its own thread
  std::atomic<bool> fail_commit{false};
  FakeSupervisor fake(h.state_dir, [&](const json& r) {
    if (r["cmd"] == "submit_begin") return FakeSupervisor::Ok({{"upload", "u1"}, {"staged", 0}});
    if (r["cmd"] == "submit_chunk") {
      chunk_tasks += static_cast<int>(r["tasks"].size());
      return FakeSupervisor::Ok({{"upload", "u1"}, {"staged", chunk_tasks.load()}});
    }
    if (r["cmd"] == "submit_commit") {
      if (fail_commit) return FakeSupervisor::Err("invalid", "task 'c': bad dependency");
      return FakeSupervisor::Ok(
          {{"ids", {"t1", "t2", "t3"}}, {"idempotency_key", r.value("idempotency_key", "")}});
    }
    if (r["cmd"] == "submit_abort") return FakeSupervisor::Ok({{"upload", "u1"}});
    return FakeSupervisor::Err("invalid", "unexpected " + r["cmd"].get<std::string>());
  });
  SubmitArgs a;
  a.plan = plan;
  a.idempotency_key = "plan-2026-12-06";
  // The fake decodes each 1.5 MiB chunk on its thread: seconds in a loaded
  // sanitizer build, where the harness's 5 s per request timed out.
  h.env.timeout_ms = 60'000;
  ASSERT_EQ(CmdSubmit(h.env, a), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t1\nt2\nt3\n");
  EXPECT_EQ(h.err.str(), "");
  auto requests = fake.requests();
  std::vector<std::string> cmds;
  for (const auto& r : requests) cmds.push_back(r["cmd"]);
  EXPECT_EQ(cmds, (std::vector<std::string>{"submit_begin", "submit_chunk", "submit_chunk",
                                            "submit_chunk", "submit_commit"}));
  // The key goes with the commit, where the tasks are inserted.
  EXPECT_EQ(requests.back()["idempotency_key"], "plan-2026-12-06");
  EXPECT_EQ(chunk_tasks, 3);
  for (const auto& r : requests) {
    EXPECT_LT(r.dump().size(), proto::kMaxMessageBytes) << r["cmd"];
    if (r["cmd"] != "submit_begin") {
      EXPECT_EQ(r["upload"], "u1");
    }
  }
  EXPECT_EQ(requests[3]["tasks"][0]["depends_on"], json({"a"}));

  // A refused commit is reported like a refused submit: refused as
  // invalid, the plan's fault (exit 2).
  h.Clear();
  fail_commit = true;
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_EQ(h.err.str(), "forge-ctl: " + a.plan + ": task 'c': bad dependency\n");
}

// A staged upload whose chunk got no answer is not aborted: a supervisor
// that did not answer the chunk would not answer the abort either, and
// asking waited a second whole timeout (37 s for a plan of 8,000 tasks).
// A chunk refused with an answer is aborted, as before.
TEST(LiveTest, AStagedUploadWithNoAnswerIsNotAbortedAsWell) {
  CtlHarness h;
  const std::string plan = WriteStagedPlan(h);
  std::atomic<bool> answer_chunks{false};
  FakeSupervisor fake(h.state_dir, [&](const json& r) {
    if (r["cmd"] == "submit_begin") return FakeSupervisor::Ok({{"upload", "u1"}, {"staged", 0}});
    if (r["cmd"] == "submit_chunk") {
      if (!answer_chunks) return json();  // stopped answering mid-upload
      return FakeSupervisor::Err("invalid", "task 'a': bad title");
    }
    if (r["cmd"] == "submit_abort") return FakeSupervisor::Ok({{"upload", "u1"}});
    return FakeSupervisor::Err("invalid", "unexpected " + r["cmd"].get<std::string>());
  });
  auto cmds = [&fake] {
    std::vector<std::string> out;
    for (const auto& r : fake.requests()) out.push_back(r["cmd"]);
    return out;
  };
  SubmitArgs a;
  a.plan = plan;
  h.env.timeout_ms = 3000;
  EXPECT_EQ(CmdSubmit(h.env, a), kExitRejected);
  EXPECT_THAT(h.err.str(), HasSubstr("did not answer 'submit_chunk'"));
  // The fake records the chunk once it has decoded it, which may be after
  // the client gave up on it.
  for (int i = 0; i < 3000 && cmds().size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(cmds(), (std::vector<std::string>{"submit_begin", "submit_chunk"}));

  h.Clear();
  answer_chunks = true;
  h.env.timeout_ms = 60'000;  // a sanitizer build decodes each chunk for seconds
  EXPECT_EQ(CmdSubmit(h.env, a), kExitUsage);
  EXPECT_EQ(cmds(), (std::vector<std::string>{"submit_begin", "submit_chunk", "submit_begin",
                                              "submit_chunk", "submit_abort"}));
}

TEST(LiveTest, ChangesPrintWhatChangedAndRejectionsExit1) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    if (r["id"] == "t404") return FakeSupervisor::Err("not_found", "no task t404");
    if (r["cmd"] == "approve") return FakeSupervisor::Err("conflict", "t1 does not need approval");
    return FakeSupervisor::Ok({{"id", r["id"]},
                               {"previous_state", "running"},
                               {"state", "cancelled"},
                               {"message", "attempt 2 killed"}});
  });
  ASSERT_EQ(CmdChange(h.env, "cancel", "t1"), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "t1: running -> cancelled (attempt 2 killed)\n");
  h.Clear();
  EXPECT_EQ(CmdChange(h.env, "retry", "t404"), kExitRejected);
  EXPECT_EQ(h.err.str(), "forge-ctl: no task t404\n");
  h.Clear();
  EXPECT_EQ(CmdChange(h.env, "approve", "t1"), kExitRejected);
  EXPECT_THAT(h.err.str(), HasSubstr("does not need approval"));
  h.Clear();
  h.env.json = true;
  ASSERT_EQ(CmdChange(h.env, "cancel", "t1"), kExitOk);
  auto j = json::parse(h.out.str());
  EXPECT_EQ(j["previous_state"], "running");
  EXPECT_EQ(j["state"], "cancelled");
}

TEST(LiveTest, PauseResumeStop) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    if (r["cmd"] == "pause")
      return FakeSupervisor::Ok({{"message", "paused: " + r.value("reason", "")}});
    return FakeSupervisor::Ok();
  });
  ASSERT_EQ(CmdPause(h.env, "deploy"), kExitOk);
  EXPECT_EQ(h.out.str(), "paused: deploy\n");
  h.Clear();
  ASSERT_EQ(CmdResume(h.env), kExitOk);
  EXPECT_EQ(h.out.str(), "dispatch resumed\n");
  h.Clear();
  StopArgs no_wait;
  no_wait.no_wait = true;
  ASSERT_EQ(CmdStop(h.env, no_wait), kExitOk);
  EXPECT_THAT(h.out.str(), HasSubstr("supervisor stopping"));
  auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0]["reason"], "deploy");
  EXPECT_EQ(requests[2]["cmd"], "stop");
}

// A reply whose fields have other types (a supervisor of another version)
// is read as if they were missing: the command did what it asked, so exit 0
// with forge-ctl's own line, not "internal error", exit 1.
TEST(LiveTest, AReplyFieldOfAnotherTypeReadsAsMissing) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"message", 5}, {"within_ms", "soon"}, {"stopping", true}});
  });
  ASSERT_EQ(CmdPause(h.env, ""), kExitOk) << h.err.str();
  ASSERT_EQ(CmdResume(h.env), kExitOk) << h.err.str();
  StopArgs no_wait;
  no_wait.no_wait = true;
  ASSERT_EQ(CmdStop(h.env, no_wait), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(),
            "dispatch paused; running attempts continue; resume with: forge-ctl resume\n"
            "dispatch resumed\n"
            "supervisor stopping: running attempts get the shutdown grace, then it exits\n");
  StopArgs wait_briefly;
  wait_briefly.timeout_ms = 100;  // within_ms unreadable: the flag's timeout
  EXPECT_EQ(CmdStop(h.env, wait_briefly), kExitTimeout);
}

// stop returns once the supervisor has exited (its lock is free), so that
// `forge-ctl stop && forge-supervisor start` works.
TEST(LiveTest, StopWaitsUntilTheSupervisorHasExited) {
  CtlHarness h;
  FakeSupervisor* self = nullptr;
  FakeSupervisor fake(h.state_dir, [&](const json&) {
    self->ReleaseLock();  // it exits before it answers: the wait has to see it
    return FakeSupervisor::Ok({{"stopping", true}, {"within_ms", 60'000}});
  });
  self = &fake;
  ASSERT_EQ(CmdStop(h.env), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(), "supervisor stopped\n");
  EXPECT_FALSE(SupervisorPid(h.state_dir).has_value());
}

// The supervisor's deadline counts from its answer (39999 ms): the wait is
// named in whole seconds, not "44999ms".
TEST(LiveTest, StopNamesItsWaitInWholeSeconds) {
  CtlHarness h;
  FakeSupervisor* self = nullptr;
  FakeSupervisor fake(h.state_dir, [&](const json&) {
    self->ReleaseLock();
    return FakeSupervisor::Ok({{"stopping", true}, {"within_ms", 39'999}});
  });
  self = &fake;
  ASSERT_EQ(CmdStop(h.env), kExitOk) << h.err.str();
  EXPECT_THAT(h.err.str(), HasSubstr("; waiting up to 45s\n"));
}

// One that is still running by the timeout: 124, naming its pid.
TEST(LiveTest, StopThatOutlastsTheTimeoutExits124) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    return FakeSupervisor::Ok({{"stopping", true}, {"within_ms", 60'000}});
  });
  StopArgs args;
  args.timeout_ms = 200;
  EXPECT_EQ(CmdStop(h.env, args), kExitTimeout);
  EXPECT_THAT(h.err.str(), HasSubstr("the supervisor (pid " + std::to_string(fake.pid()) +
                                     ") is still stopping after 200ms"));
}

// A change request that gets no answer because the supervisor stopped
// meanwhile (its lock is free by the timeout) is "not running", exit 3, as
// when it was gone before the request; for stop it is what was asked,
// exit 0. Both were exit 1, as if the supervisor had refused.
TEST(LiveTest, AChangeUnansweredBecauseTheSupervisorStoppedIsNotRunning) {
  struct Case {
    std::string cmd;
    std::function<int(Env&)> run;
  };
  const std::vector<Case> cases = {
      {"cancel", [](Env& e) { return CmdChange(e, "cancel", "t1"); }},
      {"retry", [](Env& e) { return CmdChange(e, "retry", "t1"); }},
      {"approve", [](Env& e) { return CmdChange(e, "approve", "t1"); }},
      {"pause", [](Env& e) { return CmdPause(e, "deploy"); }},
      {"resume", [](Env& e) { return CmdResume(e); }},
      {"submit",
       [](Env& e) {
         SubmitArgs a;
         a.title = "x";
         return CmdSubmit(e, a);
       }},
      {"stop", [](Env& e) { return CmdStop(e); }},
  };
  for (const auto& c : cases) {
    for (bool json_out : {false, true}) {
      CtlHarness h;
      h.env.timeout_ms = 200;
      h.env.json = json_out;
      FakeSupervisor* self = nullptr;
      FakeSupervisor fake(h.state_dir, [&](const json&) -> json {
        self->ReleaseLock();  // it exits before it answers
        return nullptr;
      });
      self = &fake;
      const int rc = c.run(h.env);
      if (c.cmd == "stop") {
        EXPECT_EQ(rc, kExitOk) << h.err.str();
        if (json_out) {
          EXPECT_EQ(json::parse(h.out.str()), json({{"stopped", true}}));
        } else {
          EXPECT_EQ(h.out.str(), "supervisor stopped\n");
        }
        continue;
      }
      EXPECT_EQ(rc, kExitNoSupervisor) << c.cmd << ": " << h.err.str();
      EXPECT_EQ(h.err.str(), "forge-ctl: supervisor not running for " + h.state_dir +
                                 ": it stopped before answering '" + c.cmd +
                                 "' (forge-ctl events shows whether it was done); start it "
                                 "with: forge-supervisor start --state-dir " +
                                 h.state_dir + "\n");
      EXPECT_EQ(h.out.str(), "") << c.cmd;
    }
  }
  // A submit under an idempotency key says a retry is safe.
  {
    CtlHarness h;
    h.env.timeout_ms = 200;
    FakeSupervisor hung(h.state_dir, [](const json&) { return nullptr; });
    SubmitArgs a;
    a.title = "x";
    a.idempotency_key = "k1";
    EXPECT_EQ(CmdSubmit(h.env, a), kExitRejected);
    EXPECT_THAT(h.err.str(), HasSubstr("did not answer 'submit' within"));
    EXPECT_THAT(h.err.str(), ::testing::EndsWith("; the same submit with the same "
                                                 "--idempotency-key cannot queue it twice\n"));
  }
  // Without a key, it says a blind retry may queue twice.
  {
    CtlHarness h;
    h.env.timeout_ms = 200;
    FakeSupervisor hung(h.state_dir, [](const json&) { return nullptr; });
    SubmitArgs a;
    a.title = "x";
    EXPECT_EQ(CmdSubmit(h.env, a), kExitRejected);
    EXPECT_THAT(h.err.str(), HasSubstr("did not answer 'submit' within"));
    EXPECT_THAT(h.err.str(), ::testing::EndsWith("; it may have been queued: look (forge-ctl ls) "
                                                 "before submitting again, and give submits an "
                                                 "--idempotency-key so that a retry cannot queue "
                                                 "twice\n"));
  }
  // One that still holds the lock did not answer: exit 1, as before.
  for (const char* cmd : {"cancel", "stop"}) {
    CtlHarness h;
    h.env.timeout_ms = 200;
    FakeSupervisor hung(h.state_dir, [](const json&) { return nullptr; });
    const int rc = std::string(cmd) == "stop" ? CmdStop(h.env) : CmdChange(h.env, cmd, "t1");
    EXPECT_EQ(rc, kExitRejected) << cmd;
    EXPECT_THAT(h.err.str(), HasSubstr("did not answer '" + std::string(cmd) + "' within 200ms"));
  }
}

// The store inserts a submit's tasks in one transaction, which takes time
// in proportion: the request waits 1 ms a task beyond the timeout, in one
// message as when staged (one message had the bare timeout).
TEST(LiveTest, ASubmitOfManyTasksWaitsLongerForItsAnswer) {
  CtlHarness h;
  h.env.timeout_ms = 200;
  constexpr int kTasks = 2000;  // 2.2 s
  {
    std::ofstream plan(h.dir.Path("plan.yaml"));
    plan << "tasks:\n";
    for (int i = 0; i < kTasks; ++i) plan << "  - {id: a" << i << ", title: T}\n";
  }
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    json ids = json::array();
    for (size_t i = 0; i < r["tasks"].size(); ++i) ids.push_back("t" + std::to_string(i + 1));
    return FakeSupervisor::Ok({{"ids", ids}});
  });
  SubmitArgs p;
  p.plan = h.dir.Path("plan.yaml");
  ASSERT_EQ(CmdSubmit(h.env, p), kExitOk) << h.err.str();
  ASSERT_EQ(fake.requests().size(), 1u);
  EXPECT_EQ(fake.requests()[0]["cmd"], "submit");
}

TEST(LiveTest, ResumeSaysWhatStillPauses) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    proto::StatusReply s;
    s.paused = true;
    s.pause_reasons = {{"budget", "daily budget spent: $5.00 of $5.00", 0}};
    return FakeSupervisor::Ok(json(s));
  });
  ASSERT_EQ(CmdResume(h.env), kExitOk) << h.err.str();
  EXPECT_EQ(h.out.str(),
            "operator pause lifted; dispatch is still paused by budget: daily budget spent: $5.00 "
            "of $5.00\n");
}

// The supervisor says what its resume lifted (session 34): with only a
// budget pause, there was no operator pause to lift.
TEST(LiveTest, ResumeSaysWhenThereWasNoOperatorPause) {
  CtlHarness h;
  json lifted = json::array();
  std::vector<proto::PauseReason> still = {{"budget", "daily budget spent", 0}};
  FakeSupervisor fake(h.state_dir, [&](const json&) {
    proto::StatusReply s;
    s.paused = !still.empty();
    s.pause_reasons = still;
    json body = s;
    body["lifted"] = lifted;
    return FakeSupervisor::Ok(body);
  });
  auto resume = [&] {
    h.Clear();
    EXPECT_EQ(CmdResume(h.env), kExitOk) << h.err.str();
    return h.out.str();
  };
  EXPECT_EQ(resume(),
            "no operator pause to lift; dispatch is still paused by budget: daily budget spent\n");
  lifted = {"operator", "circuit"};
  EXPECT_EQ(resume(),
            "operator pause lifted; lifted the circuit pause; dispatch is still paused by budget: "
            "daily budget spent\n");
  still.clear();
  lifted = {"operator"};
  EXPECT_EQ(resume(), "dispatch resumed\n");
  lifted = {"rate_limit"};
  EXPECT_EQ(resume(), "no operator pause to lift; lifted the rate_limit pause; dispatch resumed\n");
  lifted = json::array();
  EXPECT_EQ(resume(), "no operator pause to lift; dispatch was not paused\n");
}

TEST(LiveTest, AHungSupervisorFallsBackToTheDatabase) {
  CtlHarness h;
  auto writer = h.OpenWriter();
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Submit({testing::Task("Still visible")}).ok());
  FakeSupervisor fake(h.state_dir, [](const json&) { return json(nullptr); });  // never answers
  h.env.timeout_ms = 200;
  ASSERT_EQ(CmdList(h.env, {}), kExitOk) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("Still visible"));
  EXPECT_THAT(h.err.str(), HasSubstr("did not answer 'ls'"));
  EXPECT_THAT(h.err.str(), HasSubstr("showing the database as of now"));
}

// A supervisor that holds the lock and never answers: the database is read,
// and every command says the supervisor is there but not answering, never
// that it is not running.
class HungSupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    writer_ = h_.OpenWriter();
    ASSERT_NE(writer_, nullptr);
    auto ids = writer_->Submit({testing::Task("Finished while hung")});
    ASSERT_TRUE(ids.ok());
    store::Lease lease;
    lease.worker_pid = 4242;
    auto a = writer_->LeaseAttempt(ids->front(), lease);
    ASSERT_TRUE(a.ok());
    store::AgentReport r;
    r.outcome = proto::Outcome::kPassed;
    ASSERT_TRUE(writer_->RecordAgentResult(a->id, r).ok());
    store::Close c;
    c.outcome = proto::Outcome::kPassed;
    c.next_state = proto::TaskState::kDone;
    ASSERT_TRUE(writer_->CloseAttempt(a->id, c).ok());
    ASSERT_TRUE(writer_->Submit({testing::Task("Still running")}).ok());
    h_.env.timeout_ms = 200;
    hung_ = std::make_unique<FakeSupervisor>(h_.state_dir, [](const json&) { return nullptr; });
  }

  CtlHarness h_;
  std::unique_ptr<store::Store> writer_;
  std::unique_ptr<FakeSupervisor> hung_;
};

TEST_F(HungSupervisorTest, StatusSaysItIsNotAnsweringAndNamesItsPid) {
  ASSERT_EQ(CmdStatus(h_.env), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("not answering  pid " + std::to_string(hung_->pid()) +
                                      " holds the lock (showing the database)"));
  EXPECT_THAT(h_.out.str(), Not(HasSubstr("not running")));
  EXPECT_THAT(h_.err.str(), HasSubstr("did not answer 'status' within 200ms"));
  h_.Clear();
  h_.env.json = true;
  ASSERT_EQ(CmdStatus(h_.env), kExitOk) << h_.err.str();
  auto j = json::parse(h_.out.str());
  EXPECT_EQ(j["running"], true);
  EXPECT_EQ(j["answering"], false);
  EXPECT_EQ(j["pid"], hung_->pid());
  EXPECT_EQ(j["queue"]["done"], 1);
}

TEST_F(HungSupervisorTest, EventsAreReadFromTheDatabase) {
  ASSERT_EQ(CmdEvents(h_.env, {}), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("task.done"));
  EXPECT_THAT(h_.err.str(), HasSubstr("did not answer 'events'"));
  EXPECT_THAT(h_.err.str(), HasSubstr("reading the database"));
  EXPECT_THAT(h_.err.str(), Not(HasSubstr("not running")));
}

TEST_F(HungSupervisorTest, WaitReadsTheDatabaseAndEndsOnWhatItSays) {
  ASSERT_EQ(CmdWait(h_.env, {"t1"}, 20'000), kExitOk) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("t1  done"));
  EXPECT_THAT(h_.err.str(), HasSubstr("showing the database as of now"));
  h_.Clear();
  EXPECT_EQ(CmdWait(h_.env, {"t2"}, 500), kExitTimeout) << h_.err.str();
  EXPECT_THAT(h_.out.str(), HasSubstr("t2  ready"));
}

// doctor asks: the lock alone does not make a supervisor that works.
TEST_F(HungSupervisorTest, DoctorIsRedAndSaysHowToRestartIt) {
  EXPECT_EQ(CmdDoctor(h_.env), kExitRejected) << h_.out.str();
  const std::string pid = std::to_string(hung_->pid());
  EXPECT_THAT(h_.out.str(), HasSubstr("running, pid " + pid +
                                      " (it holds the lock) but the "
                                      "supervisor did not answer 'status' within 200ms"));
  EXPECT_THAT(h_.out.str(), HasSubstr("kill -TERM " + pid));
  hung_.reset();
  hung_ = std::make_unique<FakeSupervisor>(
      h_.state_dir, [](const json&) { return FakeSupervisor::Ok(json(proto::StatusReply{})); });
  h_.Clear();
  (void)CmdDoctor(h_.env);
  EXPECT_THAT(h_.out.str(),
              HasSubstr("running, pid " + std::to_string(hung_->pid()) + ", answering"));
}

// With a supervisor running, doctor judges an agent command by the PATH
// that supervisor has (its /proc/PID/environ), not forge-ctl's, and says so;
// the fix reloads it. (The fake's lock holder is forked from this process,
// so its PATH is this process's at its start.)
TEST(LiveTest, DoctorJudgesTheAgentByTheRunningSupervisorsPath) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir,
                      [](const json&) { return FakeSupervisor::Ok(json(proto::StatusReply{})); });
  std::string config = h.dir.Path("forge.yaml");
  std::ofstream(config) << "agent: {profile: command, command: [forge-no-such-agent-35]}\n";
  DoctorOptions o;
  o.state_dir = h.state_dir;
  o.config_path = config;
  o.red_bytes = 0;
  o.warn_bytes = 0;
  const char* path = std::getenv("PATH");
  ASSERT_NE(path, nullptr);
  bool warned = false;
  for (const auto& f : RunDoctor(o)) {
    if (f.check != "agent") continue;
    warned = true;
    EXPECT_EQ(f.severity, Severity::kWarn);
    EXPECT_THAT(f.message, HasSubstr("is not in PATH '" + std::string(path) +
                                     "': every task would fail on it"));
    EXPECT_THAT(f.message, HasSubstr("(PATH is the running supervisor's)"));
    EXPECT_THAT(f.fix, HasSubstr("kill -HUP " + std::to_string(fake.pid())));
  }
  EXPECT_TRUE(warned);
}

// Waiting on the database, with nobody left to move the task on: exit 3.
TEST_F(HungSupervisorTest, WaitEndsWhenTheHungSupervisorIsGone) {
  h_.env.stop = [&] {
    hung_.reset();  // after the first look: the lock is released
    return false;
  };
  EXPECT_EQ(CmdWait(h_.env, {"t2"}, 20'000), kExitNoSupervisor) << h_.err.str();
  EXPECT_THAT(h_.err.str(), HasSubstr("supervisor not running"));
}

TEST(LiveTest, StatusRendersTheSupervisorsReply) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json&) {
    proto::StatusReply s;
    s.pid = 777;
    s.version = "0.1.0";
    s.children = {{"worker", 778, "idle", "", 0, 0, 100, 0, 0}};
    s.queue = {{"ready", 3}};
    return FakeSupervisor::Ok(json(s));
  });
  ASSERT_EQ(CmdStatus(h.env), kExitOk) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("running  pid 777"));
  EXPECT_THAT(h.out.str(), HasSubstr("worker  778  idle"));
  EXPECT_EQ(h.err.str(), "") << "no offline notice while the supervisor runs";
  h.Clear();
  h.env.json = true;
  ASSERT_EQ(CmdStatus(h.env), kExitOk);
  auto j = json::parse(h.out.str());
  EXPECT_EQ(j["pid"], 777);
  EXPECT_EQ(j["running"], true);
  EXPECT_EQ(j["children"][0]["role"], "worker");
  EXPECT_EQ(j["queue"]["ready"], 3);
}

// A scripted task: show answers `state`, events report a change after
// `changes_after` event queries, then show answers `final_state`.
struct WaitScript {
  std::mutex mu;
  int event_queries = 0;
  int changes_after = 2;
  std::string state = "running";
  std::string final_state = "done";
  bool changed = false;

  json Handle(const json& r) {
    std::lock_guard<std::mutex> g(mu);
    if (r["cmd"] == "show")
      return FakeSupervisor::Ok(TaskJson(r["id"], changed ? final_state : state));
    if (r["cmd"] == "events") {
      ++event_queries;
      json events = json::array();
      if (!changed && final_state != state && event_queries >= changes_after) {
        changed = true;
        proto::EventInfo e;
        e.seq = 9;
        e.ts_ms = 1'700'000'000'000;
        e.kind = "task.state";  // no "to": wait asks show
        e.task_id = "t1";
        events.push_back(e);
      }
      return FakeSupervisor::Ok({{"events", events}, {"last_seq", 9}});
    }
    return FakeSupervisor::Err("invalid", "unexpected");
  }
};

TEST(LiveTest, WaitExitsZeroWhenDoneFollowingEvents) {
  CtlHarness h;
  WaitScript script;
  FakeSupervisor fake(h.state_dir, [&](const json& r) { return script.Handle(r); });
  ASSERT_EQ(CmdWait(h.env, {"t1"}, 20'000), kExitOk) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t1  done"));
  int shows = 0;
  for (const auto& r : fake.requests()) {
    shows += r["cmd"] == "show";
    if (r["cmd"] == "events" && r["limit"] != 1) {
      EXPECT_EQ(r["since"], 9) << "follows the log from where it ended when the wait began";
    }
  }
  EXPECT_EQ(shows, 2) << "asks again only after an event names the task";
}

// A supervisor that stops while a wait's request is out (`stop`, a crash):
// the wait says so at once (exit 3), and does not wait out the timeout to
// say the supervisor did not answer, which read as a hung one.
TEST(LiveTest, AWaitHearsAtOnceThatTheSupervisorStopped) {
  CtlHarness h;
  h.env.timeout_ms = 60'000;
  auto writer = h.OpenWriter();  // a database to fall back to, as a state directory has
  proto::SubmitTask task;
  task.title = "t";
  ASSERT_TRUE(writer->Submit({task}).ok());
  ASSERT_TRUE(writer->LeaseAttempt("t1", store::Lease{}).ok());
  FakeSupervisor* self = nullptr;
  FakeSupervisor fake(h.state_dir, [&](const json& r) -> json {
    if (r["cmd"] == "show") return FakeSupervisor::Ok(TaskJson(r["id"], "running"));
    self->ReleaseLock();  // it exits before it answers the wait's events
    return nullptr;
  });
  self = &fake;
  EXPECT_EQ(CmdWait(h.env, {"t1"}, 120'000), kExitNoSupervisor) << h.err.str();
  EXPECT_THAT(h.err.str(), HasSubstr("the supervisor stopped before answering 'events'"));
  EXPECT_THAT(h.err.str(), Not(HasSubstr("did not answer")));
}

proto::EventInfo Transition(int64_t seq, const std::string& task, const std::string& from,
                            const std::string& to) {
  proto::EventInfo e;
  e.seq = seq;
  e.ts_ms = 1'700'000'000'000;
  e.kind = "task." + to;
  e.task_id = task;
  e.payload = {{"from", from}, {"to", to}};
  return e;
}

// A supervisor whose show answers `state` for every task and whose n-th
// events query (n from 1) answers page(n).
FakeSupervisor::Handler LogScript(const std::string& state,
                                  std::function<std::vector<proto::EventInfo>(int)> page) {
  auto queries = std::make_shared<int>(0);
  return [state, page, queries](const json& r) {
    if (r["cmd"] == "show") return FakeSupervisor::Ok(TaskJson(r["id"], state));
    if (r["cmd"] != "events") return FakeSupervisor::Err("invalid", "unexpected");
    return FakeSupervisor::Ok({{"events", page(++*queries)}, {"last_seq", 9}});
  };
}

// The log's task.<state> events move the tasks on: one events query per turn
// for all of them, and no show after the first look.
TEST(LiveTest, WaitFollowsTheWholeLogWithOneQueryPerTurn) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, LogScript("running", [](int query) {
                        std::vector<proto::EventInfo> page;
                        if (query == 3) {
                          page.push_back(Transition(5, "t1", "running", "reviewing"));
                          page.push_back(Transition(6, "t9", "running", "blocked"));  // not waited
                          page.push_back(Transition(7, "t1", "reviewing", "done"));
                          page.push_back(Transition(8, "t2", "running", "done"));
                        }
                        return page;
                      }));
  ASSERT_EQ(CmdWait(h.env, {"t1", "t2"}, 20'000), kExitOk) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t1  done"));
  EXPECT_THAT(h.out.str(), HasSubstr("t2  done"));
  int shows = 0, events = 0;
  for (const auto& r : fake.requests()) {
    shows += r["cmd"] == "show";
    if (r["cmd"] != "events") continue;
    if (++events == 1) {  // where the log ends, before the first look
      EXPECT_EQ(r["since"], std::numeric_limits<int64_t>::max());
      EXPECT_EQ(shows, 0);
      continue;
    }
    EXPECT_EQ(r["kind"], "task.");
    EXPECT_EQ(r.value("task_id", ""), "") << "one query for every task";
    EXPECT_EQ(r["since"], 9) << "from the log's end when the wait began";
  }
  EXPECT_EQ(shows, 2) << "only the first look";
  EXPECT_EQ(events, 3);
}

// blocked can be retried: a wait that read it from the log asks show before
// exiting 1, and keeps waiting when the task has moved on since.
TEST(LiveTest, WaitConfirmsABlockedTaskBeforeExiting) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, LogScript("ready", [](int query) {
                        std::vector<proto::EventInfo> page;
                        if (query == 2) page.push_back(Transition(3, "t1", "running", "blocked"));
                        if (query == 4) page.push_back(Transition(9, "t1", "reviewing", "done"));
                        return page;
                      }));
  ASSERT_EQ(CmdWait(h.env, {"t1"}, 20'000), kExitOk) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t1  done"));
  int shows = 0;
  for (const auto& r : fake.requests()) shows += r["cmd"] == "show";
  EXPECT_EQ(shows, 2) << "the first look, then the check of 'blocked'";
}

TEST(LiveTest, WaitExitsOneWhenATaskBlocks) {
  CtlHarness h;
  WaitScript script;
  script.final_state = "blocked";
  FakeSupervisor fake(h.state_dir, [&](const json& r) { return script.Handle(r); });
  EXPECT_EQ(CmdWait(h.env, {"t1"}, 20'000), kExitRejected);
  EXPECT_THAT(h.out.str(), HasSubstr("t1  blocked"));
}

// Each task wait ends on says why (session 35), from show: the log said
// both were settled, and each is confirmed by show, which gives its reason.
TEST(LiveTest, WaitSaysWhyEachTaskIsBlockedOrCancelled) {
  CtlHarness h;
  auto shows = std::make_shared<std::map<std::string, int>>();
  auto handler = [shows](const json& r) {
    if (r["cmd"] == "events") {
      std::vector<proto::EventInfo> page;
      if (r["since"] == 9) {
        page.push_back(Transition(10, "t1", "running", "blocked"));
        page.push_back(Transition(11, "t2", "running", "cancelled"));
      }
      return FakeSupervisor::Ok({{"events", page}, {"last_seq", 9}});
    }
    if (r["cmd"] != "show") return FakeSupervisor::Err("invalid", "unexpected");
    const std::string id = r["id"];
    if (++(*shows)[id] == 1) return FakeSupervisor::Ok(TaskJson(id, "running"));
    json show = TaskJson(id, id == "t1" ? "blocked" : "cancelled");
    show["state_reason"] = id == "t1" ? "attempts exhausted (3 of 3)" : "cancelled by operator";
    return FakeSupervisor::Ok(show);
  };
  {
    FakeSupervisor fake(h.state_dir, handler);
    EXPECT_EQ(CmdWait(h.env, {"t1", "t2", "t3"}, 20'000), kExitRejected) << h.err.str();
    EXPECT_EQ(h.out.str(),
              "t1  blocked  (reason: attempts exhausted (3 of 3))\n"
              "t2  cancelled  (reason: cancelled by operator)\n"
              "t3  running\n");
  }
  h.Clear();
  shows->clear();
  h.env.json = true;
  FakeSupervisor fake(h.state_dir, handler);
  EXPECT_EQ(CmdWait(h.env, {"t1", "t2", "t3"}, 20'000), kExitRejected);
  auto j = json::parse(h.out.str());
  EXPECT_EQ(j["tasks"][0]["state_reason"], "attempts exhausted (3 of 3)");
  EXPECT_EQ(j["tasks"][1]["state_reason"], "cancelled by operator");
  EXPECT_EQ(j["tasks"][2]["state_reason"], "");
}

// t3 waits on t1 (its timeline's task.waiting); show answers t1 in the
// state `t1_states` gives for its n-th show (from 1), and the n-th events
// query (from 1) answers page(n).
FakeSupervisor::Handler StuckScript(std::function<std::string(int)> t1_states,
                                    std::function<std::vector<proto::EventInfo>(int)> page,
                                    std::string t3_state = "pending") {
  auto t1_shows = std::make_shared<int>(0);
  auto queries = std::make_shared<int>(0);
  return [=](const json& r) {
    if (r["cmd"] == "events") {
      return FakeSupervisor::Ok({{"events", page(++*queries)}, {"last_seq", 9}});
    }
    if (r["cmd"] != "show") return FakeSupervisor::Err("invalid", "unexpected");
    if (r["id"] == "t1") return FakeSupervisor::Ok(TaskJson("t1", t1_states(++*t1_shows)));
    const std::string id = r["id"];
    json show = TaskJson(id, t3_state);
    proto::EventInfo waiting;
    waiting.seq = 2;
    waiting.ts_ms = 1'700'000'000'000;
    waiting.kind = "task.waiting";
    waiting.task_id = id;
    waiting.payload = {{"dependency", "t1"}, {"dependency_state", "blocked"}, {"via", "t2"}};
    show["timeline"].push_back(waiting);
    return FakeSupervisor::Ok(show);
  };
}

// A task that waits on a blocked task will not end unless an operator
// retries that one: wait says so and exits 1, as for a blocked task.
TEST(LiveTest, WaitExitsOneWhenATaskWaitsOnABlockedOne) {
  CtlHarness h;
  auto blocked = [](int) { return std::string("blocked"); };
  auto nothing = [](int) { return std::vector<proto::EventInfo>(); };
  {
    FakeSupervisor fake(h.state_dir, StuckScript(blocked, nothing));
    EXPECT_EQ(CmdWait(h.env, {"t3"}, 20'000), kExitRejected) << h.err.str();
    EXPECT_THAT(h.out.str(), HasSubstr("t3  pending  (waits on t1, blocked: retry it)"));
  }
  h.Clear();
  h.env.json = true;
  FakeSupervisor fake(h.state_dir, StuckScript(blocked, nothing));
  EXPECT_EQ(CmdWait(h.env, {"t3"}, 20'000), kExitRejected);
  auto j = json::parse(h.out.str());
  EXPECT_EQ(j["timed_out"], false);
  EXPECT_EQ(j["tasks"][0]["state"], "pending");
  EXPECT_EQ(j["tasks"][0]["waits_on"], json({{"id", "t1"}, {"state", "blocked"}}));
}

// Tasks that wait on the same one: it is asked about once a look.
TEST(LiveTest, WaitAsksOnceAboutATaskManyWaitOn) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir,
                      StuckScript([](int) { return std::string("blocked"); },
                                  [](int) { return std::vector<proto::EventInfo>(); }));
  EXPECT_EQ(CmdWait(h.env, {"t3", "t4", "t5"}, 20'000), kExitRejected) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t5  pending  (waits on t1, blocked: retry it)"));
  int about_t1 = 0;
  for (const auto& r : fake.requests()) about_t1 += r["cmd"] == "show" && r["id"] == "t1";
  EXPECT_EQ(about_t1, 1);
}

// show cuts a long timeline (proto::kShowTimelineMax): the task.waiting
// events after the cut are read from the log.
TEST(LiveTest, WaitReadsTheWaitingEventsShowCutOff) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    if (r["cmd"] == "show" && r["id"] == "t1") return FakeSupervisor::Ok(TaskJson("t1", "blocked"));
    if (r["cmd"] == "show") {
      proto::ShowReply show;
      show.task.id = "t3";
      show.task.title = "Task t3";
      show.task.state = proto::TaskState::kPending;
      for (int i = 1; i <= proto::kShowTimelineMax; ++i) {
        proto::EventInfo e;
        e.seq = i;
        e.kind = "task.approved";
        e.task_id = "t3";
        show.timeline.push_back(e);
      }
      return FakeSupervisor::Ok(json(show));
    }
    json events = json::array();
    if (r.value("task_id", "") == "t3" && r.value("kind", "") == "task.waiting") {
      proto::EventInfo e;
      e.seq = 2000;
      e.kind = "task.waiting";
      e.task_id = "t3";
      e.payload = {{"dependency", "t1"}, {"dependency_state", "blocked"}};
      events.push_back(e);
    }
    return FakeSupervisor::Ok({{"events", events}, {"last_seq", 2000}});
  });
  EXPECT_EQ(CmdWait(h.env, {"t3"}, 20'000), kExitRejected) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t3  pending  (waits on t1, blocked: retry it)"));
}

// Since session 34 show keeps a timeline's newest events and says how many
// earlier ones it left out: the task.waiting events among those are read
// from the log.
TEST(LiveTest, WaitReadsTheWaitingEventsTheTimelineLeftOut) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, [](const json& r) {
    if (r["cmd"] == "show" && r["id"] == "t1") return FakeSupervisor::Ok(TaskJson("t1", "blocked"));
    if (r["cmd"] == "show") {
      proto::ShowReply show;
      show.task.id = "t3";
      show.task.state = proto::TaskState::kPending;
      proto::EventInfo e;
      e.seq = 90;
      e.kind = "task.approved";
      e.task_id = "t3";
      show.timeline = {e};
      show.timeline_omitted = 5;
      return FakeSupervisor::Ok(json(show));
    }
    json events = json::array();
    if (r.value("task_id", "") == "t3" && r.value("kind", "") == "task.waiting" &&
        r.value("since", -1) < 7) {
      proto::EventInfo e;
      e.seq = 7;
      e.kind = "task.waiting";
      e.task_id = "t3";
      e.payload = {{"dependency", "t1"}, {"dependency_state", "blocked"}};
      events.push_back(e);
    }
    return FakeSupervisor::Ok({{"events", events}, {"last_seq", 90}});
  });
  EXPECT_EQ(CmdWait(h.env, {"t3"}, 20'000), kExitRejected) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t3  pending  (waits on t1, blocked: retry it)"));
}

// The dependency named by an old task.waiting was retried since: the wait
// goes on, and ends on what the task does.
TEST(LiveTest, WaitGoesOnWhenTheDependencyWasRetried) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir,
                      StuckScript([](int) { return std::string("running"); },
                                  [](int query) {
                                    std::vector<proto::EventInfo> page;
                                    if (query == 3) {
                                      page.push_back(Transition(10, "t3", "pending", "ready"));
                                      page.push_back(Transition(11, "t3", "ready", "done"));
                                    }
                                    return page;
                                  }));
  ASSERT_EQ(CmdWait(h.env, {"t3"}, 20'000), kExitOk) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("t3  done"));
  EXPECT_THAT(h.out.str(), Not(HasSubstr("waits on")));
}

// Stuck while the wait runs: the task.waiting event sends it to show again.
TEST(LiveTest, WaitNoticesATaskGettingStuck) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir, StuckScript([](int n) { return n == 1 ? "ready" : "cancelled"; },
                                               [](int query) {
                                                 std::vector<proto::EventInfo> page;
                                                 if (query == 3) {
                                                   proto::EventInfo e;
                                                   e.seq = 12;
                                                   e.kind = "task.waiting";
                                                   e.task_id = "t3";
                                                   page.push_back(e);
                                                 }
                                                 return page;
                                               }));
  EXPECT_EQ(CmdWait(h.env, {"t3"}, 20'000), kExitRejected) << h.err.str();
  EXPECT_THAT(h.out.str(), HasSubstr("(waits on t1, cancelled: retry it)"));
}

TEST(LiveTest, WaitTimesOutWith124) {
  CtlHarness h;
  WaitScript script;
  script.final_state = "running";  // never changes
  FakeSupervisor fake(h.state_dir, [&](const json& r) { return script.Handle(r); });
  h.env.json = true;
  EXPECT_EQ(CmdWait(h.env, {"t1"}, 200), kExitTimeout);
  auto j = json::parse(h.out.str());
  EXPECT_EQ(j["timed_out"], true);
  EXPECT_EQ(j["tasks"][0]["state"], "running");
}

// --timeout 0 looks once (it used to mean no timeout, so it waited forever).
TEST(LiveTest, WaitWithTimeoutZeroLooksOnce) {
  CtlHarness h;
  WaitScript script;
  script.final_state = "running";
  FakeSupervisor fake(h.state_dir, [&](const json& r) { return script.Handle(r); });
  EXPECT_EQ(CmdWait(h.env, {"t1"}, 0), kExitTimeout);
  EXPECT_THAT(h.out.str(), HasSubstr("t1  running"));
}

TEST(LiveTest, WaitUnknownTaskExits1) {
  CtlHarness h;
  FakeSupervisor fake(h.state_dir,
                      [](const json&) { return FakeSupervisor::Err("not_found", "no task t5"); });
  EXPECT_EQ(CmdWait(h.env, {"t5"}, 1000), kExitRejected);
  EXPECT_THAT(h.err.str(), HasSubstr("no task t5"));
}

}  // namespace
}  // namespace forge::ctl
