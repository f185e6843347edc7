#include "store/crc32c.h"

#include <cstdint>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace hourglass {
namespace {

// The standard check value: CRC-32C("123456789").
TEST(Crc32cTest, CheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c::ExtendPortableForTest(0, "123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c::ExtendSse42ForTest(0, "123456789"), 0xE3069283u);
}

// The empty string has CRC 0, and extending by nothing changes nothing.
TEST(Crc32cTest, Empty) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(crc32c::Extend(0x12345678u, ""), 0x12345678u);
}

// The iSCSI test vectors of RFC 3720, section B.4.
TEST(Crc32cTest, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending(32, '\0');
  std::string descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<char>(i);
    descending[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
  // An iSCSI SCSI Read (10) command PDU.
  const unsigned char read_pdu[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  };
  EXPECT_EQ(Crc32c(absl::string_view(reinterpret_cast<const char*>(read_pdu), 48)), 0xD9963A56u);
}

// Extend(Crc32c(a), b) is the CRC of a + b, at every split point.
TEST(Crc32cTest, ExtendConcatenates) {
  const std::string data = "hello world, a string long enough to reach the 8-byte loops";
  for (size_t split = 0; split <= data.size(); ++split) {
    const absl::string_view view(data);
    EXPECT_EQ(crc32c::Extend(Crc32c(view.substr(0, split)), view.substr(split)), Crc32c(data))
        << "split at " << split;
  }
}

// The table and the SSE4.2 paths agree on random data of every length 0..300, from every
// alignment 0..7, and when extending a non-zero CRC.
TEST(Crc32cTest, PortableAndSse42Agree) {
  if (!crc32c::HasSse42ForTest()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937_64 rng(42);
  std::string buffer(320, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  for (size_t start = 0; start < 8; ++start) {
    for (size_t length = 0; length <= 300; ++length) {
      const absl::string_view data(buffer.data() + start, length);
      const uint32_t initial = static_cast<uint32_t>(rng());
      ASSERT_EQ(crc32c::ExtendPortableForTest(0, data), crc32c::ExtendSse42ForTest(0, data))
          << "start " << start << " length " << length;
      ASSERT_EQ(crc32c::ExtendPortableForTest(initial, data),
                crc32c::ExtendSse42ForTest(initial, data))
          << "start " << start << " length " << length;
      ASSERT_EQ(crc32c::Extend(0, data), crc32c::ExtendPortableForTest(0, data));
    }
  }
}

// The portable path alone agrees with a bit-at-a-time reference (it is the one used without
// SSE4.2, so it is checked even where the comparison above is skipped).
TEST(Crc32cTest, PortableMatchesBitwiseReference) {
  auto reference = [](absl::string_view data) {
    uint32_t crc = 0xffffffffu;
    for (const char c : data) {
      crc ^= static_cast<uint8_t>(c);
      for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
  };
  std::mt19937_64 rng(7);
  std::string buffer(300, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  for (size_t start = 0; start < 8; ++start) {
    for (size_t length = 0; length + start <= buffer.size(); length += 13) {
      const absl::string_view data(buffer.data() + start, length);
      ASSERT_EQ(crc32c::ExtendPortableForTest(0, data), reference(data)) << length;
    }
  }
}

// Mask changes the value, Unmask undoes it, and the mask of a CRC is not the CRC of the mask.
TEST(Crc32cTest, MaskRoundTrips) {
  const uint32_t crc = Crc32c("foo");
  EXPECT_NE(crc32c::Mask(crc), crc);
  EXPECT_NE(crc32c::Mask(crc32c::Mask(crc)), crc);
  EXPECT_EQ(crc32c::Unmask(crc32c::Mask(crc)), crc);
  EXPECT_EQ(crc32c::Unmask(crc32c::Unmask(crc32c::Mask(crc32c::Mask(crc)))), crc);
  for (uint32_t value : {0u, 1u, 0x80000000u, 0xffffffffu, 0xE3069283u}) {
    EXPECT_EQ(crc32c::Unmask(crc32c::Mask(value)), value);
  }
}

}  // namespace
}  // namespace hourglass
