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
#include "absl/time/clock.h"
#include "store/log_reader.h"

namespace hourglass {

namespace {

constexpr absl::string_view kSegmentPrefix = "log-";
constexpr absl::string_view kSegmentSuffix = ".wal";

}  // namespace

Wal::Wal(Options options) : options_(std::move(options)) {}

Wal::~Wal() { Stop(); }

std::string Wal::SegmentName(uint64_t first_lsn) {
  return absl::StrFormat("%s%020d%s", kSegmentPrefix, first_lsn, kSegmentSuffix);
}

std::string Wal::Path(const std::string& name) const { return options_.dir + "/" + name; }

absl::StatusOr<std::vector<Wal::Segment>> Wal::ListSegments() const {
  absl::StatusOr<std::vector<std::string>> names = options_.fs->ListDir(options_.dir);
  if (!names.ok()) return names.status();
  std::vector<Segment> segments;
  for (const std::string& name : *names) {
    if (!absl::StartsWith(name, kSegmentPrefix) || !absl::EndsWith(name, kSegmentSuffix)) continue;
    absl::string_view digits = name;
    digits.remove_prefix(kSegmentPrefix.size());
    digits.remove_suffix(kSegmentSuffix.size());
    uint64_t first_lsn;
    if (!absl::SimpleAtoi(digits, &first_lsn) || first_lsn == 0) continue;
    segments.push_back({first_lsn, name});
  }
  std::sort(segments.begin(), segments.end(),
            [](const Segment& a, const Segment& b) { return a.first_lsn < b.first_lsn; });
  return segments;
}

absl::StatusOr<RecoveryStats> Wal::Recover(TaskStore& store) {
  const absl::Time start = absl::Now();
  RecoveryStats stats;
  if (absl::Status s = options_.fs->CreateDir(options_.dir); !s.ok()) return s;
  absl::StatusOr<std::vector<Segment>> segments = ListSegments();
  if (!segments.ok()) return segments.status();

  uint64_t next_lsn = segments->empty() ? 1 : segments->front().first_lsn;
  for (size_t i = 0; i < segments->size(); ++i) {
    const Segment& segment = (*segments)[i];
    const bool last = i + 1 == segments->size();
    const std::string path = Path(segment.name);
    if (segment.first_lsn != next_lsn) {
      return absl::DataLossError(absl::StrCat(
          "write-ahead log ", path, " starts at record ", segment.first_lsn,
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
      if (!last && !options_.skip_corruption) {
        return absl::DataLossError(
            absl::StrCat(result.message,
                         ": a torn record is only possible at the end of the last segment "
                         "(start with --skip_corrupt_log to drop it and keep the rest)"));
      }
      // What a crash in the middle of a write leaves: cut it off so that the file ends cleanly.
      if (absl::Status s = options_.fs->Truncate(path, result.valid_end_offset); !s.ok()) return s;
      ++stats.torn_tails;
      stats.torn_bytes += result.torn_bytes;
    }
  }
  stats.next_lsn = next_lsn;
  {
    absl::MutexLock lock(&mu_);
    last_lsn_ = durable_lsn_ = next_lsn - 1;
  }
  stats.duration = absl::Now() - start;
  return stats;
}

absl::Status Wal::OpenSegment(uint64_t first_lsn) {
  if (file_ != nullptr) {
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
  absl::MutexLock lock(&mu_);
  writing_ = true;
  thread_ = std::thread([this] { Run(); });
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
    {
      absl::MutexLock lock(&mu_);
      while (pending_.empty() && !stopping_) work_.Wait(&mu_);
      if (pending_.empty()) return;  // stopping, and everything is written
      batch.swap(pending_);
      batch_last_lsn = last_lsn_;
    }
    const uint64_t batch_first_lsn = batch_last_lsn - batch.size() + 1;
    if (writer_->offset() >= options_.segment_bytes) {
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
  if (file_ != nullptr) {
    if (absl::Status s = file_->Close(); !s.ok()) Fatal(s);
  }
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
