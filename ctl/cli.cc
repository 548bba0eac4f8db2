#include "ctl/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdlib>

#include "common/cli_usage.h"
#include "common/duration.h"
#include "common/utf8.h"
#include "ctl/client.h"
#include "ctl/commands.h"
#include "ctl/doctor.h"
#include "ctl/stats.h"
#include "ctl/terminal.h"
#include "ctl/watch.h"

namespace forge::ctl {

namespace {

std::string Example(const std::string& lines) {
  return "\nExample:\n" + lines;
}

// The longest duration a flag takes (wait and stop --timeout, stats
// --since): more is a typo, and as seconds its milliseconds could overflow.
constexpr double kMaxSeconds = 366.0 * 24 * 3600;

// "90" (seconds), "1.5" (seconds) or a duration ("10m", "2h").
Result<int64_t> ParseSeconds(const std::string& text, const std::string& flag) {
  auto too_long = [&] {
    return MakeError(ErrorCode::kInvalid, flag + " '" + text + "': more than a year");
  };
  if (!text.empty() && text.find_first_not_of("0123456789.") == std::string::npos) {
    char* end = nullptr;
    double secs = std::strtod(text.c_str(), &end);
    if (end && *end == '\0') {
      if (secs > kMaxSeconds) return too_long();
      return static_cast<int64_t>(secs * 1000);
    }
  }
  auto d = ParseDuration(text);
  if (!d.ok())
    return MakeError(ErrorCode::kInvalid, flag + " '" + text + "': " + d.error().message);
  if (static_cast<double>(d->count()) > kMaxSeconds * 1000) return too_long();
  return static_cast<int64_t>(d->count());
}

struct Flags {
  std::string state_dir;
  bool json = false;
  bool wide = false;
  bool no_color = false;
  std::string config;
  SubmitArgs submit;
  ListArgs list;
  std::string id;
  std::vector<std::string> ids;
  std::string timeout;
  std::string reason;
  StopArgs stop;
  EventsArgs events;
  LogsArgs logs;
  std::string since;
  bool once = false;
};

// RunCli without its last resort; *command is set once the command is known.
int Run(int argc, char** argv, std::ostream& out, std::ostream& err, std::string* command) {
  Flags f;
  CLI::App app{"forge-ctl: see and steer a Forge supervisor and its queue", "forge-ctl"};
  app.set_version_flag("--version", FORGE_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global flags may come after the command: forge-ctl ls --json
  app.add_option("--state-dir", f.state_dir,
                 "state directory (default: $FORGE_STATE_DIR, else ./.forge)")
      ->check(NonEmpty());
  app.add_flag("--json", f.json, "machine-readable output (field names: docs/cli.md)");
  app.add_flag("--wide", f.wide, "never shorten titles or errors to the terminal width");
  app.add_flag("--no-color", f.no_color, "no colour even on a terminal (so does NO_COLOR)");
  app.footer(
      "Exit codes: 0 ok, 1 rejected / not found, 2 usage, 3 supervisor not running, 124 wait "
      "timed out.\nRun 'forge-ctl COMMAND --help' for a command's flags and an example.");

  auto* status = app.add_subcommand("status", "supervisor, children, pauses, queue, cost today");
  status->footer(Example("  forge-ctl status\n  forge-ctl status --json | jq .queue"));

  auto* submit = app.add_subcommand("submit", "queue a task (or a YAML plan of tasks)");
  auto& s = f.submit;
  submit->add_option("--title", s.title, "one-line title (required unless --plan)")
      ->check(NonEmpty());
  submit->add_option("--brief", s.brief, "what the agent must do (default: the title)")
      ->check(NonEmpty());
  submit->add_option("--brief-file", s.brief_file, "read the brief from a file")->check(NonEmpty());
  submit->add_option("--repo", s.repo, "git repository to work in (a worktree is made per task)")
      ->check(NonEmpty());
  submit->add_option("--base", s.base, "base branch or commit in --repo")->check(NonEmpty());
  submit->add_option("--verify", s.verify, "shell command that must pass (repeatable)")
      ->take_last()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  submit->add_option("--depends-on", s.depends_on, "task id that must be done first (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  submit->add_option("--priority", s.priority, "higher runs first (default 0)")
      ->check(NonEmpty())
      ->check(IntegerIn(INT32_MIN, INT32_MAX));
  submit->add_option("--max-attempts", s.max_attempts, "attempts before blocking (default: config)")
      ->check(NonEmpty())
      ->check(IntegerIn(1, INT32_MAX));
  submit->add_flag("--needs-approval", s.needs_approval,
                   "wait for forge-ctl approve before running");
  submit->add_flag("--allow-empty", s.allow_empty, "a pass may change no files");
  submit->add_option("--env", s.env, "K=V for the agent's environment (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false);
  submit->add_option("--agent", s.agent, "agent profile: claude | codex | command")
      ->check(NonEmpty());
  submit->add_option("--model", s.model, "model override")->check(NonEmpty());
  submit->add_flag("--expand", s.expand, "a planning task whose result is a plan of new tasks");
  submit->add_option("--plan", s.plan, "submit a YAML plan file, all tasks or none")
      ->check(NonEmpty());
  submit
      ->add_option("--idempotency-key", s.idempotency_key,
                   "submit at most once under this key: a retry prints the first ids")
      ->check(NonEmpty());
  submit->footer(Example(
      "  forge-ctl submit --title 'Fix the flaky test' --repo ~/src/app --verify 'make test'\n"
      "  forge-ctl submit --plan plan.yaml --json"));

  auto* ls = app.add_subcommand("ls", "list tasks, newest first");
  ls->add_option("--state", f.list.state,
                 "only tasks in this state (pending ready running reviewing cooldown done blocked "
                 "cancelled)")
      ->check(NonEmpty());
  ls->add_option("--limit", f.list.limit, "at most N tasks (0: all of them)")
      ->check(NonEmpty())
      ->check(IntegerIn(0, INT32_MAX));
  ls->footer(Example("  forge-ctl ls --state blocked"));

  auto* show = app.add_subcommand("show", "a task: fields, attempts ledger, review, timeline");
  show->add_option("id", f.id, "task id")->check(NonEmpty())->required();
  show->footer(Example("  forge-ctl show t12"));

  auto* wait = app.add_subcommand("wait",
                                  "wait until tasks are done (exit 0), one ends otherwise "
                                  "(1), or the timeout (124)");
  wait->add_option("ids", f.ids, "task ids")->check(NonEmpty())->required();
  wait->add_option("--timeout", f.timeout,
                   "seconds, or a duration such as 10m; 0 looks once (default: none)");
  wait->footer(Example("  forge-ctl wait t12 t13 --timeout 30m && echo all done"));

  const char* change_help[][2] = {{"cancel", "cancel a task (kills its running attempt)"},
                                  {"retry", "put a blocked or cancelled task back in the queue"},
                                  {"approve", "let a --needs-approval task run"}};
  std::map<std::string, CLI::App*> changes;
  for (auto& [name, help] : change_help) {
    auto* sub = app.add_subcommand(name, help);
    sub->add_option("id", f.id, "task id")->check(NonEmpty())->required();
    sub->footer(Example(std::string("  forge-ctl ") + name + " t12"));
    changes[name] = sub;
  }
  // Only a cancel records why; a retry or an approval refuses --reason as
  // any unknown option, rather than dropping it.
  changes["cancel"]
      ->add_option("--reason", f.reason,
                   "why: shown by show, wait, ls --json and the task.cancelled event (default: "
                   "cancelled by operator)")
      ->check(NonEmpty());
  changes["cancel"]->footer(
      Example("  forge-ctl cancel t12\n  forge-ctl cancel t12 --reason 'superseded by t14'"));

  auto* pause = app.add_subcommand("pause", "stop dispatching new attempts (running ones go on)");
  pause->add_option("--reason", f.reason, "shown in status");
  pause->footer(Example("  forge-ctl pause --reason 'upgrading the repo'"));
  auto* resume =
      app.add_subcommand("resume", "lift the pauses: operator, circuit breaker, rate limit");
  resume->footer(Example("  forge-ctl resume"));
  auto* stop = app.add_subcommand(
      "stop",
      "shut the supervisor down gracefully and wait until it has exited (124: it has not "
      "by the timeout)");
  stop->add_flag("--no-wait", f.stop.no_wait, "return once the supervisor has been asked");
  stop->add_option("--timeout", f.timeout,
                   "seconds, or a duration such as 2m (default: its shutdown grace + kill grace "
                   "+ 5s)");
  stop->footer(Example("  forge-ctl stop && forge-supervisor start"));

  auto* events = app.add_subcommand("events", "the event log (one line per event)");
  events->add_flag("-f,--follow", f.events.follow, "keep printing new events as they commit");
  events
      ->add_option("--since", f.events.since,
                   "only events with seq > SEQ (with --limit: the first N of them)")
      ->check(NonEmpty())
      ->check(IntegerIn(0, INT64_MAX));
  events->add_option("--task", f.events.task_id, "only this task's events")->check(NonEmpty());
  events->add_option("--kind", f.events.kind, "only this kind, or a prefix ending in '.' (task.)")
      ->check(NonEmpty());
  events
      ->add_option("--limit", f.events.limit,
                   "the newest N events, oldest first (tail -n N; with --follow, then every "
                   "new one); with --since, the first N after SEQ; 0: no limit")
      ->check(NonEmpty())
      ->check(IntegerIn(0, INT32_MAX));
  events->footer(
      Example("  forge-ctl events --limit 20\n"
              "  forge-ctl events --follow --kind attempt.\n"
              "  forge-ctl events --since 120 --limit 1000 --json"));

  auto* logs = app.add_subcommand("logs", "an attempt's agent output (--review: its checks')");
  logs->add_option("id", f.logs.id, "task id")->check(NonEmpty())->required();
  logs->add_option("--attempt", f.logs.attempt, "attempt number (default: the latest)")
      ->check(NonEmpty())
      ->check(IntegerIn(1, INT32_MAX));
  logs->add_flag("-f,--follow", f.logs.follow,
                 "keep printing as it grows (and the next attempts' logs) until the task settles");
  logs->add_flag("--review", f.logs.review,
                 "the attempt's review log instead: its checks' output and the critic agent's");
  logs->footer(Example("  forge-ctl logs t12 --follow\n  forge-ctl logs t12 --review"));

  auto* stats = app.add_subcommand("stats", "outcomes, success rate, durations, cost, failures");
  stats->add_option("--since", f.since, "only the last DURATION (e.g. 24h, 7d)");
  stats->footer(Example("  forge-ctl stats --since 24h"));

  auto* doctor =
      app.add_subcommand("doctor", "check the state directory; each problem with its fix");
  doctor->add_option("--config", f.config, "forge.yaml to validate (default: beside the state dir)")
      ->check(NonEmpty());
  doctor->footer(Example("  forge-ctl doctor || echo 'something is red'"));

  auto* watch = app.add_subcommand("watch", "live full-screen view; q quits");
  watch->add_flag("--once", f.once, "print one frame and exit");
  watch->footer(Example("  forge-ctl watch"));

  try {
    RefuseEmptyEqualsValues(argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help, --version
      app.exit(e, out, err);
      return kExitOk;
    }
    err << "forge-ctl: " << UsageError(app, e) << "\n";
    err << "Run 'forge-ctl --help' or 'forge-ctl COMMAND --help' for usage.\n";
    return kExitUsage;
  }
  for (const CLI::App* sub : app.get_subcommands()) *command = sub->get_name();

  // On a terminal nothing a task, an agent or a check wrote can control it
  // (ctl/terminal.h). `logs` prints the agent's output as it was, as `tail`
  // would.
  TerminalSafeBuf out_buf(out.rdbuf()), err_buf(err.rdbuf());
  std::ostream safe_out(&out_buf), safe_err(&err_buf);
  Env env;
  env.state_dir = ResolveStateDir(f.state_dir);
  env.out = ::isatty(STDOUT_FILENO) == 1 && !logs->parsed() ? &safe_out : &out;
  env.err = ::isatty(STDERR_FILENO) == 1 ? &safe_err : &err;
  env.json = f.json;
  env.style.color = !f.no_color && WantColor(STDOUT_FILENO);
  env.style.wide = f.wide;
  env.style.width = f.wide ? 0 : TerminalWidth(STDOUT_FILENO);
  env.style.ctl = CtlCommand(env.state_dir);
  env.config_path = f.config;
  if (auto access = CheckStateDirAccess(env.state_dir); !access.ok()) {
    if (access.error().code == ErrorCode::kInvalid) return Usage(env, access.error().message);
    return Fail(env, access.error());
  }

  if (status->parsed()) return CmdStatus(env);
  if (submit->parsed()) return CmdSubmit(env, f.submit);
  if (ls->parsed()) return CmdList(env, f.list);
  if (show->parsed()) return CmdShow(env, f.id);
  if (wait->parsed()) {
    std::optional<int64_t> timeout_ms;  // 0: look once
    if (wait->count("--timeout") > 0) {
      auto t = ParseSeconds(f.timeout, "--timeout");
      if (!t.ok()) return Usage(env, t.error().message);
      timeout_ms = *t;
    }
    return CmdWait(env, f.ids, timeout_ms);
  }
  for (auto& [name, sub] : changes) {
    if (sub->parsed()) return CmdChange(env, name, f.id, f.reason);
  }
  if (pause->parsed()) return CmdPause(env, f.reason);
  if (resume->parsed()) return CmdResume(env);
  if (stop->parsed()) {
    if (stop->count("--timeout") > 0) {
      auto t = ParseSeconds(f.timeout, "--timeout");
      if (!t.ok()) return Usage(env, t.error().message);
      f.stop.timeout_ms = *t;
    }
    return CmdStop(env, f.stop);
  }
  if (events->parsed()) return CmdEvents(env, f.events);
  if (logs->parsed()) return CmdLogs(env, f.logs);
  if (stats->parsed()) {
    int64_t window_ms = 0;  // all time
    // Given, it is a window: empty or 0 is a bad value, not "all time"
    // (which is leaving it out), and more than a year a typo (a window
    // past year 0 printed as a negative year).
    if (stats->count("--since") > 0) {
      auto d = ParseDuration(f.since);
      if (!d.ok()) return Usage(env, "--since '" + f.since + "': " + d.error().message);
      if (d->count() == 0) {
        return Usage(
            env, "--since '" + f.since + "': must be more than 0 (leave --since out for all time)");
      }
      if (static_cast<double>(d->count()) > kMaxSeconds * 1000) {
        return Usage(env, "--since '" + f.since + "': more than a year");
      }
      window_ms = d->count();
    }
    return CmdStats(env, window_ms);
  }
  if (doctor->parsed()) return CmdDoctor(env);
  if (watch->parsed()) return CmdWatch(env, f.once);
  return Usage(env, "no command given");
}

}  // namespace

int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err) {
  // The last resort: whatever a command did not expect (a library's
  // exception) ends it with one line and exit 1, never with an abort.
  std::string command;
  auto internal = [&](std::string_view what) {
    err << "forge-ctl: internal error" << (command.empty() ? "" : " in '" + command + "'") << ": "
        << ShowBytes(what, 500) << "\n";
    err.flush();
    return kExitRejected;
  };
  try {
    return Run(argc, argv, out, err, &command);
  } catch (const std::exception& e) {
    return internal(e.what());
  } catch (...) {
    return internal("unknown exception");
  }
}

}  // namespace forge::ctl
