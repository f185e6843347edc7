// PushDispatcher: runs push deliveries on its own threads, at most `queue_concurrency` at a time
// per queue, so that a slow or dead endpoint holds up only its own queue.
//
//   PushDispatcher push(source, http_pusher, grpc_pusher,
//                       {.threads = 16, .queue_concurrency = 4});
//   push.Notify("webhooks");   // a push task of "webhooks" became READY
//   ...
//   push.Shutdown();           // aborts deliveries in progress, joins the threads
//
// The dispatcher holds no tasks itself: the source (the TaskStore, through service/) keeps READY
// push tasks per queue, and a worker claims one at a time with PushSource::Claim. Queues with work
// wait in a round-robin run list; a queue that has `queue_concurrency` deliveries in progress is
// left out of it until one finishes. A worker that finds its queue empty drops it, unless a Notify
// came in since it looked (so a task made READY during the claim is never stranded).
//
// Threads: `threads` workers named "hg-push-<i>". Deliveries never run under mu_. Thread-safe.
#ifndef HOURGLASS_WORKERS_PUSH_DISPATCHER_H_
#define HOURGLASS_WORKERS_PUSH_DISPATCHER_H_

#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "workers/push.h"

namespace hourglass {

// One claimed delivery attempt.
struct PushJob {
  std::string lease_token;  // of the claim, for Finish
  PushRequest request;
};

// Where push tasks come from and where outcomes go. Thread-safe; called without the
// dispatcher's lock.
class PushSource {
 public:
  virtual ~PushSource() = default;
  // Claims the oldest READY push task of `queue`; nullopt when there is none.
  virtual std::optional<PushJob> Claim(const std::string& queue) = 0;
  // Records how a claimed attempt ended.
  virtual void Finish(const PushJob& job, const PushResult& result) = 0;
};

class PushDispatcher {
 public:
  struct Options {
    int threads = 16;
    int queue_concurrency = 4;  // deliveries in progress per queue, >= 1
  };

  // Starts the threads. Everything passed must outlive the dispatcher.
  PushDispatcher(PushSource& source, Pusher& http, Pusher& grpc, Options options);
  ~PushDispatcher();  // Shutdown()
  PushDispatcher(const PushDispatcher&) = delete;
  PushDispatcher& operator=(const PushDispatcher&) = delete;

  // A push task of `queue` became READY (or may have).
  void Notify(const std::string& queue) ABSL_LOCKS_EXCLUDED(mu_);

  // Aborts deliveries in progress (their tasks are released, not failed), stops the threads and
  // joins them. Notify is a no-op afterwards. Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // Deliveries in progress (claiming or delivering), by queue; queues with none are left out.
  std::vector<std::pair<std::string, int>> InFlight() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct QueueState {
    int running = 0;        // workers on this queue now
    bool listed = false;    // in run_list_
    bool notified = false;  // a Notify since a worker last looked
  };
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void ListLocked(const std::string& queue, QueueState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetIfIdleLocked(const std::string& queue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  PushSource& source_;
  Pusher& http_;
  Pusher& grpc_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::CondVar work_;
  absl::flat_hash_map<std::string, QueueState> queues_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> run_list_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex join_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_PUSH_DISPATCHER_H_
