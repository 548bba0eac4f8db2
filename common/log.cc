#include "common/log.h"

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

namespace forge {
namespace {

// ISO time with milliseconds and offset, level, logger name and pid:
// "2026-11-21T15:04:05.123+00:00 info supervisor[1234]: message". The pid is
// written into the pattern once: spdlog's %P calls getpid() for every line,
// a system call each (glibc does not cache it). Every process sets up its
// logging after its last fork (the supervisor after daemonising), so the pid
// does not change under the pattern.
std::string Pattern() {
  return "%Y-%m-%dT%H:%M:%S.%e%z %l %n[" + std::to_string(::getpid()) + "]: %v";
}

}  // namespace

Status SetupLogging(const LogOptions& options) {
  std::vector<spdlog::sink_ptr> sinks;
  if (options.console) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  Status status;
  if (!options.file.empty()) {
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
          options.file, options.max_file_bytes, options.max_files));
    } catch (const spdlog::spdlog_ex& e) {
      status =
          MakeError(ErrorCode::kIo, "cannot open log file '" + options.file + "': " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>(options.name, sinks.begin(), sinks.end());
  logger->set_pattern(Pattern());
  logger->set_level(options.level);
  // Every line is flushed: the process may be SIGKILLed at any moment and the
  // last lines before that are the ones an operator needs.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return status;
}

}  // namespace forge
