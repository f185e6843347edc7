#include "tests/testing/fake_clock.h"

#include <utility>

namespace hourglass {

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return wall_;
}

absl::Duration FakeClock::Monotonic() {
  absl::MutexLock lock(&mu_);
  return monotonic_;
}

void FakeClock::WaitUntil(absl::Mutex* mu, absl::CondVar* cv, absl::Duration deadline) {
  Waiter waiter{mu, cv, deadline};
  {
    absl::MutexLock lock(&mu_);
    if (monotonic_ >= deadline) return;
    waiters_.push_back(&waiter);
    ++parks_;
  }
  // Holding `mu` since the check: an Advance() that makes us due signals only after this Wait
  // has released `mu`.
  cv->Wait(mu);
  absl::MutexLock lock(&mu_);
  // Still registered when woken by someone else's signal (or spuriously); Advance() already
  // removed us when it signalled.
  waiters_.remove(&waiter);
}

void FakeClock::Advance(absl::Duration delta) {
  std::vector<std::pair<absl::Mutex*, absl::CondVar*>> due;
  {
    absl::MutexLock lock(&mu_);
    if (delta < absl::ZeroDuration()) delta = absl::ZeroDuration();  // monotonic: never back
    wall_ += delta;
    monotonic_ += delta;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if ((*it)->deadline <= monotonic_) {
        due.emplace_back((*it)->mu, (*it)->cv);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [mu, cv] : due) {
    absl::MutexLock lock(mu);
    cv->SignalAll();
  }
}

void FakeClock::SetWallTime(absl::Time wall) {
  absl::MutexLock lock(&mu_);
  wall_ = wall;
}

int FakeClock::WaitersForTest() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiters_.size());
}

std::vector<absl::Duration> FakeClock::WaiterDeadlinesForTest() const {
  absl::MutexLock lock(&mu_);
  std::vector<absl::Duration> deadlines;
  for (const Waiter* waiter : waiters_) deadlines.push_back(waiter->deadline);
  return deadlines;
}

uint64_t FakeClock::ParksForTest() const {
  absl::MutexLock lock(&mu_);
  return parks_;
}

bool FakeClock::BlockUntilWaiters(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(waiters_.size()) >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool FakeClock::BlockUntilParks(uint64_t parks, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto parked = [this, parks]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return parks_ >= parks && !waiters_.empty();
  };
  return mu_.AwaitWithTimeout(absl::Condition(&parked), timeout);
}

}  // namespace hourglass
