// libFuzzer target: see fuzz/entries.h (Config).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  forge::fuzz::Config(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
