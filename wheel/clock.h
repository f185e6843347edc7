// Clock: the one way hourglass reads time, so that tests can run on simulated time.
//
//   SystemClock& clock = SystemClock::Get();
//   absl::Time now = clock.Now();              // wall time: what clients and the log speak
//   absl::Duration mono = clock.Monotonic();   // for deadlines: never goes backwards
//
// Tests use FakeClock (tests/testing/fake_clock.h), whose time moves only when the test says so.
#ifndef HOURGLASS_WHEEL_CLOCK_H_
#define HOURGLASS_WHEEL_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hourglass {

// Thread-safe: every method may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;

  // Wall-clock time. Only for what a human or the API speaks; may jump.
  virtual absl::Time Now() = 0;

  // Monotonic time since an arbitrary origin fixed at construction; never decreases.
  virtual absl::Duration Monotonic() = 0;

  // Blocks until `cv` is signalled or Monotonic() >= `deadline`, whichever comes first; `mu` is
  // released while waiting, as with absl::CondVar::Wait. May return early (spuriously): callers
  // re-check their condition. absl::InfiniteDuration() waits for a signal only.
  virtual void WaitUntil(absl::Mutex* mu, absl::CondVar* cv, absl::Duration deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;
};

// The real clock: absl::Now() and CLOCK_MONOTONIC.
class SystemClock final : public Clock {
 public:
  // The process-wide instance.
  static SystemClock& Get();

  absl::Time Now() override;
  absl::Duration Monotonic() override;
  void WaitUntil(absl::Mutex* mu, absl::CondVar* cv, absl::Duration deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) override;
};

}  // namespace hourglass

#endif  // HOURGLASS_WHEEL_CLOCK_H_
