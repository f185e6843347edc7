// log_reader_fuzzer: arbitrary bytes as a write-ahead log segment and as a snapshot, through the
// real LogReader and the real recovery (Wal::Recover into a TaskStore, on a FakeFileSystem).
//
// Each input is tried six ways:
//   1. LogReader, stopping at damage: the records and how the log ended must be consistent
//      (offsets increase and stay inside the file; a clean end is the whole file; a torn tail is
//      the rest of it; corruption is DATA_LOSS naming the file). Cutting the file at
//      valid_end_offset must read back cleanly with the same records, and the records written
//      again by LogWriter must read back identically.
//   2. LogReader with skip_corruption: the same, and never a corrupt end.
//   3. Recovery of a data directory holding the bytes as its one segment, stopping at damage, and
//   4. the same with skip_corruption (--skip_corrupt_log): either a RecoveryStats, or DATA_LOSS
//      naming the segment. After a success, the segment has been cut to the replayed length, a
//      second start from the same directory recovers the same tasks, and the store survives being
//      driven through time (timers, leases, acks, nacks, expiries, push claims).
//   5. Recovery of two segments, the bytes cut in two (the second numbered after the first's
//      records): both replayed, or DATA_LOSS naming one; damage ending the first is never a torn
//      tail.
//   6. Recovery of a directory holding the bytes as its one snapshot: it is loaded (read cleanly)
//      or passed over as damaged, or recovery fails with DATA_LOSS naming it (a record that reads
//      cleanly but makes no sense).
// Never a crash, a hang, a leak or undefined behaviour (ASan, UBSan).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/stubs/logging.h"
#include "store/file.h"
#include "store/log_reader.h"
#include "store/log_writer.h"
#include "store/task_store.h"
#include "store/wal.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/testing/fake_clock.h"

namespace hourglass {
namespace {

constexpr char kDir[] = "/data";
constexpr char kLogPath[] = "/data/log";
// Names Wal gives its files: a segment starting at record 1, a snapshot covering records 1 to 5.
constexpr char kSegmentPath[] = "/data/log-00000000000000000001.wal";
constexpr char kSnapshotPath[] = "/data/snapshot-00000000000000000005.snap";

void WriteFile(FakeFileSystem& fs, const std::string& path, absl::string_view bytes) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file = fs.NewWritableFile(path);
  FUZZ_CHECK(file.ok(), file.status().ToString());
  FUZZ_CHECK((*file)->Append(bytes).ok() && (*file)->Sync().ok() && fs.SyncDir(kDir).ok(), path);
}

struct ReadBack {
  std::vector<std::string> records;
  LogReadResult result;
};

// Reads the log at `path` to its end, checking what LogReader promises of each record.
ReadBack ReadLog(FakeFileSystem& fs, const std::string& path, bool skip_corruption) {
  absl::StatusOr<uint64_t> size = fs.FileSize(path);
  FUZZ_CHECK(size.ok(), size.status().ToString());
  absl::StatusOr<std::unique_ptr<SequentialFile>> file = fs.NewSequentialFile(path);
  FUZZ_CHECK(file.ok(), file.status().ToString());
  LogReader reader(**file, path, {.skip_corruption = skip_corruption});
  ReadBack back;
  std::string record;
  uint64_t offset = 0;
  uint64_t previous_offset = 0;
  while (reader.ReadRecord(&record, &offset)) {
    FUZZ_CHECK(back.records.empty() || offset > previous_offset,
               absl::StrCat("record offsets must increase: ", offset, " after ", previous_offset));
    FUZZ_CHECK(offset + kLogHeaderSize <= *size, absl::StrCat("record offset ", offset));
    previous_offset = offset;
    back.records.push_back(record);
  }
  back.result = reader.result();
  const LogReadResult& result = back.result;
  FUZZ_CHECK(result.records == back.records.size(), "result().records counts the records");
  FUZZ_CHECK(result.valid_end_offset <= *size,
             absl::StrCat("valid_end_offset ", result.valid_end_offset));
  FUZZ_CHECK(back.records.empty() || result.valid_end_offset > previous_offset,
             "the valid log ends after its last record");
  switch (result.end) {
    case LogReadResult::kClean:
      FUZZ_CHECK(result.valid_end_offset == *size, "a clean log is valid to its end");
      FUZZ_CHECK(result.message.empty() == (result.dropped_bytes == 0), result.message);
      break;
    case LogReadResult::kTornTail:
      FUZZ_CHECK(result.torn_bytes == *size - result.valid_end_offset, result.message);
      FUZZ_CHECK(result.torn_bytes > 0, result.message);
      FUZZ_CHECK(absl::StrContains(result.message, path), result.message);
      break;
    case LogReadResult::kCorrupt:
      FUZZ_CHECK(!skip_corruption, "skip_corruption never ends corrupt: " + result.message);
      FUZZ_CHECK(result.ToStatus().code() == absl::StatusCode::kDataLoss, result.message);
      FUZZ_CHECK(absl::StrContains(result.ToStatus().message(), path), result.message);
      break;
    case LogReadResult::kReadError:
      FUZZ_CHECK(false, "an in-memory file cannot fail to read: " + result.read_error.ToString());
  }
  FUZZ_CHECK(result.ok() == result.ToStatus().ok(), result.message);
  FUZZ_CHECK(skip_corruption || result.dropped_bytes == 0, "dropped bytes without skipping");
  return back;
}

void CheckReader(absl::string_view bytes, bool skip_corruption) {
  FakeFileSystem fs;
  FUZZ_CHECK(fs.CreateDir(kDir).ok(), kDir);
  WriteFile(fs, kLogPath, bytes);
  const ReadBack back = ReadLog(fs, kLogPath, skip_corruption);

  if (!skip_corruption && back.result.ok()) {
    // What recovery does to a torn tail: the file cut at valid_end_offset is a clean log with the
    // same records, which a LogWriter can continue.
    FUZZ_CHECK(fs.Truncate(kLogPath, back.result.valid_end_offset).ok(), "truncate");
    const ReadBack cut = ReadLog(fs, kLogPath, false);
    FUZZ_CHECK(cut.result.end == LogReadResult::kClean, cut.result.message);
    FUZZ_CHECK(cut.records == back.records, "the cut log has other records");
  }

  // The records read, written again by the real writer, read back identically.
  const std::string copy_path = absl::StrCat(kDir, "/copy");
  {
    absl::StatusOr<std::unique_ptr<WritableFile>> file = fs.NewWritableFile(copy_path);
    FUZZ_CHECK(file.ok(), file.status().ToString());
    LogWriter writer(**file);
    for (const std::string& record : back.records) {
      FUZZ_CHECK(writer.AddRecord(record).ok(), "AddRecord");
    }
    FUZZ_CHECK((*file)->Close().ok(), "Close");
  }
  const ReadBack copy = ReadLog(fs, copy_path, false);
  FUZZ_CHECK(copy.result.end == LogReadResult::kClean, copy.result.message);
  FUZZ_CHECK(copy.records == back.records, "LogWriter's copy reads back different records");
}

struct Recovered {
  absl::StatusOr<RecoveryStats> stats;
  std::vector<std::pair<std::string, std::vector<int64_t>>> counts;
};

// One start of a server on `fs`: recovery into a fresh store, which is then driven through time
// when `drive`.
Recovered Recover(FakeFileSystem& fs, bool skip_corruption, bool drive) {
  FakeClock clock;
  HorizonTimers timers(clock);
  TaskStore store(clock, timers, {});
  Wal wal({.dir = kDir, .fs = &fs, .skip_corruption = skip_corruption});
  Recovered recovered{wal.Recover(store), {}};
  if (!recovered.stats.ok()) return recovered;
  recovered.counts = SortedCounts(store);
  if (drive) {
    store.FinishRecovery();
    DriveStore(store, clock, timers, /*rounds=*/6);
  }
  return recovered;
}

void CheckSegmentRecovery(absl::string_view bytes, bool skip_corruption) {
  FakeFileSystem fs;
  FUZZ_CHECK(fs.CreateDir(kDir).ok(), kDir);
  WriteFile(fs, kSegmentPath, bytes);
  const Recovered first = Recover(fs, skip_corruption, /*drive=*/true);
  if (!first.stats.ok()) {
    FUZZ_CHECK(first.stats.status().code() == absl::StatusCode::kDataLoss,
               first.stats.status().ToString());
    FUZZ_CHECK(absl::StrContains(first.stats.status().message(), kSegmentPath),
               first.stats.status().ToString());
    return;
  }
  const RecoveryStats& stats = *first.stats;
  FUZZ_CHECK(stats.segments == 1, absl::StrCat("segments ", stats.segments));
  FUZZ_CHECK(stats.next_lsn >= 1 + stats.records, absl::StrCat("next_lsn ", stats.next_lsn));
  absl::StatusOr<uint64_t> size = fs.FileSize(kSegmentPath);
  FUZZ_CHECK(size.ok() && *size == stats.log_bytes,
             absl::StrCat("the segment is cut to the replayed log, ", stats.log_bytes, " bytes"));
  FUZZ_CHECK(stats.log_bytes + stats.torn_bytes <= bytes.size(), "more bytes than the file");
  // A second start finds the log as the first left it: no torn tail any more, the same tasks.
  const Recovered second = Recover(fs, skip_corruption, /*drive=*/false);
  FUZZ_CHECK(second.stats.ok(), second.stats.status().ToString());
  FUZZ_CHECK(second.stats->torn_tails == 0, "the torn tail was cut off by the first start");
  FUZZ_CHECK(second.stats->records == stats.records, "the second start replays other records");
  FUZZ_CHECK(second.counts == first.counts, "the second start recovers other tasks");
}

// The bytes cut in two at a block boundary (or in the middle, for less than two blocks) as two
// segments, the second numbered after the records the first holds, as Wal would have written them:
// recovery replays both, or fails with DATA_LOSS naming one of them; damage at the end of the first
// segment is never taken for a torn tail.
void CheckTwoSegments(absl::string_view bytes) {
  const size_t cut = bytes.size() >= 2 * kLogBlockSize ? kLogBlockSize : bytes.size() / 2;
  FakeFileSystem fs;
  FUZZ_CHECK(fs.CreateDir(kDir).ok(), kDir);
  WriteFile(fs, kSegmentPath, bytes.substr(0, cut));
  const ReadBack first = ReadLog(fs, kSegmentPath, /*skip_corruption=*/false);
  // Without a record the second segment would have the first one's name (as with Wal).
  if (first.result.records == 0) return;
  const std::string second_path =
      absl::StrFormat("%s/log-%020d.wal", kDir, first.result.records + 1);
  WriteFile(fs, second_path, bytes.substr(cut));
  const Recovered recovered = Recover(fs, /*skip_corruption=*/false, /*drive=*/true);
  if (!recovered.stats.ok()) {
    const absl::Status& status = recovered.stats.status();
    FUZZ_CHECK(status.code() == absl::StatusCode::kDataLoss, status.ToString());
    FUZZ_CHECK(absl::StrContains(status.message(), kSegmentPath) ||
                   absl::StrContains(status.message(), second_path),
               status.ToString());
    return;
  }
  FUZZ_CHECK(first.result.end == LogReadResult::kClean,
             "a damaged segment that is not the last was accepted: " + first.result.message);
  FUZZ_CHECK(recovered.stats->segments == 2, absl::StrCat("segments ", recovered.stats->segments));
  FUZZ_CHECK(recovered.stats->torn_tails <= 1, "torn tails");
}

void CheckSnapshotRecovery(absl::string_view bytes) {
  FakeFileSystem fs;
  FUZZ_CHECK(fs.CreateDir(kDir).ok(), kDir);
  WriteFile(fs, kSnapshotPath, bytes);
  const Recovered recovered = Recover(fs, /*skip_corruption=*/false, /*drive=*/true);
  if (!recovered.stats.ok()) {
    FUZZ_CHECK(recovered.stats.status().code() == absl::StatusCode::kDataLoss,
               recovered.stats.status().ToString());
    FUZZ_CHECK(absl::StrContains(recovered.stats.status().message(), kSnapshotPath),
               recovered.stats.status().ToString());
    return;
  }
  const RecoveryStats& stats = *recovered.stats;
  // Loaded, or passed over as damaged: never both, never neither.
  FUZZ_CHECK((stats.snapshot_lsn == 5) != (stats.damaged_snapshots.size() == 1),
             absl::StrCat("snapshot_lsn ", stats.snapshot_lsn));
  FUZZ_CHECK(stats.next_lsn == stats.snapshot_lsn + 1, absl::StrCat("next_lsn ", stats.next_lsn));
  if (stats.snapshot_lsn == 0) {
    FUZZ_CHECK(absl::StrContains(stats.damaged_snapshots[0], kSnapshotPath),
               stats.damaged_snapshots[0]);
  }
}

}  // namespace
}  // namespace hourglass

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Records that do not parse (invalid UTF-8, ...) are logged by protobuf: quiet, so that the
  // fuzzer's output shows what matters.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  hourglass::CheckReader(bytes, /*skip_corruption=*/false);
  hourglass::CheckReader(bytes, /*skip_corruption=*/true);
  hourglass::CheckSegmentRecovery(bytes, /*skip_corruption=*/false);
  hourglass::CheckSegmentRecovery(bytes, /*skip_corruption=*/true);
  hourglass::CheckTwoSegments(bytes);
  hourglass::CheckSnapshotRecovery(bytes);
  return 0;
}
