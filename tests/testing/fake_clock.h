// FakeClock: a Clock whose time moves only when the test says so, and whose waits never sleep in
// real time for a deadline that is due.
//
//   FakeClock clock;                        // wall 2027-01-15T08:00:00Z, monotonic 0
//   Ticker ticker(clock, ...);
//   ticker.Start();
//   ASSERT_TRUE(clock.BlockUntilWaiters(1));  // the tick thread is parked
//   clock.Advance(absl::Seconds(5));        // wakes every waiter whose deadline is now due
//
// Waking: WaitUntil registers the caller's (mu, cv) pair with its deadline and waits on the cv.
// Advance() moves both clocks, then, for every registered waiter whose deadline has been reached,
// removes it from the registry and signals it by locking that waiter's mutex and calling
// cv->SignalAll(), without holding the FakeClock's own mutex (the waiter holds its mutex when it
// calls in here: the other order would invert the locks). The waiter registered itself while
// holding its mutex, so the signal cannot fall between its check and its wait: no lost wake-ups.
// A waiter whose deadline is not reached is not signalled (no spurious wake-ups), so tests can
// count a Ticker's wake-ups exactly.
//
// Because a woken waiter leaves the registry inside Advance(), `Advance(); BlockUntilWaiters(1);`
// returns only once the woken thread has done its work and parked again (or at once when nothing
// was due).
//
// Thread-safe. The mutex and condvar passed to WaitUntil must outlive any concurrent Advance().
#ifndef HOURGLASS_TESTS_TESTING_FAKE_CLOCK_H_
#define HOURGLASS_TESTS_TESTING_FAKE_CLOCK_H_

#include <cstdint>
#include <list>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wheel/clock.h"

namespace hourglass {

class FakeClock final : public Clock {
 public:
  static constexpr absl::Duration kDefaultTestTimeout = absl::Seconds(10);

  explicit FakeClock(absl::Time wall_start = absl::FromUnixSeconds(1'800'000'000))
      : wall_(wall_start) {}

  absl::Time Now() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Duration Monotonic() override ABSL_LOCKS_EXCLUDED(mu_);
  void WaitUntil(absl::Mutex* mu, absl::CondVar* cv, absl::Duration deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) ABSL_LOCKS_EXCLUDED(mu_) override;

  // Moves wall and monotonic time forward by `delta` (>= 0) and wakes the waiters now due.
  void Advance(absl::Duration delta) ABSL_LOCKS_EXCLUDED(mu_);
  // Sets the wall time only (either direction), as an NTP step would; monotonic time is unchanged.
  void SetWallTime(absl::Time wall) ABSL_LOCKS_EXCLUDED(mu_);

  // Threads blocked in WaitUntil right now.
  int WaitersForTest() const ABSL_LOCKS_EXCLUDED(mu_);
  // The deadlines they wait for (absl::InfiniteDuration() for "signal only"), in no order.
  std::vector<absl::Duration> WaiterDeadlinesForTest() const ABSL_LOCKS_EXCLUDED(mu_);
  // How many times a thread has blocked in WaitUntil so far (calls that returned at once, the
  // deadline being due, are not counted).
  uint64_t ParksForTest() const ABSL_LOCKS_EXCLUDED(mu_);

  // Waits, in real time but at most `timeout` (a safety net against a hung test), until at least
  // `n` threads are blocked in WaitUntil. Returns whether they are.
  bool BlockUntilWaiters(int n, absl::Duration timeout = kDefaultTestTimeout)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Likewise until ParksForTest() >= `parks` and a thread is blocked in WaitUntil.
  bool BlockUntilParks(uint64_t parks, absl::Duration timeout = kDefaultTestTimeout)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    absl::Mutex* mu;
    absl::CondVar* cv;
    absl::Duration deadline;
  };

  mutable absl::Mutex mu_;
  absl::Time wall_ ABSL_GUARDED_BY(mu_);
  absl::Duration monotonic_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  // Nodes live on the waiting threads' stacks; a node is in the list while its thread waits.
  std::list<Waiter*> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t parks_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hourglass

#endif  // HOURGLASS_TESTS_TESTING_FAKE_CLOCK_H_
