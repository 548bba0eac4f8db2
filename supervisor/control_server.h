// The supervisor's side of the control protocol (proto/control.h): one
// request in, one reply out. Queue commands go to the store; what needs the
// live supervisor (status, pause, stop, killing a cancelled attempt, kicking
// dispatch) goes through ControlBackend. A malformed request gets an error
// reply and is counted; nothing a client sends can stop the loop.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/control.h"
#include "supervisor/store/store.h"

namespace forge::supervisor {

using json = nlohmann::json;

class ControlBackend {
 public:
  virtual ~ControlBackend() = default;
  virtual proto::StatusReply Status() = 0;
  // Refused-message counters, added to the status reply as "counters".
  virtual json Counters() = 0;
  // Tasks may have become ready (submit, retry, approve): try to dispatch.
  virtual void OnQueueChanged() = 0;
  // A task was cancelled; open_attempt, when set, must be killed.
  virtual void OnCancelled(const store::Change& change) = 0;
  virtual void Pause(const std::string& reason) = 0;
  virtual void Resume() = 0;
  // Begins a graceful stop after this reply is sent.
  virtual void Stop() = 0;
  // Secret values (config env) to redact from show/ls/events output.
  virtual std::vector<std::string> ConfigSecrets() = 0;
};

class ControlServer {
 public:
  ControlServer(store::Store& store, ControlBackend& backend) : store_(store), backend_(backend) {}

  // Always returns an encoded reply ({"ok":true,...} or {"ok":false,"error":{...}}).
  std::string Handle(std::string_view request);

  int64_t requests() const { return requests_; }
  int64_t malformed() const { return malformed_; }

 private:
  Result<json> Dispatch(const proto::ControlRequest& request);
  Result<json> Submit(const json& args);
  Result<json> Show(const json& args);
  Result<json> List(const json& args);
  Result<json> Cancel(const json& args);
  Result<json> Retry(const json& args);
  Result<json> Approve(const json& args);
  Result<json> Events(const json& args);

  // Secret env values replaced in a task, and secret text in its errors.
  void Redact(proto::TaskInfo& task, std::vector<std::string>* secrets_out = nullptr);

  store::Store& store_;
  ControlBackend& backend_;
  int64_t requests_ = 0;
  int64_t malformed_ = 0;
};

}  // namespace forge::supervisor
