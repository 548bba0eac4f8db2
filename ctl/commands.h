// The forge-ctl commands, one function each. They write to the streams in
// Env and return the process exit code (state.h), so tests call them
// directly; main.cc only parses arguments and fills Env and the Args structs.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/git.h"
#include "ctl/render.h"
#include "ctl/source.h"
#include "ctl/state.h"

namespace forge::ctl {

struct Env {
  std::string state_dir;  // resolved (ResolveStateDir)
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  bool json = false;
  Style style;
  const Clock* clock = &SystemClock::Get();
  int64_t timeout_ms = 10000;  // per control request
  int64_t poll_ms = 250;       // follow/wait: longest pause between two queries
  // Follow loops (events/logs --follow, wait, watch) end when this returns
  // true; checked at least every poll_ms. Unset: never (until a signal).
  std::function<bool()> stop;
  std::string config_path;  // --config (doctor)
  // How git runs for submit's repo and base checks; tests count its calls.
  GitRunner git = BlockingGitRunner();
};

// Prints "forge-ctl: <message>" to env.err and returns the exit code for the
// error: 3 for kUnavailable (no supervisor), 1 otherwise.
int Fail(Env& env, const Error& error);
int Usage(Env& env, const std::string& message);
// What a read-only command reports when OpenStoreReadOnly failed with no
// supervisor running: for a missing database, kUnavailable (exit 3) with
// the command that starts one; any other error as it is.
Error NoSupervisorNorDatabase(const std::string& state_dir, const Error& open_error);

// The supervisor's data when one runs, else the database read-only with the
// one-line notice on env.err. kUnavailable when neither exists.
Result<std::unique_ptr<Source>> OpenReadSource(Env& env);
// A control client, or kUnavailable naming the command that starts the
// supervisor. timeout_ms: per request (0: env.timeout_ms).
Result<std::unique_ptr<ControlClient>> RequireSupervisor(Env& env, int64_t timeout_ms = 0);

int CmdStatus(Env& env);

struct SubmitArgs {
  std::string title;
  std::string brief;
  std::string brief_file;
  std::string repo;
  std::string base;
  std::vector<std::string> verify;
  std::vector<std::string> depends_on;
  std::optional<int> priority;
  std::optional<int> max_attempts;
  bool needs_approval = false;
  bool allow_empty = false;
  std::vector<std::string> env;  // "K=V"
  std::string agent;
  std::string model;
  bool expand = false;
  std::string plan;  // --plan FILE
  // --idempotency-key: a retry with the same key and tasks gets the first
  // submit's ids back instead of queueing them again (with flags or --plan).
  std::optional<std::string> idempotency_key;
};
// Checks the flags and builds the task (kInvalid naming the bad flag).
Result<proto::SubmitTask> BuildSubmitTask(const SubmitArgs& args);
int CmdSubmit(Env& env, const SubmitArgs& args);

struct ListArgs {
  std::string state;  // empty: all
  int limit = 0;
};
int CmdList(Env& env, const ListArgs& args);
int CmdShow(Env& env, const std::string& id);

// Exit 0 when every task is done, 1 as soon as one ends otherwise (blocked or
// cancelled), 124 when timeout_ms passes first (0: after the first look;
// nullopt: never).
int CmdWait(Env& env, const std::vector<std::string>& ids, std::optional<int64_t> timeout_ms);

// cancel | retry | approve. reason: a cancel's (empty: the supervisor's
// "cancelled by operator").
int CmdChange(Env& env, const std::string& cmd, const std::string& id,
              const std::string& reason = "");
int CmdPause(Env& env, const std::string& reason);
int CmdResume(Env& env);
// Asks the supervisor to stop, then waits until it has exited (its lock is
// free), as systemctl stop does: exit 0 once it has, 124 when it still runs
// after timeout_ms (default: the longest its shutdown can take, which the
// reply gives, plus kStopMarginMs). no_wait returns after the request.
inline constexpr int64_t kStopMarginMs = 5'000;
struct StopArgs {
  bool no_wait = false;
  std::optional<int64_t> timeout_ms;
};
int CmdStop(Env& env, const StopArgs& args = {});

struct EventsArgs {
  bool follow = false;
  // Given: the first `limit` events after it. Not given: the newest `limit`
  // (tail -n), then with --follow every new one.
  std::optional<int64_t> since;
  std::string task_id;
  std::string kind;
  int limit = 0;  // 0: all (without --follow)
};
int CmdEvents(Env& env, const EventsArgs& args);

struct LogsArgs {
  std::string id;
  std::optional<int> attempt;  // unset: the latest (attempts count from 1)
  bool follow = false;
  bool review = false;  // the review log (checks, critic agent), not the agent's
};
int CmdLogs(Env& env, const LogsArgs& args);

// Waits up to timeout_ms for something in dir (or the file path) to change;
// inotify, so a follower wakes as soon as the supervisor writes.
void WaitForChange(const std::string& path, int64_t timeout_ms);

}  // namespace forge::ctl
