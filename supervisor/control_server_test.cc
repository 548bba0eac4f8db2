#include "supervisor/control_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "proto/control.h"

namespace forge::supervisor {
namespace {

using ::testing::HasSubstr;

class FakeBackend : public ControlBackend {
 public:
  proto::StatusReply Status() override {
    proto::StatusReply s;
    s.pid = 42;
    s.paused = paused;
    return s;
  }
  json Counters() override { return json{{"bad_child_messages", 7}}; }
  void OnQueueChanged() override { ++queue_changes; }
  void OnCancelled(const store::Change& change) override { cancelled.push_back(change); }
  void Pause(const std::string& reason) override {
    paused = true;
    pause_reason = reason;
  }
  void Resume() override { paused = false; }
  void Stop() override { stopped = true; }
  std::vector<std::string> ConfigSecrets() override { return {"config-secret-value"}; }

  int queue_changes = 0;
  std::vector<store::Change> cancelled;
  bool paused = false;
  bool stopped = false;
  std::string pause_reason;
};

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/forge-control-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store::StoreOptions o;
    o.db_path = dir_ + "/forge.db";
    auto s = store::Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(*s);
    server_ = std::make_unique<ControlServer>(*store_, backend_);
  }
  void TearDown() override {
    server_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Result<json> Call(const std::string& cmd, json args = json::object()) {
    return proto::DecodeReply(server_->Handle(proto::EncodeControlRequest(cmd, std::move(args))));
  }
  std::string SubmitOne(json task) {
    auto r = Call("submit", json{{"tasks", json::array({task})}});
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? (*r)["ids"][0].get<std::string>() : "";
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  FakeBackend backend_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, MalformedRequestsGetErrorRepliesAndAreCounted) {
  auto r = proto::DecodeReply(server_->Handle("{nope"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kDecode);
  auto unknown = Call("explode");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalid);
  EXPECT_THAT(unknown.error().message, HasSubstr("unknown command 'explode'"));
  auto typed = Call("show", json{{"id", 3}});
  ASSERT_FALSE(typed.ok());
  EXPECT_THAT(typed.error().message, HasSubstr("'id'"));
  auto empty = Call("submit", json{{"tasks", json::array()}});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(server_->malformed(), 4);
  EXPECT_EQ(server_->requests(), 4);
  auto missing = Call("show", json{{"id", "t-none"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(server_->malformed(), 4);  // a well-formed request for a missing task is not malformed
}

TEST_F(ControlServerTest, StatusCarriesCounters) {
  auto s = Call("status");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)["pid"], 42);
  EXPECT_EQ((*s)["counters"]["bad_child_messages"], 7);
  EXPECT_EQ((*s)["counters"]["control_requests"], 1);
}

TEST_F(ControlServerTest, SubmitShowAndListRedactSecrets) {
  std::string id = SubmitOne(json{{"title", "t"},
                                  {"brief", "use config-secret-value and tok-12345678"},
                                  {"env", {{"API_TOKEN", "tok-12345678"}, {"MODE", "x"}}}});
  EXPECT_EQ(backend_.queue_changes, 1);
  auto show = Call("show", json{{"id", id}});
  ASSERT_TRUE(show.ok()) << show.error().message;
  std::string dumped = show->dump();
  EXPECT_EQ(dumped.find("tok-12345678"), std::string::npos) << dumped;
  EXPECT_EQ(dumped.find("config-secret-value"), std::string::npos) << dumped;
  EXPECT_EQ((*show)["env"]["MODE"], "x");
  EXPECT_EQ((*show)["env"]["API_TOKEN"], "[redacted]");
  auto ls = Call("ls");
  ASSERT_TRUE(ls.ok());
  EXPECT_EQ(ls->dump().find("tok-12345678"), std::string::npos);
  ASSERT_EQ((*ls)["tasks"].size(), 1u);
}

TEST_F(ControlServerTest, CancelReportsTheOpenAttemptToTheBackend) {
  std::string id = SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  store::Lease lease;
  lease.worker_pid = 1;
  ASSERT_TRUE(store_->LeaseAttempt(id, lease).ok());
  auto r = Call("cancel", json{{"id", id}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["previous_state"], "running");
  EXPECT_EQ((*r)["state"], "cancelled");
  ASSERT_EQ(backend_.cancelled.size(), 1u);
  ASSERT_TRUE(backend_.cancelled[0].open_attempt.has_value());
  auto again = Call("cancel", json{{"id", id}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  auto retry = Call("retry", json{{"id", id}});
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ((*retry)["state"], "ready");
}

TEST_F(ControlServerTest, PauseResumeStopAndEvents) {
  auto p = Call("pause", json{{"reason", "lunch"}});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(backend_.paused);
  EXPECT_EQ(backend_.pause_reason, "lunch");
  ASSERT_TRUE(Call("resume").ok());
  EXPECT_FALSE(backend_.paused);
  SubmitOne(json{{"title", "t"}, {"brief", "b"}});
  auto events = Call("events", json{{"since", 0}, {"kind", "task."}});
  ASSERT_TRUE(events.ok()) << events.error().message;
  ASSERT_FALSE((*events)["events"].empty());
  EXPECT_EQ((*events)["events"][0]["kind"], "task.submitted");
  EXPECT_GE((*events)["last_seq"].get<int64_t>(), 1);
  ASSERT_TRUE(Call("stop").ok());
  EXPECT_TRUE(backend_.stopped);
}

}  // namespace
}  // namespace forge::supervisor
