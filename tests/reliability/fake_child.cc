// A misbehaving forge-worker for the fault tests (FORGE_WORKER_BIN points at a
// wrapper script that runs `forge_fake_child --mode M "$@"`). It speaks raw
// ZeroMQ so it can break the protocol on purpose:
//   malformed  hello, then every heartbeat period a garbage frame (bad JSON,
//              unknown type, missing field, wrong role in hello) besides a
//              valid heartbeat.
//   silent     hello, then nothing at all (the heartbeat watchdog must act).
//   flood      hello, then heartbeats as fast as the socket takes them.
//   stray      heartbeats; a dispatch is answered with started/result for an
//              attempt it does not hold and a review_result (a critic's
//              message).
//   stuck      heartbeats; a dispatch is answered with `started` and then
//              nothing, a cancel ignored: a worker whose agent never ends.
//              With --role critic (FORGE_CRITIC_BIN), a review is never
//              answered: a critic whose check never ends.
//   unstarted  heartbeats; a dispatch is never answered, not even with
//              `started`: a worker stuck before its agent (a git step).
// It never does the work: but for `stuck`, its first dispatch is answered (after the strays)
// with a `crashed` result, requeueing the task without using an attempt; on a
// later dispatch it exits. A real worker, which the tests run beside it, does
// the tasks.
// Each process appends "<pid> <mode> <what>" lines to <state-dir>/fake_child.log.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "proto/codec.h"
#include "proto/messages.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode, connect, state_dir;
  std::string role = "worker";
  int heartbeat_ms = 1000;
};

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--mode") a.mode = v;
    if (k == "--role") a.role = v;
    if (k == "--connect") a.connect = v;
    if (k == "--state-dir") a.state_dir = v;
    if (k == "--heartbeat-ms") a.heartbeat_ms = std::stoi(v);
  }
  return a;
}

class Child {
 public:
  explicit Child(const Args& args) : args_(args), socket_(context_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::routing_id, args.role + "-" + std::to_string(::getpid()));
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(args.connect);
  }

  void Note(const std::string& what) {
    std::ofstream(args_.state_dir + "/fake_child.log", std::ios::app)
        << ::getpid() << " " << args_.mode << " " << what << "\n";
  }

  bool SendRaw(const std::string& bytes, bool dontwait = false) {
    auto r = socket_.send(zmq::buffer(bytes),
                          dontwait ? zmq::send_flags::dontwait : zmq::send_flags::none);
    return r.has_value();
  }
  template <typename M>
  void Send(const M& m) {
    SendRaw(forge::proto::Encode(m));
  }

  // The next supervisor message within timeout_ms, if any decodes.
  std::optional<forge::proto::SupervisorMessage> Receive(int timeout_ms) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return std::nullopt;
    zmq::message_t frame;
    if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return std::nullopt;
    auto m = forge::proto::DecodeSupervisorMessage(frame.to_string_view());
    if (!m.ok()) return std::nullopt;
    return *m;
  }

  void Hello() {
    forge::proto::Hello h;
    h.role = args_.role;
    h.pid = ::getpid();
    h.version = "fake";
    Send(h);
    Note("hello");
  }

  // Handles one supervisor message; false to exit.
  bool Handle(const forge::proto::SupervisorMessage& m) {
    if (std::holds_alternative<forge::proto::Shutdown>(m)) return false;
    if (const auto* r = std::get_if<forge::proto::Review>(&m); r != nullptr) {
      if (args_.mode == "stuck") Note("reviewing attempt " + std::to_string(r->attempt_id));
      return true;
    }
    const auto* d = std::get_if<forge::proto::Dispatch>(&m);
    if (d == nullptr) return true;
    if (args_.mode == "unstarted") {
      Note("holding attempt " + std::to_string(d->attempt_id));
      return true;
    }
    if (args_.mode == "stuck") {
      forge::proto::Started started;
      started.attempt_id = d->attempt_id;
      started.agent_pid = ::getpid();  // no group: nothing else to kill
      Send(started);
      Note("started attempt " + std::to_string(d->attempt_id));
      return true;
    }
    // A dispatch after the first proves the supervisor handled everything
    // this process sent before it (one socket, in order): now it may exit.
    if (dispatches_++ > 0) {
      Note("dispatch " + std::to_string(d->attempt_id) + ": exiting");
      return false;
    }
    if (args_.mode == "stray") SendStray(*d);
    // Gives the attempt back as an infrastructure failure (requeued without
    // using an attempt). Exiting now instead would race the strays: the
    // supervisor may see the exit before it reads them.
    forge::proto::Result r;
    r.attempt_id = d->attempt_id;
    r.outcome = "crashed";
    r.error = "forge_fake_child does no work";
    Send(r);
    Note("dispatch " + std::to_string(d->attempt_id) + ": gave it back");
    return true;
  }

  void SendStray(const forge::proto::Dispatch& d) {
    forge::proto::Started s;
    s.attempt_id = d.attempt_id + 100000;
    s.agent_pid = 1;
    s.pgid = 1;  // a recovery that trusted this would kill init's group
    Send(s);
    forge::proto::Result r;
    r.attempt_id = d.attempt_id + 100000;
    r.outcome = "passed";
    Send(r);
    forge::proto::ReviewResult rr;
    rr.attempt_id = d.attempt_id;
    rr.verdict = "pass";  // a worker may not deliver a review
    Send(rr);
    Note("stray " + std::to_string(d.attempt_id));
  }

  void SendGarbage(int i) {
    static const char* kGarbage[] = {
        "not json at all",
        R"({"v":1,"type":"teleport","id":"x"})",
        R"({"v":1,"type":"started","id":"x","attempt_id":"seven"})",
        R"({"v":1,"type":"hello","id":"x","role":"critic","pid":1,"version":"x"})",
        "",
        R"([1,2,3])",
    };
    SendRaw(kGarbage[i % 6]);
    Note("garbage " + std::to_string(i % 6));
  }

  int Run() {
    Hello();
    if (args_.mode == "silent") {
      while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    auto next_beat = Clock::now();
    int garbage = 0;
    long flood = 0;
    while (true) {
      if (args_.mode == "flood") {
        // Bursts of heartbeats with a short receive in between.
        for (int i = 0; i < 200; ++i) {
          if (SendRaw(forge::proto::Encode(forge::proto::Heartbeat{}), true)) ++flood;
        }
        if (flood % 20000 < 200) Note("flood " + std::to_string(flood));
      } else if (Clock::now() >= next_beat) {
        Send(forge::proto::Heartbeat{});
        if (args_.mode == "malformed") SendGarbage(garbage++);
        next_beat = Clock::now() + std::chrono::milliseconds(args_.heartbeat_ms);
      }
      int wait = args_.mode == "flood" ? 1 : 20;
      if (auto m = Receive(wait); m && !Handle(*m)) return 0;
      if (::getppid() == 1) return 0;
    }
  }

 private:
  Args args_;
  int dispatches_ = 0;
  zmq::context_t context_{1};
  zmq::socket_t socket_;
};

}  // namespace

int main(int argc, char** argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  Args args = ParseArgs(argc, argv);
  if (args.connect.empty() || args.mode.empty()) {
    std::fprintf(
        stderr,
        "usage: forge_fake_child --mode M [--role worker|critic] --connect E --state-dir D\n");
    return 2;
  }
  Child child(args);
  return child.Run();
}
