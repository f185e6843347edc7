// Request validation: turns hourglass.v1 requests into the store's types, or into an
// InvalidArgument status whose message names the field and the limit ("delay must be >= 0, got
// -5s"). Nothing a client sends gets past here unchecked. Pure functions; thread-safe.
#ifndef HOURGLASS_SERVICE_VALIDATION_H_
#define HOURGLASS_SERVICE_VALIDATION_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/io/zero_copy_stream.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "store/task_store.h"
#include "workers/address_policy.h"

namespace hourglass {

// Limits set by flags.
struct Limits {
  int64_t max_payload_bytes = int64_t{1} << 20;
  absl::Duration max_delay = absl::Hours(24 * 730);
  // Push targets whose host is an address literal (or localhost) are judged by it at Schedule;
  // null: no such check (every address is judged again when it is connected to).
  const AddressPolicy* push_policy = nullptr;
};

inline constexpr absl::string_view kDefaultQueue = "default";
inline constexpr size_t kMaxQueueNameBytes = 200;
inline constexpr size_t kMaxTaskIdBytes = 200;
inline constexpr size_t kMaxHeaders = 64;
inline constexpr size_t kMaxHeaderKeyBytes = 256;
inline constexpr size_t kMaxHeaderValueBytes = 4096;
inline constexpr size_t kMaxErrorBytes = 4096;
inline constexpr int kMaxLeaseTasks = 1000;
inline constexpr int kMaxBatchItems = 1000;

// A batch's length: 1 to kMaxBatchItems (`field` names it in the message).
absl::Status ValidateBatchSize(absl::string_view field, int size);

// Every field of `request` (and of the messages in it) that the client sent was sent with its
// .proto type's wire type. protobuf's parser keeps a field of a known number but the wrong wire
// type (a varint where a string is) as an unknown field and leaves the field itself unset, so
// such a request would otherwise act as if the field were empty (a task in the "default" queue).
// InvalidArgument naming the field, its number, the wire type sent and the type expected. Fields
// of unknown numbers (a newer client's) are ignored, as protobuf intends.
absl::Status CheckFieldWireTypes(const google::protobuf::Message& request);

// How many times the length-delimited field `field_number` occurs at the top level of the
// serialized message read from `input`, found without parsing any of them (the batch methods
// count their items this way before parsing them); nullopt when the bytes are not wire format (a
// message that scans may still not parse, e.g. for invalid UTF-8 in an item). Whenever the bytes
// parse, the count is the length of the repeated field.
std::optional<int64_t> CountTopLevelField(google::protobuf::io::ZeroCopyInputStream* input,
                                          int field_number);
inline constexpr int32_t kMaxAttemptsLimit = 1000;
inline const absl::Duration kDefaultLeaseDuration = absl::Seconds(30);
inline const absl::Duration kMinLeaseDuration = absl::Seconds(1);
inline const absl::Duration kMaxLeaseDuration = absl::Hours(12);
inline const absl::Duration kMaxLeaseWait = absl::Seconds(60);
inline const absl::Duration kMaxBackoffLimit = absl::Hours(24 * 30);
inline const absl::Duration kDefaultDispatchDeadline = absl::Seconds(30);
inline const absl::Duration kMinDispatchDeadline = absl::Milliseconds(100);
inline const absl::Duration kMaxDispatchDeadline = absl::Minutes(30);
inline constexpr int kDefaultListPageSize = 100;
inline constexpr int kMaxListPageSize = 1000;

// The queue to use: `queue`, or "default" when empty. InvalidArgument unless [A-Za-z0-9._-]{1,200}.
absl::StatusOr<std::string> ValidateQueue(absl::string_view queue);
// A task id of a request naming an existing task: 1 to 200 printable ASCII bytes.
absl::Status ValidateTaskId(absl::string_view task_id);

absl::StatusOr<NewTask> ValidateSchedule(const v1::ScheduleRequest& request, const Limits& limits,
                                         absl::Time now);
// The new due time of a Reschedule.
absl::StatusOr<absl::Time> ValidateReschedule(const v1::RescheduleRequest& request,
                                              const Limits& limits, absl::Time now);

// A ListTasks request: the filter, and where to start (the store's cursor). The page token is
// bound to its filter: a token of another listing is INVALID_ARGUMENT.
struct ListParams {
  std::string queue;  // empty: every queue
  std::optional<TaskState> state;
  size_t page_size = kDefaultListPageSize;
  uint64_t cursor = 0;
};
absl::StatusOr<ListParams> ValidateList(const v1::ListTasksRequest& request);
// The next_page_token for a listing with `params` that continues at `cursor` ("" when 0).
std::string ListPageToken(const ListParams& params, uint64_t cursor);

struct LeaseParams {
  std::string queue;
  int max_tasks = 1;
  absl::Duration lease_duration;
  absl::Duration wait;
};
absl::StatusOr<LeaseParams> ValidateLease(const v1::LeaseRequest& request);

struct NackParams {
  std::optional<absl::Duration> retry_delay;
  std::string error;
};
absl::StatusOr<NackParams> ValidateNack(const v1::NackRequest& request, const Limits& limits);
absl::StatusOr<absl::Duration> ValidateExtendLease(const v1::ExtendLeaseRequest& request);

// Conversions between protobuf well-known types and absl, checking the ranges the protobuf
// documentation sets (InvalidArgument naming `field` otherwise).
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         absl::string_view field);
absl::StatusOr<absl::Time> FromProto(const google::protobuf::Timestamp& t, absl::string_view field);
google::protobuf::Duration ToProto(absl::Duration d);
google::protobuf::Timestamp ToProto(absl::Time t);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_VALIDATION_H_
