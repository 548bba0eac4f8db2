#include "common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/utf8.h"

namespace forge {
namespace {

// %* in the pattern: the message (%v) made one line of UTF-8 (ShowBytes).
// Messages carry what others wrote: a control client's command, an agent's
// last line, the bytes of a request that did not parse. Raw, a newline in
// one forges a log line, an ESC drives the terminal of whoever tails the
// log, a stray byte makes the file invalid UTF-8. Nearly every message needs
// nothing: it is scanned, not copied, unless a byte must be escaped.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    const size_t bad = FindUnprintable(text);
    if (bad == std::string_view::npos) {
      dest.append(text.data(), text.data() + text.size());
      return;
    }
    dest.append(text.data(), text.data() + bad);
    const std::string rest = ShowBytes(text.substr(bad), std::string_view::npos);
    dest.append(rest.data(), rest.data() + rest.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

// ISO time with milliseconds and offset, level, logger name and pid:
// "2026-11-21T15:04:05.123+00:00 info supervisor[1234]: message". The pid is
// written into the pattern once: spdlog's %P calls getpid() for every line,
// a system call each (glibc does not cache it). Every process sets up its
// logging after its last fork (the supervisor after daemonising), so the pid
// does not change under the pattern.
std::unique_ptr<spdlog::formatter> Formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<EscapedMessage>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %n[" +
                                                       std::to_string(::getpid()) + "]: %*");
  return formatter;
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
  logger->set_formatter(Formatter());
  logger->set_level(options.level);
  // Every line is flushed: the process may be SIGKILLed at any moment and the
  // last lines before that are the ones an operator needs.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return status;
}

}  // namespace forge
