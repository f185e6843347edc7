#include "service/validation.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/wire_format_lite.h"
#include "workers/grpc_pusher.h"
#include "workers/http_pusher.h"

namespace hourglass {

namespace {

// Seconds between 0001-01-01 and 9999-12-31T23:59:59, and the Duration range, from the protobuf
// well-known types' documentation.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;
constexpr int64_t kMaxDurationSeconds = 315576000000;

std::string Fmt(absl::Duration d) { return absl::FormatDuration(d); }

absl::Status Invalid(absl::string_view message) { return absl::InvalidArgumentError(message); }

bool IsQueueChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// A duration field: unset gives `unset`; it must lie in [min, max].
absl::StatusOr<absl::Duration> DurationField(bool has, const google::protobuf::Duration& proto,
                                             absl::string_view field, absl::Duration unset,
                                             absl::Duration min, absl::Duration max) {
  if (!has) return unset;
  absl::StatusOr<absl::Duration> d = FromProto(proto, field);
  if (!d.ok()) return d.status();
  if (*d < min) return Invalid(absl::StrCat(field, " must be >= ", Fmt(min), ", got ", Fmt(*d)));
  if (*d > max) return Invalid(absl::StrCat(field, " must be <= ", Fmt(max), ", got ", Fmt(*d)));
  return *d;
}

// The due time of a `when` oneof (delay or at); unset means now.
template <typename Request>
absl::StatusOr<absl::Time> DueTime(const Request& request, const Limits& limits, absl::Time now) {
  if (request.has_delay()) {
    absl::StatusOr<absl::Duration> delay =
        DurationField(true, request.delay(), "delay", absl::ZeroDuration(), absl::ZeroDuration(),
                      limits.max_delay);
    if (!delay.ok()) {
      // The flag is worth naming only when the delay is too long (not when it is negative or not
      // a Duration at all).
      const absl::StatusOr<absl::Duration> parsed = FromProto(request.delay(), "delay");
      if (!parsed.ok() || *parsed <= limits.max_delay) return delay.status();
      return Invalid(
          absl::StrCat(delay.status().message(), " (the limit is the server's --max_delay)"));
    }
    return now + *delay;
  }
  if (request.has_at()) {
    absl::StatusOr<absl::Time> at = FromProto(request.at(), "at");
    if (!at.ok()) return at.status();
    if (*at - now > limits.max_delay) {
      return Invalid(absl::StrCat("at must be at most ", Fmt(limits.max_delay),
                                  " (--max_delay) from now, got ", absl::FormatTime(*at), ", ",
                                  Fmt(*at - now), " from now"));
    }
    return std::max(*at, now);
  }
  return now;
}

absl::StatusOr<RetryPolicy> ValidateRetryPolicy(const v1::ScheduleRequest& request) {
  RetryPolicy policy;
  if (!request.has_retry_policy()) return policy;
  const v1::RetryPolicy& p = request.retry_policy();
  if (p.max_attempts() < 0 || p.max_attempts() > kMaxAttemptsLimit) {
    return Invalid(absl::StrCat("retry_policy.max_attempts must be between 0 (the default, ",
                                policy.max_attempts, ") and ", kMaxAttemptsLimit, ", got ",
                                p.max_attempts()));
  }
  if (p.max_attempts() > 0) policy.max_attempts = p.max_attempts();
  absl::StatusOr<absl::Duration> min_backoff =
      DurationField(p.has_min_backoff(), p.min_backoff(), "retry_policy.min_backoff",
                    policy.min_backoff, absl::ZeroDuration(), kMaxBackoffLimit);
  if (!min_backoff.ok()) return min_backoff.status();
  policy.min_backoff = *min_backoff;
  absl::StatusOr<absl::Duration> max_backoff = DurationField(
      p.has_max_backoff(), p.max_backoff(), "retry_policy.max_backoff",
      std::max(policy.max_backoff, policy.min_backoff), absl::ZeroDuration(), kMaxBackoffLimit);
  if (!max_backoff.ok()) return max_backoff.status();
  policy.max_backoff = *max_backoff;
  if (policy.max_backoff < policy.min_backoff) {
    return Invalid(absl::StrCat("retry_policy.max_backoff (", Fmt(policy.max_backoff),
                                ") must be >= retry_policy.min_backoff (", Fmt(policy.min_backoff),
                                ")"));
  }
  return policy;
}

// An HTTP field name (RFC 9110 token).
bool IsToken(absl::string_view name) {
  static constexpr absl::string_view kTokenPunctuation = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
           kTokenPunctuation.find(c) != absl::string_view::npos;
  });
}

// A gRPC metadata key: lowercase letters, digits, '-', '_' and '.'.
bool IsMetadataKey(absl::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
  });
}

bool IsPrintableAscii(absl::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

bool HasControlCharacters(absl::string_view value) {
  return std::any_of(value.begin(), value.end(), [](char c) {
    return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
  });
}

// Headers a push request sets itself (or that would break its framing).
bool IsReservedHeader(absl::string_view name) {
  for (absl::string_view reserved :
       {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect"}) {
    if (absl::EqualsIgnoreCase(name, reserved)) return true;
  }
  return absl::StartsWithIgnoreCase(name, "hourglass-") ||
         absl::StartsWithIgnoreCase(name, "grpc-") || absl::StartsWith(name, ":");
}

// The headers of a push task (the task's own, and an http_target's) go on the wire: they must be
// valid there. `field` names them in messages.
absl::Status ValidatePushHeaders(const google::protobuf::Map<std::string, std::string>& headers,
                                 absl::string_view field, PushTarget::Kind kind) {
  for (const auto& [key, value] : headers) {
    const bool valid_name = kind == PushTarget::Kind::kHttp ? IsToken(key) : IsMetadataKey(key);
    if (!valid_name) {
      return Invalid(
          absl::StrCat(field, " key \"", absl::CHexEscape(key.substr(0, 64)), "\" is not a valid ",
                       kind == PushTarget::Kind::kHttp
                           ? "HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
                           : "gRPC metadata key (lowercase letters, digits, '-', '_' and '.')"));
    }
    if (IsReservedHeader(key)) {
      return Invalid(absl::StrCat(field, " key \"", key,
                                  "\" is reserved: the server sets it (Host, Content-Length, "
                                  "Transfer-Encoding, Connection, hourglass-*, grpc-* ...)"));
    }
    if (absl::EndsWith(key, "-bin")) continue;  // binary metadata: any bytes
    if (HasControlCharacters(value)) {
      return Invalid(absl::StrCat(field, "[\"", key,
                                  "\"] must not contain control characters (CR, LF, NUL ...)"));
    }
    if (kind == PushTarget::Kind::kGrpc && !IsPrintableAscii(value)) {
      return Invalid(absl::StrCat(field, "[\"", key,
                                  "\"] must be printable ASCII to be gRPC metadata; name the key "
                                  "\"...-bin\" to send arbitrary bytes"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLiteralHost(const Limits& limits, absl::string_view host,
                              absl::string_view field) {
  if (limits.push_policy == nullptr) return absl::OkStatus();
  std::optional<std::string> refusal = limits.push_policy->RefusalOfLiteralHost(host);
  if (refusal.has_value()) return Invalid(absl::StrCat(field, " is refused: ", *refusal));
  return absl::OkStatus();
}

absl::Status ValidateTarget(const v1::ScheduleRequest& request, const Limits& limits,
                            NewTask* task) {
  if (request.target_case() == v1::ScheduleRequest::TARGET_NOT_SET) {
    if (request.has_dispatch_deadline()) {
      return Invalid(
          "dispatch_deadline applies to push tasks only: set http_target or grpc_target, or "
          "leave it unset");
    }
    return absl::OkStatus();
  }
  PushTarget target;
  absl::StatusOr<absl::Duration> deadline = DurationField(
      request.has_dispatch_deadline(), request.dispatch_deadline(), "dispatch_deadline",
      kDefaultDispatchDeadline, kMinDispatchDeadline, kMaxDispatchDeadline);
  if (!deadline.ok()) return deadline.status();
  target.dispatch_deadline = *deadline;
  if (request.has_http_target()) {
    const v1::HttpTarget& http = request.http_target();
    target.kind = PushTarget::Kind::kHttp;
    std::string host;
    if (absl::Status s = HttpPusher::CheckUrl(http.url(), "http_target.url", &host); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckLiteralHost(limits, host, "http_target.url"); !s.ok()) return s;
    if (http.headers_size() > static_cast<int>(kMaxHeaders)) {
      return Invalid(absl::StrCat("http_target.headers must have at most ", kMaxHeaders,
                                  " entries, got ", http.headers_size()));
    }
    for (const auto& [key, value] : http.headers()) {
      if (key.size() > kMaxHeaderKeyBytes || value.size() > kMaxHeaderValueBytes) {
        return Invalid(absl::StrCat("http_target.headers keys must be 1 to ", kMaxHeaderKeyBytes,
                                    " bytes and values at most ", kMaxHeaderValueBytes, " bytes"));
      }
    }
    if (absl::Status s = ValidatePushHeaders(http.headers(), "http_target.headers", target.kind);
        !s.ok()) {
      return s;
    }
    target.url = http.url();
    target.http_headers.assign(http.headers().begin(), http.headers().end());
    std::sort(target.http_headers.begin(), target.http_headers.end());
  } else {
    const v1::GrpcTarget& grpc = request.grpc_target();
    target.kind = PushTarget::Kind::kGrpc;
    std::string host;
    std::string port;
    if (absl::Status s =
            GrpcPusher::SplitAddress(grpc.address(), "grpc_target.address", &host, &port);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckLiteralHost(limits, host, "grpc_target.address"); !s.ok()) return s;
    if (absl::Status s = GrpcPusher::CheckMethod(grpc.method(), "grpc_target.method"); !s.ok()) {
      return s;
    }
    target.address = grpc.address();
    target.method = grpc.method();
    target.tls = grpc.tls();
  }
  if (absl::Status s = ValidatePushHeaders(request.headers(), "headers", target.kind); !s.ok()) {
    return s;
  }
  // HTTP header names are case-insensitive, and one name may not be sent twice: the target's
  // headers and the task's together must name each header once.
  std::vector<std::string> names;
  for (const auto& [key, value] : target.http_headers) names.push_back(absl::AsciiStrToLower(key));
  for (const auto& [key, value] : request.headers()) names.push_back(absl::AsciiStrToLower(key));
  std::sort(names.begin(), names.end());
  if (auto dup = std::adjacent_find(names.begin(), names.end()); dup != names.end()) {
    return Invalid(absl::StrCat("header \"", *dup,
                                "\" is given twice (in headers and http_target.headers, or in two "
                                "spellings); header names are case-insensitive, give each once"));
  }
  task->target = std::move(target);
  return absl::OkStatus();
}

absl::string_view WireTypeName(google::protobuf::UnknownField::Type type) {
  switch (type) {
    case google::protobuf::UnknownField::TYPE_VARINT:
      return "a varint";
    case google::protobuf::UnknownField::TYPE_FIXED32:
      return "a fixed32";
    case google::protobuf::UnknownField::TYPE_FIXED64:
      return "a fixed64";
    case google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED:
      return "length-delimited bytes";
    case google::protobuf::UnknownField::TYPE_GROUP:
      return "a group";
  }
  return "another wire type";
}

// The message-typed fields of a message but maps (a map entry's stray fields are dropped by the
// parser: nothing to look at there), computed once per thread and message type: the walk below
// runs for every request.
const std::vector<const google::protobuf::FieldDescriptor*>& MessageFields(
    const google::protobuf::Descriptor* descriptor) {
  thread_local absl::flat_hash_map<const google::protobuf::Descriptor*,
                                   std::vector<const google::protobuf::FieldDescriptor*>>
      cache;
  auto [it, inserted] = cache.try_emplace(descriptor);
  if (inserted) {
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const google::protobuf::FieldDescriptor* field = descriptor->field(i);
      if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE &&
          !field->is_map()) {
        it->second.push_back(field);
      }
    }
  }
  return it->second;
}

// The error names the field by its path from `message` ("http_target.url", "requests[3].queue");
// the path is built only on the way out of an error.
absl::Status CheckWireTypesOf(const google::protobuf::Message& message) {
  const google::protobuf::Descriptor* descriptor = message.GetDescriptor();
  const google::protobuf::Reflection* reflection = message.GetReflection();
  const google::protobuf::UnknownFieldSet& unknown = reflection->GetUnknownFields(message);
  for (int i = 0; i < unknown.field_count(); ++i) {
    const google::protobuf::UnknownField& sent = unknown.field(i);
    const google::protobuf::FieldDescriptor* field = descriptor->FindFieldByNumber(sent.number());
    if (field == nullptr) continue;  // a field this server does not know
    return Invalid(absl::StrCat(
        field->name(), " (field ", sent.number(), " of ", descriptor->full_name(), ") was sent as ",
        WireTypeName(sent.type()), ", but its type is ", field->is_repeated() ? "repeated " : "",
        field->message_type() != nullptr ? field->message_type()->full_name()
                                         : std::string(field->type_name()),
        "; encode it as its .proto type"));
  }
  for (const google::protobuf::FieldDescriptor* field : MessageFields(descriptor)) {
    if (field->is_repeated()) {
      const int size = reflection->FieldSize(message, field);
      for (int k = 0; k < size; ++k) {
        absl::Status s = CheckWireTypesOf(reflection->GetRepeatedMessage(message, field, k));
        if (!s.ok()) return Invalid(absl::StrCat(field->name(), "[", k, "].", s.message()));
      }
    } else if (reflection->HasField(message, field)) {
      absl::Status s = CheckWireTypesOf(reflection->GetMessage(message, field));
      if (!s.ok()) return Invalid(absl::StrCat(field->name(), ".", s.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckFieldWireTypes(const google::protobuf::Message& request) {
  return CheckWireTypesOf(request);
}

std::optional<int64_t> CountTopLevelField(google::protobuf::io::ZeroCopyInputStream* input,
                                          int field_number) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream coded(input);
  int64_t count = 0;
  while (true) {
    const uint32_t tag = coded.ReadTag();
    if (tag == 0) {
      // The end of the input, or a tag that is not one (0, or a varint that does not end).
      return coded.ConsumedEntireMessage() ? std::optional(count) : std::nullopt;
    }
    if (WireFormatLite::GetTagFieldNumber(tag) == field_number &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      ++count;
      uint32_t length = 0;
      if (!coded.ReadVarint32(&length) || length > INT32_MAX ||
          !coded.Skip(static_cast<int>(length))) {
        return std::nullopt;
      }
    } else if (!WireFormatLite::SkipField(&coded, tag)) {
      return std::nullopt;  // groups deeper than protobuf's limit (100) included
    }
  }
}

absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         absl::string_view field) {
  const bool nanos_ok = d.nanos() > -1000000000 && d.nanos() < 1000000000 &&
                        !(d.seconds() > 0 && d.nanos() < 0) && !(d.seconds() < 0 && d.nanos() > 0);
  if (d.seconds() < -kMaxDurationSeconds || d.seconds() > kMaxDurationSeconds || !nanos_ok) {
    return Invalid(absl::StrCat(field, " is not a valid google.protobuf.Duration (seconds ",
                                d.seconds(), ", nanos ", d.nanos(), ")"));
  }
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::StatusOr<absl::Time> FromProto(const google::protobuf::Timestamp& t,
                                     absl::string_view field) {
  if (t.seconds() < kMinTimestampSeconds || t.seconds() > kMaxTimestampSeconds || t.nanos() < 0 ||
      t.nanos() > 999999999) {
    return Invalid(absl::StrCat(field, " is not a valid google.protobuf.Timestamp (seconds ",
                                t.seconds(), ", nanos ", t.nanos(), ")"));
  }
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration proto;
  const int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  proto.set_seconds(seconds);
  proto.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d)));
  return proto;
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp proto;
  const int64_t seconds = absl::ToUnixSeconds(t);
  proto.set_seconds(seconds);
  proto.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return proto;
}

absl::StatusOr<std::string> ValidateQueue(absl::string_view queue) {
  if (queue.empty()) return std::string(kDefaultQueue);
  if (queue.size() > kMaxQueueNameBytes) {
    return Invalid(
        absl::StrCat("queue must be at most ", kMaxQueueNameBytes, " bytes, got ", queue.size()));
  }
  if (!std::all_of(queue.begin(), queue.end(), IsQueueChar)) {
    return Invalid(absl::StrCat("queue must match [A-Za-z0-9._-]{1,200}, got \"",
                                absl::CHexEscape(queue.substr(0, 64)),
                                queue.size() > 64 ? "...\"" : "\""));
  }
  return std::string(queue);
}

absl::Status ValidateBatchSize(absl::string_view field, int size) {
  if (size < 1 || size > kMaxBatchItems) {
    return Invalid(absl::StrCat(field, " must have 1 to ", kMaxBatchItems, " entries, got ", size));
  }
  return absl::OkStatus();
}

absl::Status ValidateTaskId(absl::string_view task_id) {
  if (task_id.empty()) return Invalid("task_id must not be empty");
  if (task_id.size() > kMaxTaskIdBytes) {
    return Invalid(
        absl::StrCat("task_id must be at most ", kMaxTaskIdBytes, " bytes, got ", task_id.size()));
  }
  for (char c : task_id) {
    if (c < 0x21 || c > 0x7e) {
      return Invalid(
          "task_id must be printable ASCII without spaces (bytes 0x21 to 0x7e), got a byte 0x" +
          absl::StrCat(absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<NewTask> ValidateSchedule(const v1::ScheduleRequest& request, const Limits& limits,
                                         absl::Time now) {
  NewTask task;
  absl::StatusOr<std::string> queue = ValidateQueue(request.queue());
  if (!queue.ok()) return queue.status();
  task.queue = *std::move(queue);
  if (!request.task_id().empty()) {
    if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
    task.task_id = request.task_id();
  }
  if (static_cast<int64_t>(request.payload().size()) > limits.max_payload_bytes) {
    return Invalid(absl::StrCat("payload must be at most ", limits.max_payload_bytes,
                                " bytes (--max_payload_bytes), got ", request.payload().size()));
  }
  if (request.headers_size() > static_cast<int>(kMaxHeaders)) {
    return Invalid(absl::StrCat("headers must have at most ", kMaxHeaders, " entries, got ",
                                request.headers_size()));
  }
  for (const auto& [key, value] : request.headers()) {
    if (key.empty() || key.size() > kMaxHeaderKeyBytes) {
      return Invalid(absl::StrCat("headers keys must be 1 to ", kMaxHeaderKeyBytes,
                                  " bytes, got one of ", key.size()));
    }
    if (value.size() > kMaxHeaderValueBytes) {
      return Invalid(absl::StrCat("headers[\"", key, "\"] must be at most ", kMaxHeaderValueBytes,
                                  " bytes, got ", value.size()));
    }
  }
  absl::StatusOr<absl::Time> due = DueTime(request, limits, now);
  if (!due.ok()) return due.status();
  task.due_time = *due;
  absl::StatusOr<RetryPolicy> policy = ValidateRetryPolicy(request);
  if (!policy.ok()) return policy.status();
  task.retry_policy = *policy;
  task.payload = request.payload();
  task.headers.assign(request.headers().begin(), request.headers().end());
  std::sort(task.headers.begin(), task.headers.end());
  if (absl::Status s = ValidateTarget(request, limits, &task); !s.ok()) return s;
  return task;
}

namespace {

// A page token: "<cursor>.<fingerprint of the filter>", base64url. The fingerprint binds a token
// to its listing, so that a token is never silently applied to another filter.
uint64_t FilterFingerprint(const ListParams& params) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : absl::StrCat(
           params.queue, "|", params.state.has_value() ? static_cast<int>(*params.state) : 0)) {
    h = (h ^ c) * 1099511628211ull;
  }
  return h;
}

}  // namespace

std::string ListPageToken(const ListParams& params, uint64_t cursor) {
  if (cursor == 0) return "";
  return absl::WebSafeBase64Escape(absl::StrCat(cursor, ".", FilterFingerprint(params)));
}

absl::StatusOr<ListParams> ValidateList(const v1::ListTasksRequest& request) {
  ListParams params;
  if (!request.queue().empty()) {
    absl::StatusOr<std::string> queue = ValidateQueue(request.queue());
    if (!queue.ok()) return queue.status();
    params.queue = *std::move(queue);
  }
  const int state = static_cast<int>(request.state());
  if (state < 0 || state >= kTaskStateCount) {
    return Invalid(
        absl::StrCat("state must be a TaskState (0 to ", kTaskStateCount - 1, "), got ", state));
  }
  if (state != 0) params.state = static_cast<TaskState>(state);
  if (request.page_size() < 0 || request.page_size() > kMaxListPageSize) {
    return Invalid(absl::StrCat("page_size must be between 0 (meaning ", kDefaultListPageSize,
                                ") and ", kMaxListPageSize, ", got ", request.page_size()));
  }
  if (request.page_size() > 0) params.page_size = static_cast<size_t>(request.page_size());
  if (!request.page_token().empty()) {
    std::string decoded;
    uint64_t cursor = 0;
    uint64_t fingerprint = 0;
    std::pair<std::string, std::string> parts;
    if (request.page_token().size() <= 100 &&
        absl::WebSafeBase64Unescape(request.page_token(), &decoded)) {
      parts = absl::StrSplit(decoded, absl::MaxSplits('.', 1));
    }
    if (!absl::SimpleAtoi(parts.first, &cursor) || cursor == 0 ||
        !absl::SimpleAtoi(parts.second, &fingerprint)) {
      return Invalid("page_token is not a next_page_token of ListTasks");
    }
    if (fingerprint != FilterFingerprint(params)) {
      return Invalid(
          "page_token belongs to a listing with another queue or state; repeat the first "
          "request's queue and state with its page tokens");
    }
    params.cursor = cursor;
  }
  return params;
}

absl::StatusOr<absl::Time> ValidateReschedule(const v1::RescheduleRequest& request,
                                              const Limits& limits, absl::Time now) {
  if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
  return DueTime(request, limits, now);
}

absl::StatusOr<LeaseParams> ValidateLease(const v1::LeaseRequest& request) {
  LeaseParams params;
  absl::StatusOr<std::string> queue = ValidateQueue(request.queue());
  if (!queue.ok()) return queue.status();
  params.queue = *std::move(queue);
  if (request.max_tasks() < 0 || request.max_tasks() > kMaxLeaseTasks) {
    return Invalid(absl::StrCat("max_tasks must be between 0 (meaning 1) and ", kMaxLeaseTasks,
                                ", got ", request.max_tasks()));
  }
  params.max_tasks = std::max(1, request.max_tasks());
  absl::StatusOr<absl::Duration> lease_duration =
      DurationField(request.has_lease_duration(), request.lease_duration(), "lease_duration",
                    kDefaultLeaseDuration, kMinLeaseDuration, kMaxLeaseDuration);
  if (!lease_duration.ok()) return lease_duration.status();
  params.lease_duration = *lease_duration;
  absl::StatusOr<absl::Duration> wait =
      DurationField(request.has_wait(), request.wait(), "wait", absl::ZeroDuration(),
                    absl::ZeroDuration(), kMaxLeaseWait);
  if (!wait.ok()) return wait.status();
  params.wait = *wait;
  return params;
}

absl::StatusOr<NackParams> ValidateNack(const v1::NackRequest& request, const Limits& limits) {
  if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
  NackParams params;
  if (request.has_retry_delay()) {
    absl::StatusOr<absl::Duration> delay =
        DurationField(true, request.retry_delay(), "retry_delay", absl::ZeroDuration(),
                      absl::ZeroDuration(), limits.max_delay);
    if (!delay.ok()) return delay.status();
    params.retry_delay = *delay;
  }
  params.error = request.error().substr(0, kMaxErrorBytes);
  if (params.error.size() < request.error().size()) {
    // Cut at a character boundary: drop the last UTF-8 sequence if the limit split it.
    size_t start = params.error.size();
    while (start > 0 && (params.error[start - 1] & 0xC0) == 0x80) --start;
    if (start > 0) {
      const unsigned char lead = static_cast<unsigned char>(params.error[start - 1]);
      const size_t length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
      if (start - 1 + length > params.error.size()) params.error.resize(start - 1);
    }
  }
  return params;
}

absl::StatusOr<absl::Duration> ValidateExtendLease(const v1::ExtendLeaseRequest& request) {
  if (absl::Status s = ValidateTaskId(request.task_id()); !s.ok()) return s;
  return DurationField(request.has_lease_duration(), request.lease_duration(), "lease_duration",
                       kDefaultLeaseDuration, kMinLeaseDuration, kMaxLeaseDuration);
}

}  // namespace hourglass
