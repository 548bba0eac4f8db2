// events.jsonl: the operator-facing copy of the event log, one JSON object
// (proto::EventInfo) per line, in seq order. It trails the database: lines are
// appended after the transaction that created them commits, and a crash
// between the two is repaired on the next open (Reconcile). The file is never
// allowed to fail a database operation: write errors are logged and the
// missing lines are written on the next attempt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "proto/types.h"

namespace forge::store {

using json = nlohmann::json;

class EventsFile {
 public:
  explicit EventsFile(std::string path) : path_(std::move(path)) {}
  EventsFile(const EventsFile&) = delete;
  EventsFile& operator=(const EventsFile&) = delete;
  ~EventsFile();

  const std::string& path() const { return path_; }

  // Opens (creating) the file, cuts a torn last line (one without its '\n',
  // or one that does not parse) and returns the seq of the last complete
  // line, 0 when the file is empty.
  Result<int64_t> OpenAndRecover();
  // The last complete line as OpenAndRecover found it (no '\n'); empty for
  // an empty file.
  const std::string& last_line() const { return last_line_; }
  // Renames the file to `aside` and starts a new, empty one at its path.
  Status MoveAside(const std::string& aside);

  // Appends the events (already in seq order) with one write(). On a short
  // or failed write the file may end torn: call OpenAndRecover before the
  // next Append.
  Status Append(const std::vector<proto::EventInfo>& events);

  // Appends lines already built by Line/AppendLine (each ending in '\n')
  // with one write(); same failure contract as Append.
  Status AppendRaw(const std::string& lines);

  // One line as written by Append (without the trailing '\n').
  static std::string Line(const proto::EventInfo& event);

  // Appends Line() of the event plus '\n' to out, from its parts, with the
  // payload given as its compact JSON text (what the store keeps in
  // events.payload): the store writes the lines of the events it has just
  // inserted without parsing and re-serialising each payload. Byte for byte
  // the same as Line() (keys in nlohmann's sorted order).
  static void AppendLine(std::string& out, int64_t seq, int64_t ts_ms, const std::string& kind,
                         const std::string& task_id, int attempt, const std::string& payload_text);

 private:
  Result<int64_t> LastCompleteSeq();
  std::string path_;
  int fd_ = -1;
  std::string last_line_;
};

}  // namespace forge::store
