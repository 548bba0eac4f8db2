// Malformed, over-size, mistyped and stray messages on both sockets: error
// replies on the control socket, logged and ignored on the children socket,
// and the supervisor keeps serving. One test plays a worker itself.
#include <gmock/gmock.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

// endpoints.h first: it says Result<> inside forge::proto, where messages.h
// declares a struct Result.
#include "proto/endpoints.h"
// clang-format off
#include "proto/codec.h"
// clang-format on
#include "common/utf8.h"
#include "tests/integration/harness.h"

namespace forge::itest {
namespace {

using proto::TaskState;
using ::testing::HasSubstr;

Error ErrorOf(const std::optional<std::string>& reply) {
  EXPECT_TRUE(reply.has_value()) << "no reply";
  if (!reply) return Error{};
  auto r = proto::DecodeReply(*reply);
  EXPECT_FALSE(r.ok()) << *reply;
  return r.ok() ? Error{} : r.error();
}

TEST(Protocol, ControlSocketAnswersGarbageWithErrorsAndKeepsServing) {
  Forge forge;
  forge.Start();
  auto& ctl = forge.ctl();
  Error e = ErrorOf(ctl.RawCall("this is not json"));
  EXPECT_EQ(e.code, ErrorCode::kDecode);
  e = ErrorOf(ctl.RawCall(R"({"v":1})"));
  EXPECT_NE(e.message.find("cmd"), std::string::npos) << e.message;
  e = ErrorOf(ctl.RawCall(R"([1,2,3])"));
  EXPECT_EQ(e.code, ErrorCode::kDecode);
  auto typed = ctl.Call("show", json{{"id", 5}});
  ASSERT_FALSE(typed.ok());
  EXPECT_NE(typed.error().message.find("id"), std::string::npos) << typed.error().message;
  auto unknown = ctl.Call("frobnicate");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("unknown command"), std::string::npos);
  auto missing = ctl.Call("show", json{{"id", "no-such-task"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  std::string huge = proto::EncodeControlRequest(
      "submit", json{{"tasks", json::array({json{{"title", std::string(5 << 20, 'x')}}})}});
  e = ErrorOf(ctl.RawCall(huge));
  EXPECT_EQ(e.code, ErrorCode::kDecode) << e.message;
  auto submit_bad = ctl.Call("submit", json{{"tasks", "not a list"}});
  ASSERT_FALSE(submit_bad.ok());
  EXPECT_NE(submit_bad.error().message.find("tasks"), std::string::npos);

  std::string id = forge.Submit("succeed");
  EXPECT_TRUE(forge.WaitState(id, TaskState::kDone));
  EXPECT_NE(forge.SupervisorLog().find("malformed request"), std::string::npos);
  EXPECT_GE(forge.Status()["counters"]["bad_control_requests"].get<int64_t>(), 6)
      << forge.Status().dump();
}

// What a control client sends reaches supervisor.log escaped: a command
// holding a newline and a made-up line forges no line, an ESC does not reach
// the terminal of whoever tails the log, a byte that is not UTF-8 (in the
// parse error that quotes it) leaves the file UTF-8.
TEST(Protocol, AControlClientCannotForgeALogLine) {
  Forge forge;
  forge.Start();
  auto& ctl = forge.ctl();
  const std::string forged =
      "x\n2026-01-01T00:00:00.000+00:00 error supervisor[1]: FORGED LINE\x1b[31m";
  Error e = ErrorOf(ctl.RawCall(json{{"v", 1}, {"cmd", forged}}.dump()));
  EXPECT_THAT(e.message, HasSubstr("unknown command"));
  e = ErrorOf(ctl.RawCall("{\"v\":1,\"cmd\":\"st\xff\x1b]0;OSC\x07\"}"));
  EXPECT_EQ(e.code, ErrorCode::kDecode);
  // Each reply is sent after its log line is written and flushed.
  const std::string log = forge.SupervisorLog();
  EXPECT_EQ(FindInvalidUtf8(log), std::string::npos) << log;
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << log;
  EXPECT_EQ(log.find("\n2026-01-01T"), std::string::npos) << log;
  EXPECT_THAT(log, HasSubstr("]: control: x\\n2026-01-01T00:00:00.000+00:00 error supervisor[1]: "
                             "FORGED LINE\\x1b[31m refused"));
  EXPECT_THAT(log, HasSubstr("\\xff"));
}

TEST(Protocol, ChildrenSocketIgnoresUnknownPeersGarbageAndOversize) {
  Forge forge;
  forge.Start();
  zmq::context_t ctx(1);
  zmq::socket_t intruder(ctx, zmq::socket_type::dealer);
  intruder.set(zmq::sockopt::routing_id, "worker-1");
  intruder.set(zmq::sockopt::linger, 0);
  intruder.connect(proto::ResolveEndpoints(forge.state_dir()).children);
  intruder.send(zmq::str_buffer("garbage"), zmq::send_flags::none);
  proto::Hello hello;
  hello.role = "worker";
  hello.pid = 1;
  intruder.send(zmq::buffer(proto::Encode(hello)), zmq::send_flags::none);
  intruder.send(zmq::buffer(std::string(5 << 20, '{')), zmq::send_flags::none);
  ASSERT_TRUE(WaitFor(
      [&] { return forge.SupervisorLog().find("unknown peer") != std::string::npos; }, 5000));
  std::string id = forge.Submit("succeed");
  EXPECT_TRUE(forge.WaitState(id, TaskState::kDone));
  json status = forge.Status();
  EXPECT_EQ(status["children"].size(), 3u) << status.dump();
  EXPECT_GE(status["counters"]["bad_child_messages"].get<int64_t>(), 2) << status.dump();
  // A peer that keeps sending (a child of an earlier supervisor heartbeats
  // until it exits) is counted every time and logged once a minute.
  const int64_t before = status["counters"]["bad_child_messages"].get<int64_t>();
  for (int i = 0; i < 20; ++i) intruder.send(zmq::str_buffer("{}"), zmq::send_flags::none);
  ASSERT_TRUE(WaitFor(
      [&] {
        return forge.Status()["counters"]["bad_child_messages"].get<int64_t>() >= before + 20;
      },
      5000));
  std::string log = forge.SupervisorLog();
  size_t lines = 0;
  for (size_t at = log.find("unknown peer 'worker-1'"); at != std::string::npos;
       at = log.find("unknown peer 'worker-1'", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;
}

// The test process plays forge-worker: the supervisor spawns a stand-in
// that sleeps, and we connect with its routing id.
class ScriptedWorker {
 public:
  // role "critic" plays a critic (the routing id names the role).
  ScriptedWorker(const std::string& state_dir, pid_t pid, const std::string& role = "worker")
      : socket_(ctx_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::routing_id, role + "-" + std::to_string(pid));
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(proto::ResolveEndpoints(state_dir).children);
  }
  void SendRaw(const std::string& bytes) {
    socket_.send(zmq::buffer(bytes), zmq::send_flags::none);
  }
  // false when the socket's queue is full.
  bool TrySendRaw(const std::string& bytes) {
    return socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
  }
  // As a dead process's connection does.
  void Close() { socket_.close(); }
  template <typename M>
  void Send(const M& m) {
    SendRaw(proto::Encode(m));
  }
  std::optional<proto::SupervisorMessage> Receive(int64_t timeout_ms) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return std::nullopt;
    zmq::message_t msg;
    (void)socket_.recv(msg);
    auto decoded = proto::DecodeSupervisorMessage(msg.to_string_view());
    EXPECT_TRUE(decoded.ok()) << msg.to_string();
    if (!decoded.ok()) return std::nullopt;
    return *decoded;
  }

 private:
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
};

// Starts a supervisor whose one child of `role` is silent_child.sh (the
// test plays it: ScriptedWorker with the same role); returns that child's pid.
pid_t StartWithScripted(Forge& forge, const std::string& role) {
  forge.Start(/*wait_children=*/false);
  pid_t pid = 0;
  EXPECT_TRUE(WaitFor(
      [&] {
        json status = forge.Status();  // kept alive: the loop iterates into it
        for (const auto& c : status["children"]) {
          if (c["role"] == role) pid = c["pid"].get<pid_t>();
        }
        return pid != 0;
      },
      5000))
      << forge.Status().dump();
  return pid;
}

pid_t StartWithScriptedWorker(Forge& forge) {
  return StartWithScripted(forge, "worker");
}

// One child of `role` ("worker" or "critic"), silent_child.sh.
ForgeOptions ScriptedOptions(const std::string& role) {
  ForgeOptions o;
  if (role == "worker") o.workers = 1;
  if (role == "critic") o.critics = 1;
  o.heartbeat_timeout = "10s";
  o.extra_env[role == "worker" ? "FORGE_WORKER_BIN" : "FORGE_CRITIC_BIN"] =
      std::string(FORGE_FAKES_DIR) + "/silent_child.sh";
  return o;
}

ForgeOptions ScriptedWorkerOptions() {
  return ScriptedOptions("worker");
}

proto::Hello HelloFrom(pid_t pid, const std::string& role = "worker") {
  proto::Hello hello;
  hello.role = role;
  hello.pid = pid;
  hello.version = "test";
  return hello;
}

// Says hello as the scripted worker and waits for the dispatch of the next task.
std::optional<proto::Dispatch> HelloThenDispatch(ScriptedWorker& w, pid_t worker_pid) {
  w.Send(HelloFrom(worker_pid));
  auto msg = w.Receive(10'000);
  EXPECT_TRUE(msg.has_value() && std::holds_alternative<proto::Dispatch>(*msg));
  if (!msg || !std::holds_alternative<proto::Dispatch>(*msg)) return std::nullopt;
  return std::get<proto::Dispatch>(*msg);
}

proto::Result PassedResult(int64_t attempt_id) {
  proto::Result ok;
  ok.attempt_id = attempt_id;
  ok.outcome = "passed";
  ok.exit_code = 0;
  return ok;
}

// A dispatch or review carries what its child reads of the task, and none
// of the row's bookkeeping (state, counters, timestamps), which the stored
// task has by then.
void ExpectTheChildsView(const proto::TaskInfo& sent, const proto::TaskInfo& stored) {
  EXPECT_EQ(sent.id, stored.id);
  EXPECT_EQ(sent.title, stored.title);
  EXPECT_EQ(sent.kind, stored.kind);
  EXPECT_EQ(sent.repo, stored.repo);
  EXPECT_EQ(sent.base, stored.base);
  EXPECT_EQ(sent.env, stored.env);
  EXPECT_EQ(sent.allow_empty, stored.allow_empty);
  const proto::TaskInfo none;
  EXPECT_NE(stored.state, none.state);
  EXPECT_EQ(sent.state, none.state);
  EXPECT_NE(stored.created_at_ms, 0);
  EXPECT_EQ(sent.created_at_ms, 0);
  EXPECT_EQ(sent.updated_at_ms, 0);
  EXPECT_NE(stored.total_attempts, 0);
  EXPECT_EQ(sent.total_attempts, 0);
  EXPECT_EQ(sent.attempts, 0);
  EXPECT_EQ(sent.branch, "");
}

TEST(Protocol, MistypedAndStrayChildMessagesAreCountedAndIgnored) {
  Forge forge(ScriptedWorkerOptions());
  const pid_t worker_pid = StartWithScriptedWorker(forge);
  ASSERT_NE(worker_pid, 0);
  ScriptedWorker w(forge.state_dir(), worker_pid);
  std::string id = forge.Submit("succeed", {{"FORGE_TEST_VAR", "x"}},
                                json{{"verify", {"true"}}, {"allow_empty", true}});
  auto dispatch = HelloThenDispatch(w, worker_pid);
  ASSERT_TRUE(dispatch.has_value());
  const auto& d = *dispatch;
  EXPECT_EQ(d.task.id, id);
  EXPECT_EQ(d.n, 1);
  EXPECT_EQ(d.workspace, forge.state_dir() + "/workspaces/" + id);
  EXPECT_EQ(d.agent.command.at(1), FakeAgent());
  // The brief goes once, in the task: the dispatch's own `brief` (for a text
  // other than the task's) is left off.
  EXPECT_EQ(d.task.brief, forge.Task(id).brief);
  EXPECT_FALSE(d.task.brief.empty());
  EXPECT_EQ(d.brief, "");
  ExpectTheChildsView(d.task, forge.Task(id));
  EXPECT_EQ(d.task.verify, std::vector<std::string>{"true"});  // the worker's prompt lists them
  EXPECT_EQ(d.task.env.at("FORGE_TEST_VAR"), "x");

  w.SendRaw("\x01\x02 not json");
  w.SendRaw(R"({"v":1,"type":"result","id":"m1","attempt_id":"seven","outcome":"passed"})");
  w.SendRaw(R"({"v":1,"type":"no_such_type","id":"m2"})");
  proto::Result stray;
  stray.attempt_id = d.attempt_id + 1000;
  stray.outcome = "passed";
  w.Send(stray);
  proto::Heartbeat hb;
  hb.attempt_id = d.attempt_id;
  w.Send(hb);
  ASSERT_TRUE(WaitFor(
      [&] { return forge.SupervisorLog().find("which it does not hold") != std::string::npos; },
      5000));
  EXPECT_NE(forge.SupervisorLog().find("undecodable"), std::string::npos);
  EXPECT_EQ(forge.Task(id).state, TaskState::kRunning);
  json counters = forge.Status()["counters"];
  EXPECT_GE(counters["bad_child_messages"].get<int64_t>(), 3) << counters.dump();
  EXPECT_GE(counters["stray_child_messages"].get<int64_t>(), 1) << counters.dump();

  std::filesystem::create_directories(d.workspace);  // as forge-worker does
  w.Send(PassedResult(d.attempt_id));
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));  // reviewed by the real critic
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
}

// A child that floods its socket (large heartbeats as fast as it can send them)
// does not starve the rest of the loop: the supervisor reads a bounded number
// of messages per turn, so control requests are still answered.
TEST(Protocol, AFloodingChildDoesNotStarveControlRequests) {
  Forge forge(ScriptedWorkerOptions());
  const pid_t worker_pid = StartWithScriptedWorker(forge);
  ASSERT_NE(worker_pid, 0);
  std::atomic<bool> stop{false};
  std::atomic<bool> backlogged{false};
  std::atomic<int64_t> sent{0};
  std::thread flood([&] {
    ScriptedWorker w(forge.state_dir(), worker_pid);
    w.Send(HelloFrom(worker_pid));
    // Padded so that reading one costs the supervisor more than sending one
    // costs this thread: without a bound per turn, the loop never got past
    // the children's socket.
    json padded = json::parse(proto::Encode(proto::Heartbeat{}));
    padded["padding"] = std::string(64 << 10, 'x');
    const std::string heartbeat = padded.dump();
    while (!stop) {
      if (w.TrySendRaw(heartbeat)) {
        ++sent;
      } else {
        backlogged = true;  // ZeroMQ's queues are full: the supervisor is behind
      }
    }
  });
  // However fast the build decodes: only a backlog makes the turn's bound matter.
  const bool flooding = WaitFor([&] { return backlogged && sent > 1'000; }, 20'000);
  std::vector<bool> answered;
  for (int i = 0; flooding && i < 5; ++i) {
    answered.push_back(forge.ctl().Call("status", json::object(), 3000).ok());
  }
  stop = true;
  flood.join();
  ASSERT_TRUE(flooding) << sent << " heartbeats sent";
  EXPECT_EQ(answered, std::vector<bool>(5, true)) << "after " << sent << " heartbeats";
}

// The state the supervisor's status gives the child, or "" when it is not listed.
std::string ChildState(Forge& forge, pid_t pid) {
  json status = forge.Status();
  for (const auto& c : status["children"]) {
    if (c["pid"].get<pid_t>() == pid) return c["state"].get<std::string>();
  }
  return "";
}

// Dispatches a task to the scripted worker and kills the process the
// supervisor spawned for it, whose connection the test holds: the
// supervisor sees the exit while the connection (and what is on it) lives on.
struct ExitedWithAnAttempt {
  std::string task_id;
  proto::Dispatch dispatch;
};
ExitedWithAnAttempt DispatchThenKillTheProcess(Forge& forge, pid_t worker_pid, ScriptedWorker& w) {
  ExitedWithAnAttempt out;
  out.task_id = forge.Submit("succeed");
  auto dispatch = HelloThenDispatch(w, worker_pid);
  if (!dispatch) return out;
  out.dispatch = *dispatch;
  std::filesystem::create_directories(out.dispatch.workspace);  // as forge-worker does
  EXPECT_EQ(::kill(worker_pid, SIGKILL), 0);
  EXPECT_TRUE(WaitFor([&] { return ChildState(forge, worker_pid) == "exited"; }, 10'000))
      << forge.Status().dump();
  return out;
}

// A worker's result can still be on its way when its SIGCHLD is read: the
// attempt is closed only once the connection is gone, so the result counts.
TEST(Protocol, AResultThatArrivesAfterTheWorkersExitStillCounts) {
  Forge forge(ScriptedWorkerOptions());
  const pid_t worker_pid = StartWithScriptedWorker(forge);
  ASSERT_NE(worker_pid, 0);
  ScriptedWorker w(forge.state_dir(), worker_pid);
  auto exited = DispatchThenKillTheProcess(forge, worker_pid, w);
  ASSERT_NE(exited.dispatch.attempt_id, 0);
  EXPECT_EQ(forge.Task(exited.task_id).state, TaskState::kRunning);
  w.Send(PassedResult(exited.dispatch.attempt_id));
  w.Close();
  ASSERT_TRUE(forge.WaitState(exited.task_id, TaskState::kDone)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(exited.task_id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "passed");
  // Then it is replaced.
  EXPECT_TRUE(WaitFor([&] { return ChildState(forge, worker_pid).empty(); }, 10'000));
  EXPECT_TRUE(WaitFor(
      [&] {
        json status = forge.Status();
        for (const auto& c : status["children"]) {
          if (c["role"] == "worker" && c["pid"].get<pid_t>() != worker_pid) return true;
        }
        return false;
      },
      10'000))
      << forge.Status().dump();
}

// The wait for last words is bounded: a connection that outlives its process
// (never seen with real children: the kernel closes it) does not hold the
// attempt open.
TEST(Protocol, AnExitedWorkersAttemptClosesCrashedEvenIfItsConnectionLingers) {
  Forge forge(ScriptedWorkerOptions());
  const pid_t worker_pid = StartWithScriptedWorker(forge);
  ASSERT_NE(worker_pid, 0);
  ScriptedWorker w(forge.state_dir(), worker_pid);
  auto exited = DispatchThenKillTheProcess(forge, worker_pid, w);
  ASSERT_NE(exited.dispatch.attempt_id, 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto a = forge.Attempts(exited.task_id);
        return !a.empty() && !a[0].outcome.empty();
      },
      10'000));
  EXPECT_EQ(forge.Attempts(exited.task_id)[0].outcome, "crashed");
  EXPECT_TRUE(ChildState(forge, worker_pid).empty()) << forge.Status().dump();
}

// A supervisor whose one critic is played by the test, the workers real;
// returns the review of a task that passed, or nullopt.
std::optional<proto::Review> ReviewOfAPassedTask(Forge& forge, std::string* task_id,
                                                 std::unique_ptr<ScriptedWorker>* critic) {
  const pid_t critic_pid = StartWithScripted(forge, "critic");
  if (critic_pid == 0) return std::nullopt;
  *critic = std::make_unique<ScriptedWorker>(forge.state_dir(), critic_pid, "critic");
  (*critic)->Send(HelloFrom(critic_pid, "critic"));
  *task_id = forge.Submit("succeed");
  auto msg = (*critic)->Receive(10'000);
  EXPECT_TRUE(msg.has_value() && std::holds_alternative<proto::Review>(*msg));
  if (!msg || !std::holds_alternative<proto::Review>(*msg)) return std::nullopt;
  return std::get<proto::Review>(*msg);
}

TEST(Protocol, AReviewLeavesTheBriefOutWhenNoCriticAgentReadsIt) {
  Forge forge(ScriptedOptions("critic"));
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  EXPECT_EQ(review->task.id, id);
  EXPECT_FALSE(review->critic.has_value());
  EXPECT_EQ(review->task.brief, "") << "only a critic agent's prompt reads it";
  EXPECT_FALSE(forge.Task(id).brief.empty());
  ExpectTheChildsView(review->task, forge.Task(id));
  // The checks go once, in the review's own list (with the config's).
  EXPECT_TRUE(review->task.verify.empty());
  for (const auto& v : forge.Task(id).verify) {
    EXPECT_NE(std::find(review->verify.begin(), review->verify.end(), v), review->verify.end());
  }

  proto::ReviewResult pass;
  pass.attempt_id = review->attempt_id;
  pass.verdict = "pass";
  critic->Send(pass);
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
}

// A review the critic could not finish for lack of space (no room to commit
// the pass) is not the task's failure: the attempt closes uncounted, the
// task is requeued, and dispatch pauses as for a worker out of space.
TEST(Protocol, ACriticOutOfSpaceRequeuesUncountedAndPauses) {
  Forge forge(ScriptedOptions("critic"));
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  proto::ReviewResult full;
  full.attempt_id = review->attempt_id;
  full.verdict = "error";
  full.error = "squash commit failed: git add -A failed: No space left on device";
  full.infra = true;
  critic->Send(full);
  ASSERT_TRUE(WaitFor([&] { return forge.Attempts(id).at(0).ended_at_ms != 0; }, 10'000));
  auto attempt = forge.Attempts(id).at(0);
  EXPECT_EQ(attempt.outcome, "failed");
  EXPECT_FALSE(attempt.counted) << "the machine's fault, not the task's";
  EXPECT_EQ(forge.Task(id).attempts, 0);
  EXPECT_EQ(forge.Task(id).infra_retries, 1);
  EXPECT_TRUE(forge.PausedBy("store")) << forge.Status().dump();
}

// A review log that stopped early (a full disk) is in the event of the
// review that wrote it, and in the supervisor's log: the review again of a
// review without a verdict, and the close of one with a verdict.
TEST(Protocol, AReviewsLogErrorIsInItsEventAndTheSupervisorsLog) {
  Forge forge(ScriptedOptions("critic"));
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  proto::ReviewResult none;
  none.attempt_id = review->attempt_id;
  none.verdict = "error";
  none.error = "cannot run check 'make test': no such file";
  none.log_error = "the review log stops after 10 bytes: writing 'x': No space left on device";
  critic->Send(none);
  auto again = critic->Receive(10'000);
  ASSERT_TRUE(again.has_value() && std::holds_alternative<proto::Review>(*again));
  auto agains = forge.Events(id, "attempt.review_again");
  ASSERT_EQ(agains.size(), 1u);
  EXPECT_EQ(agains[0].payload["review_log_error"], none.log_error);
  EXPECT_TRUE(WaitFor(
      [&] { return forge.SupervisorLog().find(none.log_error) != std::string::npos; }, 10'000))
      << forge.SupervisorLog();

  proto::ReviewResult pass;
  pass.attempt_id = review->attempt_id;
  pass.verdict = "pass";
  pass.log_error = "the review log stops after 20 bytes: writing 'x': No space left on device";
  critic->Send(pass);
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
  auto ended = forge.Events(id, "attempt.ended");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].payload["review_log_error"], pass.log_error);
  EXPECT_TRUE(WaitFor(
      [&] { return forge.SupervisorLog().find(pass.log_error) != std::string::npos; }, 10'000))
      << forge.SupervisorLog();
}

// A review the critic says cannot be done, and trying again will not help
// (its workspace held by a process that did not let go in 10 minutes): the
// attempt fails not retryable, and the task is blocked at once instead of
// being reviewed again and run again.
TEST(Protocol, AReviewThatCannotBeDoneBlocksTheTask) {
  Forge forge(ScriptedOptions("critic"));
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  proto::ReviewResult stuck;
  stuck.attempt_id = review->attempt_id;
  stuck.verdict = "error";
  stuck.error = "workspace 'w' is in use by another process (pid 4242, lock w.lock); waited 10m";
  stuck.retryable = false;
  critic->Send(stuck);
  ASSERT_TRUE(forge.WaitState(id, TaskState::kBlocked)) << forge.SupervisorLog();
  auto attempts = forge.Attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].outcome, "failed");
  EXPECT_THAT(forge.Task(id).last_error, HasSubstr("pid 4242"));
}

// A review without a verdict during a shutdown is not held against the
// task, nor thrown away: the passed work is still in the workspace, so the
// attempt stays open, its task `reviewing`, for the next start to review
// (Watchdog.AStopDuringAReviewKeepsThePassedWorkForTheNextStart). What the
// review spent counts at once.
TEST(Protocol, AReviewWithoutAVerdictDuringAShutdownIsPostponed) {
  ForgeOptions o = ScriptedOptions("critic");
  o.shutdown_grace = "3s";  // the scripted critic does not exit: killed after it
  Forge forge(o);
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  ASSERT_EQ(::kill(forge.pid(), SIGTERM), 0);
  // The critic hears of the shutdown before it answers.
  bool told = false;
  while (!told) {
    auto m = critic->Receive(10'000);
    ASSERT_TRUE(m.has_value()) << "no shutdown for the critic";
    told = std::holds_alternative<proto::Shutdown>(*m);
  }
  proto::ReviewResult none;
  none.attempt_id = review->attempt_id;
  none.verdict = "error";
  none.error = "cannot run check 'make test': no such file";
  none.cost_usd = 0.25;
  critic->Send(none);
  ASSERT_TRUE(
      WaitFor([&] { return !forge.Events(id, "attempt.review_postponed").empty(); }, 10'000))
      << forge.SupervisorLog();
  forge.Signal(SIGTERM);  // waits for its exit: the attempt stays open through it
  auto postponed = forge.Events(id, "attempt.review_postponed").at(0);
  EXPECT_EQ(postponed.payload["attempt_id"], review->attempt_id);
  EXPECT_EQ(postponed.payload["review"], 1);
  EXPECT_THAT(postponed.payload["reason"].get<std::string>(),
              HasSubstr("without a verdict: cannot run check 'make test'"));
  auto attempt = forge.Attempts(id).at(0);
  EXPECT_EQ(attempt.ended_at_ms, 0) << attempt.outcome << ": " << attempt.error;
  EXPECT_DOUBLE_EQ(attempt.cost_usd, 0.25);
  EXPECT_EQ(forge.Task(id).state, TaskState::kReviewing);
  EXPECT_EQ(forge.Task(id).attempts, 1);
  EXPECT_TRUE(forge.Events(id, "attempt.review_again").empty());
}

// The budget pause's reason, which gives the supervisor's own sum of the day.
std::string BudgetReason(Forge& forge) {
  json status = forge.Status();
  for (const auto& p : status["pause_reasons"]) {
    if (p["kind"] == "budget") return p.value("reason", "");
  }
  return "";
}

// A cancel during the review closes the attempt at once; the verdict that
// comes after it decides nothing, but what the critic's agent spent was
// spent: it reaches the attempt, the task and the day's budget, once.
TEST(Protocol, ACriticsSpendAfterACancelStillCounts) {
  ForgeOptions o = ScriptedOptions("critic");
  o.daily_usd = 1.0;
  Forge forge(o);
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  ASSERT_TRUE(forge.ctl().Call("cancel", json{{"id", id}}).ok());
  auto cancel = critic->Receive(10'000);
  ASSERT_TRUE(cancel.has_value() && std::holds_alternative<proto::Cancel>(*cancel));
  EXPECT_EQ(forge.Task(id).state, TaskState::kCancelled);
  proto::ReviewResult late;
  late.attempt_id = review->attempt_id;
  late.verdict = "error";
  late.error = "cancelled";
  late.cost_usd = 1.25;
  late.tokens_in = 40;
  late.tokens_out = 9;
  critic->Send(late);
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("budget"); }, 10'000)) << forge.Status().dump();
  auto attempt = forge.Attempts(id).at(0);
  EXPECT_EQ(attempt.outcome, "cancelled") << "the cancel's close stands";
  EXPECT_NEAR(attempt.cost_usd, 1.25, 1e-9);
  EXPECT_EQ(attempt.tokens_in, 40);
  EXPECT_EQ(attempt.tokens_out, 9);
  EXPECT_NEAR(forge.Task(id).cost_usd, 1.25, 1e-9);
  EXPECT_EQ(forge.Task(id).state, TaskState::kCancelled);
  EXPECT_TRUE(forge.HasEvent(id, "attempt.critic_cost"));
  EXPECT_NEAR(forge.Status()["cost_today_usd"].get<double>(), 1.25, 1e-6);
  EXPECT_EQ(BudgetReason(forge), "daily budget spent: $1.25 of $1.00") << "counted once";
}

// A result whose attempt log stopped early (a full disk) is recorded with
// its log_error in attempt.result, and logged by the supervisor.
TEST(Protocol, AResultsLogErrorIsInItsEventAndTheSupervisorsLog) {
  Forge forge(ScriptedWorkerOptions());
  const pid_t worker_pid = StartWithScriptedWorker(forge);
  ASSERT_NE(worker_pid, 0);
  ScriptedWorker w(forge.state_dir(), worker_pid);
  std::string id = forge.Submit("succeed");
  auto dispatch = HelloThenDispatch(w, worker_pid);
  ASSERT_TRUE(dispatch.has_value());
  proto::Result cut = PassedResult(dispatch->attempt_id);
  cut.log_error = "the attempt log stops after 4096 bytes: writing 'x': No space left on device";
  w.Send(cut);
  ASSERT_TRUE(WaitFor([&] { return forge.HasEvent(id, "attempt.result"); }, 10'000));
  auto results = forge.Events(id, "attempt.result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].payload["log_error"], cut.log_error);
  EXPECT_TRUE(WaitFor(
      [&] { return forge.SupervisorLog().find(cut.log_error) != std::string::npos; }, 10'000))
      << forge.SupervisorLog();
}

// The same for the agent: a result that comes after the cancel's close
// keeps the close's outcome and records what the agent spent and its session.
TEST(Protocol, AnAgentsSpendAfterACancelStillCounts) {
  ForgeOptions o = ScriptedWorkerOptions();
  o.daily_usd = 1.0;
  Forge forge(o);
  const pid_t worker_pid = StartWithScriptedWorker(forge);
  ASSERT_NE(worker_pid, 0);
  ScriptedWorker w(forge.state_dir(), worker_pid);
  std::string id = forge.Submit("succeed");
  auto dispatch = HelloThenDispatch(w, worker_pid);
  ASSERT_TRUE(dispatch.has_value());
  ASSERT_TRUE(forge.ctl().Call("cancel", json{{"id", id}}).ok());
  auto cancel = w.Receive(10'000);
  ASSERT_TRUE(cancel.has_value() && std::holds_alternative<proto::Cancel>(*cancel));
  proto::Result late = PassedResult(dispatch->attempt_id);
  late.cost_usd = 2.5;
  late.tokens_in = 100;
  late.tokens_out = 20;
  late.session_id = "sess-late";
  late.error = "the agent's own words";
  w.Send(late);
  ASSERT_TRUE(WaitFor([&] { return forge.PausedBy("budget"); }, 10'000)) << forge.Status().dump();
  auto attempt = forge.Attempts(id).at(0);
  EXPECT_EQ(attempt.outcome, "cancelled");
  EXPECT_EQ(attempt.error, "cancelled by operator") << "the close's error stands";
  EXPECT_NEAR(attempt.cost_usd, 2.5, 1e-9);
  EXPECT_EQ(attempt.tokens_in, 100);
  EXPECT_EQ(attempt.session_id, "sess-late");
  EXPECT_NEAR(forge.Task(id).cost_usd, 2.5, 1e-9);
  EXPECT_EQ(forge.Task(id).state, TaskState::kCancelled) << "no review for a cancelled attempt";
  EXPECT_NEAR(forge.Status()["cost_today_usd"].get<double>(), 2.5, 1e-6);
  EXPECT_EQ(BudgetReason(forge), "daily budget spent: $2.50 of $1.00") << "counted once";
}

// A review the supervisor could not send (its critic's connection is gone)
// goes to the next critic with the task's checks: the review carries the
// critic's view of the task, without them, so the retry reads it again.
TEST(Protocol, AReviewThatCouldNotBeSentGoesToTheNextCriticWithTheTasksChecks) {
  Forge forge(ScriptedOptions("critic"));
  const pid_t first = StartWithScripted(forge, "critic");
  ASSERT_NE(first, 0);
  {
    ScriptedWorker gone(forge.state_dir(), first, "critic");
    gone.Send(HelloFrom(first, "critic"));
    ASSERT_TRUE(WaitFor([&] { return ChildState(forge, first) == "idle"; }, 5000))
        << forge.Status().dump();
    gone.Close();
  }
  std::string id = forge.Submit("succeed", {}, json{{"verify", {"test -n checked"}}});
  ASSERT_TRUE(WaitFor(
      [&] { return forge.SupervisorLog().find("unreachable") != std::string::npos; }, 10'000))
      << forge.SupervisorLog();
  pid_t second = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        json status = forge.Status();
        for (const auto& c : status["children"]) {
          pid_t pid = c["pid"].get<pid_t>();
          if (c["role"] == "critic" && pid != first) second = pid;
        }
        return second != 0;
      },
      10'000))
      << forge.Status().dump();
  ScriptedWorker critic(forge.state_dir(), second, "critic");
  critic.Send(HelloFrom(second, "critic"));
  auto msg = critic.Receive(10'000);
  ASSERT_TRUE(msg.has_value() && std::holds_alternative<proto::Review>(*msg));
  const auto& review = std::get<proto::Review>(*msg);
  EXPECT_EQ(review.task.id, id);
  EXPECT_NE(std::find(review.verify.begin(), review.verify.end(), "test -n checked"),
            review.verify.end());
  ExpectTheChildsView(review.task, forge.Task(id));
  proto::ReviewResult pass;
  pass.attempt_id = review.attempt_id;
  pass.verdict = "pass";
  critic.Send(pass);
  ASSERT_TRUE(forge.WaitState(id, TaskState::kDone));
}

TEST(Protocol, AReviewCarriesTheBriefForACriticAgent) {
  ForgeOptions o = ScriptedOptions("critic");
  o.critic_yaml = "  agent: {profile: command, command: [\"true\"]}\n";
  Forge forge(o);
  std::string id;
  std::unique_ptr<ScriptedWorker> critic;
  auto review = ReviewOfAPassedTask(forge, &id, &critic);
  ASSERT_TRUE(review.has_value());
  ASSERT_TRUE(review->critic.has_value());
  EXPECT_EQ(review->task.brief, forge.Task(id).brief);
  EXPECT_FALSE(review->task.brief.empty());
}

}  // namespace
}  // namespace forge::itest
