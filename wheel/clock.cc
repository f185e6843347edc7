#include "wheel/clock.h"

#include <time.h>

#include <algorithm>

namespace hourglass {
namespace {

// absl::CondVar's timed waits (Debian's Abseil 20220623) sleep until an absolute *wall-clock*
// time: a wall-clock step backwards during a wait would make it sleep that much longer. Waiting
// in slices of at most this long bounds that lateness; the slices are internal to WaitUntil (the
// caller sees one wait), and a wait for a signal only (infinite deadline) is not sliced at all.
// The slice is long because every slice is a wake-up of the tick thread while timers are pending
// far ahead (DESIGN: no wake-ups while nothing is due): one a minute, against timers up to a
// minute late after a backwards step of the wall clock, which NTP makes only at boot or on a
// large offset.
constexpr absl::Duration kMaxWaitSlice = absl::Seconds(60);

absl::Duration ReadMonotonic() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::DurationFromTimespec(ts);
}

}  // namespace

SystemClock& SystemClock::Get() {
  static SystemClock* const clock = new SystemClock();  // never destroyed: usable at exit
  return *clock;
}

absl::Time SystemClock::Now() { return absl::Now(); }

absl::Duration SystemClock::Monotonic() {
  // The origin is the first use, so that the values stay small (the wheel counts ms from it).
  static const absl::Duration origin = ReadMonotonic();
  return ReadMonotonic() - origin;
}

void SystemClock::WaitUntil(absl::Mutex* mu, absl::CondVar* cv, absl::Duration deadline) {
  if (deadline == absl::InfiniteDuration()) {
    cv->Wait(mu);
    return;
  }
  while (true) {
    const absl::Duration remaining = deadline - Monotonic();
    if (remaining <= absl::ZeroDuration()) return;
    // WaitWithTimeout returns false when signalled (or woken spuriously): the caller re-checks.
    if (!cv->WaitWithTimeout(mu, std::min(remaining, kMaxWaitSlice))) return;
  }
}

}  // namespace hourglass
