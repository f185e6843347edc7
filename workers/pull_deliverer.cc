#include "workers/pull_deliverer.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace hourglass {

PullDeliverer::PullDeliverer(Timers& timers) : timers_(timers) {}

PullDeliverer::~PullDeliverer() {
  absl::MutexLock lock(&mu_);
  if (!by_id_.empty()) {
    std::fprintf(stderr, "hourglass: fatal: PullDeliverer destroyed with %zu parked waiters\n",
                 by_id_.size());
    std::abort();
  }
}

PullDeliverer::WaitResult PullDeliverer::Wait(LeaseWaiter* waiter, const std::string& queue,
                                              absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return WaitResult::kRefused;
  // Trying and parking under one lock hold: a Deliver() for this queue either ran before (and its
  // task is visible to TryTake) or runs after the waiter is parked. No wake-up is lost.
  if (waiter->TryTake()) return WaitResult::kTaken;
  waiter->id_ = next_id_++;
  if (!timers_.Schedule(&waiter->timer_, deadline, kCookieBit | waiter->id_).ok()) {
    return WaitResult::kRefused;  // beyond the wheel's horizon: the caller validates waits
  }
  waiter->queue_ = queue;
  WaitList& list = queues_[queue];
  waiter->prev_ = list.tail;
  waiter->next_ = nullptr;
  (list.tail != nullptr ? list.tail->next_ : list.head) = waiter;
  list.tail = waiter;
  waiter->parked_ = true;
  by_id_.emplace(waiter->id_, waiter);
  return WaitResult::kParked;
}

void PullDeliverer::UnparkLocked(LeaseWaiter* waiter) {
  timers_.Cancel(&waiter->timer_);
  auto it = queues_.find(waiter->queue_);
  WaitList& list = it->second;
  (waiter->prev_ != nullptr ? waiter->prev_->next_ : list.head) = waiter->next_;
  (waiter->next_ != nullptr ? waiter->next_->prev_ : list.tail) = waiter->prev_;
  waiter->prev_ = waiter->next_ = nullptr;
  waiter->parked_ = false;
  by_id_.erase(waiter->id_);
  if (list.head == nullptr) queues_.erase(it);
}

void PullDeliverer::Cancel(LeaseWaiter* waiter) {
  {
    absl::MutexLock lock(&mu_);
    if (!waiter->parked_) return;
    UnparkLocked(waiter);
  }
  waiter->Finish(LeaseWaiter::End::kCancelled);
}

void PullDeliverer::Deliver(const ReadyTask& task) {
  std::vector<LeaseWaiter*> served;
  {
    absl::MutexLock lock(&mu_);
    auto it = queues_.find(task.queue);
    if (it == queues_.end()) return;
    // Oldest waiter first; stop at the first that finds nothing left to take.
    while (it != queues_.end() && it->second.head != nullptr) {
      LeaseWaiter* waiter = it->second.head;
      if (!waiter->TryTake()) break;
      UnparkLocked(waiter);  // may erase the queue's entry
      served.push_back(waiter);
      it = queues_.find(task.queue);
    }
  }
  for (LeaseWaiter* waiter : served) waiter->Finish(LeaseWaiter::End::kTaken);
}

void PullDeliverer::OnTimer(uint64_t cookie) {
  LeaseWaiter* waiter = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_id_.find(cookie & ~kCookieBit);
    if (it == by_id_.end()) return;  // already taken, cancelled or shut down
    waiter = it->second;
    UnparkLocked(waiter);
  }
  waiter->Finish(LeaseWaiter::End::kTimedOut);
}

void PullDeliverer::Shutdown() {
  std::vector<LeaseWaiter*> parked;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    parked.reserve(by_id_.size());
    for (auto& [id, waiter] : by_id_) parked.push_back(waiter);
    for (LeaseWaiter* waiter : parked) UnparkLocked(waiter);
  }
  for (LeaseWaiter* waiter : parked) waiter->Finish(LeaseWaiter::End::kShutdown);
}

size_t PullDeliverer::parked() const {
  absl::MutexLock lock(&mu_);
  return by_id_.size();
}

}  // namespace hourglass
