#include "service/parse_errors.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "service/validation.h"

namespace hourglass {

namespace {

using grpc::experimental::InterceptionHookPoints;

// The package whose parse errors are the clients' (and worth a precise answer).
constexpr absl::string_view kPackagePrefix = "hourglass.v1.";

// protobuf's report (google/protobuf/wire_format_lite.cc, 3.21): "String field '<full name>'
// contains invalid UTF-8 data when parsing a protocol buffer. Use the 'bytes' type if you intend
// to send raw bytes. "
constexpr absl::string_view kUtf8ReportStart = "String field '";
constexpr absl::string_view kUtf8ReportParsing = "invalid UTF-8 data when parsing";

thread_local std::string utf8_parse_error;  // full name of the field; empty: none

google::protobuf::LogHandler* previous_log_handler = nullptr;

void LogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                const std::string& message) {
  if (absl::StartsWith(message, kUtf8ReportStart) &&
      absl::StrContains(message, kUtf8ReportParsing)) {
    const absl::string_view rest = absl::string_view(message).substr(kUtf8ReportStart.size());
    const absl::string_view field = rest.substr(0, rest.find('\''));
    // Bounded: a field name of the .proto files, never client data.
    if (absl::StartsWith(field, kPackagePrefix) && field.size() < 256) {
      utf8_parse_error.assign(field.data(), field.size());
      return;
    }
  }
  if (previous_log_handler != nullptr) previous_log_handler(level, filename, line, message);
}

// One hourglass call. gRPC creates it with the call and deletes it with the call.
class ParseErrorInterceptor final : public grpc::experimental::Interceptor {
 public:
  ParseErrorInterceptor(RpcContext& context, const ParseErrorInterceptorFactory::Method& method,
                        const grpc::ServerContextBase* ctx)
      : context_(context), method_(method), ctx_(ctx), start_(context.clock.Monotonic()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // Right after gRPC's deserialization, on its thread: the UTF-8 report, if any, is this
      // call's (and is cleared for the next call either way).
      std::string utf8_field = TakeUtf8ParseErrorOnThisThread();
      if (methods->GetRecvMessage() == nullptr) {
        parse_failed_ = true;
        utf8_field_ = std::move(utf8_field);
      }
    }
    if (parse_failed_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      // gRPC's answer to a request it could not deserialize (no handler ran).
      const absl::Status status = Answer();
      methods->ModifySendStatus(ToGrpcStatus(status));
      RecordRpc(context_.metrics, method_.service, method_.name, status,
                context_.clock.Monotonic() - start_);
    }
    methods->Proceed();
  }

 private:
  // What RunUnary would answer: the server's state and the token come before the request.
  absl::Status Answer() const {
    if (context_.shutting_down.load(std::memory_order_relaxed)) {
      return absl::UnavailableError("the server is shutting down; retry on another instance");
    }
    if (context_.tokens != nullptr) {
      absl::Status authenticated = ctx_ == nullptr ? Authenticate(context_.tokens, {}).status()
                                                   : AuthenticateCall(context_, *ctx_).status();
      if (!authenticated.ok()) return authenticated;
    }
    return ParseErrorStatus(method_.request_type, utf8_field_);
  }

  RpcContext& context_;
  const ParseErrorInterceptorFactory::Method& method_;
  const grpc::ServerContextBase* const ctx_;  // null: no metadata
  const absl::Duration start_;
  bool parse_failed_ = false;
  std::string utf8_field_;
};

}  // namespace

absl::Status ParseErrorStatus(absl::string_view request_type, absl::string_view utf8_field) {
  if (!utf8_field.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request is not a valid ", request_type, ": string field ", utf8_field,
        " is not valid UTF-8 (every string field must hold UTF-8 text; arbitrary bytes belong in "
        "a bytes field such as ScheduleRequest.payload, or encode them, e.g. percent- or "
        "base64-encoding)"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "request is not a valid ", request_type,
      ": its bytes do not parse as that protobuf message (no message, a truncated or "
      "non-protobuf body, a length or group that runs past the end, or nesting deeper than 100 "
      "levels); send the message serialized from the hourglass.v1 .proto files"));
}

absl::Status ParseBatchRequest(const grpc::ByteBuffer& bytes, int batch_field,
                               absl::string_view batch_name, google::protobuf::Message* request) {
  {
    grpc::ByteBuffer copy(bytes);  // shares the slices; the reader needs a mutable buffer
    grpc::ProtoBufferReader reader(&copy);
    // Bytes that do not scan are left to the parser below (which refuses them with its message).
    const std::optional<int64_t> items = CountTopLevelField(&reader, batch_field);
    if (items.has_value() && *items > kMaxBatchItems) {
      return ValidateBatchSize(batch_name, static_cast<int>(std::min<int64_t>(*items, INT32_MAX)));
    }
  }
  TakeUtf8ParseErrorOnThisThread();  // a stale report is not this request's
  grpc::ByteBuffer copy(bytes);
  grpc::ProtoBufferReader reader(&copy);
  if (reader.status().ok() && request->ParseFromZeroCopyStream(&reader)) return absl::OkStatus();
  request->Clear();
  return ParseErrorStatus(request->GetDescriptor()->full_name(), TakeUtf8ParseErrorOnThisThread());
}

void SerializeResponse(const google::protobuf::Message& response, grpc::ByteBuffer* bytes) {
  grpc::Slice slice(response.SerializeAsString());
  *bytes = grpc::ByteBuffer(&slice, 1);
}

void CaptureProtobufParseErrors() {
  static absl::once_flag once;
  absl::call_once(once,
                  [] { previous_log_handler = google::protobuf::SetLogHandler(&LogHandler); });
}

std::string TakeUtf8ParseErrorOnThisThread() { return std::exchange(utf8_parse_error, {}); }

ParseErrorInterceptorFactory::ParseErrorInterceptorFactory(RpcContext& context)
    : context_(context) {
  CaptureProtobufParseErrors();
  for (const google::protobuf::FileDescriptor* file :
       {v1::ScheduleRequest::descriptor()->file(), v1::LeaseRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        const google::protobuf::MethodDescriptor* method = service->method(m);
        methods_[absl::StrCat("/", service->full_name(), "/", method->name())] = {
            .service = service->full_name(),
            .name = method->name(),
            .request_type = method->input_type()->full_name()};
      }
    }
  }
}

grpc::experimental::Interceptor* ParseErrorInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (info->method() == nullptr) return nullptr;
  return CreateForMethod(info->method(), info->server_context());
}

grpc::experimental::Interceptor* ParseErrorInterceptorFactory::CreateForMethod(
    absl::string_view method, const grpc::ServerContextBase* ctx) {
  const auto it = methods_.find(method);
  if (it == methods_.end()) return nullptr;
  return new ParseErrorInterceptor(context_, it->second, ctx);
}

}  // namespace hourglass
