// BoundedQueue: the ready queue between the tick thread and the worker pool. Multi-producer,
// multi-consumer, bounded (back-pressure instead of unbounded memory) and closeable (shutdown
// wakes every waiter; what is already queued is still handed out).
//
//   BoundedQueue<TaskId> ready_queue(/*capacity=*/1024);
//   // producer (e.g. the tick thread): keep the id and retry later when the queue is full
//   if (!ready_queue.TryPush(id)) { ... }
//   // consumer (e.g. a worker): blocks until an item arrives or the queue is closed and drained
//   while (std::optional<TaskId> id = ready_queue.Pop()) Deliver(*id);
//   // shutdown: blocked Push calls return false, Pop drains the rest and then returns nullopt
//   ready_queue.Close();
//
// Thread-safety: every method may be called concurrently from any number of threads without
// external synchronization. One absl::Mutex guards the items; waiting uses absl::Condition, so
// there are no lost wake-ups. Critical sections are O(1) apart from PopBatch, which moves at most
// `max` items. Nothing but T's move constructor and destructor runs under the lock.
#ifndef HOURGLASS_WORKERS_BOUNDED_QUEUE_H_
#define HOURGLASS_WORKERS_BOUNDED_QUEUE_H_

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hourglass {

template <typename T>
class BoundedQueue {
 public:
  // `capacity` is the most items the queue holds; it must be >= 1 (0 ends the process: such a
  // queue could never accept an item, so every Push would block forever).
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {
    if (capacity_ == 0) {
      std::fprintf(stderr, "hourglass::BoundedQueue: capacity must be >= 1, got 0\n");
      std::abort();
    }
  }

  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Appends `item`, blocking while the queue is full. Returns false, and drops `item`, once the
  // queue is closed (including when Close() is called while this call is blocked).
  bool Push(T item) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (!HasRoomOrClosed()) {
      ++blocked_pushers_;
      mu_.Await(absl::Condition(this, &BoundedQueue::HasRoomOrClosed));
      --blocked_pushers_;
    }
    if (closed_) return false;
    items_.push_back(std::move(item));
    return true;
  }

  // Appends `item` (moving from it) if there is room and the queue is open; never blocks.
  // Returns false when full or closed, and then leaves `item` untouched.
  bool TryPush(T& item) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (closed_ || items_.size() >= capacity_) return false;
    items_.push_back(std::move(item));
    return true;
  }

  // Removes and returns the oldest item, blocking while the queue is empty and open. Returns
  // nullopt only when the queue is closed and everything queued has been handed out.
  std::optional<T> Pop() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    AwaitItemOrClosedLocked();
    if (items_.empty()) return std::nullopt;  // closed and drained
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    return item;
  }

  // Blocks like Pop() until at least one item is available, then appends up to `max` of the
  // oldest items to `*out` (oldest first) without blocking further. Returns how many were
  // appended: 0 means the queue is closed and drained, or `max` was 0 (which never blocks).
  // `out` must not be null; its existing contents are kept.
  size_t PopBatch(std::vector<T>* out, size_t max) ABSL_LOCKS_EXCLUDED(mu_) {
    if (max == 0) return 0;
    absl::MutexLock lock(&mu_);
    AwaitItemOrClosedLocked();
    const size_t taken = std::min(max, items_.size());
    for (size_t i = 0; i < taken; ++i) {
      out->push_back(std::move(items_.front()));
      items_.pop_front();
    }
    return taken;
  }

  // Refuses further pushes and wakes every blocked Push (which returns false) and Pop/PopBatch
  // (which drain what is queued, then return nullopt / 0). Idempotent.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    closed_ = true;  // waiters' conditions are re-evaluated when the lock is released
  }

  // A snapshot: by the time the caller looks, other threads may have changed it.
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return items_.size();
  }

  size_t capacity() const { return capacity_; }

  bool closed() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

  // Blocks until exactly `pushers` threads are blocked in Push() and exactly `poppers` threads
  // are blocked in Pop()/PopBatch(), so that tests can act on a known interleaving without
  // sleeping.
  void WaitUntilBlockedForTest(size_t pushers, size_t poppers) const ABSL_LOCKS_EXCLUDED(mu_) {
    auto reached = [this, pushers, poppers]() {
      mu_.AssertReaderHeld();
      return blocked_pushers_ == pushers && blocked_poppers_ == poppers;
    };
    absl::MutexLock lock(&mu_, absl::Condition(&reached));
  }

 private:
  bool HasRoomOrClosed() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return closed_ || items_.size() < capacity_;
  }

  bool HasItemOrClosed() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return closed_ || !items_.empty();
  }

  void AwaitItemOrClosedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (HasItemOrClosed()) return;
    ++blocked_poppers_;
    mu_.Await(absl::Condition(this, &BoundedQueue::HasItemOrClosed));
    --blocked_poppers_;
  }

  // Constant after construction.
  const size_t capacity_;

  // Guarded by mu_.
  mutable absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);  // oldest at the front; size() <= capacity_
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  size_t blocked_pushers_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting in Push()
  size_t blocked_poppers_ ABSL_GUARDED_BY(mu_) = 0;  // threads waiting in Pop()/PopBatch()
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_BOUNDED_QUEUE_H_
