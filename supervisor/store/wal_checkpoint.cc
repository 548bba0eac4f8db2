#include "supervisor/store/wal_checkpoint.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <utility>

#include "common/clock.h"

namespace forge::store {
namespace {

int64_t FileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

}  // namespace

CheckpointAction NextCheckpoint(int64_t wal_frames, int64_t frames_at_last_start, bool running) {
  if (running) return CheckpointAction::kNone;
  int64_t written_since =
      wal_frames >= frames_at_last_start ? wal_frames - frames_at_last_start : wal_frames;
  if (written_since < kBackgroundCheckpointFrames) return CheckpointAction::kNone;
  return wal_frames >= kInlineCheckpointFrames ? CheckpointAction::kInline
                                               : CheckpointAction::kBackground;
}

WalCheckpointer::WalCheckpointer(std::string db_path, int busy_timeout_ms)
    : db_path_(std::move(db_path)), busy_timeout_ms_(busy_timeout_ms) {}

WalCheckpointer::~WalCheckpointer() {
  Close();
}

void WalCheckpointer::Close() {
  sqlite3_close(db_);
  db_ = nullptr;
}

CheckpointReport WalCheckpointer::Run(CheckpointMode mode) {
  const int64_t start = SystemClock::Get().MonotonicMs();
  CheckpointReport r;
  const std::string wal = db_path_ + "-wal";
  r.wal_bytes_before = FileBytes(wal);
  if (db_ == nullptr) {
    int rc = sqlite3_open_v2(db_path_.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr);
    if (rc != SQLITE_OK) {
      r.error = "opening '" + db_path_ + "': " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
      Close();
      return r;
    }
    sqlite3_busy_timeout(db_, busy_timeout_ms_);
  }
  // The pragma (not sqlite3_wal_checkpoint_v2): a fresh connection learns
  // the database is in WAL mode only once it reads it, which the pragma does.
  sqlite3_stmt* stmt = nullptr;
  const std::string what =
      mode == CheckpointMode::kTruncate ? "wal_checkpoint(TRUNCATE)" : "wal_checkpoint(PASSIVE)";
  int rc = sqlite3_prepare_v2(db_, ("PRAGMA " + what).c_str(), -1, &stmt, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW) {
    r.ran = true;
    r.busy = sqlite3_column_int(stmt, 0) != 0;
    r.log_frames = sqlite3_column_int64(stmt, 1);
    r.checkpointed_frames = sqlite3_column_int64(stmt, 2);
  } else if (rc == SQLITE_BUSY) {
    r.ran = true;
    r.busy = true;
  } else {
    r.error = what + " on '" + db_path_ + "': " + sqlite3_errmsg(db_);
  }
  sqlite3_finalize(stmt);
  if (!r.error.empty()) Close();  // whatever went wrong, the next Run starts afresh
  r.wal_bytes_after = FileBytes(wal);
  r.duration_ms = SystemClock::Get().MonotonicMs() - start;
  return r;
}

CheckpointReport CheckpointWal(const std::string& db_path, int busy_timeout_ms,
                               CheckpointMode mode) {
  return WalCheckpointer(db_path, busy_timeout_ms).Run(mode);
}

}  // namespace forge::store
