// FakeTimers: a Timers that fires only when the test says so, for unit tests of Timers' users.
//
//   FakeTimers timers;
//   TaskStore store(clock, timers, {});
//   ...
//   clock.Advance(absl::Seconds(5));
//   for (uint64_t cookie : timers.FireDue(clock.Now())) store.OnTimer(cookie);
//
// It records each armed entry with its due time and cookie, as the wheel would, but never links
// entries into lists: the only field of a TimerEntry it writes is `prev`, set to a sentinel while
// the entry is armed so that TimerEntry::linked() tells the truth, and reset when the entry is
// cancelled or fires.
//
// Thread-safe: every method takes mu_. It never calls out while holding mu_, so it may be used
// under a caller's lock (TaskStore calls it with its own mutex held).
#ifndef HOURGLASS_TESTS_STORE_FAKE_TIMERS_H_
#define HOURGLASS_TESTS_STORE_FAKE_TIMERS_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wheel/timers.h"
#include "wheel/timing_wheel.h"

namespace hourglass {

class FakeTimers : public Timers {
 public:
  FakeTimers() = default;
  FakeTimers(const FakeTimers&) = delete;
  FakeTimers& operator=(const FakeTimers&) = delete;

  // (Re)arms `entry`; an armed entry is moved. InvalidArgument for an infinite due time, which no
  // wheel could hold.
  absl::Status Schedule(TimerEntry* entry, absl::Time due, uint64_t cookie) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    if (due == absl::InfiniteFuture() || due == absl::InfinitePast()) {
      return absl::InvalidArgumentError("due must be finite");
    }
    absl::MutexLock lock(&mu_);
    armed_[entry] = Armed{entry, due, cookie, next_sequence_++};
    entry->prev = &sentinel_;
    return absl::OkStatus();
  }

  void Cancel(TimerEntry* entry) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (armed_.erase(entry) > 0) entry->prev = nullptr;
  }

  // Disarms every entry due at or before `now` and returns their cookies in due order (entries due
  // at the same time in the order they were armed).
  std::vector<uint64_t> FireDue(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<Armed> due;
    for (const auto& [entry, armed] : armed_) {
      if (armed.due <= now) due.push_back(armed);
    }
    std::sort(due.begin(), due.end(), InDueOrder);
    std::vector<uint64_t> cookies;
    cookies.reserve(due.size());
    for (const Armed& armed : due) {
      armed_.erase(armed.entry);
      armed.entry->prev = nullptr;
      cookies.push_back(armed.cookie);
    }
    return cookies;
  }

  // When `entry` is due; nullopt when it is not armed.
  std::optional<absl::Time> DueOf(const TimerEntry* entry) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = armed_.find(entry);
    if (it == armed_.end()) return std::nullopt;
    return it->second.due;
  }

  // The cookie `entry` is armed with; nullopt when it is not armed.
  std::optional<uint64_t> CookieOf(const TimerEntry* entry) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = armed_.find(entry);
    if (it == armed_.end()) return std::nullopt;
    return it->second.cookie;
  }

  // The cookies of every armed entry, in due order (for tests that cannot name the entries).
  std::vector<uint64_t> ArmedCookies() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<Armed> all;
    for (const auto& [entry, armed] : armed_) all.push_back(armed);
    std::sort(all.begin(), all.end(), InDueOrder);
    std::vector<uint64_t> cookies;
    for (const Armed& armed : all) cookies.push_back(armed.cookie);
    return cookies;
  }

  // The earliest due time of an armed entry; nullopt when none is armed.
  std::optional<absl::Time> NextDue() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::optional<absl::Time> next;
    for (const auto& [entry, armed] : armed_) {
      if (!next.has_value() || armed.due < *next) next = armed.due;
    }
    return next;
  }

  // How many entries are armed.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return armed_.size();
  }

 private:
  struct Armed {
    TimerEntry* entry = nullptr;  // owned by the caller
    absl::Time due;
    uint64_t cookie = 0;
    uint64_t sequence = 0;  // arming order, to break ties between equal due times
  };
  static bool InDueOrder(const Armed& a, const Armed& b) {
    return std::tie(a.due, a.sequence) < std::tie(b.due, b.sequence);
  }

  mutable absl::Mutex mu_;
  absl::flat_hash_map<const TimerEntry*, Armed> armed_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  // What armed entries' `prev` points at: never dereferenced, only non-null.
  TimerEntry sentinel_;
};

}  // namespace hourglass

#endif  // HOURGLASS_TESTS_STORE_FAKE_TIMERS_H_
