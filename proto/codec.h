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
  return j.dump();
}
std::string Encode(const ChildMessage& message);
std::string Encode(const SupervisorMessage& message);

Result<ChildMessage> DecodeChildMessage(std::string_view bytes);
Result<SupervisorMessage> DecodeSupervisorMessage(std::string_view bytes);

// Parses bytes into a JSON object with the size limit; the first step of every decoder.
Result<json> ParseObject(std::string_view bytes);

}  // namespace forge::proto
