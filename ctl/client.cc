#include "ctl/client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <zmq.hpp>

#include "common/duration.h"
#include "ctl/state.h"
#include "proto/control.h"
#include "proto/endpoints.h"
#include "proto/messages.h"

namespace forge::ctl {

Status CheckStateDirAccess(const std::string& state_dir) {
  struct stat st {};
  // Under a file (ENOTDIR) it cannot be one either: not "not running", with
  // a start command that would fail the same way.
  const bool exists = ::stat(state_dir.c_str(), &st) == 0;
  if ((exists && !S_ISDIR(st.st_mode)) || (!exists && errno == ENOTDIR)) {
    return MakeError(ErrorCode::kInvalid, "the state directory " + state_dir +
                                              " is not a directory (--state-dir or "
                                              "FORGE_STATE_DIR)");
  }
  if (::access(state_dir.c_str(), R_OK | X_OK) == 0 || errno != EACCES) return Status::Ok();
  std::string detail;
  if (::stat(state_dir.c_str(), &st) == 0) {
    char mode[16];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    detail = " (mode " + std::string(mode) + ", owner uid " + std::to_string(st.st_uid) +
             "; you are uid " + std::to_string(::geteuid()) + ")";
  } else {
    detail = " (" + std::string(std::strerror(errno)) + " on a parent directory)";
  }
  return MakeError(ErrorCode::kIo, "permission denied: cannot enter the state directory " +
                                       state_dir + detail +
                                       "; run forge-ctl as the user who runs the supervisor");
}

struct ControlClient::Impl {
  zmq::context_t context{1};
  std::unique_ptr<zmq::socket_t> socket;
};

Result<std::unique_ptr<ControlClient>> ControlClient::Connect(const std::string& state_dir,
                                                              int64_t timeout_ms) {
  FORGE_ASSIGN_OR_RETURN(auto client,
                         ConnectTo(proto::ResolveEndpoints(state_dir).control, timeout_ms));
  client->state_dir_ = state_dir;
  return client;
}

Result<std::unique_ptr<ControlClient>> ControlClient::ConnectTo(const std::string& endpoint,
                                                                int64_t timeout_ms) {
  std::unique_ptr<ControlClient> client(new ControlClient());
  client->impl_ = std::make_unique<Impl>();
  client->endpoint_ = endpoint;
  client->timeout_ms_ = timeout_ms;
  FORGE_RETURN_IF_ERROR(client->Reconnect());
  return client;
}

ControlClient::~ControlClient() = default;

// A fresh socket per timed-out call: a late reply to an abandoned request must
// never be read as the answer to the next one.
Status ControlClient::Reconnect() {
  try {
    impl_->socket.reset();
    auto socket = std::make_unique<zmq::socket_t>(impl_->context, zmq::socket_type::dealer);
    socket->set(zmq::sockopt::linger, 0);
    // No cap on what this socket receives (-1, ZeroMQ's default). The peer
    // is the supervisor that owns the state directory, on its own ipc://
    // socket, and its replies have no size bound (ls carries every task
    // with its brief; show and events pages can be large). Any cap here is
    // a reply ZeroMQ drops unseen, which after the timeout read as "the
    // supervisor did not answer" and fell back to the database; a finite
    // cap larger than 4 MiB would only move that line. The supervisor's
    // own socket still caps what it receives (requests; a plan too large
    // for one is staged in chunks).
    socket->set(zmq::sockopt::maxmsgsize, int64_t{-1});
    socket->connect(endpoint_);
    impl_->socket = std::move(socket);
    return Status::Ok();
  } catch (const zmq::error_t& e) {
    return MakeError(ErrorCode::kUnavailable,
                     "cannot connect to the supervisor at " + endpoint_ + ": " + e.what());
  }
}

namespace {
ErrorCode CodeFromName(const std::string& name) {
  for (ErrorCode c :
       {ErrorCode::kInvalid, ErrorCode::kNotFound, ErrorCode::kConflict, ErrorCode::kDecode,
        ErrorCode::kConfig, ErrorCode::kIo, ErrorCode::kDb, ErrorCode::kBusy, ErrorCode::kFull,
        ErrorCode::kUnavailable, ErrorCode::kTimeout, ErrorCode::kInternal}) {
    if (ErrorCodeName(c) == name) return c;
  }
  return ErrorCode::kInternal;
}

// Parsed here rather than through proto::DecodeReply so that an error reply
// with a code this build does not know still shows the supervisor's message.
Result<json> ParseReply(const std::string& bytes) {
  json reply = json::parse(bytes, nullptr, false);
  if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok") ||
      !reply["ok"].is_boolean()) {
    return MakeError(ErrorCode::kDecode,
                     "malformed reply from the supervisor: " + bytes.substr(0, 200));
  }
  if (reply["ok"].get<bool>()) {
    reply.erase("ok");
    return reply;
  }
  const json& err = reply.value("error", json::object());
  std::string code = err.is_object() ? err.value("code", "internal") : "internal";
  std::string message = err.is_object() ? err.value("message", "") : "";
  if (message.empty()) message = "the supervisor refused the request (" + code + ")";
  return MakeError(CodeFromName(code), message);
}
}  // namespace

namespace {
// How often a Call waiting for its answer looks at the supervisor's lock.
constexpr std::chrono::milliseconds kLookAtTheLockEvery{100};
}  // namespace

Result<json> ControlClient::Call(const std::string& cmd, const json& args) {
  if (!impl_->socket) FORGE_RETURN_IF_ERROR(Reconnect());
  json request = args.is_object() ? args : json::object();
  request["v"] = proto::kProtocolVersion;
  request["cmd"] = cmd;
  // Encoded before any frame is sent: a request that cannot be encoded (text
  // that is not UTF-8, which the commands refuse first) must leave no
  // half-sent message on the socket, and must not escape as an exception.
  std::string body;
  try {
    body = request.dump();
  } catch (const json::exception& e) {
    return MakeError(ErrorCode::kInvalid,
                     "cannot send '" + cmd + "' to the supervisor: " + std::string(e.what()));
  }
  try {
    zmq::socket_t& socket = *impl_->socket;
    socket.send(zmq::message_t(), zmq::send_flags::sndmore);
    socket.send(zmq::buffer(body), zmq::send_flags::none);

    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    int ready = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    for (auto left = deadline - std::chrono::steady_clock::now(); ready == 0 && left.count() > 0;
         left = deadline - std::chrono::steady_clock::now()) {
      auto slice = std::chrono::ceil<std::chrono::milliseconds>(left);
      if (!state_dir_.empty()) slice = std::min(slice, kLookAtTheLockEvery);
      ready = zmq::poll(&item, 1, slice);
      // A supervisor that stopped (a `stop`, a crash) will not answer: said
      // now, not after the whole timeout (a `wait` read as hung for 10 s).
      if (ready == 0 && !state_dir_.empty() && !SupervisorPid(state_dir_)) {
        // An answer that came between the poll and the look at the lock is
        // the answer: one more look at the socket.
        ready = zmq::poll(&item, 1, std::chrono::milliseconds(0));
        if (ready == 0) {
          impl_->socket.reset();
          return MakeError(ErrorCode::kUnavailable, "the supervisor stopped before answering '" +
                                                        cmd + "' (" + endpoint_ + ")");
        }
      }
    }
    if (ready <= 0) {
      impl_->socket.reset();
      return MakeError(ErrorCode::kTimeout, "the supervisor did not answer '" + cmd + "' within " +
                                                FormatDuration(Millis(timeout_ms_)) + " (" +
                                                endpoint_ + ")");
    }
    // Skip the delimiter: everything before the last frame is envelope.
    std::string last;
    bool more = true;
    while (more) {
      zmq::message_t frame;
      if (!socket.recv(frame, zmq::recv_flags::none)) break;
      last = frame.to_string();
      more = frame.more();
    }
    return ParseReply(last);
  } catch (const zmq::error_t& e) {
    impl_->socket.reset();
    return MakeError(ErrorCode::kUnavailable,
                     "talking to the supervisor at " + endpoint_ + ": " + e.what());
  }
}

}  // namespace forge::ctl
