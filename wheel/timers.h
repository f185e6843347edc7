// Timers: the interface through which the rest of hourglass arms and disarms timers.
//
// Ticker implements it over the timing wheel; tests use a fake that fires on demand. Every
// time-based event in hourglass (first delivery, retry backoff, lease expiry, the end of a finished
// task's retention, the end of a Lease long-poll) is a timer armed through this interface.
#ifndef HOURGLASS_WHEEL_TIMERS_H_
#define HOURGLASS_WHEEL_TIMERS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "wheel/timing_wheel.h"

namespace hourglass {

// Implementations are thread-safe.
class Timers {
 public:
  virtual ~Timers() = default;

  // (Re)arms `entry` to fire at wall time `due` with `cookie`; an armed entry is moved. A due time
  // in the past fires at once. InvalidArgument when `due` is beyond the wheel's horizon.
  virtual absl::Status Schedule(TimerEntry* entry, absl::Time due, uint64_t cookie) = 0;

  // Disarms `entry`; a no-op when it is not armed or has already fired. O(1).
  virtual void Cancel(TimerEntry* entry) = 0;
};

}  // namespace hourglass

#endif  // HOURGLASS_WHEEL_TIMERS_H_
