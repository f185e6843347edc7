// How hourglassctl prints responses: text for people, JSON for scripts.
//
// Text is "key  value" lines aligned on the longest key, one block per task, and a table with
// aligned columns for list. Times print as RFC 3339 UTC with milliseconds and, for people, how
// far they are from `now` ("in 1m30s", "5s ago"); `now` is an argument so that tests can pin it.
// JSON is the response message itself (google::protobuf::util::MessageToJsonString) on one
// line, with the proto's field names (task_id, not taskId), every field present even when it
// holds its default (attempts 0, last_error ""), enums by name and bytes in base64.
//
// Every function is pure and thread-safe.
#ifndef HOURGLASS_TOOLS_HOURGLASSCTL_OUTPUT_H_
#define HOURGLASS_TOOLS_HOURGLASSCTL_OUTPUT_H_

#include <google/protobuf/message.h>
#include <google/protobuf/repeated_field.h>

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "hourglass/v1/task.pb.h"

namespace hourglass::ctl {

// The message as one line of JSON, ending in "\n".
std::string ToJson(const google::protobuf::Message& message);

// "SCHEDULED", "DEAD", ...: the state without its TASK_STATE_ prefix.
std::string StateName(hourglass::v1::TaskState state);

// Bytes as text on one line: printable UTF-8 stays as it is; \n, \r, \t, \\ and the bytes of
// other control characters or invalid UTF-8 become C escapes (\x00).
std::string EscapeForTerminal(absl::string_view bytes);

// schedule: task_id and due_time.
std::string FormatScheduled(const hourglass::v1::ScheduleResponse& response, absl::Time now);

// status, cancel, reschedule, nack, retry: every field the server reported.
std::string FormatTask(const hourglass::v1::Task& task, absl::Time now);

// lease: one block per task (with lease_token, headers and payload), blank lines between;
// "no task ready\n" when there is none.
std::string FormatLeasedTasks(const hourglass::v1::LeaseResponse& response, absl::Time now);

// extend: the task and its new lease expiry.
std::string FormatExtended(absl::string_view task_id,
                           const hourglass::v1::ExtendLeaseResponse& response, absl::Time now);

// list: a table TASK_ID QUEUE STATE ATTEMPTS DUE_TIME LAST_ERROR with aligned columns;
// "no tasks\n" when empty.
std::string FormatTaskTable(const google::protobuf::RepeatedPtrField<hourglass::v1::Task>& tasks);

}  // namespace hourglass::ctl

#endif  // HOURGLASS_TOOLS_HOURGLASSCTL_OUTPUT_H_
