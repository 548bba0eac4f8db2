// Logging: spdlog, one logger per process named after its role, writing to a
// size-rotated file and (optionally) the console. Secrets are redacted by the
// callers before logging (see common/redact.h).
#pragma once

#include <spdlog/spdlog.h>

#include <string>

#include "common/result.h"

namespace forge {

struct LogOptions {
  std::string name = "forge";  // logger name, shown in each line
  std::string file;            // empty: no file sink
  bool console = true;         // stderr sink
  size_t max_file_bytes = 10 * 1024 * 1024;
  size_t max_files = 5;
  spdlog::level::level_enum level = spdlog::level::info;
};

// Installs the default logger. A file that cannot be opened is an Error
// naming the path; the console sink is still installed then.
Status SetupLogging(const LogOptions& options);

}  // namespace forge
