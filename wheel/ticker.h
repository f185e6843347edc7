// Ticker: owns a TimingWheel, the mutex that guards it and the tick thread that fires it.
//
//   Ticker ticker(clock, [&](std::vector<uint64_t> cookies) { /* hand them on; may block */ });
//   ticker.Start();
//   ticker.Schedule(&record.timer, due_time, cookie);  // wall time, converted once
//   ticker.Cancel(&record.timer);
//   ticker.Stop();
//
// The tick thread sleeps until the wheel's next expiration (zero wake-ups while nothing is due),
// is woken by an insert earlier than its planned wake-up (decided under mu_, so no wake-up is
// lost), splices every due entry out in one Advance() under mu_, and calls the fire callback with
// their cookies outside mu_. The callback may block (a full dispatch queue): due timers are then
// late, never dropped.
//
// Thread-safe: Schedule/Cancel may be called from any thread, including from inside the fire
// callback. Lock order: callers may hold their own locks when calling Schedule/Cancel; the
// Ticker never calls out while holding mu_.
#ifndef HOURGLASS_WHEEL_TICKER_H_
#define HOURGLASS_WHEEL_TICKER_H_

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wheel/clock.h"
#include "wheel/timers.h"
#include "wheel/timing_wheel.h"

namespace hourglass {

class Ticker final : public Timers {
 public:
  // Called on the tick thread with the cookies of the timers that fired, in deadline order.
  using FireFn = std::function<void(std::vector<uint64_t> cookies)>;

  Ticker(Clock& clock, FireFn fire);
  ~Ticker();  // Stop()s
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;

  // Starts the tick thread. Call once.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops and joins the tick thread; timers still in the wheel do not fire. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // (Re)arms `entry` to fire at wall time `due` with `cookie`; an entry that is already linked is
  // moved. The wall time is converted to the monotonic clock here, once; a due time in the past
  // fires on the next tick. InvalidArgument when `due` is beyond the wheel's horizon.
  absl::Status Schedule(TimerEntry* entry, absl::Time due, uint64_t cookie) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // Disarms `entry`; a no-op when it is not armed (or already fired). O(1).
  void Cancel(TimerEntry* entry) override ABSL_LOCKS_EXCLUDED(mu_);

  // Timers armed now.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // How often the tick thread has woken up since Start (for the idle wake-up metric and tests).
  uint64_t wakeups() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t NowMsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the wheel's time towards the clock's without firing or cascading anything.
  void CatchUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Clock& clock_;
  const FireFn fire_;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  TimingWheel wheel_ ABSL_GUARDED_BY(mu_);
  // The monotonic ms the tick thread plans to wake at; UINT64_MAX when it sleeps until signalled.
  uint64_t planned_wake_ms_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace hourglass

#endif  // HOURGLASS_WHEEL_TICKER_H_
