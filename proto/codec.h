// Envelope and codec. Encode adds {"v","type","id"}; Decode checks size
// (kMaxMessageBytes), JSON syntax, the envelope and every required field, and
// returns kDecode errors that name the field ("field 'task.id' is missing").
// Unknown fields are ignored. Never throws, whatever the bytes.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "proto/messages.h"

namespace forge::proto {

// A fresh message id (unique per process run).
std::string NextMessageId();

template <typename M>
std::string Encode(const M& message, const std::string& id = NextMessageId()) {
  json j = message;
  j["v"] = kProtocolVersion;
  j["type"] = M::kType;
  j["id"] = id;
  // Invalid UTF-8 (an agent's output cut mid-character) is replaced, never thrown.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}
std::string Encode(const ChildMessage& message);
std::string Encode(const SupervisorMessage& message);

forge::Result<ChildMessage> DecodeChildMessage(std::string_view bytes);
forge::Result<SupervisorMessage> DecodeSupervisorMessage(std::string_view bytes);

// Parses bytes into a JSON object with the size limit; the first step of every decoder.
// Nesting deeper than kMaxJsonDepth is refused too (copying such a value would
// recurse that deep).
inline constexpr int kMaxJsonDepth = 256;
forge::Result<json> ParseObject(std::string_view bytes);
// The type name of a message ("hello", ...), for logs and counters.
std::string_view TypeName(const ChildMessage& message);
std::string_view TypeName(const SupervisorMessage& message);

}  // namespace forge::proto
