#include "wheel/clock.h"

#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"

namespace hourglass {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// The real monotonic clock starts near zero at first use and never goes backwards.
TEST(SystemClockTest, MonotonicNeverDecreases) {
  SystemClock& clock = SystemClock::Get();
  absl::Duration previous = clock.Monotonic();
  EXPECT_GE(previous, absl::ZeroDuration());
  for (int i = 0; i < 10'000; ++i) {
    const absl::Duration now = clock.Monotonic();
    ASSERT_GE(now, previous);
    previous = now;
  }
}

// The real wall clock is absl::Now().
TEST(SystemClockTest, NowIsWallTime) {
  const absl::Time before = absl::Now();
  const absl::Time now = SystemClock::Get().Now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, absl::Now());
}

// A real wait with a deadline returns (possibly spuriously, so in a loop) once the deadline has
// passed: the only test that waits in real time, for 20 ms.
TEST(SystemClockTest, WaitUntilReturnsByDeadline) {
  SystemClock& clock = SystemClock::Get();
  absl::Mutex mu;
  absl::CondVar cv;
  absl::MutexLock lock(&mu);
  const absl::Duration deadline = clock.Monotonic() + absl::Milliseconds(20);
  while (clock.Monotonic() < deadline) clock.WaitUntil(&mu, &cv, deadline);
  EXPECT_GE(clock.Monotonic(), deadline);
  EXPECT_LT(clock.Monotonic(), deadline + absl::Seconds(5));
}

// A deadline already passed returns at once.
TEST(SystemClockTest, WaitUntilPastDeadlineReturnsAtOnce) {
  SystemClock& clock = SystemClock::Get();
  absl::Mutex mu;
  absl::CondVar cv;
  absl::MutexLock lock(&mu);
  clock.WaitUntil(&mu, &cv, clock.Monotonic() - absl::Seconds(1));
  clock.WaitUntil(&mu, &cv, absl::ZeroDuration());
}

// A signal wakes a wait for a signal only (infinite deadline).
TEST(SystemClockTest, SignalWakesInfiniteWait) {
  SystemClock& clock = SystemClock::Get();
  absl::Mutex mu;
  absl::CondVar cv;
  bool signalled = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    while (!signalled) clock.WaitUntil(&mu, &cv, absl::InfiniteDuration());
  });
  {
    absl::MutexLock lock(&mu);
    signalled = true;
    cv.SignalAll();
  }
  waiter.join();
}

// FakeClock starts at a fixed wall time and monotonic zero.
TEST(FakeClockTest, StartsAtFixedTime) {
  FakeClock clock;
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1'800'000'000));
  EXPECT_EQ(clock.Monotonic(), absl::ZeroDuration());
  FakeClock other(absl::FromUnixSeconds(5));
  EXPECT_EQ(other.Now(), absl::FromUnixSeconds(5));
}

// Advance moves both clocks; SetWallTime moves only the wall clock, either way.
TEST(FakeClockTest, AdvanceAndSetWallTime) {
  FakeClock clock;
  clock.Advance(absl::Milliseconds(1500));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1'800'000'000) + absl::Milliseconds(1500));
  EXPECT_EQ(clock.Monotonic(), absl::Milliseconds(1500));
  clock.SetWallTime(absl::FromUnixSeconds(1'000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1'000));
  EXPECT_EQ(clock.Monotonic(), absl::Milliseconds(1500));
  clock.Advance(-absl::Seconds(1));  // monotonic: ignored
  EXPECT_EQ(clock.Monotonic(), absl::Milliseconds(1500));
}

// A wait for a deadline already reached returns at once, without parking.
TEST(FakeClockTest, DueWaitReturnsAtOnce) {
  FakeClock clock;
  clock.Advance(absl::Seconds(1));
  absl::Mutex mu;
  absl::CondVar cv;
  absl::MutexLock lock(&mu);
  clock.WaitUntil(&mu, &cv, absl::Seconds(1));
  EXPECT_EQ(clock.ParksForTest(), 0u);
}

// Advance wakes exactly the waiters whose deadline it reaches; the others stay parked.
TEST(FakeClockTest, AdvanceWakesDueWaitersOnly) {
  FakeClock clock;
  absl::Mutex mu;
  absl::CondVar cv1, cv5;
  bool done1 = false, done5 = false;
  std::thread waiter1([&] {
    absl::MutexLock lock(&mu);
    while (clock.Monotonic() < absl::Seconds(1)) clock.WaitUntil(&mu, &cv1, absl::Seconds(1));
    done1 = true;
  });
  std::thread waiter5([&] {
    absl::MutexLock lock(&mu);
    while (clock.Monotonic() < absl::Seconds(5)) clock.WaitUntil(&mu, &cv5, absl::Seconds(5));
    done5 = true;
  });
  ASSERT_TRUE(clock.BlockUntilWaiters(2));
  EXPECT_THAT(clock.WaiterDeadlinesForTest(),
              UnorderedElementsAre(absl::Seconds(1), absl::Seconds(5)));
  clock.Advance(absl::Seconds(1));
  waiter1.join();
  EXPECT_THAT(clock.WaiterDeadlinesForTest(), ElementsAre(absl::Seconds(5)));
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(done1);
    EXPECT_FALSE(done5);
  }
  clock.Advance(absl::Seconds(10));
  waiter5.join();
  EXPECT_EQ(clock.WaitersForTest(), 0);
  EXPECT_EQ(clock.ParksForTest(), 2u);
}

// A plain signal on the waiter's condvar also ends the wait, and the waiter leaves the registry.
TEST(FakeClockTest, SignalEndsWait) {
  FakeClock clock;
  absl::Mutex mu;
  absl::CondVar cv;
  bool signalled = false;
  std::thread waiter([&] {
    absl::MutexLock lock(&mu);
    while (!signalled) clock.WaitUntil(&mu, &cv, absl::InfiniteDuration());
  });
  ASSERT_TRUE(clock.BlockUntilWaiters(1));
  {
    absl::MutexLock lock(&mu);
    signalled = true;
    cv.Signal();
  }
  waiter.join();
  EXPECT_EQ(clock.WaitersForTest(), 0);
}

// The safety timeout of BlockUntilWaiters reports failure instead of hanging.
TEST(FakeClockTest, BlockUntilWaitersTimesOut) {
  FakeClock clock;
  EXPECT_FALSE(clock.BlockUntilWaiters(1, absl::Milliseconds(1)));
  EXPECT_TRUE(clock.BlockUntilWaiters(0));
}

}  // namespace
}  // namespace hourglass
