// Security: the state directory and its sockets are the owner's alone; task
// fields reach the agent literally (no shell ever interprets them); secret env
// values never leave the agent's environment; a control request cannot make
// the supervisor run a program other than the configured agent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>

#include "proto/endpoints.h"
#include "tests/reliability/reliability.h"

namespace forge::reliability {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Unique() {
  return std::to_string(::getpid()) + "-" + std::to_string(::time(nullptr));
}

// A Forge whose agent is tests/reliability/dump_agent.sh.
std::unique_ptr<itest::Forge> StartDumpForge(ForgeOptions o = {}) {
  auto f = std::make_unique<itest::Forge>(o);
  WriteFile(f->dir() + "/forge.yaml", ConfigWithAgent(o, ReliabilityFile("dump_agent.sh")));
  f->Start();
  return f;
}

std::string SocketPath(const std::string& endpoint) {
  const std::string prefix = "ipc://";
  return endpoint.rfind(prefix, 0) == 0 ? endpoint.substr(prefix.size()) : endpoint;
}

TEST(Security, StateDirAndSocketsAreOwnerOnly) {
  auto f = StartDumpForge();
  EXPECT_EQ(Mode(f->state_dir()), 0700);
  auto ep = proto::ResolveEndpoints(f->state_dir());
  for (const auto& sock : {SocketPath(ep.control), SocketPath(ep.children)}) {
    std::string dir = std::filesystem::path(sock).parent_path();
    EXPECT_EQ(Mode(dir), 0700) << dir;
    EXPECT_TRUE(std::filesystem::exists(sock)) << sock;
  }
  if (::geteuid() != 0) GTEST_SKIP() << "not root: cannot run a client as another user";
  // nobody must not get through the 0700 directory to either socket.
  int64_t served_before = f->Status()["counters"]["control_requests"].get<int64_t>();
  auto as_nobody =
      RunCapture({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                  itest::BinPath("forge-ctl"), "--state-dir", f->state_dir(), "--json", "status"},
                 f->dir());
  EXPECT_NE(as_nobody.status.exit_code, 0) << as_nobody.output;
  EXPECT_THAT(as_nobody.output, Not(HasSubstr("\"running\":true"))) << as_nobody.output;
  // Nor can nobody reach the socket file itself (connect() needs search access
  // to the 0700 directory and write access to the socket).
  auto raw =
      RunCapture({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "/bin/sh",
                  "-c", "test -r \"$0\" || test -w \"$0\" || echo refused", SocketPath(ep.control)},
                 f->dir());
  EXPECT_THAT(raw.output, HasSubstr("refused"));
  // Only our own status calls were served; nobody's request never reached the loop.
  int64_t served_after = f->Status()["counters"]["control_requests"].get<int64_t>();
  EXPECT_EQ(served_after, served_before + 1);
}

// Another user cannot enter the 0700 state directory: forge-ctl must say so
// (naming the directory, exit 1) rather than "supervisor not running".
TEST(Security, OtherUserIsToldPermissionDenied) {
  if (::geteuid() != 0) GTEST_SKIP() << "not root: cannot run a client as another user";
  auto f = StartDumpForge();
  for (const char* cmd : {"status", "ls"}) {
    auto as_nobody =
        RunCapture({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                    itest::BinPath("forge-ctl"), "--state-dir", f->state_dir(), cmd},
                   f->dir());
    EXPECT_EQ(as_nobody.status.exit_code, 1) << cmd << ": " << as_nobody.output;
    EXPECT_THAT(as_nobody.output, HasSubstr("permission denied")) << cmd;
    EXPECT_THAT(as_nobody.output, HasSubstr(f->state_dir())) << cmd;
    EXPECT_THAT(as_nobody.output, ::testing::Not(HasSubstr("not running"))) << cmd;
  }
  // The owner is unaffected.
  auto as_owner =
      RunCapture({itest::BinPath("forge-ctl"), "--state-dir", f->state_dir(), "status"}, f->dir());
  EXPECT_EQ(as_owner.status.exit_code, 0) << as_owner.output;
}

TEST(Security, TaskFieldsReachTheAgentLiterally) {
  auto f = StartDumpForge();
  std::string pwned = "/tmp/pwned-" + Unique();
  std::string nasty = "it's \"quoted\" $(touch " + pwned + ") `touch " + pwned +
                      "` ${HOME} $((1+1)) ; touch " + pwned + " | cat\n../../../etc/passwd\n" +
                      "line three \\n \\\\ '\"";
  json extra = {{"title", "title " + nasty}, {"brief", "brief " + nasty}};
  std::string id =
      f->Submit("succeed", {{"NASTY", nasty}, {"NASTY_PATH", "../../" + nasty}}, extra);
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(f->WaitState(id, TaskState::kDone, 60'000)) << f->SupervisorLog();

  std::string prompt = ReadFile(f->fake_state() + "/" + id + ".prompt");
  EXPECT_EQ(ReadFile(f->fake_state() + "/" + id + ".stdin"), prompt);
  EXPECT_THAT(prompt, HasSubstr("brief " + nasty));
  EXPECT_THAT(prompt, HasSubstr("title " + nasty));
  std::string env = ReadFile(f->fake_state() + "/" + id + ".env");
  EXPECT_THAT(env, HasSubstr(std::string("NASTY=") + nasty + '\0'));
  EXPECT_THAT(env, HasSubstr(std::string("NASTY_PATH=../../") + nasty + '\0'));
  EXPECT_FALSE(std::filesystem::exists(pwned)) << "a task field was run by a shell";
  std::filesystem::remove(pwned);

  // The agent ran in <state>/workspaces/<id>, and no workspace is outside it.
  std::string pwd = ReadFile(f->fake_state() + "/" + id + ".pwd");
  EXPECT_EQ(pwd, f->state_dir() + "/workspaces/" + id + "\n");
  auto canonical_state = std::filesystem::canonical(f->state_dir()).string();
  for (const auto& e : std::filesystem::directory_iterator(f->state_dir() + "/workspaces")) {
    EXPECT_EQ(std::filesystem::canonical(e.path()).parent_path(), canonical_state + "/workspaces");
  }
}

// A title or an error is shown on the operator's terminal: escape
// sequences in it (here a screen clear and a window title, as an agent's
// expand spec could write) reach it as U+FFFD and text, never as control.
// forge-ctl runs on a pseudo-terminal (`script`), as an operator would.
TEST(Security, TaskTextCannotControlTheOperatorsTerminal) {
  if (RunCapture({"script", "--version"}, "/").status.exit_code != 0) {
    GTEST_SKIP() << "no script(1) to give forge-ctl a terminal";
  }
  auto f = StartDumpForge();
  std::string id = f->Submit("succeed", {}, json{{"title", "evil\x1b[2J\x1b]0;owned\x07 title"}});
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(f->WaitState(id, TaskState::kDone, 60'000)) << f->SupervisorLog();
  for (const std::string& cmd : std::vector<std::string>{"ls", "show " + id}) {
    auto on_tty = RunCapture(
        {"script", "-qec",
         itest::BinPath("forge-ctl") + " --state-dir " + f->state_dir() + " --no-color " + cmd,
         "/dev/null"},
        f->dir());
    EXPECT_EQ(on_tty.status.exit_code, 0) << cmd << ": " << on_tty.output;
    EXPECT_THAT(on_tty.output,
                HasSubstr("evil\xEF\xBF\xBD[2J\xEF\xBF\xBD]0;owned\xEF\xBF\xBD title"))
        << cmd;
    EXPECT_EQ(on_tty.output.find('\x1b'), std::string::npos) << cmd << ": " << on_tty.output;
    EXPECT_EQ(on_tty.output.find('\x07'), std::string::npos) << cmd;
  }
}

TEST(Security, LocalIdsCannotNameAPath) {
  auto f = StartDumpForge();
  // Plan-local ids are only names inside one submit: the store assigns the real id.
  json tasks = json::array({json{{"id", "../../../escape"}, {"title", "a"}, {"brief", "b"}},
                            json{{"id", "/tmp/abs"},
                                 {"title", "b"},
                                 {"brief", "b"},
                                 {"depends_on", {"../../../escape"}}}});
  auto r = f->ctl().Call("submit", json{{"tasks", tasks}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (const auto& j : (*r)["ids"]) {
    std::string id = j.get<std::string>();
    EXPECT_THAT(id, ::testing::MatchesRegex("t[0-9]+"));
    EXPECT_TRUE(f->WaitState(id, TaskState::kDone, 60'000));
  }
  EXPECT_FALSE(std::filesystem::exists(f->dir() + "/escape"));
  EXPECT_FALSE(std::filesystem::exists(
      std::filesystem::path(f->state_dir()).parent_path().parent_path() / "escape"));
}

TEST(Security, SecretEnvValuesNeverLeave) {
  auto f = StartDumpForge();
  std::string secret = "sekrit-" + Unique() + "-value";
  std::string token = "tok-" + Unique() + "-zz";
  // The check prints both too: its tail and the review log must not keep them.
  // The title and brief quote a third (what an operator may paste).
  std::string quoted = "quoted-" + Unique() + "-xx";
  std::string id =
      f->Submit("leak", {{"API_KEY", secret}, {"GH_TOKEN", token}, {"PASTE_TOKEN", quoted}},
                json{{"title", "title has " + quoted},
                     {"brief", "brief quotes " + quoted},
                     {"verify", {"echo check sees $API_KEY and $GH_TOKEN"}}});
  ASSERT_FALSE(id.empty());
  // A failing verify command that quotes its secret as written: the check's
  // name, the attempt's error, status's last failure and stats' top failures.
  std::string password = "pw-" + Unique() + "-yy";
  std::string failing = f->Submit("succeed", {{"DB_PASSWORD", password}},
                                  json{{"title", "v"},
                                       {"verify", {"echo check-out " + password + "; false"}},
                                       {"max_attempts", 1}});
  ASSERT_FALSE(failing.empty());
  ASSERT_TRUE(f->WaitState(id, TaskState::kDone, 60'000)) << f->SupervisorLog();
  ASSERT_TRUE(f->WaitState(failing, TaskState::kBlocked, 60'000)) << f->SupervisorLog();
  ASSERT_EQ(f->Attempts(id).size(), 2u);  // the first one failed, quoting the key
  // The agent did get the real value.
  EXPECT_THAT(ReadFile(f->fake_state() + "/" + id + ".env"), HasSubstr("API_KEY=" + secret));

  auto show = RunCapture(
      {itest::BinPath("forge-ctl"), "--state-dir", f->state_dir(), "--json", "show", id}, f->dir());
  EXPECT_EQ(show.status.exit_code, 0) << show.output;
  EXPECT_THAT(show.output, HasSubstr("[redacted]"));
  auto ls = RunCapture({itest::BinPath("forge-ctl"), "--state-dir", f->state_dir(), "--json", "ls"},
                       f->dir());
  auto events = RunCapture({itest::BinPath("forge-ctl"), "--state-dir", f->state_dir(), "--json",
                            "events", "--limit", "10000"},
                           f->dir());
  auto show_reply = f->ctl().Call("show", json{{"id", id}});
  ASSERT_TRUE(show_reply.ok());
  std::map<std::string, std::string> places = {
      {"forge-ctl show --json", show.output},
      {"forge-ctl ls --json", ls.output},
      {"forge-ctl events --json", events.output},
      {"control show reply", show_reply->dump()},
      {"events.jsonl", ReadFile(f->state_dir() + "/events.jsonl")},
  };
  // What an operator reads, in text and JSON, of both tasks.
  for (const bool as_json : {false, true}) {
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"show", id}, {"show", failing}, {"ls"}, {"status"}, {"stats"}}) {
      std::vector<std::string> argv = {itest::BinPath("forge-ctl"), "--state-dir", f->state_dir()};
      if (as_json) argv.push_back("--json");
      argv.insert(argv.end(), args.begin(), args.end());
      auto out = RunCapture(argv, f->dir());
      EXPECT_EQ(out.status.exit_code, 0) << out.output;
      std::string where = "forge-ctl" + std::string(as_json ? " --json" : "");
      for (const auto& a : args) where += " " + a;
      places[where] = out.output;
    }
  }
  std::string all_events;
  for (const auto& e : f->Events()) all_events += e.kind + " " + e.payload.dump() + "\n";
  places["events table"] = all_events;
  for (const auto& a : f->Attempts(id)) {
    places["attempt " + std::to_string(a.n) + " row"] = a.error + "\n" + json(a.checks).dump();
  }
  // The failed check's name is kept as written (show redacts it), its error not.
  for (const auto& a : f->Attempts(failing)) places["failing attempt's error"] = a.error;
  // Every log: supervisor.log, worker/critic logs, each attempt's log and prompt.
  for (const auto& path : FilesBelow(f->state_dir() + "/logs")) places[path] = ReadFile(path);
  places["supervisor.log"] = f->SupervisorLog();
  bool saw_attempt_log = false;
  bool saw_review_log = false;
  for (const auto& [where, text] : places) {
    EXPECT_THAT(text, Not(HasSubstr(secret))) << "secret in " << where;
    EXPECT_THAT(text, Not(HasSubstr(token))) << "secret in " << where;
    // The agent's prompt (its stdin, kept under logs/) is the task's text
    // as written: it has what the title, brief and verify commands quote.
    if (!where.ends_with(".prompt")) {
      EXPECT_THAT(text, Not(HasSubstr(quoted))) << "secret in " << where;
      EXPECT_THAT(text, Not(HasSubstr(password))) << "secret in " << where;
    }
    if (where.find("/" + id + "/1.log") != std::string::npos) {
      saw_attempt_log = true;
      EXPECT_THAT(text, HasSubstr("my key is [redacted]")) << where;
    }
    if (where.find("/" + id + "/2.review.log") != std::string::npos) {
      saw_review_log = true;
      EXPECT_THAT(text, HasSubstr("check sees [redacted] and [redacted]")) << where;
    }
  }
  EXPECT_TRUE(saw_attempt_log);
  EXPECT_TRUE(saw_review_log);
}

TEST(Security, ControlRequestsCannotChooseTheProgram) {
  auto f = StartDumpForge();
  std::string pwned = f->dir() + "/pwned-by-sh";
  // agent names a profile, never a program. "/bin/sh" is not a profile: the
  // submit is refused, nothing queued (the worker would refuse it too, for a
  // task queued before the check). Were it run, sh would execute the prompt
  // on its stdin, which has this line:
  std::string brief = "touch " + pwned + "\n";
  for (const std::string& agent : {std::string("/bin/sh"), "bash -c 'touch " + pwned + "'"}) {
    json task = {{"title", "t"}, {"agent", agent}, {"brief", brief}};
    auto refused = f->ctl().Call("submit", json{{"tasks", json::array({task})}});
    ASSERT_FALSE(refused.ok()) << agent;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
    EXPECT_THAT(refused.error().message, HasSubstr("got '" + agent + "'"));
  }

  // The configured command profile runs the configured script (which dumps).
  std::string ok = f->Submit("succeed", {}, json{{"agent", "command"}});
  ASSERT_TRUE(f->WaitState(ok, TaskState::kDone, 60'000));
  EXPECT_TRUE(std::filesystem::exists(f->fake_state() + "/" + ok + ".stdin"));
  auto tasks = f->db().ListTasks({});
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ(tasks->size(), 1u) << "only the valid task was queued";
  EXPECT_FALSE(std::filesystem::exists(pwned));

  // Control commands outside the protocol are refused, not interpreted.
  auto bogus = f->ctl().Call("exec", json{{"command", "touch " + pwned}});
  ASSERT_FALSE(bogus.ok());
  EXPECT_FALSE(std::filesystem::exists(pwned));
}

}  // namespace
}  // namespace forge::reliability
