#include "ctl/source.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "ctl/state.h"
#include "supervisor/store/store.h"

namespace forge::ctl {

int64_t UtcMidnightMs(int64_t now_ms) {
  constexpr int64_t kDay = 24LL * 3600 * 1000;
  return now_ms - ((now_ms % kDay) + kDay) % kDay;
}

namespace {

class LiveSource final : public Source {
 public:
  explicit LiveSource(std::unique_ptr<ControlClient> client) : client_(std::move(client)) {}
  Reach reach() const override { return Reach::kLive; }

  Result<proto::StatusReply> Status() override {
    FORGE_ASSIGN_OR_RETURN(json body, client_->Call("status"));
    return ReadReply<proto::StatusReply>(body, "status");
  }

  Result<proto::ListReply> List(const proto::ListRequest& request) override {
    json args = json::object();
    if (request.state) args["state"] = std::string(proto::StateName(*request.state));
    if (request.limit > 0) args["limit"] = request.limit;
    FORGE_ASSIGN_OR_RETURN(json body, client_->Call("ls", args));
    return ReadReply<proto::ListReply>(body, "ls");
  }

  Result<proto::ShowReply> Show(const std::string& id) override {
    FORGE_ASSIGN_OR_RETURN(json body, client_->Call("show", json{{"id", id}}));
    return ReadReply<proto::ShowReply>(body, "show");
  }

  Result<proto::EventsReply> Events(const proto::EventsRequest& request) override {
    json args = {{"since", request.since}, {"limit", request.limit}};
    if (request.newest) args["newest"] = true;
    if (request.before > 0) args["before"] = request.before;
    if (!request.task_id.empty()) args["task_id"] = request.task_id;
    if (!request.kind.empty()) args["kind"] = request.kind;
    FORGE_ASSIGN_OR_RETURN(json body, client_->Call("events", args));
    return ReadReply<proto::EventsReply>(body, "events");
  }

 private:
  std::unique_ptr<ControlClient> client_;
};

class OfflineSource final : public Source {
 public:
  OfflineSource(std::unique_ptr<store::Store> store, std::string state_dir, const Clock* clock)
      : store_(std::move(store)), state_dir_(std::move(state_dir)), clock_(clock) {}
  Reach reach() const override { return Reach::kOffline; }

  // What the database alone can tell: no pid, no children, and of the
  // pauses only the operator's, which the next start keeps.
  Result<proto::StatusReply> Status() override {
    proto::StatusReply reply;
    reply.state_dir = state_dir_;
    FORGE_ASSIGN_OR_RETURN(auto operator_pause, store_->OperatorPause());
    if (operator_pause) {
      reply.paused = true;
      reply.pause_reasons.push_back(
          {"operator", operator_pause->empty() ? "paused by operator" : *operator_pause, 0});
    }
    FORGE_ASSIGN_OR_RETURN(reply.queue, store_->QueueCounts());
    FORGE_ASSIGN_OR_RETURN(reply.cost_today_usd,
                           store_->CostSince(UtcMidnightMs(clock_->WallMs())));
    FORGE_ASSIGN_OR_RETURN(reply.last_failure, store_->LastFailure());
    proto::RedactForOperator(reply.last_failure, {},
                             [&](const std::string& id) { return store_->TaskEnv(id); });
    return reply;
  }

  // Redacted as the supervisor's replies are (the database holds a task's
  // env as submitted), except for its config's secrets, which only it knows.
  Result<proto::ListReply> List(const proto::ListRequest& request) override {
    store::ListFilter filter;
    filter.state = request.state;
    filter.limit = request.limit;
    FORGE_ASSIGN_OR_RETURN(proto::ListReply reply, store_->List(filter));
    proto::RedactForOperator(reply, {});
    return reply;
  }

  Result<proto::ShowReply> Show(const std::string& id) override {
    // As the supervisor answers it: the same timeline, online or not.
    FORGE_ASSIGN_OR_RETURN(proto::ShowReply reply, store_->Show(id, proto::kShowTimelineMax));
    proto::RedactForOperator(reply, {});
    return reply;
  }

  Result<proto::EventsReply> Events(const proto::EventsRequest& request) override {
    store::EventFilter filter;
    filter.since_seq = request.since;
    filter.task_id = request.task_id;
    filter.kind = request.kind;
    filter.limit = request.limit;
    filter.newest = request.newest;
    filter.before_seq = request.before;
    proto::EventsReply reply;
    FORGE_ASSIGN_OR_RETURN(reply.events, store_->Events(filter));
    FORGE_ASSIGN_OR_RETURN(reply.last_seq, store_->LastEventSeq());
    FORGE_RETURN_IF_ERROR(proto::RedactForOperator(
        reply, {}, [&](const std::string& id) { return store_->TaskEnv(id); }));
    return reply;
  }

 private:
  std::unique_ptr<store::Store> store_;
  std::string state_dir_;
  const Clock* clock_;
};

}  // namespace

std::unique_ptr<Source> MakeLiveSource(std::unique_ptr<ControlClient> client) {
  return std::make_unique<LiveSource>(std::move(client));
}

Result<std::unique_ptr<store::Store>> OpenStoreReadOnly(const std::string& state_dir) {
  std::string db = DbPath(state_dir);
  if (::access(db.c_str(), F_OK) != 0) {
    return MakeError(
        ErrorCode::kNotFound,
        "no database at " + db + " (nothing was ever started with this state directory)");
  }
  store::StoreOptions options;
  options.db_path = db;
  options.read_only = true;
  auto opened = store::Store::Open(options);
  if (!opened.ok()) return opened.error().Wrap("opening " + db + " read-only");
  return std::move(opened).value();
}

std::unique_ptr<Source> MakeOfflineSource(std::unique_ptr<store::Store> store,
                                          std::string state_dir, const Clock* clock) {
  return std::make_unique<OfflineSource>(std::move(store), std::move(state_dir), clock);
}

}  // namespace forge::ctl
