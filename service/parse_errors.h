// Requests whose bytes do not parse as their method's message: a proto3 string field holding
// invalid UTF-8, a truncated or garbage body, nesting deeper than protobuf's recursion limit, or
// no message at all. gRPC's callback server answers those itself, before any handler runs, with
// UNIMPLEMENTED and an empty message; hourglass answers INVALID_ARGUMENT saying what to fix, for
// every method of its services, and counts the call in the RPC metrics like any other.
//
//   std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
//   creators.push_back(std::make_unique<ParseErrorInterceptorFactory>(rpc_context));
//   builder.experimental().SetInterceptorCreators(std::move(creators));
//
// How: an interceptor of each hourglass call notes at POST_RECV_MESSAGE whether gRPC failed to
// deserialize the request (the message pointer is null then), and only for such a call rewrites
// the status at PRE_SEND_STATUS, in the order RunUnary checks a request: UNAVAILABLE while the
// server shuts down, UNAUTHENTICATED without a valid token (docs/security.md: a caller without a
// valid token learns nothing of its request), then INVALID_ARGUMENT. A handler's own status
// (INTERNAL included) is never touched: a call whose request parsed is left alone. Protobuf reports
// which string field held invalid UTF-8 only through its log; CaptureProtobufParseErrors() routes
// that report to the interceptor of the call being parsed (deserialization and POST_RECV_MESSAGE
// run on one thread, one after the other) instead of an unstructured line on stderr per bad
// request.
//
// Thread-safe.
#ifndef HOURGLASS_SERVICE_PARSE_ERRORS_H_
#define HOURGLASS_SERVICE_PARSE_ERRORS_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_interceptor.h"
#include "service/rpc.h"

namespace hourglass {

// The answer to a request of `method` ("/hourglass.v1.SchedulerService/Schedule") whose bytes did
// not parse as `request_type` ("hourglass.v1.ScheduleRequest"). `utf8_field`: protobuf's full
// name of the string field that held invalid UTF-8 ("hourglass.v1.HttpTarget.url"), or empty
// when the failure was another one.
absl::Status ParseErrorStatus(absl::string_view request_type, absl::string_view utf8_field);

// Installs (once per process) a protobuf log handler that keeps protobuf's "String field '...'
// contains invalid UTF-8 data when parsing" report of an hourglass.v1 message for the parse error
// of the call, instead of printing it; every other protobuf log message goes to the handler that
// was installed before. Call before the gRPC server starts.
void CaptureProtobufParseErrors();

// The string field of the last failed UTF-8 check that protobuf reported on this thread (full
// name), cleared by the call; empty when none. For the interceptor and tests.
std::string TakeUtf8ParseErrorOnThisThread();

// The batch methods (ScheduleBatch, AckBatch) take their request as bytes and parse it here, so
// that a batch far beyond its limit is refused before it is parsed: protobuf would otherwise
// build every item first (a 4 MiB ScheduleBatch of 2 million empty items takes hundreds of MB
// and seconds of CPU to parse and free). Counts the top-level occurrences of field
// `batch_field` (`batch_name` in messages) without parsing them: more than kMaxBatchItems is
// InvalidArgument as ValidateBatchSize words it. Then parses `bytes` into `request`: a failure is
// InvalidArgument as ParseErrorStatus words it (and `request` is cleared).
absl::Status ParseBatchRequest(const grpc::ByteBuffer& bytes, int batch_field,
                               absl::string_view batch_name, google::protobuf::Message* request);

// `response` serialized into `bytes`, for the batch methods.
void SerializeResponse(const google::protobuf::Message& response, grpc::ByteBuffer* bytes);

class ParseErrorInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `context` (its clock and metrics) must outlive the server. Calls CaptureProtobufParseErrors().
  explicit ParseErrorInterceptorFactory(RpcContext& context);

  // An interceptor for the methods of hourglass.v1's services; null (no interceptor) for the
  // others (health, reflection, unknown methods).
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
  // The same for a method by its full name ("/hourglass.v1.SchedulerService/Schedule") and the
  // call's context (its metadata; null: no metadata): what CreateServerInterceptor does, for tests
  // (gRPC's ServerRpcInfo cannot be made outside gRPC).
  grpc::experimental::Interceptor* CreateForMethod(absl::string_view method,
                                                   const grpc::ServerContextBase* ctx);

  // What the interceptor needs to know of a method: names for the metrics and the message.
  struct Method {
    std::string service;       // "hourglass.v1.SchedulerService"
    std::string name;          // "Schedule"
    std::string request_type;  // "hourglass.v1.ScheduleRequest"
  };

 private:
  // Constant after construction.
  RpcContext& context_;
  absl::flat_hash_map<std::string, Method> methods_;  // by "/service/method"
};

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_PARSE_ERRORS_H_
