#include "worker/output_capture.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/capped_log.h"
#include "common/redact.h"

namespace forge::worker {
namespace {

constexpr size_t kMaxLastLine = 1024;

Error IoError(const std::string& what, const std::string& path, int err) {
  return MakeError(ErrorCode::kIo, what + " '" + path + "': " + strerror(err));
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("writing", path, errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Copies len bytes of `in` from offset `from` to `out` a chunk at a time,
// stopping early at its end; returns how many it copied. A capped log's
// kept half is tens of MiB, which a copy in memory would add to every
// worker's (and critic's) footprint at each rewrite.
Result<size_t> CopyRange(int in, const std::string& in_path, off_t from, size_t len, int out,
                         const std::string& out_path) {
  char buf[64 * 1024];
  size_t copied = 0;
  while (copied < len) {
    ssize_t n =
        ::pread(in, buf, std::min(sizeof buf, len - copied), from + static_cast<off_t>(copied));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("reading log", in_path, errno);
    if (n == 0) break;
    FORGE_RETURN_IF_ERROR(WriteAll(out, std::string_view(buf, static_cast<size_t>(n)), out_path));
    copied += static_cast<size_t>(n);
  }
  return copied;
}

Result<UniqueFd> OpenAppend(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("opening log", path, errno);
  return UniqueFd(fd);
}

}  // namespace

Result<std::unique_ptr<OutputCapture>> OutputCapture::Open(const std::string& path,
                                                           size_t max_bytes) {
  std::unique_ptr<OutputCapture> c(new OutputCapture());
  c->path_ = path;
  c->max_bytes_ = std::max<size_t>(max_bytes, 1024);
  FORGE_ASSIGN_OR_RETURN(c->fd_, OpenAppend(path));
  struct stat st {};
  if (fstat(c->fd_.get(), &st) == 0) c->file_bytes_ = st.st_size;
  return c;
}

void OutputCapture::SetSecrets(std::vector<std::string> secrets) {
  secrets_.clear();
  hold_bytes_ = 0;
  for (auto& s : secrets) {
    if (s.size() < 4) continue;  // RedactText ignores shorter values too
    hold_bytes_ = std::max(hold_bytes_, s.size() - 1);
    secrets_.push_back(std::move(s));
  }
}

Status OutputCapture::Append(std::string_view data, int64_t now_ms) {
  if (data.empty()) return Status::Ok();
  last_output_ms_ = now_ms;
  total_bytes_ += static_cast<int64_t>(data.size());
  if (secrets_.empty()) return Emit(data);
  held_.append(data);
  std::string text = RedactText(std::move(held_), secrets_);
  size_t hold = std::min(text.size(), hold_bytes_);
  held_ = text.substr(text.size() - hold);
  return Emit(std::string_view(text).substr(0, text.size() - hold));
}

Status OutputCapture::Flush() {
  std::string rest = RedactText(std::move(held_), secrets_);
  held_.clear();
  return Emit(rest);
}

Status OutputCapture::Emit(std::string_view data) {
  if (data.empty()) return Status::Ok();
  tail_.append(data);
  if (tail_.size() > 2 * kTailBytes) tail_.erase(0, tail_.size() - kTailBytes);
  TrackLines(data);
  if (write_error_) {
    unwritten_bytes_ += static_cast<int64_t>(data.size());
    return Status::Ok();
  }
  size_t reached = 0;
  Status s = Write(data, &reached);
  if (!s.ok()) {
    write_error_ = s.error();
    unwritten_bytes_ += static_cast<int64_t>(data.size() - reached);
  }
  return s;
}

std::string OutputCapture::write_error() const {
  if (!write_error_) return "";
  return name_ + " stops after " + std::to_string(file_bytes_) +
         " bytes: " + write_error_->message + "; " + std::to_string(unwritten_bytes_) +
         " bytes of output after that were not written";
}

void OutputCapture::MarkWhereTheLogStops() {
  if (!write_error_ || !fd_.valid()) return;
  std::string line = "\n[forge: " + write_error() + "]\n";
  ssize_t written = ::write(fd_.get(), line.data(), line.size());
  (void)written;  // best effort: the result says it anyway
}

Status OutputCapture::Write(std::string_view data, size_t* reached) {
  *reached = 0;
  if (file_bytes_ + static_cast<int64_t>(data.size()) <= static_cast<int64_t>(max_bytes_)) {
    Status written = WriteAll(fd_.get(), data, path_);
    if (!written.ok()) {
      // Part of it may be in: the file's size says where the log stops.
      struct stat st {};
      if (::fstat(fd_.get(), &st) == 0 && st.st_size >= file_bytes_) {
        *reached = std::min(data.size(), static_cast<size_t>(st.st_size - file_bytes_));
        file_bytes_ = st.st_size;
      }
      return written;
    }
    file_bytes_ += static_cast<int64_t>(data.size());
    *reached = data.size();
    return Status::Ok();
  }
  // Over the cap: rewrite the file as its newest half. Each rewrite is paid
  // for by max/2 bytes of new output, so the cost per byte stays constant.
  const size_t keep = max_bytes_ / 2;
  const std::string_view new_kept = data.size() < keep ? data : data.substr(data.size() - keep);
  const size_t from_file =
      std::min<size_t>(keep - new_kept.size(), static_cast<size_t>(file_bytes_));
  const std::string header = CappedLogMarker(max_bytes_, keep, from_file);
  std::string tmp = path_ + ".tmp";
  size_t copied = 0;
  {
    UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out.valid()) return IoError("rewriting log", tmp, errno);
    auto written = [&]() -> Status {
      FORGE_RETURN_IF_ERROR(WriteAll(out.get(), header, tmp));
      if (from_file > 0) {
        UniqueFd in(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in.valid()) return IoError("reading log", path_, errno);
        FORGE_ASSIGN_OR_RETURN(
            copied, CopyRange(in.get(), path_, file_bytes_ - from_file, from_file, out.get(), tmp));
      }
      return WriteAll(out.get(), new_kept, tmp);
    }();
    if (!written.ok()) {
      // The log stays as it was, whole up to here; no half copy beside it.
      ::unlink(tmp.c_str());
      return written;
    }
  }
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return IoError("renaming log to", path_, err);
  }
  // The new file has what the cap keeps of `data`, whatever comes next.
  file_bytes_ = static_cast<int64_t>(header.size() + copied + new_kept.size());
  *reached = data.size();
  auto reopened = OpenAppend(path_);
  if (!reopened.ok()) {
    fd_.reset();  // the old descriptor's file is gone: nothing more goes there
    return reopened.error();
  }
  fd_ = std::move(reopened).value();
  return Status::Ok();
}

void OutputCapture::TrackLines(std::string_view data) {
  size_t nl = data.rfind('\n');
  if (nl == std::string_view::npos) {
    if (partial_line_.size() < kMaxLastLine) partial_line_.append(data.substr(0, kMaxLastLine));
    return;
  }
  // The last complete line ends at nl; it starts after the newline before it.
  size_t prev = data.rfind('\n', nl == 0 ? 0 : nl - 1);
  std::string line;
  if (prev == std::string_view::npos || prev == nl) {
    line = partial_line_ + std::string(data.substr(0, nl));
  } else {
    line = std::string(data.substr(prev + 1, nl - prev - 1));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.size() > kMaxLastLine) line.resize(kMaxLastLine);
  if (!line.empty()) last_line_ = std::move(line);
  partial_line_.assign(data.substr(nl + 1, kMaxLastLine));
}

}  // namespace forge::worker
