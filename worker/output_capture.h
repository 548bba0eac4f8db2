// OutputCapture: where an agent's output goes. Everything is appended to the
// attempt's log file, capped (default 64 MiB) by dropping the oldest half and
// keeping the tail, so a chatty agent cannot fill the disk. It also keeps what
// the worker needs without re-reading the file: the time of the last output
// (the stall timer), the last complete line (for `watch`), and a short tail
// (for the result and the next attempt's brief).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace forge::worker {

class OutputCapture {
 public:
  static constexpr size_t kDefaultMaxBytes = 64u << 20;
  static constexpr size_t kTailBytes = 4096;

  // Opens (creating, appending) the log file; the directory must exist.
  static Result<std::unique_ptr<OutputCapture>> Open(const std::string& path,
                                                     size_t max_bytes = kDefaultMaxBytes);

  // Values replaced by [redacted] in everything kept (file, tail, last line).
  // A secret split across two Append calls is still caught: the last
  // (longest secret - 1) bytes are held back until more output or Flush().
  void SetSecrets(std::vector<std::string> secrets);

  // Appends output read at monotonic time now_ms. A write error is returned
  // once and then output is only kept in memory (the agent keeps running):
  // write_error() says so, for the result.
  Status Append(std::string_view data, int64_t now_ms);

  // Writes out what redaction held back; call when the output has ended.
  Status Flush();

  int64_t last_output_ms() const { return last_output_ms_; }  // -1: no output yet
  const std::string& last_line() const { return last_line_; }
  // The last kTailBytes of output.
  const std::string& tail() const { return tail_; }
  int64_t total_bytes() const { return total_bytes_; }
  int64_t file_bytes() const { return file_bytes_; }
  const std::string& path() const { return path_; }

  // Empty while every byte reached the file. Otherwise one line for the
  // attempt's result: where the log stops, why, and how much output after
  // that was not written (the tail above still has its end).
  std::string write_error() const;
  // What write_error() calls the file: "the attempt log" unless set.
  void set_name(std::string name) { name_ = std::move(name); }
  // After a write error: appends a line saying where the log stops, best
  // effort (the disk may have room again by the time the agent ends).
  void MarkWhereTheLogStops();

 private:
  OutputCapture() = default;
  Status Emit(std::string_view data);
  // Appends to the file (rewriting it past the cap). *reached: how much of
  // data is in the file, or was dropped by the cap rather than by an error.
  Status Write(std::string_view data, size_t* reached);
  void TrackLines(std::string_view data);

  std::string path_;
  std::string name_ = "the attempt log";
  size_t max_bytes_ = kDefaultMaxBytes;
  UniqueFd fd_;
  std::optional<Error> write_error_;  // the first write that failed
  int64_t unwritten_bytes_ = 0;       // output since, not in the file
  int64_t file_bytes_ = 0;
  int64_t total_bytes_ = 0;
  int64_t last_output_ms_ = -1;
  std::vector<std::string> secrets_;
  size_t hold_bytes_ = 0;
  std::string held_;
  std::string partial_line_;
  std::string last_line_;
  std::string tail_;
};

}  // namespace forge::worker
