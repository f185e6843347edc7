#include "store/log_writer.h"

#include <algorithm>

#include "store/crc32c.h"

namespace hourglass {

LogWriter::LogWriter(WritableFile& file, uint64_t initial_offset)
    : file_(file), offset_(initial_offset), block_offset_(initial_offset % kLogBlockSize) {
  for (uint8_t type = 0; type <= kLogMaxRecordType; ++type) {
    const char type_byte = static_cast<char>(type);
    type_crc_[type] = Crc32c(absl::string_view(&type_byte, 1));
  }
}

absl::Status LogWriter::AddRecord(absl::string_view record) {
  if (!status_.ok()) return status_;
  uint64_t written = 0;  // bytes of this record's fragments and padding
  bool first = true;
  // Runs once for an empty record: it gets a kFull fragment with no data.
  do {
    const size_t left_in_block = kLogBlockSize - block_offset_;
    if (left_in_block < kLogHeaderSize) {
      static constexpr char kZeroes[kLogHeaderSize] = {};
      if (left_in_block > 0) {
        status_ = file_.Append(absl::string_view(kZeroes, left_in_block));
        if (!status_.ok()) return status_;
      }
      written += left_in_block;
      block_offset_ = 0;
    }
    const size_t available = kLogBlockSize - block_offset_ - kLogHeaderSize;
    const size_t fragment_length = std::min(record.size(), available);
    const bool last = fragment_length == record.size();
    const LogRecordType type = first && last ? LogRecordType::kFull
                               : first       ? LogRecordType::kFirst
                               : last        ? LogRecordType::kLast
                                             : LogRecordType::kMiddle;
    status_ = EmitFragment(type, record.substr(0, fragment_length));
    if (!status_.ok()) return status_;
    record.remove_prefix(fragment_length);
    written += kLogHeaderSize + fragment_length;
    first = false;
  } while (!record.empty());
  offset_ += written;
  return absl::OkStatus();
}

absl::Status LogWriter::EmitFragment(LogRecordType type, absl::string_view data) {
  const uint8_t type_byte = static_cast<uint8_t>(type);
  const uint32_t crc = crc32c::Mask(crc32c::Extend(type_crc_[type_byte], data));
  const char header[kLogHeaderSize] = {
      static_cast<char>(crc & 0xffu),         static_cast<char>((crc >> 8) & 0xffu),
      static_cast<char>((crc >> 16) & 0xffu), static_cast<char>(crc >> 24),
      static_cast<char>(data.size() & 0xffu), static_cast<char>(data.size() >> 8),
      static_cast<char>(type_byte),
  };
  if (absl::Status s = file_.Append(absl::string_view(header, kLogHeaderSize)); !s.ok()) return s;
  if (absl::Status s = file_.Append(data); !s.ok()) return s;
  block_offset_ += kLogHeaderSize + data.size();
  return absl::OkStatus();
}

}  // namespace hourglass
