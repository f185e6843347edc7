// Micro-benchmarks of the TimingWheel: insert, cancel, insert+cancel and expiry, with 10^5 and
// 10^6 timers pending. Deadlines are uniform over the next 24 h (levels 0 to 4), the wheel
// starts at an unaligned time. The `per_op` counter is the time per timer operation (CPU time,
// setup excluded); `Time` is per benchmark iteration, which handles all n timers except in
// BM_InsertCancel.
//
//   wheel_bench                      # 10^5 and 10^6 pending
//   wheel_bench --with_10m           # also 10^7 pending (about 1 GB of memory)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "wheel/timing_wheel.h"

namespace hourglass {
namespace {

constexpr uint64_t kStartMs = 1'234'567;
constexpr uint64_t kDayMs = 24ull * 3600 * 1000;

std::vector<uint64_t> RandomDeadlines(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> deadlines(n);
  for (uint64_t& deadline : deadlines) deadline = kStartMs + 1 + rng() % kDayMs;
  return deadlines;
}

// Reports the time per timer operation, `ops` of them per iteration.
void SetPerOp(benchmark::State& state, size_t ops) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * ops));
  state.counters["per_op"] =
      benchmark::Counter(static_cast<double>(ops), benchmark::Counter::kIsIterationInvariantRate |
                                                       benchmark::Counter::kInvert);
}

void Fill(TimingWheel& wheel, TimerEntry* entries, const std::vector<uint64_t>& deadlines) {
  for (size_t i = 0; i < deadlines.size(); ++i) {
    if (!wheel.Insert(&entries[i], deadlines[i], i).ok()) std::abort();
  }
}

// Insert n timers into an empty wheel (timed: the inserts only).
void BM_Insert(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint64_t> deadlines = RandomDeadlines(n, 1);
  auto entries = std::make_unique<TimerEntry[]>(n);
  for (auto _ : state) {
    state.PauseTiming();
    auto wheel = std::make_unique<TimingWheel>(kStartMs);
    state.ResumeTiming();
    Fill(*wheel, entries.get(), deadlines);
    state.PauseTiming();
    wheel.reset();  // unlinks the entries
    state.ResumeTiming();
  }
  SetPerOp(state, n);
}

// Remove n pending timers in random order (timed: the removes only).
void BM_Cancel(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint64_t> deadlines = RandomDeadlines(n, 2);
  auto entries = std::make_unique<TimerEntry[]>(n);
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(3));
  for (auto _ : state) {
    state.PauseTiming();
    TimingWheel wheel(kStartMs);
    Fill(wheel, entries.get(), deadlines);
    state.ResumeTiming();
    for (size_t i : order) wheel.Remove(&entries[i]);
    benchmark::DoNotOptimize(wheel.size());
  }
  SetPerOp(state, n);
}

// With n timers pending, arm one more and cancel it again (the churn of a rescheduled task).
void BM_InsertCancel(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint64_t> deadlines = RandomDeadlines(n, 4);
  auto entries = std::make_unique<TimerEntry[]>(n);
  TimingWheel wheel(kStartMs);
  Fill(wheel, entries.get(), deadlines);
  const std::vector<uint64_t> churn = RandomDeadlines(4096, 5);
  TimerEntry entry;
  size_t i = 0;
  for (auto _ : state) {
    if (!wheel.Insert(&entry, churn[i++ & 4095], 0).ok()) std::abort();
    wheel.Remove(&entry);
  }
  SetPerOp(state, 1);
}

// One Advance over the whole day: every one of the n timers cascades and fires (timed: the
// Advance only; `fired` has its capacity already).
void BM_Expiry(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::vector<uint64_t> deadlines = RandomDeadlines(n, 6);
  auto entries = std::make_unique<TimerEntry[]>(n);
  std::vector<uint64_t> fired;
  fired.reserve(n);
  for (auto _ : state) {
    state.PauseTiming();
    TimingWheel wheel(kStartMs);
    Fill(wheel, entries.get(), deadlines);
    fired.clear();
    state.ResumeTiming();
    wheel.Advance(kStartMs + kDayMs + 1, &fired);
    if (fired.size() != n) std::abort();
  }
  SetPerOp(state, n);
}

void Register(bool with_10m) {
  std::vector<int64_t> sizes = {100'000, 1'000'000};
  if (with_10m) sizes.push_back(10'000'000);
  for (auto [name, fn] :
       {std::pair{"BM_Insert", &BM_Insert}, std::pair{"BM_Cancel", &BM_Cancel},
        std::pair{"BM_InsertCancel", &BM_InsertCancel}, std::pair{"BM_Expiry", &BM_Expiry}}) {
    auto* bench = benchmark::RegisterBenchmark(name, fn);
    for (int64_t n : sizes) bench->Arg(n);
    bench->Unit(fn == &BM_InsertCancel ? benchmark::kNanosecond : benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace hourglass

int main(int argc, char** argv) {
  bool with_10m = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--with_10m") == 0) {
      with_10m = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  hourglass::Register(with_10m);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
