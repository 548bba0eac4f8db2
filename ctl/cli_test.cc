// Argument parsing: usage errors exit 2 naming the problem, --help shows an
// example, and parsing reaches the command (exit 3 with no supervisor).
#include "ctl/cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ctl/test_support.h"
#include "supervisor/store/submit_check.h"

namespace forge::ctl {
namespace {

using ::testing::HasSubstr;

struct Run {
  int rc;
  std::string out, err;
};

Run Cli(std::vector<std::string> args) {
  args.insert(args.begin(), "forge-ctl");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream out, err;
  int rc = RunCli(static_cast<int>(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

class CliTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
  std::string state_ = dir_.Path(".forge");
};

TEST_F(CliTest, UsageErrorsExit2) {
  EXPECT_EQ(Cli({}).rc, kExitUsage);
  EXPECT_EQ(Cli({"frobnicate"}).rc, kExitUsage);
  EXPECT_EQ(Cli({"show"}).rc, kExitUsage);                   // missing id
  EXPECT_EQ(Cli({"ls", "--limit", "many"}).rc, kExitUsage);  // not a number
  EXPECT_EQ(Cli({"submit", "--priority", "high", "--title", "x"}).rc, kExitUsage);
  EXPECT_EQ(Cli({"wait"}).rc, kExitUsage);
}

TEST_F(CliTest, AMistypedCommandIsNamed) {
  auto typo = Cli({"--state-dir", state_, "stauts"});
  EXPECT_EQ(typo.rc, kExitUsage);
  EXPECT_THAT(typo.err, HasSubstr("forge-ctl: unknown command 'stauts' (commands: status, "));
  auto none = Cli({"--json"});
  EXPECT_EQ(none.rc, kExitUsage);
  EXPECT_THAT(none.err, HasSubstr("forge-ctl: no command given (commands: status, "));
}

TEST_F(CliTest, BadValuesAreNamed) {
  auto env = Cli({"--state-dir", state_, "submit", "--title", "x", "--env", "NOEQUALS"});
  EXPECT_EQ(env.rc, kExitUsage);
  EXPECT_THAT(env.err, HasSubstr("--env 'NOEQUALS': expected NAME=VALUE"));

  auto forever = Cli({"--state-dir", state_, "wait", "t1", "--timeout", "9300000000000000"});
  EXPECT_EQ(forever.rc, kExitUsage);
  EXPECT_THAT(forever.err, HasSubstr("--timeout '9300000000000000': more than a year"));
  auto long_duration = Cli({"--state-dir", state_, "wait", "t1", "--timeout", "400d"});
  EXPECT_EQ(long_duration.rc, kExitUsage);
  EXPECT_THAT(long_duration.err, HasSubstr("--timeout '400d': more than a year"));
  auto empty_timeout = Cli({"--state-dir", state_, "wait", "t1", "--timeout", ""});
  EXPECT_EQ(empty_timeout.rc, kExitUsage);
  EXPECT_THAT(empty_timeout.err, HasSubstr("--timeout ''"));

  auto bad_env = Cli({"--state-dir", state_, "submit", "--title", "x", "--env", "1FOO=bar"});
  EXPECT_EQ(bad_env.rc, kExitUsage);
  EXPECT_THAT(bad_env.err, HasSubstr("'1FOO' is not a valid variable name"));

  std::string file = dir_.Path("forge.yaml");
  std::ofstream(file) << "workers: 1\n";
  auto not_dir = Cli({"--state-dir", file, "status"});
  EXPECT_EQ(not_dir.rc, kExitUsage);
  EXPECT_THAT(not_dir.err, HasSubstr("the state directory " + file + " is not a directory"));
  auto under_file = Cli({"--state-dir", file + "/sub", "status"});
  EXPECT_EQ(under_file.rc, kExitUsage);
  EXPECT_THAT(under_file.err, HasSubstr("the state directory " + file + "/sub is not a directory"));

  auto blank_title = Cli({"--state-dir", state_, "submit", "--title", "   "});
  EXPECT_EQ(blank_title.rc, kExitUsage);
  EXPECT_THAT(blank_title.err, HasSubstr("--title '   ' is blank"));
  auto blank_dep = Cli({"--state-dir", state_, "submit", "--title", "x", "--depends-on", ""});
  EXPECT_EQ(blank_dep.rc, kExitUsage);
  EXPECT_THAT(blank_dep.err, HasSubstr("--depends-on '': a task id must not be blank"));

  auto empty_check = Cli({"--state-dir", state_, "submit", "--title", "x", "--verify", ""});
  EXPECT_EQ(empty_check.rc, kExitUsage);
  EXPECT_THAT(empty_check.err, HasSubstr("--verify '': a check must not be empty"));

  // An empty value is refused, not read as the flag left out: a script's
  // `--repo "$REPO"` with REPO unset must not queue a task with no repository.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"submit", "--title", "x", "--repo", ""},
        {"submit", "--title", "x", "--brief", ""},
        {"submit", "--title", "x", "--model", ""},
        {"submit", "--plan", ""},
        {"ls", "--state", ""},
        {"events", "--task", ""},
        // CLI11 reads "" as 0 for a number: `--since "$SEQ"` with SEQ unset
        // replayed every event.
        {"events", "--since", ""},
        {"events", "--limit", ""},
        {"ls", "--limit", ""},
        {"submit", "--title", "x", "--priority", ""},
        {"submit", "--title", "x", "--max-attempts", ""},
        {"logs", "t1", "--attempt", ""},
        {"show", ""}}) {
    std::string flag = args[args.size() - 2].starts_with("--") ? args[args.size() - 2] : "id";
    args.insert(args.begin(), {"--state-dir", state_});
    auto empty = Cli(args);
    EXPECT_EQ(empty.rc, kExitUsage) << args[3];
    EXPECT_THAT(empty.err, HasSubstr("forge-ctl: " + flag + ": must not be empty")) << args[3];
  }
  // Past an int, or not plain decimal: named with the range (CLI11 said
  // "Could not convert", and read 0x1 as 1).
  auto huge =
      Cli({"--state-dir", state_, "submit", "--title", "x", "--max-attempts", "3000000000"});
  EXPECT_EQ(huge.rc, kExitUsage);
  EXPECT_THAT(huge.err, HasSubstr("forge-ctl: --max-attempts: must be an integer from "
                                  "1 to 2147483647, got '3000000000'"));
  auto hex = Cli({"--state-dir", state_, "logs", "t1", "--attempt", "0x1"});
  EXPECT_EQ(hex.rc, kExitUsage);
  EXPECT_THAT(hex.err, HasSubstr("--attempt: must be an integer from"));

  auto follow_json = Cli({"--state-dir", state_, "logs", "t1", "--follow", "--json"});
  EXPECT_EQ(follow_json.rc, kExitUsage);
  EXPECT_THAT(follow_json.err, HasSubstr("--json does not go with --follow"));
  auto watch_json = Cli({"--state-dir", state_, "watch", "--once", "--json"});
  EXPECT_EQ(watch_json.rc, kExitUsage);
  EXPECT_THAT(watch_json.err, HasSubstr("--json does not go with watch"));

  auto empty_equals = Cli({"--state-dir", state_, "submit", "--title", "x", "--repo="});
  EXPECT_EQ(empty_equals.rc, kExitUsage);
  EXPECT_THAT(empty_equals.err, HasSubstr("forge-ctl: --repo: must not be empty"));
  // Not the next argument taken as its value: a task that skipped approval.
  auto took_next =
      Cli({"--state-dir", state_, "submit", "--title", "x", "--model=", "--needs-approval"});
  EXPECT_EQ(took_next.rc, kExitUsage);
  EXPECT_THAT(took_next.err, HasSubstr("forge-ctl: --model: must not be empty"));
  auto empty_state_dir = Cli({"--state-dir", "", "status"});
  EXPECT_EQ(empty_state_dir.rc, kExitUsage);
  EXPECT_THAT(empty_state_dir.err, HasSubstr("--state-dir: must not be empty"));

  auto no_title = Cli({"--state-dir", state_, "submit", "--brief", "do it"});
  EXPECT_EQ(no_title.rc, kExitUsage);
  EXPECT_THAT(no_title.err, HasSubstr("--title is required"));

  auto both = Cli({"--state-dir", state_, "submit", "--title", "x", "--brief", "a", "--brief-file",
                   "/etc/hostname"});
  EXPECT_EQ(both.rc, kExitUsage);
  EXPECT_THAT(both.err, HasSubstr("mutually exclusive"));

  auto missing =
      Cli({"--state-dir", state_, "submit", "--title", "x", "--brief-file", dir_.Path("nope.md")});
  EXPECT_EQ(missing.rc, kExitUsage);
  EXPECT_THAT(missing.err, HasSubstr("nope.md"));

  // Past what a dispatch can carry: named here, not a transport error later.
  const std::string big = dir_.Path("big.md");
  std::ofstream(big) << std::string(store::kMaxBriefBytes + 1, 'b');
  auto too_big = Cli({"--state-dir", state_, "submit", "--title", "x", "--brief-file", big});
  EXPECT_EQ(too_big.rc, kExitUsage);
  EXPECT_THAT(too_big.err, HasSubstr("--brief-file '" + big +
                                     "': 2097153 bytes as sent, more than the "
                                     "2097152 a brief may be"));

  // The store refuses a NUL in a task's text: named here, at its place.
  const std::string nul = dir_.Path("nul.md");
  std::ofstream(nul) << std::string("line one\nhalf\0half\n", 20);
  auto with_nul = Cli({"--state-dir", state_, "submit", "--title", "x", "--brief-file", nul});
  EXPECT_EQ(with_nul.rc, kExitUsage);
  EXPECT_THAT(with_nul.err, HasSubstr("--brief-file '" + nul +
                                      "': contains a NUL byte (byte 0x00 at line 2, column 5)"));

  // More text than a dispatch could carry: refused before anything is sent.
  const std::string check(120'000, 'x');
  std::vector<std::string> wordy = {"--state-dir", state_, "submit", "--title", "x"};
  for (int i = 0; i < 9; ++i) wordy.insert(wordy.end(), {"--verify", check});
  auto too_wordy = Cli(wordy);
  EXPECT_EQ(too_wordy.rc, kExitUsage);
  EXPECT_THAT(too_wordy.err, HasSubstr("task #1: its text besides the brief is 1080005 bytes"));

  // A file that never ends is not read until memory runs out.
  auto endless =
      Cli({"--state-dir", state_, "submit", "--title", "x", "--brief-file", "/dev/zero"});
  EXPECT_EQ(endless.rc, kExitUsage);
  EXPECT_THAT(endless.err, HasSubstr("--brief-file '/dev/zero': is more than 8388608 bytes; no "
                                     "more is read"));

  auto attempts = Cli({"--state-dir", state_, "submit", "--title", "x", "--max-attempts", "0"});
  EXPECT_EQ(attempts.rc, kExitUsage);
  EXPECT_THAT(attempts.err,
              HasSubstr("--max-attempts: must be an integer from 1 to 2147483647, got '0'"));

  auto agent = Cli({"--state-dir", state_, "submit", "--title", "x", "--agent", "gpt"});
  EXPECT_EQ(agent.rc, kExitUsage);
  EXPECT_THAT(agent.err, HasSubstr("--agent 'gpt'"));

  auto timeout = Cli({"--state-dir", state_, "wait", "t1", "--timeout", "soon"});
  EXPECT_EQ(timeout.rc, kExitUsage);
  EXPECT_THAT(timeout.err, HasSubstr("--timeout 'soon'"));
  auto stop_timeout = Cli({"--state-dir", state_, "stop", "--timeout", "soon"});
  EXPECT_EQ(stop_timeout.rc, kExitUsage) << "checked before the supervisor is asked";
  EXPECT_THAT(stop_timeout.err, HasSubstr("--timeout 'soon'"));

  auto since = Cli({"--state-dir", state_, "stats", "--since", "5 parsecs"});
  EXPECT_EQ(since.rc, kExitUsage);
  EXPECT_THAT(since.err, HasSubstr("--since '5 parsecs'"));
  auto empty_since = Cli({"--state-dir", state_, "stats", "--since", ""});
  EXPECT_EQ(empty_since.rc, kExitUsage) << "as wait --timeout '': a bad value, not all time";
  EXPECT_THAT(empty_since.err, HasSubstr("--since ''"));
  // 0 is no window (leaving --since out is all time, which 0 silently was),
  // and past the year wait and stop take, a typo (it printed a year < 0).
  for (const char* zero : {"0", "0h", "0ms"}) {
    auto none = Cli({"--state-dir", state_, "stats", "--since", zero});
    EXPECT_EQ(none.rc, kExitUsage) << zero;
    EXPECT_EQ(none.err, "forge-ctl: --since '" + std::string(zero) +
                            "': must be more than 0 (leave --since out for all time)\n");
  }
  for (const char* huge : {"367d", "100000000d"}) {
    auto too_long = Cli({"--state-dir", state_, "stats", "--since", huge});
    EXPECT_EQ(too_long.rc, kExitUsage) << huge;
    EXPECT_EQ(too_long.err, "forge-ctl: --since '" + std::string(huge) + "': more than a year\n");
  }

  // Attempts count from 1: 0 was taken as "the latest", while -1 was refused.
  for (const char* n : {"0", "-1"}) {
    auto attempt = Cli({"--state-dir", state_, "logs", "t1", "--attempt", n});
    EXPECT_EQ(attempt.rc, kExitUsage) << n;
    EXPECT_THAT(attempt.err, HasSubstr("forge-ctl: --attempt: must be an integer from 1 to "
                                       "2147483647, got '" +
                                       std::string(n) + "'\n"));
  }

  // A number out of a flag's own range is named with that range, not its
  // type's (as --max-attempts 3000000000 was).
  struct Bounded {
    std::vector<std::string> args;
    std::string message;
  } bounded[] = {
      {{"ls", "--limit", "-1"}, "--limit: must be an integer from 0 to 2147483647, got '-1'"},
      {{"events", "--limit", "-1"}, "--limit: must be an integer from 0 to 2147483647, got '-1'"},
      {{"events", "--since", "-1"},
       "--since: must be an integer from 0 to 9223372036854775807, got '-1'"},
  };
  for (const auto& b : bounded) {
    std::vector<std::string> args = {"--state-dir", state_};
    args.insert(args.end(), b.args.begin(), b.args.end());
    auto out = Cli(args);
    EXPECT_EQ(out.rc, kExitUsage) << b.message;
    EXPECT_THAT(out.err, HasSubstr("forge-ctl: " + b.message + "\n"));
  }

  auto plan = Cli({"--state-dir", state_, "submit", "--plan", "p.yaml", "--title", "x"});
  EXPECT_EQ(plan.rc, kExitUsage);
  EXPECT_THAT(plan.err, HasSubstr("--plan cannot be combined"));
}

// A brief file or a plan that cannot be read says why: a directory was read
// as an empty brief ("is empty"), and any error of the plan's path but a
// missing file (a directory that may not be entered) read as "not found".
TEST_F(CliTest, AFileThatCannotBeReadSaysWhy) {
  const std::string dir = dir_.Path("briefs") + "/";
  std::filesystem::create_directories(dir);
  const std::string loop = dir_.Path("loop");  // stat fails with ELOOP, even for root
  std::filesystem::create_symlink("loop", loop);
  const std::string looping = std::string("cannot read: ") + std::strerror(ELOOP);
  auto brief = [&](const std::string& file) {
    return Cli({"--state-dir", state_, "submit", "--title", "x", "--brief-file", file});
  };
  auto plan = [&](const std::string& file) {
    return Cli({"--state-dir", state_, "submit", "--plan", file});
  };
  const std::vector<std::pair<struct Run, std::string>> cases = {
      {brief(dir), "forge-ctl: --brief-file '" + dir + "': is a directory\n"},
      {brief(loop), "forge-ctl: --brief-file '" + loop + "': " + looping + "\n"},
      {brief(dir_.Path("nope.md")),
       "forge-ctl: --brief-file '" + dir_.Path("nope.md") + "': not found\n"},
      {plan(dir), "forge-ctl: plan file: " + dir + ": is a directory\n"},
      {plan(loop), "forge-ctl: plan file: " + loop + ": " + looping + "\n"},
      {plan(dir_.Path("nope.yaml")),
       "forge-ctl: plan file: " + dir_.Path("nope.yaml") + ": not found\n"},
  };
  for (const auto& [run, message] : cases) {
    EXPECT_EQ(run.rc, kExitUsage) << message;
    EXPECT_EQ(run.err, message);
  }
  // A plan's brief_file the same, at its line.
  std::ofstream(dir_.Path("p.yaml")) << "tasks:\n  - {id: a, title: A, brief_file: loop}\n";
  auto in_plan = plan(dir_.Path("p.yaml"));
  EXPECT_EQ(in_plan.rc, kExitUsage);
  EXPECT_EQ(in_plan.err, "forge-ctl: " + dir_.Path("p.yaml") +
                             ":2:35: key 'tasks[0].brief_file': " + loop + ": " + looping + "\n");
  // A directory that may not be entered (root enters any).
  if (::geteuid() != 0) {
    const std::string locked = dir_.Path("locked");
    std::filesystem::create_directories(locked);
    std::ofstream(locked + "/plan.yaml") << "tasks: []\n";
    ::chmod(locked.c_str(), 0);
    auto denied = plan(locked + "/plan.yaml");
    ::chmod(locked.c_str(), 0700);
    EXPECT_EQ(denied.err, "forge-ctl: plan file: " + locked +
                              "/plan.yaml: cannot read: " + std::strerror(EACCES) + "\n");
  }
}

TEST_F(CliTest, HelpOnEveryCommandHasAnExample) {
  auto top = Cli({"--help"});
  EXPECT_EQ(top.rc, kExitOk);
  EXPECT_THAT(top.out, HasSubstr("Exit codes"));
  for (const char* cmd :
       {"status", "submit", "ls", "show", "wait", "cancel", "retry", "approve", "pause", "resume",
        "stop", "events", "logs", "stats", "doctor", "watch"}) {
    auto help = Cli({cmd, "--help"});
    EXPECT_EQ(help.rc, kExitOk) << cmd;
    EXPECT_THAT(help.out, HasSubstr("Example:\n  forge-ctl " + std::string(cmd))) << cmd;
  }
}

TEST_F(CliTest, GlobalFlagsAfterTheCommandAndNoSupervisor) {
  // --json after the command reaches the global flag; no supervisor: exit 3.
  auto submit = Cli({"submit", "--title", "x", "--json", "--state-dir", state_});
  EXPECT_EQ(submit.rc, kExitNoSupervisor) << submit.err;
  EXPECT_THAT(submit.err, HasSubstr("forge-supervisor start --state-dir " + state_));
  auto status = Cli({"status", "--state-dir", state_});
  EXPECT_EQ(status.rc, kExitNoSupervisor);
}

// A cancel's --reason is sent as its request's reason. retry and approve
// record none: they refuse --reason as any flag they do not know, rather
// than drop it.
TEST_F(CliTest, OnlyCancelTakesAReason) {
  std::filesystem::create_directories(state_);
  testing::FakeSupervisor fake(state_, [](const proto::json& r) {
    return testing::FakeSupervisor::Ok({{"id", r["id"]},
                                        {"previous_state", "pending"},
                                        {"state", "cancelled"},
                                        {"message", "cancelled"}});
  });
  auto with = Cli({"--state-dir", state_, "cancel", "t1", "--reason", "superseded by t2"});
  EXPECT_EQ(with.rc, kExitOk) << with.err;
  EXPECT_EQ(with.out, "t1: pending -> cancelled (cancelled)\n");
  auto without = Cli({"--state-dir", state_, "cancel", "t1"});
  EXPECT_EQ(without.rc, kExitOk) << without.err;
  for (const char* cmd : {"retry", "approve"}) {
    auto refused = Cli({"--state-dir", state_, cmd, "t1", "--reason", "x"});
    EXPECT_EQ(refused.rc, kExitUsage) << cmd;
    EXPECT_THAT(refused.err, HasSubstr("--reason")) << cmd;
  }
  auto requests = fake.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0]["cmd"], "cancel");
  EXPECT_EQ(requests[0]["reason"], "superseded by t2");
  EXPECT_FALSE(requests[1].contains("reason")) << "the supervisor's default, not ''";
}

// A reason that would record nothing, or that JSON cannot carry, exits 2
// before anything is sent: no supervisor runs here, and none is asked.
TEST_F(CliTest, ABadCancelReasonIsAUsageError) {
  struct Bad {
    std::vector<std::string> args;
    std::string message;
  } bad[] = {
      {{"cancel", "t1", "--reason", ""}, "forge-ctl: --reason: must not be empty\n"},
      {{"cancel", "t1", "--reason="}, "forge-ctl: --reason: must not be empty\n"},
      {{"cancel", "t1", "--reason", " \t "}, "forge-ctl: --reason ' \\t ' is blank\n"},
      {{"cancel", "t1", "--reason", "caf\xe9"},
       "forge-ctl: --reason 'caf\\xe9': not UTF-8 (byte 0xe9 at character 4)\n"},
  };
  for (const auto& b : bad) {
    std::vector<std::string> args = {"--state-dir", state_};
    args.insert(args.end(), b.args.begin(), b.args.end());
    auto out = Cli(args);
    EXPECT_EQ(out.rc, kExitUsage) << b.message;
    EXPECT_THAT(out.err, HasSubstr(b.message));
  }
  auto offline = Cli({"--state-dir", state_, "cancel", "t1", "--reason", "superseded"});
  EXPECT_EQ(offline.rc, kExitNoSupervisor) << "a cancel needs the supervisor";
  EXPECT_THAT(offline.err, HasSubstr("supervisor not running"));
}

// As typed at a shell: $'t1\xff', a Windows-1252 brief file.
TEST_F(CliTest, TextThatIsNotUtf8IsAUsageError) {
  auto show = Cli({"--state-dir", state_, "show", "t1\xff"});
  EXPECT_EQ(show.rc, kExitUsage);
  EXPECT_EQ(show.err, "forge-ctl: task id 't1\\xff': not UTF-8 (byte 0xff at character 3)\n");
  const std::string notes = dir_.Path("notes.md");
  std::ofstream(notes) << "\x93quoted\x94\n";
  auto submit = Cli({"--state-dir", state_, "submit", "--title", "x", "--brief-file", notes});
  EXPECT_EQ(submit.rc, kExitUsage);
  EXPECT_THAT(submit.err, HasSubstr("--brief-file '" + notes + "': not UTF-8 (byte 0x93"));
}

// The last resort: an exception no command expected (here from an output
// stream that throws when a write fails) ends forge-ctl with one line and
// exit 1, never with an abort.
TEST_F(CliTest, AnExceptionEscapingACommandIsOneLineAndExit1) {
  std::filesystem::create_directories(state_);
  testing::FakeSupervisor fake(state_, [](const proto::json&) {
    return testing::FakeSupervisor::Ok({{"paused", true}});
  });
  struct FailingBuf : std::streambuf {
    int_type overflow(int_type) override { return traits_type::eof(); }
  } failing;
  std::ostream out(&failing);
  out.exceptions(std::ios::badbit);
  std::ostringstream err;
  std::vector<std::string> args = {"forge-ctl", "--state-dir", state_, "pause"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int rc = RunCli(static_cast<int>(argv.size()), argv.data(), out, err);
  EXPECT_EQ(rc, kExitRejected);
  const std::string said = err.str();
  EXPECT_THAT(said, ::testing::StartsWith("forge-ctl: internal error in 'pause': "));
  EXPECT_EQ(std::count(said.begin(), said.end(), '\n'), 1) << said;
}

TEST(ResolveStateDirTest, FlagThenEnvironmentThenDotForge) {
  ::setenv("FORGE_STATE_DIR", "/tmp/from-env", 1);
  EXPECT_EQ(ResolveStateDir("/tmp/flag"), "/tmp/flag");
  EXPECT_EQ(ResolveStateDir(""), "/tmp/from-env");
  ::unsetenv("FORGE_STATE_DIR");
  EXPECT_EQ(ResolveStateDir(""), std::filesystem::current_path().string() + "/.forge");
}

TEST(ResolveStateDirTest, AHintNamesTheStateDirOnlyWhereItIsNotTheDefault) {
  ::unsetenv("FORGE_STATE_DIR");
  EXPECT_EQ(CtlCommand(ResolveStateDir("")), "forge-ctl");
  EXPECT_EQ(CtlCommand(ResolveStateDir(".forge")), "forge-ctl");
  EXPECT_EQ(CtlCommand("/srv/my forge"), "forge-ctl --state-dir '/srv/my forge'");
  ::setenv("FORGE_STATE_DIR", "/srv/forge", 1);
  EXPECT_EQ(CtlCommand("/srv/forge"), "forge-ctl");  // the same shell finds it
  const std::string dot_forge = std::filesystem::current_path().string() + "/.forge";
  EXPECT_EQ(CtlCommand(dot_forge), "forge-ctl --state-dir " + ShellQuote(dot_forge));
  ::unsetenv("FORGE_STATE_DIR");
}

TEST(ShellQuoteTest, QuotesOnlyWhenNeeded) {
  EXPECT_EQ(ShellQuote("/srv/forge/.forge"), "/srv/forge/.forge");
  EXPECT_EQ(ShellQuote("/tmp/my dir"), "'/tmp/my dir'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote(""), "''");
}

}  // namespace
}  // namespace forge::ctl
