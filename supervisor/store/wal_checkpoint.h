// The supervisor's WAL checkpoints, run beside its loop.
//
// SQLite's automatic checkpoint is PASSIVE and runs inside whichever commit
// takes the WAL past 1,000 frames: its two fsyncs (the WAL, then the
// database) stall the committing thread, which in the supervisor is the
// loop every child and every operator waits on (on a VM's ext4, 246 such
// fsyncs took 1.5 s of a 2,000-task run, bench/README.md fix 23). So the
// supervisor's connection has manual_checkpoints, and the supervisor follows
// NextCheckpoint after each loop turn, once 1,000 frames were written since
// the last checkpoint started:
//   - a PASSIVE checkpoint on a connection of its own, on a Background
//     thread: the loop goes on committing;
//   - once the WAL holds kInlineCheckpointFrames, a PASSIVE one on the loop's
//     connection, between two transactions. Only a sustained burst of writes
//     gets there: each background pass ends behind the frames written
//     meanwhile, so the WAL is never all copied and cannot start over. The
//     inline pass copies the rest and the next write starts the WAL over:
//     the WAL stays under about 44 MB, and the loop stalls once per 10,000
//     frames instead of once per 1,000.
// Once per maintenance interval it also runs wal_checkpoint(TRUNCATE) on a
// Background thread, which shrinks the -wal file. The supervisor is the only
// process that writes the database (the children never link SQLite).
#pragma once

#include <cstdint>
#include <string>

struct sqlite3;  // <sqlite3.h>

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

enum class CheckpointMode { kPassive, kTruncate };

// PRAGMA wal_checkpoint(<mode>) on a connection of its own to db_path, opened
// by the first Run and kept for the next ones: opening a connection reads
// the whole schema, which was half of a routine checkpoint's instructions
// (bench/README.md, fix 43). A Run that fails for any reason but a busy lock
// closes it, and the next one opens it again. TRUNCATE waits up to
// busy_timeout_ms for other connections' locks; PASSIVE waits for nothing.
// Run never throws: problems are in the report. One Run at a time, from any
// thread (the supervisor runs one checkpoint at a time, each on a Background
// thread of its own).
class WalCheckpointer {
 public:
  WalCheckpointer(std::string db_path, int busy_timeout_ms);
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  CheckpointReport Run(CheckpointMode mode);
  bool connected() const { return db_ != nullptr; }

 private:
  void Close();

  std::string db_path_;
  int busy_timeout_ms_;
  ::sqlite3* db_ = nullptr;
};

// One Run of a WalCheckpointer of its own (a fresh connection).
CheckpointReport CheckpointWal(const std::string& db_path, int busy_timeout_ms,
                               CheckpointMode mode = CheckpointMode::kTruncate);

inline constexpr int64_t kBackgroundCheckpointFrames = 1000;  // SQLite's own threshold
inline constexpr int64_t kInlineCheckpointFrames = 10000;     // ≈ 20 MB of 2 KiB pages

enum class CheckpointAction { kNone, kBackground, kInline };

// What the supervisor does about a WAL of wal_frames frames (Store::WalFrames)
// that held frames_at_last_start when the last checkpoint started (more than
// wal_frames: the WAL has started over since), while a background checkpoint
// is (running) or is not in flight. Nothing starts while one runs: SQLite
// runs one checkpointer at a time.
CheckpointAction NextCheckpoint(int64_t wal_frames, int64_t frames_at_last_start, bool running);

}  // namespace forge::store
