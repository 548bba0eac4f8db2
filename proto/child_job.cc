#include "proto/child_job.h"

#include <errno.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

namespace forge::proto {

forge::Result<std::unique_ptr<ChildJob>> ChildJob::Start(SpawnOptions options,
                                                         std::string stdin_data, OutputSink sink) {
  options.new_process_group = true;
  if (!stdin_data.empty()) options.stdin_mode = Stdio::kPipe;
  std::unique_ptr<ChildJob> job(new ChildJob());
  FORGE_ASSIGN_OR_RETURN(job->proc_, Spawn(options));
  job->stdin_data_ = std::move(stdin_data);
  job->sink_ = std::move(sink);
  if (job->proc_.stdin_fd.valid()) job->WriteStdin();
  return job;
}

ChildJob::~ChildJob() {
  // Never leave a running group behind, whatever the caller forgot.
  if (!exited() && proc_.pgid > 1) (void)KillGroup(proc_.pgid, SIGKILL);
}

void ChildJob::AppendPollFds(std::vector<PollFd>& fds) const {
  if (proc_.stdout_fd.valid()) fds.push_back({proc_.stdout_fd.get(), ZMQ_POLLIN, 0});
  if (proc_.stderr_fd.valid()) fds.push_back({proc_.stderr_fd.get(), ZMQ_POLLIN, 0});
  if (proc_.stdin_fd.valid()) fds.push_back({proc_.stdin_fd.get(), ZMQ_POLLOUT, 0});
}

void ChildJob::HandleReady(const std::vector<PollFd>& fds) {
  for (const auto& f : fds) {
    if (f.revents == 0) continue;
    if (proc_.stdout_fd.valid() && f.fd == proc_.stdout_fd.get()) {
      ReadAvailable(proc_.stdout_fd, 1);
    } else if (proc_.stderr_fd.valid() && f.fd == proc_.stderr_fd.get()) {
      ReadAvailable(proc_.stderr_fd, 2);
    } else if (proc_.stdin_fd.valid() && f.fd == proc_.stdin_fd.get()) {
      WriteStdin();
    }
  }
}

// Reads until the pipe would block or kReadBudget is read; closes it at
// EOF or on error.
void ChildJob::ReadAvailable(UniqueFd& fd, int stream) {
  char buf[65536];
  for (size_t read = 0; fd.valid() && read < kReadBudget;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      if (sink_) sink_(stream, std::string_view(buf, static_cast<size_t>(n)));
      read += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    fd.reset();  // EOF or a read error: nothing more will come
  }
}

void ChildJob::WriteStdin() {
  while (proc_.stdin_fd.valid() && stdin_written_ < stdin_data_.size()) {
    ssize_t n = ::write(proc_.stdin_fd.get(), stdin_data_.data() + stdin_written_,
                        stdin_data_.size() - stdin_written_);
    if (n > 0) {
      stdin_written_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    // EPIPE: the command closed its stdin; the rest is not wanted.
    break;
  }
  proc_.stdin_fd.reset();
}

void ChildJob::OnExit(const ExitStatus& status) {
  if (exited()) return;
  status_ = status;
  // The group first: a member still writing would keep the drain going.
  // Everything the leader wrote is already in the pipes.
  (void)KillGroup(proc_.pgid, SIGKILL);
  ReadAvailable(proc_.stdout_fd, 1);
  ReadAvailable(proc_.stderr_fd, 2);
  proc_.stdout_fd.reset();
  proc_.stderr_fd.reset();
  proc_.stdin_fd.reset();
}

void ChildJob::Terminate(int64_t now_ms, int64_t grace_ms) {
  if (exited() || terminating()) return;
  Status s = KillGroup(proc_.pgid, SIGTERM);
  if (!s.ok()) spdlog::warn("SIGTERM to group {}: {}", proc_.pgid, s.error().ToString());
  kill_at_ms_ = now_ms + std::max<int64_t>(grace_ms, 0);
}

void ChildJob::Kill() {
  if (exited() || killed_) return;
  Status s = KillGroup(proc_.pgid, SIGKILL);
  if (!s.ok()) spdlog::warn("SIGKILL to group {}: {}", proc_.pgid, s.error().ToString());
  killed_ = true;
}

void ChildJob::Tick(int64_t now_ms) {
  if (exited() || killed_ || kill_at_ms_ < 0 || now_ms < kill_at_ms_) return;
  spdlog::info("group {} still running after the kill grace: SIGKILL", proc_.pgid);
  Kill();
}

std::vector<std::pair<pid_t, ExitStatus>> ReapAll() {
  std::vector<std::pair<pid_t, ExitStatus>> out;
  while (true) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) break;
    out.emplace_back(pid, ExitStatus::FromWaitStatus(status));
  }
  return out;
}

void KillAndReap(ChildJob& job, int64_t timeout_ms) {
  if (job.exited()) return;
  job.Kill();
  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (true) {
    int status = 0;
    pid_t r = waitpid(job.pid(), &status, WNOHANG);
    if (r == job.pid()) {
      job.OnExit(ExitStatus::FromWaitStatus(status));
      return;
    }
    if (r < 0 && errno != EINTR) return;
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (elapsed >= timeout_ms) return;
    // SIGKILL takes effect within microseconds; this wait is a bounded exit path only.
    usleep(1000);
  }
}

namespace {

// True when this process has no child at all, live or zombie. Then nothing
// can have been reparented to it, so KillOrphans need not read every
// /proc/<pid>/stat of the machine: that scan was a third of a worker's and
// half of a critic's CPU per task in figure 1 of bench/README.md (hundreds
// of processes on a busy host). WNOWAIT: nothing is reaped here; ReapAll
// stays the only place exit statuses are collected.
bool HasNoChildren() {
  siginfo_t info{};
  int r;
  do {
    r = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL);
  } while (r < 0 && errno == EINTR);
  return r < 0 && errno == ECHILD;
}

// Waits (up to timeout_ms) until each of pids is dead, without reaping it
// (WNOWAIT): a process's children are handed to its reaper before it
// becomes a zombie, so then they are this process's to see.
void AwaitDeaths(std::vector<pid_t> pids, int64_t timeout_ms) {
  for (int64_t waited_us = 0; !pids.empty() && waited_us < timeout_ms * 1000; waited_us += 200) {
    std::erase_if(pids, [](pid_t pid) {
      siginfo_t info{};
      int r = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
      return r != 0 || info.si_pid == pid;  // an error: not ours to wait for
    });
    if (!pids.empty()) usleep(200);  // SIGKILL takes effect within microseconds
  }
}

}  // namespace

int KillOrphans() {
  // Killing an orphan hands its own children to this subreaper once it is
  // dead (an agent's `setsid` server under a shell, two levels down), so
  // pass again until a pass finds no live child. Bounded: a tree that forks
  // faster than it is killed must not hold the worker forever.
  constexpr int kMaxPasses = 16;
  int killed = 0;
  for (int pass = 0; pass < kMaxPasses && !HasNoChildren(); ++pass) {
    std::vector<pid_t> pids = KillChildren();
    if (pids.empty()) break;
    killed += static_cast<int>(pids.size());
    AwaitDeaths(std::move(pids), 1000);
  }
  return killed;
}

Status BecomeChildReaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return MakeError(ErrorCode::kIo, std::string("PR_SET_CHILD_SUBREAPER: ") + strerror(errno));
  }
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
    return MakeError(ErrorCode::kIo, std::string("PR_SET_PDEATHSIG: ") + strerror(errno));
  }
  return Status::Ok();
}

}  // namespace forge::proto
