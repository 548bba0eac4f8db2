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
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/lockfile.h"
#include "common/test_lock_holder.h"
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

// Answers control requests on the state directory's control endpoint with a
// handler's reply (the whole reply JSON, envelope included). Requests are
// recorded for the test to inspect.
class FakeSupervisor {
 public:
  using Handler = std::function<json(const json& request)>;

  FakeSupervisor(const std::string& state_dir, Handler handler)
      : lock_(LockPath(state_dir)), handler_(std::move(handler)) {
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

  forge::testing::LockHolder lock_;  // first: forked before the ZeroMQ threads exist
  Handler handler_;
  zmq::context_t context_{1};
  zmq::socket_t router_{context_, zmq::socket_type::router};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<json> requests_;
  std::thread thread_;
};

// Text that is not UTF-8 cannot go into a request (JSON): each command
// refuses it with exit 2 naming the flag, the argument or the plan line, the
// same whether a supervisor runs or not. Returns after checking every case;
// the caller checks that nothing was sent.
inline void ExpectNotUtf8IsRefused(CtlHarness& h) {
  auto expect = [&](const std::string& what, int rc, const std::string& message,
                    const std::string& and_message = "") {
    EXPECT_EQ(rc, kExitUsage) << what << ": " << h.err.str();
    for (const std::string& wanted : {message, and_message}) {
      EXPECT_NE(h.err.str().find(wanted), std::string::npos)
          << what << ": " << h.err.str() << "\nwanted: " << wanted;
    }
    h.Clear();
  };
  // A Windows-1252 brief file (curly quotes are 0x93 and 0x94).
  const std::string notes = h.dir.Path("notes.md");
  std::ofstream(notes) << "Fix it.\nHe said \x93hi\x94\n";
  SubmitArgs brief_file;
  brief_file.title = "x";
  brief_file.brief_file = notes;
  expect("--brief-file", CmdSubmit(h.env, brief_file),
         "forge-ctl: --brief-file '" + notes +
             "': not UTF-8 (byte 0x93 at line 2, column 9); save it as UTF-8\n");
  const std::string latin1 = "caf\xe9";
  const std::string shown = "'caf\\xe9': not UTF-8 (byte 0xe9 at character 4)";
  for (const char* flag : {"--title", "--brief", "--repo", "--base", "--agent", "--model",
                           "--verify", "--depends-on", "--env"}) {
    SubmitArgs a;
    a.title = "x";
    const std::string f = flag;
    if (f == "--title") a.title = latin1;
    if (f == "--brief") a.brief = latin1;
    if (f == "--repo") a.repo = latin1;
    if (f == "--base") a.base = latin1;
    if (f == "--agent") a.agent = latin1;
    if (f == "--model") a.model = latin1;
    if (f == "--verify") a.verify = {"make", latin1};
    if (f == "--depends-on") a.depends_on = {latin1};
    if (f == "--env") a.env = {"A=" + latin1};
    const std::string value =
        f == "--env" ? "'A=caf\\xe9': not UTF-8 (byte 0xe9 at character 6)" : shown;
    expect(f, CmdSubmit(h.env, a), "forge-ctl: " + f + " " + value + "\n");
  }

  // A plan: a Latin-1 title and brief file, each at its line.
  std::ofstream(h.dir.Path("latin1.md")) << "ligne un\nd\xe9j\xe0 vu\n";
  const std::string plan = h.dir.Path("plan.yaml");
  std::ofstream(plan) << "tasks:\n"
                         "  - id: a\n    title: caf\xe9\n"
                         "  - id: b\n    title: B\n    brief_file: latin1.md\n";
  SubmitArgs p;
  p.plan = plan;
  expect("plan", CmdSubmit(h.env, p),
         plan + ":3:12: key 'tasks[0].title': 'caf\\xe9' is not UTF-8 (byte 0xe9 at character 4)",
         plan + ":6:17: key 'tasks[1].brief_file': " + h.dir.Path("latin1.md") +
             " is not UTF-8 (byte 0xe9 at line 2, column 2); save it as UTF-8");

  // Arguments: a usage error naming each.
  const std::string id = "t1\xff";
  const std::string id_shown = "task id 't1\\xff': not UTF-8 (byte 0xff at character 3)\n";
  expect("show", CmdShow(h.env, id), "forge-ctl: " + id_shown);
  for (const char* change : {"cancel", "retry", "approve"}) {
    expect(change, CmdChange(h.env, change, id), "forge-ctl: " + id_shown);
  }
  expect("wait", CmdWait(h.env, {"t1", id}, 0), "forge-ctl: " + id_shown);
  LogsArgs logs;
  logs.id = id;
  expect("logs", CmdLogs(h.env, logs), "forge-ctl: " + id_shown);
  expect("pause", CmdPause(h.env, latin1), "forge-ctl: --reason " + shown + "\n");
  expect("cancel --reason", CmdChange(h.env, "cancel", "t1", latin1),
         "forge-ctl: --reason " + shown + "\n");
  EventsArgs events;
  events.task_id = "\xff";
  expect("events --task", CmdEvents(h.env, events),
         "forge-ctl: --task '\\xff': not UTF-8 (byte 0xff at character 1)\n");
  events.task_id = "";
  events.kind = latin1;
  expect("events --kind", CmdEvents(h.env, events), "forge-ctl: --kind " + shown + "\n");
}

}  // namespace forge::ctl::testing
