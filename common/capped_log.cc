#include "common/capped_log.h"

#include <charconv>

namespace forge {

namespace {
constexpr std::string_view kHead = "[forge: earlier output dropped; ";
constexpr std::string_view kRepeated = "; the first ";
constexpr std::string_view kTail = " bytes after this line were in it before]";
}  // namespace

std::string CappedLogMarker(size_t max_bytes, size_t keep_bytes, size_t repeated_bytes) {
  // The file grows past KEEP again after the cut: the line says what is
  // done each time, not how big the file is.
  return std::string(kHead) + "each time this log reaches " + std::to_string(max_bytes) +
         " bytes it keeps only its last " + std::to_string(keep_bytes) + " bytes" +
         std::string(kRepeated) + std::to_string(repeated_bytes) + std::string(kTail) + "\n";
}

std::optional<size_t> RepeatedAfterCappedLogMarker(std::string_view line) {
  if (!line.starts_with(kHead) || !line.ends_with(kTail)) return std::nullopt;
  line.remove_suffix(kTail.size());
  size_t at = line.rfind(kRepeated);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view digits = line.substr(at + kRepeated.size());
  size_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) {
    return std::nullopt;
  }
  return n;
}

}  // namespace forge
