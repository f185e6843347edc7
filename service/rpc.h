// What every hourglass RPC handler shares: the one place where absl::Status becomes grpc::Status,
// the RPC metrics and log line of a finished call, and the conversion of store types to protos.
#ifndef HOURGLASS_SERVICE_RPC_H_
#define HOURGLASS_SERVICE_RPC_H_

#include <atomic>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/task.pb.h"
#include "service/auth.h"
#include "service/metrics.h"
#include "service/validation.h"
#include "store/task_store.h"
#include "store/wal.h"
#include "wheel/clock.h"

namespace hourglass {

// absl's codes are gRPC's codes: the mapping is one to one.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Records a finished RPC: its metrics and, when it failed, a debug log line.
void RecordRpc(Metrics& metrics, absl::string_view service, absl::string_view method,
               const absl::Status& status, absl::Duration elapsed);

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
  // The bearer tokens (--auth_tokens_file); null: no authentication, every call is allowed.
  const TokenFile* tokens = nullptr;
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

// The caller of an RPC, from its `authorization: Bearer <token>` metadata: UNAUTHENTICATED
// without a valid token; Caller::Anyone() when authentication is off.
absl::StatusOr<Caller> AuthenticateCall(const RpcContext& context,
                                        const grpc::ServerContextBase& ctx);

// For the RPCs that name a task: OK when `caller` may act on task `task_id` with `permission`
// (nullopt: any permission, i.e. may see it). A task of a queue the caller has no permission on
// is NOT_FOUND with the message of an unknown id: its existence is not revealed. A task the
// caller sees but lacks `permission` for is PERMISSION_DENIED. Unknown ids are left to the store
// operation (NOT_FOUND). Costs a lookup only when authentication is on.
absl::Status CheckTaskAccess(const TaskStore& store, const Caller& caller,
                             absl::string_view task_id, std::optional<Permission> permission);

// Runs a unary handler whose work is synchronous: refuses it while shutting down, without a
// valid token, or when `request` has a field of the wrong wire type (CheckFieldWireTypes), else
// runs `body(const Caller& caller, uint64_t* lsn)` (returning absl::Status, checking the caller's
// permissions and setting *lsn when it changed state), then finishes the call with metrics once
// the change is durable.
template <typename Body>
grpc::ServerUnaryReactor* RunUnary(RpcContext& context, absl::string_view service,
                                   absl::string_view method, grpc::CallbackServerContext* ctx,
                                   const google::protobuf::Message& request, Body body) {
  RpcCall call(context, service, method);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status status = call.CheckServing();
  uint64_t lsn = 0;
  if (status.ok()) {
    absl::StatusOr<Caller> caller = AuthenticateCall(context, *ctx);
    status = caller.status();
    if (status.ok()) status = CheckFieldWireTypes(request);
    if (status.ok()) status = body(*caller, &lsn);
  }
  call.FinishWhenDurable(reactor, status, lsn);
  return reactor;
}

v1::TaskState ToProto(TaskState state);
void ToProto(const TaskInfo& info, v1::Task* proto);
void ToProto(const LeasedTask& task, v1::LeasedTask* proto);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_RPC_H_
