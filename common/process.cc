#include "common/process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

#include "common/paths.h"
#include "common/sanitizers.h"
#include "common/utf8.h"

extern char** environ;

namespace forge {
namespace {

std::string Errno(int err) {
  return strerror(err);
}

Error SysError(const std::string& what, int err) {
  return MakeError(ErrorCode::kIo, what + ": " + Errno(err));
}

int64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Moves fd to a number >= 3 (close-on-exec), so that dup2 onto 0/1/2 in the
// child can never clobber another descriptor it still needs.
Result<UniqueFd> AboveStdio(int fd) {
  if (fd >= 3) return UniqueFd(fd);
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  ::close(fd);
  if (moved < 0) return SysError("fcntl(F_DUPFD_CLOEXEC)", err);
  return UniqueFd(moved);
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return SysError("pipe2", errno);
  Pipe p;
  FORGE_ASSIGN_OR_RETURN(p.read, AboveStdio(fds[0]));
  FORGE_ASSIGN_OR_RETURN(p.write, AboveStdio(fds[1]));
  return p;
}

Result<UniqueFd> OpenDevNull() {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return SysError("open /dev/null", errno);
  return AboveStdio(fd);
}

// Every path exec should try for argv0, in order (execvpe semantics).
std::vector<std::string> ExecCandidates(const std::string& argv0,
                                        const std::vector<std::string>& env) {
  if (argv0.find('/') != std::string::npos) return {argv0};
  std::vector<std::string> out;
  std::string path = ExecPath(env);
  size_t start = 0;
  while (true) {
    size_t end = path.find(':', start);
    std::string dir =
        path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    // push_back/append rather than `dir = "."` and `dir + "/" + argv0`: GCC 12
    // at -O3 reports a false -Wrestrict inside libstdc++ for those (PR 105329).
    if (dir.empty()) dir.push_back('.');
    dir.push_back('/');
    dir.append(argv0);
    out.push_back(std::move(dir));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

// What the child reports when it cannot exec (stage 0: it did exec).
enum ChildStage : int { kStageChdir = 1, kStageExec = 2, kStageSetup = 3 };

std::atomic<uint64_t> g_child_nofile{0};  // SetChildOpenFileLimit
struct ChildFailure {
  int stage;
  int err;
};

// Everything the child needs, prepared before the clone: the child shares
// this process's memory and runs only async-signal-safe calls (other threads
// may hold malloc or stdio locks), on its own stack, while the calling
// thread is suspended until it has exec'd or exited (CLONE_VFORK).
struct ChildPlan {
  std::vector<char*> argv;
  std::vector<char*> envp;
  std::vector<std::string> candidates;
  std::vector<const char*> candidate_ptrs;
  const char* cwd = nullptr;
  int stdio[3] = {-1, -1, -1};  // -1: inherit
  bool merge_stderr = false;
  bool new_process_group = true;
  bool die_with_parent = true;
  pid_t parent_pid = 0;
  const int* keep_fds = nullptr;
  size_t num_keep_fds = 0;
  bool set_nofile = false;  // SetChildOpenFileLimit
  struct rlimit nofile {};
  // Written by the child, read by the parent once clone returns: the memory
  // is shared, and the parent resumes only after the exec or the _exit.
  ChildFailure failure{0, 0};
};

[[noreturn]] void ChildFail(ChildPlan& plan, int stage, int err) {
  plan.failure = ChildFailure{stage, err};
  _exit(127);
}

// Runs in the cloned child. Async-signal-safe calls only. Every signal is
// blocked on entry (the parent blocked them around clone), so no handler of
// the parent can run on the shared memory before the dispositions are reset.
int ChildMain(void* arg) {
  ChildPlan& plan = *static_cast<ChildPlan*>(arg);
  // Dispositions first, then the mask, so no inherited handler can run here.
  // The child has its own handler table (no CLONE_SIGHAND): this does not
  // touch the parent's.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &dfl, nullptr);  // fails harmlessly for reserved/RT signals
  }
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);

  if (plan.new_process_group && setpgid(0, 0) != 0) ChildFail(plan, kStageSetup, errno);
  if (plan.die_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(plan, kStageSetup, errno);
    // The parent may have died before prctl took effect.
    if (getppid() != plan.parent_pid) _exit(127);
  }
  if (plan.cwd != nullptr && chdir(plan.cwd) != 0) ChildFail(plan, kStageChdir, errno);

  for (int target = 0; target < 3; ++target) {
    if (plan.stdio[target] < 0) continue;
    if (dup2(plan.stdio[target], target) < 0) ChildFail(plan, kStageSetup, errno);
  }
  if (plan.merge_stderr && dup2(1, 2) < 0) ChildFail(plan, kStageSetup, errno);

  // Everything above stdio closes at exec, except keep_fds.
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < max; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  // After that pass: with the lower limit, its fallback would stop short of
  // this process's fds above it.
  if (plan.set_nofile && setrlimit(RLIMIT_NOFILE, &plan.nofile) != 0) {
    ChildFail(plan, kStageSetup, errno);
  }
  for (size_t i = 0; i < plan.num_keep_fds; ++i) fcntl(plan.keep_fds[i], F_SETFD, 0);

  // execvpe semantics: EACCES is remembered but the search goes on; errors
  // other than "not here" stop it.
  int err = ENOENT;
  bool saw_eacces = false;
  for (const char* path : plan.candidate_ptrs) {
    execve(path, plan.argv.data(), plan.envp.data());
    err = errno;
    if (err == EACCES) {
      saw_eacces = true;
      continue;
    }
    if (err != ENOENT && err != ENOTDIR) break;
  }
  if (saw_eacces && (err == ENOENT || err == ENOTDIR)) err = EACCES;
  ChildFail(plan, kStageExec, err);
}

Error FailureToError(const SpawnOptions& options, const ChildFailure& f) {
  const std::string& argv0 = options.argv[0];
  switch (f.stage) {
    case kStageChdir:
      return MakeError(ErrorCode::kIo, "cannot run '" + argv0 + "': chdir to '" + options.cwd +
                                           "' failed: " + Errno(f.err));
    case kStageExec:
      return MakeError(f.err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                       "cannot run '" + argv0 + "': " + Errno(f.err));
    default:
      return MakeError(ErrorCode::kIo,
                       "cannot run '" + argv0 + "': child setup failed: " + Errno(f.err));
  }
}

// The child's stack: it runs only ChildMain (a few frames, no large locals;
// argv/envp are built beforehand), so 64 KiB is ample. glibc's posix_spawn
// sizes its own the same way (32 KiB plus argv).
constexpr size_t kChildStackBytes = 64 << 10;

// clone(CLONE_VM | CLONE_VFORK) the way glibc's posix_spawn does, instead
// of fork(): no copy of the page tables of a multi-threaded parent (the
// ZeroMQ I/O threads' stacks included) for a child that only execs, and the
// parent resumes once the exec has happened or failed. Returns the pid or -1
// with errno set.
//
// The stack is mapped once per thread and kept: a munmap a spawn made the
// kernel flush this process's TLB on every CPU running one of its threads
// (an IPI each, dear in a VM; 2-3 % of a critic's CPU a check), and each
// fresh mapping faulted its pages in again. One per thread, because the
// worker's maintenance thread spawns git while its loop may spawn too.
class ChildStack {
 public:
  ChildStack() = default;
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  ~ChildStack() {
    if (base_ != nullptr) munmap(base_, kChildStackBytes);
  }
  // The stack's lowest address, or nullptr with errno set.
  void* Get() {
    if (base_ == nullptr) {
      void* p = mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      base_ = p;
    }
    return base_;
  }

 private:
  void* base_ = nullptr;
};

pid_t CloneAndExec(ChildPlan& plan) {
  thread_local ChildStack child_stack;
  void* stack = child_stack.Get();
  if (stack == nullptr) return -1;
  // Block everything so that no handler of ours runs in the child (on our
  // memory) before ChildMain has reset the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = clone(ChildMain, static_cast<char*>(stack) + kChildStackBytes,
                    CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  int err = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
#ifdef FORGE_ASAN
  // The child's instrumented frames poisoned shadow memory for this stack and
  // never returned to unpoison it (they exec'd or _exit'ed). Left poisoned,
  // the next child's frames (or whatever is mapped here once the thread has
  // ended: SQLite's buffers, once) read as a stack redzone: a false
  // stack-buffer-underflow.
  __asan_unpoison_memory_region(stack, kChildStackBytes);
#endif
  errno = err;
  return pid;
}

}  // namespace

std::optional<std::vector<std::string>> StatFields(pid_t pid) {
  // read(2), not iostreams: this runs for every agent started (its start
  // time is its identity), and a stream costs more than the read itself.
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];  // the line is a few hundred bytes; comm is at most 64
  ssize_t n;
  do {
    n = read(fd, buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return std::nullopt;
  std::string_view line(buf, static_cast<size_t>(n));
  size_t close_paren = line.rfind(')');
  if (close_paren == std::string_view::npos) return std::nullopt;
  std::vector<std::string> fields;  // fields[0] is field 3 (state)
  fields.reserve(52);
  std::string_view rest = line.substr(close_paren + 1);
  while (!rest.empty()) {
    size_t start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    size_t end = rest.find_first_of(" \n", start);
    fields.emplace_back(rest.substr(start, end - start));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  return fields;
}

void SetChildOpenFileLimit(uint64_t soft) {
  g_child_nofile.store(soft);
}

// A NUL ends a C string: execve would take what comes before it and drop
// the rest unseen (a check `true\0; false` would run `true` and pass).
// Where such text comes in it is refused (the submit check, the config);
// this is the last guard, for a task stored before those checks. Values
// are not shown: an argument or a variable may be a secret.
Status CheckNoNul(const SpawnOptions& options) {
  const auto has_nul = [](const std::string& s) { return s.find('\0') != std::string::npos; };
  const std::string what = "cannot run '" + ShowBytes(options.argv[0]) + "': ";
  for (size_t i = 0; i < options.argv.size(); ++i) {
    if (has_nul(options.argv[i])) {
      return MakeError(ErrorCode::kInvalid,
                       what + "argument " + std::to_string(i) + " contains a NUL byte");
    }
  }
  for (const auto& entry : options.env) {
    if (has_nul(entry)) {
      return MakeError(ErrorCode::kInvalid, what + "environment variable " +
                                                ShowBytes(entry.substr(0, entry.find('='))) +
                                                " contains a NUL byte");
    }
  }
  if (has_nul(options.cwd)) {
    return MakeError(ErrorCode::kInvalid, what + "its directory contains a NUL byte");
  }
  return Status::Ok();
}

Result<SpawnedProcess> Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return MakeError(ErrorCode::kInvalid, "cannot spawn: empty argv");
  }
  FORGE_RETURN_IF_ERROR(CheckNoNul(options));
  SpawnedProcess proc;
  ChildPlan plan;
  // execve takes char* const[] but never writes through them: the caller's
  // strings are used as they are, not copied once more.
  plan.argv.reserve(options.argv.size() + 1);
  for (const auto& a : options.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  plan.argv.push_back(nullptr);
  plan.envp.reserve(options.env.size() + 1);
  for (const auto& e : options.env) plan.envp.push_back(const_cast<char*>(e.c_str()));
  plan.envp.push_back(nullptr);
  plan.candidates = ExecCandidates(options.argv[0], options.env);
  for (const auto& c : plan.candidates) plan.candidate_ptrs.push_back(c.c_str());
  if (!options.cwd.empty()) plan.cwd = options.cwd.c_str();

  // Child-side ends live until the clone; the parent closes them right after.
  UniqueFd child_ends[3];
  UniqueFd dev_null;
  const Stdio modes[3] = {options.stdin_mode, options.stdout_mode, options.stderr_mode};
  for (int i = 0; i < 3; ++i) {
    if (i == 2 && options.merge_stderr) continue;
    if (modes[i] == Stdio::kPipe) {
      FORGE_ASSIGN_OR_RETURN(Pipe p, MakePipe());
      // F_SETFL alone, not SetNonBlocking's F_GETFL first: a new pipe's end
      // has no status flag but its access mode, which F_SETFL ignores. One
      // system call a pipe less, two an agent (bench/README.md, session 34).
      const int ours = i == 0 ? p.write.get() : p.read.get();
      if (fcntl(ours, F_SETFL, O_NONBLOCK) != 0) {
        return SysError("fcntl(O_NONBLOCK) on fd " + std::to_string(ours), errno);
      }
      if (i == 0) {
        child_ends[i] = std::move(p.read);
        proc.stdin_fd = std::move(p.write);
      } else {
        child_ends[i] = std::move(p.write);
        (i == 1 ? proc.stdout_fd : proc.stderr_fd) = std::move(p.read);
      }
      plan.stdio[i] = child_ends[i].get();
    } else if (modes[i] == Stdio::kFile) {
      if (i != 0) {
        return MakeError(ErrorCode::kInvalid,
                         "cannot spawn '" + options.argv[0] + "': only stdin can be a file");
      }
      int fd = ::open(options.stdin_file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        return SysError(
            "cannot run '" + options.argv[0] + "': opening its stdin '" + options.stdin_file + "'",
            errno);
      }
      FORGE_ASSIGN_OR_RETURN(child_ends[i], AboveStdio(fd));
      plan.stdio[i] = child_ends[i].get();
    } else if (modes[i] == Stdio::kNull) {
      if (!dev_null.valid()) {
        FORGE_ASSIGN_OR_RETURN(dev_null, OpenDevNull());
      }
      plan.stdio[i] = dev_null.get();
    }
  }
  plan.merge_stderr = options.merge_stderr;
  plan.new_process_group = options.new_process_group;
  plan.die_with_parent = options.die_with_parent;
  plan.parent_pid = getpid();
  if (uint64_t soft = g_child_nofile.load();
      soft != 0 && getrlimit(RLIMIT_NOFILE, &plan.nofile) == 0) {
    plan.nofile.rlim_cur = std::min<rlim_t>(soft, plan.nofile.rlim_max);
    plan.set_nofile = true;
  }
  plan.keep_fds = options.keep_fds.data();
  plan.num_keep_fds = options.keep_fds.size();

  pid_t pid = CloneAndExec(plan);
  if (pid < 0) return SysError("clone for '" + options.argv[0] + "'", errno);

  // The child has exec'd or exited by now (CLONE_VFORK), so its own
  // setpgid(0, 0) has happened: the group exists before anyone signals it.
  for (auto& fd : child_ends) fd.reset();
  dev_null.reset();
  if (plan.failure.stage != 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return FailureToError(options, plan.failure);
  }
  proc.pid = pid;
  proc.pgid = options.new_process_group ? pid : getpgrp();
  return proc;
}

std::string ExitStatus::ToString() const {
  if (signal != 0) {
    const char* name = strsignal(signal);
    return "signal " + std::to_string(signal) + " (" + (name ? name : "unknown") + ")";
  }
  return "exit " + std::to_string(exit_code);
}

ExitStatus ExitStatus::FromWaitStatus(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  }
  return s;
}

std::optional<ExitStatus> TryReap(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return std::nullopt;
  if (r < 0) return ExitStatus{};  // not our child / already reaped: report it ended
  return ExitStatus::FromWaitStatus(status);
}

ExitStatus Reap(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ExitStatus{};
  return ExitStatus::FromWaitStatus(status);
}

Status KillGroup(pid_t pgid, int sig) {
  // kill(-1) or kill(0) would hit far more than one group.
  if (pgid <= 1) {
    return MakeError(ErrorCode::kInvalid,
                     "refusing to signal process group " + std::to_string(pgid));
  }
  if (kill(-pgid, sig) != 0 && errno != ESRCH) {
    return SysError("kill(-" + std::to_string(pgid) + ", " + std::to_string(sig) + ")", errno);
  }
  return Status::Ok();
}

std::vector<pid_t> KillChildren(const std::function<bool(pid_t)>& spare) {
  std::vector<pid_t> killed;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return killed;
  const pid_t self = getpid();
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    pid_t pid = static_cast<pid_t>(atol(e->d_name));
    auto fields = StatFields(pid);  // [0] state, [1] parent, [2] group
    if (!fields || fields->size() < 3 || (*fields)[0] == "Z" || (*fields)[0] == "X") continue;
    if (atol((*fields)[1].c_str()) != self || (spare && spare(pid))) continue;
    // With its group: the group's members are its descendants, which would
    // otherwise come to us one generation at a time as each parent dies.
    if (atol((*fields)[2].c_str()) == pid) (void)KillGroup(pid, SIGKILL);
    if (kill(pid, SIGKILL) == 0) killed.push_back(pid);
  }
  closedir(dir);
  return killed;
}

bool AnyProcessHasOpen(const std::string& path) {
  struct stat target {};
  if (::stat(path.c_str(), &target) != 0) return false;
  DIR* procs = opendir("/proc");
  if (procs == nullptr) return false;
  bool open = false;
  while (!open) {
    dirent* p = readdir(procs);
    if (p == nullptr) break;
    if (p->d_name[0] < '1' || p->d_name[0] > '9') continue;
    const std::string fds = std::string("/proc/") + p->d_name + "/fd";
    DIR* dir = opendir(fds.c_str());
    if (dir == nullptr) continue;  // gone, or not ours to look at
    while (dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      struct stat st {};
      if (::stat((fds + "/" + e->d_name).c_str(), &st) == 0 && st.st_dev == target.st_dev &&
          st.st_ino == target.st_ino) {
        open = true;
        break;
      }
    }
    closedir(dir);
  }
  closedir(procs);
  return open;
}

std::optional<int64_t> ProcessStartTime(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto fields = StatFields(pid);
  // Field 22 (starttime) is fields[19].
  if (!fields || fields->size() < 20) return std::nullopt;
  const std::string& s = (*fields)[19];
  char* end = nullptr;
  errno = 0;
  long long v = strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') return std::nullopt;
  return static_cast<int64_t>(v);
}

bool IsSameProcess(pid_t pid, int64_t start_time) {
  if (pid <= 0) return false;
  auto fields = StatFields(pid);
  if (!fields || fields->size() < 20) return false;
  // A zombie has finished; only its exit status is left to collect.
  const std::string& state = (*fields)[0];
  if (state == "Z" || state == "X" || state == "x") return false;
  auto st = ProcessStartTime(pid);
  return st && *st == start_time;
}

namespace {

// Appends data keeping at most max bytes (the tail). Trims in batches so a
// long output does not cost a memmove per read.
void AppendTail(std::string& out, const char* data, size_t n, size_t max) {
  out.append(data, n);
  if (out.size() > 2 * max + 65536) out.erase(0, out.size() - max);
}

// Reads what is available; false at EOF or error.
bool DrainOnce(int fd, std::string& out, size_t max, bool* would_block) {
  char buf[65536];
  *would_block = false;
  while (true) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      AppendTail(out, buf, static_cast<size_t>(n), max);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      *would_block = true;
      return true;
    }
    return false;
  }
}

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

Result<RunResult> RunCommand(const SpawnOptions& options, int64_t timeout_ms, size_t max_output) {
  SpawnOptions opts = options;
  opts.stdout_mode = Stdio::kPipe;
  if (opts.stderr_mode == Stdio::kPipe) opts.merge_stderr = true;
  if (opts.stdin_mode == Stdio::kPipe) opts.stdin_mode = Stdio::kNull;
  FORGE_ASSIGN_OR_RETURN(SpawnedProcess proc, Spawn(opts));

  RunResult result;
  UniqueFd pidfd(PidfdOpen(proc.pid));
  const int64_t deadline = timeout_ms > 0 ? MonotonicMs() + timeout_ms : -1;
  bool open = true;
  std::optional<ExitStatus> exited;
  while (true) {
    if (!exited) exited = TryReap(proc.pid);
    if (exited) {
      // The process is gone: take what it wrote, but do not wait on
      // descendants that may still hold the pipe.
      bool would_block = false;
      if (open) DrainOnce(proc.stdout_fd.get(), result.output, max_output, &would_block);
      break;
    }
    int wait_ms = -1;
    if (deadline >= 0) {
      int64_t left = deadline - MonotonicMs();
      if (left <= 0) {
        result.timed_out = true;
        break;
      }
      wait_ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
    }
    pollfd fds[2];
    nfds_t nfds = 0;
    if (open) fds[nfds++] = {proc.stdout_fd.get(), POLLIN, 0};
    if (pidfd.valid()) {
      fds[nfds++] = {pidfd.get(), POLLIN, 0};
    } else {
      // No pidfd (old kernel): wake periodically to check for exit.
      wait_ms = wait_ms < 0 ? 50 : std::min(wait_ms, 50);
    }
    int r = poll(fds, nfds, wait_ms);
    if (r < 0 && errno != EINTR) return SysError("poll", errno);
    if (open && r > 0 && fds[0].revents != 0) {
      bool would_block = false;
      open = DrainOnce(proc.stdout_fd.get(), result.output, max_output, &would_block);
    }
  }
  if (result.timed_out) {
    if (opts.new_process_group) {
      (void)KillGroup(proc.pgid, SIGKILL);
    } else {
      kill(proc.pid, SIGKILL);
    }
    result.status = Reap(proc.pid);
  } else {
    result.status = *exited;
  }
  if (result.output.size() > max_output) {
    result.output.erase(0, result.output.size() - max_output);
  }
  return result;
}

bool IsEnvName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::vector<std::string> CurrentEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

std::vector<std::string> BuildEnvironment(const std::vector<std::string>& pass_names,
                                          const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> merged;
  for (const auto& name : pass_names) {
    if (const char* v = getenv(name.c_str())) merged[name] = v;
  }
  for (const auto& [k, v] : extra) merged[k] = v;
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (const auto& [k, v] : merged) out.push_back(k + "=" + v);
  return out;
}

EnvironmentTemplate::EnvironmentTemplate(const std::vector<std::string>& entries) {
  std::map<std::string, const std::string*> last;  // name -> its last entry
  for (const auto& kv : entries) {
    size_t eq = kv.find('=');
    if (eq != std::string::npos) last[kv.substr(0, eq)] = &kv;
  }
  entries_.reserve(last.size());
  for (const auto& [name, text] : last) entries_.push_back({name, *text});
}

std::vector<std::string> EnvironmentTemplate::With(
    const std::map<std::string, std::string>& overrides) const {
  std::vector<std::string> out;
  out.reserve(entries_.size() + overrides.size());
  auto base = entries_.begin();
  for (const auto& [name, value] : overrides) {
    for (; base != entries_.end() && base->name < name; ++base) out.push_back(base->text);
    if (base != entries_.end() && base->name == name) ++base;  // overridden
    out.push_back(name + "=" + value);
  }
  for (; base != entries_.end(); ++base) out.push_back(base->text);
  return out;
}

Status SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return SysError("fcntl(O_NONBLOCK) on fd " + std::to_string(fd), errno);
  }
  return Status::Ok();
}

Status SetCloseOnExec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
    return SysError("fcntl(FD_CLOEXEC) on fd " + std::to_string(fd), errno);
  }
  return Status::Ok();
}

}  // namespace forge
