#include "proto/child_job.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/process.h"

namespace forge::proto {
namespace {

// Each case runs in a death-test child: it becomes a subreaper and owns its
// own children, so nothing leaks into (or is killed in) the test binary.
// Exit codes name the failing step.

// Parent pid in /proc/<pid>/stat, -1 when gone.
pid_t ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  size_t close = line.rfind(')');
  if (close == std::string::npos || close + 4 >= line.size()) return -1;
  return static_cast<pid_t>(atol(line.c_str() + close + 4));
}

// Whether a child of `parent` leads a session of its own (its setsid is done).
bool HasChildInASessionOfItsOwn(pid_t parent) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    pid_t pid = static_cast<pid_t>(atol(e.path().filename().c_str()));
    if (pid > 0 && ParentOf(pid) == parent && getsid(pid) == pid) return true;
  }
  return false;
}

char StateOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return '?';
  size_t close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() ? '?' : line[close + 2];
}

template <typename F>
bool PollUntil(F done, int timeout_ms = 10'000) {
  for (int waited = 0; waited < timeout_ms; ++waited) {
    if (done()) return true;
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }
  return done();
}

TEST(KillOrphansTest, NoChildrenIsZero) {
  // A fresh death-test child has no children of its own.
  EXPECT_EXIT(_exit(KillOrphans() == 0 ? 0 : 1), ::testing::ExitedWithCode(0), "");
}

// Runs `script` (which backgrounds a process and echoes its pid) in a shell
// that then exits: the background process is this subreaper's orphan. Its
// pid, or exits the death-test child with 3 or 4.
pid_t StartOrphan(const char* script) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  o.stdout_mode = Stdio::kPipe;
  o.stderr_mode = Stdio::kNull;
  auto run = RunCommand(o, 10'000);
  if (!run.ok() || !run->status.success()) _exit(3);
  pid_t orphan = static_cast<pid_t>(atol(run->output.c_str()));
  if (orphan <= 0) _exit(4);
  return orphan;
}

[[noreturn]] void OrphanCase() {
  if (!BecomeChildReaper().ok()) _exit(2);
  pid_t orphan = StartOrphan("sleep 1000 >/dev/null 2>&1 & echo $!");
  // The shell has exited and been reaped: the sleep is ours now.
  if (!PollUntil([&] { return ParentOf(orphan) == getpid(); })) _exit(5);
  if (KillOrphans() != 1) _exit(6);
  int status = 0;
  if (waitpid(orphan, &status, 0) != orphan) _exit(7);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) _exit(8);
  // Nothing left: the no-children fast path.
  _exit(KillOrphans() == 0 ? 0 : 9);
}

TEST(KillOrphansTest, KillsAnOrphanReparentedToTheSubreaper) {
  EXPECT_EXIT(OrphanCase(), ::testing::ExitedWithCode(0), "");
}

// Two levels: an orphan whose own child, in a session of its own (out of
// reach of the orphan's group kill), is killed only once the orphan is dead
// and has handed it over (the worker's single pass left such grandchildren
// running, e.g. a `setsid` server the agent started).
[[noreturn]] void GrandOrphanCase() {
  if (!BecomeChildReaper().ok()) _exit(2);
  pid_t orphan = StartOrphan(
      "setsid /bin/sh -c 'setsid sleep 1000 & exec sleep 1000' >/dev/null 2>&1 & echo $!");
  // Ours, and exec'd into sleep, and its own child (the grandchild) in a
  // session of its own: before its setsid the orphan's group kill takes it.
  auto comm = [&] {
    std::ifstream in("/proc/" + std::to_string(orphan) + "/comm");
    std::string name;
    std::getline(in, name);
    return name;
  };
  if (!PollUntil([&] {
        return ParentOf(orphan) == getpid() && comm() == "sleep" &&
               HasChildInASessionOfItsOwn(orphan);
      })) {
    _exit(5);
  }
  if (KillOrphans() != 2) _exit(6);
  // Both dead, both ours to reap, and nothing else.
  int reaped = 0;
  for (int status = 0; waitpid(-1, &status, 0) > 0;) {
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) _exit(7);
    ++reaped;
  }
  _exit(reaped == 2 ? 0 : 8);
}

TEST(KillOrphansTest, KillsTheOrphansOfAnOrphanToo) {
  EXPECT_EXIT(GrandOrphanCase(), ::testing::ExitedWithCode(0), "");
}

[[noreturn]] void ZombieCase() {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "exit 7"};
  o.stdout_mode = Stdio::kNull;
  o.stderr_mode = Stdio::kNull;
  auto p = Spawn(o);
  if (!p.ok()) _exit(2);
  if (!PollUntil([&] { return StateOf(p->pid) == 'Z'; })) _exit(3);
  // A zombie is not killed (it is not live) and is not reaped here:
  // its exit status still belongs to ReapAll / the caller.
  if (KillOrphans() != 0) _exit(4);
  ExitStatus st = Reap(p->pid);
  _exit(st.exit_code == 7 ? 0 : 5);
}

TEST(KillOrphansTest, LeavesAZombieChildToBeReaped) {
  EXPECT_EXIT(ZombieCase(), ::testing::ExitedWithCode(0), "");
}

// A command that writes faster than its sink takes the output (here a sink
// slowed to 64 MB/s against `yes`): one HandleReady reads a bounded amount
// and returns to the caller's poll, whose heartbeats, timeouts and cancels
// must go on. It used to read for as long as the command wrote. (The sink
// kills the group past 8 MiB so that the old behaviour ends, and fails.)
TEST(ChildJobTest, OneReadOfAFloodingCommandIsBounded) {
  SpawnOptions o;
  o.argv = {"/usr/bin/yes"};
  size_t bytes = 0;
  pid_t group = -1;
  auto job = ChildJob::Start(o, "", [&](int, std::string_view data) {
    bytes += data.size();
    timespec slow{0, 1'000'000};  // 1 ms a chunk of at most 64 KiB
    nanosleep(&slow, nullptr);
    if (bytes > (8u << 20) && group > 0) (void)KillGroup(group, SIGKILL);
  });
  ASSERT_TRUE(job.ok()) << job.error().message;
  group = (*job)->pgid();
  std::vector<PollFd> fds;
  (*job)->AppendPollFds(fds);
  ASSERT_FALSE(fds.empty());
  // Until the sink has had 8 MiB (and killed yes): no call reads past its budget.
  for (int calls = 0; bytes <= (8u << 20) && calls < 10'000; ++calls) {
    pollfd out{fds[0].fd, POLLIN, 0};
    if (::poll(&out, 1, 5000) != 1) break;
    for (auto& f : fds) f.revents = ZMQ_POLLIN;
    const size_t before = bytes;
    (*job)->HandleReady(fds);
    ASSERT_LE(bytes - before, (1u << 20) + (64u << 10)) << "one call read on past its budget";
  }
  EXPECT_GT(bytes, 1u << 20) << "yes wrote too little to test anything";
  KillAndReap(**job, 5000);
}

// The leader exited and left a member of its group writing: the group is
// killed before the pipes are drained, so the drain takes what was there
// and ends. It used to drain first, for as long as the member wrote.
TEST(ChildJobTest, AWriterLeftByTheLeaderIsKilledBeforeTheDrain) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "/usr/bin/yes & sleep 0.2"};
  size_t bytes = 0;
  pid_t group = -1;
  auto job = ChildJob::Start(o, "", [&](int, std::string_view data) {
    bytes += data.size();
    timespec slow{0, 1'000'000};
    nanosleep(&slow, nullptr);
    if (bytes > (8u << 20) && group > 0) (void)KillGroup(group, SIGKILL);
  });
  ASSERT_TRUE(job.ok()) << job.error().message;
  group = (*job)->pgid();
  ExitStatus leader = Reap((*job)->pid());  // the shell, once its sleep is over
  (*job)->OnExit(leader);
  EXPECT_LE(bytes, (64u << 10) * 2) << "the drain read what the writer went on writing";
}

}  // namespace
}  // namespace forge::proto
