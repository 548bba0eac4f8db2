#include "worker/workspace.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/clock.h"
#include "common/fd.h"
#include "common/paths.h"
#include "proto/child_job.h"

namespace forge::worker {
namespace {

namespace fs = std::filesystem;

std::string Seconds(int64_t ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

// Hooks of the operator's repo are theirs, not a worktree's: none run for
// the checkouts Forge makes.
const std::vector<std::string> kNoHooks = {"-c", "core.hooksPath=/dev/null"};

std::vector<std::string> Args(std::vector<std::string> prefix, std::vector<std::string> rest) {
  prefix.insert(prefix.end(), rest.begin(), rest.end());
  return prefix;
}

Error Bad(const std::string& message) {
  return MakeError(ErrorCode::kConfig, message);
}

bool SameDir(const std::string& a, const std::string& b) {
  std::error_code e1, e2;
  auto ca = fs::canonical(a, e1);
  auto cb = fs::canonical(b, e2);
  return !e1 && !e2 && ca == cb;
}

// A directory left by a crash between `worktree add` and recording the
// base, or one that is not a worktree at all: removed, then made afresh.
void RemoveStale(const WorkspaceSpec& spec, const GitRunner& run) {
  (void)RunGit(run, spec.repo, {"worktree", "remove", "--force", spec.path}, spec.git_timeout_ms);
  std::error_code ec;
  fs::remove_all(spec.path, ec);
  (void)RunGit(run, spec.repo, {"worktree", "prune"}, spec.git_timeout_ms);
}

// The worktree exists and records its base: back to the base, nothing left.
Result<PreparedWorkspace> Reset(const WorkspaceSpec& spec, const GitRunner& run,
                                const std::string& base) {
  PreparedWorkspace p{spec.path, WorktreeBranch(spec.task_id), base, false};
  // checkout -f -B is reset --hard that also puts HEAD back on forge/<task>
  // (and the branch back on the base) if the agent moved it elsewhere.
  FORGE_ASSIGN_OR_RETURN(
      RunResult co,
      RunGit(run, spec.path, Args(kNoHooks, {"checkout", "-q", "-f", "-B", p.branch, base}),
             spec.git_timeout_ms));
  if (!co.status.success()) {
    return MakeError(ErrorCode::kIo, "cannot reset worktree '" + spec.path + "' of repo '" +
                                         spec.repo + "' to " + base + ": " + GitMessage(co));
  }
  FORGE_ASSIGN_OR_RETURN(RunResult reset, RunGit(run, spec.path, {"reset", "-q", "--hard", base},
                                                 spec.git_timeout_ms));
  FORGE_ASSIGN_OR_RETURN(RunResult clean,
                         RunGit(run, spec.path, {"clean", "-ffdxq"}, spec.git_timeout_ms));
  if (!reset.status.success() || !clean.status.success()) {
    return MakeError(ErrorCode::kIo, "cannot clean worktree '" + spec.path + "': " +
                                         GitMessage(reset.status.success() ? clean : reset));
  }
  return p;
}

}  // namespace

Result<PreparedWorkspace> PrepareWorkspace(const WorkspaceSpec& spec, const GitRunner& run) {
  if (spec.repo.empty()) {
    FORGE_RETURN_IF_ERROR(MakeDirs(spec.path));
    return PreparedWorkspace{spec.path, "", "", false};
  }
  std::string ref_name = spec.base.empty() ? "HEAD" : spec.base;
  if (Status s = CheckGitRepo(run, spec.repo); !s.ok()) {
    if (s.error().code == ErrorCode::kInvalid) {
      return Bad(s.error().message + " (base ref '" + ref_name + "')");
    }
    return s.error();
  }
  std::error_code ec;
  if (fs::exists(spec.path, ec)) {
    FORGE_ASSIGN_OR_RETURN(RunResult top, RunGit(run, spec.path, {"rev-parse", "--show-toplevel"},
                                                 spec.git_timeout_ms));
    FORGE_ASSIGN_OR_RETURN(RunResult base, RunGit(run, spec.path,
                                                  {"rev-parse", "--verify", "--quiet",
                                                   std::string(kWorktreeBaseRef) + "^{commit}"},
                                                  spec.git_timeout_ms));
    std::string toplevel = top.output.substr(0, top.output.find('\n'));
    std::string sha = base.output.substr(0, base.output.find('\n'));
    if (top.status.success() && SameDir(toplevel, spec.path) && base.status.success() &&
        sha.size() >= 40) {
      return Reset(spec, run, sha);
    }
    RemoveStale(spec, run);
  }

  // First attempt (or the worktree went away): sync, resolve, create.
  std::string resolve = ref_name;
  std::string sync_ref;
  if (!spec.sync_remote.empty() && !spec.sync_branch.empty()) {
    // Into a ref of this task's own: concurrent first attempts in one repo
    // would race on FETCH_HEAD.
    sync_ref = "refs/forge/sync/" + spec.task_id;
    FORGE_ASSIGN_OR_RETURN(
        RunResult f,
        RunGit(run, spec.repo,
               {"fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options",
                spec.sync_remote, "+" + spec.sync_branch + ":" + sync_ref},
               spec.fetch_timeout_ms));
    if (!f.status.success()) {
      std::string why = f.timed_out ? "timed out after " + Seconds(spec.fetch_timeout_ms)
                                    : "failed: " + GitMessage(f);
      return MakeError(ErrorCode::kUnavailable, "runner sync: git fetch " + spec.sync_remote + " " +
                                                    spec.sync_branch + " in repo '" + spec.repo +
                                                    "' " + why);
    }
    // The task's base is the synced branch unless it names another ref.
    if (spec.base.empty() || spec.base == spec.sync_branch) resolve = sync_ref;
  }
  auto sha = ResolveCommit(run, spec.repo, resolve);
  if (!sync_ref.empty()) {
    (void)RunGit(run, spec.repo, {"update-ref", "-d", sync_ref}, spec.git_timeout_ms);
  }
  if (!sha.ok()) {
    if (sha.error().code == ErrorCode::kInvalid) {
      return Bad("unknown base ref '" + ref_name + "' in repo '" + spec.repo + "'");
    }
    return sha.error();
  }
  FORGE_RETURN_IF_ERROR(MakeDirs(fs::path(spec.path).parent_path().string()));
  PreparedWorkspace p{spec.path, WorktreeBranch(spec.task_id), *sha, true};
  FORGE_ASSIGN_OR_RETURN(
      RunResult add,
      RunGit(run, spec.repo,
             Args(kNoHooks, {"worktree", "add", "--quiet", "-B", p.branch, spec.path, *sha}),
             spec.git_timeout_ms));
  if (!add.status.success()) {
    return Bad("cannot create worktree '" + spec.path + "' of repo '" + spec.repo +
               "' on branch '" + p.branch + "' from base ref '" + ref_name +
               "': " + GitMessage(add));
  }
  FORGE_ASSIGN_OR_RETURN(
      RunResult rec,
      RunGit(run, spec.path, {"update-ref", kWorktreeBaseRef, *sha}, spec.git_timeout_ms));
  if (!rec.status.success()) {
    return MakeError(ErrorCode::kIo,
                     "cannot record the base in worktree '" + spec.path + "': " + GitMessage(rec));
  }
  return p;
}

GitRunner HeartbeatingGitRunner(proto::ChildLink& link) {
  return [&link](const SpawnOptions& options, int64_t timeout_ms) -> Result<RunResult> {
    constexpr size_t kMaxOutput = 64 * 1024;
    RunResult result;
    auto sink = [&result](int, std::string_view data) {
      result.output.append(data);
      if (result.output.size() > 2 * kMaxOutput) {
        result.output.erase(0, result.output.size() - kMaxOutput);
      }
    };
    FORGE_ASSIGN_OR_RETURN(auto job, proto::ChildJob::Start(options, "", sink));
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, job->pid(), 0)));
    const int64_t start = SystemClock::Get().MonotonicMs();
    const int64_t deadline = timeout_ms > 0 ? start + timeout_ms : -1;
    while (!job->exited()) {
      int64_t now = SystemClock::Get().MonotonicMs();
      if (auto status = TryReap(job->pid())) {
        job->OnExit(*status);
        break;
      }
      if (!result.timed_out && deadline >= 0 && now >= deadline) {
        result.timed_out = true;
        job->Kill();
      }
      job->Tick(now);
      std::vector<proto::PollFd> fds;
      job->AppendPollFds(fds);
      if (pidfd.valid()) fds.push_back({pidfd.get(), ZMQ_POLLIN, 0});
      // Without a pidfd (old kernel) the exit is noticed by waking up.
      int64_t wake = now + (pidfd.valid() ? 1000 : 20);
      if (deadline >= 0 && !result.timed_out) wake = std::min(wake, deadline);
      auto ready = link.Poll(fds, wake);
      if (!ready.ok()) {
        proto::KillAndReap(*job, 1000);
        return ready.error();
      }
      if (*ready) {
        // A supervisor message is waiting for the caller's loop; Poll would
        // return at once until it is read, so wait on the descriptors alone.
        std::vector<pollfd> raw;
        for (const auto& f : fds) raw.push_back({f.fd, POLLIN, 0});
        int wait = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(wake - now, 50)));
        (void)::poll(raw.data(), raw.size(), wait);
        for (size_t i = 0; i < raw.size(); ++i) {
          fds[i].revents = (raw[i].revents & POLLIN) ? ZMQ_POLLIN : 0;
          if (raw[i].revents & (POLLERR | POLLHUP)) fds[i].revents |= ZMQ_POLLERR;
        }
      }
      job->HandleReady(fds);
    }
    result.status = job->status();
    if (result.output.size() > kMaxOutput) {
      result.output.erase(0, result.output.size() - kMaxOutput);
    }
    return result;
  };
}

}  // namespace forge::worker
