#include "store/wal.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "store/log_reader.h"

namespace hourglass {

namespace {

constexpr absl::string_view kSegmentPrefix = "log-";
constexpr absl::string_view kSegmentSuffix = ".wal";
constexpr absl::string_view kSnapshotPrefix = "snapshot-";
constexpr absl::string_view kSnapshotSuffix = ".snap";
constexpr absl::string_view kTmpSuffix = ".tmp";
constexpr size_t kSnapshotChunkTasks = 1000;

}  // namespace

Wal::Wal(Options options) : options_(std::move(options)) {}

Wal::~Wal() { Stop(); }

std::string Wal::SegmentName(uint64_t first_lsn) {
  return absl::StrFormat("%s%020d%s", kSegmentPrefix, first_lsn, kSegmentSuffix);
}

std::string Wal::Path(const std::string& name) const { return options_.dir + "/" + name; }

std::string Wal::SnapshotName(uint64_t lsn) {
  return absl::StrFormat("%s%020d%s", kSnapshotPrefix, lsn, kSnapshotSuffix);
}

absl::StatusOr<std::vector<Wal::NumberedFile>> Wal::ListFiles(absl::string_view prefix,
                                                              absl::string_view suffix) const {
  absl::StatusOr<std::vector<std::string>> names = options_.fs->ListDir(options_.dir);
  if (!names.ok()) return names.status();
  std::vector<NumberedFile> files;
  for (const std::string& name : *names) {
    if (!absl::StartsWith(name, prefix) || !absl::EndsWith(name, suffix)) continue;
    absl::string_view digits = name;
    digits.remove_prefix(prefix.size());
    digits.remove_suffix(suffix.size());
    uint64_t lsn;
    if (!absl::SimpleAtoi(digits, &lsn)) continue;
    files.push_back({lsn, name});
  }
  std::sort(files.begin(), files.end(),
            [](const NumberedFile& a, const NumberedFile& b) { return a.lsn < b.lsn; });
  return files;
}

absl::StatusOr<LogReadResult> Wal::ReadSnapshot(
    const std::string& path,
    const std::function<absl::Status(const store::v1::LogRecord&)>& apply) {
  absl::StatusOr<std::unique_ptr<SequentialFile>> file = options_.fs->NewSequentialFile(path);
  if (!file.ok()) return file.status();
  LogReader reader(**file, path);
  std::string bytes;
  uint64_t offset;
  store::v1::LogRecord record;
  while (reader.ReadRecord(&bytes, &offset)) {
    if (apply == nullptr) continue;
    absl::Status s = record.ParseFromString(bytes)
                         ? apply(record)
                         : absl::DataLossError("the record does not parse");
    if (!s.ok()) {
      return absl::DataLossError(
          absl::StrCat("snapshot ", path, " offset ", offset, ": ", s.message()));
    }
  }
  return reader.result();
}

absl::StatusOr<uint64_t> Wal::LoadSnapshot(TaskStore& store, RecoveryStats* stats) {
  absl::StatusOr<std::vector<NumberedFile>> snapshots = ListFiles(kSnapshotPrefix, kSnapshotSuffix);
  if (!snapshots.ok()) return snapshots.status();
  for (auto it = snapshots->rbegin(); it != snapshots->rend(); ++it) {
    const std::string path = Path(it->name);
    // Two passes: the first checks the whole file, so that a damaged snapshot leaves the store
    // empty for an older one; the second applies it, one record at a time (a snapshot of a
    // million tasks is hundreds of MB: it is never held in memory whole).
    absl::StatusOr<LogReadResult> checked = ReadSnapshot(path, nullptr);
    if (!checked.ok()) return checked.status();
    if (checked->end != LogReadResult::kClean) {
      stats->damaged_snapshots.push_back(checked->message);
      continue;
    }
    uint64_t tasks = 0;
    absl::StatusOr<LogReadResult> applied =
        ReadSnapshot(path, [&](const store::v1::LogRecord& record) {
          ++tasks;
          return store.Replay(record);
        });
    if (!applied.ok()) return applied.status();
    if (applied->end != LogReadResult::kClean) {
      return absl::DataLossError(
          absl::StrCat("snapshot ", path, " changed while it was read: ", applied->message));
    }
    stats->snapshot_tasks = tasks;
    stats->snapshot_lsn = it->lsn;
    return it->lsn;
  }
  return 0;
}

absl::StatusOr<RecoveryStats> Wal::Recover(TaskStore& store) {
  const absl::Time start = absl::Now();
  RecoveryStats stats;
  if (absl::Status s = options_.fs->CreateDir(options_.dir); !s.ok()) return s;
  store_ = &store;
  // Leftovers of a snapshot that a crash interrupted.
  absl::StatusOr<std::vector<std::string>> names = options_.fs->ListDir(options_.dir);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (absl::EndsWith(name, kTmpSuffix)) {
      if (absl::Status s = options_.fs->Remove(Path(name)); !s.ok()) return s;
    }
  }
  absl::StatusOr<uint64_t> snapshot_lsn = LoadSnapshot(store, &stats);
  if (!snapshot_lsn.ok()) return snapshot_lsn.status();

  absl::StatusOr<std::vector<NumberedFile>> all_segments =
      ListFiles(kSegmentPrefix, kSegmentSuffix);
  if (!all_segments.ok()) return all_segments.status();
  // The segments after the snapshot: from the last one that starts at or before its next record.
  std::vector<NumberedFile> segments;
  for (const NumberedFile& segment : *all_segments) {
    if (segment.lsn <= *snapshot_lsn + 1) segments.clear();
    segments.push_back(segment);
  }
  uint64_t next_lsn = segments.empty() ? *snapshot_lsn + 1 : segments.front().lsn;
  if (next_lsn > *snapshot_lsn + 1) {
    return absl::DataLossError(absl::StrCat(
        "write-ahead log ", Path(segments.front().name), " starts at record ", next_lsn,
        " but the newest snapshot covers records up to ", *snapshot_lsn,
        ": records are missing; restore the data directory or start with an empty one"));
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    const NumberedFile& segment = segments[i];
    const bool last = i + 1 == segments.size();
    const std::string path = Path(segment.name);
    if (segment.lsn > next_lsn && options_.skip_corruption) {
      // Records skipped as corrupt in the segment before, or a missing segment: numbering
      // resumes at this one.
      stats.missing_records += segment.lsn - next_lsn;
      next_lsn = segment.lsn;
    }
    if (segment.lsn != next_lsn) {
      return absl::DataLossError(absl::StrCat(
          "write-ahead log ", path, " starts at record ", segment.lsn,
          " but the segments before it end at record ", next_lsn - 1,
          ": records are missing; restore the data directory or start with an empty one"));
    }
    absl::StatusOr<std::unique_ptr<SequentialFile>> file = options_.fs->NewSequentialFile(path);
    if (!file.ok()) return file.status();
    LogReader reader(**file, path, {.skip_corruption = options_.skip_corruption});
    std::string bytes;
    uint64_t offset;
    store::v1::LogRecord record;
    while (reader.ReadRecord(&bytes, &offset)) {
      if (next_lsn <= *snapshot_lsn) {  // in the snapshot already
        ++next_lsn;
        continue;
      }
      absl::Status replayed = record.ParseFromString(bytes)
                                  ? store.Replay(record)
                                  : absl::DataLossError("the record does not parse");
      if (!replayed.ok()) {
        if (!options_.skip_corruption) {
          return absl::DataLossError(
              absl::StrCat("write-ahead log ", path, " offset ", offset, ": ", replayed.message()));
        }
        stats.skipped_bytes += bytes.size();
      }
      ++stats.records;
      ++next_lsn;
    }
    ++stats.segments;
    const LogReadResult& result = reader.result();
    stats.skipped_bytes += result.dropped_bytes;
    if (!result.ok()) {
      return absl::Status(result.ToStatus().code(),
                          absl::StrCat(result.ToStatus().message(),
                                       " (start with --skip_corrupt_log to drop the damaged "
                                       "records and keep the rest)"));
    }
    if (result.end == LogReadResult::kTornTail) {
      if (last) {
        ++stats.torn_tails;
        stats.torn_bytes += result.torn_bytes;
      } else if (options_.skip_corruption) {
        stats.skipped_bytes += result.torn_bytes;  // corruption: a crash tears only the end
      } else {
        return absl::DataLossError(
            absl::StrCat(result.message,
                         ": a torn record is only possible at the end of the last segment "
                         "(start with --skip_corrupt_log to drop it and keep the rest)"));
      }
    }
    stats.log_bytes += result.valid_end_offset;
    if (last) {
      // Cut a torn tail off (what a crash in the middle of a write leaves), and make what was
      // replayed durable (Truncate syncs): after a kill -9 the last segment may end in records
      // that reached the operating system but were never synced. They were replayed, so the
      // state built on them, and answered from, must survive a later power loss too; and a
      // segment that is no longer the last must never end torn.
      if (absl::Status s = options_.fs->Truncate(path, result.valid_end_offset); !s.ok()) return s;
    }
  }
  // A snapshot may cover records that the log lost in a crash (it is taken from the store, ahead
  // of the log); numbering goes on after both.
  next_lsn = std::max(next_lsn, *snapshot_lsn + 1);
  stats.next_lsn = next_lsn;
  // Damage that was skipped stays in the files: a snapshot right after the start retires them,
  // so that the next start (without --skip_corrupt_log) finds a clean directory.
  snapshot_at_start_ = stats.skipped_bytes > 0 || stats.missing_records > 0;
  {
    absl::MutexLock lock(&mu_);
    last_lsn_ = durable_lsn_ = next_lsn - 1;
    // The log since the last snapshot counts towards the next one, across restarts.
    bytes_since_snapshot_ = stats.log_bytes;
  }
  stats.duration = absl::Now() - start;
  return stats;
}

absl::Status Wal::OpenSegment(uint64_t first_lsn) {
  if (file_ != nullptr) {
    // Synced even with --fsync=never: a segment that is not the last must never end torn, or
    // recovery would refuse it. Once per segment.
    if (absl::Status s = file_->Sync(); !s.ok()) return s;
    if (absl::Status s = file_->Close(); !s.ok()) return s;
  }
  writer_.reset();
  // A segment that was left empty (or truncated to nothing) has this name already: it is
  // replaced.
  absl::StatusOr<std::unique_ptr<WritableFile>> file =
      options_.fs->NewWritableFile(Path(SegmentName(first_lsn)));
  if (!file.ok()) return file.status();
  file_ = *std::move(file);
  writer_ = std::make_unique<LogWriter>(*file_);
  // The new file must survive a machine crash with its directory entry.
  return options_.fs->SyncDir(options_.dir);
}

absl::Status Wal::StartWriting() {
  uint64_t first_lsn;
  {
    absl::MutexLock lock(&mu_);
    first_lsn = last_lsn_ + 1;
  }
  if (absl::Status s = OpenSegment(first_lsn); !s.ok()) return s;
  {
    absl::MutexLock lock(&mu_);
    writing_ = true;
    thread_ = std::thread([this] { Run(); });
    if (options_.snapshot_bytes > 0 && store_ != nullptr) {
      snapshot_thread_ = std::thread([this] { RunSnapshots(); });
    }
  }
  if (snapshot_at_start_ && store_ != nullptr) {
    if (absl::Status s = Snapshot(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("writing the snapshot that retires the skipped "
                                                 "corruption: ",
                                                 s.message()));
    }
  }
  return absl::OkStatus();
}

uint64_t Wal::Append(const store::v1::LogRecord& record) {
  std::string bytes = record.SerializeAsString();
  absl::MutexLock lock(&mu_);
  pending_.push_back(std::move(bytes));
  if (pending_.size() == 1) work_.Signal();
  return ++last_lsn_;
}

void Wal::WhenDurable(uint64_t lsn, std::function<void()> done) {
  {
    absl::MutexLock lock(&mu_);
    if (lsn > durable_lsn_) {
      waiting_.emplace(lsn, std::move(done));
      return;
    }
  }
  done();
}

void Wal::Run() {
  pthread_setname_np(pthread_self(), "hg-wal");
  std::vector<std::string> batch;
  std::vector<std::function<void()>> ready;
  while (true) {
    uint64_t batch_last_lsn;
    bool rotate;
    {
      absl::MutexLock lock(&mu_);
      while (pending_.empty() && !stopping_) work_.Wait(&mu_);
      if (pending_.empty()) return;  // stopping, and everything is written
      batch.swap(pending_);
      batch_last_lsn = last_lsn_;
      rotate = rotate_;
      rotate_ = false;
    }
    const uint64_t batch_first_lsn = batch_last_lsn - batch.size() + 1;
    if (rotate || writer_->offset() >= options_.segment_bytes) {
      if (absl::Status s = OpenSegment(batch_first_lsn); !s.ok()) Fatal(s);
    }
    uint64_t bytes = 0;
    for (const std::string& record : batch) {
      if (absl::Status s = writer_->AddRecord(record); !s.ok()) Fatal(s);
      bytes += record.size();
    }
    absl::Duration sync_time;
    if (options_.sync) {
      const absl::Time sync_start = absl::Now();
      if (absl::Status s = file_->Sync(); !s.ok()) Fatal(s);
      sync_time = absl::Now() - sync_start;
    } else if (absl::Status s = file_->Flush(); !s.ok()) {
      Fatal(s);
    }
    if (options_.observer != nullptr) options_.observer->OnCommit(batch.size(), bytes, sync_time);
    batch.clear();
    {
      absl::MutexLock lock(&mu_);
      durable_lsn_ = batch_last_lsn;
      bytes_since_snapshot_ += bytes;
      if (options_.snapshot_bytes > 0 && !snapshot_wanted_ &&
          bytes_since_snapshot_ >= std::max(options_.snapshot_bytes, 2 * last_snapshot_bytes_)) {
        snapshot_wanted_ = true;
        snapshot_cv_.Signal();
      }
      auto end = waiting_.upper_bound(durable_lsn_);
      for (auto it = waiting_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
      waiting_.erase(waiting_.begin(), end);
    }
    for (std::function<void()>& done : ready) done();
    ready.clear();
  }
}

void Wal::Fatal(const absl::Status& status) {
  if (options_.on_fatal) options_.on_fatal(status);
  std::fprintf(stderr, "hourglass: fatal: write-ahead log: %s\n", status.ToString().c_str());
  std::abort();
}

void Wal::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!writing_) return;
    writing_ = false;
    stopping_ = true;
    work_.Signal();
  }
  thread_.join();
  if (snapshot_thread_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      snapshot_cv_.SignalAll();
    }
    snapshot_thread_.join();
  }
  if (file_ != nullptr) {
    if (absl::Status s = file_->Close(); !s.ok()) Fatal(s);
  }
}

void Wal::RunSnapshots() {
  pthread_setname_np(pthread_self(), "hg-snapshot");
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (!snapshot_wanted_ && !stopping_) snapshot_cv_.Wait(&mu_);
      if (stopping_) return;
    }
    // A failed snapshot loses nothing (the log still has every record); it is tried again after
    // the next snapshot_bytes of records.
    absl::Status s = Snapshot();
    absl::MutexLock lock(&mu_);
    snapshot_wanted_ = false;
    if (!s.ok()) {
      bytes_since_snapshot_ = 0;
      if (options_.observer != nullptr) options_.observer->OnSnapshotFailed(s);
    }
  }
}

absl::Status Wal::Snapshot() {
  absl::MutexLock snapshot_lock(&snapshot_mu_);
  const absl::Time start = absl::Now();
  uint64_t lsn;
  {
    // Every change up to `lsn` is in the store: Append is called after the change, under the
    // store's lock. Changes after it may be in the snapshot too; replay of the log after `lsn`
    // converges either way. The writer starts a new segment, so that the ones before it can go.
    absl::MutexLock lock(&mu_);
    lsn = last_lsn_;
    rotate_ = true;
  }
  const std::string name = SnapshotName(lsn);
  const std::string tmp = Path(name + std::string(kTmpSuffix));
  absl::StatusOr<std::unique_ptr<WritableFile>> file = options_.fs->NewWritableFile(tmp);
  if (!file.ok()) return file.status();
  LogWriter writer(**file);
  size_t cursor = 0;
  uint64_t tasks = 0;
  std::vector<store::v1::LogRecord> chunk;
  bool more = true;
  while (more) {
    more = store_->SnapshotChunk(&cursor, kSnapshotChunkTasks, &chunk);
    for (const store::v1::LogRecord& record : chunk) {
      if (absl::Status s = writer.AddRecord(record.SerializeAsString()); !s.ok()) return s;
    }
    tasks += chunk.size();
    chunk.clear();
  }
  if (absl::Status s = (*file)->Sync(); !s.ok()) return s;
  if (absl::Status s = (*file)->Close(); !s.ok()) return s;
  // The snapshot may hold changes whose records are not durable yet; make them durable first, so
  // that the log never ends before the snapshot's LSN.
  absl::Notification durable;
  WhenDurable(lsn, [&durable] { durable.Notify(); });
  durable.WaitForNotification();
  if (absl::Status s = options_.fs->Rename(tmp, Path(name)); !s.ok()) return s;
  if (absl::Status s = options_.fs->SyncDir(options_.dir); !s.ok()) return s;

  // Delete what the snapshot covers: older snapshots, and segments whose records are all <= lsn.
  absl::StatusOr<std::vector<NumberedFile>> snapshots = ListFiles(kSnapshotPrefix, kSnapshotSuffix);
  if (!snapshots.ok()) return snapshots.status();
  for (const NumberedFile& old : *snapshots) {
    if (old.lsn >= lsn) continue;
    if (absl::Status s = options_.fs->Remove(Path(old.name)); !s.ok()) return s;
  }
  absl::StatusOr<std::vector<NumberedFile>> segments = ListFiles(kSegmentPrefix, kSegmentSuffix);
  if (!segments.ok()) return segments.status();
  for (size_t i = 0; i + 1 < segments->size(); ++i) {
    if ((*segments)[i + 1].lsn - 1 > lsn) break;
    if (absl::Status s = options_.fs->Remove(Path((*segments)[i].name)); !s.ok()) return s;
  }
  absl::StatusOr<uint64_t> size = options_.fs->FileSize(Path(name));
  const uint64_t bytes = size.ok() ? *size : writer.offset();
  {
    absl::MutexLock lock(&mu_);
    bytes_since_snapshot_ = 0;
    last_snapshot_bytes_ = bytes;
  }
  if (options_.observer != nullptr)
    options_.observer->OnSnapshot(tasks, bytes, absl::Now() - start);
  return absl::OkStatus();
}

uint64_t Wal::durable_lsn() const {
  absl::MutexLock lock(&mu_);
  return durable_lsn_;
}

uint64_t Wal::last_lsn() const {
  absl::MutexLock lock(&mu_);
  return last_lsn_;
}

}  // namespace hourglass
