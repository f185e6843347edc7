// What every hourglass RPC handler shares: the one place where absl::Status becomes grpc::Status,
// the RPC metrics and log line of a finished call, and the conversion of store types to protos.
#ifndef HOURGLASS_SERVICE_RPC_H_
#define HOURGLASS_SERVICE_RPC_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/task.pb.h"
#include "service/metrics.h"
#include "store/task_store.h"
#include "store/wal.h"
#include "wheel/clock.h"

namespace hourglass {

// absl's codes are gRPC's codes: the mapping is one to one.
grpc::Status ToGrpcStatus(const absl::Status& status);

// State shared by the services: constant after construction but for the shutdown state and the
// count of calls in flight.
struct RpcContext {
  RpcContext(Clock& c, Metrics& m) : clock(c), metrics(m) {}

  // Waits until no hourglass RPC is in flight (started and not finished), or until `deadline`.
  // Returns whether none is.
  bool AwaitIdle(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu);

  Clock& clock;
  Metrics& metrics;
  Wal* wal = nullptr;  // null: no log, changes are answered at once
  std::atomic<bool> shutting_down{false};

  absl::Mutex mu;
  int64_t in_flight ABSL_GUARDED_BY(mu) = 0;
};

// One RPC in flight: started when the handler runs, finished exactly once with Finish(); counted
// in RpcContext::in_flight in between.
class RpcCall {
 public:
  RpcCall(RpcContext& context, absl::string_view service, absl::string_view method);

  // UNAVAILABLE while the server shuts down, OK otherwise.
  absl::Status CheckServing() const;

  // Records the RPC's metrics, logs failures, and finishes `reactor` with `status`.
  void Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status) const;
  // Finish(), once the log record `lsn` is durable (at once for 0, an error or no log).
  void FinishWhenDurable(grpc::ServerUnaryReactor* reactor, const absl::Status& status,
                         uint64_t lsn) const;

 private:
  RpcContext& context_;
  const absl::string_view service_;
  const absl::string_view method_;
  const absl::Duration start_;
};

// Runs a unary handler whose work is synchronous: refuses it while shutting down, else runs
// `body(uint64_t* lsn)` (returning absl::Status and setting *lsn when it changed state), then
// finishes the call with metrics once the change is durable.
template <typename Body>
grpc::ServerUnaryReactor* RunUnary(RpcContext& context, absl::string_view service,
                                   absl::string_view method, grpc::CallbackServerContext* ctx,
                                   Body body) {
  RpcCall call(context, service, method);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status status = call.CheckServing();
  uint64_t lsn = 0;
  if (status.ok()) status = body(&lsn);
  call.FinishWhenDurable(reactor, status, lsn);
  return reactor;
}

v1::TaskState ToProto(TaskState state);
void ToProto(const TaskInfo& info, v1::Task* proto);
void ToProto(const LeasedTask& task, v1::LeasedTask* proto);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_RPC_H_
