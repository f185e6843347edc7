#include "store/log_reader.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/crc32c.h"

namespace hourglass {
namespace {

uint32_t LoadLittleEndian32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) | (static_cast<uint32_t>(u[3]) << 24);
}

uint16_t LoadLittleEndian16(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return static_cast<uint16_t>(u[0] | (u[1] << 8));
}

absl::string_view TypeName(uint8_t type) {
  switch (static_cast<LogRecordType>(type)) {
    case LogRecordType::kFull:
      return "FULL";
    case LogRecordType::kFirst:
      return "FIRST";
    case LogRecordType::kMiddle:
      return "MIDDLE";
    case LogRecordType::kLast:
      return "LAST";
    default:
      return "unknown";
  }
}

// Whether the checksum of the fragment whose header is at `header` (with `length` data bytes
// after it, all in memory) matches.
bool ChecksumMatches(const char* header, size_t length) {
  const uint32_t expected = crc32c::Unmask(LoadLittleEndian32(header));
  // The type byte and the data are contiguous: one pass covers both.
  return Crc32c(absl::string_view(header + 6, 1 + length)) == expected;
}

// Whether block[pos..] holds a valid kFull or kFirst fragment that fits in the block.
bool IsRecordStart(absl::string_view block, size_t pos) {
  if (pos + kLogHeaderSize > block.size()) return false;
  const char* header = block.data() + pos;
  const uint8_t type = static_cast<uint8_t>(header[6]);
  if (type != static_cast<uint8_t>(LogRecordType::kFull) &&
      type != static_cast<uint8_t>(LogRecordType::kFirst)) {
    return false;
  }
  const size_t length = LoadLittleEndian16(header + 4);
  if (length > block.size() - pos - kLogHeaderSize) return false;
  return ChecksumMatches(header, length);
}

}  // namespace

absl::Status LogReadResult::ToStatus() const {
  switch (end) {
    case kCorrupt:
      return absl::DataLossError(message);
    case kReadError:
      return read_error;
    default:
      return absl::OkStatus();
  }
}

LogReader::LogReader(SequentialFile& file, std::string file_name, Options options)
    : file_(file), file_name_(std::move(file_name)), options_(options) {}

bool LogReader::ReadRecord(std::string* record, uint64_t* record_offset) {
  while (!done_) {
    Fragment fragment;
    Problem problem;
    switch (ReadFragment(&fragment, &problem)) {
      case Next::kReadError:
        return false;

      case Next::kEndOfFile:
        if (in_record_) {
          problem = {record_start_,
                     absl::StrCat("the file ends inside the record that starts there, after ",
                                  scratch_.size(), " bytes of it")};
          if (!options_.skip_corruption) {
            EndAtProblem(problem, block_.size(), /*record_start_follows=*/false);
            return false;
          }
          SkipProblem(problem);
          in_record_ = false;
        }
        EndAtEndOfFile();
        return false;

      case Next::kBad:
        if (in_record_) {
          absl::StrAppend(&problem.reason, " (in the record that starts at offset ", record_start_,
                          ")");
        }
        if (!options_.skip_corruption) {
          EndAtProblem(problem, static_cast<size_t>(problem.offset - block_start_) + 1,
                       /*record_start_follows=*/false);
          return false;
        }
        SkipProblem(problem);
        in_record_ = false;
        scratch_.clear();
        pos_ = block_.size();  // resynchronise at the next block
        break;

      case Next::kFragment: {
        const uint64_t fragment_end = fragment.offset + kLogHeaderSize + fragment.data.size();
        const bool starts_record =
            fragment.type == LogRecordType::kFull || fragment.type == LogRecordType::kFirst;
        if (starts_record && in_record_) {
          problem = {record_start_,
                     absl::StrCat("the record that starts there has no LAST fragment: a ",
                                  TypeName(static_cast<uint8_t>(fragment.type)),
                                  " fragment at offset ", fragment.offset, " interrupts it")};
          if (!options_.skip_corruption) {
            EndAtProblem(problem, 0, /*record_start_follows=*/true);
            result_.message = absl::StrCat("corrupt log ", file_name_, " at offset ",
                                           problem.offset, ": ", problem.reason);
            return false;
          }
          SkipProblem(problem);
          in_record_ = false;
        }
        if (!starts_record && !in_record_) {
          if (skipping_.has_value()) break;  // the rest of a record whose start was skipped
          problem = {fragment.offset,
                     absl::StrCat("a ", TypeName(static_cast<uint8_t>(fragment.type)),
                                  " fragment without the FIRST fragment of its record")};
          if (!options_.skip_corruption) {
            EndAtProblem(problem, pos_, /*record_start_follows=*/false);
            return false;
          }
          SkipProblem(problem);
          break;
        }
        switch (fragment.type) {
          case LogRecordType::kFull:
            ConcludeSkip(fragment.offset);
            record->assign(fragment.data.data(), fragment.data.size());
            *record_offset = fragment.offset;
            last_record_end_ = fragment_end;
            ++result_.records;
            return true;
          case LogRecordType::kFirst:
            in_record_ = true;
            record_start_ = fragment.offset;
            scratch_.assign(fragment.data.data(), fragment.data.size());
            break;
          case LogRecordType::kMiddle:
            scratch_.append(fragment.data.data(), fragment.data.size());
            break;
          case LogRecordType::kLast:
            ConcludeSkip(record_start_);
            scratch_.append(fragment.data.data(), fragment.data.size());
            record->swap(scratch_);
            scratch_.clear();
            *record_offset = record_start_;
            in_record_ = false;
            last_record_end_ = fragment_end;
            ++result_.records;
            return true;
          case LogRecordType::kZero:
            break;  // ReadFragment never returns one
        }
        break;
      }
    }
  }
  return false;
}

LogReader::Next LogReader::ReadFragment(Fragment* fragment, Problem* problem) {
  while (true) {
    if (pos_ >= block_.size()) {
      if (at_eof_) return Next::kEndOfFile;
      if (absl::Status s = ReadBlock(); !s.ok()) {
        EndWithReadError(std::move(s));
        return Next::kReadError;
      }
      continue;
    }
    const size_t left = block_.size() - pos_;
    const uint64_t offset = block_start_ + pos_;
    if (left < kLogHeaderSize) {
      if (block_.size() == kLogBlockSize) {
        // A block's tail, too short for a header: the writer zero-fills it.
        if (std::all_of(block_.begin() + pos_, block_.end(), [](char c) { return c == 0; })) {
          pos_ = block_.size();
          if (!in_record_ && !skipping_.has_value()) last_record_end_ = block_start_ + pos_;
          continue;
        }
        *problem = {offset, absl::StrCat("non-zero bytes in the ", left,
                                         "-byte tail of a block, which should be zero-filled")};
        return Next::kBad;
      }
      *problem = {offset, absl::StrCat("the file ends ", left, " bytes into a fragment header")};
      return Next::kBad;
    }
    const char* header = block_.data() + pos_;
    const uint32_t stored_crc = LoadLittleEndian32(header);
    const size_t length = LoadLittleEndian16(header + 4);
    const uint8_t type = static_cast<uint8_t>(header[6]);
    if (stored_crc == 0 && length == 0 && type == 0) {
      *problem = {offset, "zero bytes where a fragment header should be"};
      return Next::kBad;
    }
    if (length > left - kLogHeaderSize) {
      if (pos_ + kLogHeaderSize + length > kLogBlockSize) {
        *problem = {offset, absl::StrCat("a fragment length of ", length,
                                         " bytes runs past the end of its block")};
      } else {
        *problem = {offset, absl::StrCat("a ", TypeName(type), " fragment of ", length,
                                         " bytes is cut off by the end of the file after ",
                                         left - kLogHeaderSize)};
      }
      return Next::kBad;
    }
    if (type == 0 || type > kLogMaxRecordType) {
      *problem = {offset, absl::StrCat("unknown fragment type ", type)};
      return Next::kBad;
    }
    if (!ChecksumMatches(header, length)) {
      *problem = {offset, absl::StrCat("checksum mismatch in a ", TypeName(type), " fragment of ",
                                       length, " bytes")};
      return Next::kBad;
    }
    *fragment = {static_cast<LogRecordType>(type),
                 absl::string_view(header + kLogHeaderSize, length), offset};
    pos_ += kLogHeaderSize + length;
    return Next::kFragment;
  }
}

absl::Status LogReader::ReadBlock() {
  block_start_ += block_.size();
  pos_ = 0;
  absl::StatusOr<size_t> n = file_.Read(kLogBlockSize, &block_);
  if (!n.ok()) {
    block_.clear();
    return n.status();
  }
  if (*n < kLogBlockSize) at_eof_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint64_t>> LogReader::FindRecordStart(size_t from) {
  while (true) {
    for (size_t p = from; p + kLogHeaderSize <= block_.size(); ++p) {
      if (IsRecordStart(block_, p)) return block_start_ + p;
    }
    if (at_eof_) return std::nullopt;
    if (absl::Status s = ReadBlock(); !s.ok()) return s;
    from = 0;
  }
}

void LogReader::EndAtProblem(const Problem& problem, size_t scan_from, bool record_start_follows) {
  done_ = true;
  result_.valid_end_offset = last_record_end_;
  result_.bad_offset = problem.offset;
  if (record_start_follows) {
    result_.end = LogReadResult::kCorrupt;
    return;  // the caller writes the message
  }
  absl::StatusOr<std::optional<uint64_t>> next_start = FindRecordStart(scan_from);
  if (!next_start.ok()) {
    EndWithReadError(next_start.status());
    return;
  }
  if (next_start->has_value()) {
    result_.end = LogReadResult::kCorrupt;
    result_.message =
        absl::StrCat("corrupt log ", file_name_, " at offset ", problem.offset, ": ",
                     problem.reason, "; a valid record starts after it at offset ", **next_start,
                     ", so this is not a torn tail: the records after offset ", last_record_end_,
                     " were not read");
    return;
  }
  // FindRecordStart() read to the end of the file.
  const uint64_t file_size = block_start_ + block_.size();
  result_.end = LogReadResult::kTornTail;
  result_.torn_bytes = file_size - last_record_end_;
  result_.message =
      absl::StrCat("torn tail in ", file_name_, " at offset ", problem.offset, ": ", problem.reason,
                   "; the ", result_.torn_bytes, " bytes from offset ", last_record_end_,
                   " to the end of the file hold no complete record");
}

void LogReader::SkipProblem(const Problem& problem) {
  if (!skipping_.has_value()) skipping_ = problem;
}

void LogReader::ConcludeSkip(uint64_t record_offset) {
  if (!skipping_.has_value()) return;
  const uint64_t skipped = record_offset - last_record_end_;
  result_.dropped_bytes += skipped;
  if (skipped_regions_++ == 0) {
    first_skip_ = absl::StrCat("skipped ", skipped, " bytes of corrupt log in ", file_name_,
                               " from offset ", last_record_end_, " (at offset ", skipping_->offset,
                               ": ", skipping_->reason, ")");
  }
  result_.message = first_skip_;
  if (skipped_regions_ > 1) {
    absl::StrAppend(&result_.message, " and ", skipped_regions_ - 1, " more regions, ",
                    result_.dropped_bytes, " bytes in all");
  }
  skipping_.reset();
}

void LogReader::EndAtEndOfFile() {
  done_ = true;
  const uint64_t file_size = block_start_ + block_.size();
  result_.valid_end_offset = last_record_end_;
  if (!skipping_.has_value() && last_record_end_ == file_size) {
    result_.end = LogReadResult::kClean;
    return;
  }
  result_.end = LogReadResult::kTornTail;
  result_.torn_bytes = file_size - last_record_end_;
  result_.bad_offset = skipping_.has_value() ? skipping_->offset : last_record_end_;
  const std::string reason =
      skipping_.has_value() ? skipping_->reason : std::string("bytes after the last record");
  if (!result_.message.empty()) result_.message += "; ";
  absl::StrAppend(&result_.message, "torn tail in ", file_name_, " at offset ", result_.bad_offset,
                  ": ", reason, "; the ", result_.torn_bytes, " bytes from offset ",
                  last_record_end_, " to the end of the file hold no complete record");
}

void LogReader::EndWithReadError(absl::Status status) {
  done_ = true;
  result_.end = LogReadResult::kReadError;
  result_.valid_end_offset = last_record_end_;
  result_.message = std::string(status.message());
  result_.read_error = std::move(status);
}

}  // namespace hourglass
