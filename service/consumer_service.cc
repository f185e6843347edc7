#include "service/consumer_service.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "service/logging.h"
#include "service/parse_errors.h"

namespace hourglass {

namespace {
constexpr absl::string_view kService = "hourglass.v1.ConsumerService";
}  // namespace

// One Lease call: a reactor that can wait in the PullDeliverer. It deletes itself in OnDone(),
// after gRPC has finished with it.
//
// A Lease is answered as soon as the tasks are taken, without waiting for its log record's sync
// (which the next group commit carries): a lease only decides when a task is handed out again,
// and waiting would add a sync to every task's lateness. If the server dies before that sync,
// the lease is forgotten and the task handed out again (at-least-once, docs/durability.md). An
// Ack, Nack or ExtendLease of it waits for its own record, which the log orders after the lease.
class ConsumerServiceImpl::LeaseCall final : public grpc::ServerUnaryReactor, public LeaseWaiter {
 public:
  LeaseCall(ConsumerServiceImpl& service, LeaseParams params, v1::LeaseResponse* response)
      : service_(service),
        rpc_(service.context_, kService, "Lease"),
        params_(std::move(params)),
        response_(response) {}

  // Runs in the handler: answers at once, or parks until its wait ends.
  void Start() {
    if (params_.wait <= absl::ZeroDuration()) {
      TryTake();
      rpc_.Finish(this, absl::OkStatus());
      return;
    }
    const absl::Time deadline = service_.context_.clock.Now() + params_.wait;
    switch (service_.pull_.Wait(this, params_.queue, deadline)) {
      case PullDeliverer::WaitResult::kTaken:
        rpc_.Finish(this, absl::OkStatus());
        break;
      case PullDeliverer::WaitResult::kRefused:
        rpc_.Finish(this, absl::UnavailableError("the server is shutting down; retry on another "
                                                 "instance"));
        break;
      case PullDeliverer::WaitResult::kParked:
        break;  // Finish() comes from the PullDeliverer.
    }
  }

  bool TryTake() override {
    std::vector<LeasedTask> leased =
        service_.store_.Lease(params_.queue, params_.max_tasks, params_.lease_duration);
    if (leased.empty()) return false;
    for (const LeasedTask& task : leased) ToProto(task, response_->add_tasks());
    service_.context_.metrics.Leased(params_.queue, static_cast<int64_t>(leased.size()));
    return true;
  }

  void Finish(End end) override {
    switch (end) {
      case End::kTaken:
      case End::kTimedOut:
        rpc_.Finish(this, absl::OkStatus());
        break;
      case End::kCancelled:
        rpc_.Finish(this, absl::CancelledError("the client cancelled the Lease"));
        break;
      case End::kShutdown:
        rpc_.Finish(this, absl::UnavailableError("the server is shutting down; retry on another "
                                                 "instance"));
        break;
    }
  }

  void OnCancel() override { service_.pull_.Cancel(this); }
  void OnDone() override { delete this; }

 private:
  ConsumerServiceImpl& service_;
  const RpcCall rpc_;
  const LeaseParams params_;
  v1::LeaseResponse* const response_;
};

grpc::ServerUnaryReactor* ConsumerServiceImpl::Lease(grpc::CallbackServerContext* ctx,
                                                     const v1::LeaseRequest* request,
                                                     v1::LeaseResponse* response) {
  // The token first (UNAUTHENTICATED), then the request (INVALID_ARGUMENT), then `consume` on its
  // queue (PERMISSION_DENIED), as RunUnary does.
  absl::StatusOr<LeaseParams> params = absl::UnauthenticatedError("");
  absl::StatusOr<Caller> caller = AuthenticateCall(context_, *ctx);
  absl::Status refused = caller.status();
  if (refused.ok()) refused = CheckFieldWireTypes(*request);
  if (refused.ok()) {
    params = ValidateLease(*request);
    refused = params.status();
  }
  if (refused.ok()) refused = caller->Check(params->queue, Permission::kConsume);
  if (!refused.ok() || context_.shutting_down.load(std::memory_order_relaxed)) {
    // RunUnary answers UNAVAILABLE while shutting down, else the refusal.
    return RunUnary(context_, kService, "Lease", ctx, *request,
                    [&](const Caller&, uint64_t*) { return refused; });
  }
  auto* call = new LeaseCall(*this, *std::move(params), response);
  call->Start();
  return call;
}

grpc::ServerUnaryReactor* ConsumerServiceImpl::Ack(grpc::CallbackServerContext* ctx,
                                                   const v1::AckRequest* request,
                                                   v1::AckResponse* /*response*/) {
  return RunUnary(
      context_, kService, "Ack", ctx, *request, [&](const Caller& caller, uint64_t* lsn) {
        if (absl::Status s =
                CheckTaskAccess(store_, caller, request->task_id(), Permission::kConsume);
            !s.ok()) {
          return s;
        }
        return DoAck(*request, lsn);
      });
}

absl::Status ConsumerServiceImpl::DoAck(const v1::AckRequest& request, uint64_t* lsn) {
  if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
  absl::StatusOr<TaskInfo> info = store_.Ack(request.task_id(), request.lease_token(), lsn);
  if (!info.ok()) return info.status();
  context_.metrics.Delivered(info->queue, Metrics::Outcome::kSucceeded);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ConsumerServiceImpl::AckBatch(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* request_bytes,
                                                        grpc::ByteBuffer* response_bytes) {
  // Both live until RunUnary returns: the body runs within it, and leaves the answer in
  // response_bytes (a Finish that waits for the log sends what is there).
  v1::AckBatchRequest parsed_request;
  v1::AckBatchResponse batch_response;
  const v1::AckBatchRequest* request = &parsed_request;
  v1::AckBatchResponse* response = &batch_response;
  const absl::Status parsed = ParseBatchRequest(
      *request_bytes, v1::AckBatchRequest::kAcksFieldNumber, "acks", &parsed_request);
  return RunUnary(context_, kService, "AckBatch", ctx, *request,
                  [&](const Caller& caller, uint64_t* lsn) -> absl::Status {
                    if (!parsed.ok()) return parsed;
                    if (absl::Status s = ValidateBatchSize("acks", request->acks_size()); !s.ok())
                      return s;
                    // One group commit covers the batch: it is answered once the last record is
                    // durable.
                    for (const v1::AckRequest& ack : request->acks()) {
                      v1::AckResult* result = response->add_results();
                      uint64_t item_lsn = 0;
                      // Per item: NOT_FOUND for another tenant's task, PERMISSION_DENIED without
                      // `consume`.
                      absl::Status status =
                          CheckTaskAccess(store_, caller, ack.task_id(), Permission::kConsume);
                      if (status.ok()) status = DoAck(ack, &item_lsn);
                      result->set_code(static_cast<int32_t>(status.code()));
                      if (!status.ok()) result->set_message(std::string(status.message()));
                      *lsn = std::max(*lsn, item_lsn);
                    }
                    SerializeResponse(*response, response_bytes);
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* ConsumerServiceImpl::Nack(grpc::CallbackServerContext* ctx,
                                                    const v1::NackRequest* request,
                                                    v1::NackResponse* response) {
  return RunUnary(context_, kService, "Nack", ctx, *request,
                  [&](const Caller& caller, uint64_t* lsn) -> absl::Status {
                    absl::StatusOr<NackParams> params = ValidateNack(*request, limits_);
                    if (!params.ok()) return params.status();
                    if (absl::Status s = CheckTaskAccess(store_, caller, request->task_id(),
                                                         Permission::kConsume);
                        !s.ok()) {
                      return s;
                    }
                    absl::StatusOr<TaskInfo> info =
                        store_.Nack(request->task_id(), request->lease_token(), params->retry_delay,
                                    std::move(params->error), lsn);
                    if (!info.ok()) return info.status();
                    context_.metrics.Delivered(info->queue, info->state == TaskState::kDead
                                                                ? Metrics::Outcome::kDead
                                                                : Metrics::Outcome::kRetried);
                    ToProto(*info, response->mutable_task());
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* ConsumerServiceImpl::ExtendLease(grpc::CallbackServerContext* ctx,
                                                           const v1::ExtendLeaseRequest* request,
                                                           v1::ExtendLeaseResponse* response) {
  return RunUnary(context_, kService, "ExtendLease", ctx, *request,
                  [&](const Caller& caller, uint64_t* lsn) -> absl::Status {
                    absl::StatusOr<absl::Duration> lease_duration = ValidateExtendLease(*request);
                    if (!lease_duration.ok()) return lease_duration.status();
                    if (absl::Status s = CheckTaskAccess(store_, caller, request->task_id(),
                                                         Permission::kConsume);
                        !s.ok()) {
                      return s;
                    }
                    absl::StatusOr<absl::Time> expire = store_.ExtendLease(
                        request->task_id(), request->lease_token(), *lease_duration, lsn);
                    if (!expire.ok()) return expire.status();
                    *response->mutable_lease_expire_time() = ToProto(*expire);
                    return absl::OkStatus();
                  });
}

}  // namespace hourglass
