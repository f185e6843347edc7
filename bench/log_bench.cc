// Micro-benchmarks of the write-ahead log's lower layers: CRC-32C throughput (the dispatching,
// table and SSE4.2 versions), LogWriter::AddRecord of 150-byte records (framing only, and into a
// real file without syncing), group commits (a batch of records, then one Sync()) on a real file
// in $TMPDIR, and LogReader replay of 150-byte records from memory.
//
//   log_bench                                   # all
//   log_bench --benchmark_filter=GroupCommit    # the fdatasync-bound ones only
//
// The real-file benchmarks measure the file system under $TMPDIR (or /tmp): a tmpfs makes
// fdatasync free.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "store/crc32c.h"
#include "store/file.h"
#include "store/log_reader.h"
#include "store/log_writer.h"

namespace hourglass {
namespace {

constexpr size_t kRecordSize = 150;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

void BM_Crc32c(benchmark::State& state, uint32_t (*extend)(uint32_t, absl::string_view)) {
  const std::string data = RandomBytes(static_cast<size_t>(state.range(0)), 1);
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = extend(crc, data);
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * data.size()));
}
BENCHMARK_CAPTURE(BM_Crc32c, dispatch, &crc32c::Extend)->Arg(150)->Arg(4096)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_Crc32c, portable, &crc32c::ExtendPortableForTest)
    ->Arg(150)
    ->Arg(4096)
    ->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_Crc32c, sse42, &crc32c::ExtendSse42ForTest)->Arg(150)->Arg(4096)->Arg(1 << 20);

// A WritableFile that drops everything: the cost of framing and checksumming alone.
class NullFile final : public WritableFile {
 public:
  absl::Status Append(absl::string_view data) override {
    benchmark::DoNotOptimize(data.data());
    return absl::OkStatus();
  }
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Sync() override { return absl::OkStatus(); }
  absl::Status Close() override { return absl::OkStatus(); }
};

void BM_AddRecordFramingOnly(benchmark::State& state) {
  const std::string record = RandomBytes(kRecordSize, 2);
  NullFile file;
  LogWriter writer(file);
  for (auto _ : state) {
    if (!writer.AddRecord(record).ok()) state.SkipWithError("AddRecord failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRecordSize));
}
BENCHMARK(BM_AddRecordFramingOnly);

// A fresh temporary directory, removed at the end of the benchmark.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "hourglass_bench_XXXXXX");
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// AddRecord into a real file (buffered; the file is replaced every 2^16 records, untimed).
void BM_AddRecordPosixNoSync(benchmark::State& state) {
  TempDir dir;
  const std::string path = dir.path() + "/wal.log";
  const std::string record = RandomBytes(kRecordSize, 3);
  FileSystem& fs = PosixFileSystem::Get();
  std::unique_ptr<WritableFile> file = *fs.NewWritableFile(path);
  auto writer = std::make_unique<LogWriter>(*file);
  int64_t n = 0;
  for (auto _ : state) {
    if (!writer->AddRecord(record).ok()) state.SkipWithError("AddRecord failed");
    if (++n % (1 << 16) == 0) {
      state.PauseTiming();
      file = *fs.NewWritableFile(path);
      writer = std::make_unique<LogWriter>(*file);
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRecordSize));
}
BENCHMARK(BM_AddRecordPosixNoSync);

// One group commit per iteration: range(0) records of 150 bytes, then one Sync() (fdatasync).
void BM_GroupCommit(benchmark::State& state) {
  TempDir dir;
  const std::string path = dir.path() + "/wal.log";
  const std::string record = RandomBytes(kRecordSize, 4);
  FileSystem& fs = PosixFileSystem::Get();
  std::unique_ptr<WritableFile> file = *fs.NewWritableFile(path);
  LogWriter writer(*file);
  const int64_t batch = state.range(0);
  for (auto _ : state) {
    for (int64_t i = 0; i < batch; ++i) {
      if (!writer.AddRecord(record).ok()) state.SkipWithError("AddRecord failed");
    }
    if (!file->Sync().ok()) state.SkipWithError("Sync failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
  state.counters["syncs_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_GroupCommit)->Arg(1)->Arg(16)->Arg(128)->Arg(1024)->UseRealTime();

// Replay: ReadRecord over a log of 2^16 records of 150 bytes, from memory.
class StringSource final : public SequentialFile {
 public:
  explicit StringSource(const std::string& contents) : contents_(contents) {}
  absl::StatusOr<size_t> Read(size_t n, std::string* out) override {
    out->assign(contents_, std::min(pos_, contents_.size()), n);
    pos_ += out->size();
    return out->size();
  }
  absl::Status Skip(uint64_t n) override {
    pos_ += n;
    return absl::OkStatus();
  }

 private:
  const std::string& contents_;
  size_t pos_ = 0;
};

class StringFile final : public WritableFile {
 public:
  absl::Status Append(absl::string_view data) override {
    contents.append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Sync() override { return absl::OkStatus(); }
  absl::Status Close() override { return absl::OkStatus(); }
  std::string contents;
};

void BM_ReadRecords(benchmark::State& state) {
  constexpr int kRecords = 1 << 16;
  StringFile file;
  LogWriter writer(file);
  for (int i = 0; i < kRecords; ++i) {
    if (!writer.AddRecord(RandomBytes(kRecordSize, static_cast<uint64_t>(i))).ok()) std::abort();
  }
  for (auto _ : state) {
    StringSource source(file.contents);
    LogReader reader(source, "bench");
    std::string record;
    uint64_t offset;
    int n = 0;
    while (reader.ReadRecord(&record, &offset)) ++n;
    if (n != kRecords) state.SkipWithError("lost records");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kRecords));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * file.contents.size()));
}
BENCHMARK(BM_ReadRecords);

}  // namespace
}  // namespace hourglass

BENCHMARK_MAIN();
