// LogReader: reads back the records of a write-ahead log file (log_format.h) and says how the log
// ended: cleanly, with a torn tail (what a crash leaves), or with corruption in the middle.
//
//   absl::StatusOr<std::unique_ptr<SequentialFile>> file = fs.NewSequentialFile(path);
//   LogReader reader(**file, path);
//   std::string record;
//   uint64_t record_offset;
//   while (reader.ReadRecord(&record, &record_offset)) Apply(record);
//   const LogReadResult& result = reader.result();
//   if (!result.ok()) return result.ToStatus();           // corrupt mid-log, or a read error
//   if (result.end == LogReadResult::kTornTail) {         // log result.message, count it
//     s = fs.Truncate(path, result.valid_end_offset);
//   }
//   // Appending may continue: LogWriter(file, result.valid_end_offset).
//
// How the end is classified. A fragment is bad when its checksum does not match, its type is
// unknown, its length runs past its block, or it is cut off by the end of the file; zero bytes
// where a header should be, non-zero bytes in a block's zero-filled tail, a record missing its
// kFirst fragment or interrupted by a new record are bad too.
//   - kClean: every byte of the file belongs to a complete record (or to a block's zero-filled
//     tail after one). valid_end_offset is the file's size.
//   - kTornTail: something bad, and no fragment that starts a record (kFull or kFirst, with a valid
//     checksum) anywhere after it in the file: only zeroes, garbage, fragments of the broken
//     record, or the end of the file. This is what a crash in the middle of a write leaves.
//     ReadRecord() returned every complete record before it; valid_end_offset is the end of the
//     last one, the length to truncate the file to.
//   - kCorrupt: something bad with a record start after it: records that were written after
//     the damaged one would be lost. ReadRecord() stops at the damage; message names the file,
//     the offset of the damage and of the next record start. ToStatus() is DATA_LOSS.
//   - kReadError: the file could not be read; ToStatus() is the file system's error.
//
// With Options::skip_corruption, the reader instead drops the rest of the block that holds a bad
// fragment (and any partial record) and resynchronises at the next block, as LevelDB's does;
// the bytes skipped between two records are added to dropped_bytes and described in message. A
// bad region after the last complete record is then reported as a torn tail.
//
// Finding out that nothing follows a bad fragment reads the rest of the file (it is scanned
// byte by byte for a valid kFull or kFirst fragment); the reader holds one block (32 KiB) and the
// record being assembled in memory.
//
// Not thread-safe.
#ifndef HOURGLASS_STORE_LOG_READER_H_
#define HOURGLASS_STORE_LOG_READER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/file.h"
#include "store/log_format.h"

namespace hourglass {

// How a log ended; see LogReader.
struct LogReadResult {
  enum End { kClean, kTornTail, kCorrupt, kReadError };

  End end = kClean;
  // Just past the last complete record returned (or past the zero-filled block tail after it):
  // where the valid log ends, and the length to truncate the file to before appending.
  uint64_t valid_end_offset = 0;
  // kTornTail: the bytes after valid_end_offset (the file's size minus valid_end_offset).
  uint64_t torn_bytes = 0;
  // kTornTail, kCorrupt: where the first bad fragment (or the broken record) starts.
  uint64_t bad_offset = 0;
  // skip_corruption: bytes skipped over between records, over the whole file.
  uint64_t dropped_bytes = 0;
  uint64_t records = 0;  // records returned by ReadRecord()
  // Empty for a clean end with nothing dropped; otherwise names the file and the offsets.
  std::string message;
  absl::Status read_error;  // kReadError

  // kClean and kTornTail: the records read are the log (after truncating a torn tail).
  bool ok() const { return end == kClean || end == kTornTail; }
  // OK unless kCorrupt (DATA_LOSS with message) or kReadError (the read's error).
  absl::Status ToStatus() const;
};

class LogReader {
 public:
  struct Options {
    // Skip corrupt regions (resynchronising at the next block) instead of stopping at them.
    bool skip_corruption = false;
  };

  // `file` must outlive the reader and be positioned at the log's start; `file_name` is used in
  // messages only.
  LogReader(SequentialFile& file, std::string file_name, Options options);
  LogReader(SequentialFile& file, std::string file_name)
      : LogReader(file, std::move(file_name), Options()) {}
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;

  // Reads the next record into *record and sets *record_offset to the file offset of its first
  // fragment's header. Returns false at the end of the log, whatever it was: see result().
  bool ReadRecord(std::string* record, uint64_t* record_offset);

  // How the log ended: final once ReadRecord() has returned false.
  const LogReadResult& result() const { return result_; }

 private:
  enum class Next { kFragment, kEndOfFile, kBad, kReadError };
  struct Fragment {
    LogRecordType type;
    absl::string_view data;  // into block_
    uint64_t offset;         // of its header
  };
  struct Problem {
    uint64_t offset;
    std::string reason;
  };

  // Reads the next fragment, skipping zero-filled block tails.
  Next ReadFragment(Fragment* fragment, Problem* problem);
  // Reads the next block into block_; sets at_eof_ when it is the last.
  absl::Status ReadBlock();
  // The offset of the first valid kFull or kFirst fragment at or after block_[from], reading the
  // rest of the file if need be.
  absl::StatusOr<std::optional<uint64_t>> FindRecordStart(size_t from);

  // A problem without skip_corruption: finds out whether it is a torn tail or corruption and
  // ends the log. `record_start_follows`: the problem is itself followed by a valid record start
  // (an interrupted record), so there is no need to look.
  void EndAtProblem(const Problem& problem, size_t scan_from, bool record_start_follows);
  // A problem with skip_corruption: notes the start of the skipped region (the first problem
  // since the last record).
  void SkipProblem(const Problem& problem);
  // A record at `record_offset` is about to be returned: accounts for a skipped region before it.
  void ConcludeSkip(uint64_t record_offset);
  void EndAtEndOfFile();
  void EndWithReadError(absl::Status status);

  // Constant after construction.
  SequentialFile& file_;
  const std::string file_name_;
  const Options options_;

  std::string block_;          // the current block (shorter than kLogBlockSize only at the end)
  uint64_t block_start_ = 0;   // file offset of block_[0]
  size_t pos_ = 0;             // next byte of block_ to parse
  bool at_eof_ = false;        // block_ is the file's last block
  bool in_record_ = false;     // a kFirst fragment was read; scratch_ holds the record so far
  uint64_t record_start_ = 0;  // in_record_: offset of its kFirst fragment
  std::string scratch_;
  uint64_t last_record_end_ = 0;
  std::optional<Problem> skipping_;  // skip_corruption: the first problem since the last record
  uint64_t skipped_regions_ = 0;
  std::string first_skip_;  // describes the first region skipped
  bool done_ = false;
  LogReadResult result_;
};

}  // namespace hourglass

#endif  // HOURGLASS_STORE_LOG_READER_H_
