// What the fuzzers share: a check that aborts (so that libFuzzer reports the input), Timers that
// refuse what the real wheel refuses, a TaskLog that keeps its records, and a driver that moves a
// TaskStore through time the way the server's threads would.
//
//   FakeClock clock;
//   HorizonTimers timers(clock);
//   RecordingLog log;
//   TaskStore store(clock, timers, {}, &log);
//   ...                                         // schedule or recover tasks
//   DriveStore(store, clock, timers, /*rounds=*/8);
//   FUZZ_CHECK(ReplaysCleanly(log.records()), "the store's own records must replay");
//
// Not thread-safe: a fuzzer runs one input at a time on one thread.
#ifndef HOURGLASS_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define HOURGLASS_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "store/task_log.h"
#include "store/task_store.h"
#include "tests/store/fake_timers.h"
#include "tests/testing/fake_clock.h"
#include "wheel/timers.h"
#include "wheel/timing_wheel.h"

// A broken promise of the code under test: print it and abort, which libFuzzer reports as a crash
// with the input that caused it.
#define FUZZ_CHECK(condition, message)                                                           \
  do {                                                                                           \
    if (!(condition)) {                                                                          \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #condition, \
                   std::string(message).c_str());                                                \
      std::abort();                                                                              \
    }                                                                                            \
  } while (false)

namespace hourglass {

// Whether the known, not yet fixed bug `name` is to be stepped around rather than reported:
// HOURGLASS_FUZZ_KNOWN_BUGS holds a comma-separated list of them (fuzz_smoke sets it from
// tests/fuzz/regressions/KNOWN_BUGS, so that fuzzing goes on looking for other bugs). Names:
//   timer_horizon  HorizonTimers accepts a timer beyond the wheel's horizon (the store used to
//                  abort on the refusal when recovering such a task; fixed, the hook stays).
//   url_nul        request_fuzzer does not check push targets for NUL bytes.
inline bool KnownBugTolerated(absl::string_view name) {
  const char* known = std::getenv("HOURGLASS_FUZZ_KNOWN_BUGS");
  if (known == nullptr) return false;
  for (absl::string_view bug : absl::StrSplit(known, ',')) {
    if (bug == name) return true;
  }
  return false;
}

// FakeTimers that, like the server's Ticker, refuse a due time at or beyond the timing wheel's
// horizon (2^36 ms from now) with InvalidArgument, so that the store meets the same refusals under
// the fuzzer as in production (unless the known bug timer_horizon is tolerated).
class HorizonTimers final : public Timers {
 public:
  explicit HorizonTimers(Clock& clock)
      : clock_(clock), tolerate_beyond_horizon_(KnownBugTolerated("timer_horizon")) {}

  absl::Status Schedule(TimerEntry* entry, absl::Time due, uint64_t cookie) override {
    const absl::Duration ahead = due - clock_.Now();
    if (ahead >= absl::Milliseconds(TimingWheel::kHorizonMs) && !tolerate_beyond_horizon_) {
      return absl::InvalidArgumentError(
          absl::StrCat("due time ", absl::FormatTime(due), " is beyond the timer horizon"));
    }
    return fake_.Schedule(entry, due, cookie);
  }
  void Cancel(TimerEntry* entry) override { fake_.Cancel(entry); }

  FakeTimers& fake() { return fake_; }

 private:
  Clock& clock_;
  const bool tolerate_beyond_horizon_;
  FakeTimers fake_;
};

// A TaskLog that keeps every record, numbered from 1.
class RecordingLog final : public TaskLog {
 public:
  uint64_t Append(const store::v1::LogRecord& record) override {
    records_.push_back(record);
    return records_.size();
  }
  const std::vector<store::v1::LogRecord>& records() const { return records_; }

 private:
  std::vector<store::v1::LogRecord> records_;
};

// Moves `store` through time for up to `rounds` rounds, as the tick thread, the workers and a
// consumer would: each round advances the clock to the next armed timer (at most a year at a
// time), fires what is due, then leases every ready pull task and acks, nacks or abandons them by
// turns (an abandoned lease expires in a later round), and claims every ready push task and
// reports a success, a retry or a permanent failure by turns. Every call the store must accept is
// checked.
inline void DriveStore(TaskStore& store, FakeClock& clock, HorizonTimers& timers, int rounds) {
  int turn = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::optional<absl::Time> next_due = timers.fake().NextDue();
    if (!next_due.has_value()) return;
    const absl::Time now = clock.Now();
    if (*next_due > now) clock.Advance(std::min(*next_due - now, absl::Hours(24 * 365)));
    for (uint64_t cookie : timers.fake().FireDue(clock.Now())) store.OnTimer(cookie);
    for (const QueueCounts& counts : store.Counts()) {
      for (LeasedTask& leased : store.Lease(counts.queue, 100, absl::Seconds(30))) {
        FUZZ_CHECK(leased.lease_expire_time == clock.Now() + absl::Seconds(30), leased.task_id);
        switch (turn++ % 3) {
          case 0: {
            absl::StatusOr<TaskInfo> acked = store.Ack(leased.task_id, leased.lease_token);
            FUZZ_CHECK(acked.ok(), acked.status().ToString());
            FUZZ_CHECK(acked->state == TaskState::kSucceeded, leased.task_id);
            break;
          }
          case 1: {
            absl::StatusOr<TaskInfo> nacked = store.Nack(leased.task_id, leased.lease_token,
                                                         std::nullopt, "nacked by the fuzzer");
            FUZZ_CHECK(nacked.ok(), nacked.status().ToString());
            FUZZ_CHECK(nacked->state == TaskState::kScheduled || nacked->state == TaskState::kDead,
                       leased.task_id);
            break;
          }
          default:
            break;  // the lease runs out
        }
      }
      while (std::optional<PushTask> push = store.ClaimPush(counts.queue)) {
        PushOutcome outcome;
        switch (turn++ % 3) {
          case 0:
            outcome.kind = PushOutcome::Kind::kSucceeded;
            break;
          case 1:
            outcome = {PushOutcome::Kind::kRetry, "503 from the fuzzer", absl::Seconds(turn)};
            break;
          default:
            outcome = {PushOutcome::Kind::kDead, "400 from the fuzzer"};
            break;
        }
        absl::StatusOr<TaskInfo> finished =
            store.FinishPush(push->task_id, push->lease_token, outcome);
        FUZZ_CHECK(finished.ok(), finished.status().ToString());
      }
    }
  }
}

// Per queue and state, the store's task counts, sorted by queue (Counts() has no order).
inline std::vector<std::pair<std::string, std::vector<int64_t>>> SortedCounts(
    const TaskStore& store) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> counts;
  for (const QueueCounts& queue : store.Counts()) {
    counts.emplace_back(queue.queue,
                        std::vector<int64_t>(queue.by_state.begin(), queue.by_state.end()));
  }
  std::sort(counts.begin(), counts.end());
  return counts;
}

}  // namespace hourglass

#endif  // HOURGLASS_TESTS_FUZZ_FUZZ_SUPPORT_H_
