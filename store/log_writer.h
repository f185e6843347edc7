// LogWriter: appends records to a write-ahead log file in the format of log_format.h.
//
//   absl::StatusOr<std::unique_ptr<WritableFile>> file = fs.NewAppendableFile(path);
//   LogWriter writer(**file, /*initial_offset=*/0);          // a new, empty log
//   for (const std::string& record : batch) {
//     if (absl::Status s = writer.AddRecord(record); !s.ok()) return s;
//   }
//   absl::Status s = (*file)->Sync();          // the whole batch is durable once this is OK
//
// AddRecord() neither flushes nor syncs: the caller decides (one Sync() per group-commit batch;
// Flush() alone after each batch if the process should survive kill -9 without fsync).
//
// To continue an existing log, open it with NewAppendableFile() and pass its length as
// `initial_offset` (after recovery: LogReadResult::valid_end_offset, once the file has been
// truncated to it), so that fragments stay aligned to the file's blocks.
//
// Not thread-safe: one writer thread.
#ifndef HOURGLASS_STORE_LOG_WRITER_H_
#define HOURGLASS_STORE_LOG_WRITER_H_

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "store/file.h"
#include "store/log_format.h"

namespace hourglass {

class LogWriter {
 public:
  // `file` must outlive the writer; it is positioned at `initial_offset` bytes into the log.
  explicit LogWriter(WritableFile& file, uint64_t initial_offset = 0);
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Appends `record` (any length; a record of more than a block is fragmented). Fails with the
  // file's error; after a failure the log's end is unknown and every later call fails with the
  // same error (the caller truncates the file to offset() and starts a new writer, or stops).
  absl::Status AddRecord(absl::string_view record);

  // The log's length in bytes after the last record added successfully: the record_offset a
  // LogReader reports for the next record is offset(), or the next block's start when fewer
  // than kLogHeaderSize bytes are left in the block.
  uint64_t offset() const { return offset_; }

 private:
  absl::Status EmitFragment(LogRecordType type, absl::string_view data);

  WritableFile& file_;
  uint64_t offset_;      // of the end of the last complete record
  size_t block_offset_;  // where the next fragment goes in the current block
  absl::Status status_;  // sticky: the first error
  // CRC-32C of each type byte, extended by the data of every fragment.
  std::array<uint32_t, kLogMaxRecordType + 1> type_crc_;
};

}  // namespace hourglass

#endif  // HOURGLASS_STORE_LOG_WRITER_H_
