// The periodic WAL checkpoint, run by the supervisor beside its loop.
//
// SQLite's automatic checkpoints are PASSIVE and run inside whichever commit
// crosses the threshold; they never shrink the -wal file, and they skip
// frames a reader still needs. Once per maintenance interval the supervisor
// therefore runs wal_checkpoint(TRUNCATE) on a connection of its own, on a
// Background thread, so the loop never waits for it. The supervisor is the
// only process that opens the database (the children never link SQLite).
#pragma once

#include <cstdint>
#include <string>

namespace forge::store {

inline constexpr int kCheckpointBusyTimeoutMs = 5000;

struct CheckpointReport {
  bool ran = false;
  bool busy = false;  // a reader or writer kept the checkpoint from finishing
  // As SQLite reports them: both 0 after a complete TRUNCATE; with busy, how
  // far it got.
  int64_t log_frames = 0;
  int64_t checkpointed_frames = 0;
  int64_t wal_bytes_before = 0;  // the -wal file's size when it started (0: none)
  int64_t wal_bytes_after = 0;
  int64_t duration_ms = 0;
  std::string error;  // names the database; empty when it ran
};

// PRAGMA wal_checkpoint(TRUNCATE) on a fresh connection to db_path, waiting
// up to busy_timeout_ms for other connections' locks. Never throws; problems
// are in the report.
CheckpointReport CheckpointWal(const std::string& db_path, int busy_timeout_ms);

}  // namespace forge::store
