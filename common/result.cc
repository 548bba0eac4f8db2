#include "common/result.h"

namespace forge {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalid:
      return "invalid";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kDecode:
      return "decode";
    case ErrorCode::kConfig:
      return "config";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kDb:
      return "db";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kFull:
      return "full";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

std::string Error::ToString() const {
  std::string out(code_name());
  out += ": ";
  out += message;
  return out;
}

Error Error::Wrap(std::string_view context) const {
  std::string msg(context);
  msg += ": ";
  msg += message;
  return Error{code, std::move(msg)};
}

}  // namespace forge
