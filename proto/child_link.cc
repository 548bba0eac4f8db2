#include "proto/child_link.h"

#include <errno.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "proto/codec.h"

namespace forge::proto {
namespace {

int64_t NowMs() {
  return SystemClock::Get().MonotonicMs();
}

}  // namespace

forge::Result<std::unique_ptr<ChildLink>> ChildLink::Connect(const Options& options) {
  if (options.role.empty()) return MakeError(ErrorCode::kInvalid, "child link: empty role");
  if (options.heartbeat_ms <= 0) {
    return MakeError(ErrorCode::kInvalid, "child link: heartbeat interval must be positive, got " +
                                              std::to_string(options.heartbeat_ms));
  }
  std::unique_ptr<ChildLink> link(new ChildLink());
  link->routing_id_ = options.role + "-" + std::to_string(getpid());
  link->heartbeat_ms_ = options.heartbeat_ms;
  try {
    link->socket_ = zmq::socket_t(link->context_, zmq::socket_type::dealer);
    link->socket_.set(zmq::sockopt::routing_id, link->routing_id_);
    link->socket_.set(zmq::sockopt::linger, 0);
    link->socket_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(kMaxMessageBytes));
    link->socket_.connect(options.endpoint);
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot connect to supervisor at '" + options.endpoint + "': " + e.what());
  }
  Hello hello;
  hello.role = options.role;
  hello.pid = getpid();
  hello.version = FORGE_VERSION;
  FORGE_RETURN_IF_ERROR(link->Send(hello));
  link->next_heartbeat_ms_ = NowMs() + link->heartbeat_ms_;
  return link;
}

ChildLink::~ChildLink() = default;

void ChildLink::Close(int64_t linger_ms) {
  try {
    if (!socket_) return;
    socket_.set(zmq::sockopt::linger, static_cast<int>(linger_ms));
    socket_.close();
  } catch (const zmq::error_t& e) {
    spdlog::warn("closing the supervisor socket: {}", e.what());
  }
}

Status ChildLink::Send(const ChildMessage& message) {
  return SendRaw(Encode(message));
}

Status ChildLink::SendRaw(const std::string& bytes) {
  try {
    // A DEALER queues for a connecting peer, so this only fails when the
    // queue is full (supervisor gone for a long time) or the context is closed.
    auto sent = socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    if (!sent) return MakeError(ErrorCode::kUnavailable, "supervisor socket queue is full");
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kIo, std::string("sending to supervisor: ") + e.what());
  }
  return Status::Ok();
}

void ChildLink::HeartbeatIfDue(int64_t now_ms) {
  if (now_ms < next_heartbeat_ms_) return;
  Heartbeat hb;
  hb.attempt_id = attempt_id_;
  Status s = Send(hb);
  if (!s.ok()) spdlog::warn("heartbeat not sent: {}", s.error().ToString());
  ++heartbeats_sent_;
  // Skip missed beats rather than bursting them after a long stall.
  next_heartbeat_ms_ = std::max(next_heartbeat_ms_ + heartbeat_ms_, now_ms + 1);
}

forge::Result<bool> ChildLink::Poll(std::vector<PollFd>& fds, int64_t deadline_ms) {
  std::vector<zmq_pollitem_t> items;
  items.reserve(fds.size() + 1);
  items.push_back({socket_.handle(), 0, ZMQ_POLLIN, 0});
  for (const auto& f : fds) items.push_back({nullptr, f.fd, f.events, 0});
  while (true) {
    int64_t now = NowMs();
    HeartbeatIfDue(now);
    int64_t wake = next_heartbeat_ms_;
    if (deadline_ms >= 0) wake = std::min(wake, deadline_ms);
    long timeout = static_cast<long>(std::max<int64_t>(0, wake - now));
    int rc = zmq_poll(items.data(), static_cast<int>(items.size()), timeout);
    if (rc < 0) {
      if (zmq_errno() == EINTR) continue;
      return MakeError(ErrorCode::kIo, std::string("zmq_poll: ") + zmq_strerror(zmq_errno()));
    }
    if (rc > 0 || (deadline_ms >= 0 && NowMs() >= deadline_ms)) {
      for (size_t i = 0; i < fds.size(); ++i) fds[i].revents = items[i + 1].revents;
      HeartbeatIfDue(NowMs());
      return (items[0].revents & ZMQ_POLLIN) != 0;
    }
  }
}

std::optional<SupervisorMessage> ChildLink::Receive() {
  while (true) {
    zmq::message_t msg;
    try {
      auto got = socket_.recv(msg, zmq::recv_flags::dontwait);
      if (!got) return std::nullopt;
      // Every message is one frame; drop any extra frames a broken peer sent.
      bool extra = false;
      while (msg.more()) {
        zmq::message_t rest;
        (void)socket_.recv(rest, zmq::recv_flags::dontwait);
        extra = true;
        if (!rest.more()) break;
      }
      if (extra) {
        ++decode_errors_;
        spdlog::warn("dropped a multi-frame message from the supervisor");
        continue;
      }
    } catch (const zmq::error_t& e) {
      spdlog::error("receiving from supervisor: {}", e.what());
      return std::nullopt;
    }
    auto decoded = DecodeSupervisorMessage(msg.to_string_view());
    if (decoded.ok()) return std::move(decoded).value();
    ++decode_errors_;
    spdlog::warn("undecodable message from supervisor ({} bytes): {}", msg.size(),
                 decoded.error().ToString());
  }
}

}  // namespace forge::proto
