// Wal: the write-ahead log of a data directory, with group commit and recovery. It is the TaskLog
// of a TaskStore: every state change is appended as one record, and a client is answered only
// once its change is durable.
//
//   Wal wal({.dir = "./data", .fs = &PosixFileSystem::Get()});
//   TaskStore store(clock, ticker, {}, &wal);
//   absl::StatusOr<RecoveryStats> recovered = wal.Recover(store);  // newest snapshot + segments
//   wal.StartWriting();                                           // new segment, writer thread
//   store.FinishRecovery();                                       // arms the timers
//   ...
//   uint64_t lsn;  store.Ack(id, token, &lsn);                    // under the store's lock:
//   wal.WhenDurable(lsn, [reactor] { reactor->Finish(OK); });     //   Append(record) -> lsn
//
// Files: `log-<first LSN, 20 digits>.wal` segments in the LogWriter format (store/log_format.h),
// one LogRecord (store/task_log.proto) per log record, LSNs counting up from the segment's
// first. A new segment is started at every start and when one passes Options::segment_bytes.
//
// Group commit: one writer thread takes every record appended since its last pass, writes them,
// calls fdatasync once (Options::sync; without it, the data is handed to the operating system
// only: it survives a crash of the process, not of the machine), then runs the WhenDurable
// callbacks of the LSNs it made durable, in LSN order, on its own thread. A write or sync error
// is never retried and never acknowledged: Options::on_fatal is called and must not return (the
// server logs and exits; the next start recovers).
//
// Snapshots and compaction: once Options::snapshot_bytes of records (or twice the last snapshot's
// size, if larger) were written since the last snapshot, a background thread ("hg-snapshot")
// writes `snapshot-<LSN>.snap`: the store's tasks as TaskPut records, taken in chunks while
// writers go on (a fuzzy snapshot: records are absolute, so replaying the log after LSN on top of
// it converges). It is written to a .tmp file, synced, renamed, and the directory synced; then
// the segments and snapshots it covers are deleted, so disk use follows the live tasks, not the
// history.
//
// Recovery: the newest snapshot that reads cleanly is loaded, then the segments after it are
// replayed in order; a torn record (what a crash leaves) is accepted only at the very end of the
// last segment, where the file is truncated; corruption anywhere else, a gap between segments or
// an unparsable record stops the start with an error naming the file and offset, unless
// Options::skip_corruption.
//
// Thread-safe: Append and WhenDurable from any thread; Recover, StartWriting and Stop once each,
// in that order.
#ifndef HOURGLASS_STORE_WAL_H_
#define HOURGLASS_STORE_WAL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/file.h"
#include "store/log_reader.h"
#include "store/log_writer.h"
#include "store/task_log.h"
#include "store/task_store.h"

namespace hourglass {

// Events for metrics, called on the writer thread (OnCommit) or in Recover. Implementations are
// quick and thread-safe.
class WalObserver {
 public:
  virtual ~WalObserver() = default;
  // One group commit: `records` records of `bytes` bytes written, and synced in `sync_time`
  // (zero without sync).
  virtual void OnCommit(size_t records, uint64_t bytes, absl::Duration sync_time) = 0;
  // One snapshot written: `tasks` tasks in `bytes` bytes, in `duration`.
  virtual void OnSnapshot(uint64_t tasks, uint64_t bytes, absl::Duration duration) = 0;
  // A snapshot failed (nothing is lost: the log keeps every record); it is tried again later.
  virtual void OnSnapshotFailed(const absl::Status& status) = 0;
};

struct RecoveryStats {
  uint64_t records = 0;          // replayed
  uint64_t segments = 0;         // read
  uint64_t torn_tails = 0;       // truncated (0 or 1)
  uint64_t torn_bytes = 0;       // cut off by the truncation
  uint64_t skipped_bytes = 0;    // skipped as corrupt (Options::skip_corruption only)
  uint64_t missing_records = 0;  // numbers skipped over (Options::skip_corruption only)
  uint64_t log_bytes = 0;        // of the segments replayed
  uint64_t snapshot_lsn = 0;     // of the snapshot loaded; 0: none
  uint64_t snapshot_tasks = 0;
  // Snapshots passed over because they did not read cleanly (newer than the one loaded).
  std::vector<std::string> damaged_snapshots;
  uint64_t next_lsn = 1;
  absl::Duration duration;
};

class Wal final : public TaskLog {
 public:
  struct Options {
    std::string dir;
    FileSystem* fs = nullptr;
    // fdatasync every group commit (--fsync=always); false: --fsync=never.
    bool sync = true;
    uint64_t segment_bytes = uint64_t{64} << 20;
    // Snapshot after this many bytes of records (or twice the last snapshot, if larger); 0: never.
    uint64_t snapshot_bytes = uint64_t{64} << 20;
    // Replay past corrupt records instead of refusing to start (--skip_corrupt_log).
    bool skip_corruption = false;
    // Called on the writer thread with the error of a failed write or sync; must not return.
    std::function<void(const absl::Status&)> on_fatal;
    WalObserver* observer = nullptr;
  };

  explicit Wal(Options options);
  ~Wal() override;  // Stop()
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Replays the directory's newest snapshot and segments into `store` (which must be empty and not
  // yet recovered), which is also the store later snapshots are taken of.
  absl::StatusOr<RecoveryStats> Recover(TaskStore& store) ABSL_LOCKS_EXCLUDED(mu_);

  // Opens a new segment at the next LSN and starts the writer and snapshot threads.
  absl::Status StartWriting() ABSL_LOCKS_EXCLUDED(mu_);

  // Writes a snapshot now and deletes what it covers (the snapshot thread calls this). Thread-safe
  // with writers; one snapshot at a time.
  absl::Status Snapshot() ABSL_LOCKS_EXCLUDED(mu_, snapshot_mu_);

  uint64_t Append(const store::v1::LogRecord& record) override ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `done` once every record up to `lsn` is durable: at once (on this thread) when it is
  // already, or when lsn is 0; else on the writer thread after its sync. Never under a lock.
  void WhenDurable(uint64_t lsn, std::function<void()> done) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes and syncs what is pending, runs its callbacks, and stops the writer thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t durable_lsn() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t last_lsn() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // A segment (by its first LSN) or a snapshot (by the LSN it covers).
  struct NumberedFile {
    uint64_t lsn;
    std::string name;
  };
  static std::string SegmentName(uint64_t first_lsn);
  static std::string SnapshotName(uint64_t lsn);
  // The directory's files named <prefix><digits><suffix>, by LSN ascending.
  absl::StatusOr<std::vector<NumberedFile>> ListFiles(absl::string_view prefix,
                                                      absl::string_view suffix) const;
  // Reads the snapshot at `path`, giving each record to `apply` (if not null).
  absl::StatusOr<LogReadResult> ReadSnapshot(
      const std::string& path,
      const std::function<absl::Status(const store::v1::LogRecord&)>& apply);
  // Loads the newest snapshot that reads cleanly; returns its LSN (0: none).
  absl::StatusOr<uint64_t> LoadSnapshot(TaskStore& store, RecoveryStats* stats);
  void RunSnapshots() ABSL_LOCKS_EXCLUDED(mu_);
  // Opens a new segment whose first record will be `first_lsn`. Writer thread (or before it).
  absl::Status OpenSegment(uint64_t first_lsn);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  [[noreturn]] void Fatal(const absl::Status& status);
  std::string Path(const std::string& name) const;

  const Options options_;

  // Owned by the writer thread once it runs (before: by StartWriting).
  std::unique_ptr<WritableFile> file_;
  std::unique_ptr<LogWriter> writer_;

  mutable absl::Mutex mu_;
  absl::CondVar work_;
  std::vector<std::string> pending_ ABSL_GUARDED_BY(mu_);  // serialized records, in LSN order
  uint64_t last_lsn_ ABSL_GUARDED_BY(mu_) = 0;             // appended
  uint64_t durable_lsn_ ABSL_GUARDED_BY(mu_) = 0;
  std::multimap<uint64_t, std::function<void()>> waiting_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // The writer starts a new segment at its next batch (a snapshot asked for it).
  bool rotate_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t bytes_since_snapshot_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_snapshot_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool snapshot_wanted_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar snapshot_cv_;
  TaskStore* store_ = nullptr;      // set by Recover
  bool snapshot_at_start_ = false;  // set by Recover: damage was skipped
  absl::Mutex snapshot_mu_;         // one snapshot at a time
  std::thread thread_;
  std::thread snapshot_thread_;
};

}  // namespace hourglass

#endif  // HOURGLASS_STORE_WAL_H_
