// SchedulerServiceImpl: hourglass.v1.SchedulerService over the TaskStore (gRPC callback API).
// Every handler validates, applies one store operation and finishes at once: no handler blocks.
// Thread-safe.
#ifndef HOURGLASS_SERVICE_SCHEDULER_SERVICE_H_
#define HOURGLASS_SERVICE_SCHEDULER_SERVICE_H_

#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "service/rpc.h"
#include "service/validation.h"
#include "store/task_store.h"

namespace hourglass {

// ScheduleBatch takes its request as bytes: a batch beyond its limit is refused before it is
// parsed (ParseBatchRequest).
class SchedulerServiceImpl final : public v1::SchedulerService::WithRawCallbackMethod_ScheduleBatch<
                                       v1::SchedulerService::CallbackService> {
 public:
  SchedulerServiceImpl(RpcContext& context, TaskStore& store, Limits limits)
      : context_(context), store_(store), limits_(limits) {}

  grpc::ServerUnaryReactor* Schedule(grpc::CallbackServerContext* ctx,
                                     const v1::ScheduleRequest* request,
                                     v1::ScheduleResponse* response) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx,
                                   const v1::CancelRequest* request,
                                   v1::CancelResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override;
  grpc::ServerUnaryReactor* Reschedule(grpc::CallbackServerContext* ctx,
                                       const v1::RescheduleRequest* request,
                                       v1::RescheduleResponse* response) override;
  grpc::ServerUnaryReactor* ScheduleBatch(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* request_bytes,
                                          grpc::ByteBuffer* response_bytes) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* ctx,
                                      const v1::ListTasksRequest* request,
                                      v1::ListTasksResponse* response) override;
  grpc::ServerUnaryReactor* RetryTask(grpc::CallbackServerContext* ctx,
                                      const v1::RetryTaskRequest* request,
                                      v1::RetryTaskResponse* response) override;

 private:
  // Each Do* sets *lsn to the log record of its change, if it made one.
  absl::Status DoSchedule(const v1::ScheduleRequest& request, v1::ScheduleResponse* response,
                          uint64_t* lsn);
  absl::Status DoCancel(const v1::CancelRequest& request, v1::CancelResponse* response,
                        uint64_t* lsn);
  absl::Status DoGetStatus(const v1::GetStatusRequest& request, v1::GetStatusResponse* response);
  absl::Status DoReschedule(const v1::RescheduleRequest& request, v1::RescheduleResponse* response,
                            uint64_t* lsn);

  // Constant after construction.
  RpcContext& context_;
  TaskStore& store_;
  const Limits limits_;
};

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_SCHEDULER_SERVICE_H_
