#include "wheel/ticker.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace hourglass {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Every test runs the real tick thread on a FakeClock and never sleeps: it waits (with a real-time
// safety timeout) until the tick thread is parked in the clock, which it reaches only after it has
// fired everything due and called the callback.
class TickerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ticker_.Start();
    ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  }

  // Moves fake time and waits until the tick thread has done whatever that made due.
  void AdvanceAndSettle(absl::Duration delta) {
    clock_.Advance(delta);
    ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  }

  // Schedules at `delay` from the fake wall time; when the insert is earlier than the tick
  // thread's planned wake-up, waits until the thread has woken and parked again.
  void ScheduleAndSettle(TimerEntry* entry, absl::Duration delay, uint64_t cookie,
                         bool expect_wake) {
    const uint64_t parks = clock_.ParksForTest();
    ASSERT_TRUE(ticker_.Schedule(entry, clock_.Now() + delay, cookie).ok());
    if (expect_wake) {
      ASSERT_TRUE(clock_.BlockUntilParks(parks + 1));
    }
    ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  }

  std::vector<uint64_t> Fired() {
    absl::MutexLock lock(&mu_);
    std::vector<uint64_t> all;
    for (const auto& batch : batches_) all.insert(all.end(), batch.begin(), batch.end());
    return all;
  }

  std::vector<std::vector<uint64_t>> Batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }

  void OnFire(std::vector<uint64_t> cookies) {
    std::function<void(const std::vector<uint64_t>&)> hook;
    {
      absl::MutexLock lock(&mu_);
      batches_.push_back(cookies);
      fire_times_.push_back(clock_.Monotonic());
      hook = hook_;
    }
    if (hook) hook(cookies);
  }

  void SetHook(std::function<void(const std::vector<uint64_t>&)> hook) {
    absl::MutexLock lock(&mu_);
    hook_ = std::move(hook);
  }

  FakeClock clock_;
  absl::Mutex mu_;
  std::vector<std::vector<uint64_t>> batches_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> fire_times_ ABSL_GUARDED_BY(mu_);  // monotonic, per batch
  std::function<void(const std::vector<uint64_t>&)> hook_ ABSL_GUARDED_BY(mu_);
  // Last: destroyed (stopped) first, while everything its callback uses still exists.
  Ticker ticker_{clock_, [this](std::vector<uint64_t> cookies) { OnFire(std::move(cookies)); }};
};

// A timer fires once fake time reaches its deadline, and not 1 ms before.
TEST_F(TickerTest, FiresAtDeadlineNotBefore) {
  TimerEntry entry;
  ScheduleAndSettle(&entry, absl::Seconds(5), 42, /*expect_wake=*/true);
  AdvanceAndSettle(absl::Seconds(5) - absl::Milliseconds(1));
  EXPECT_THAT(Fired(), IsEmpty());
  EXPECT_EQ(ticker_.size(), 1u);
  AdvanceAndSettle(absl::Milliseconds(1));
  EXPECT_THAT(Fired(), ElementsAre(42u));
  EXPECT_EQ(ticker_.size(), 0u);
  EXPECT_FALSE(entry.linked());
}

// Sub-millisecond due times are rounded up: never early, at most 1 ms late.
TEST_F(TickerTest, RoundsDueTimeUpToTheMillisecond) {
  AdvanceAndSettle(absl::Microseconds(300));  // monotonic 0.3 ms: not aligned
  TimerEntry entry;
  ScheduleAndSettle(&entry, absl::Milliseconds(1), 1, /*expect_wake=*/true);  // due at 1.3 ms
  EXPECT_THAT(clock_.WaiterDeadlinesForTest(), ElementsAre(absl::Milliseconds(2)));
  AdvanceAndSettle(absl::Microseconds(999));  // 1.299 ms
  EXPECT_THAT(Fired(), IsEmpty());
  AdvanceAndSettle(absl::Microseconds(701));  // 2 ms
  EXPECT_THAT(Fired(), ElementsAre(1u));
}

// An insert earlier than the planned wake-up wakes the tick thread, which re-plans for it; an
// insert later than the planned wake-up does not wake it at all.
TEST_F(TickerTest, EarlierInsertWakesLaterInsertDoesNot) {
  TimerEntry at10s, at20s, at1s;
  ScheduleAndSettle(&at10s, absl::Seconds(10), 10, /*expect_wake=*/true);
  const uint64_t wakeups = ticker_.wakeups();
  const uint64_t parks = clock_.ParksForTest();

  ASSERT_TRUE(ticker_.Schedule(&at20s, clock_.Now() + absl::Seconds(20), 20).ok());
  ScheduleAndSettle(&at1s, absl::Seconds(1), 1, /*expect_wake=*/true);
  // Exactly one wake-up: the 1 s insert's; the 20 s insert caused none.
  EXPECT_EQ(ticker_.wakeups(), wakeups + 1);
  EXPECT_EQ(clock_.ParksForTest(), parks + 1);
  // Re-planned for the 1 s timer (the wake-up may be a cascade point before it).
  const std::vector<absl::Duration> planned = clock_.WaiterDeadlinesForTest();
  ASSERT_EQ(planned.size(), 1u);
  EXPECT_LE(planned[0], absl::Seconds(1));

  AdvanceAndSettle(absl::Seconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u));
  AdvanceAndSettle(absl::Seconds(9));
  EXPECT_THAT(Fired(), ElementsAre(1u, 10u));
  AdvanceAndSettle(absl::Seconds(10));
  EXPECT_THAT(Fired(), ElementsAre(1u, 10u, 20u));
}

// With nothing scheduled, hours of fake time pass with no fire and not a single wake-up.
TEST_F(TickerTest, IdleTickerNeverWakesUp) {
  for (int i = 0; i < 100; ++i) AdvanceAndSettle(absl::Minutes(6));
  EXPECT_THAT(Fired(), IsEmpty());
  EXPECT_EQ(ticker_.wakeups(), 0u);
  EXPECT_THAT(clock_.WaiterDeadlinesForTest(), ElementsAre(absl::InfiniteDuration()));
}

// One timer an hour away costs a handful of wake-ups (cascades), not one per tick or per second.
TEST_F(TickerTest, SleepsThroughEmptyTime) {
  TimerEntry entry;
  ScheduleAndSettle(&entry, absl::Hours(1), 7, /*expect_wake=*/true);
  const uint64_t wakeups = ticker_.wakeups();
  for (int i = 0; i < 3600; ++i) AdvanceAndSettle(absl::Seconds(1));
  EXPECT_THAT(Fired(), ElementsAre(7u));
  EXPECT_LE(ticker_.wakeups() - wakeups, 6u);  // at most 5 cascades, then the fire
  for (int i = 0; i < 60; ++i) AdvanceAndSettle(absl::Minutes(1));
  EXPECT_LE(ticker_.wakeups() - wakeups, 6u);
}

// The wall time is converted to monotonic once, at Schedule: later wall-clock jumps, forwards or
// backwards, do not move the timer.
TEST_F(TickerTest, WallClockJumpDoesNotMoveArmedTimer) {
  TimerEntry entry;
  ScheduleAndSettle(&entry, absl::Seconds(10), 1, /*expect_wake=*/true);
  clock_.SetWallTime(clock_.Now() + absl::Hours(1));
  AdvanceAndSettle(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_THAT(Fired(), IsEmpty());
  clock_.SetWallTime(clock_.Now() - absl::Hours(2));
  AdvanceAndSettle(absl::Milliseconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u));
}

// A due time in the past fires on the next tick, without fake time moving.
TEST_F(TickerTest, PastDueFiresAtOnce) {
  TimerEntry entry;
  ScheduleAndSettle(&entry, -absl::Hours(1), 5, /*expect_wake=*/true);
  EXPECT_THAT(Fired(), ElementsAre(5u));
}

// Rescheduling a linked entry moves it: it fires once, at the new time (earlier or later).
TEST_F(TickerTest, RescheduleMovesEntry) {
  TimerEntry earlier, later;
  ScheduleAndSettle(&earlier, absl::Seconds(10), 1, /*expect_wake=*/true);
  ScheduleAndSettle(&earlier, absl::Seconds(2), 1, /*expect_wake=*/true);
  ScheduleAndSettle(&later, absl::Seconds(3), 2, /*expect_wake=*/false);
  ScheduleAndSettle(&later, absl::Seconds(20), 2, /*expect_wake=*/false);
  EXPECT_EQ(ticker_.size(), 2u);
  AdvanceAndSettle(absl::Seconds(2));
  EXPECT_THAT(Fired(), ElementsAre(1u));
  AdvanceAndSettle(absl::Seconds(8));
  EXPECT_THAT(Fired(), ElementsAre(1u));
  AdvanceAndSettle(absl::Seconds(10));
  EXPECT_THAT(Fired(), ElementsAre(1u, 2u));
}

// A due time beyond the horizon is rejected, and a rejected reschedule leaves the entry armed.
TEST_F(TickerTest, ScheduleBeyondHorizonIsRejected) {
  const absl::Duration horizon = absl::Milliseconds(TimingWheel::kHorizonMs);
  TimerEntry entry;
  const absl::Status rejected = ticker_.Schedule(&entry, clock_.Now() + horizon, 1);
  EXPECT_EQ(rejected.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rejected.message()), ::testing::HasSubstr("beyond the timer horizon"));
  EXPECT_FALSE(entry.linked());
  EXPECT_EQ(ticker_.Schedule(&entry, absl::InfiniteFuture(), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ticker_.size(), 0u);

  ScheduleAndSettle(&entry, absl::Seconds(1), 1, /*expect_wake=*/true);
  EXPECT_EQ(ticker_.Schedule(&entry, clock_.Now() + 2 * horizon, 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(entry.linked());
  AdvanceAndSettle(absl::Seconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u));

  TimerEntry farthest;
  EXPECT_TRUE(ticker_.Schedule(&farthest, clock_.Now() + horizon - absl::Seconds(2), 2).ok());
  ticker_.Cancel(&farthest);
}

// The horizon counts from the clock's time, even after the tick thread slept for years (idle, or
// waiting for one far timer).
TEST_F(TickerTest, HorizonCountsFromNowAfterLongSleep) {
  constexpr absl::Duration kTwoYears = absl::Hours(24 * 730);
  AdvanceAndSettle(absl::Hours(24 * 800));  // idle: the tick thread never woke
  EXPECT_EQ(ticker_.wakeups(), 0u);
  TimerEntry far, farther;
  ScheduleAndSettle(&far, kTwoYears, 1, /*expect_wake=*/true);
  AdvanceAndSettle(absl::Hours(24 * 365));  // still before far's first cascade point
  ScheduleAndSettle(&farther, kTwoYears, 2, /*expect_wake=*/false);
  AdvanceAndSettle(absl::Hours(24 * 365) - absl::Milliseconds(1));
  EXPECT_THAT(Fired(), IsEmpty());
  AdvanceAndSettle(absl::Milliseconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u));
  AdvanceAndSettle(absl::Hours(24 * 365) - absl::Milliseconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u));
  AdvanceAndSettle(absl::Milliseconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u, 2u));
}

// A callback that blocks delays timers but loses none: those that came due meanwhile, and those
// scheduled meanwhile, fire after it returns, in deadline order; a cancel meanwhile holds.
TEST_F(TickerTest, BlockingCallbackLosesNoTimers) {
  absl::Notification entered, release;
  SetHook([&](const std::vector<uint64_t>& cookies) {
    if (cookies.front() == 1) {
      entered.Notify();
      release.WaitForNotification();
    }
  });
  TimerEntry a, b, c, d, e;
  ScheduleAndSettle(&a, absl::Seconds(1), 1, /*expect_wake=*/true);
  ScheduleAndSettle(&b, absl::Seconds(2), 2, /*expect_wake=*/false);
  ScheduleAndSettle(&c, absl::Seconds(3), 3, /*expect_wake=*/false);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(FakeClock::kDefaultTestTimeout));

  clock_.Advance(absl::Seconds(5));  // now 6 s: b and c are due, the tick thread is busy
  ticker_.Cancel(&c);
  ASSERT_TRUE(ticker_.Schedule(&d, clock_.Now() - absl::Milliseconds(500), 4).ok());  // 5.5 s
  ASSERT_TRUE(ticker_.Schedule(&e, clock_.Now() + absl::Seconds(1), 5).ok());         // 7 s
  release.Notify();
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  EXPECT_THAT(Batches(), ElementsAre(ElementsAre(1u), ElementsAre(2u, 4u)));
  AdvanceAndSettle(absl::Seconds(1));
  EXPECT_THAT(Batches(), ElementsAre(ElementsAre(1u), ElementsAre(2u, 4u), ElementsAre(5u)));
  EXPECT_EQ(ticker_.size(), 0u);
}

// The callback may call Schedule and Cancel (no deadlock): a periodic timer re-arms itself.
TEST_F(TickerTest, ScheduleFromInsideCallback) {
  TimerEntry periodic, victim;
  SetHook([&](const std::vector<uint64_t>&) {
    ticker_.Cancel(&victim);
    ASSERT_TRUE(ticker_.Schedule(&periodic, clock_.Now() + absl::Seconds(1), 1).ok());
  });
  ScheduleAndSettle(&periodic, absl::Seconds(1), 1, /*expect_wake=*/true);
  ScheduleAndSettle(&victim, absl::Seconds(2), 2, /*expect_wake=*/false);
  for (int i = 0; i < 5; ++i) AdvanceAndSettle(absl::Seconds(1));
  EXPECT_THAT(Fired(), ElementsAre(1u, 1u, 1u, 1u, 1u));
  EXPECT_EQ(ticker_.size(), 1u);
  ticker_.Cancel(&periodic);  // entries must leave the wheel before they are destroyed
}

// Cancel from another thread disarms the timer: it never fires.
TEST_F(TickerTest, CancelFromAnotherThread) {
  TimerEntry a, b, c;
  ScheduleAndSettle(&a, absl::Milliseconds(1000), 1, /*expect_wake=*/true);
  ScheduleAndSettle(&b, absl::Milliseconds(1500), 2, /*expect_wake=*/false);
  ScheduleAndSettle(&c, absl::Milliseconds(2000), 3, /*expect_wake=*/false);
  std::thread canceller([&] { ticker_.Cancel(&b); });
  canceller.join();
  EXPECT_FALSE(b.linked());
  EXPECT_EQ(ticker_.size(), 2u);
  AdvanceAndSettle(absl::Seconds(2));
  EXPECT_THAT(Fired(), ElementsAre(1u, 3u));
  ticker_.Cancel(&b);  // not armed: no-op
  ticker_.Cancel(&a);  // already fired: no-op
  EXPECT_EQ(ticker_.size(), 0u);
}

// Many timers through the real tick thread: each fires exactly once, never before its due time,
// in due-time order across batches.
TEST_F(TickerTest, ManyTimersFireInOrderNeverEarly) {
  constexpr int kTimers = 2000;
  std::mt19937_64 rng(11);
  std::vector<TimerEntry> entries(kTimers);
  std::vector<absl::Duration> due(kTimers);  // monotonic, with sub-ms parts
  for (auto& d : due) {
    d = absl::Milliseconds(static_cast<int64_t>(rng() % 600'000)) +
        absl::Microseconds(static_cast<int64_t>(rng() % 1000));
  }
  // Scheduled in due order: only the first insert wakes the tick thread (each later one is after
  // its planned wake-up), so the test knows when the thread is parked.
  std::sort(due.begin(), due.end());
  ScheduleAndSettle(&entries[0], due[0], 0, /*expect_wake=*/true);
  for (int i = 1; i < kTimers; ++i) {
    ASSERT_TRUE(ticker_.Schedule(&entries[i], clock_.Now() + due[i], i).ok());
  }
  ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  while (clock_.Monotonic() < absl::Minutes(11)) {
    AdvanceAndSettle(absl::Milliseconds(static_cast<int64_t>(rng() % 5000)));
  }
  std::vector<std::vector<uint64_t>> batches;
  std::vector<absl::Duration> fire_times;
  {
    absl::MutexLock lock(&mu_);
    batches = batches_;
    fire_times = fire_times_;
  }
  std::vector<bool> seen(kTimers, false);
  absl::Duration last_due = absl::ZeroDuration();
  int count = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    for (uint64_t cookie : batches[i]) {
      ASSERT_FALSE(seen[cookie]);
      seen[cookie] = true;
      ++count;
      EXPECT_GE(fire_times[i], due[cookie]);  // never early
      // In order by the ms the due time rounds up to.
      const absl::Duration due_ms = absl::Ceil(due[cookie], absl::Milliseconds(1));
      EXPECT_GE(due_ms, last_due);
      last_due = due_ms;
    }
  }
  EXPECT_EQ(count, kTimers);
}

// Stop joins the tick thread; timers left do not fire afterwards; Stop is idempotent.
TEST_F(TickerTest, StopJoinsAndIsIdempotent) {
  TimerEntry entry;
  ScheduleAndSettle(&entry, absl::Seconds(1), 1, /*expect_wake=*/true);
  ticker_.Stop();
  EXPECT_EQ(clock_.WaitersForTest(), 0);  // the thread has left the clock: joined
  clock_.Advance(absl::Seconds(5));
  EXPECT_THAT(Fired(), IsEmpty());
  ticker_.Stop();
  ticker_.Cancel(&entry);
  EXPECT_EQ(ticker_.size(), 0u);
}

// Stop (and destruction) of a ticker that was never started is safe.
TEST(TickerLifecycleTest, StopWithoutStartIsSafe) {
  FakeClock clock;
  Ticker ticker(clock, [](std::vector<uint64_t>) {});
  ticker.Stop();
  ticker.Stop();
  EXPECT_EQ(ticker.wakeups(), 0u);
}

// The wheel's time origin is the clock's monotonic time at construction: a clock that has run for
// a while fires a timer at the right time.
TEST(TickerLifecycleTest, OriginIsClockTimeAtConstruction) {
  FakeClock clock;
  clock.Advance(absl::Hours(24 * 400) + absl::Microseconds(1500));
  absl::Mutex mu;
  std::vector<uint64_t> fired;
  Ticker ticker(clock, [&](std::vector<uint64_t> cookies) {
    absl::MutexLock lock(&mu);
    fired.insert(fired.end(), cookies.begin(), cookies.end());
  });
  ticker.Start();
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  const uint64_t parks = clock.ParksForTest();
  TimerEntry entry;
  ASSERT_TRUE(ticker.Schedule(&entry, clock.Now() + absl::Seconds(3), 9).ok());
  ASSERT_TRUE(clock.BlockUntilParks(parks + 1));  // woken by the insert, parked again
  clock.Advance(absl::Seconds(3) - absl::Microseconds(1));
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  {
    absl::MutexLock lock(&mu);
    EXPECT_THAT(fired, IsEmpty());
  }
  clock.Advance(absl::Microseconds(501));  // the due ms, rounded up
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(fired, ElementsAre(9u));
}

// A clock whose reader is descheduled for 12 ms right after every read of the monotonic clock:
// what a loaded 2-core machine does now and then.
class PreemptedAfterMonotonicClock final : public Clock {
 public:
  absl::Time Now() override { return clock_.Now(); }
  absl::Duration Monotonic() override {
    const absl::Duration now = clock_.Monotonic();
    clock_.Advance(absl::Milliseconds(12));
    return now;
  }
  void WaitUntil(absl::Mutex*, absl::CondVar*, absl::Duration) override {}
  FakeClock& fake() { return clock_; }

 private:
  FakeClock clock_;
};

// Converting a due time reads two clocks; a preemption between the reads may make the timer
// late, never early. (Reading the monotonic clock first armed it 12 ms early.)
TEST(TickerConversionTest, PreemptionBetweenClockReadsNeverMakesATimerEarly) {
  PreemptedAfterMonotonicClock clock;
  Ticker ticker(clock, [](std::vector<uint64_t>) {});
  // The mapping between the clocks, read without preemption: wall W is monotonic W - offset.
  const absl::Duration offset = clock.fake().Now() - absl::UnixEpoch() - clock.fake().Monotonic();
  const absl::Time due = clock.fake().Now() + absl::Milliseconds(100);
  TimerEntry entry;
  ASSERT_TRUE(ticker.Schedule(&entry, due, 1).ok());
  const absl::Duration due_monotonic = (due - absl::UnixEpoch()) - offset;
  EXPECT_GE(absl::Milliseconds(static_cast<int64_t>(entry.deadline_ms)), due_monotonic);
  ticker.Cancel(&entry);
}

}  // namespace
}  // namespace hourglass
