// request_fuzzer: arbitrary bytes as an hourglass.v1 request, through the service's validation
// (service/validation.h) and into a TaskStore on a fake clock and fake timers, as the gRPC
// services would take it.
//
// The first byte picks the message (its value modulo 5), the rest is parsed with ParseFromArray
// and, as the services do before validating, refused when a known field has the wrong wire type
// (CheckFieldWireTypes); a ScheduleBatchRequest's items are also counted without parsing
// (CountTopLevelField, as the service does first), which must agree with the parser:
//   0 ScheduleRequest       validated, scheduled, then delivered (pull or push) as time passes
//   1 ScheduleBatchRequest  its size checked, every item validated and scheduled
//   2 LeaseRequest          validated; a ready task of its queue is leased with its parameters
//   3 NackRequest           validated; a task leased under its id is nacked with its parameters
//   4 ListTasksRequest      validated; the store is listed with it; page tokens round-trip
// What is checked: validation answers INVALID_ARGUMENT with a message or a request the store
// accepts; what it lets through stays within the documented limits; the store never refuses a
// validated request (beyond ALREADY_EXISTS for a repeated id); the store's log records replay into
// the same tasks. Never a crash, a leak or undefined behaviour (ASan, UBSan).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/stubs/logging.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "service/validation.h"
#include "store/task_store.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/testing/fake_clock.h"
#include "workers/address_policy.h"

namespace hourglass {
namespace {

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = static_cast<unsigned char>(s[i]);
    size_t length = 0;
    if (lead < 0x80) {
      length = 1;
    } else if ((lead & 0xE0) == 0xC0 && lead >= 0xC2) {
      length = 2;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
    } else if ((lead & 0xF8) == 0xF0 && lead <= 0xF4) {
      length = 4;
    } else {
      return false;
    }
    if (i + length > s.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

// What gRPC itself accepts as metadata (a non-conforming pair aborts a gRPC call or the process)
// and what an HTTP/1.1 request can carry without breaking its framing: the push headers that
// validation lets through must be within both.
bool IsGrpcMetadata(absl::string_view key, absl::string_view value) {
  if (key.empty() || key[0] == ':' || absl::StartsWith(key, "grpc-")) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  if (absl::EndsWith(key, "-bin")) return true;
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

bool IsHttpField(absl::string_view key, absl::string_view value) {
  if (key.empty()) return false;
  for (char c : key) {
    if (c <= 0x20 || c >= 0x7f || c == ':') return false;
  }
  return value.find_first_of(absl::string_view("\r\n\0", 3)) == absl::string_view::npos;
}

void CheckPushTarget(const NewTask& task) {
  if (!task.target.has_value()) return;
  const PushTarget& target = *task.target;
  FUZZ_CHECK(target.dispatch_deadline >= kMinDispatchDeadline &&
                 target.dispatch_deadline <= kMaxDispatchDeadline,
             absl::FormatDuration(target.dispatch_deadline));
  // libcurl and gRPC take these as C strings: a NUL byte would cut what they use short of what
  // was validated (and of what GetStatus shows).
  if (!KnownBugTolerated("url_nul")) {
    for (const std::string* text : {&target.url, &target.address, &target.method}) {
      FUZZ_CHECK(text->find('\0') == std::string::npos,
                 "a NUL byte in a push target: " + absl::CHexEscape(*text));
    }
  }
  if (target.kind == PushTarget::Kind::kGrpc) {
    FUZZ_CHECK(!target.address.empty() && absl::StartsWith(target.method, "/"), target.method);
    for (const auto& [key, value] : task.headers) {
      FUZZ_CHECK(IsGrpcMetadata(key, value), "not gRPC metadata: " + absl::CHexEscape(key));
    }
  } else {
    // libcurl's parser is lenient ("HTTP:/host" is accepted): only the scheme is certain.
    const std::string url = absl::AsciiStrToLower(target.url.substr(0, 6));
    FUZZ_CHECK(absl::StartsWith(url, "http:") || absl::StartsWith(url, "https:"), target.url);
    for (const Headers* headers : {&task.headers, &target.http_headers}) {
      for (const auto& [key, value] : *headers) {
        FUZZ_CHECK(IsHttpField(key, value), "not an HTTP field: " + absl::CHexEscape(key));
      }
    }
  }
}

// A rejection must be INVALID_ARGUMENT with a message naming what is wrong.
void CheckRejection(const absl::Status& status) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
  FUZZ_CHECK(!status.message().empty(), "a rejection without a message");
}

class Harness {
 public:
  Harness() : timers_(clock_), store_(clock_, timers_, {}, &log_) {
    limits_.push_policy = &Policy();
  }

  // What SchedulerService::Schedule does with one request, then checks of what it let through.
  void Schedule(const v1::ScheduleRequest& request) {
    const absl::Time now = clock_.Now();
    absl::StatusOr<NewTask> task = ValidateSchedule(request, limits_, now);
    if (!task.ok()) {
      CheckRejection(task.status());
      return;
    }
    FUZZ_CHECK(task->due_time >= now && task->due_time <= now + limits_.max_delay,
               absl::StrCat("due_time ", absl::FormatTime(task->due_time)));
    FUZZ_CHECK(static_cast<int64_t>(task->payload.size()) <= limits_.max_payload_bytes,
               "payload over the limit");
    FUZZ_CHECK(task->headers.size() <= kMaxHeaders, "too many headers");
    FUZZ_CHECK(task->retry_policy.max_attempts >= 1 &&
                   task->retry_policy.max_attempts <= kMaxAttemptsLimit &&
                   task->retry_policy.min_backoff <= task->retry_policy.max_backoff,
               "retry policy out of range");
    FUZZ_CHECK(!task->queue.empty(), "an empty queue name");
    CheckPushTarget(*task);
    // The due time goes back to the client as a Timestamp.
    absl::StatusOr<absl::Time> due = FromProto(ToProto(task->due_time), "due_time");
    FUZZ_CHECK(due.ok() && *due == task->due_time, "the due time does not round-trip");
    const std::string queue = task->queue;
    absl::StatusOr<ScheduleResult> scheduled = store_.Schedule(*std::move(task));
    if (!scheduled.ok()) {
      // Only a batch can repeat an id with other content.
      FUZZ_CHECK(scheduled.status().code() == absl::StatusCode::kAlreadyExists,
                 scheduled.status().ToString());
      return;
    }
    absl::StatusOr<TaskInfo> info = store_.Get(scheduled->task_id);
    FUZZ_CHECK(info.ok(), info.status().ToString());
    FUZZ_CHECK(info->queue == queue, info->queue);
  }

  void ScheduleBatch(const v1::ScheduleBatchRequest& request) {
    if (absl::Status s = ValidateBatchSize("requests", request.requests_size()); !s.ok()) {
      CheckRejection(s);
      return;
    }
    for (const v1::ScheduleRequest& item : request.requests()) Schedule(item);
  }

  void Lease(const v1::LeaseRequest& request) {
    absl::StatusOr<LeaseParams> params = ValidateLease(request);
    if (!params.ok()) {
      CheckRejection(params.status());
      return;
    }
    FUZZ_CHECK(params->max_tasks >= 1 && params->max_tasks <= kMaxLeaseTasks, "max_tasks");
    FUZZ_CHECK(
        params->lease_duration >= kMinLeaseDuration && params->lease_duration <= kMaxLeaseDuration,
        "lease_duration");
    FUZZ_CHECK(params->wait >= absl::ZeroDuration() && params->wait <= kMaxLeaseWait, "wait");
    SeedReady(params->queue, "lease-seed-1");
    SeedReady(params->queue, "lease-seed-2");
    std::vector<LeasedTask> leased =
        store_.Lease(params->queue, params->max_tasks, params->lease_duration);
    FUZZ_CHECK(leased.size() == std::min<size_t>(2, params->max_tasks),
               absl::StrCat("leased ", leased.size()));
    for (const LeasedTask& task : leased) {
      FUZZ_CHECK(task.lease_expire_time == clock_.Now() + params->lease_duration, task.task_id);
    }
  }

  void Nack(const v1::NackRequest& request) {
    absl::StatusOr<NackParams> params = ValidateNack(request, limits_);
    if (!params.ok()) {
      CheckRejection(params.status());
      return;
    }
    FUZZ_CHECK(params->error.size() <= kMaxErrorBytes, "error over the limit");
    // Parsing checked the request's error is UTF-8; cutting it must not break a character.
    FUZZ_CHECK(IsValidUtf8(params->error), "the cut error is not UTF-8");
    FUZZ_CHECK(!params->retry_delay.has_value() || (*params->retry_delay >= absl::ZeroDuration() &&
                                                    *params->retry_delay <= limits_.max_delay),
               "retry_delay out of range");
    SeedReady("default", request.task_id());
    std::vector<LeasedTask> leased = store_.Lease("default", 1, absl::Seconds(30));
    FUZZ_CHECK(leased.size() == 1 && leased[0].task_id == request.task_id(), request.task_id());
    // A token of someone else's lease is refused and changes nothing.
    if (request.lease_token() != leased[0].lease_token) {
      absl::StatusOr<TaskInfo> refused =
          store_.Nack(request.task_id(), request.lease_token(), params->retry_delay, params->error);
      FUZZ_CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition,
                 refused.status().ToString());
    }
    absl::StatusOr<TaskInfo> nacked =
        store_.Nack(request.task_id(), leased[0].lease_token, params->retry_delay, params->error);
    FUZZ_CHECK(nacked.ok(), nacked.status().ToString());
    FUZZ_CHECK(nacked->state == TaskState::kScheduled, "one failed attempt of 5 is retried");
    FUZZ_CHECK(nacked->last_error == params->error, nacked->last_error);
    if (params->retry_delay.has_value()) {
      FUZZ_CHECK(nacked->due_time == clock_.Now() + *params->retry_delay,
                 absl::FormatTime(nacked->due_time));
    }
  }

  void List(const v1::ListTasksRequest& request) {
    absl::StatusOr<ListParams> params = ValidateList(request);
    if (!params.ok()) {
      CheckRejection(params.status());
      return;
    }
    FUZZ_CHECK(params->page_size >= 1 && params->page_size <= kMaxListPageSize, "page_size");
    const std::string queue = params->queue.empty() ? "default" : params->queue;
    for (int i = 0; i < 3; ++i) SeedReady(queue, absl::StrCat("list-seed-", i));
    TaskPage page = store_.List(params->queue, params->state, params->page_size, params->cursor);
    FUZZ_CHECK(page.tasks.size() <= params->page_size, "a page over its size");
    for (const TaskInfo& task : page.tasks) {
      FUZZ_CHECK(params->queue.empty() || task.queue == params->queue, task.queue);
      FUZZ_CHECK(!params->state.has_value() || task.state == *params->state, task.task_id);
    }
    // A next_page_token leads to its cursor, for this filter and no other.
    for (uint64_t cursor : {page.next_cursor, params->cursor + 1, uint64_t{1} << 63}) {
      if (cursor == 0) continue;
      v1::ListTasksRequest next = request;
      next.set_page_token(ListPageToken(*params, cursor));
      absl::StatusOr<ListParams> again = ValidateList(next);
      FUZZ_CHECK(again.ok(), again.status().ToString());
      FUZZ_CHECK(again->cursor == cursor, absl::StrCat("cursor ", again->cursor, " != ", cursor));
      next.set_queue(params->queue == "other" ? "another" : "other");
      absl::StatusOr<ListParams> other = ValidateList(next);
      FUZZ_CHECK(!other.ok(), "a page token used with another queue");
    }
  }

  // Time passes: every task is delivered, retried or dies; then the store's records must replay
  // into a store with the same tasks.
  void Finish() {
    DriveStore(store_, clock_, timers_, /*rounds=*/8);
    FakeClock clock;
    HorizonTimers timers(clock);
    TaskStore replayed(clock, timers, {});
    for (const store::v1::LogRecord& record : log_.records()) {
      absl::Status s = replayed.Replay(record);
      FUZZ_CHECK(s.ok(), s.ToString() + " replaying " + record.ShortDebugString());
    }
    FUZZ_CHECK(Summary(replayed) == Summary(store_), "the log replays into other tasks");
  }

 private:
  static const AddressPolicy& Policy() {
    static const AddressPolicy* const policy = new AddressPolicy(*AddressPolicy::Create(""));
    return *policy;
  }

  // Schedules a pull task due now in `queue` and fires its timer: it is READY.
  void SeedReady(const std::string& queue, const std::string& task_id) {
    NewTask task;
    task.queue = queue;
    task.task_id = task_id;
    task.payload = "seed";
    task.due_time = clock_.Now();
    absl::StatusOr<ScheduleResult> scheduled = store_.Schedule(std::move(task));
    FUZZ_CHECK(scheduled.ok(), scheduled.status().ToString());
    for (uint64_t cookie : timers_.fake().FireDue(clock_.Now())) store_.OnTimer(cookie);
  }

  // Tasks by queue and state, READY counted as SCHEDULED (the log does not record the change:
  // recovery derives it from the due time), queues without tasks left out.
  static std::vector<std::pair<std::string, std::vector<int64_t>>> Summary(const TaskStore& store) {
    std::vector<std::pair<std::string, std::vector<int64_t>>> summary;
    for (auto& [queue, counts] : SortedCounts(store)) {
      counts[static_cast<int>(TaskState::kScheduled)] +=
          counts[static_cast<int>(TaskState::kReady)];
      counts[static_cast<int>(TaskState::kReady)] = 0;
      if (std::any_of(counts.begin(), counts.end(), [](int64_t n) { return n != 0; })) {
        summary.emplace_back(queue, counts);
      }
    }
    return summary;
  }

  FakeClock clock_;
  HorizonTimers timers_;
  RecordingLog log_;
  TaskStore store_;
  Limits limits_;
};

// Parses the request as gRPC would; false when the service answers without validating it: bytes
// that do not parse, or a known field of the wrong wire type (RunUnary's CheckFieldWireTypes,
// INVALID_ARGUMENT naming the field).
template <typename Request>
bool Parse(const uint8_t* data, size_t size, Request* request) {
  if (!request->ParseFromArray(data, static_cast<int>(size))) return false;
  if (absl::Status s = CheckFieldWireTypes(*request); !s.ok()) {
    CheckRejection(s);
    FUZZ_CHECK(absl::StrContains(s.message(), " was sent as "), std::string(s.message()));
    return false;
  }
  return true;
}

}  // namespace
}  // namespace hourglass

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Rejected UTF-8 and the like are logged by protobuf: quiet, so that the fuzzer's output shows
  // what matters.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace v1 = hourglass::v1;
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 5;
  ++data;
  --size;
  hourglass::Harness harness;
  switch (kind) {
    case 0: {
      v1::ScheduleRequest request;
      if (!hourglass::Parse(data, size, &request)) return 0;
      harness.Schedule(request);
      break;
    }
    case 1: {
      v1::ScheduleBatchRequest request;
      // The service counts a batch's items before it parses them (service/parse_errors.h): the
      // count must be the parser's whenever the bytes parse.
      google::protobuf::io::ArrayInputStream input(data, static_cast<int>(size));
      const std::optional<int64_t> items = hourglass::CountTopLevelField(&input, 1);
      if (!hourglass::Parse(data, size, &request)) return 0;
      FUZZ_CHECK(
          items.has_value() && *items == request.requests_size(),
          absl::StrCat("counted ", items.value_or(-1), " items, parsed ", request.requests_size()));
      harness.ScheduleBatch(request);
      break;
    }
    case 2: {
      v1::LeaseRequest request;
      if (!hourglass::Parse(data, size, &request)) return 0;
      harness.Lease(request);
      break;
    }
    case 3: {
      v1::NackRequest request;
      if (!hourglass::Parse(data, size, &request)) return 0;
      harness.Nack(request);
      break;
    }
    default: {
      v1::ListTasksRequest request;
      if (!hourglass::Parse(data, size, &request)) return 0;
      harness.List(request);
      break;
    }
  }
  harness.Finish();
  return 0;
}
