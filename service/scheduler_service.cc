#include "service/scheduler_service.h"

#include <algorithm>
#include <string>
#include <utility>

#include "service/logging.h"
#include "service/parse_errors.h"

namespace hourglass {

// Overload (--max_pending): a Schedule refused with RESOURCE_EXHAUSTED tells the client when to
// come back, in trailers: `retry-after-ms` (milliseconds, decimal), gRPC's rich error model,
// `grpc-status-details-bin`: a google.rpc.Status carrying a google.rpc.RetryInfo and a
// google.rpc.QuotaFailure, and `grpc-retry-pushback-ms`, which gRPC's built-in retries obey. The
// messages are encoded by hand (a few fields each): Debian ships no C++ code for googleapis'
// protos.
namespace overload {
namespace {

// How long a client refused because the server is full should wait before retrying.
constexpr absl::Duration kRetryDelay = absl::Seconds(1);

void AppendVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}
void AppendVarintField(std::string* out, uint32_t field, uint64_t value) {
  AppendVarint(out, uint64_t{field} << 3);  // wire type 0: varint
  AppendVarint(out, value);
}
void AppendBytesField(std::string* out, uint32_t field, absl::string_view bytes) {
  AppendVarint(out, (uint64_t{field} << 3) | 2);  // wire type 2: length-delimited
  AppendVarint(out, bytes.size());
  out->append(bytes.data(), bytes.size());
}
// A google.protobuf.Any holding `value`, a serialized google.rpc.<type>.
std::string Any(absl::string_view type, absl::string_view value) {
  std::string any;
  AppendBytesField(&any, 1, "type.googleapis.com/google.rpc." + std::string(type));
  AppendBytesField(&any, 2, value);
  return any;
}

// google.rpc.Status{code, message, details: [RetryInfo{retry_delay}, QuotaFailure{violations:
// [{subject: "max_pending", description: message}]}]}.
std::string StatusDetails(const absl::Status& status, absl::Duration retry_delay) {
  std::string duration;  // google.protobuf.Duration{seconds, nanos}, both >= 0 here
  absl::Duration remainder;
  const int64_t seconds = absl::IDivDuration(retry_delay, absl::Seconds(1), &remainder);
  if (seconds != 0) AppendVarintField(&duration, 1, static_cast<uint64_t>(seconds));
  if (const int64_t nanos = absl::ToInt64Nanoseconds(remainder); nanos != 0) {
    AppendVarintField(&duration, 2, static_cast<uint64_t>(nanos));
  }
  std::string retry_info;
  AppendBytesField(&retry_info, 1, duration);
  std::string violation;
  AppendBytesField(&violation, 1, "max_pending");
  AppendBytesField(&violation, 2, status.message());
  std::string quota_failure;
  AppendBytesField(&quota_failure, 1, violation);
  std::string details;
  AppendVarintField(&details, 1, static_cast<uint64_t>(status.code()));
  AppendBytesField(&details, 2, status.message());
  AppendBytesField(&details, 3, Any("RetryInfo", retry_info));
  AppendBytesField(&details, 3, Any("QuotaFailure", quota_failure));
  return details;
}

// Adds the retry hint to a call answered with `status` when it is RESOURCE_EXHAUSTED.
// `with_details`: also grpc-status-details-bin, which describes the call's own status and so only
// fits a call that fails with `status`.
void AddRetryHint(grpc::CallbackServerContext* ctx, const absl::Status& status,
                  bool with_details = true) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return;
  ctx->AddTrailingMetadata("retry-after-ms",
                           std::to_string(absl::ToInt64Milliseconds(kRetryDelay)));
  if (with_details) {
    ctx->AddTrailingMetadata("grpc-status-details-bin", StatusDetails(status, kRetryDelay));
    // gRPC's own retry pushback: a client whose service config retries RESOURCE_EXHAUSTED waits
    // this long before its next attempt (instead of its own backoff).
    ctx->AddTrailingMetadata("grpc-retry-pushback-ms",
                             std::to_string(absl::ToInt64Milliseconds(kRetryDelay)));
  }
}

}  // namespace
}  // namespace overload

namespace {
constexpr absl::string_view kService = "hourglass.v1.SchedulerService";

// Schedule and every item of ScheduleBatch: `schedule` on the request's queue. An invalid queue
// name is left to ValidateSchedule (INVALID_ARGUMENT).
absl::Status CheckSchedule(const Caller& caller, const v1::ScheduleRequest& request) {
  absl::StatusOr<std::string> queue = ValidateQueue(request.queue());
  if (!queue.ok()) return absl::OkStatus();
  return caller.Check(*queue, Permission::kSchedule);
}
}  // namespace

grpc::ServerUnaryReactor* SchedulerServiceImpl::Schedule(grpc::CallbackServerContext* ctx,
                                                         const v1::ScheduleRequest* request,
                                                         v1::ScheduleResponse* response) {
  return RunUnary(context_, kService, "Schedule", ctx, *request,
                  [&](const Caller& caller, uint64_t* lsn) {
                    if (absl::Status s = CheckSchedule(caller, *request); !s.ok()) return s;
                    absl::Status status = DoSchedule(*request, response, lsn);
                    overload::AddRetryHint(ctx, status);
                    return status;
                  });
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::Cancel(grpc::CallbackServerContext* ctx,
                                                       const v1::CancelRequest* request,
                                                       v1::CancelResponse* response) {
  return RunUnary(
      context_, kService, "Cancel", ctx, *request, [&](const Caller& caller, uint64_t* lsn) {
        if (absl::Status s =
                CheckTaskAccess(store_, caller, request->task_id(), Permission::kSchedule);
            !s.ok()) {
          return s;
        }
        return DoCancel(*request, response, lsn);
      });
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::GetStatus(grpc::CallbackServerContext* ctx,
                                                          const v1::GetStatusRequest* request,
                                                          v1::GetStatusResponse* response) {
  return RunUnary(
      context_, kService, "GetStatus", ctx, *request, [&](const Caller& caller, uint64_t*) {
        // Any permission on the task's queue.
        if (absl::Status s = CheckTaskAccess(store_, caller, request->task_id(), std::nullopt);
            !s.ok()) {
          return s;
        }
        return DoGetStatus(*request, response);
      });
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::Reschedule(grpc::CallbackServerContext* ctx,
                                                           const v1::RescheduleRequest* request,
                                                           v1::RescheduleResponse* response) {
  return RunUnary(
      context_, kService, "Reschedule", ctx, *request, [&](const Caller& caller, uint64_t* lsn) {
        if (absl::Status s =
                CheckTaskAccess(store_, caller, request->task_id(), Permission::kSchedule);
            !s.ok()) {
          return s;
        }
        return DoReschedule(*request, response, lsn);
      });
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::ScheduleBatch(grpc::CallbackServerContext* ctx,
                                                              const grpc::ByteBuffer* request_bytes,
                                                              grpc::ByteBuffer* response_bytes) {
  // Both live until RunUnary returns: the body runs within it, and leaves the answer in
  // response_bytes (a Finish that waits for the log sends what is there).
  v1::ScheduleBatchRequest parsed_request;
  v1::ScheduleBatchResponse batch_response;
  const v1::ScheduleBatchRequest* request = &parsed_request;
  v1::ScheduleBatchResponse* response = &batch_response;
  const absl::Status parsed = ParseBatchRequest(
      *request_bytes, v1::ScheduleBatchRequest::kRequestsFieldNumber, "requests", &parsed_request);
  return RunUnary(
      context_, kService, "ScheduleBatch", ctx, *request,
      [&](const Caller& caller, uint64_t* lsn) -> absl::Status {
        if (!parsed.ok()) return parsed;
        if (absl::Status s = ValidateBatchSize("requests", request->requests_size()); !s.ok()) {
          return s;
        }
        // Every item is its own Schedule; the batch is answered once the last record is durable, so
        // one group commit covers them all.
        bool hinted = false;  // retry-after-ms added
        for (const v1::ScheduleRequest& item : request->requests()) {
          v1::ScheduleResult* result = response->add_results();
          uint64_t item_lsn = 0;
          absl::Status status = CheckSchedule(caller, item);  // per item: PERMISSION_DENIED
          if (status.ok()) status = DoSchedule(item, result->mutable_response(), &item_lsn);
          result->set_code(static_cast<int32_t>(status.code()));
          if (!status.ok()) {
            result->set_message(std::string(status.message()));
            result->clear_response();
          }
          // The batch itself succeeds: retry-after-ms (once) tells when to resend refused items.
          if (status.code() == absl::StatusCode::kResourceExhausted && !hinted) {
            overload::AddRetryHint(ctx, status, /*with_details=*/false);
            hinted = true;
          }
          *lsn = std::max(*lsn, item_lsn);
        }
        SerializeResponse(*response, response_bytes);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::ListTasks(grpc::CallbackServerContext* ctx,
                                                          const v1::ListTasksRequest* request,
                                                          v1::ListTasksResponse* response) {
  return RunUnary(context_, kService, "ListTasks", ctx, *request,
                  [&](const Caller& caller, uint64_t*) -> absl::Status {
                    absl::StatusOr<ListParams> params = ValidateList(*request);
                    if (!params.ok()) return params.status();
                    // Without a queue filter the list spans every queue: only for admins of every
                    // queue (*).
                    if (absl::Status s = params->queue.empty()
                                             ? caller.CheckEveryQueue(Permission::kAdmin)
                                             : caller.Check(params->queue, Permission::kAdmin);
                        !s.ok()) {
                      return s;
                    }
                    TaskPage page = store_.List(params->queue, params->state, params->page_size,
                                                params->cursor);
                    for (const TaskInfo& info : page.tasks) ToProto(info, response->add_tasks());
                    response->set_next_page_token(ListPageToken(*params, page.next_cursor));
                    return absl::OkStatus();
                  });
}

grpc::ServerUnaryReactor* SchedulerServiceImpl::RetryTask(grpc::CallbackServerContext* ctx,
                                                          const v1::RetryTaskRequest* request,
                                                          v1::RetryTaskResponse* response) {
  return RunUnary(context_, kService, "RetryTask", ctx, *request,
                  [&](const Caller& caller, uint64_t* lsn) -> absl::Status {
                    if (absl::Status s = ValidateTaskId(request->task_id()); !s.ok()) return s;
                    if (absl::Status s =
                            CheckTaskAccess(store_, caller, request->task_id(), Permission::kAdmin);
                        !s.ok()) {
                      return s;
                    }
                    absl::StatusOr<TaskInfo> info = store_.Retry(request->task_id(), lsn);
                    if (!info.ok()) return info.status();
                    LogInfo("task_retried").Str("task_id", info->task_id).Str("queue", info->queue);
                    ToProto(*info, response->mutable_task());
                    return absl::OkStatus();
                  });
}

absl::Status SchedulerServiceImpl::DoSchedule(const v1::ScheduleRequest& request,
                                              v1::ScheduleResponse* response, uint64_t* lsn) {
  absl::StatusOr<NewTask> task = ValidateSchedule(request, limits_, context_.clock.Now());
  if (!task.ok()) return task.status();
  const std::string queue = task->queue;
  absl::StatusOr<ScheduleResult> result = store_.Schedule(*std::move(task), lsn);
  if (!result.ok()) {
    // The store's only RESOURCE_EXHAUSTED: it holds --max_pending unfinished tasks.
    if (result.status().code() == absl::StatusCode::kResourceExhausted) {
      context_.metrics.Rejected("max_pending");
    }
    return result.status();
  }
  if (result->created) {
    context_.metrics.Scheduled(queue);
    if (LogEnabled(LogLevel::kDebug)) {
      LogDebug("task_scheduled")
          .Str("task_id", result->task_id)
          .Str("queue", queue)
          .Str("due_time", absl::FormatTime(result->due_time));
    }
  }
  response->set_task_id(result->task_id);
  *response->mutable_due_time() = ToProto(result->due_time);
  return absl::OkStatus();
}

absl::Status SchedulerServiceImpl::DoCancel(const v1::CancelRequest& request,
                                            v1::CancelResponse* response, uint64_t* lsn) {
  if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
  absl::StatusOr<TaskInfo> info = store_.Cancel(request.task_id(), lsn);
  if (!info.ok()) return info.status();
  context_.metrics.Cancelled(info->queue);
  if (LogEnabled(LogLevel::kDebug)) {
    LogDebug("task_cancelled").Str("task_id", info->task_id).Str("queue", info->queue);
  }
  ToProto(*info, response->mutable_task());
  return absl::OkStatus();
}

absl::Status SchedulerServiceImpl::DoGetStatus(const v1::GetStatusRequest& request,
                                               v1::GetStatusResponse* response) {
  if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
  absl::StatusOr<TaskInfo> info = store_.Get(request.task_id());
  if (!info.ok()) return info.status();
  ToProto(*info, response->mutable_task());
  return absl::OkStatus();
}

absl::Status SchedulerServiceImpl::DoReschedule(const v1::RescheduleRequest& request,
                                                v1::RescheduleResponse* response, uint64_t* lsn) {
  absl::StatusOr<absl::Time> due = ValidateReschedule(request, limits_, context_.clock.Now());
  if (!due.ok()) return due.status();
  absl::StatusOr<TaskInfo> info = store_.Reschedule(request.task_id(), *due, lsn);
  if (!info.ok()) return info.status();
  ToProto(*info, response->mutable_task());
  return absl::OkStatus();
}

}  // namespace hourglass
