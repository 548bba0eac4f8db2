// Shared by the ctl tests: temp state directories with a real store, and a
// fake supervisor (a real lock holder process plus a ZeroMQ ROUTER on the
// control endpoint answering canned replies), so the live code paths run
// against real sockets without the real supervisor.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/lockfile.h"
#include "ctl/commands.h"
#include "proto/endpoints.h"
#include "supervisor/store/store.h"

namespace forge::ctl::testing {

using proto::json;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/forge-ctl-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    if (!p) std::abort();
    path_ = p;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string Path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A state directory (<tmp>/.forge) and its streams, as forge-ctl sees them.
struct CtlHarness {
  TempDir dir;
  std::string state_dir = dir.Path(".forge");
  std::ostringstream out;
  std::ostringstream err;
  Env env;

  CtlHarness() {
    std::filesystem::create_directories(state_dir);
    env.state_dir = state_dir;
    env.out = &out;
    env.err = &err;
    env.poll_ms = 20;
    env.timeout_ms = 5000;
  }

  // The supervisor's writer connection to the database.
  std::unique_ptr<store::Store> OpenWriter(const Clock* clock = nullptr) {
    store::StoreOptions o;
    o.db_path = DbPath(state_dir);
    o.events_jsonl_path = EventsJsonlPath(state_dir);
    o.clock = clock;
    auto s = store::Store::Open(o);
    EXPECT_TRUE(s.ok()) << s.error().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  void Clear() {
    out.str("");
    err.str("");
  }
};

inline proto::SubmitTask Task(const std::string& title, const std::string& id = "",
                              std::vector<std::string> deps = {}) {
  proto::SubmitTask t;
  t.id = id;
  t.title = title;
  t.brief = "brief of " + title;
  t.depends_on = std::move(deps);
  return t;
}

// Holds the supervisor lock of a state directory from another process (a
// process does not see its own POSIX locks), until destroyed.
class LockHolder {
 public:
  explicit LockHolder(const std::string& state_dir) {
    std::string path = LockPath(state_dir);
    int ready[2], release[2];
    if (::pipe(ready) != 0 || ::pipe(release) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and _exit.
      ::close(ready[0]);
      ::close(release[1]);
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      char ok = (fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
      (void)!::write(ready[1], &ok, 1);
      char c;
      (void)!::read(release[0], &c, 1);  // returns when the parent closes it
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    release_ = release[1];
    char ok = 'n';
    (void)!::read(ready[0], &ok, 1);
    ::close(ready[0]);
    EXPECT_EQ(ok, 'y') << "lock holder could not take " << path;
  }
  ~LockHolder() { Release(); }
  // The holder exits, and the lock with it.
  void Release() {
    if (release_ < 0) return;
    ::close(release_);
    release_ = -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int release_ = -1;
};

// Answers control requests on the state directory's control endpoint with a
// handler's reply (the whole reply JSON, envelope included). Requests are
// recorded for the test to inspect.
class FakeSupervisor {
 public:
  using Handler = std::function<json(const json& request)>;

  FakeSupervisor(const std::string& state_dir, Handler handler)
      : lock_(state_dir), handler_(std::move(handler)) {
    std::string endpoint = proto::ResolveEndpoints(state_dir).control;
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(endpoint);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeSupervisor() {
    stop_ = true;
    thread_.join();
  }

  std::vector<json> requests() {
    std::lock_guard<std::mutex> g(mu_);
    return requests_;
  }
  pid_t pid() const { return lock_.pid(); }
  // As the supervisor's exit would: its lock is free from now on.
  void ReleaseLock() { lock_.Release(); }

  static json Ok(json body = json::object()) {
    body["ok"] = true;
    return body;
  }
  static json Err(const std::string& code, const std::string& message) {
    return {{"ok", false}, {"error", {{"code", code}, {"message", message}}}};
  }

 private:
  void Serve() {
    while (!stop_) {
      zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) <= 0) continue;
      std::vector<zmq::message_t> frames;
      bool more = true;
      while (more) {
        zmq::message_t m;
        if (!router_.recv(m)) return;
        more = m.more();
        frames.push_back(std::move(m));
      }
      json request = json::parse(frames.back().to_string(), nullptr, false);
      {
        std::lock_guard<std::mutex> g(mu_);
        requests_.push_back(request);
      }
      json reply = handler_(request);
      if (reply.is_null()) continue;  // simulate a supervisor that never answers
      for (size_t i = 0; i + 1 < frames.size(); ++i) {
        router_.send(zmq::buffer(frames[i].to_string()), zmq::send_flags::sndmore);
      }
      router_.send(zmq::buffer(reply.dump()), zmq::send_flags::none);
    }
  }

  LockHolder lock_;  // first: forked before the ZeroMQ threads exist
  Handler handler_;
  zmq::context_t context_{1};
  zmq::socket_t router_{context_, zmq::socket_type::router};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<json> requests_;
  std::thread thread_;
};

}  // namespace forge::ctl::testing
