// PullDeliverer: pull delivery. Parks Lease long-polls per queue and answers them when a task of
// their queue becomes READY, when their wait ends, or at shutdown.
//
//   class LeaseCall : public LeaseWaiter { ... };     // e.g. a gRPC reactor
//   PullDeliverer pull(timers);
//   pull.Wait(call, "emails", clock.Now() + wait);  // call->TryTake() is tried at once, then on
//                                                   // every Deliver() of an "emails" task
//   pull.Deliver({.task_id = id, .queue = "emails"});
//
// Waiting costs no thread: a parked call is a LeaseWaiter in a per-queue FIFO plus a timer for its
// wait deadline (armed through Timers, so the wheel is the one timer mechanism). A reaction never
// blocks: TryTake runs under mu_ and must be short and non-blocking; Finish runs without mu_.
//
// Thread-safe. Lock order: mu_ before whatever TryTake locks (the TaskStore), and before the
// Timers implementation's lock.
#ifndef HOURGLASS_WORKERS_PULL_DELIVERER_H_
#define HOURGLASS_WORKERS_PULL_DELIVERER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "wheel/timers.h"
#include "wheel/timing_wheel.h"
#include "workers/deliverer.h"

namespace hourglass {

// One parked Lease call. Owned by its caller, who must keep it alive until Finish() has been
// called, and must not destroy it while it is parked.
class LeaseWaiter {
 public:
  enum class End { kTaken, kTimedOut, kCancelled, kShutdown };

  virtual ~LeaseWaiter() = default;

  // Tries to take ready tasks of the waiter's queue. Returns true when it took any: the waiter is
  // then done. Runs with the PullDeliverer's lock held: short, non-blocking, no calls back.
  virtual bool TryTake() = 0;

  // Called exactly once for every waiter given to Wait() (or not at all when Wait() returns
  // kTaken synchronously), without the PullDeliverer's lock.
  virtual void Finish(End end) = 0;

 private:
  friend class PullDeliverer;
  // Guarded by the PullDeliverer's mu_.
  TimerEntry timer_;
  LeaseWaiter* prev_ = nullptr;
  LeaseWaiter* next_ = nullptr;
  std::string queue_;
  uint64_t id_ = 0;
  bool parked_ = false;
};

class PullDeliverer final : public Deliverer {
 public:
  // Cookies of the wait deadlines are `kCookieBit | id`; give every fired cookie with the bit set
  // to OnTimer().
  static constexpr uint64_t kCookieBit = uint64_t{1} << 63;

  explicit PullDeliverer(Timers& timers);
  ~PullDeliverer() override;  // requires Shutdown() first when waiters may be parked

  enum class WaitResult { kTaken, kParked, kRefused };
  // Tries `waiter` at once; when it takes nothing and `deadline` is in the future, parks it until
  // a task of `queue` is delivered or `deadline` passes. kTaken and kRefused (shutting down or the
  // deadline already passed) mean the waiter is not parked and Finish() will not be called.
  WaitResult Wait(LeaseWaiter* waiter, const std::string& queue, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The caller gives up on a waiter (the client cancelled). Finish(kCancelled) is called when it
  // was still parked; otherwise a no-op.
  void Cancel(LeaseWaiter* waiter) ABSL_LOCKS_EXCLUDED(mu_);

  // A task became READY: the waiters of its queue try to take it, oldest first.
  void Deliver(const ReadyTask& task) override ABSL_LOCKS_EXCLUDED(mu_);

  // A wait deadline fired.
  void OnTimer(uint64_t cookie) ABSL_LOCKS_EXCLUDED(mu_);

  // Finishes every parked waiter with kShutdown and refuses new ones.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  size_t parked() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct WaitList {
    LeaseWaiter* head = nullptr;
    LeaseWaiter* tail = nullptr;
  };
  void UnparkLocked(LeaseWaiter* waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Timers& timers_;  // constant after construction

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, WaitList> queues_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, LeaseWaiter*> by_id_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_PULL_DELIVERER_H_
