#include "common/git.h"

#include <sys/stat.h>

#include <filesystem>

namespace forge {

GitRunner BlockingGitRunner() {
  return [](const SpawnOptions& options, int64_t timeout_ms) {
    return RunCommand(options, timeout_ms, 64 * 1024);
  };
}

std::vector<std::string> GitEnvironment() {
  std::vector<std::string> env;
  bool has_ssh_command = false;
  for (auto& kv : CurrentEnvironment()) {
    std::string name = kv.substr(0, kv.find('='));
    // GIT_SSH_COMMAND and GIT_CONFIG_* are the operator's to keep; the
    // location variables would make `git -C <worktree>` act on another repo.
    if (name == "GIT_DIR" || name == "GIT_WORK_TREE" || name == "GIT_INDEX_FILE" ||
        name == "GIT_OBJECT_DIRECTORY" || name == "GIT_ALTERNATE_OBJECT_DIRECTORIES" ||
        name == "GIT_COMMON_DIR" || name == "GIT_NAMESPACE" || name == "GIT_CEILING_DIRECTORIES" ||
        name == "GIT_TERMINAL_PROMPT" || name == "LC_ALL" || name == "LANGUAGE") {
      continue;
    }
    if (name == "GIT_SSH_COMMAND") has_ssh_command = true;
    env.push_back(std::move(kv));
  }
  env.push_back("GIT_TERMINAL_PROMPT=0");
  // git's messages in English: what is read from them (GitLines' warning:
  // and hint:, GitCouldNotWrite's words) is git's untranslated text.
  env.push_back("LC_ALL=C");
  if (!has_ssh_command) env.push_back("GIT_SSH_COMMAND=ssh -o BatchMode=yes");
  return env;
}

Result<RunResult> RunGit(const GitRunner& run, const std::string& dir,
                         const std::vector<std::string>& args, int64_t timeout_ms) {
  SpawnOptions spawn;
  spawn.argv = {"git", "-C", dir};
  spawn.argv.insert(spawn.argv.end(), args.begin(), args.end());
  spawn.env = GitEnvironment();
  spawn.stdin_mode = Stdio::kNull;
  spawn.stdout_mode = Stdio::kPipe;
  spawn.stderr_mode = Stdio::kPipe;
  spawn.merge_stderr = true;
  auto r = run(spawn, timeout_ms);
  if (!r.ok()) {
    return MakeError(r.error().code, "cannot run git in '" + dir + "': " + r.error().message);
  }
  return r;
}

std::vector<std::string> GitLines(const RunResult& r) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < r.output.size()) {
    size_t end = r.output.find('\n', start);
    if (end == std::string::npos) end = r.output.size();
    std::string line = r.output.substr(start, end - start);
    if (line.rfind("warning: ", 0) != 0 && line.rfind("hint: ", 0) != 0) {
      lines.push_back(std::move(line));
    }
    start = end + 1;
  }
  return lines;
}

std::string GitFirstLine(const RunResult& r) {
  auto lines = GitLines(r);
  return lines.empty() ? "" : lines[0];
}

namespace {
// text cut to at most n bytes, never inside a UTF-8 character; "..." marks
// a cut.
std::string CutAt(const std::string& text, size_t n) {
  if (text.size() <= n) return text;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n) + "...";
}
constexpr size_t kMessageBytes = 300;

// Why git rev-parse gave no answer, when it was cut short: timed out (a hung
// mount, another git holding a lock, a huge repository) or killed by a
// signal; "" when git ended on its own. Either says nothing of the repo or
// the ref, and the next try may pass.
std::string CutShort(const RunResult& r, int64_t timeout_ms) {
  if (r.timed_out) return "git rev-parse timed out after " + Seconds(timeout_ms);
  if (r.status.signal != 0) return "git rev-parse was killed by " + r.status.ToString();
  return "";
}
}  // namespace

std::string Seconds(int64_t ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

std::string GitMessage(const RunResult& r) {
  if (r.timed_out) return "timed out";
  std::string last;    // the last non-empty line
  std::string cause;   // the last fatal: or error: line
  std::string errors;  // the error: lines since the last fatal: one
  size_t start = 0;
  while (start < r.output.size()) {
    size_t end = r.output.find('\n', start);
    if (end == std::string::npos) end = r.output.size();
    std::string line = r.output.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (!line.empty()) last = line;
    if (line.rfind("error:", 0) == 0) {
      cause = line;
      errors += (errors.empty() ? "" : "; ") + line;
    } else if (line.rfind("fatal:", 0) == 0) {
      // A fatal: line after error: ones may only sum them up ("fatal: adding
      // files failed"): the errors say what failed.
      // The fatal line whole, the errors in what room is left of the message.
      const size_t room =
          std::min<size_t>(200, kMessageBytes - std::min(kMessageBytes, line.size() + 5));
      cause = errors.empty() ? line : CutAt(errors, room) + "; " + line;
      errors.clear();
    }
    start = end + 1;
  }
  std::string line = cause.empty() ? last : cause;
  line = CutAt(line, kMessageBytes);
  if (line.empty()) return r.status.ToString();
  return line;
}

Status CheckGitRepo(const GitRunner& run, const std::string& repo, int64_t timeout_ms) {
  if (repo.empty() || repo[0] != '/') {
    return MakeError(ErrorCode::kInvalid, "repo '" + repo + "' is not an absolute path");
  }
  struct stat st {};
  if (::stat(repo.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInvalid,
                     "repo '" + repo + "' is not a git repository: no such directory");
  }
  FORGE_ASSIGN_OR_RETURN(RunResult r,
                         RunGit(run, repo, {"rev-parse", "--is-inside-work-tree"}, timeout_ms));
  if (std::string cut = CutShort(r, timeout_ms); !cut.empty()) {
    return MakeError(ErrorCode::kUnavailable, "cannot check repo '" + repo + "': " + cut);
  }
  if (!r.status.success()) {
    return MakeError(ErrorCode::kInvalid,
                     "repo '" + repo + "' is not a git repository: " + GitMessage(r));
  }
  if (GitFirstLine(r) != "true") {
    return MakeError(ErrorCode::kInvalid,
                     "repo '" + repo +
                         "' is a git repository without a work tree (bare, or a .git "
                         "directory): give the checkout it belongs to");
  }
  FORGE_ASSIGN_OR_RETURN(RunResult top,
                         RunGit(run, repo, {"rev-parse", "--show-toplevel"}, timeout_ms));
  if (std::string cut = CutShort(top, timeout_ms); !cut.empty()) {
    return MakeError(ErrorCode::kUnavailable, "cannot check repo '" + repo + "': " + cut);
  }
  if (!top.status.success()) {
    return MakeError(ErrorCode::kInvalid,
                     "repo '" + repo + "' is not a git repository: " + GitMessage(top));
  }
  std::string top_dir = GitFirstLine(top);
  std::error_code e1, e2;
  auto here = std::filesystem::canonical(repo, e1);
  auto there = std::filesystem::canonical(top_dir, e2);
  if (e1 || e2 || here != there) {
    return MakeError(ErrorCode::kInvalid,
                     "repo '" + repo + "' is inside the git repository '" + top_dir +
                         "', not its top: give '" + top_dir +
                         "' (a task's worktree is the whole repository, and its checks run at "
                         "its top)");
  }
  return Status::Ok();
}

Result<std::string> ResolveCommit(const GitRunner& run, const std::string& repo,
                                  const std::string& ref, int64_t timeout_ms) {
  std::string name = ref.empty() ? "HEAD" : ref;
  // --end-of-options: a ref such as "--output=x" is a name, never an option.
  FORGE_ASSIGN_OR_RETURN(RunResult r, RunGit(run, repo,
                                             {"rev-parse", "--verify", "--quiet",
                                              "--end-of-options", name + "^{commit}"},
                                             timeout_ms));
  std::string sha = GitFirstLine(r);
  if (r.status.success() && sha.size() >= 40) return sha;
  // With --verify --quiet, a name that is no commit is exit 1, and nothing
  // said; a ref git cannot parse or follow (`main@{u}` without an upstream,
  // `HEAD@{99}` past the reflog) is exit 128. The repository answered its
  // check just before, so either is the operator's ref to fix (a corrupt
  // repository is as well), naming git's reason when it gave one. Only a
  // git cut short (a timeout: a hung mount, another git's lock; a signal)
  // says nothing of the ref, and may pass on another try: retryable.
  const std::string what = "cannot resolve base ref '" + name + "' in repo '" + repo + "': ";
  if (std::string cut = CutShort(r, timeout_ms); !cut.empty()) {
    return MakeError(ErrorCode::kUnavailable, what + cut);
  }
  if (r.status.success()) {
    return MakeError(ErrorCode::kUnavailable,
                     what + "git rev-parse answered '" + sha + "', not a commit id");
  }
  std::string unknown = "unknown base ref '" + name + "' in repo '" + repo + "'";
  if (r.status.exit_code != 1) unknown += " (" + GitMessage(r) + ")";
  return MakeError(ErrorCode::kInvalid, unknown);
}

Status CheckRepoAndBase(const GitRunner& run, const std::string& repo, const std::string& base) {
  FORGE_RETURN_IF_ERROR(CheckGitRepo(run, repo));
  FORGE_ASSIGN_OR_RETURN(std::string sha, ResolveCommit(run, repo, base));
  (void)sha;
  return Status::Ok();
}

}  // namespace forge
