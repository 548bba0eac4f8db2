// The supervisor's side of the control protocol (proto/control.h): one
// request in, one reply out. Queue commands go to the store; what needs the
// live supervisor (status, pause, stop, killing a cancelled attempt, kicking
// dispatch) goes through ControlBackend. A malformed request gets an error
// reply and is counted; nothing a client sends can stop the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
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
  // Begins a graceful stop after this reply is sent; returns the longest it
  // can take, in ms (the running attempts' grace, then their kill).
  virtual int64_t Stop() = 0;
  // Secret values (config env) to redact from show/ls/events output.
  virtual std::vector<std::string> ConfigSecrets() = 0;
  // budget.task_usd in force (0: none): `retry` refuses a task that has
  // spent it, which would be blocked again without running.
  virtual double TaskBudgetUsd() = 0;
};

// Bounds on staged submits (submit_begin/chunk/commit, docs/protocol.md).
// Staged tasks are held in memory until commit, so both their number and the
// bytes received are capped, and an upload nobody touches for idle_ms is
// dropped: a ZeroMQ ROUTER does not see a client disconnect, so the idle
// timeout is what reclaims an abandoned upload (checked on every request).
struct UploadLimits {
  int64_t idle_ms = 60'000;
  size_t max_uploads = 4;
  size_t max_tasks = 1'000'000;
  int64_t max_bytes = int64_t{256} << 20;
};

class ControlServer {
 public:
  // monotonic_ms: the clock for upload expiry (tests pass a fake one); null
  // uses std::chrono::steady_clock.
  ControlServer(store::Store& store, ControlBackend& backend,
                std::function<int64_t()> monotonic_ms = nullptr);

  // Always returns an encoded reply ({"ok":true,...} or {"ok":false,"error":{...}}).
  std::string Handle(std::string_view request);

  int64_t requests() const { return requests_; }
  int64_t malformed() const { return malformed_; }
  size_t uploads() const { return uploads_.size(); }
  void set_upload_limits(const UploadLimits& limits) { limits_ = limits; }

 private:
  struct Upload {
    std::vector<proto::SubmitTask> tasks;
    int64_t bytes = 0;
    int64_t last_ms = 0;  // monotonic, last begin/chunk
  };

  Result<json> Dispatch(const proto::ControlRequest& request, size_t request_bytes);
  Result<json> Submit(const json& args);
  // The store's Submit, or SubmitOnce under a client's key.
  Result<json> SubmitTasks(const std::vector<proto::SubmitTask>& tasks,
                           const std::optional<std::string>& idempotency_key);
  Result<json> SubmitBegin();
  Result<json> SubmitChunk(const json& args, size_t request_bytes);
  Result<json> SubmitCommit(const json& args);
  Result<json> SubmitAbort(const json& args);
  Result<std::map<std::string, Upload>::iterator> FindUpload(const std::string& id);
  void ExpireUploads();
  // backend_.Status() with its last failure redacted for an operator.
  proto::StatusReply Status();
  Result<json> Show(const json& args);
  Result<json> List(const json& args);
  Result<json> Cancel(const json& args);
  Result<json> Retry(const json& args);
  Result<json> Approve(const json& args);
  Result<json> Events(const json& args);

  store::Store& store_;
  ControlBackend& backend_;
  std::function<int64_t()> monotonic_ms_;
  UploadLimits limits_;
  std::map<std::string, Upload> uploads_;
  std::mt19937_64 rng_{std::random_device{}()};
  int64_t requests_ = 0;
  int64_t malformed_ = 0;
};

}  // namespace forge::supervisor
