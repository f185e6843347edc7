#include "service/rpc.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/logging.h"
#include "service/validation.h"

namespace hourglass {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

void RecordRpc(Metrics& metrics, absl::string_view service, absl::string_view method,
               const absl::Status& status, absl::Duration elapsed) {
  metrics.RpcHandled(service, method, static_cast<int>(status.code()), elapsed);
  if (!status.ok() && LogEnabled(LogLevel::kDebug)) {
    LogDebug("rpc_failed")
        .Str("method", method)
        .Str("code", absl::StatusCodeToString(status.code()))
        .Str("message", status.message());
  }
}

absl::StatusOr<Caller> AuthenticateCall(const RpcContext& context,
                                        const grpc::ServerContextBase& ctx) {
  if (context.tokens == nullptr) return Caller::Anyone();
  std::vector<absl::string_view> authorization;
  const auto [begin, end] = ctx.client_metadata().equal_range("authorization");
  for (auto it = begin; it != end; ++it) {
    authorization.emplace_back(it->second.data(), it->second.size());
  }
  return Authenticate(context.tokens, authorization);
}

absl::Status CheckTaskAccess(const TaskStore& store, const Caller& caller,
                             absl::string_view task_id, std::optional<Permission> permission) {
  if (!caller.authenticated()) return absl::OkStatus();
  absl::StatusOr<TaskInfo> info = store.Get(task_id);
  if (!info.ok()) return absl::OkStatus();  // the store operation answers NOT_FOUND
  if (!caller.Sees(info->queue)) {
    // Word for word the store's answer for an unknown id (server_test checks it).
    return absl::NotFoundError(absl::StrCat("no task with task_id \"", task_id, "\""));
  }
  if (permission.has_value()) return caller.Check(info->queue, *permission);
  return absl::OkStatus();
}

bool RpcContext::AwaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return in_flight == 0; };
  return mu.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

RpcCall::RpcCall(RpcContext& context, absl::string_view service, absl::string_view method)
    : context_(context), service_(service), method_(method), start_(context.clock.Monotonic()) {
  absl::MutexLock lock(&context_.mu);
  ++context_.in_flight;
}

void RpcCall::FinishWhenDurable(grpc::ServerUnaryReactor* reactor, const absl::Status& status,
                                uint64_t lsn) const {
  if (context_.wal == nullptr || lsn == 0 || !status.ok()) {
    Finish(reactor, status);
    return;
  }
  // The copy of this call finishes it; this one is done with.
  context_.wal->WhenDurable(lsn, [call = *this, reactor, status] { call.Finish(reactor, status); });
}

absl::Status RpcCall::CheckServing() const {
  if (context_.shutting_down.load(std::memory_order_relaxed)) {
    return absl::UnavailableError("the server is shutting down; retry on another instance");
  }
  return absl::OkStatus();
}

void RpcCall::Finish(grpc::ServerUnaryReactor* reactor, const absl::Status& status) const {
  RecordRpc(context_.metrics, service_, method_, status, context_.clock.Monotonic() - start_);
  // Once reactor->Finish() returns, OnDone() may have run on another thread and deleted the
  // reactor, and with it this call when it is the reactor's member (a Lease): nothing of `this`
  // is touched after it (found by ASan in ParkedLeaseIsAnsweredUnavailableAtShutdown).
  RpcContext& context = context_;
  reactor->Finish(ToGrpcStatus(status));
  absl::MutexLock lock(&context.mu);
  --context.in_flight;
}

v1::TaskState ToProto(TaskState state) { return static_cast<v1::TaskState>(state); }

void ToProto(const TaskInfo& info, v1::Task* proto) {
  proto->set_task_id(info.task_id);
  proto->set_queue(info.queue);
  proto->set_state(ToProto(info.state));
  proto->set_attempts(info.attempts);
  *proto->mutable_due_time() = ToProto(info.due_time);
  *proto->mutable_create_time() = ToProto(info.create_time);
  proto->set_last_error(info.last_error);
  v1::RetryPolicy* policy = proto->mutable_retry_policy();
  policy->set_max_attempts(info.retry_policy.max_attempts);
  *policy->mutable_min_backoff() = ToProto(info.retry_policy.min_backoff);
  *policy->mutable_max_backoff() = ToProto(info.retry_policy.max_backoff);
  proto->set_payload_size_bytes(info.payload_size_bytes);
  if (info.lease_expire_time)
    *proto->mutable_lease_expire_time() = ToProto(*info.lease_expire_time);
  if (info.finish_time) *proto->mutable_finish_time() = ToProto(*info.finish_time);
  if (info.target.has_value()) {
    const PushTarget& target = *info.target;
    if (target.kind == PushTarget::Kind::kHttp) {
      // Not the headers: they often hold credentials.
      proto->mutable_http_target()->set_url(target.url);
    } else {
      v1::GrpcTarget* grpc = proto->mutable_grpc_target();
      grpc->set_address(target.address);
      grpc->set_method(target.method);
      grpc->set_tls(target.tls);
    }
    *proto->mutable_dispatch_deadline() = ToProto(target.dispatch_deadline);
  }
}

void ToProto(const LeasedTask& task, v1::LeasedTask* proto) {
  proto->set_task_id(task.task_id);
  proto->set_queue(task.queue);
  proto->set_payload(task.payload);
  for (const auto& [key, value] : task.headers) (*proto->mutable_headers())[key] = value;
  proto->set_attempt(task.attempt);
  *proto->mutable_due_time() = ToProto(task.due_time);
  proto->set_lease_token(task.lease_token);
  *proto->mutable_lease_expire_time() = ToProto(task.lease_expire_time);
}

}  // namespace hourglass
