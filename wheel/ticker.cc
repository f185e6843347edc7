#include "wheel/ticker.h"

#include <pthread.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hourglass {
namespace {

constexpr uint64_t kNoWake = std::numeric_limits<uint64_t>::max();

// Monotonic time in whole ms, rounded down: the wheel's "now" (a timer due at ms d fires once
// the clock has reached d.000).
uint64_t FloorMs(absl::Duration monotonic) {
  return static_cast<uint64_t>(std::max<int64_t>(
      0, absl::ToInt64Milliseconds(absl::Floor(monotonic, absl::Milliseconds(1)))));
}

// A deadline in whole ms, rounded up: rounding down would fire up to 1 ms early.
uint64_t CeilMs(absl::Duration monotonic) {
  return static_cast<uint64_t>(std::max<int64_t>(
      0, absl::ToInt64Milliseconds(absl::Ceil(monotonic, absl::Milliseconds(1)))));
}

}  // namespace

Ticker::Ticker(Clock& clock, FireFn fire)
    : clock_(clock),
      fire_(std::move(fire)),
      wheel_(FloorMs(clock.Monotonic())),
      planned_wake_ms_(kNoWake) {}

Ticker::~Ticker() { Stop(); }

void Ticker::Start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "hg-tick");
    Run();
  });
}

void Ticker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status Ticker::Schedule(TimerEntry* entry, absl::Time due, uint64_t cookie) {
  absl::MutexLock lock(&mu_);
  // Converted once: a later wall-clock jump does not move the timer. The wall clock is read
  // first: a preemption between the two reads then makes the timer late, never early (read the
  // other way round, a thread descheduled for 12 ms after reading the monotonic clock handed a
  // task out 12 ms early).
  const absl::Time wall_now = clock_.Now();
  const absl::Duration monotonic_now = clock_.Monotonic();
  const absl::Duration monotonic_due = monotonic_now + (due - wall_now);
  const uint64_t deadline_ms = CeilMs(monotonic_due);
  CatchUpLocked();
  // Checked before touching the entry, so that a rejected reschedule leaves it armed as it was.
  if (monotonic_due == absl::InfiniteDuration() ||
      (deadline_ms > wheel_.now_ms() && deadline_ms - wheel_.now_ms() >= TimingWheel::kHorizonMs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "due time ", absl::FormatTime(due), " is beyond the timer horizon of ",
        absl::FormatDuration(absl::Milliseconds(TimingWheel::kHorizonMs)), " from now"));
  }
  wheel_.Remove(entry);
  absl::Status inserted = wheel_.Insert(entry, deadline_ms, cookie);
  if (!inserted.ok()) return inserted;  // not reached: the horizon was checked above
  if (deadline_ms < planned_wake_ms_) {
    // The tick thread sleeps past this deadline: wake it. It recomputes its wake-up time; until
    // then, later inserts need no further signal.
    planned_wake_ms_ = deadline_ms;
    wake_.Signal();
  }
  return absl::OkStatus();
}

void Ticker::Cancel(TimerEntry* entry) {
  absl::MutexLock lock(&mu_);
  // No wake-up needed: the tick thread at worst wakes for a slot that is empty by then.
  wheel_.Remove(entry);
}

size_t Ticker::size() const {
  absl::MutexLock lock(&mu_);
  return wheel_.size();
}

uint64_t Ticker::wakeups() const {
  absl::MutexLock lock(&mu_);
  return wakeups_;
}

void Ticker::CatchUpLocked() {
  // While the tick thread sleeps, the wheel's time stays where it last woke (for years, if the
  // wheel is empty), and the horizon counts from there. Move it up to the clock, but not to the
  // next expiration: nothing fires or cascades here, that stays the tick thread's work, and its
  // planned wake-up stays valid.
  const std::optional<uint64_t> next_ms = wheel_.NextExpiration();
  uint64_t target_ms = NowMsLocked();
  if (next_ms.has_value()) {
    if (*next_ms <= wheel_.now_ms()) return;
    target_ms = std::min(target_ms, *next_ms - 1);
  }
  std::vector<uint64_t> none;
  wheel_.Advance(target_ms, &none);
}

uint64_t Ticker::NowMsLocked() { return std::max(FloorMs(clock_.Monotonic()), wheel_.now_ms()); }

void Ticker::Run() {
  std::vector<uint64_t> fired;
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    wheel_.Advance(NowMsLocked(), &fired);
    if (!fired.empty()) {
      // The callback may block (a full dispatch queue) and may call Schedule/Cancel: never under
      // mu_. While it runs, planned_wake_ms_ is 0 (awake), so inserts do not signal.
      planned_wake_ms_ = 0;
      mu_.Unlock();
      fire_(std::exchange(fired, {}));
      mu_.Lock();
      continue;
    }
    const std::optional<uint64_t> next_ms = wheel_.NextExpiration();
    planned_wake_ms_ = next_ms.value_or(kNoWake);
    clock_.WaitUntil(&mu_, &wake_,
                     next_ms.has_value() ? absl::Milliseconds(static_cast<int64_t>(*next_ms))
                                         : absl::InfiniteDuration());
    ++wakeups_;
    planned_wake_ms_ = 0;  // awake: the loop looks at the wheel again before sleeping
  }
  planned_wake_ms_ = kNoWake;
}

}  // namespace hourglass
