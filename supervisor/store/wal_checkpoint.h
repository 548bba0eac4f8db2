// WAL checkpoints, run by the supervisor beside its loop.
//
// SQLite's automatic checkpoint runs inside whichever commit crosses the
// threshold, so the loop would stop for it (copying about 1,000 pages and two
// fsyncs) every few dozen tasks. The store turns it off (Store::WalFrames) and
// the supervisor runs the same PASSIVE checkpoint on a Background thread
// instead, with a connection of its own. PASSIVE never shrinks the -wal file
// and skips frames a reader still needs, so once per maintenance interval the
// supervisor also runs a TRUNCATE. The supervisor is the only process that
// opens the database (the children never link SQLite).
#pragma once

#include <cstdint>
#include <string>

namespace forge::store {

inline constexpr int kCheckpointBusyTimeoutMs = 5000;
// SQLite's default automatic checkpoint threshold (wal_autocheckpoint).
inline constexpr int64_t kAutoCheckpointFrames = 1000;

enum class CheckpointMode {
  kPassive,   // copies what no reader needs; never waits, never blocks writers
  kTruncate,  // waits (busy timeout) for readers and writers, then empties the -wal file
};

struct CheckpointReport {
  bool ran = false;
  bool busy = false;  // a reader or writer kept the checkpoint from finishing
  // As SQLite reports them: both 0 after a complete TRUNCATE; equal after a
  // complete PASSIVE; with busy, how far it got.
  int64_t log_frames = 0;
  int64_t checkpointed_frames = 0;
  int64_t wal_bytes_before = 0;  // the -wal file's size when it started (0: none)
  int64_t wal_bytes_after = 0;
  int64_t duration_ms = 0;
  std::string error;  // names the database; empty when it ran
};

// PRAGMA wal_checkpoint(<mode>) on a fresh connection to db_path, waiting up
// to busy_timeout_ms for other connections' locks. Never throws; problems are
// in the report.
CheckpointReport CheckpointWal(const std::string& db_path, CheckpointMode mode,
                               int busy_timeout_ms);

}  // namespace forge::store
