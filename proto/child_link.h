// ChildLink: the child side (forge-worker, forge-critic) of the supervisor <->
// child socket (see docs/children-contract). A DEALER with routing id
// "<role>-<pid>" connects to the supervisor's ROUTER, says hello at once, and
// heartbeats every heartbeat_ms from Poll(), which also waits on the caller's
// descriptors (agent pipes, signalfd): the child never blocks anywhere else,
// so heartbeats keep coming while an agent or a verify command runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/result.h"
#include "proto/messages.h"

namespace forge::proto {

// A descriptor watched by ChildLink::Poll. events/revents use ZMQ_POLLIN,
// ZMQ_POLLOUT, ZMQ_POLLERR (a hang-up on a pipe shows as ZMQ_POLLERR).
struct PollFd {
  int fd = -1;
  short events = 0;
  short revents = 0;
};

class ChildLink {
 public:
  struct Options {
    std::string endpoint;  // e.g. ipc:///state/children.sock
    std::string role;      // worker | critic
    int64_t heartbeat_ms = 1000;
  };

  // Connects and sends hello{role, pid, version}. Errors name the endpoint.
  static forge::Result<std::unique_ptr<ChildLink>> Connect(const Options& options);

  ChildLink(const ChildLink&) = delete;
  ChildLink& operator=(const ChildLink&) = delete;
  ~ChildLink();

  // The attempt the heartbeats name (nullopt while idle).
  void SetAttempt(std::optional<int64_t> attempt_id) { attempt_id_ = attempt_id; }

  // Sends one message without blocking; an error when the socket refuses it.
  Status Send(const ChildMessage& message);

  // Waits until a supervisor message is waiting, one of `fds` is ready, or
  // the monotonic deadline (ms, -1: none) passes, sending every heartbeat
  // that falls due meanwhile. Fills fds[i].revents. Returns true when a
  // message is waiting (read it with Receive()).
  forge::Result<bool> Poll(std::vector<PollFd>& fds, int64_t deadline_ms);

  // The next decoded supervisor message, nullopt when none is waiting. A
  // message that does not decode is logged, counted and skipped.
  std::optional<SupervisorMessage> Receive();

  // Closes the socket, waiting up to linger_ms for queued messages (the
  // final result) to leave. The socket lingers 0 ms otherwise, so a child
  // never hangs on a supervisor that is gone.
  void Close(int64_t linger_ms);

  const std::string& routing_id() const { return routing_id_; }
  int64_t decode_errors() const { return decode_errors_; }
  int64_t heartbeats_sent() const { return heartbeats_sent_; }

 private:
  ChildLink() = default;
  Status SendRaw(const std::string& bytes);
  void HeartbeatIfDue(int64_t now_ms);

  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string routing_id_;
  int64_t heartbeat_ms_ = 1000;
  int64_t next_heartbeat_ms_ = 0;
  std::optional<int64_t> attempt_id_;
  int64_t decode_errors_ = 0;
  int64_t heartbeats_sent_ = 0;
};

}  // namespace forge::proto
