// Tests of service/parse_errors.h: the interceptor against a fake batch of gRPC's interception
// hooks (only a request gRPC failed to deserialize is rewritten, and it is counted in the RPC
// metrics), protobuf's UTF-8 report routed to the thread that parsed, and the messages clients
// see. The whole path through a real server is in server_test (UnparsableRequests...) and
// tests/e2e/test_hostile.py.
#include "service/parse_errors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "prometheus/metric_family.h"
#include "service/metrics.h"
#include "service/rpc.h"
#include "tests/testing/fake_clock.h"

namespace hourglass {
namespace {

using ::grpc::experimental::InterceptionHookPoints;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// One batch of hook points as gRPC hands it to a server interceptor.
class FakeBatch final : public grpc::experimental::InterceptorBatchMethods {
 public:
  explicit FakeBatch(std::set<InterceptionHookPoints> points) : points_(std::move(points)) {}

  bool QueryInterceptionHookPoint(InterceptionHookPoints type) override {
    return points_.count(type) > 0;
  }
  void Proceed() override { ++proceeded; }
  void Hijack() override { ADD_FAILURE() << "a server interceptor must not hijack"; }
  grpc::ByteBuffer* GetSerializedSendMessage() override { return nullptr; }
  const void* GetSendMessage() override { return nullptr; }
  void ModifySendMessage(const void*) override {}
  bool GetSendMessageStatus() override { return true; }
  std::multimap<std::string, std::string>* GetSendInitialMetadata() override { return nullptr; }
  grpc::Status GetSendStatus() override { return send_status; }
  void ModifySendStatus(const grpc::Status& status) override { send_status = status; }
  std::multimap<std::string, std::string>* GetSendTrailingMetadata() override { return nullptr; }
  void* GetRecvMessage() override { return recv_message; }
  std::multimap<grpc::string_ref, grpc::string_ref>* GetRecvInitialMetadata() override {
    return nullptr;
  }
  grpc::Status* GetRecvStatus() override { return nullptr; }
  std::multimap<grpc::string_ref, grpc::string_ref>* GetRecvTrailingMetadata() override {
    return nullptr;
  }
  std::unique_ptr<grpc::ChannelInterface> GetInterceptedChannel() override { return nullptr; }
  void FailHijackedRecvMessage() override {}
  void FailHijackedSendMessage() override {}

  void* recv_message = nullptr;
  grpc::Status send_status;
  int proceeded = 0;

 private:
  const std::set<InterceptionHookPoints> points_;
};

// The value of hourglass_grpc_server_handled_total for a method and code name (0 when absent).
double Handled(const Metrics& metrics, const std::string& method, const std::string& code) {
  for (const prometheus::MetricFamily& family : metrics.registry()->Collect()) {
    if (family.name != "hourglass_grpc_server_handled_total") continue;
    for (const prometheus::ClientMetric& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      if (labels["grpc_method"] == method && labels["grpc_code"] == code) {
        return metric.counter.value;
      }
    }
  }
  return 0;
}

class ParseErrorInterceptorTest : public ::testing::Test {
 protected:
  // Runs one call of `method` through its interceptor: the request (null: gRPC failed to
  // deserialize it), then the status the handler (or gRPC) sends; returns the status sent.
  grpc::Status Call(const std::string& method, void* request, grpc::Status sent) {
    std::unique_ptr<grpc::experimental::Interceptor> interceptor(
        factory_.CreateForMethod(method, nullptr));
    EXPECT_NE(interceptor, nullptr) << method;
    if (interceptor == nullptr) return sent;
    FakeBatch received({InterceptionHookPoints::POST_RECV_INITIAL_METADATA,
                        InterceptionHookPoints::POST_RECV_MESSAGE});
    received.recv_message = request;
    interceptor->Intercept(&received);
    EXPECT_EQ(received.proceeded, 1);
    FakeBatch finish({InterceptionHookPoints::PRE_SEND_INITIAL_METADATA,
                      InterceptionHookPoints::PRE_SEND_STATUS});
    finish.send_status = std::move(sent);
    interceptor->Intercept(&finish);
    EXPECT_EQ(finish.proceeded, 1);
    return finish.send_status;
  }

  FakeClock clock_;
  Metrics metrics_;
  RpcContext context_{clock_, metrics_};
  ParseErrorInterceptorFactory factory_{context_};
};

// gRPC's UNIMPLEMENTED for a request it could not deserialize becomes INVALID_ARGUMENT naming the
// request type, and is counted under its method with that code.
TEST_F(ParseErrorInterceptorTest, FailedDeserializationIsInvalidArgument) {
  const grpc::Status sent = Call("/hourglass.v1.SchedulerService/Schedule", nullptr,
                                 grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  EXPECT_EQ(sent.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(sent.error_message(),
              StartsWith("request is not a valid hourglass.v1.ScheduleRequest: its bytes do not "
                         "parse as that protobuf message"));
  EXPECT_EQ(Handled(metrics_, "Schedule", "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(Handled(metrics_, "Schedule", "UNIMPLEMENTED"), 0);

  const grpc::Status batch = Call("/hourglass.v1.ConsumerService/AckBatch", nullptr,
                                  grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  EXPECT_EQ(batch.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(batch.error_message(), HasSubstr("hourglass.v1.AckBatchRequest"));
  EXPECT_EQ(Handled(metrics_, "AckBatch", "INVALID_ARGUMENT"), 1);
}

// A handler's own status is never rewritten: a request that parsed keeps INTERNAL (and even an
// UNIMPLEMENTED of its own), and the handler counted it already.
TEST_F(ParseErrorInterceptorTest, HandlerStatusesAreLeftAlone) {
  v1::ScheduleRequest request;
  for (grpc::StatusCode code : {grpc::StatusCode::INTERNAL, grpc::StatusCode::UNIMPLEMENTED,
                                grpc::StatusCode::OK, grpc::StatusCode::INVALID_ARGUMENT}) {
    const grpc::Status sent =
        Call("/hourglass.v1.SchedulerService/Schedule", &request, grpc::Status(code, "handler"));
    EXPECT_EQ(sent.error_code(), code);
    EXPECT_EQ(sent.error_message(), "handler");
  }
  EXPECT_EQ(Handled(metrics_, "Schedule", "INVALID_ARGUMENT"), 0);
}

// After a failed deserialization only gRPC's UNIMPLEMENTED is rewritten (a call cancelled on the
// way keeps its status).
TEST_F(ParseErrorInterceptorTest, OnlyGrpcsAnswerIsRewritten) {
  const grpc::Status sent = Call("/hourglass.v1.SchedulerService/GetStatus", nullptr,
                                 grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  EXPECT_EQ(sent.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(Handled(metrics_, "GetStatus", "INVALID_ARGUMENT"), 0);
}

// Every method of both services has an interceptor; anything else (health, reflection, unknown
// names, which would also be unbounded metric labels) has none.
TEST_F(ParseErrorInterceptorTest, OnlyHourglassMethodsAreIntercepted) {
  for (const google::protobuf::FileDescriptor* file :
       {v1::ScheduleRequest::descriptor()->file(), v1::LeaseRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      for (int m = 0; m < file->service(s)->method_count(); ++m) {
        const std::string method = absl::StrCat("/", file->service(s)->full_name(), "/",
                                                file->service(s)->method(m)->name());
        std::unique_ptr<grpc::experimental::Interceptor> interceptor(
            factory_.CreateForMethod(method, nullptr));
        EXPECT_NE(interceptor, nullptr) << method;
      }
    }
  }
  for (const char* other : {"/grpc.health.v1.Health/Check",
                            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                            "/hourglass.v1.SchedulerService/NoSuchMethod", "", "garbage"}) {
    std::unique_ptr<grpc::experimental::Interceptor> interceptor(
        factory_.CreateForMethod(other, nullptr));
    EXPECT_EQ(interceptor, nullptr) << other;
  }
}

// protobuf's report of invalid UTF-8 reaches the thread that parsed, once, and names the field
// (nested ones by their own message); the message then names it.
TEST_F(ParseErrorInterceptorTest, Utf8ReportNamesTheField) {
  CaptureProtobufParseErrors();
  TakeUtf8ParseErrorOnThisThread();
  v1::ScheduleRequest request;
  // queue (field 1) = "\xff"
  EXPECT_FALSE(request.ParseFromString(std::string("\x0a\x01\xff", 3)));
  EXPECT_EQ(TakeUtf8ParseErrorOnThisThread(), "hourglass.v1.ScheduleRequest.queue");
  EXPECT_EQ(TakeUtf8ParseErrorOnThisThread(), "");
  // http_target (field 8) { url (field 1) = "\xc3" }
  EXPECT_FALSE(request.ParseFromString(std::string("\x42\x03\x0a\x01\xc3", 5)));
  EXPECT_EQ(TakeUtf8ParseErrorOnThisThread(), "hourglass.v1.HttpTarget.url");
  // Another thread's parse is its own.
  std::thread other([] {
    v1::AckRequest ack;
    EXPECT_FALSE(ack.ParseFromString(std::string("\x0a\x01\xff", 3)));
  });
  other.join();
  EXPECT_EQ(TakeUtf8ParseErrorOnThisThread(), "");

  EXPECT_EQ(ParseErrorStatus("hourglass.v1.ScheduleRequest", "hourglass.v1.HttpTarget.url"),
            absl::InvalidArgumentError(
                "request is not a valid hourglass.v1.ScheduleRequest: string field "
                "hourglass.v1.HttpTarget.url is not valid UTF-8 (every string field must hold "
                "UTF-8 text; arbitrary bytes belong in a bytes field such as "
                "ScheduleRequest.payload, or encode them, e.g. percent- or base64-encoding)"));
}

// The interceptor uses the report of its own call: a failed parse with a UTF-8 report names the
// field, and the report does not outlive the call (the next failure is the generic one).
TEST_F(ParseErrorInterceptorTest, InterceptorUsesTheReportOfItsCall) {
  CaptureProtobufParseErrors();
  v1::ScheduleRequest request;
  EXPECT_FALSE(request.ParseFromString(std::string("\x12\x02\x61\xff", 4)));  // task_id "a\xff"
  const grpc::Status sent = Call("/hourglass.v1.SchedulerService/Schedule", nullptr,
                                 grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  EXPECT_THAT(sent.error_message(),
              HasSubstr("string field hourglass.v1.ScheduleRequest.task_id is not valid UTF-8"));
  const grpc::Status next = Call("/hourglass.v1.SchedulerService/Schedule", nullptr,
                                 grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  EXPECT_THAT(next.error_message(), HasSubstr("its bytes do not parse"));
}

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A batch beyond its limit is refused by counting, before any item is parsed (the message is
// ValidateBatchSize's, with the exact count); within the limit it parses; bytes that do not parse
// are ParseErrorStatus's answer, UTF-8 field included.
TEST(ParseBatchRequestTest, CountsBeforeParsing) {
  CaptureProtobufParseErrors();
  v1::ScheduleBatchRequest batch;
  std::string two_million;
  for (int i = 0; i < 2'000'000; ++i) two_million += std::string("\x0a\x00", 2);
  EXPECT_EQ(ParseBatchRequest(Bytes(two_million), 1, "requests", &batch),
            absl::InvalidArgumentError("requests must have 1 to 1000 entries, got 2000000"));
  EXPECT_EQ(batch.requests_size(), 0);  // never parsed

  // 1000 items, with other fields in between (unknown ones): parsed.
  std::string thousand;
  for (int i = 0; i < 1000; ++i) thousand += std::string("\x0a\x03\x0a\x01q\x98\x06\x01", 8);
  ASSERT_TRUE(ParseBatchRequest(Bytes(thousand), 1, "requests", &batch).ok());
  EXPECT_EQ(batch.requests_size(), 1000);
  EXPECT_EQ(batch.requests(999).queue(), "q");
  // 1001: refused.
  EXPECT_EQ(ParseBatchRequest(Bytes(thousand + std::string("\x0a\x00", 2)), 1, "requests", &batch),
            absl::InvalidArgumentError("requests must have 1 to 1000 entries, got 1001"));

  // acks[0].task_id = "\xff": the parser's answer, naming the field; the request is cleared.
  v1::AckBatchRequest acks;
  const absl::Status bad_utf8 =
      ParseBatchRequest(Bytes(std::string("\x0a\x03\x0a\x01\xff", 5)), 1, "acks", &acks);
  EXPECT_EQ(bad_utf8.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_utf8.message()),
              StartsWith("request is not a valid hourglass.v1.AckBatchRequest: string field "
                         "hourglass.v1.AckRequest.task_id is not valid UTF-8"));
  EXPECT_EQ(acks.acks_size(), 0);
  // A length past the end: does not scan, and the parser refuses it.
  EXPECT_THAT(
      std::string(
          ParseBatchRequest(Bytes(std::string("\x0a\x7f\x0a", 3)), 1, "acks", &acks).message()),
      StartsWith("request is not a valid hourglass.v1.AckBatchRequest: its bytes do not parse"));
  // An empty body is an empty batch (ValidateBatchSize refuses it later).
  EXPECT_TRUE(ParseBatchRequest(Bytes(""), 1, "acks", &acks).ok());

  v1::ScheduleBatchResponse response;
  response.add_results()->set_code(3);
  grpc::ByteBuffer out;
  SerializeResponse(response, &out);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(out.Dump(&slices).ok());
  std::string serialized;
  for (const grpc::Slice& slice : slices) {
    serialized.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  EXPECT_EQ(serialized, response.SerializeAsString());
}

}  // namespace
}  // namespace hourglass
