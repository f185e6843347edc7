// ConsumerServiceImpl: hourglass.v1.ConsumerService (pull delivery) over the TaskStore and the
// PullDeliverer (gRPC callback API).
//
// A Lease with a wait and nothing ready parks its reactor in the PullDeliverer: no thread waits.
// It is finished by the worker that makes a task of its queue READY, by its wait deadline (a timer
// in the wheel), by the client's cancellation, or at shutdown. Thread-safe.
#ifndef HOURGLASS_SERVICE_CONSUMER_SERVICE_H_
#define HOURGLASS_SERVICE_CONSUMER_SERVICE_H_

#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "service/rpc.h"
#include "service/validation.h"
#include "store/task_store.h"
#include "workers/pull_deliverer.h"

namespace hourglass {

// AckBatch takes its request as bytes: a batch beyond its limit is refused before it is parsed
// (ParseBatchRequest).
class ConsumerServiceImpl final : public v1::ConsumerService::WithRawCallbackMethod_AckBatch<
                                      v1::ConsumerService::CallbackService> {
 public:
  ConsumerServiceImpl(RpcContext& context, TaskStore& store, PullDeliverer& pull, Limits limits)
      : context_(context), store_(store), pull_(pull), limits_(limits) {}

  grpc::ServerUnaryReactor* Lease(grpc::CallbackServerContext* ctx, const v1::LeaseRequest* request,
                                  v1::LeaseResponse* response) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* ctx, const v1::AckRequest* request,
                                v1::AckResponse* response) override;
  grpc::ServerUnaryReactor* Nack(grpc::CallbackServerContext* ctx, const v1::NackRequest* request,
                                 v1::NackResponse* response) override;
  grpc::ServerUnaryReactor* ExtendLease(grpc::CallbackServerContext* ctx,
                                        const v1::ExtendLeaseRequest* request,
                                        v1::ExtendLeaseResponse* response) override;
  grpc::ServerUnaryReactor* AckBatch(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request_bytes,
                                     grpc::ByteBuffer* response_bytes) override;

 private:
  class LeaseCall;

  // One Ack: sets *lsn to its record.
  absl::Status DoAck(const v1::AckRequest& request, uint64_t* lsn);

  // Constant after construction.
  RpcContext& context_;
  TaskStore& store_;
  PullDeliverer& pull_;
  const Limits limits_;
};

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_CONSUMER_SERVICE_H_
