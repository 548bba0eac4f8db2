#include "proto/child_link.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "common/clock.h"
#include "proto/child_job.h"
#include "proto/codec.h"

namespace forge::proto {
namespace {

using ::testing::HasSubstr;

int64_t Now() {
  return SystemClock::Get().MonotonicMs();
}

// The supervisor's side: a ROUTER on an ipc socket in a temp dir.
class ChildLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-link-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    endpoint_ = "ipc://" + dir_ + "/children.sock";
    router_ = zmq::socket_t(ctx_, zmq::socket_type::router);
    router_.set(zmq::sockopt::linger, 0);
    router_.bind(endpoint_);
  }
  void TearDown() override {
    router_.close();
    std::filesystem::remove_all(dir_);
  }

  // [identity, body] of the next message, or nullopt after timeout_ms.
  std::optional<std::pair<std::string, std::string>> Recv(int timeout_ms) {
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) <= 0) return std::nullopt;
    zmq::message_t id, body;
    (void)router_.recv(id);
    EXPECT_TRUE(id.more());
    (void)router_.recv(body);
    EXPECT_FALSE(body.more());
    return std::make_pair(id.to_string(), body.to_string());
  }

  void SendTo(const std::string& id, const std::string& body) {
    router_.send(zmq::buffer(id), zmq::send_flags::sndmore);
    router_.send(zmq::buffer(body));
  }

  std::string dir_;
  std::string endpoint_;
  zmq::context_t ctx_;
  zmq::socket_t router_;
};

TEST_F(ChildLinkTest, HelloArrivesAtOnceWithTheRoutingId) {
  auto link = ChildLink::Connect({endpoint_, "worker", 10000});
  ASSERT_TRUE(link.ok()) << link.error().ToString();
  auto m = Recv(5000);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->first, "worker-" + std::to_string(getpid()));
  EXPECT_EQ((*link)->routing_id(), m->first);
  auto decoded = DecodeChildMessage(m->second);
  ASSERT_TRUE(decoded.ok());
  auto* hello = std::get_if<Hello>(&*decoded);
  ASSERT_NE(hello, nullptr);
  EXPECT_EQ(hello->role, "worker");
  EXPECT_EQ(hello->pid, getpid());
  EXPECT_EQ(hello->version, FORGE_VERSION);
}

TEST_F(ChildLinkTest, PollHeartbeatsOnTimeAndNamesTheAttempt) {
  auto link = ChildLink::Connect({endpoint_, "critic", 30});
  ASSERT_TRUE(link.ok());
  ASSERT_TRUE(Recv(5000));  // hello
  (*link)->SetAttempt(42);
  std::vector<PollFd> none;
  const int64_t t0 = Now();
  auto ready = (*link)->Poll(none, t0 + 200);
  ASSERT_TRUE(ready.ok());
  EXPECT_FALSE(*ready);
  EXPECT_GE(Now() - t0, 200);
  // ~6 beats in 200 ms at 30 ms.
  int beats = 0;
  while (auto m = Recv(0)) {
    auto decoded = DecodeChildMessage(m->second);
    ASSERT_TRUE(decoded.ok());
    auto* hb = std::get_if<Heartbeat>(&*decoded);
    ASSERT_NE(hb, nullptr);
    EXPECT_EQ(hb->attempt_id, std::optional<int64_t>(42));
    ++beats;
  }
  EXPECT_GE(beats, 4);
  EXPECT_LE(beats, 8);
}

TEST_F(ChildLinkTest, PollReturnsForAReadyDescriptor) {
  auto link = ChildLink::Connect({endpoint_, "worker", 1000});
  ASSERT_TRUE(link.ok());
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  std::vector<PollFd> fds = {{p[0], ZMQ_POLLIN, 0}};
  const int64_t t0 = Now();
  auto ready = (*link)->Poll(fds, t0 + 5000);
  ASSERT_TRUE(ready.ok());
  EXPECT_FALSE(*ready);
  EXPECT_NE(fds[0].revents & ZMQ_POLLIN, 0);
  EXPECT_LT(Now() - t0, 1000);
  close(p[0]);
  close(p[1]);
}

TEST_F(ChildLinkTest, ReceiveDecodesAndSkipsGarbage) {
  auto link = ChildLink::Connect({endpoint_, "worker", 1000});
  ASSERT_TRUE(link.ok());
  auto hello = Recv(5000);
  ASSERT_TRUE(hello);
  SendTo(hello->first, "{not json");
  SendTo(hello->first, R"({"v":1,"type":"cancel","id":"1"})");  // attempt_id missing
  SendTo(hello->first, Encode(Cancel{5}));
  std::vector<PollFd> none;
  std::optional<SupervisorMessage> got;
  const int64_t deadline = Now() + 5000;
  while (!got && Now() < deadline) {
    auto ready = (*link)->Poll(none, deadline);
    ASSERT_TRUE(ready.ok());
    if (*ready) got = (*link)->Receive();
  }
  ASSERT_TRUE(got);
  auto* cancel = std::get_if<Cancel>(&*got);
  ASSERT_NE(cancel, nullptr);
  EXPECT_EQ(cancel->attempt_id, 5);
  EXPECT_EQ((*link)->decode_errors(), 2);
  EXPECT_FALSE((*link)->Receive());
}

TEST(ChildLink, BadOptionsAreRefused) {
  auto bad_hb = ChildLink::Connect({"ipc:///tmp/x.sock", "worker", 0});
  ASSERT_FALSE(bad_hb.ok());
  EXPECT_THAT(bad_hb.error().message, HasSubstr("heartbeat"));
  auto bad_ep = ChildLink::Connect({"nonsense://x", "worker", 100});
  ASSERT_FALSE(bad_ep.ok());
  EXPECT_THAT(bad_ep.error().message, HasSubstr("nonsense://x"));
}

TEST(ChildJob, RunsCapturesAndKillsItsGroupOnExit) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "cat; echo err >&2; sleep 1000 & echo $!"};
  o.env = {"PATH=/usr/bin:/bin"};
  std::string out, err;
  auto job = ChildJob::Start(o, "from stdin\n", [&](int stream, std::string_view d) {
    (stream == 1 ? out : err).append(d);
  });
  ASSERT_TRUE(job.ok()) << job.error().ToString();
  // Drive it until the leader exits (reaped directly here: no signalfd in the test).
  std::optional<ExitStatus> st;
  const int64_t deadline = Now() + 5000;
  while (!st && Now() < deadline) {
    std::vector<PollFd> fds;
    (*job)->AppendPollFds(fds);
    std::vector<zmq_pollitem_t> items;
    for (auto& f : fds) items.push_back({nullptr, f.fd, f.events, 0});
    zmq_poll(items.data(), static_cast<int>(items.size()), 10);
    for (size_t i = 0; i < fds.size(); ++i) fds[i].revents = items[i].revents;
    (*job)->HandleReady(fds);
    st = TryReap((*job)->pid());
  }
  ASSERT_TRUE(st);
  (*job)->OnExit(*st);
  EXPECT_TRUE((*job)->exited());
  EXPECT_EQ((*job)->status().exit_code, 0);
  EXPECT_EQ(err, "err\n");
  ASSERT_THAT(out, HasSubstr("from stdin\n"));
  pid_t grandchild = std::stoi(out.substr(out.find('\n') + 1));
  // The grandchild was SIGKILLed with the group; it is our zombie-free child's child.
  const int64_t gone_by = Now() + 5000;
  bool gone = false;
  while (!gone && Now() < gone_by) {
    std::string stat;
    FILE* f = fopen(("/proc/" + std::to_string(grandchild) + "/stat").c_str(), "r");
    if (f == nullptr) {
      gone = true;
      break;
    }
    char buf[512] = {};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    stat.assign(buf, n);
    // Reparented to init (or a subreaper) and reaped there, or a zombie: either way dead.
    gone = stat.find(") Z") != std::string::npos;
  }
  EXPECT_TRUE(gone);
}

TEST(ChildJob, MissingBinaryIsNotFound) {
  SpawnOptions o;
  o.argv = {"/nonexistent/agent"};
  auto job = ChildJob::Start(o, "", nullptr);
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(job.error().message, HasSubstr("/nonexistent/agent"));
}

}  // namespace
}  // namespace forge::proto
