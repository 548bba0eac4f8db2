#include "common/process.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "common/sanitizers.h"

namespace forge {
namespace {

using ::testing::HasSubstr;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Polls cond until it holds or the deadline passes.
bool WaitFor(const std::function<bool()>& cond, int64_t timeout_ms = 10000) {
  int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    if (cond()) return true;
    poll(nullptr, 0, 10);
  }
  return cond();
}

// Reads fd (non-blocking) until EOF, with a deadline.
std::string ReadAll(int fd, int64_t timeout_ms = 10000) {
  std::string out;
  int64_t deadline = NowMs() + timeout_ms;
  char buf[4096];
  while (NowMs() < deadline) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 100);
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return out;
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  ADD_FAILURE() << "timed out reading; got: " << out;
  return out;
}

// Reads one line (up to '\n') from fd, with a deadline.
std::string ReadLine(int fd) {
  std::string out;
  int64_t deadline = NowMs() + 10000;
  char c;
  while (NowMs() < deadline) {
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, 100);
    ssize_t n = read(fd, &c, 1);
    if (n == 0) break;
    if (n < 0) continue;
    if (c == '\n') return out;
    out.push_back(c);
  }
  return out;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/forge-process-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

SpawnOptions Opts(std::vector<std::string> argv) {
  SpawnOptions o;
  o.argv = std::move(argv);
  o.env = {"PATH=/usr/bin:/bin"};
  return o;
}

#ifdef FORGE_ASAN
// The child runs on a stack Spawn maps and unmaps; its frames poison ASan's
// shadow and never unpoison it (they exec). Memory mapped next at that
// address (mmap reuses the hole) must not read as a stack redzone: this once
// failed in SQLite's WAL code as a false stack-buffer-underflow.
TEST(SpawnTest, ChildStackLeavesNoPoisonedShadowBehind) {
  for (int i = 0; i < 20; ++i) {
    SpawnOptions o;
    o.argv = {"/bin/true"};
    auto p = Spawn(o);
    ASSERT_TRUE(p.ok()) << p.error().ToString();
    EXPECT_TRUE(Reap(p->pid).success());
    constexpr size_t kBytes = 64 << 10;
    void* m = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    EXPECT_EQ(__asan_region_is_poisoned(m, kBytes), nullptr) << "spawn " << i;
    munmap(m, kBytes);
  }
}
#endif

TEST(SpawnTest, CapturesStdoutAndExitCode) {
  auto p = Spawn(Opts({"echo", "hello", "world"}));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(ReadAll(p->stdout_fd.get()), "hello world\n");
  ExitStatus st = Reap(p->pid);
  EXPECT_TRUE(st.success());
  EXPECT_EQ(st.ToString(), "exit 0");
}

TEST(SpawnTest, StdinFromAFile) {
  TempDir dir;
  const std::string input = dir.path() + "/prompt";
  std::string text(200 * 1024, 'x');  // more than a pipe holds: nothing has to feed it
  text += "\nlast line\n";
  { std::ofstream(input) << text; }
  const std::string copy = dir.path() + "/copy";
  SpawnOptions o = Opts({"sh", "-c", "cat > \"$0\"", copy});
  o.stdin_mode = Stdio::kFile;
  o.stdin_file = input;
  auto r = RunCommand(o, 10'000);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_TRUE(r->status.success()) << r->output;
  std::ifstream in(copy);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), text);  // all of it, then EOF
}

TEST(SpawnTest, StdinFileErrorsNameTheFile) {
  SpawnOptions o = Opts({"cat"});
  o.stdin_mode = Stdio::kFile;
  o.stdin_file = "/nonexistent-dir/prompt";
  auto p = Spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.error().message, HasSubstr("cannot run 'cat': opening its stdin "
                                           "'/nonexistent-dir/prompt': No such file"));
  o.stdin_mode = Stdio::kNull;
  o.stdout_mode = Stdio::kFile;
  auto q = Spawn(o);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(q.error().message, HasSubstr("only stdin can be a file"));
}

TEST(SpawnTest, EnvironmentIsExactlyWhatWasGiven) {
  SpawnOptions o = Opts({"/usr/bin/env"});
  o.env = {"FOO=bar baz", "PATH=/nowhere"};
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(ReadAll(p->stdout_fd.get()), "FOO=bar baz\nPATH=/nowhere\n");
  EXPECT_TRUE(Reap(p->pid).success());
}

TEST(SpawnTest, LooksUpArgv0InPathOfGivenEnv) {
  SpawnOptions o = Opts({"true"});
  o.env = {"PATH=/nonexistent-dir"};
  auto p = Spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kNotFound);

  o.env = {"PATH=/nonexistent-dir:/bin:/usr/bin"};
  auto q = Spawn(o);
  ASSERT_TRUE(q.ok()) << q.error().ToString();
  EXPECT_TRUE(Reap(q->pid).success());
}

// A child starts with the soft open-files limit set for children, not the
// spawner's (the supervisor raises its own).
TEST(SpawnTest, AChildGetsTheOpenFileLimitSetForChildren) {
  SetChildOpenFileLimit(200);
  auto r = RunCommand(Opts({"sh", "-c", "ulimit -n"}), 10'000);
  SetChildOpenFileLimit(0);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->output, "200\n");
  auto inherited = RunCommand(Opts({"sh", "-c", "ulimit -n"}), 10'000);
  ASSERT_TRUE(inherited.ok());
  struct rlimit own {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &own), 0);
  EXPECT_EQ(inherited->output, std::to_string(own.rlim_cur) + "\n");
}

TEST(SpawnTest, RunsInGivenCwd) {
  TempDir dir;
  SpawnOptions o = Opts({"pwd"});
  o.cwd = dir.path();
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(ReadAll(p->stdout_fd.get()), dir.path() + "\n");
  Reap(p->pid);
}

TEST(SpawnTest, BadCwdIsAnErrorNamingIt) {
  SpawnOptions o = Opts({"true"});
  o.cwd = "/nonexistent/forge-dir";
  auto p = Spawn(o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kIo);
  EXPECT_THAT(p.error().message, HasSubstr("/nonexistent/forge-dir"));
  EXPECT_THAT(p.error().message, HasSubstr("No such file"));
}

TEST(SpawnTest, MissingBinaryIsNotFoundNamingIt) {
  auto p = Spawn(Opts({"forge-no-such-binary-xyz", "arg"}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(p.error().message, HasSubstr("forge-no-such-binary-xyz"));
  EXPECT_THAT(p.error().message, HasSubstr("No such file or directory"));

  auto q = Spawn(Opts({"/tmp/forge-no-such-dir/bin"}));
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code, ErrorCode::kNotFound);
}

TEST(SpawnTest, NonExecutableIsIoError) {
  TempDir dir;
  std::string path = dir.path() + "/script";
  std::ofstream(path) << "#!/bin/sh\necho hi\n";
  chmod(path.c_str(), 0644);
  auto p = Spawn(Opts({path}));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kIo);
  EXPECT_THAT(p.error().message, HasSubstr(path));
  EXPECT_THAT(p.error().message, HasSubstr("Permission denied"));
}

TEST(SpawnTest, EmptyArgvIsInvalid) {
  auto p = Spawn(SpawnOptions{});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kInvalid);
}

// execve reads C strings: what follows a NUL would be dropped unseen, so
// `sh -c "true\0; false"` would run `true`. Refused, naming where, not what
// (a value may be a secret), and nothing runs.
TEST(SpawnTest, ANulByteInArgvEnvOrCwdIsRefused) {
  TempDir dir;
  const std::string ran = dir.path() + "/ran";
  SpawnOptions check = Opts({"/bin/sh", "-c", "touch " + ran + std::string(1, '\0') + "; false"});
  auto p = Spawn(check);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(p.error().message, "cannot run '/bin/sh': argument 2 contains a NUL byte");
  SpawnOptions env = Opts({"/bin/true"});
  env.env = {"PATH=/bin", std::string("TOKEN=sk-secret\0x", 17)};
  p = Spawn(env);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message,
            "cannot run '/bin/true': environment variable TOKEN contains a NUL byte");
  SpawnOptions cwd = Opts({"/bin/true"});
  cwd.cwd = dir.path() + std::string(1, '\0') + "x";
  p = Spawn(cwd);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message, "cannot run '/bin/true': its directory contains a NUL byte");
  EXPECT_FALSE(std::filesystem::exists(ran));
}

TEST(SpawnTest, OwnProcessGroup) {
  SpawnOptions o = Opts({"sleep", "30"});
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_EQ(p->pgid, p->pid);
  EXPECT_EQ(getpgid(p->pid), p->pid);
  EXPECT_NE(getpgid(p->pid), getpgrp());
  ASSERT_TRUE(KillGroup(p->pgid, SIGKILL).ok());
  ExitStatus st = Reap(p->pid);
  EXPECT_EQ(st.signal, SIGKILL);
  EXPECT_EQ(st.exit_code, -1);
  EXPECT_THAT(st.ToString(), HasSubstr("signal 9"));
}

TEST(SpawnTest, SameGroupWhenNotAsked) {
  SpawnOptions o = Opts({"true"});
  o.new_process_group = false;
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->pgid, getpgrp());
  Reap(p->pid);
}

TEST(SpawnTest, StdinPipeAndMergedStderr) {
  SpawnOptions o = Opts({"sh", "-c", "cat; echo err >&2"});
  o.stdin_mode = Stdio::kPipe;
  o.merge_stderr = true;
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_FALSE(p->stderr_fd.valid());
  ASSERT_EQ(write(p->stdin_fd.get(), "abc\n", 4), 4);
  p->stdin_fd.reset();
  EXPECT_EQ(ReadAll(p->stdout_fd.get()), "abc\nerr\n");
  EXPECT_TRUE(Reap(p->pid).success());
}

TEST(SpawnTest, SeparateStderrPipe) {
  auto p = Spawn(Opts({"sh", "-c", "echo out; echo err >&2; exit 3"}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(ReadAll(p->stdout_fd.get()), "out\n");
  EXPECT_EQ(ReadAll(p->stderr_fd.get()), "err\n");
  ExitStatus st = Reap(p->pid);
  EXPECT_EQ(st.exit_code, 3);
  EXPECT_EQ(st.ToString(), "exit 3");
}

TEST(SpawnTest, ParentEndsAreNonBlockingAndCloseOnExec) {
  SpawnOptions o = Opts({"cat"});
  o.stdin_mode = Stdio::kPipe;
  auto p = Spawn(o);
  ASSERT_TRUE(p.ok());
  for (int fd : {p->stdin_fd.get(), p->stdout_fd.get(), p->stderr_fd.get()}) {
    EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK) << fd;
    EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC) << fd;
  }
  p->stdin_fd.reset();
  Reap(p->pid);
}

TEST(SpawnTest, OtherFdsClosedExceptKeepFds) {
  // An fd without close-on-exec, as a careless library might leave one.
  int fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 3);
  std::string check = "test -e /proc/self/fd/" + std::to_string(fd);
  auto closed = RunCommand(Opts({"sh", "-c", check}), 10000);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(closed->status.exit_code, 1) << "fd leaked into the child";

  SpawnOptions o = Opts({"sh", "-c", check});
  o.keep_fds = {fd};
  auto kept = RunCommand(o, 10000);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->status.exit_code, 0) << "keep_fds fd not inherited";
  close(fd);
}

std::string StatusLine(const std::string& status, const std::string& key) {
  auto pos = status.find(key + ":");
  if (pos == std::string::npos) return "";
  auto end = status.find('\n', pos);
  std::string line = status.substr(pos + key.size() + 1, end - pos - key.size() - 1);
  line.erase(0, line.find_first_not_of(" \t"));
  return line;
}

TEST(SpawnTest, ResetsSignalMaskAndIgnoredSignals) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  struct sigaction ign {
  }, old_term{};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ign, &old_term);

  auto r = RunCommand(Opts({"cat", "/proc/self/status"}), 10000);

  sigaction(SIGTERM, &old_term, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(StatusLine(r->output, "SigBlk"), "0000000000000000");
  EXPECT_EQ(StatusLine(r->output, "SigIgn"), "0000000000000000");
}

// Spawn blocks every signal around the clone; the caller's mask is restored.
TEST(SpawnTest, CallersSignalMaskIsRestored) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);

  auto ok = RunCommand(Opts({"true"}), 10000);
  auto missing = Spawn(Opts({"/nonexistent/forge-test-binary"}));

  sigset_t after;
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(ok.ok());
  ASSERT_FALSE(missing.ok());
  for (int sig = 1; sig < NSIG; ++sig) {
    EXPECT_EQ(sigismember(&before, sig), sigismember(&after, sig)) << "signal " << sig;
  }
}

// Spawning while other threads allocate (the ZeroMQ I/O threads do): the
// child must not need any lock another thread may hold.
TEST(SpawnTest, SpawnsWhileAnotherThreadAllocates) {
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) {
      std::vector<std::string> v;
      for (int i = 0; i < 100; ++i) v.emplace_back(1000, 'x');
    }
  });
  int ran = 0;
  for (int i = 0; i < 50; ++i) {
    auto r = RunCommand(Opts({"sh", "-c", "echo ok"}), 10000);
    if (r.ok() && r->status.success() && r->output == "ok\n") ++ran;
  }
  stop = true;
  churn.join();
  EXPECT_EQ(ran, 50);
}

TEST(ProcessGroupTest, KillGroupKillsGrandchildren) {
  auto p = Spawn(Opts({"sh", "-c", "sleep 60 & echo $!; wait"}));
  ASSERT_TRUE(p.ok());
  std::string line = ReadLine(p->stdout_fd.get());
  pid_t grandchild = static_cast<pid_t>(std::stol(line));
  auto gc_start = ProcessStartTime(grandchild);
  ASSERT_TRUE(gc_start.has_value());
  ASSERT_TRUE(IsSameProcess(grandchild, *gc_start));
  EXPECT_EQ(getpgid(grandchild), p->pgid);

  ASSERT_TRUE(KillGroup(p->pgid, SIGKILL).ok());
  EXPECT_EQ(Reap(p->pid).signal, SIGKILL);
  // The grandchild was reparented; it must be dead (gone or a zombie).
  EXPECT_TRUE(WaitFor([&] { return !IsSameProcess(grandchild, *gc_start); }));
  // Signalling a group that no longer exists is fine.
  EXPECT_TRUE(KillGroup(p->pgid, SIGKILL).ok());
}

TEST(ProcessGroupTest, KillChildrenSparesWhatItIsToldAndTakesEachStraysGroup) {
  auto kept = Spawn(Opts({"sleep", "60"}));
  ASSERT_TRUE(kept.ok());
  auto stray = Spawn(Opts({"sh", "-c", "sleep 60 & echo $!; wait"}));
  ASSERT_TRUE(stray.ok());
  pid_t grandchild = static_cast<pid_t>(std::stol(ReadLine(stray->stdout_fd.get())));
  auto gc_start = ProcessStartTime(grandchild);
  ASSERT_TRUE(gc_start.has_value());

  std::vector<pid_t> killed = KillChildren([&](pid_t pid) { return pid == kept->pid; });
  EXPECT_EQ(killed, std::vector<pid_t>{stray->pid});
  EXPECT_EQ(Reap(stray->pid).signal, SIGKILL);
  // Not our child, but in the stray's group: killed with it.
  EXPECT_TRUE(WaitFor([&] { return !IsSameProcess(grandchild, *gc_start); }));
  EXPECT_FALSE(TryReap(kept->pid).has_value()) << "the spared child was killed";
  // A reaped stray is not found again; the spared one still is, when not spared.
  EXPECT_EQ(KillChildren(), std::vector<pid_t>{kept->pid});
  EXPECT_EQ(Reap(kept->pid).signal, SIGKILL);
}

TEST(ProcessGroupTest, RefusesDangerousGroups) {
  for (pid_t pgid : {0, 1, -1}) {
    Status s = KillGroup(pgid, SIGTERM);
    ASSERT_FALSE(s.ok()) << pgid;
    EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
  }
}

TEST(ProcessGroupTest, ChildDiesWithItsParent) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    close(fds[0]);
    SpawnOptions o = Opts({"sleep", "60"});
    auto p = Spawn(o);
    if (!p.ok()) _exit(2);
    int64_t msg[2] = {p->pid, ProcessStartTime(p->pid).value_or(0)};
    if (write(fds[1], msg, sizeof msg) != sizeof msg) _exit(3);
    pause();
    _exit(0);
  }
  close(fds[1]);
  int64_t msg[2] = {0, 0};
  ASSERT_EQ(read(fds[0], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  close(fds[0]);
  pid_t child = static_cast<pid_t>(msg[0]);
  ASSERT_TRUE(IsSameProcess(child, msg[1]));

  kill(middle, SIGKILL);
  waitpid(middle, nullptr, 0);
  EXPECT_TRUE(WaitFor([&] { return !IsSameProcess(child, msg[1]); }))
      << "PR_SET_PDEATHSIG did not kill the orphan";
}

TEST(ProcessInfoTest, StartTimeAndIdentity) {
  auto self = ProcessStartTime(getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_GT(*self, 0);
  EXPECT_TRUE(IsSameProcess(getpid(), *self));
  EXPECT_FALSE(IsSameProcess(getpid(), *self + 1));
  EXPECT_FALSE(IsSameProcess(0, 0));
  EXPECT_FALSE(ProcessStartTime(-1).has_value());
}

// A lock file a live program holds is seen held, by this process or
// another one; closed everywhere (or missing), it is not.
TEST(ProcessInfoTest, AFileIsOpenWhileAProcessHoldsIt) {
  char tmpl[] = "/tmp/forge-open-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  const std::string path = tmpl;
  EXPECT_TRUE(AnyProcessHasOpen(path));
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // keeps the file open until told to exit
    ::close(go[1]);
    char c;
    (void)::read(go[0], &c, 1);
    _exit(0);
  }
  ::close(go[0]);
  ::close(fd);
  EXPECT_TRUE(AnyProcessHasOpen(path)) << "the child's copy of the descriptor";
  ::close(go[1]);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(AnyProcessHasOpen(path));
  std::ofstream(path + ".other") << "x";  // another file open nowhere
  EXPECT_FALSE(AnyProcessHasOpen(path + ".other"));
  ::unlink((path + ".other").c_str());
  ::unlink(path.c_str());
  EXPECT_FALSE(AnyProcessHasOpen(path)) << "no such file";
}

// The command name is field 2 of /proc/<pid>/stat and may hold spaces,
// parentheses and digits: the fields are counted from the last ')'.
TEST(ProcessInfoTest, ACommandNameWithParenthesesAndSpacesDoesNotShiftTheFields) {
  int go[2], ready[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    if (::read(go[0], &c, 1) != 1) _exit(1);
    ::prctl(PR_SET_NAME, ") Z (1 2) 3", 0, 0, 0);
    if (::write(ready[1], "r", 1) != 1) _exit(1);
    ::pause();
    _exit(0);
  }
  auto before = ProcessStartTime(child);
  ASSERT_TRUE(before.has_value());
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
  std::string name;
  std::getline(comm, name);
  EXPECT_EQ(name, ") Z (1 2) 3");
  EXPECT_EQ(ProcessStartTime(child), before);
  EXPECT_TRUE(IsSameProcess(child, *before));  // its state is S, not the Z in its name
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  for (int fd : {go[0], go[1], ready[0], ready[1]}) ::close(fd);
}

TEST(ProcessInfoTest, DeadProcessIsNotSame) {
  auto p = Spawn(Opts({"true"}));
  ASSERT_TRUE(p.ok());
  pid_t pid = p->pid;
  int64_t start = ProcessStartTime(pid).value_or(0);  // before the reap: a zombie has one
  ASSERT_GT(start, 0);
  EXPECT_TRUE(WaitFor([&] { return !IsSameProcess(pid, start); }));  // zombie: finished
  Reap(pid);
  EXPECT_FALSE(IsSameProcess(pid, start));
  EXPECT_FALSE(ProcessStartTime(pid).has_value());
}

TEST(ProcessInfoTest, CommWithSpacesAndParens) {
  TempDir dir;
  std::string weird = dir.path() + "/a) b (c";
  std::filesystem::copy_file("/bin/sleep", weird);
  chmod(weird.c_str(), 0755);
  auto p = Spawn(Opts({weird, "60"}));
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  auto self = ProcessStartTime(getpid());
  int64_t start = ProcessStartTime(p->pid).value_or(0);
  ASSERT_GT(start, 0);
  EXPECT_GE(start, *self);
  EXPECT_TRUE(IsSameProcess(p->pid, start));
  // The same value as field 22 counted after the real comm.
  std::ifstream in("/proc/" + std::to_string(p->pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(stat, HasSubstr("(a) b (c)"));
  EXPECT_TRUE(KillGroup(p->pgid, SIGKILL).ok());
  Reap(p->pid);
}

TEST(TryReapTest, NulloptWhileRunning) {
  auto p = Spawn(Opts({"sleep", "60"}));
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(TryReap(p->pid).has_value());
  EXPECT_TRUE(KillGroup(p->pgid, SIGTERM).ok());
  std::optional<ExitStatus> st;
  EXPECT_TRUE(WaitFor([&] { return (st = TryReap(p->pid)).has_value(); }));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->signal, SIGTERM);
}

TEST(RunCommandTest, CollectsOutputAndStatus) {
  auto r = RunCommand(Opts({"sh", "-c", "echo out; echo err >&2; exit 4"}), 10000);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->output, "out\nerr\n");
  EXPECT_EQ(r->status.exit_code, 4);
  EXPECT_FALSE(r->timed_out);
}

TEST(RunCommandTest, KeepsTheTail) {
  auto r = RunCommand(Opts({"seq", "1", "200000"}), 20000, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->output.size(), 100u);
  EXPECT_TRUE(r->output.ends_with("199999\n200000\n")) << r->output;
}

TEST(RunCommandTest, TimeoutKillsTheGroup) {
  TempDir dir;
  std::string pidfile = dir.path() + "/gc.pid";
  int64_t start = NowMs();
  auto r = RunCommand(
      Opts({"sh", "-c", "sleep 60 & echo $! > " + pidfile + "; echo started; wait"}), 3000);
  int64_t elapsed = NowMs() - start;
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->status.signal, SIGKILL);
  EXPECT_EQ(r->output, "started\n");
  EXPECT_GE(elapsed, 3000);
  EXPECT_LT(elapsed, 20000);
  std::ifstream in(pidfile);
  pid_t gc = 0;
  in >> gc;
  ASSERT_GT(gc, 0);
  EXPECT_TRUE(WaitFor([&] {
    auto st = ProcessStartTime(gc);
    return !st || !IsSameProcess(gc, *st);
  }));
}

TEST(RunCommandTest, DoesNotWaitForBackgroundedDescendants) {
  int64_t start = NowMs();
  auto r = RunCommand(Opts({"sh", "-c", "sleep 60 & echo $!"}), 30000);
  ASSERT_TRUE(r.ok());
  EXPECT_LT(NowMs() - start, 20000);
  EXPECT_FALSE(r->timed_out);
  EXPECT_TRUE(r->status.success());
  pid_t gc = static_cast<pid_t>(std::stol(r->output));
  kill(gc, SIGKILL);
}

TEST(RunCommandTest, SpawnErrorsPropagate) {
  auto r = RunCommand(Opts({"forge-no-such-binary-xyz"}), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
}

TEST(EnvironmentTest, BuildEnvironmentPassesAndOverrides) {
  setenv("FORGE_TEST_PASS", "from-parent", 1);
  setenv("FORGE_TEST_OVERRIDE", "parent", 1);
  unsetenv("FORGE_TEST_UNSET");
  auto env = BuildEnvironment({"FORGE_TEST_PASS", "FORGE_TEST_OVERRIDE", "FORGE_TEST_UNSET"},
                              {{"FORGE_TEST_OVERRIDE", "task"}, {"EXTRA", "x=y"}});
  EXPECT_THAT(env, ::testing::ElementsAre("EXTRA=x=y", "FORGE_TEST_OVERRIDE=task",
                                          "FORGE_TEST_PASS=from-parent"));
  auto current = CurrentEnvironment();
  EXPECT_THAT(current, ::testing::Contains("FORGE_TEST_PASS=from-parent"));
}

// What the critic did before EnvironmentTemplate, per check: the contract.
std::vector<std::string> MapMerge(const std::vector<std::string>& base,
                                  const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> env;
  for (const auto& kv : base) {
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : overrides) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

TEST(EnvironmentTest, TemplateWithOverridesIsTheMapMerge) {
  const std::vector<std::string> base = {"PATH=/usr/bin", "HOME=/root", "NOEQUALS", "DUP=first",
                                         "EMPTY=",        "A=x=y",      "DUP=last", "Z_LAST=z",
                                         "=novalue",      "LANG=C"};
  EnvironmentTemplate env(base);
  EXPECT_EQ(env.size(), 8u);  // NOEQUALS dropped, DUP once; "=novalue" has the empty name
  const std::vector<std::map<std::string, std::string>> cases = {
      {},
      {{"PATH", "/bin"}},                      // replaces
      {{"AAA", "first"}},                      // before every entry
      {{"ZZZ", "after"}},                      // after every entry
      {{"DUP", "over"}, {"M", "middle"}},      // replaces the duplicated name; inserts between
      {{"", "empty name"}, {"EMPTY", "now"}},  // the empty name; an empty value replaced
      {{"A", ""}, {"B", "1"}, {"HOME", "/h"}, {"LANG", "C.UTF-8"}, {"Z_LAST", "zz"}, {"ZZ", "2"}},
  };
  for (const auto& overrides : cases) {
    EXPECT_EQ(env.With(overrides), MapMerge(base, overrides)) << overrides.size() << " overrides";
  }
  EXPECT_EQ(EnvironmentTemplate({}).With({{"K", "v"}}), std::vector<std::string>{"K=v"});
}

TEST(EnvironmentTest, TemplateOfThisProcessSpawnsWithIt) {
  ASSERT_EQ(setenv("FORGE_TEST_TEMPLATE", "base", 1), 0);
  EnvironmentTemplate env(CurrentEnvironment());
  SpawnOptions o = Opts({"sh", "-c", "echo \"$FORGE_TEST_TEMPLATE $FORGE_TEST_EXTRA\""});
  o.env = env.With({{"FORGE_TEST_EXTRA", "extra"}});
  auto r = RunCommand(o, 10'000);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->output, "base extra\n");
  unsetenv("FORGE_TEST_TEMPLATE");
}

TEST(ExitStatusTest, FromWaitStatus) {
  auto p = Spawn(Opts({"sh", "-c", "kill -TERM $$"}));
  ASSERT_TRUE(p.ok());
  ExitStatus st = Reap(p->pid);
  EXPECT_EQ(st.signal, SIGTERM);
  EXPECT_FALSE(st.success());
  EXPECT_THAT(st.ToString(), HasSubstr("signal 15 ("));
}

}  // namespace
}  // namespace forge
