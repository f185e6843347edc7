// CRC-32C (Castagnoli), the checksum of the write-ahead log's records.
//
//   uint32_t crc = Crc32c("hello");                        // == crc32c::Extend(0, "hello")
//   crc = crc32c::Extend(crc, " world");                   // == Crc32c("hello world")
//   uint32_t stored = crc32c::Mask(crc);                   // what the log writes
//   assert(crc32c::Unmask(stored) == crc);
//
// Extend() uses the SSE4.2 crc32 instruction when the CPU has it (checked once, at the first
// call) and a slicing-by-8 table otherwise; both give the same values.
//
// Stateless and thread-safe.
#ifndef HOURGLASS_STORE_CRC32C_H_
#define HOURGLASS_STORE_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace hourglass {
namespace crc32c {

// The CRC-32C of the concatenation A + `data`, given `crc` = the CRC-32C of some string A.
uint32_t Extend(uint32_t crc, absl::string_view data);

// Masked CRCs are what the log stores. Computing the CRC of a string that contains embedded CRCs
// is problematic (LevelDB's reasoning, util/crc32c.h): a rotation and an added constant make a
// stored CRC unlike the CRC it covers.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline constexpr uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline constexpr uint32_t Unmask(uint32_t masked_crc) {
  const uint32_t rot = masked_crc - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

// The two implementations Extend() chooses between, for tests and benchmarks.
uint32_t ExtendPortableForTest(uint32_t crc, absl::string_view data);
// Requires HasSse42ForTest(); without SSE4.2 support compiled in it is the portable version.
uint32_t ExtendSse42ForTest(uint32_t crc, absl::string_view data);
bool HasSse42ForTest();

}  // namespace crc32c

// The CRC-32C of `data`: Crc32c("123456789") == 0xE3069283.
inline uint32_t Crc32c(absl::string_view data) { return crc32c::Extend(0, data); }

}  // namespace hourglass

#endif  // HOURGLASS_STORE_CRC32C_H_
