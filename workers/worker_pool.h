// WorkerPool: M named threads that take items from a BoundedQueue and hand each to a handler
// (in hourglass, a Deliverer). The pool owns its threads, not the queue: shutting down is closing
// the queue, then joining the pool.
//
//   BoundedQueue<TaskId> ready_queue(1024);
//   WorkerPool<TaskId> pool("deliver", /*threads=*/8, ready_queue,
//                           [&](TaskId id) { deliverer.Deliver(id); });
//   ...
//   ready_queue.Close();  // workers finish what is queued, then exit
//   pool.Join();          // or let the destructor do it
//
// Threads: `threads` worker threads named "<name>-<i>" (cut to the 15 characters Linux allows),
// each running `while (item = queue.Pop()) handler(item)`. The handler runs on a worker thread
// with no pool lock held, so it may block and may push back into the queue; once the queue is
// closed such a Push returns false instead of blocking, so shutdown cannot deadlock.
//
// Thread-safety: Join() and threads() may be called from any thread, also concurrently. The
// handler is called concurrently from all worker threads and must be thread-safe itself. Never
// call Join() (or destroy the pool) from inside the handler: a worker cannot join itself. The
// queue must outlive the pool, and must be closed for Join() (and so the destructor) to return.
#ifndef HOURGLASS_WORKERS_WORKER_POOL_H_
#define HOURGLASS_WORKERS_WORKER_POOL_H_

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "workers/bounded_queue.h"

namespace hourglass {

template <typename T>
class WorkerPool {
 public:
  using Handler = std::function<void(T item)>;

  // Starts `threads` (>= 1; anything less ends the process, since nothing would ever drain the
  // queue) worker threads that run until `queue` is closed and drained. `queue` is borrowed.
  WorkerPool(std::string name, int threads, BoundedQueue<T>& queue, Handler handler)
      : name_(std::move(name)),
        thread_count_(threads),
        queue_(queue),
        handler_(std::move(handler)) {
    if (thread_count_ < 1) {
      std::fprintf(stderr, "hourglass::WorkerPool %s: threads must be >= 1, got %d\n",
                   name_.c_str(), thread_count_);
      std::abort();
    }
    absl::MutexLock lock(&join_mu_);
    workers_.reserve(thread_count_);
    for (int i = 0; i < thread_count_; ++i) {
      workers_.emplace_back([this, i] { Run(i); });
    }
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  ~WorkerPool() { Join(); }

  // Blocks until every worker has exited, which they do once the queue is closed and drained.
  // Idempotent; concurrent callers all return once the workers are gone.
  void Join() ABSL_LOCKS_EXCLUDED(join_mu_) {
    // Joining under join_mu_ is deliberate: a second caller must not return while the first
    // is still waiting for the threads. Workers never take join_mu_, so this cannot deadlock.
    absl::MutexLock lock(&join_mu_);
    for (std::thread& worker : workers_) {
      if (worker.joinable()) worker.join();
    }
    workers_.clear();
  }

  int threads() const { return thread_count_; }

 private:
  void Run(int index) {
    // Linux limits thread names to 15 characters plus the terminating NUL.
    const std::string thread_name = (name_ + "-" + std::to_string(index)).substr(0, 15);
    pthread_setname_np(pthread_self(), thread_name.c_str());
    while (std::optional<T> item = queue_.Pop()) {
      handler_(std::move(*item));
    }
  }

  // Constant after construction.
  const std::string name_;
  const int thread_count_;
  BoundedQueue<T>& queue_;
  const Handler handler_;

  // Guarded by join_mu_.
  absl::Mutex join_mu_;
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_WORKER_POOL_H_
