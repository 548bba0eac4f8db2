#include "ctl/doctor.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/paths.h"
#include "common/process.h"
#include "common/workspace_paths.h"
#include "ctl/client.h"
#include "ctl/state.h"
#include "supervisor/config/config.h"
#include "supervisor/store/store.h"

namespace forge::ctl {

namespace fs = std::filesystem;

std::string_view SeverityName(Severity s) {
  switch (s) {
    case Severity::kOk:
      return "ok";
    case Severity::kWarn:
      return "warn";
    case Severity::kRed:
      return "red";
  }
  return "red";
}

namespace {

using Findings = std::vector<DoctorFinding>;

void Add(Findings& out, std::string check, Severity severity, std::string message,
         std::string fix = "") {
  out.push_back({std::move(check), severity, std::move(message), std::move(fix)});
}

std::string HumanBytes(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.0f MiB", static_cast<double>(bytes) / (1ull << 20));
  }
  return buf;
}

// The config doctor validates, and the maintenance.keep it implies.
// --config, else the one the supervisor last started with, else forge.yaml
// beside the state directory (where `start` looks by default).
std::string ConfigPath(const DoctorOptions& o) {
  if (!o.config_path.empty()) return o.config_path;
  if (auto started = StartedConfig(o.state_dir)) return *started;
  std::string beside = fs::path(o.state_dir).parent_path().string() + "/forge.yaml";
  return ::access(beside.c_str(), F_OK) == 0 ? beside : "";
}

// The PATH the running supervisor passes its children (its own, from
// /proc/PID/environ: under systemd it is not the operator's), else
// forge-ctl's, and which it is.
std::pair<std::string, std::string> AgentsPath(std::optional<pid_t> supervisor) {
  if (supervisor) {
    auto environ = ReadFile("/proc/" + std::to_string(*supervisor) + "/environ", 1u << 20);
    if (environ.ok()) {
      std::string_view all = *environ;
      for (size_t start = 0; start < all.size();) {
        size_t end = all.find('\0', start);
        if (end == std::string_view::npos) end = all.size();
        std::string_view entry = all.substr(start, end - start);
        if (entry.substr(0, 5) == "PATH=") {
          return {std::string(entry.substr(5)), "the running supervisor's"};
        }
        start = end + 1;
      }
      return {std::string(kDefaultPath), "the running supervisor's"};
    }
  }
  return {ExecPath(std::getenv("PATH")),
          "forge-ctl's: a supervisor started elsewhere (systemd) may have another"};
}

// ConfigWarnings as `agent` findings; `file` names the config ("defaults"
// for none).
void CheckAgents(const Config& config, const std::string& file, std::optional<pid_t> supervisor,
                 Findings& out) {
  auto [agents_path, whose] = AgentsPath(supervisor);
  for (const auto& warning : ConfigWarnings(config, agents_path)) {
    std::string fix =
        file == "defaults"
            ? "write a forge.yaml whose agent.command is the agent's absolute path, and start "
              "with --config"
            : "edit " + file;
    if (file != "defaults") {
      fix += supervisor ? ", then reload it: kill -HUP " + std::to_string(*supervisor)
                        : " before the start";
    }
    Add(out, "agent", Severity::kWarn, file + ": " + warning + " (PATH is " + whose + ")", fix);
  }
}

int64_t CheckConfig(const DoctorOptions& o, std::optional<pid_t> supervisor, Findings& out) {
  int64_t keep_ms = MaintenanceConfig{}.keep_ms;
  std::string path = ConfigPath(o);
  if (path.empty()) {
    // The defaults name `claude`, a bare command: the case the warning is for.
    CheckAgents(Config{}, "defaults", supervisor, out);
    Add(out, "config", Severity::kOk,
        o.config_path.empty() && StartedConfig(o.state_dir)
            ? "the supervisor last started without a config file (defaults apply; give --config "
              "to check one)"
            : "no forge.yaml beside the state directory (defaults apply; give --config to check "
              "one)");
    return keep_ms;
  }
  auto config = LoadConfig(path);
  if (!config.ok()) {
    Add(out, "config", Severity::kRed, config.error().message,
        "edit " + path + ", then: forge-supervisor check-config --config " + ShellQuote(path));
    return keep_ms;
  }
  Add(out, "config", Severity::kOk, path + " is valid");
  CheckAgents(*config, path, supervisor, out);
  return config->maintenance.keep_ms;
}

void CheckDisk(const DoctorOptions& o, Findings& out) {
  struct statvfs st {};
  if (::statvfs(o.state_dir.c_str(), &st) != 0) {
    Add(out, "disk", Severity::kRed, "cannot statvfs " + o.state_dir,
        "mkdir -p " + ShellQuote(o.state_dir));
    return;
  }
  uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  uint64_t total = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  std::string msg =
      HumanBytes(free_bytes) + " free of " + HumanBytes(total) + " for " + o.state_dir;
  std::string fix = "free space on that filesystem: old attempt logs are in " +
                    ShellQuote(LogsDir(o.state_dir)) +
                    " (maintenance.keep_logs), settled workspaces in " +
                    ShellQuote(o.state_dir + "/workspaces") + " (maintenance.keep)";
  if (free_bytes < o.red_bytes) {
    Add(out, "disk", Severity::kRed, msg, fix);
  } else if (free_bytes < o.warn_bytes) {
    Add(out, "disk", Severity::kWarn, msg, fix);
  } else {
    Add(out, "disk", Severity::kOk, msg);
  }
}

// The fix for a database SQLite cannot read as one.
std::string RecoverFix(const std::string& db) {
  return "stop the supervisor, then: sqlite3 " + ShellQuote(db) + " '.recover' | sqlite3 " +
         ShellQuote(db + ".recovered") + " (or restore the last backup)";
}

void CheckIntegrity(store::Store& store, Findings& out, const std::string& db) {
  auto result = store.IntegrityCheck();
  if (!result.ok()) {
    Add(out, "database", Severity::kRed, result.error().message);
  } else if (*result != "ok") {
    Add(out, "database", Severity::kRed, "integrity check: " + *result, RecoverFix(db));
  } else {
    Add(out, "database", Severity::kOk,
        "integrity ok, schema " + std::to_string(store.SchemaVersion()) + " (" + db + ")");
  }
}

// status reads per-state counts kept by triggers; a drift would show wrong
// queue sizes, so compare them with the table.
void CheckCounts(store::Store& store, Findings& out, const std::string& db) {
  auto mismatches = store.CountMismatches();
  if (!mismatches.ok()) {
    Add(out, "counts", Severity::kRed, mismatches.error().message);
  } else if (!mismatches->empty()) {
    std::string all;
    for (const auto& m : *mismatches) all += (all.empty() ? "" : "; ") + m;
    Add(out, "counts", Severity::kRed, "per-state task counts differ from the tasks table: " + all,
        "stop the supervisor, then: sqlite3 " + ShellQuote(db) +
            " 'DELETE FROM task_counts; INSERT INTO task_counts SELECT state, COUNT(*) FROM "
            "tasks GROUP BY state'");
  } else {
    Add(out, "counts", Severity::kOk, "per-state task counts match the tasks table");
  }
}

void CheckReplay(store::Store& store, const std::string& ctl, Findings& out) {
  // One snapshot for both: a live supervisor's commit between the two reads
  // would show as a mismatch, with a fix that cancels a healthy task.
  Result<std::map<std::string, proto::TaskState>> replay =
      MakeError(ErrorCode::kInternal, "not read");
  Result<std::vector<proto::TaskInfo>> tasks = MakeError(ErrorCode::kInternal, "not read");
  Status read = store.ReadConsistently([&] {
    replay = store.ReplayStates();
    tasks = store.ListTasks(store::ListFilter{});
    return Status::Ok();
  });
  if (!read.ok() || !replay.ok() || !tasks.ok()) {
    Add(out, "replay", Severity::kRed,
        (!read.ok()     ? read.error()
         : !replay.ok() ? replay.error()
                        : tasks.error())
            .message);
    return;
  }
  int bad = 0;
  std::set<std::string> seen;
  for (const auto& t : *tasks) {
    seen.insert(t.id);
    auto it = replay->find(t.id);
    std::string table(proto::StateName(t.state));
    if (it == replay->end()) {
      ++bad;
      Add(out, "replay", Severity::kRed,
          "task " + t.id + " is " + table + " but the event log has no events for it",
          ctl + " cancel " + t.id + "  (records an event; or restore the last backup)");
    } else if (it->second != t.state) {
      ++bad;
      std::string replayed(proto::StateName(it->second));
      Add(out, "replay", Severity::kRed,
          "task " + t.id + ": the tasks table says " + table + ", the event log replays to " +
              replayed,
          proto::IsSettled(t.state)
              ? ctl + " retry " + t.id + "  (re-runs it from a recorded state)"
              : ctl + " cancel " + t.id + " && " + ctl + " retry " + t.id);
    }
  }
  for (const auto& [id, state] : *replay) {
    if (seen.count(id)) continue;
    ++bad;
    Add(out, "replay", Severity::kRed,
        "the event log has task " + id + " (" + std::string(proto::StateName(state)) +
            ") but the tasks table does not",
        "restore the database from the last backup (see docs/operations.md)");
  }
  if (bad == 0) {
    Add(out, "replay", Severity::kOk,
        "the event log replays to the state of all " + std::to_string(tasks->size()) + " tasks");
  }
}

void CheckOpenAttempts(store::Store& store, const DoctorOptions& o, bool running, Findings& out) {
  auto open = store.OpenAttempts();
  if (!open.ok()) {
    Add(out, "attempts", Severity::kRed, open.error().message);
    return;
  }
  if (running || open->empty()) {
    Add(out, "attempts", Severity::kOk,
        std::to_string(open->size()) + " open attempt(s)" +
            (open->empty() ? "" : ", owned by the running supervisor"));
    return;
  }
  for (const auto& a : *open) {
    std::string what = "attempt " + std::to_string(a.n) + " of task " + a.task_id +
                       " is open but no supervisor runs";
    if (a.agent_pid > 0 && IsSameProcess(static_cast<pid_t>(a.agent_pid), a.agent_start_time)) {
      int64_t group = a.agent_pgid > 0 ? a.agent_pgid : a.agent_pid;
      Add(out, "attempts", Severity::kRed,
          what + "; its agent (pid " + std::to_string(a.agent_pid) + ") is still running",
          "kill -TERM -- -" + std::to_string(group) + "; then " + StartCommand(o.state_dir));
    } else if (auto task = store.GetTask(a.task_id);
               task.ok() && task->state == proto::TaskState::kReviewing && task->kind != "expand" &&
               fs::is_directory(TaskWorkspacePath(o.state_dir, task->id, task->repo))) {
      // Its agent passed: a stop leaves it so (attempt.review_postponed),
      // and so does a crash during its review. Nothing is wrong. The same
      // conditions as Supervisor::ReviewAfterRestart's (not its bound of
      // three crashes): without its workspace, or an expand task's, the
      // start closes it `recovered`, as below.
      Add(out, "attempts", Severity::kOk,
          "attempt " + std::to_string(a.n) + " of task " + a.task_id +
              " passed its agent and waits for its review: the next start reviews it "
              "(the agent does not run again)");
    } else {
      Add(out, "attempts", Severity::kRed, what + " and its agent is gone",
          StartCommand(o.state_dir) + "  (closes it as recovered and requeues the task)");
    }
  }
}

// The repository a worktree belongs to, from its .git file ("gitdir: R/.git/worktrees/X").
std::string WorktreeRepo(const fs::path& dir) {
  std::ifstream in(dir / ".git");
  std::string line;
  if (!std::getline(in, line) || line.rfind("gitdir: ", 0) != 0) return "";
  std::string gitdir = line.substr(8);
  auto pos = gitdir.find("/.git/worktrees/");
  return pos == std::string::npos ? "" : gitdir.substr(0, pos);
}

// With the workspace's lock file (<dir>.lock, worker/workspace_lock.h).
std::string RemoveCommand(const fs::path& dir, bool worktree) {
  std::string repo = worktree ? WorktreeRepo(dir) : "";
  std::string lock = " && rm -f " + ShellQuote(dir.string() + ".lock");
  if (!repo.empty()) {
    return "git -C " + ShellQuote(repo) + " worktree remove --force " + ShellQuote(dir.string()) +
           lock;
  }
  return "rm -rf " + ShellQuote(dir.string()) + lock;
}

void CheckWorkspaces(store::Store* store, const DoctorOptions& o, int64_t keep_ms, Findings& out) {
  int orphans = 0, total = 0;
  for (const char* sub : {"worktrees", "workspaces"}) {
    fs::path root = fs::path(o.state_dir) / sub;
    std::error_code ec;
    if (!fs::is_directory(root, ec)) continue;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      if (!entry.is_directory(ec)) continue;
      ++total;
      std::string id = entry.path().filename().string();
      bool worktree = std::string(sub) == "worktrees";
      if (!store) continue;
      auto task = store->GetTask(id);
      if (!task.ok()) {
        if (task.error().code != ErrorCode::kNotFound) continue;
        ++orphans;
        Add(out, "workspaces", Severity::kWarn, entry.path().string() + " belongs to no task",
            RemoveCommand(entry.path(), worktree));
      } else if (proto::IsSettled(task->state) && task->finished_at_ms > 0 &&
                 o.now_ms - task->finished_at_ms > keep_ms) {
        ++orphans;
        Add(out, "workspaces", Severity::kWarn,
            entry.path().string() + ": task " + id + " is " +
                std::string(proto::StateName(task->state)) + " since " +
                RelativeTime(o.now_ms, task->finished_at_ms) + ", past maintenance.keep",
            RemoveCommand(entry.path(), worktree));
      }
    }
  }
  if (orphans == 0) {
    Add(out, "workspaces", Severity::kOk, std::to_string(total) + " workspace(s), none orphaned");
  }
}

// The lock says a supervisor runs; whether it does its job shows in whether
// it answers. A hung one keeps the lock, so nothing restarts it but this.
void AddSupervisorAnswer(Findings& out, const DoctorOptions& o, pid_t pid) {
  const std::string running = "running, pid " + std::to_string(pid);
  auto client = ControlClient::Connect(o.state_dir, o.answer_timeout_ms);
  auto answer = client.ok() ? (*client)->Call("status") : Result<proto::json>(client.error());
  if (answer.ok()) {
    Add(out, "supervisor", Severity::kOk, running + ", answering");
  } else if (answer.error().code == ErrorCode::kTimeout) {
    const std::string p = std::to_string(pid);
    Add(out, "supervisor", Severity::kRed,
        running + " (it holds the lock) but " + answer.error().message,
        "kill -TERM " + p + " (kill -KILL " + p +
            " if still there after the shutdown grace), "
            "then " +
            StartCommand(o.state_dir) + "; the start recovers what was running");
  } else {
    Add(out, "supervisor", Severity::kWarn, running + " but " + answer.error().message);
  }
}

}  // namespace

std::vector<DoctorFinding> RunDoctor(const DoctorOptions& o) {
  Findings out;
  auto pid = SupervisorPid(o.state_dir);
  if (!pid) {
    Add(out, "supervisor", Severity::kOk,
        "not running (start it with: " + StartCommand(o.state_dir) + ")");
  } else {
    AddSupervisorAnswer(out, o, *pid);
  }
  const std::string db = DbPath(o.state_dir);
  std::unique_ptr<store::Store> store;
  auto opened = OpenStoreReadOnly(o.state_dir);
  if (!opened.ok() && opened.error().code == ErrorCode::kNotFound) {
    Add(out, "database", Severity::kWarn, opened.error().message,
        StartCommand(o.state_dir) + "  (creates it)");
  } else if (!opened.ok()) {
    // There is a file, and starting the supervisor would not replace it.
    Add(out, "database", Severity::kRed, opened.error().message,
        ::access(db.c_str(), R_OK) != 0
            ? "run forge-ctl as the user who owns " + db + " (it cannot be read)"
            : RecoverFix(db));
  } else {
    store = std::move(opened).value();
    CheckIntegrity(*store, out, db);
    CheckCounts(*store, out, db);
    CheckReplay(*store, CtlCommand(o.state_dir), out);
    CheckOpenAttempts(*store, o, pid.has_value(), out);
  }
  int64_t keep_ms = CheckConfig(o, pid, out);
  CheckWorkspaces(store.get(), o, keep_ms, out);
  CheckDisk(o, out);
  return out;
}

std::string RenderDoctor(const std::vector<DoctorFinding>& findings, const Style& style) {
  std::ostringstream out;
  int red = 0, warn = 0;
  for (const auto& f : findings) {
    Color color = f.severity == Severity::kRed    ? Color::kRed
                  : f.severity == Severity::kWarn ? Color::kYellow
                                                  : Color::kGreen;
    std::string mark = f.severity == Severity::kRed    ? "RED "
                       : f.severity == Severity::kWarn ? "WARN"
                                                       : "ok  ";
    std::string check = f.check;
    check.resize(std::max<size_t>(check.size(), 11), ' ');
    out << Paint(mark, color, style) << "  " << check << "  " << f.message << "\n";
    if (!f.fix.empty()) out << std::string(19, ' ') << "fix: " << f.fix << "\n";
    red += f.severity == Severity::kRed;
    warn += f.severity == Severity::kWarn;
  }
  out << "\n" << red << " red, " << warn << " warning(s)\n";
  return out.str();
}

proto::json DoctorJson(const std::vector<DoctorFinding>& findings) {
  proto::json list = proto::json::array();
  bool ok = true;
  for (const auto& f : findings) {
    ok &= f.severity != Severity::kRed;
    list.push_back({{"check", f.check},
                    {"severity", std::string(SeverityName(f.severity))},
                    {"message", f.message},
                    {"fix", f.fix}});
  }
  return {{"ok", ok}, {"findings", list}};
}

int CmdDoctor(Env& env) {
  DoctorOptions options;
  options.state_dir = env.state_dir;
  options.config_path = env.config_path;
  options.now_ms = env.clock->WallMs();
  options.answer_timeout_ms = env.timeout_ms;
  auto findings = RunDoctor(options);
  if (env.json) {
    *env.out << DoctorJson(findings).dump(2, ' ', false, proto::json::error_handler_t::replace)
             << "\n";
  } else {
    *env.out << RenderDoctor(findings, env.style);
  }
  for (const auto& f : findings) {
    if (f.severity == Severity::kRed) return kExitRejected;
  }
  return kExitOk;
}

}  // namespace forge::ctl
