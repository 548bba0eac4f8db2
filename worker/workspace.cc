#include "worker/workspace.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>

#include "common/clock.h"
#include "common/fd.h"
#include "common/paths.h"
#include "proto/child_job.h"

namespace forge::worker {
namespace {

namespace fs = std::filesystem;

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

// git reports a write(2) that failed after its open succeeded without the
// errno: "unable to write file X" (a checkout), "unable to write new index
// file", "couldn't write 'R.lock'" (a ref). That is a full disk, a quota or
// a failing device: the machine's fault in every case, never the task's.
bool GitCouldNotWrite(const std::string& message) {
  for (const char* words : {"unable to write file ", "unable to write new index file",
                            "couldn't write '", "unable to write loose object file"}) {
    if (message.find(words) != std::string::npos) return true;
  }
  return false;
}

// A failed git step's error: kFull when git could not write, else `code`.
Error GitFailed(ErrorCode code, const std::string& what, const RunResult& r) {
  std::string message = what + ": " + GitMessage(r);
  // The whole output: GitMessage keeps git's last words ("fatal: Could not
  // reset index file"), and the failed writes come before them.
  bool full = GitCouldNotWrite(r.output) || IsMachineFault(MakeError(code, r.output));
  if (!full) return MakeError(code, message);
  if (!IsMachineFault(MakeError(code, message))) message += " (git could not write: disk full?)";
  return MakeError(ErrorCode::kFull, message);
}

bool SameDir(const std::string& a, const std::string& b) {
  std::error_code e1, e2;
  auto ca = fs::canonical(a, e1);
  auto cb = fs::canonical(b, e2);
  return !e1 && !e2 && ca == cb;
}

// A directory left by a crash between `worktree add` and recording the
// base, or one that is not a worktree at all: removed, then made afresh.
// Its error names the path and the cause (a read-only directory inside,
// e.g. a Go module cache): `worktree add` would only say "already exists".
Status RemoveStale(const WorkspaceSpec& spec, const GitRunner& run) {
  (void)RunGit(run, spec.repo, {"worktree", "remove", "--force", spec.path}, spec.git_timeout_ms);
  std::error_code ec;
  fs::remove_all(spec.path, ec);
  (void)RunGit(run, spec.repo, {"worktree", "prune"}, spec.git_timeout_ms);
  if (ec) {
    return MakeError(ErrorCode::kIo,
                     "cannot remove the stale workspace " + spec.path + ": " + ec.message());
  }
  return Status::Ok();
}

// A worktree's own git directory and its repository's common one, from
// `rev-parse ... --absolute-git-dir --git-common-dir` run in `path`.
struct GitDirs {
  fs::path own;
  fs::path common;
};
const std::vector<std::string> kGitDirsArgs = {"--absolute-git-dir", "--git-common-dir"};

std::optional<GitDirs> ParseGitDirs(const std::vector<std::string>& lines, size_t first,
                                    const std::string& path) {
  if (lines.size() < first + 2 || lines[first].empty() || lines[first][0] != '/') {
    return std::nullopt;
  }
  GitDirs dirs{lines[first], lines[first + 1]};
  if (dirs.common.is_relative()) dirs.common = fs::path(path) / dirs.common;
  return dirs;
}

// The locks that would refuse the git a worktree's reset, snapshot or
// commit runs: its index, HEAD and kept review snapshot, and the task's
// branch (in the common directory). Called only where no git of the task's
// can be running (its agent's process group is gone, the caller holds the
// workspace lock), so such a lock is stale (an agent, or a critic, killed
// in the middle of git) unless a process has it open: the operator's own
// git in the worktree (an editor's `git status`), or a second Forge's on
// the same repository's forge/<task>. No other ref's lock is touched.
void RemoveStaleLocks(const GitDirs& dirs, const std::string& task_id) {
  std::error_code ec;
  auto remove_stale = [&](const fs::path& lock) {
    if (!AnyProcessHasOpen(lock.string())) fs::remove(lock, ec);  // none there: a no-op
  };
  for (const std::string& name : {std::string("index.lock"), std::string("HEAD.lock"),
                                  std::string(kReviewSnapshotRef) + ".lock"}) {
    remove_stale(dirs.own / name);
  }
  remove_stale(dirs.common / "refs/heads" / (WorktreeBranch(task_id) + ".lock"));
}

// What an agent killed in the middle of a git command leaves in its
// worktree's own git directory besides stale locks: a rebase, merge,
// cherry-pick, revert or bisect in progress that the next attempt's agent
// would resume, bringing back the previous attempt's commits.
void ClearInterruptedGit(const WorkspaceSpec& spec, const GitRunner& run) {
  auto out = RunGit(run, spec.path, Args({"rev-parse"}, kGitDirsArgs), spec.git_timeout_ms);
  if (!out.ok() || !out->status.success()) return;  // the checkout below reports it
  auto dirs = ParseGitDirs(GitLines(*out), 0, spec.path);
  if (!dirs) return;
  std::error_code ec;
  for (const char* name : {"rebase-merge", "rebase-apply", "MERGE_HEAD", "MERGE_MSG", "MERGE_MODE",
                           "AUTO_MERGE", "CHERRY_PICK_HEAD", "REVERT_HEAD", "sequencer",
                           "BISECT_LOG", "BISECT_START", "BISECT_TERMS", "BISECT_EXPECTED_REV",
                           "BISECT_NAMES", "BISECT_ANCESTORS_OK", "BISECT_HEAD"}) {
    fs::remove_all(dirs->own / name, ec);
  }
  // A critic killed while it kept a review's snapshot left that ref's lock,
  // which the reset's delete would be refused by.
  RemoveStaleLocks(*dirs, spec.task_id);
}

// forge/<task> is unique within one state directory only: another one on
// the same repo (a second Forge, or a state directory made afresh) numbers
// its tasks from t1 too. A branch whose tip is a Forge pass (it has the
// Forge-Task trailer) that the base does not contain is someone's verified
// work, and `worktree add -B` would reset it: refused, naming the commit.
// The agent's own commits from an earlier attempt carry no trailer.
Status KeepAnotherPass(const WorkspaceSpec& spec, const GitRunner& run, const std::string& branch,
                       const std::string& base) {
  FORGE_ASSIGN_OR_RETURN(
      RunResult tip,
      RunGit(run, spec.repo,
             {"log", "-1", "--format=%H %(trailers:key=Forge-Task,valueonly,separator=%x2c)",
              "refs/heads/" + branch, "--"},
             spec.git_timeout_ms));
  std::string line = GitFirstLine(tip);
  size_t space = line.find(' ');
  if (!tip.status.success() || space == std::string::npos || space + 1 >= line.size()) {
    return Status::Ok();  // no such branch, or not a Forge pass
  }
  std::string commit = line.substr(0, space);
  if (commit.size() < 40 || commit.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Status::Ok();  // not a commit id: no pass to keep
  }
  FORGE_ASSIGN_OR_RETURN(
      RunResult contained,
      RunGit(run, spec.repo, {"merge-base", "--is-ancestor", commit, base}, spec.git_timeout_ms));
  if (contained.status.success()) return Status::Ok();
  return Bad("branch " + branch + " of repo '" + spec.repo + "' holds " + commit.substr(0, 12) +
             ", a Forge pass of task " + line.substr(space + 1) +
             " from another state directory or an earlier one; making this task's worktree "
             "would reset it. Rename it (git -C '" +
             spec.repo + "' branch -m " + branch + " " + branch +
             "-kept) or delete it, then retry");
}

// The worktree exists and records its base: back to the base, nothing left.
Result<PreparedWorkspace> Reset(const WorkspaceSpec& spec, const GitRunner& run,
                                const std::string& base) {
  PreparedWorkspace p{spec.path, WorktreeBranch(spec.task_id), base, false};
  ClearInterruptedGit(spec, run);
  // checkout -f -B is reset --hard that also puts HEAD back on forge/<task>
  // (and the branch back on the base) if the agent moved it elsewhere.
  FORGE_ASSIGN_OR_RETURN(
      RunResult co,
      RunGit(run, spec.path, Args(kNoHooks, {"checkout", "-q", "-f", "-B", p.branch, base}),
             spec.git_timeout_ms));
  if (!co.status.success()) {
    return GitFailed(
        ErrorCode::kIo,
        "cannot reset worktree '" + spec.path + "' of repo '" + spec.repo + "' to " + base, co);
  }
  FORGE_ASSIGN_OR_RETURN(RunResult reset, RunGit(run, spec.path, {"reset", "-q", "--hard", base},
                                                 spec.git_timeout_ms));
  // The last attempt's kept review snapshot is no review's of this one.
  FORGE_ASSIGN_OR_RETURN(
      RunResult forget,
      RunGit(run, spec.path, {"update-ref", "-d", kReviewSnapshotRef}, spec.git_timeout_ms));
  if (!forget.status.success()) {
    return GitFailed(ErrorCode::kIo,
                     "cannot delete " + std::string(kReviewSnapshotRef) + " in '" + spec.path + "'",
                     forget);
  }
  FORGE_ASSIGN_OR_RETURN(RunResult clean,
                         RunGit(run, spec.path, {"clean", "-ffdxq"}, spec.git_timeout_ms));
  if (!reset.status.success() || !clean.status.success()) {
    return GitFailed(ErrorCode::kIo, "cannot clean worktree '" + spec.path + "'",
                     reset.status.success() ? clean : reset);
  }
  std::error_code ec;
  if (fs::exists(fs::path(spec.path) / ".gitmodules", ec)) {
    // Edits and new files inside a submodule survive the superproject's
    // reset and clean: each submodule checked out in this worktree goes back
    // to the commit the base records ($sha1, from its own objects), then is
    // cleaned. Not `submodule update`: the operator's own initialised
    // submodules (in the shared config) would be cloned into the worktree.
    FORGE_ASSIGN_OR_RETURN(
        RunResult reset_subs,
        RunGit(run, spec.path,
               Args(kNoHooks, {"submodule", "foreach", "--quiet", "--recursive",
                               "git checkout -qf \"$sha1\" && git clean -ffdxq"}),
               spec.git_timeout_ms));
    if (!reset_subs.status.success()) {
      return GitFailed(ErrorCode::kIo,
                       "cannot reset the submodules of worktree '" + spec.path + "'", reset_subs);
    }
  }
  return p;
}

}  // namespace

namespace {

// The recorded base must still be a commit of the repository: one a
// force-push and a gc took away is an error naming the task, the commit and
// the repo (kConfig: no retry brings it back), never a quiet move to
// wherever the base ref points now.
Status RequireRecordedBase(const WorkspaceSpec& spec, const std::string& ref_name,
                           const GitRunner& run) {
  const std::string& sha = spec.recorded_base;
  FORGE_ASSIGN_OR_RETURN(RunResult r, RunGit(run, spec.repo,
                                             {"rev-parse", "--verify", "--quiet",
                                              "--end-of-options", sha + "^{commit}"},
                                             spec.git_timeout_ms));
  if (r.timed_out) {
    return GitFailed(ErrorCode::kIo,
                     "looking up base commit " + sha + " in repo '" + spec.repo + "'", r);
  }
  if (r.status.success() && GitFirstLine(r) == sha) return Status::Ok();
  return Bad("task " + spec.task_id + ": its base commit " + sha + " (base ref '" + ref_name +
             "' resolved at its first attempt) is not in repo '" + spec.repo +
             "' any more (garbage-collected after a force-push?); every attempt of the task "
             "starts from that commit, so it cannot run: bring the commit back into the repo "
             "(git fetch) and retry it, or submit the task again for a new base");
}

// A new worktree at `sha` on forge/<task>, its base recorded in its own ref.
Result<PreparedWorkspace> MakeWorktree(const WorkspaceSpec& spec, const GitRunner& run,
                                       const std::string& sha, const std::string& from) {
  FORGE_RETURN_IF_ERROR(MakeDirs(fs::path(spec.path).parent_path().string()));
  PreparedWorkspace p{spec.path, WorktreeBranch(spec.task_id), sha, true};
  FORGE_RETURN_IF_ERROR(KeepAnotherPass(spec, run, p.branch, sha));
  auto worktree_add = [&] {
    return RunGit(run, spec.repo,
                  Args(kNoHooks, {"worktree", "add", "--quiet", "-B", p.branch, spec.path, sha}),
                  spec.git_timeout_ms);
  };
  FORGE_ASSIGN_OR_RETURN(RunResult add, worktree_add());
  if (!add.status.success() && !add.timed_out) {
    // A worktree deleted without git (rm -rf, by its agent or the operator)
    // is still registered, its branch checked out there, and git refuses to
    // make it again ("already checked out at ..."): pruned, then once more.
    (void)RunGit(run, spec.repo, {"worktree", "prune"}, spec.git_timeout_ms);
    FORGE_ASSIGN_OR_RETURN(add, worktree_add());
  }
  if (!add.status.success()) {
    return GitFailed(ErrorCode::kConfig,
                     "cannot create worktree '" + spec.path + "' of repo '" + spec.repo +
                         "' on branch '" + p.branch + "' from " + from,
                     add);
  }
  FORGE_ASSIGN_OR_RETURN(
      RunResult rec,
      RunGit(run, spec.path, {"update-ref", kWorktreeBaseRef, sha}, spec.git_timeout_ms));
  if (!rec.status.success()) {
    return GitFailed(ErrorCode::kIo, "cannot record the base in worktree '" + spec.path + "'", rec);
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
  if (Status s = CheckGitRepo(run, spec.repo, spec.git_timeout_ms); !s.ok()) {
    if (s.error().code == ErrorCode::kInvalid) {
      return Bad(s.error().message + " (base ref '" + ref_name + "')");
    }
    return s.error();
  }
  const std::string& recorded = spec.recorded_base;
  std::error_code ec;
  if (fs::exists(spec.path, ec)) {
    FORGE_ASSIGN_OR_RETURN(RunResult top, RunGit(run, spec.path, {"rev-parse", "--show-toplevel"},
                                                 spec.git_timeout_ms));
    FORGE_ASSIGN_OR_RETURN(RunResult base, RunGit(run, spec.path,
                                                  {"rev-parse", "--verify", "--quiet",
                                                   std::string(kWorktreeBaseRef) + "^{commit}"},
                                                  spec.git_timeout_ms));
    std::string toplevel = GitFirstLine(top);
    std::string sha = GitFirstLine(base);
    if (top.status.success() && SameDir(toplevel, spec.path) && base.status.success() &&
        sha.size() >= 40) {
      if (recorded.empty() || sha == recorded) return Reset(spec, run, sha);
      // The worktree records another commit than the task's (one left from
      // before a database was restored, or made by hand): the task's wins,
      // and the worktree's record follows it, which the review reads.
      FORGE_RETURN_IF_ERROR(RequireRecordedBase(spec, ref_name, run));
      FORGE_ASSIGN_OR_RETURN(
          RunResult rec,
          RunGit(run, spec.path, {"update-ref", kWorktreeBaseRef, recorded}, spec.git_timeout_ms));
      if (!rec.status.success()) {
        return GitFailed(ErrorCode::kIo, "cannot record the base in worktree '" + spec.path + "'",
                         rec);
      }
      return Reset(spec, run, recorded);
    }
    FORGE_RETURN_IF_ERROR(RemoveStale(spec, run));
  }

  if (!recorded.empty()) {
    // A later attempt whose worktree went away: made again at the recorded
    // commit. No fetch (the sync's tip has moved on) and no resolving.
    FORGE_RETURN_IF_ERROR(RequireRecordedBase(spec, ref_name, run));
    return MakeWorktree(
        spec, run, recorded,
        "base commit " + recorded + " (base ref '" + ref_name + "' at the task's first attempt)");
  }

  // First attempt (or the worktree went away before its base was recorded):
  // sync, resolve, create.
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
  auto sha = ResolveCommit(run, spec.repo, resolve, spec.git_timeout_ms);
  if (!sync_ref.empty()) {
    (void)RunGit(run, spec.repo, {"update-ref", "-d", sync_ref}, spec.git_timeout_ms);
  }
  if (!sha.ok()) {
    // Only a ref git could not resolve is the task's (named as the task
    // names it, not by the sync ref); git cut short (kUnavailable) is retried.
    if (sha.error().code == ErrorCode::kInvalid) {
      return Bad(resolve == ref_name
                     ? sha.error().message
                     : "unknown base ref '" + ref_name + "' in repo '" + spec.repo + "'");
    }
    return sha.error();
  }
  return MakeWorktree(spec, run, *sha, "base ref '" + ref_name + "'");
}

namespace {

struct ForgeWorktree {
  std::string base;             // the recorded base commit
  std::optional<GitDirs> dirs;  // none when git's answer did not read as them
};

// The worktree's recorded base, when path is the top of a Forge worktree.
std::optional<ForgeWorktree> RecordedBase(const std::string& path, const GitRunner& run,
                                          int64_t timeout_ms) {
  auto top = RunGit(run, path, Args({"rev-parse", "--show-toplevel"}, kGitDirsArgs), timeout_ms);
  if (!top.ok() || !top->status.success() || !SameDir(GitFirstLine(*top), path)) {
    return std::nullopt;
  }
  auto base = RunGit(
      run, path, {"rev-parse", "--verify", "--quiet", std::string(kWorktreeBaseRef) + "^{commit}"},
      timeout_ms);
  if (!base.ok() || !base->status.success()) return std::nullopt;
  return ForgeWorktree{GitFirstLine(*base), ParseGitDirs(GitLines(*top), 1, path)};
}

}  // namespace

namespace {
// A git step's first line of output, or its error naming what and where.
Result<std::string> GitStep(const GitRunner& run, const std::string& path,
                            std::vector<std::string> args, const std::string& what,
                            int64_t timeout_ms) {
  FORGE_ASSIGN_OR_RETURN(RunResult r, RunGit(run, path, args, timeout_ms));
  if (!r.status.success()) return GitFailed(ErrorCode::kIo, what + " in '" + path + "' failed", r);
  return GitFirstLine(r);
}
}  // namespace

namespace {

Result<ForgeWorktree> RequireForgeWorktree(const std::string& path, const GitRunner& run,
                                           int64_t timeout_ms) {
  auto worktree = RecordedBase(path, run, timeout_ms);
  if (!worktree) {
    return MakeError(ErrorCode::kInvalid, "workspace '" + path + "' is not a Forge worktree (no " +
                                              kWorktreeBaseRef + "): nothing to review or commit");
  }
  return *worktree;
}

// A field of git's -z output from where `lead`, its expected start, begins
// a line: the stderr RunGit merges in can put diagnostic lines in front of
// it ("warning: ...\n", from a config git reads at its start).
std::string_view AtLead(std::string_view field, std::string_view lead) {
  while (!field.starts_with(lead)) {
    size_t nl = field.find('\n');
    if (nl == std::string_view::npos) break;
    field.remove_prefix(nl + 1);
  }
  return field;
}

// The NUL-terminated fields of git's -z output, each AtLead(lead).
std::vector<std::string> ZFields(const std::string& raw, std::string_view lead) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\0', start);
    if (end == std::string::npos) end = raw.size();
    fields.emplace_back(AtLead(std::string_view(raw.data() + start, end - start), lead));
    start = end + 1;
  }
  return fields;
}

// The paths `git diff-tree -r -z --diff-filter=AT` output (":<old mode>
// <new mode> ...", then the path) makes gitlinks: added, or where the base
// had a file (a bumped pointer is modified, left out by the filter). Only
// the status fields are cut to their ':' (a path may hold a newline).
std::vector<std::string> NewGitlinks(const std::string& raw) {
  std::vector<std::string> fields = ZFields(raw, "");  // status, path, status, path, ...
  std::vector<std::string> paths;
  for (size_t i = 0; i + 1 < fields.size(); i += 2) {
    std::string_view status = AtLead(fields[i], ":");
    if (status.starts_with(":") && status.size() > 14 && status.substr(8, 6) == "160000") {
      paths.push_back(std::move(fields[i + 1]));
    }
  }
  return paths;
}

// The submodule paths the snapshot's .gitmodules declares (none without
// one). One git cannot parse is an error naming git's line: read as none,
// its declared submodules would be rejected as nested repositories, with
// the advice to declare them.
Result<std::vector<std::string>> DeclaredSubmodules(const std::string& path,
                                                    const std::string& tree, const GitRunner& run,
                                                    int64_t timeout_ms) {
  FORGE_ASSIGN_OR_RETURN(RunResult r, RunGit(run, path,
                                             {"config", "-z", "--blob", tree + ":.gitmodules",
                                              "--get-regexp", "^submodule\\..*\\.path$"},
                                             timeout_ms));
  if (r.timed_out) return GitFailed(ErrorCode::kIo, "reading the snapshot's .gitmodules", r);
  std::vector<std::string> paths;
  if (!r.status.success()) {
    // Exit 1 all the same: no .gitmodules, no path in it, or a bad one.
    if (r.output.find("bad config") == std::string::npos) return paths;
    return GitFailed(ErrorCode::kInvalid, "the attempt's .gitmodules does not parse", r);
  }
  for (const std::string& entry : ZFields(r.output, "submodule.")) {  // key, newline, value
    size_t nl = entry.find('\n');
    if (nl == std::string::npos) continue;
    std::string value = entry.substr(nl + 1);
    while (value.size() > 1 && value.back() == '/') value.pop_back();
    paths.push_back(std::move(value));
  }
  return paths;
}

// A git repository of the agent's own inside the worktree (`git init`, a
// clone of a dependency) is staged by `add -A` as a gitlink: a pointer to a
// commit only that repository has, so a pass would commit the pointer and
// lose the files. Such a gitlink is new over the base; an existing one
// whose pointer moved is a submodule bump, and one .gitmodules declares is
// a submodule the agent added on purpose.
Result<std::vector<std::string>> UndeclaredNestedRepos(const std::string& path,
                                                       const Snapshot& snapshot,
                                                       const GitRunner& run, int64_t timeout_ms) {
  FORGE_ASSIGN_OR_RETURN(RunResult diff, RunGit(run, path,
                                                {"diff-tree", "-r", "-z", "--no-renames",
                                                 "--diff-filter=AT", snapshot.base, snapshot.tree},
                                                timeout_ms));
  if (!diff.status.success()) {
    return GitFailed(ErrorCode::kIo, "git diff-tree in '" + path + "' failed", diff);
  }
  std::vector<std::string> nested = NewGitlinks(diff.output);
  if (nested.empty()) return nested;
  FORGE_ASSIGN_OR_RETURN(auto declared, DeclaredSubmodules(path, snapshot.tree, run, timeout_ms));
  std::erase_if(nested, [&](const std::string& p) {
    return std::find(declared.begin(), declared.end(), p) != declared.end();
  });
  return nested;
}

// The snapshot of `tree` over the recorded base.
Result<Snapshot> SnapshotOf(const std::string& path, std::string base, std::string tree,
                            const GitRunner& run, int64_t timeout_ms) {
  Snapshot snapshot;
  snapshot.base = std::move(base);
  snapshot.tree = std::move(tree);
  FORGE_ASSIGN_OR_RETURN(std::string base_tree,
                         GitStep(run, path, {"rev-parse", snapshot.base + "^{tree}"},
                                 "reading the base tree", timeout_ms));
  snapshot.unchanged = snapshot.tree == base_tree;
  if (!snapshot.unchanged) {
    FORGE_ASSIGN_OR_RETURN(snapshot.nested_repos,
                           UndeclaredNestedRepos(path, snapshot, run, timeout_ms));
  }
  return snapshot;
}

// The nested repositories `git add` refused because they have no commit
// checked out: "error: 'sub/' does not have a commit checked out".
std::vector<std::string> ReposWithoutACommit(const RunResult& added) {
  static const std::string kHead = "error: '", kTail = "/' does not have a commit checked out";
  std::vector<std::string> paths;
  std::istringstream lines(added.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > kHead.size() + kTail.size() && line.rfind(kHead, 0) == 0 &&
        line.compare(line.size() - kTail.size(), kTail.size(), kTail) == 0) {
      paths.push_back(line.substr(kHead.size(), line.size() - kHead.size() - kTail.size()));
    }
  }
  return paths;
}

// Everything in the worktree now, over the recorded base.
Result<Snapshot> StageAll(const std::string& path, std::string base, const GitRunner& run,
                          int64_t timeout_ms) {
  // The index is the worktree's own: staging here touches nothing else.
  FORGE_ASSIGN_OR_RETURN(RunResult added, RunGit(run, path, {"add", "-A"}, timeout_ms));
  if (!added.status.success()) {
    // No tree can be written, and none would hold that repository's files.
    Snapshot refused{std::move(base), "", false, ReposWithoutACommit(added)};
    if (!added.timed_out && !refused.nested_repos.empty()) return refused;
    return GitFailed(ErrorCode::kIo, "git add -A in '" + path + "' failed", added);
  }
  FORGE_ASSIGN_OR_RETURN(std::string tree,
                         GitStep(run, path, {"write-tree"}, "git write-tree", timeout_ms));
  return SnapshotOf(path, std::move(base), std::move(tree), run, timeout_ms);
}

}  // namespace

Result<Snapshot> SnapshotAttempt(const std::string& path, const GitRunner& run,
                                 int64_t timeout_ms) {
  FORGE_ASSIGN_OR_RETURN(ForgeWorktree worktree, RequireForgeWorktree(path, run, timeout_ms));
  return StageAll(path, std::move(worktree.base), run, timeout_ms);
}

namespace {

std::string ReviewTrailer(int64_t attempt_id) {
  return "Forge-Review-Of: " + std::to_string(attempt_id);
}

// The tree the first review of attempt_id kept, when kReviewSnapshotRef is
// that review's: a commit on `base` whose message names the attempt.
// Anything else there (another attempt's, kept before a database restore
// gave out the id again) is not this review's. An error only when git could
// not answer (a timeout).
Result<std::optional<std::string>> KeptReviewTree(const std::string& path, const std::string& base,
                                                  int64_t attempt_id, const GitRunner& run,
                                                  int64_t timeout_ms) {
  FORGE_ASSIGN_OR_RETURN(
      RunResult kept,
      RunGit(run, path, {"cat-file", "commit", std::string(kReviewSnapshotRef)}, timeout_ms));
  if (kept.timed_out) return GitFailed(ErrorCode::kIo, "reading the review's kept snapshot", kept);
  if (!kept.status.success()) return std::optional<std::string>();  // none kept
  std::string tree, parent;
  bool ours = false;
  std::istringstream lines(kept.output);
  for (std::string line; std::getline(lines, line);) {
    if (tree.empty() && line.rfind("tree ", 0) == 0) tree = line.substr(5);
    if (parent.empty() && line.rfind("parent ", 0) == 0) parent = line.substr(7);
    if (line == ReviewTrailer(attempt_id)) ours = true;
  }
  if (!ours || parent != base || tree.empty()) return std::optional<std::string>();
  return std::optional<std::string>(tree);
}

// Puts the worktree back to `tree`, but for ignored files: tracked edits
// undone, files it does not have removed (a build's caches stay).
Status RestoreTree(const std::string& path, const std::string& tree, const GitRunner& run,
                   int64_t timeout_ms) {
  FORGE_RETURN_IF_ERROR(GitStep(run, path, {"read-tree", "-u", "--reset", tree},
                                "git read-tree (back to the kept snapshot)", timeout_ms));
  FORGE_RETURN_IF_ERROR(
      GitStep(run, path, {"clean", "-fdq"}, "git clean (back to the kept snapshot)", timeout_ms));
  return Status::Ok();
}

}  // namespace

Result<Snapshot> SnapshotForReview(const std::string& path, const std::string& task_id,
                                   int64_t attempt_id, const GitRunner& run, int64_t timeout_ms,
                                   std::string* keep_error) {
  // The base first: a directory inside another checkout is refused before
  // any of that repository's refs is read, and its locks are not touched.
  FORGE_ASSIGN_OR_RETURN(ForgeWorktree worktree, RequireForgeWorktree(path, run, timeout_ms));
  // The agent (and any critic before this one) is gone and this review
  // holds the workspace lock: a lock left in the worktree's git would fail
  // the review, and the work with it.
  if (worktree.dirs) RemoveStaleLocks(*worktree.dirs, task_id);
  std::string base = std::move(worktree.base);
  FORGE_ASSIGN_OR_RETURN(auto kept, KeptReviewTree(path, base, attempt_id, run, timeout_ms));
  if (kept) {
    FORGE_RETURN_IF_ERROR(RestoreTree(path, *kept, run, timeout_ms));
    return SnapshotOf(path, std::move(base), std::move(*kept), run, timeout_ms);
  }
  FORGE_ASSIGN_OR_RETURN(Snapshot snapshot, StageAll(path, std::move(base), run, timeout_ms));
  // Nothing to keep for work the review rejects (there may be no tree).
  if (!snapshot.nested_repos.empty()) return snapshot;
  // Kept as a commit, not a bare tree: a ref to a tree upsets `git log
  // --all`. Not keeping it costs only a review again's protection: the
  // review goes on.
  auto keep = [&]() -> Status {
    FORGE_ASSIGN_OR_RETURN(std::string commit,
                           GitStep(run, path,
                                   {"-c", "user.name=Forge", "-c", "user.email=forge@localhost",
                                    "commit-tree", snapshot.tree, "-p", snapshot.base, "-m",
                                    "forge: what attempt " + std::to_string(attempt_id) +
                                        " left, as its review saw it",
                                    "-m", ReviewTrailer(attempt_id)},
                                   "git commit-tree (the review's snapshot)", timeout_ms));
    FORGE_RETURN_IF_ERROR(GitStep(run, path, {"update-ref", kReviewSnapshotRef, commit},
                                  std::string("git update-ref ") + kReviewSnapshotRef, timeout_ms));
    return Status::Ok();
  };
  if (Status kept_now = keep(); !kept_now.ok() && keep_error)
    *keep_error = kept_now.error().message;
  return snapshot;
}

Result<Squashed> CommitSnapshot(const SquashSpec& spec, const Snapshot& snapshot,
                                const GitRunner& run) {
  if (!snapshot.nested_repos.empty()) {
    return MakeError(ErrorCode::kInvalid, NestedReposProblem(snapshot.nested_repos));
  }
  if (snapshot.unchanged && !spec.allow_empty) return Squashed{true, ""};
  auto step = [&](std::vector<std::string> args, const std::string& what) {
    return GitStep(run, spec.path, std::move(args), what, spec.git_timeout_ms);
  };
  // The operator's identity when configured, else Forge's: commit-tree
  // refuses to run without one.
  auto name = RunGit(run, spec.path, {"config", "user.name"}, spec.git_timeout_ms);
  auto email = RunGit(run, spec.path, {"config", "user.email"}, spec.git_timeout_ms);
  std::string user = name.ok() && name->status.success() ? GitFirstLine(*name) : "Forge";
  std::string mail =
      email.ok() && email->status.success() ? GitFirstLine(*email) : "forge@localhost";
  std::string subject = spec.title.empty() ? "Task " + spec.task_id : spec.title;
  std::string trailers =
      "Forge-Task: " + spec.task_id + "\nForge-Attempt: " + std::to_string(spec.attempt);
  FORGE_ASSIGN_OR_RETURN(std::string commit,
                         step({"-c", "user.name=" + user, "-c", "user.email=" + mail, "commit-tree",
                               snapshot.tree, "-p", snapshot.base, "-m", subject, "-m", trailers},
                              "git commit-tree"));
  std::string branch = "refs/heads/" + WorktreeBranch(spec.task_id);
  FORGE_RETURN_IF_ERROR(
      step({"update-ref", "-m", "forge: attempt " + std::to_string(spec.attempt), branch, commit},
           "git update-ref " + branch));
  // HEAD back on the task's branch if the agent moved it.
  FORGE_RETURN_IF_ERROR(step({"symbolic-ref", "HEAD", branch}, "git symbolic-ref HEAD"));
  return Squashed{false, commit};
}

Result<Squashed> SquashAttempt(const SquashSpec& spec, const GitRunner& run) {
  FORGE_ASSIGN_OR_RETURN(Snapshot snapshot, SnapshotAttempt(spec.path, run, spec.git_timeout_ms));
  return CommitSnapshot(spec, snapshot, run);
}

Diff DiffSnapshot(const std::string& path, const Snapshot& snapshot, const GitRunner& run,
                  size_t max_bytes, int64_t timeout_ms) {
  Diff d;
  auto diff = RunGit(run, path, {"--no-pager", "diff", "--no-color", snapshot.base, snapshot.tree},
                     timeout_ms);
  if (diff.ok() && diff->status.success()) d.text = diff->output;
  if (d.text.size() > max_bytes) {
    d.text.resize(max_bytes);
    d.truncated = true;
  }
  return d;
}

GitRunner HeartbeatingGitRunner(proto::ChildLink& link, size_t max_output) {
  return [&link, max_output](const SpawnOptions& options, int64_t timeout_ms) -> Result<RunResult> {
    RunResult result;
    auto sink = [&result, max_output](int, std::string_view data) {
      if (result.output.size() >= max_output) return;
      result.output.append(data.substr(0, max_output - result.output.size()));
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
    return result;
  };
}

std::string NestedReposProblem(const std::vector<std::string>& paths) {
  std::string names;
  for (const auto& p : paths) names += (names.empty() ? "" : ", ") + p;
  if (paths.size() == 1) {
    return names +
           " is a git repository of its own inside the worktree: at most a pointer to its commit "
           "would be committed, never its files; remove its .git (or declare it as a submodule "
           "in .gitmodules)";
  }
  return names +
         " are git repositories of their own inside the worktree: at most pointers to their "
         "commits would be committed, never their files; remove their .git (or declare them as "
         "submodules in .gitmodules)";
}

bool IsMachineFault(const Error& e) {
  if (e.code == ErrorCode::kFull) return true;
  for (int err : {ENOSPC, EDQUOT}) {
    if (e.message.find(strerror(err)) != std::string::npos) return true;
  }
  return false;
}

}  // namespace forge::worker
