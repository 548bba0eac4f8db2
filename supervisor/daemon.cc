#include "supervisor/daemon.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/lockfile.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/process.h"
#include "common/utf8.h"
#include "supervisor/config/config.h"
#include "supervisor/supervisor.h"

namespace forge::supervisor {
namespace {

// The daemon's half of the readiness pipe: "ok\n" once ready, else the error.
class Readiness {
 public:
  explicit Readiness(int fd = -1) : fd_(fd) {}
  void Ready() { Write("ok\n"); }
  void Fail(const std::string& message) {
    if (fd_.valid()) {
      Write("error: " + message + "\n");
    } else {
      std::cerr << "forge-supervisor: " << message << "\n";
    }
  }

 private:
  void Write(const std::string& s) {
    if (!fd_.valid()) return;
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::write(fd_.get(), s.data() + off, s.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    fd_.reset();
  }
  UniqueFd fd_;
};

// Each child holds the supervisor a socket connection and more; the usual
// soft limit of 1024 is below what workers: 256 and critics: 64 can need,
// and running out aborts inside libzmq. The hard limit is ours to use.
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const rlim_t soft = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    SetChildOpenFileLimit(soft);
    spdlog::info("open files: soft limit raised from {} to {} (children keep {})", soft,
                 limit.rlim_max, soft);
  }
}

// The PATH this process's children inherit and search, for ConfigWarnings.
std::string InheritedPath() {
  return ExecPath(std::getenv("PATH"));
}

// ConfigWarnings on stderr, each "forge-supervisor: warning: FILE: ...":
// a start or check-config still goes on.
void PrintConfigWarnings(const Config& config, const std::string& path) {
  for (const auto& warning : ConfigWarnings(config, InheritedPath())) {
    std::cerr << "forge-supervisor: warning: " << (path.empty() ? "defaults" : path) << ": "
              << warning << "\n";
  }
}

Result<Config> LoadEffectiveConfig(const std::string& path) {
  if (path.empty()) return Config{};
  return LoadConfig(path);
}

// Everything after the (optional) fork: lock, logging, recovery, sockets, loop.
int Serve(const Config& config, const std::string& config_path, const std::string& state_dir,
          const StartOptions& start, Readiness readiness) {
  auto lock = LockFile::Acquire(JoinPath(state_dir, "supervisor.lock"));
  if (!lock.ok()) {
    readiness.Fail(lock.error().message);  // names the running supervisor's pid
    return kExitFailure;
  }
  LogOptions log;
  log.name = "supervisor";
  log.file = JoinPath(state_dir, "supervisor.log");
  log.console = start.foreground;
  if (auto s = SetupLogging(log); !s.ok()) {
    readiness.Fail(s.error().message);
    return kExitFailure;
  }
  spdlog::info("forge-supervisor {} (allocator: {})", FORGE_VERSION, start.allocator);
  spdlog::info("config: {}", config_path.empty() ? "none (defaults)" : config_path);
  for (const auto& warning : ConfigWarnings(config, InheritedPath())) {
    spdlog::warn("config: {}", warning);
  }
  if (auto s = WriteFileAtomic(StartedConfigFile(state_dir), config_path + "\n"); !s.ok()) {
    spdlog::warn("recording the config path: {}", s.error().message);
  }
  RaiseOpenFileLimit();
  SupervisorOptions options{config, config_path, state_dir};
  auto sup = Supervisor::Create(std::move(options));
  if (!sup.ok()) {
    spdlog::error("{}", sup.error().ToString());
    readiness.Fail(sup.error().message);
    return kExitFailure;
  }
  if (auto s = (*sup)->Start(); !s.ok()) {
    spdlog::error("startup: {}", s.error().ToString());
    readiness.Fail(s.error().message);
    return kExitFailure;
  }
  readiness.Ready();
  return (*sup)->Run();
}

// stdin and stdout go to /dev/null, stderr to supervisor.stderr: what a
// library prints before it aborts (libzmq's assertions) is the one line an
// operator needs. Its own file: supervisor.log is rotated by its sink, and
// fd 2 would follow the renamed file.
void DetachStdio(const std::string& state_dir) {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  ::dup2(null, 0);
  ::dup2(null, 1);
  int log = ::open(JoinPath(state_dir, "supervisor.stderr").c_str(),
                   O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  ::dup2(log >= 0 ? log : null, 2);
  if (log > 2) ::close(log);
  if (null > 2) ::close(null);
}

// Parent side: waits for the daemon's word.
int AwaitReadiness(int fd, pid_t child, const std::string& state_dir) {
  std::string got;
  char buf[512];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (got == "ok\n") {
    std::cout << "forge-supervisor started (pid " << child << ")\n";
    return kExitOk;
  }
  if (got.empty()) {
    got = "error: the supervisor exited during startup (see " +
          JoinPath(state_dir, "supervisor.log") + " and " +
          JoinPath(state_dir, "supervisor.stderr") + ")\n";
  }
  std::cerr << "forge-supervisor: " << got;
  ::waitpid(child, nullptr, WNOHANG);
  return kExitFailure;
}

}  // namespace

int RunStart(const StartOptions& options) {
  std::string config_path = options.config_path.empty() ? DefaultConfigPath() : options.config_path;
  if (!config_path.empty()) config_path = AbsolutePath(config_path);
  auto config = LoadEffectiveConfig(config_path);
  if (!config.ok()) {
    std::cerr << "forge-supervisor: " << config.error().message << "\n";
    return kExitUsage;
  }
  config->path = config_path;
  // In the foreground the log's console sink prints them (Serve).
  if (!options.foreground) PrintConfigWarnings(*config, config_path);
  std::string state_dir = ResolveStateDir(options.state_dir, config_path);
  // Its paths reach the children in JSON, which carries only UTF-8: other
  // bytes became U+FFFD there, and the workers wrote logs and workspaces
  // into a second directory of that name, where forge-ctl never looks.
  if (auto utf8 = CheckUtf8(state_dir, "state directory"); !utf8.ok()) {
    std::cerr << "forge-supervisor: " << utf8.error().message << "; give a UTF-8 path\n";
    return kExitUsage;
  }
  // A state directory is one with any of the files only Forge makes at its
  // top (an operator may have put supervisor.log there first, as a symlink
  // to another disk), or with nothing but names of its layout ("logs" alone
  // is too common a name to tell a state directory by).
  static const OwnDirNames kStateNames = {
      .markers = {"forge.db", "supervisor.lock", "supervisor.log", "supervisor.config",
                  "supervisor.stderr", "events.jsonl", "control.sock", "children.sock",
                  "sockets.path"},
      .layout = {"briefs", "logs", "workspaces", "worktrees", "lost+found"}};
  if (auto s = MakePrivateDir(state_dir, kStateNames); !s.ok()) {
    std::cerr << "forge-supervisor: state directory: " << s.error().message << "\n";
    // A file where the directory must be, or a shared directory, is the
    // operator's --state-dir (or FORGE_STATE_DIR) to fix: a usage error,
    // which a script must not take for "already running" (exit 1).
    return s.error().code == ErrorCode::kInvalid ? kExitUsage : kExitFailure;
  }
  if (options.foreground) return Serve(*config, config_path, state_dir, options, Readiness());

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("forge-supervisor: pipe");
    return kExitFailure;
  }
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("forge-supervisor: fork");
    return kExitFailure;
  }
  if (pid > 0) {
    ::close(fds[1]);
    return AwaitReadiness(fds[0], pid, state_dir);
  }
  ::close(fds[0]);
  ::setsid();
  DetachStdio(state_dir);
  int code = Serve(*config, config_path, state_dir, options, Readiness(fds[1]));
  std::fflush(nullptr);
  ::_exit(code);
}

int RunCheckConfig(const std::string& config_path_flag) {
  std::string path = config_path_flag.empty() ? DefaultConfigPath() : config_path_flag;
  auto config = LoadEffectiveConfig(path);
  if (!config.ok()) {
    std::cerr << config.error().message << "\n";
    return kExitUsage;
  }
  PrintConfigWarnings(*config, path);
  if (path.empty()) std::cout << "# no forge.yaml found: defaults\n";
  std::cout << DumpConfig(*config);
  return kExitOk;
}

}  // namespace forge::supervisor
