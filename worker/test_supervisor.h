// Test helper: plays the supervisor for forge-worker / forge-critic tests. A
// real ROUTER on an ipc:// socket in a fresh temp dir, children started as
// real processes, messages awaited with deadlines (never sleeps).
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "common/process.h"
#include "proto/codec.h"

namespace forge::testing {

inline int64_t NowMs() {
  return SystemClock::Get().MonotonicMs();
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteExecutable(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  ::chmod(path.c_str(), 0755);
}

// True when pid no longer exists (gone or a zombie nobody has reaped yet
// does not count: it must be gone), polled until the deadline.
inline bool WaitGone(pid_t pid, int64_t timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    if (::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) != 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// Waits for a file to have content (written by a fake agent), up to the deadline.
inline std::string WaitForFile(const std::string& path, int64_t timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    std::string s = ReadAll(path);
    if (!s.empty() && s.back() == '\n') return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ReadAll(path);
}

// A disk that fills, as this process and the children it spawns meanwhile
// see it: files stop growing at `bytes` (RLIMIT_FSIZE; a write past it
// fails with EFBIG, SIGXFSZ ignored) until the guard ends.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old_;
    lim.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_handler_);
  }

 private:
  struct rlimit old_ {};
  sighandler_t old_handler_ = SIG_DFL;
};

class FakeSupervisor {
 public:
  FakeSupervisor() {
    char tmpl[] = "/tmp/forge-child-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    state_dir = dir + "/state";
    std::filesystem::create_directories(state_dir);
    endpoint = "ipc://" + dir + "/children.sock";
    router_ = zmq::socket_t(context_, zmq::socket_type::router);
    router_.set(zmq::sockopt::router_mandatory, 1);
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(endpoint);
  }

  ~FakeSupervisor() {
    for (pid_t pid : children_) {
      ::kill(-pid, SIGKILL);
      (void)Reap(pid);
    }
    router_.close();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // Starts a child binary connected to this supervisor. env: the child's
  // whole environment (default: this process's).
  pid_t StartChild(const std::string& binary, int64_t heartbeat_ms = 50,
                   std::optional<std::vector<std::string>> env = std::nullopt,
                   std::vector<std::string> extra_args = {}) {
    SpawnOptions o;
    o.argv = {binary,
              "--connect",
              endpoint,
              "--state-dir",
              state_dir,
              "--heartbeat-ms",
              std::to_string(heartbeat_ms)};
    o.argv.insert(o.argv.end(), extra_args.begin(), extra_args.end());
    o.env = env ? *env : CurrentEnvironment();
    o.stdout_mode = Stdio::kInherit;
    o.stderr_mode = Stdio::kInherit;
    auto p = Spawn(o);
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().ToString());
    if (!p.ok()) return -1;
    children_.push_back(p->pid);
    return p->pid;
  }

  // Exit status of a child within the deadline; nullopt if it is still running.
  std::optional<ExitStatus> WaitExit(pid_t pid, int64_t timeout_ms) {
    const int64_t deadline = NowMs() + timeout_ms;
    while (true) {
      if (auto st = TryReap(pid)) {
        std::erase(children_, pid);
        return st;
      }
      if (NowMs() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  struct Received {
    std::string identity;
    proto::ChildMessage message;
  };

  // The next child message within timeout_ms (undecodable ones fail the test).
  std::optional<Received> Receive(int64_t timeout_ms) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) <= 0) return std::nullopt;
    std::vector<zmq::message_t> frames;
    while (true) {
      zmq::message_t m;
      (void)router_.recv(m, zmq::recv_flags::none);
      bool more = m.more();
      frames.push_back(std::move(m));
      if (!more) break;
    }
    EXPECT_EQ(frames.size(), 2u) << "a child message must be one frame";
    if (frames.size() != 2) return std::nullopt;
    auto decoded = proto::DecodeChildMessage(frames[1].to_string_view());
    EXPECT_TRUE(decoded.ok()) << frames[1].to_string();
    if (!decoded.ok()) return std::nullopt;
    return Received{frames[0].to_string(), std::move(decoded).value()};
  }

  // The next message of type M, counting the heartbeats on the way;
  // any other message type fails the test.
  template <typename M>
  std::optional<M> WaitFor(int64_t timeout_ms = 10000) {
    const int64_t deadline = NowMs() + timeout_ms;
    while (true) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return std::nullopt;
      auto r = Receive(left);
      if (!r) return std::nullopt;
      last_identity = r->identity;
      if (auto* m = std::get_if<M>(&r->message)) return *m;
      if (auto* hb = std::get_if<proto::Heartbeat>(&r->message)) {
        ++heartbeats;
        if (hb->attempt_id) ++attempt_heartbeats;
        continue;
      }
      ADD_FAILURE() << "unexpected message: " << proto::Encode(r->message);
      return std::nullopt;
    }
  }

  // Waits for n heartbeats naming the attempt, and nothing but heartbeats:
  // the child is working on it (or waiting to) and has not reported.
  // False (with a test failure for any other message) when they do not come.
  bool WaitForAttemptHeartbeats(int64_t attempt_id, int n, int64_t timeout_ms = 5000) {
    const int64_t deadline = NowMs() + timeout_ms;
    for (int beats = 0; beats < n;) {
      auto r = Receive(std::max<int64_t>(deadline - NowMs(), 0));
      if (!r) return false;
      auto* hb = std::get_if<proto::Heartbeat>(&r->message);
      if (hb == nullptr) {
        ADD_FAILURE() << "not a heartbeat: " << proto::Encode(r->message);
        return false;
      }
      if (hb->attempt_id == attempt_id) ++beats;
    }
    return true;
  }

  void Send(const proto::SupervisorMessage& message) { SendRaw(proto::Encode(message)); }
  void SendRaw(const std::string& bytes) {
    router_.send(zmq::buffer(last_identity), zmq::send_flags::sndmore);
    router_.send(zmq::buffer(bytes), zmq::send_flags::none);
  }

  std::string dir;
  std::string state_dir;
  std::string endpoint;
  std::string last_identity;
  int heartbeats = 0;
  int attempt_heartbeats = 0;

 private:
  zmq::context_t context_;
  zmq::socket_t router_;
  std::vector<pid_t> children_;
};

}  // namespace forge::testing
