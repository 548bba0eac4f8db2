#include "supervisor/store/events_file.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.h"

namespace forge::store {

namespace {

Error IoError(const std::string& what, const std::string& path) {
  return MakeError(ErrorCode::kIo, what + " " + path + ": " + std::strerror(errno));
}

// Offset of the last '\n' in [0, end), or -1. Reads backwards in chunks so a
// large file costs only its tail.
Result<int64_t> LastNewlineBefore(int fd, int64_t end, const std::string& path) {
  constexpr int64_t kChunk = 64 * 1024;
  std::string buf;
  while (end > 0) {
    int64_t start = end > kChunk ? end - kChunk : 0;
    buf.resize(static_cast<size_t>(end - start));
    ssize_t n = pread(fd, buf.data(), buf.size(), start);
    if (n != static_cast<ssize_t>(buf.size())) return IoError("reading", path);
    for (int64_t i = end - start - 1; i >= 0; --i) {
      if (buf[static_cast<size_t>(i)] == '\n') return start + i;
    }
    end = start;
  }
  return int64_t{-1};
}

// seq of one line, or nullopt when it is not an event object.
std::optional<int64_t> SeqOf(const std::string& line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  auto it = j.find("seq");
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// Kinds and task ids are plain ASCII with nothing to escape: quoted as they
// are, as nlohmann's dump would (every event writes three of these).
void AppendJsonString(std::string& out, const std::string& text) {
  bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f && c != '"' && c != '\\';
  });
  if (!plain) {
    out += json(text).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  out += '"';
  out += text;
  out += '"';
}

}  // namespace

EventsFile::~EventsFile() {
  if (fd_ >= 0) close(fd_);
}

std::string EventsFile::Line(const proto::EventInfo& event) {
  json j = event;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void EventsFile::AppendLine(std::string& out, int64_t seq, int64_t ts_ms, const std::string& kind,
                            const std::string& task_id, int attempt,
                            const std::string& payload_text) {
  out += "{\"attempt\":";
  out += std::to_string(attempt);
  out += ",\"kind\":";
  AppendJsonString(out, kind);
  out += ",\"payload\":";
  out += payload_text;
  out += ",\"seq\":";
  out += std::to_string(seq);
  out += ",\"task_id\":";
  if (task_id.empty()) {
    out += "null";
  } else {
    AppendJsonString(out, task_id);
  }
  out += ",\"ts\":";
  if (ts_ms == 0) {
    out += "null";  // as proto::TimeToJson
  } else {
    out += '"';
    out += FormatRfc3339(ts_ms);
    out += '"';
  }
  out += "}\n";
}

Result<int64_t> EventsFile::OpenAndRecover() {
  if (fd_ < 0) {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) return IoError("opening", path_);
  }
  return LastCompleteSeq();
}

Result<int64_t> EventsFile::LastCompleteSeq() {
  for (;;) {
    struct stat st {};
    if (fstat(fd_, &st) != 0) return IoError("stat of", path_);
    int64_t size = st.st_size;
    last_line_.clear();
    if (size == 0) return int64_t{0};
    FORGE_ASSIGN_OR_RETURN(int64_t last_nl, LastNewlineBefore(fd_, size, path_));
    if (last_nl != size - 1) {  // torn: the last write did not finish its line
      spdlog::warn("events.jsonl {}: cutting a torn last line ({} bytes)", path_,
                   size - last_nl - 1);
      if (ftruncate(fd_, last_nl + 1) != 0) return IoError("truncating", path_);
      continue;
    }
    FORGE_ASSIGN_OR_RETURN(int64_t prev_nl, LastNewlineBefore(fd_, last_nl, path_));
    std::string line(static_cast<size_t>(last_nl - prev_nl - 1), '\0');
    if (pread(fd_, line.data(), line.size(), prev_nl + 1) != static_cast<ssize_t>(line.size())) {
      return IoError("reading", path_);
    }
    if (auto seq = SeqOf(line)) {
      last_line_ = std::move(line);
      return *seq;
    }
    spdlog::warn("events.jsonl {}: cutting an unreadable last line", path_);
    if (ftruncate(fd_, prev_nl + 1) != 0) return IoError("truncating", path_);
  }
}

Status EventsFile::MoveAside(const std::string& aside) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  last_line_.clear();
  if (rename(path_.c_str(), aside.c_str()) != 0) return IoError("renaming", path_);
  fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) return IoError("opening", path_);
  return Status::Ok();
}

Status EventsFile::Append(const std::vector<proto::EventInfo>& events) {
  if (events.empty()) return Status::Ok();
  std::string out;
  for (const auto& e : events) {
    out += Line(e);
    out += '\n';
  }
  return AppendRaw(out);
}

Status EventsFile::AppendRaw(const std::string& out) {
  if (out.empty()) return Status::Ok();
  if (fd_ < 0) return MakeError(ErrorCode::kIo, "events file " + path_ + " is not open");
  ssize_t n = write(fd_, out.data(), out.size());
  if (n < 0) return IoError("appending to", path_);
  if (static_cast<size_t>(n) != out.size()) {
    return MakeError(ErrorCode::kIo, "short write to " + path_ + ": " + std::to_string(n) + " of " +
                                         std::to_string(out.size()) + " bytes");
  }
  return Status::Ok();
}

}  // namespace forge::store
