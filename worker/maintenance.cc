#include "worker/maintenance.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/clock.h"
#include "common/process.h"
#include "worker/workspace.h"
#include "worker/workspace_lock.h"

namespace forge::worker {
namespace {

namespace fs = std::filesystem;

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.size() > 400) s = "..." + s.substr(s.size() - 400);
  return s;
}

// git with the worker's environment; errors carry git's own words.
Status Git(const std::string& repo, std::vector<std::string> args) {
  SpawnOptions o;
  o.argv = {"git", "-C", repo};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.env = CurrentEnvironment();
  o.stderr_mode = Stdio::kPipe;
  std::string what = "git -C " + repo;
  for (const auto& a : args) what += " " + a;
  auto run = RunCommand(o, kMaintenanceGitTimeoutMs, 64 << 10);
  if (!run.ok()) return run.error().Wrap(what);
  if (run->timed_out) {
    return MakeError(ErrorCode::kTimeout, what + " took longer than " +
                                              std::to_string(kMaintenanceGitTimeoutMs / 1000) +
                                              " s and was killed");
  }
  if (!run->status.success()) {
    return MakeError(ErrorCode::kIo,
                     what + ": " + run->status.ToString() + ": " + Trimmed(run->output));
  }
  return Status::Ok();
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return MakeError(ErrorCode::kIo, "removing '" + path + "': " + ec.message());
  return Status::Ok();
}

Status RemoveWorkspaceTree(const proto::MaintainEntry& e, bool existed) {
  if (e.repo.empty()) return existed ? RemoveTree(e.path) : Status::Ok();
  if (existed) {
    Status git = Git(e.repo, {"worktree", "remove", "--force", e.path});
    if (!git.ok()) {
      // Not a worktree git knows (made by hand, metadata pruned, repo moved):
      // the directory is still ours to remove.
      spdlog::warn("maintenance: {}; removing the directory instead", git.error().message);
      FORGE_RETURN_IF_ERROR(RemoveTree(e.path));
    }
  }
  if (Exists(e.repo)) {
    Status prune = Git(e.repo, {"worktree", "prune"});
    if (!prune.ok()) return prune.error();
  }
  return Status::Ok();
}

int64_t MtimeWallMs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000;
}

}  // namespace

bool IsInsideDir(const std::string& root, const std::string& path) {
  if (root.empty() || path.empty() || path[0] != '/') return false;
  std::error_code ec;
  fs::path r = fs::weakly_canonical(root, ec);
  if (ec) return false;
  fs::path p = fs::weakly_canonical(path, ec);
  if (ec) return false;
  auto rel = p.lexically_relative(r);
  if (rel.empty() || rel == ".") return false;
  return *rel.begin() != "..";
}

Result<proto::RemovedEntry> RemoveWorkspace(const std::string& state_dir,
                                            const proto::MaintainEntry& e) {
  if (!IsInsideDir(state_dir, e.path)) {
    return MakeError(ErrorCode::kInvalid, "task " + e.task_id + ": refusing to remove '" + e.path +
                                              "': not inside the state directory '" + state_dir +
                                              "'");
  }
  // Not while another process works in it (worker/workspace_lock.h): the
  // error is the job's, and the next pass finds the workspace due again.
  // The one exception: a full disk refused to make the lock file, so nobody
  // holds it, and this removal is what frees space.
  auto lock = LockWorkspace(e.path, 0, nullptr);
  if (!lock.ok()) {
    if (!IsMachineFault(lock.error()) || Exists(WorkspaceLockPath(e.path))) return lock.error();
    spdlog::warn("maintenance: {}; removing the workspace without it", lock.error().message);
  }
  proto::RemovedEntry out{e.task_id, e.path, Exists(e.path)};
  FORGE_RETURN_IF_ERROR(RemoveWorkspaceTree(e, out.existed));
  // Unlinked while held (never otherwise): whoever locks the path next gets
  // a new file (LockFile::Acquire checks that the file it locked is still
  // the one named).
  if (lock.ok()) (void)::unlink(WorkspaceLockPath(e.path).c_str());
  return out;
}

namespace {
// The pid of a child's own log, "worker-<pid>.log" or "critic-<pid>.log"
// (or a rotated "worker-<pid>.<n>.log"); nullopt for any other name.
std::optional<pid_t> ChildLogPid(const std::string& name) {
  for (const char* role : {"worker-", "critic-"}) {
    if (name.rfind(role, 0) != 0) continue;
    const char* p = name.c_str() + std::strlen(role);
    char* end = nullptr;
    errno = 0;
    long pid = std::strtol(p, &end, 10);
    if (end == p || errno != 0 || pid <= 0 || pid > INT32_MAX) return std::nullopt;
    std::string rest = end;
    if (rest == ".log") return static_cast<pid_t>(pid);
    if (rest.size() > 5 && rest[0] == '.' && rest.compare(rest.size() - 4, 4, ".log") == 0 &&
        rest.find_first_not_of("0123456789", 1) == rest.size() - 4) {
      return static_cast<pid_t>(pid);
    }
  }
  return std::nullopt;
}

bool Alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}
}  // namespace

int64_t DeleteOldLogs(const std::string& logs_dir, int64_t before_wall_ms,
                      std::vector<std::string>& errors) {
  if (logs_dir.empty() || before_wall_ms <= 0) return 0;
  int64_t deleted = 0;
  std::error_code ec;
  fs::directory_iterator top(logs_dir, ec);
  if (ec) {
    if (ec != std::errc::no_such_file_or_directory) {
      errors.push_back("listing '" + logs_dir + "': " + ec.message());
    }
    return 0;
  }
  for (const auto& task_dir : top) {
    std::error_code dec;
    if (task_dir.is_regular_file(dec) && !task_dir.is_symlink(dec)) {
      // A child's own log: each restart starts a new one, so they pile up.
      // Only a dead child's, and only once it is as old as attempt logs.
      const std::string p = task_dir.path().string();
      auto pid = ChildLogPid(task_dir.path().filename().string());
      struct stat st {};
      if (!pid || Alive(*pid) || ::lstat(p.c_str(), &st) != 0 ||
          MtimeWallMs(st) >= before_wall_ms) {
        continue;
      }
      if (::unlink(p.c_str()) == 0) {
        ++deleted;
      } else {
        errors.push_back("deleting log '" + p + "': " + std::strerror(errno));
      }
      continue;
    }
    if (!task_dir.is_directory(dec) || task_dir.is_symlink(dec)) continue;
    fs::recursive_directory_iterator it(task_dir.path(), ec), end;
    if (ec) {
      errors.push_back("listing '" + task_dir.path().string() + "': " + ec.message());
      continue;
    }
    for (; it != end; it.increment(ec)) {
      if (ec) {
        errors.push_back("listing '" + task_dir.path().string() + "': " + ec.message());
        break;
      }
      struct stat st {};
      const std::string p = it->path().string();
      if (::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (MtimeWallMs(st) >= before_wall_ms) continue;
      if (::unlink(p.c_str()) == 0) {
        ++deleted;
      } else {
        errors.push_back("deleting log '" + p + "': " + std::strerror(errno));
      }
    }
    // Empty directories only: rmdir refuses the others, which is the point.
    (void)::rmdir(task_dir.path().c_str());
  }
  return deleted;
}

proto::MaintenanceResult RunMaintenance(const proto::Maintain& job) {
  const int64_t start = SystemClock::Get().MonotonicMs();
  proto::MaintenanceResult r;
  r.job_id = job.job_id;
  for (const auto& entry : job.remove) {
    auto removed = RemoveWorkspace(job.state_dir, entry);
    if (removed.ok()) {
      r.removed.push_back(std::move(*removed));
    } else {
      r.errors.push_back(removed.error().message);
    }
  }
  r.logs_deleted = DeleteOldLogs(job.logs_dir, job.logs_before_ms, r.errors);
  r.duration_ms = SystemClock::Get().MonotonicMs() - start;
  return r;
}

Result<std::unique_ptr<MaintenanceJob>> MaintenanceJob::Start(proto::Maintain job) {
  std::unique_ptr<MaintenanceJob> j(new MaintenanceJob());
  j->job_id_ = job.job_id;
  FORGE_ASSIGN_OR_RETURN(j->run_, Background<proto::MaintenanceResult>::Start(
                                      [job = std::move(job)] { return RunMaintenance(job); }));
  return j;
}

}  // namespace forge::worker
