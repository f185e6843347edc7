// Deliverer: what happens to a task once it is due and READY.
//
// The worker pool hands every READY task to the Deliverer of its kind. Pull delivery
// (PullDeliverer) offers it to the consumers parked in Lease; push delivery (HTTP, gRPC) calls the
// task's endpoint. Deliverers are called from worker threads, never under a lock.
#ifndef HOURGLASS_WORKERS_DELIVERER_H_
#define HOURGLASS_WORKERS_DELIVERER_H_

#include <string>

namespace hourglass {

// A task that has just become READY.
struct ReadyTask {
  std::string task_id;
  std::string queue;
};

// Implementations are thread-safe.
class Deliverer {
 public:
  virtual ~Deliverer() = default;
  virtual void Deliver(const ReadyTask& task) = 0;
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_DELIVERER_H_
