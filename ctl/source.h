// Where the read-only commands get their data: the running supervisor (Live)
// or, when none runs, the database opened read-only (Offline). Both answer
// with the control protocol's reply types, so rendering does not care which.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "ctl/client.h"
#include "ctl/render.h"
#include "proto/control.h"

namespace forge::store {
class Store;
}

namespace forge::ctl {

class Source {
 public:
  virtual ~Source() = default;
  virtual Reach reach() const = 0;
  bool live() const { return reach() == Reach::kLive; }
  virtual Result<proto::StatusReply> Status() = 0;
  virtual Result<proto::ListReply> List(const proto::ListRequest& request) = 0;
  // kNotFound when there is no such task.
  virtual Result<proto::ShowReply> Show(const std::string& id) = 0;
  virtual Result<proto::EventsReply> Events(const proto::EventsRequest& request) = 0;
};

// Through the supervisor's control socket.
std::unique_ptr<Source> MakeLiveSource(std::unique_ptr<ControlClient> client);

// The database of state_dir, read-only. kNotFound when there is no database.
Result<std::unique_ptr<store::Store>> OpenStoreReadOnly(const std::string& state_dir);
std::unique_ptr<Source> MakeOfflineSource(std::unique_ptr<store::Store> store,
                                          std::string state_dir, const Clock* clock);

// Typed reading of a reply body; a FieldError becomes kDecode naming the field.
template <typename T>
Result<T> ReadReply(const json& body, const char* what) {
  try {
    T value{};
    ReadValue(body, value);
    return value;
  } catch (const std::exception& e) {
    return MakeError(ErrorCode::kDecode, std::string("malformed '") + what +
                                             "' reply from the supervisor: " + e.what());
  }
}

// Wall ms of the last midnight UTC before now: "today" for costs, as the
// supervisor's daily budget counts it.
int64_t UtcMidnightMs(int64_t now_ms);

}  // namespace forge::ctl
