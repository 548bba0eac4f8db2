#include "proto/codec.h"

#include <unistd.h>

#include <atomic>
#include <exception>

#include "proto/json_fields.h"

namespace forge::proto {
namespace {

Error DecodeError(std::string message) {
  return MakeError(ErrorCode::kDecode, std::move(message));
}

// True when brackets nest deeper than max_depth (outside strings). A cheap
// pre-scan: the parser itself is iterative, but copying or dumping a value
// recurses once per level.
bool TooDeep(std::string_view bytes, int max_depth) {
  // No deeper than it has brackets: a message with at most max_depth of
  // them (every message a child or the supervisor sends on figure 1's
  // path has a dozen) needs no scan of its strings. The count is a loop
  // the compiler vectorizes; the scan below, a few instructions a byte,
  // was a tenth of decoding a dispatch.
  size_t opening = 0;
  for (char c : bytes) opening += static_cast<size_t>(c == '[') + static_cast<size_t>(c == '{');
  if (opening <= static_cast<size_t>(max_depth)) return false;
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : bytes) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

template <typename Variant>
std::string TypeList() {
  std::string out;
  [&]<size_t... I>(std::index_sequence<I...>) {
    ((out += (I == 0 ? "" : ", "), out += std::variant_alternative_t<I, Variant>::kType), ...);
  }
  (std::make_index_sequence<std::variant_size_v<Variant>>());
  return out;
}

// Reads j as the alternative of Variant whose kType is `type`; false if none is.
template <typename Variant, size_t I = 0>
bool ReadAlternative(std::string_view type, const json& j, Variant& out) {
  if constexpr (I < std::variant_size_v<Variant>) {
    using M = std::variant_alternative_t<I, Variant>;
    if (type == M::kType) {
      M m{};
      ReadValue(j, m);
      out = std::move(m);
      return true;
    }
    return ReadAlternative<Variant, I + 1>(type, j, out);
  } else {
    return false;
  }
}

template <typename Variant>
bool HasType(std::string_view type) {
  return [&]<size_t... I>(std::index_sequence<I...>) {
    return ((type == std::variant_alternative_t<I, Variant>::kType) || ...);
  }
  (std::make_index_sequence<std::variant_size_v<Variant>>());
}

// The envelope and body of one direction. Other is the opposite direction,
// named in the error when a message arrives on the wrong socket.
template <typename Variant, typename Other>
forge::Result<Variant> Decode(std::string_view bytes, const char* direction) {
  try {
    FORGE_ASSIGN_OR_RETURN(json j, ParseObject(bytes));
    int version = 0;
    std::string type;
    try {
      Required(j, "v", version);
      Required(j, "type", type);
    } catch (const FieldError& e) {
      return DecodeError(std::string("envelope: ") + e.what());
    }
    if (version != kProtocolVersion) {
      return DecodeError("unsupported protocol version " + std::to_string(version) +
                         " (this build speaks " + std::to_string(kProtocolVersion) + ")");
    }
    Variant out;
    try {
      if (ReadAlternative(type, j, out)) return out;
    } catch (const FieldError& e) {
      return DecodeError(type + ": " + e.what());
    }
    if (HasType<Other>(type)) {
      return DecodeError("'" + type + "' is not a " + direction + " message");
    }
    return DecodeError("unknown " + std::string(direction) + " message type '" + type +
                       "' (expected one of " + TypeList<Variant>() + ")");
  } catch (const std::exception& e) {
    return DecodeError(std::string("cannot decode ") + direction + " message: " + e.what());
  }
}

}  // namespace

std::string NextMessageId() {
  static std::atomic<uint64_t> counter{0};
  return std::to_string(getpid()) + "-" + std::to_string(++counter);
}

std::string Encode(const ChildMessage& message) {
  return std::visit([](const auto& m) { return Encode(m); }, message);
}

std::string Encode(const SupervisorMessage& message) {
  return std::visit([](const auto& m) { return Encode(m); }, message);
}

std::string_view TypeName(const ChildMessage& message) {
  return std::visit([](const auto& m) { return std::decay_t<decltype(m)>::kType; }, message);
}

std::string_view TypeName(const SupervisorMessage& message) {
  return std::visit([](const auto& m) { return std::decay_t<decltype(m)>::kType; }, message);
}

forge::Result<json> ParseObject(std::string_view bytes) {
  if (bytes.size() > kMaxMessageBytes) {
    return DecodeError("message of " + std::to_string(bytes.size()) +
                       " bytes exceeds the limit of " + std::to_string(kMaxMessageBytes) +
                       " bytes");
  }
  if (TooDeep(bytes, kMaxJsonDepth)) {
    return DecodeError("message nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json j;
  try {
    j = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    return DecodeError(std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object()) {
    return DecodeError(std::string("message must be a JSON object, got ") + j.type_name());
  }
  return j;
}

forge::Result<ChildMessage> DecodeChildMessage(std::string_view bytes) {
  return Decode<ChildMessage, SupervisorMessage>(bytes, "child");
}

forge::Result<SupervisorMessage> DecodeSupervisorMessage(std::string_view bytes) {
  return Decode<SupervisorMessage, ChildMessage>(bytes, "supervisor");
}

}  // namespace forge::proto
