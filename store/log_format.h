// The write-ahead log's file format: LevelDB's log format (doc/log_format.md in LevelDB).
//
// A log file is a sequence of 32 KiB blocks (the last one may be partial). A record is stored as
// one or more fragments; a fragment never crosses a block boundary:
//
//   fragment := masked_crc32c (4 bytes, little-endian)   Mask(CRC-32C of the type byte + data)
//               length        (2 bytes, little-endian)   of data
//               type          (1 byte)                   kFull, kFirst, kMiddle or kLast
//               data          (length bytes)
//
// A record that fits in the rest of its block is one kFull fragment; a longer one is kFirst,
// zero or more kMiddle, then kLast, each filling its block. When fewer than kLogHeaderSize bytes
// are left in a block, they are zero-filled and the next fragment starts the next block; a block
// with exactly kLogHeaderSize bytes left gets a fragment with no data. Every block therefore
// starts with a fragment header, which is what lets a reader resynchronise after corruption.
#ifndef HOURGLASS_STORE_LOG_FORMAT_H_
#define HOURGLASS_STORE_LOG_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace hourglass {

enum class LogRecordType : uint8_t {
  kZero = 0,  // never written: what zero-filled space decodes as
  kFull = 1,
  kFirst = 2,
  kMiddle = 3,
  kLast = 4,
};
inline constexpr uint8_t kLogMaxRecordType = static_cast<uint8_t>(LogRecordType::kLast);

inline constexpr size_t kLogBlockSize = 32768;
// checksum (4 bytes), length (2 bytes), type (1 byte).
inline constexpr size_t kLogHeaderSize = 4 + 2 + 1;

}  // namespace hourglass

#endif  // HOURGLASS_STORE_LOG_FORMAT_H_
