#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/crc32c.h"
#include "store/file.h"
#include "store/log_format.h"
#include "store/log_reader.h"
#include "store/log_writer.h"

namespace hourglass {
namespace {

using ::testing::HasSubstr;

constexpr char kFileName[] = "wal/000007.log";

// A WritableFile into a string; Append fails from the `fail_at`-th call on (0: never).
class StringFile final : public WritableFile {
 public:
  absl::Status Append(absl::string_view data) override {
    if (fail_at > 0 && ++appends >= fail_at) return absl::InternalError("injected write error");
    contents.append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Sync() override { return absl::OkStatus(); }
  absl::Status Close() override { return absl::OkStatus(); }

  std::string contents;
  int fail_at = 0;
  int appends = 0;
};

// A SequentialFile over a string; reads at or beyond `error_at` fail.
class StringSource final : public SequentialFile {
 public:
  explicit StringSource(std::string contents) : contents_(std::move(contents)) {}

  absl::StatusOr<size_t> Read(size_t n, std::string* out) override {
    if (pos_ + n > error_at) return absl::InternalError(absl::StrCat("read error at ", pos_));
    out->assign(contents_, std::min(pos_, contents_.size()), n);
    pos_ += out->size();
    return out->size();
  }
  absl::Status Skip(uint64_t n) override {
    pos_ += n;
    return absl::OkStatus();
  }

  uint64_t error_at = UINT64_MAX;

 private:
  const std::string contents_;
  uint64_t pos_ = 0;
};

// Where each record of a written log starts and ends.
struct Layout {
  std::vector<uint64_t> starts;
  std::vector<uint64_t> ends;
};

// Where the reader reports a record that the writer began at `writer_offset`.
uint64_t RecordStart(uint64_t writer_offset) {
  const uint64_t left = kLogBlockSize - writer_offset % kLogBlockSize;
  return left < kLogHeaderSize ? writer_offset + left : writer_offset;
}

std::string WriteLog(const std::vector<std::string>& records, Layout* layout = nullptr) {
  StringFile file;
  LogWriter writer(file);
  for (const std::string& record : records) {
    const uint64_t before = writer.offset();
    EXPECT_TRUE(writer.AddRecord(record).ok());
    if (layout != nullptr) {
      layout->starts.push_back(RecordStart(before));
      layout->ends.push_back(writer.offset());
    }
  }
  EXPECT_EQ(writer.offset(), file.contents.size());
  return file.contents;
}

struct ReadBack {
  std::vector<std::string> records;
  std::vector<uint64_t> offsets;
  LogReadResult result;
};

ReadBack ReadLog(std::string contents, bool skip_corruption = false,
                 uint64_t error_at = UINT64_MAX) {
  StringSource source(std::move(contents));
  source.error_at = error_at;
  LogReader reader(source, kFileName, {.skip_corruption = skip_corruption});
  ReadBack back;
  std::string record;
  uint64_t offset = 0;
  while (reader.ReadRecord(&record, &offset)) {
    back.records.push_back(record);
    back.offsets.push_back(offset);
  }
  EXPECT_FALSE(reader.ReadRecord(&record, &offset));  // stays at the end
  back.result = reader.result();
  EXPECT_EQ(back.result.records, back.records.size());
  return back;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::vector<std::string> RandomRecords(std::mt19937_64& rng, size_t count, size_t min_size,
                                       size_t max_size) {
  std::vector<std::string> records;
  for (size_t i = 0; i < count; ++i) {
    records.push_back(RandomBytes(rng, min_size + rng() % (max_size - min_size + 1)));
  }
  return records;
}

std::vector<std::string> Prefix(const std::vector<std::string>& v, size_t n) {
  return std::vector<std::string>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n));
}

// Writes `records`, reads them back and checks records, offsets and a clean end.
void ExpectRoundTrip(const std::vector<std::string>& records) {
  Layout layout;
  const std::string log = WriteLog(records, &layout);
  const ReadBack back = ReadLog(log);
  ASSERT_EQ(back.records.size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(back.records[i], records[i]) << "record " << i;
    ASSERT_EQ(back.offsets[i], layout.starts[i]) << "record " << i;
  }
  EXPECT_EQ(back.result.end, LogReadResult::kClean) << back.result.message;
  EXPECT_EQ(back.result.valid_end_offset, log.size());
  EXPECT_EQ(back.result.message, "");
  EXPECT_TRUE(back.result.ToStatus().ok());
}

// The log a record's header starts: its type byte and length.
uint8_t TypeAt(const std::string& log, uint64_t header_offset) {
  return static_cast<uint8_t>(log[header_offset + 6]);
}
size_t LengthAt(const std::string& log, uint64_t header_offset) {
  return static_cast<uint8_t>(log[header_offset + 4]) |
         (static_cast<uint8_t>(log[header_offset + 5]) << 8);
}

// ---------------------------------------------------------------------------------------------
// Framing

// An empty file is a clean, empty log.
TEST(LogTest, EmptyLog) {
  const ReadBack back = ReadLog("");
  EXPECT_TRUE(back.records.empty());
  EXPECT_EQ(back.result.end, LogReadResult::kClean);
  EXPECT_EQ(back.result.valid_end_offset, 0u);
}

// Records of the sizes at the format's edges round-trip, alone and all in one log.
TEST(LogTest, RoundTripEdgeSizes) {
  const size_t kFill = kLogBlockSize - kLogHeaderSize;  // fills the first block exactly
  const std::vector<size_t> sizes = {0,
                                     1,
                                     100,
                                     kFill - 7,
                                     kFill - 1,
                                     kFill,
                                     kFill + 1,
                                     kFill + 7,
                                     kLogBlockSize - 1,
                                     kLogBlockSize,
                                     kLogBlockSize + 1,
                                     kLogBlockSize + 7,
                                     2 * kLogBlockSize,
                                     100 * 1024,
                                     3 * 1024 * 1024};
  std::mt19937_64 rng(1);
  std::vector<std::string> all;
  for (size_t size : sizes) {
    SCOPED_TRACE(absl::StrCat("size ", size));
    const std::string record = RandomBytes(rng, size);
    ExpectRoundTrip({record});
    ExpectRoundTrip({record, "after"});
    ExpectRoundTrip({"before", record});
    all.push_back(record);
  }
  ExpectRoundTrip(all);
}

// A record that exactly fills a block is one FULL fragment; the next starts the next block.
TEST(LogTest, ExactBlockFillIsOneFullFragment) {
  const std::string record(kLogBlockSize - kLogHeaderSize, 'x');
  const std::string log = WriteLog({record, "next"});
  ASSERT_EQ(log.size(), kLogBlockSize + kLogHeaderSize + 4);
  EXPECT_EQ(TypeAt(log, 0), static_cast<uint8_t>(LogRecordType::kFull));
  EXPECT_EQ(LengthAt(log, 0), kLogBlockSize - kLogHeaderSize);
  EXPECT_EQ(TypeAt(log, kLogBlockSize), static_cast<uint8_t>(LogRecordType::kFull));
}

// A 100 KiB record is FIRST, MIDDLE, MIDDLE, LAST, each fragment filling its block.
TEST(LogTest, LargeRecordIsFragmentedAtBlocks) {
  const std::string log = WriteLog({std::string(100 * 1024, 'r')});
  const uint8_t kExpected[] = {2, 3, 3, 4};
  for (size_t block = 0; block < 4; ++block) {
    EXPECT_EQ(TypeAt(log, block * kLogBlockSize), kExpected[block]) << block;
  }
  EXPECT_EQ(LengthAt(log, 0), kLogBlockSize - kLogHeaderSize);
  EXPECT_EQ(log.size(), 100 * 1024 + 4 * kLogHeaderSize);
}

// A random mix of 3000 records (mostly small, some of several blocks) round-trips.
TEST(LogTest, RoundTripRandomMix) {
  std::mt19937_64 rng(2);
  std::vector<std::string> records;
  for (int i = 0; i < 3000; ++i) {
    const uint64_t kind = rng() % 100;
    const size_t size = kind < 80   ? rng() % 300
                        : kind < 98 ? rng() % 5000
                                    : rng() % (3 * kLogBlockSize);
    records.push_back(RandomBytes(rng, size));
  }
  ExpectRoundTrip(records);
}

// A block tail of 1 to 6 bytes is zero-filled and the next record starts the next block; with
// exactly 7 bytes left the next record begins there with an empty FIRST fragment.
TEST(LogTest, ShortBlockTailIsZeroFilled) {
  for (size_t tail = 1; tail <= kLogHeaderSize; ++tail) {
    SCOPED_TRACE(absl::StrCat("tail ", tail));
    const std::string first(kLogBlockSize - kLogHeaderSize - tail, 'a');
    Layout layout;
    const std::string log = WriteLog({first, "second"}, &layout);
    if (tail < kLogHeaderSize) {
      EXPECT_EQ(log.substr(kLogBlockSize - tail, tail), std::string(tail, '\0'));
      EXPECT_EQ(layout.starts[1], kLogBlockSize);
      EXPECT_EQ(TypeAt(log, kLogBlockSize), static_cast<uint8_t>(LogRecordType::kFull));
    } else {
      EXPECT_EQ(layout.starts[1], kLogBlockSize - kLogHeaderSize);
      EXPECT_EQ(TypeAt(log, kLogBlockSize - kLogHeaderSize),
                static_cast<uint8_t>(LogRecordType::kFirst));
      EXPECT_EQ(LengthAt(log, kLogBlockSize - kLogHeaderSize), 0u);
      EXPECT_EQ(TypeAt(log, kLogBlockSize), static_cast<uint8_t>(LogRecordType::kLast));
    }
    ExpectRoundTrip({first, "second"});
    // A log that ends with the zero-filled tail (the writer padded, then crashed) is clean.
    const ReadBack back = ReadLog(WriteLog({first}) + std::string(tail % kLogHeaderSize, '\0'));
    EXPECT_EQ(back.result.end, LogReadResult::kClean);
    EXPECT_EQ(back.result.valid_end_offset,
              tail < kLogHeaderSize ? kLogBlockSize : kLogBlockSize - kLogHeaderSize);
  }
}

// A writer continuing a log at its length (also inside a block's short tail) keeps the framing.
TEST(LogTest, WriterResumesAtInitialOffset) {
  std::mt19937_64 rng(3);
  for (size_t first_size : {size_t{10}, kLogBlockSize - kLogHeaderSize - 3, kLogBlockSize + 50}) {
    SCOPED_TRACE(absl::StrCat("first record ", first_size));
    const std::vector<std::string> before = {RandomBytes(rng, first_size)};
    const std::vector<std::string> after = RandomRecords(rng, 20, 0, 5000);
    StringFile file;
    file.contents = WriteLog(before);
    LogWriter writer(file, file.contents.size());
    for (const std::string& record : after) ASSERT_TRUE(writer.AddRecord(record).ok());
    EXPECT_EQ(writer.offset(), file.contents.size());
    std::vector<std::string> all = before;
    all.insert(all.end(), after.begin(), after.end());
    const ReadBack back = ReadLog(file.contents);
    EXPECT_EQ(back.records, all);
    EXPECT_EQ(back.result.end, LogReadResult::kClean);
  }
}

// ---------------------------------------------------------------------------------------------
// Torn tails: truncation and bit flips at the end

// Checks the read-back of `log` cut to `cut` bytes: exactly the records that end by the cut,
// and a clean end at a record boundary (or after a block's zero-filled tail), a torn tail
// elsewhere, valid up to the last complete record (and the zero-filled tail after it, if the cut
// is beyond).
void ExpectCutRecovers(const std::string& log, const std::vector<std::string>& records,
                       const Layout& layout, uint64_t cut) {
  size_t complete = 0;
  while (complete < records.size() && layout.ends[complete] <= cut) ++complete;
  uint64_t last_end = complete == 0 ? 0 : layout.ends[complete - 1];
  // A block's zero-filled tail after the last complete record belongs to the valid log.
  const uint64_t padded_end = RecordStart(last_end);
  const bool at_padded_block_end = padded_end != last_end && cut == padded_end;
  if (cut >= padded_end) last_end = padded_end;
  const ReadBack back = ReadLog(log.substr(0, cut));
  ASSERT_EQ(back.records.size(), complete) << "cut at " << cut;
  for (size_t i = 0; i < complete; ++i) ASSERT_EQ(back.records[i], records[i]) << "cut " << cut;
  if (cut == last_end || at_padded_block_end) {
    ASSERT_EQ(back.result.end, LogReadResult::kClean) << "cut " << cut << back.result.message;
    ASSERT_EQ(back.result.valid_end_offset, cut);
  } else {
    ASSERT_EQ(back.result.end, LogReadResult::kTornTail) << "cut " << cut;
    ASSERT_EQ(back.result.valid_end_offset, last_end) << "cut " << cut;
    ASSERT_EQ(back.result.torn_bytes, cut - last_end) << "cut " << cut;
    ASSERT_THAT(back.result.message, HasSubstr(kFileName));
    ASSERT_TRUE(back.result.ToStatus().ok());
  }
}

// Truncating the log at every byte offset inside its last two records (one of them crossing a
// block boundary: FIRST + LAST) recovers exactly the records before the cut.
TEST(LogTest, TruncationAtEveryOffsetOfTheLastTwoRecords) {
  std::mt19937_64 rng(4);
  std::vector<std::string> records = RandomRecords(rng, 30, 900, 1000);
  // Fill block 0 up to 1500 bytes before its end, then a 3000-byte record crossing into
  // block 1, then a 500-byte record.
  size_t used = 0;
  for (const std::string& r : records) used += kLogHeaderSize + r.size();
  records.push_back(RandomBytes(rng, kLogBlockSize - 1500 - used - kLogHeaderSize));
  records.push_back(RandomBytes(rng, 3000));
  records.push_back(RandomBytes(rng, 500));
  Layout layout;
  const std::string log = WriteLog(records, &layout);
  const size_t n = records.size();
  ASSERT_EQ(layout.starts[n - 2], kLogBlockSize - 1500);
  for (uint64_t cut = layout.starts[n - 2]; cut <= log.size(); ++cut) {
    ExpectCutRecovers(log, records, layout, cut);
    if (HasFailure()) return;
  }
}

// The same with a zero-filled block tail between the last two records.
TEST(LogTest, TruncationAtEveryOffsetAcrossAZeroFilledTail) {
  std::mt19937_64 rng(5);
  std::vector<std::string> records = {RandomBytes(rng, kLogBlockSize - 800 - kLogHeaderSize),
                                      RandomBytes(rng, 800 - 3 - kLogHeaderSize),
                                      RandomBytes(rng, 300)};
  Layout layout;
  const std::string log = WriteLog(records, &layout);
  ASSERT_EQ(layout.ends[1], kLogBlockSize - 3);
  ASSERT_EQ(layout.starts[2], kLogBlockSize);
  for (uint64_t cut = layout.starts[1]; cut <= log.size(); ++cut) {
    ExpectCutRecovers(log, records, layout, cut);
    if (HasFailure()) return;
  }
}

// A 100 KiB last record (FIRST, MIDDLE, MIDDLE, LAST) cut near every fragment boundary and at
// every 61st byte elsewhere.
TEST(LogTest, TruncationInsideAMultiBlockRecord) {
  std::mt19937_64 rng(6);
  const std::vector<std::string> records = {RandomBytes(rng, 200), RandomBytes(rng, 100 * 1024)};
  Layout layout;
  const std::string log = WriteLog(records, &layout);
  for (uint64_t cut = layout.starts[1]; cut <= log.size(); ++cut) {
    const uint64_t in_block = cut % kLogBlockSize;
    if (in_block > 20 && in_block < kLogBlockSize - 20 && cut % 61 != 0 && log.size() - cut > 20 &&
        cut - layout.starts[1] > 20) {
      continue;
    }
    ExpectCutRecovers(log, records, layout, cut);
    if (HasFailure()) return;
  }
}

// A bit flip at any byte of the last record (header or data, in either of its fragments) drops
// that record as a torn tail.
TEST(LogTest, BitFlipInTheLastRecordIsATornTail) {
  std::mt19937_64 rng(7);
  // The last record is FULL in one case, FIRST + LAST across a block boundary in the other.
  for (size_t last_size : {size_t{700}, size_t{3000}}) {
    SCOPED_TRACE(absl::StrCat("last record ", last_size));
    std::vector<std::string> records = {RandomBytes(rng, kLogBlockSize - 1500),
                                        RandomBytes(rng, 100), RandomBytes(rng, last_size)};
    Layout layout;
    const std::string log = WriteLog(records, &layout);
    for (uint64_t i = layout.starts[2]; i < log.size(); ++i) {
      std::string damaged = log;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << (i % 8)));
      const ReadBack back = ReadLog(damaged);
      ASSERT_EQ(back.records, Prefix(records, 2)) << "flip at " << i;
      ASSERT_EQ(back.result.end, LogReadResult::kTornTail) << "flip at " << i;
      ASSERT_EQ(back.result.valid_end_offset, layout.ends[1]) << "flip at " << i;
      ASSERT_EQ(back.result.torn_bytes, log.size() - layout.ends[1]);
    }
  }
}

// Zero bytes after the last record: a block's short tail is clean, anything else is torn.
TEST(LogTest, ZeroesAfterTheLastRecord) {
  std::mt19937_64 rng(8);
  const std::string record = RandomBytes(rng, 1000);
  const std::string log = WriteLog({record});
  for (size_t zeroes : {size_t{3}, size_t{7}, size_t{100}, kLogBlockSize, 3 * kLogBlockSize}) {
    SCOPED_TRACE(absl::StrCat(zeroes, " zeroes"));
    const ReadBack back = ReadLog(log + std::string(zeroes, '\0'));
    EXPECT_EQ(back.records, std::vector<std::string>{record});
    EXPECT_EQ(back.result.end, LogReadResult::kTornTail);
    EXPECT_EQ(back.result.valid_end_offset, log.size());
    EXPECT_EQ(back.result.torn_bytes, zeroes);
    EXPECT_EQ(back.result.bad_offset, log.size());
  }
  // Garbage that is not zero, with no record start in it, is a torn tail too.
  const ReadBack garbage = ReadLog(log + RandomBytes(rng, 5000));
  EXPECT_EQ(garbage.result.end, LogReadResult::kTornTail);
  EXPECT_EQ(garbage.result.valid_end_offset, log.size());
}

// ---------------------------------------------------------------------------------------------
// Corruption in the middle

struct MidLog {
  std::vector<std::string> records;
  Layout layout;
  std::string log;
};

// 150 records of 600..1000 bytes (about five blocks), some crossing block boundaries.
MidLog MakeMidLog(uint64_t seed) {
  std::mt19937_64 rng(seed);
  MidLog m;
  m.records = RandomRecords(rng, 150, 600, 1000);
  m.log = WriteLog(m.records, &m.layout);
  return m;
}

// The records a skip_corruption reader returns when the block holding `bad_offset` is dropped,
// with the first record before it `first_bad`.
std::vector<std::string> RecordsAroundDroppedBlock(const MidLog& m, size_t first_bad,
                                                   uint64_t bad_offset) {
  const uint64_t resume = (bad_offset / kLogBlockSize + 1) * kLogBlockSize;
  std::vector<std::string> expected = Prefix(m.records, first_bad);
  for (size_t i = first_bad; i < m.records.size(); ++i) {
    if (m.layout.starts[i] >= resume) expected.push_back(m.records[i]);
  }
  return expected;
}

// A bit flip in a record in the middle (data, checksum, length or type) stops the reader with
// DATA_LOSS naming the file and the offset; with skip_corruption it resumes at the next block.
TEST(LogTest, MidLogCorruptionIsAnErrorOrSkipped) {
  const MidLog m = MakeMidLog(9);
  const size_t k = 60;  // in block 1
  ASSERT_EQ(m.layout.starts[k] / kLogBlockSize, 1u);
  ASSERT_EQ(m.layout.ends[k] / kLogBlockSize, 1u);
  for (uint64_t within : {uint64_t{0}, uint64_t{3}, uint64_t{4}, uint64_t{5}, uint64_t{6},
                          uint64_t{7}, uint64_t{300}}) {
    SCOPED_TRACE(absl::StrCat("flip at +", within));
    std::string damaged = m.log;
    const uint64_t at = m.layout.starts[k] + within;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x10);

    const ReadBack back = ReadLog(damaged);
    EXPECT_EQ(back.records, Prefix(m.records, k));
    EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
    EXPECT_EQ(back.result.valid_end_offset, m.layout.ends[k - 1]);
    EXPECT_EQ(back.result.bad_offset, m.layout.starts[k]);
    EXPECT_THAT(back.result.message, HasSubstr(kFileName));
    EXPECT_THAT(back.result.message, HasSubstr(absl::StrCat("offset ", m.layout.starts[k])));
    EXPECT_FALSE(back.result.ok());
    EXPECT_EQ(back.result.ToStatus().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(back.result.ToStatus().message(), back.result.message);

    const ReadBack skipped = ReadLog(damaged, /*skip_corruption=*/true);
    const std::vector<std::string> expected = RecordsAroundDroppedBlock(m, k, m.layout.starts[k]);
    EXPECT_EQ(skipped.records, expected);
    EXPECT_EQ(skipped.result.end, LogReadResult::kClean) << skipped.result.message;
    EXPECT_EQ(skipped.result.valid_end_offset, m.log.size());
    const size_t resumed = k + (m.records.size() - expected.size());  // index of the next one
    EXPECT_EQ(skipped.result.dropped_bytes, m.layout.starts[resumed] - m.layout.ends[k - 1]);
    EXPECT_THAT(skipped.result.message, HasSubstr(kFileName));
    EXPECT_THAT(skipped.result.message, HasSubstr(absl::StrCat("offset ", m.layout.starts[k])));
    EXPECT_TRUE(skipped.result.ToStatus().ok());
  }
}

// Damage in the first fragment of a record that crosses a block boundary, with records after
// it: corrupt; skipping drops its orphaned LAST fragment too.
TEST(LogTest, CorruptFirstFragmentOfACrossingRecord) {
  const MidLog m = MakeMidLog(10);
  size_t k = 0;
  while (k == 0 || m.layout.starts[k] / kLogBlockSize == (m.layout.ends[k] - 1) / kLogBlockSize) {
    ++k;
  }
  ASSERT_LT(k + 5, m.records.size());
  std::string damaged = m.log;
  damaged[m.layout.starts[k] + 10] ^= 1;
  const ReadBack back = ReadLog(damaged);
  EXPECT_EQ(back.records, Prefix(m.records, k));
  EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
  const ReadBack skipped = ReadLog(damaged, /*skip_corruption=*/true);
  EXPECT_EQ(skipped.records, RecordsAroundDroppedBlock(m, k, m.layout.starts[k]));
  EXPECT_EQ(skipped.result.dropped_bytes, m.layout.starts[k + 1] - m.layout.ends[k - 1]);
}

// Two damaged regions are both skipped and counted; the message counts them.
TEST(LogTest, SkipsSeveralCorruptRegions) {
  const MidLog m = MakeMidLog(11);
  std::string damaged = m.log;
  damaged[m.layout.starts[5] + 20] ^= 1;    // block 0
  damaged[m.layout.starts[100] + 20] ^= 1;  // block 3
  const ReadBack skipped = ReadLog(damaged, /*skip_corruption=*/true);
  EXPECT_EQ(skipped.result.end, LogReadResult::kClean);
  EXPECT_GT(skipped.result.dropped_bytes, 2 * kLogBlockSize / 4);
  EXPECT_THAT(skipped.result.message, HasSubstr("and 1 more regions"));
  EXPECT_EQ(skipped.records.back(), m.records.back());
}

// Corruption followed by valid records in the same block only is found too.
TEST(LogTest, CorruptLengthWithRecordsAfterItInTheSameBlock) {
  std::mt19937_64 rng(12);
  const std::vector<std::string> records = RandomRecords(rng, 10, 100, 200);
  Layout layout;
  const std::string log = WriteLog(records, &layout);
  ASSERT_LT(log.size(), kLogBlockSize);
  std::string damaged = log;
  damaged[layout.starts[3] + 5] ^= 0x40;  // record 3's length now runs past the file's end
  const ReadBack back = ReadLog(damaged);
  EXPECT_EQ(back.records, Prefix(records, 3));
  EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
  EXPECT_THAT(back.result.message,
              HasSubstr(absl::StrCat("record starts after it at offset ", layout.starts[4])));
  // Skipping drops the rest of the block, which is the rest of the file: a torn tail.
  const ReadBack skipped = ReadLog(damaged, /*skip_corruption=*/true);
  EXPECT_EQ(skipped.records, Prefix(records, 3));
  EXPECT_EQ(skipped.result.end, LogReadResult::kTornTail);
  EXPECT_EQ(skipped.result.valid_end_offset, layout.ends[2]);
}

// Zero bytes in the middle (a whole block), then valid records: corrupt; skipped, the records
// after it come back.
TEST(LogTest, ZeroBlockInTheMiddle) {
  const MidLog m = MakeMidLog(13);
  std::string damaged = m.log;
  for (size_t i = kLogBlockSize; i < 2 * kLogBlockSize; ++i) damaged[i] = '\0';
  const ReadBack back = ReadLog(damaged);
  EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
  EXPECT_THAT(back.result.message, HasSubstr("zero bytes"));
  const ReadBack skipped = ReadLog(damaged, /*skip_corruption=*/true);
  EXPECT_EQ(skipped.result.end, LogReadResult::kClean);
  EXPECT_EQ(skipped.records.back(), m.records.back());
}

// Non-zero bytes in a block's short tail, followed by records: corrupt.
TEST(LogTest, NonZeroBlockTail) {
  const std::vector<std::string> records = {std::string(kLogBlockSize - kLogHeaderSize - 3, 'a'),
                                            "b", "c"};
  std::string log = WriteLog(records);
  log[kLogBlockSize - 2] = 'x';
  const ReadBack back = ReadLog(log);
  EXPECT_EQ(back.records.size(), 1u);
  EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
  EXPECT_THAT(back.result.message, HasSubstr("tail of a block"));
}

// A record whose LAST fragment never came, followed by new records (a writer that appended
// after a torn record without truncating it): corrupt at the broken record's offset; skipping
// returns the later records.
TEST(LogTest, InterruptedRecord) {
  std::mt19937_64 rng(14);
  const std::string big = RandomBytes(rng, 2 * kLogBlockSize);
  StringFile file;
  file.contents = WriteLog({"a", big}).substr(0, kLogBlockSize);  // "a" and big's FIRST
  LogWriter writer(file, kLogBlockSize);
  ASSERT_TRUE(writer.AddRecord("later 1").ok());
  ASSERT_TRUE(writer.AddRecord("later 2").ok());
  const ReadBack back = ReadLog(file.contents);
  EXPECT_EQ(back.records, std::vector<std::string>{"a"});
  EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
  EXPECT_EQ(back.result.bad_offset, kLogHeaderSize + 1);
  EXPECT_THAT(back.result.message, HasSubstr(absl::StrCat("at offset ", kLogHeaderSize + 1)));
  EXPECT_THAT(back.result.message, HasSubstr(kFileName));
  const ReadBack skipped = ReadLog(file.contents, /*skip_corruption=*/true);
  EXPECT_EQ(skipped.records, (std::vector<std::string>{"a", "later 1", "later 2"}));
  EXPECT_EQ(skipped.result.dropped_bytes, kLogBlockSize - (kLogHeaderSize + 1));
}

// A LAST fragment without its FIRST (the log's first block lost) before valid records: corrupt.
TEST(LogTest, OrphanFragment) {
  std::mt19937_64 rng(15);
  const std::string log = WriteLog({RandomBytes(rng, kLogBlockSize + 100), "x", "y"});
  const std::string without_first_block = log.substr(kLogBlockSize);
  const ReadBack back = ReadLog(without_first_block);
  EXPECT_TRUE(back.records.empty());
  EXPECT_EQ(back.result.end, LogReadResult::kCorrupt);
  EXPECT_THAT(back.result.message, HasSubstr("LAST fragment without"));
  const ReadBack skipped = ReadLog(without_first_block, /*skip_corruption=*/true);
  EXPECT_EQ(skipped.records, (std::vector<std::string>{"x", "y"}));
}

// A fragment with a valid checksum but an unknown type is bad.
TEST(LogTest, UnknownFragmentType) {
  std::string fragment("\0\0\0\0\3\0\x09xyz", kLogHeaderSize + 3);  // length 3, type 9
  const uint32_t crc = crc32c::Mask(Crc32c(absl::string_view(fragment).substr(6)));
  for (int i = 0; i < 4; ++i) fragment[i] = static_cast<char>(crc >> (8 * i));
  const std::string log = WriteLog({"a"});
  const ReadBack at_end = ReadLog(log + fragment);
  EXPECT_EQ(at_end.result.end, LogReadResult::kTornTail);
  EXPECT_THAT(at_end.result.message, HasSubstr("unknown fragment type 9"));
  const ReadBack in_middle = ReadLog(log + fragment + WriteLog({"b"}));
  EXPECT_EQ(in_middle.result.end, LogReadResult::kCorrupt);
}

// A read error ends the log with that error, after the records read before it.
TEST(LogTest, ReadError) {
  const MidLog m = MakeMidLog(16);
  const ReadBack back = ReadLog(m.log, false, /*error_at=*/2 * kLogBlockSize + 1);
  EXPECT_EQ(back.result.end, LogReadResult::kReadError);
  EXPECT_EQ(back.result.ToStatus().code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(back.records.empty());
  for (size_t i = 0; i < back.records.size(); ++i) EXPECT_EQ(back.records[i], m.records[i]);
  EXPECT_LE(m.layout.ends[back.records.size() - 1], 2 * kLogBlockSize);
}

// ---------------------------------------------------------------------------------------------
// The writer's errors, and crashes on the FakeFileSystem

// A failed Append fails AddRecord; the writer then refuses every record, its offset stays at
// the end of the last complete record.
TEST(LogTest, WriterErrorIsSticky) {
  StringFile file;
  file.fail_at = 4;  // header and data of the first record, the second's header, then its data
  LogWriter writer(file);
  ASSERT_TRUE(writer.AddRecord("one").ok());
  const uint64_t offset = writer.offset();
  EXPECT_EQ(writer.AddRecord("two").code(), absl::StatusCode::kInternal);
  file.fail_at = 0;
  EXPECT_EQ(writer.AddRecord("three").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(writer.offset(), offset);
}

// A full disk: AddRecord fails with RESOURCE_EXHAUSTED; truncating to the writer's offset and
// continuing with a new writer leaves a clean log of every record that was added.
TEST(LogTest, DiskFullThenTruncateAndContinue) {
  FakeFileSystem fs;
  ASSERT_TRUE(fs.CreateDir("/wal").ok());
  auto file = *fs.NewAppendableFile("/wal/1.log");
  LogWriter writer(*file);
  std::vector<std::string> added;
  fs.SetDiskFullAfter(50'000);
  std::mt19937_64 rng(17);
  absl::Status s;
  while (s.ok()) {
    std::string record = RandomBytes(rng, 1000);
    s = writer.AddRecord(record);
    if (s.ok()) added.push_back(std::move(record));
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("/wal/1.log"));
  fs.ClearFaults();
  ASSERT_TRUE(fs.Truncate("/wal/1.log", writer.offset()).ok());
  file = *fs.NewAppendableFile("/wal/1.log");
  LogWriter resumed(*file, writer.offset());
  ASSERT_TRUE(resumed.AddRecord("after").ok());
  ASSERT_TRUE(file->Sync().ok());
  added.push_back("after");
  const ReadBack back = ReadLog(*fs.ReadFileToString("/wal/1.log"));
  EXPECT_EQ(back.records, added);
  EXPECT_EQ(back.result.end, LogReadResult::kClean);
}

// Group commits with one Sync per batch, then a crash during an unsynced batch, for 300 torn
// crashes: recovery always returns every synced record and a prefix of the unsynced batch,
// ends clean or torn (never corrupt), and after truncation the log continues cleanly.
TEST(LogTest, CrashDuringGroupCommitRecoversSyncedRecords) {
  for (uint64_t seed = 0; seed < 300; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937_64 rng(seed);
    FakeFileSystem fs;
    ASSERT_TRUE(fs.CreateDir("/wal").ok());
    auto file = *fs.NewAppendableFile("/wal/1.log");
    ASSERT_TRUE(fs.SyncDir("/wal").ok());
    LogWriter writer(*file);
    std::vector<std::string> written;
    size_t synced = 0;
    const int batches = 1 + static_cast<int>(rng() % 6);
    for (int batch = 0; batch < batches; ++batch) {
      const size_t count = 1 + rng() % 20;
      const size_t max_size = rng() % 4 == 0 ? 40000 : 400;
      const std::vector<std::string> records = RandomRecords(rng, count, 0, max_size);
      for (const std::string& r : records) ASSERT_TRUE(writer.AddRecord(r).ok());
      written.insert(written.end(), records.begin(), records.end());
      if (batch + 1 < batches) {
        ASSERT_TRUE(file->Sync().ok());
        synced = written.size();
      } else {
        ASSERT_TRUE(file->Flush().ok());
      }
    }
    fs.SimulateCrash(seed % 2 == 0 ? FakeFileSystem::CrashMode::TornWrite(seed)
                                   : FakeFileSystem::CrashMode::TornWriteWithZeroes(seed));

    auto source = *fs.NewSequentialFile("/wal/1.log");
    LogReader reader(*source, "/wal/1.log");
    std::vector<std::string> recovered;
    std::string record;
    uint64_t offset;
    while (reader.ReadRecord(&record, &offset)) recovered.push_back(record);
    const LogReadResult& result = reader.result();
    ASSERT_TRUE(result.ok()) << result.message;
    ASSERT_GE(recovered.size(), synced);
    ASSERT_LE(recovered.size(), written.size());
    ASSERT_EQ(recovered, Prefix(written, recovered.size()));

    ASSERT_TRUE(fs.Truncate("/wal/1.log", result.valid_end_offset).ok());
    file = *fs.NewAppendableFile("/wal/1.log");
    LogWriter resumed(*file, result.valid_end_offset);
    ASSERT_TRUE(resumed.AddRecord("after recovery").ok());
    ASSERT_TRUE(file->Sync().ok());
    recovered.push_back("after recovery");
    const ReadBack back = ReadLog(*fs.ReadFileToString("/wal/1.log"));
    ASSERT_EQ(back.records, recovered);
    ASSERT_EQ(back.result.end, LogReadResult::kClean);
  }
}

}  // namespace
}  // namespace hourglass
