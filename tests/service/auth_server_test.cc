// In-process tests of --auth_tokens_file through the real Server: every RPC of both services with
// no token, an unknown token, and each combination of permission and queue, over
// Server::InProcessChannel() on a FakeClock.
//
// Tokens of the tests (one tenant "billing", another tenant "other", and an operator):
//   producer  billing  schedule
//   worker    billing  consume
//   admin     billing  admin
//   other     other    schedule,consume,admin
//   ops       *        schedule,consume,admin
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc_health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "service/server.h"
#include "service/validation.h"
#include "tests/testing/fake_clock.h"

namespace grpc {
// gtest prints status codes by number otherwise.
void PrintTo(StatusCode code, std::ostream* os) {
  *os << absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}
}  // namespace grpc

namespace hourglass {
namespace {

using ::grpc::StatusCode;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kRealTimeout = absl::Seconds(10);

const std::string kProducer = "producer-0123456789abcdef";
const std::string kWorker = "worker-0123456789abcdef";
const std::string kAdmin = "admin-0123456789abcdef";
const std::string kOther = "other-0123456789abcdef";
const std::string kOps = "ops-0123456789abcdef";
const std::string kUnknown = "unknown-0123456789abcdef";

// Polls `done` in real time (bounded); yields, never sleeps.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time give_up = absl::Now() + kRealTimeout;
  while (!done()) {
    if (absl::Now() > give_up) return done();
    std::this_thread::yield();
  }
  return true;
}

std::string TokensFile() {
  return absl::StrCat("# tenants of the auth tests\n",            //
                      kProducer, " billing schedule\n",           //
                      kWorker, " billing consume\n",              //
                      kAdmin, " billing admin\n",                 //
                      kOther, " other schedule,consume,admin\n",  //
                      kOps, "   *   schedule,consume,admin  # ops\n");
}

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = (std::filesystem::temp_directory_path() / "hourglass_auth_server.XXXXXX");
    ASSERT_NE(::mkdtemp(dir.data()), nullptr) << std::strerror(errno);
    dir_ = dir;
    tokens_path_ = dir_ + "/tokens";
    WriteTokens(TokensFile());
    options_.grpc_address = "127.0.0.1:0";
    options_.metrics_address = "";
    options_.data_dir = dir_ + "/data";
    options_.workers = 2;
    options_.shutdown_grace = absl::Milliseconds(50);
    options_.auth_tokens_file = tokens_path_;
    options_.auth_reload_interval = absl::Milliseconds(10);
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options_, clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = server_->InProcessChannel();
    scheduler_ = v1::SchedulerService::NewStub(channel_);
    consumer_ = v1::ConsumerService::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    scheduler_.reset();
    consumer_.reset();
    channel_.reset();
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Replaces the tokens file atomically (write, rename).
  void WriteTokens(const std::string& contents) {
    const std::string temporary = tokens_path_ + ".new";
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      out << contents;
    }
    ASSERT_EQ(std::rename(temporary.c_str(), tokens_path_.c_str()), 0) << std::strerror(errno);
  }

  // A context with a deadline and, unless `token` is empty, "authorization: Bearer <token>".
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kRealTimeout));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }

  // --- Calls as `token` --------------------------------------------------------------------

  // `bytes` as the request of `method`, unparsed.
  grpc::Status RawCall(const std::string& token, const std::string& method,
                       const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    std::unique_ptr<grpc::ClientContext> context = Context(token);
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    if (!done.WaitForNotificationWithTimeout(kRealTimeout + absl::Seconds(5))) {
      ADD_FAILURE() << method << " got no answer";
    }
    return status;
  }

  grpc::Status Schedule(const std::string& token, const std::string& queue,
                        const std::string& task_id, v1::ScheduleResponse* response = nullptr,
                        int max_attempts = 0) {
    v1::ScheduleRequest request;
    request.set_queue(queue);
    request.set_task_id(task_id);
    request.set_payload("payload");
    *request.mutable_delay() = ToProto(absl::Seconds(1));
    if (max_attempts > 0) request.mutable_retry_policy()->set_max_attempts(max_attempts);
    v1::ScheduleResponse ignored;
    return scheduler_->Schedule(Context(token).get(), request,
                                response != nullptr ? response : &ignored);
  }
  grpc::Status GetStatus(const std::string& token, const std::string& task_id,
                         v1::GetStatusResponse* response = nullptr) {
    v1::GetStatusRequest request;
    request.set_task_id(task_id);
    v1::GetStatusResponse ignored;
    return scheduler_->GetStatus(Context(token).get(), request,
                                 response != nullptr ? response : &ignored);
  }
  grpc::Status Cancel(const std::string& token, const std::string& task_id) {
    v1::CancelRequest request;
    request.set_task_id(task_id);
    v1::CancelResponse response;
    return scheduler_->Cancel(Context(token).get(), request, &response);
  }
  grpc::Status Reschedule(const std::string& token, const std::string& task_id) {
    v1::RescheduleRequest request;
    request.set_task_id(task_id);
    *request.mutable_delay() = ToProto(absl::Seconds(5));
    v1::RescheduleResponse response;
    return scheduler_->Reschedule(Context(token).get(), request, &response);
  }
  grpc::Status ListTasks(const std::string& token, const std::string& queue,
                         v1::ListTasksResponse* response = nullptr) {
    v1::ListTasksRequest request;
    request.set_queue(queue);
    v1::ListTasksResponse ignored;
    return scheduler_->ListTasks(Context(token).get(), request,
                                 response != nullptr ? response : &ignored);
  }
  grpc::Status RetryTask(const std::string& token, const std::string& task_id) {
    v1::RetryTaskRequest request;
    request.set_task_id(task_id);
    v1::RetryTaskResponse response;
    return scheduler_->RetryTask(Context(token).get(), request, &response);
  }
  grpc::Status Lease(const std::string& token, const std::string& queue,
                     v1::LeaseResponse* response = nullptr) {
    v1::LeaseRequest request;
    request.set_queue(queue);
    *request.mutable_lease_duration() = ToProto(absl::Seconds(60));
    v1::LeaseResponse ignored;
    return consumer_->Lease(Context(token).get(), request,
                            response != nullptr ? response : &ignored);
  }
  grpc::Status Ack(const std::string& token, const v1::LeasedTask& task) {
    v1::AckRequest request;
    request.set_task_id(task.task_id());
    request.set_lease_token(task.lease_token());
    v1::AckResponse response;
    return consumer_->Ack(Context(token).get(), request, &response);
  }
  grpc::Status Nack(const std::string& token, const v1::LeasedTask& task) {
    v1::NackRequest request;
    request.set_task_id(task.task_id());
    request.set_lease_token(task.lease_token());
    request.set_error("failed");
    v1::NackResponse response;
    return consumer_->Nack(Context(token).get(), request, &response);
  }
  grpc::Status ExtendLease(const std::string& token, const v1::LeasedTask& task) {
    v1::ExtendLeaseRequest request;
    request.set_task_id(task.task_id());
    request.set_lease_token(task.lease_token());
    *request.mutable_lease_duration() = ToProto(absl::Seconds(60));
    v1::ExtendLeaseResponse response;
    return consumer_->ExtendLease(Context(token).get(), request, &response);
  }
  // The code of the AckBatch's single item (the batch itself must be OK).
  StatusCode AckBatchItem(const std::string& token, const v1::LeasedTask& task) {
    v1::AckBatchRequest request;
    v1::AckRequest* ack = request.add_acks();
    ack->set_task_id(task.task_id());
    ack->set_lease_token(task.lease_token());
    v1::AckBatchResponse response;
    const grpc::Status status = consumer_->AckBatch(Context(token).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.results_size() == 1 ? static_cast<StatusCode>(response.results(0).code())
                                        : StatusCode::UNKNOWN;
  }

  // --- Fixtures of tasks, made with the ops token ------------------------------------------

  // A SCHEDULED task of `queue`.
  void ScheduledTask(const std::string& queue, const std::string& task_id, int max_attempts = 0) {
    const grpc::Status status = Schedule(kOps, queue, task_id, nullptr, max_attempts);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  // A task of `queue`, due, leased by ops.
  v1::LeasedTask LeasedTask(const std::string& queue, const std::string& task_id,
                            int max_attempts = 0) {
    ScheduledTask(queue, task_id, max_attempts);
    clock_.Advance(absl::Seconds(1));
    v1::LeasedTask leased;
    EXPECT_TRUE(Eventually([&] {
      v1::LeaseResponse response;
      if (!Lease(kOps, queue, &response).ok() || response.tasks_size() == 0) return false;
      leased = response.tasks(0);
      return true;
    })) << "no task to lease in "
        << queue;
    EXPECT_EQ(leased.task_id(), task_id);
    return leased;
  }
  // A DEAD task of `queue` (one attempt, nacked).
  void DeadTask(const std::string& queue, const std::string& task_id) {
    const v1::LeasedTask leased = LeasedTask(queue, task_id, /*max_attempts=*/1);
    const grpc::Status status = Nack(kOps, leased);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  FakeClock clock_;
  std::string dir_;
  std::string tokens_path_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SchedulerService::Stub> scheduler_;
  std::unique_ptr<v1::ConsumerService::Stub> consumer_;
};

// Every RPC of both services refuses a call without a token or with an unknown one, before
// looking at the request (an invalid request is UNAUTHENTICATED too), and the message never
// echoes the token.
TEST_F(AuthServerTest, NoOrUnknownTokenIsUnauthenticatedEverywhere) {
  const v1::LeasedTask leased = LeasedTask("billing", "t2");
  ScheduledTask("billing", "t1");
  for (const std::string& token : {std::string(), kUnknown}) {
    SCOPED_TRACE(token.empty() ? "no token" : "unknown token");
    std::vector<grpc::Status> statuses = {
        Schedule(token, "billing", "t3"),
        Schedule(token, "bad queue!", "t3"),
        GetStatus(token, "t1"),
        GetStatus(token, "no-such-task"),
        Cancel(token, "t1"),
        Reschedule(token, "t1"),
        ListTasks(token, "billing"),
        ListTasks(token, ""),
        RetryTask(token, "t1"),
        Lease(token, "billing"),
        Lease(token, "bad queue!"),
        Ack(token, leased),
        Nack(token, leased),
        ExtendLease(token, leased),
    };
    {
      v1::ScheduleBatchRequest request;
      request.add_requests()->set_queue("billing");
      v1::ScheduleBatchResponse response;
      statuses.push_back(scheduler_->ScheduleBatch(Context(token).get(), request, &response));
      v1::AckBatchRequest acks;
      acks.add_acks()->set_task_id("t2");
      v1::AckBatchResponse ack_response;
      statuses.push_back(consumer_->AckBatch(Context(token).get(), acks, &ack_response));
    }
    for (size_t i = 0; i < statuses.size(); ++i) {
      EXPECT_EQ(statuses[i].error_code(), StatusCode::UNAUTHENTICATED) << "call " << i;
      EXPECT_EQ(statuses[i].error_message(),
                token.empty() ? "no credentials: send the metadata \"authorization: Bearer "
                                "<token>\""
                              : "the bearer token is not valid")
          << "call " << i;
    }
  }
  // Nothing changed: the task is still leased, none was scheduled.
  v1::GetStatusResponse status;
  ASSERT_TRUE(GetStatus(kOps, "t2", &status).ok());
  EXPECT_EQ(status.task().state(), v1::TASK_STATE_LEASED);
  EXPECT_EQ(GetStatus(kOps, "t3").error_code(), StatusCode::NOT_FOUND);
}

// Other schemes and malformed values are UNAUTHENTICATED.
// A request that does not parse, or has a field of the wrong wire type, is UNAUTHENTICATED
// without a valid token (the caller learns nothing of its request), INVALID_ARGUMENT with one: for
// the methods gRPC parses and for the batches hourglass parses itself.
TEST_F(AuthServerTest, MalformedRequestsAreJudgedAfterTheToken) {
  const std::string garbage(12, '\xff');
  const std::string wrong_wire_type("\x08\x05", 2);  // field 1 (a string or a list) as a varint
  for (const char* method :
       {"/hourglass.v1.SchedulerService/Schedule", "/hourglass.v1.SchedulerService/ScheduleBatch",
        "/hourglass.v1.ConsumerService/Lease", "/hourglass.v1.ConsumerService/AckBatch"}) {
    for (const std::string& bytes : {garbage, wrong_wire_type}) {
      EXPECT_EQ(RawCall("", method, bytes).error_code(), StatusCode::UNAUTHENTICATED) << method;
      EXPECT_EQ(RawCall("unknown-0123456789abcdef", method, bytes).error_code(),
                StatusCode::UNAUTHENTICATED)
          << method;
      const grpc::Status status = RawCall(kOps, method, bytes);
      EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT) << method;
      EXPECT_THAT(status.error_message(),
                  HasSubstr(bytes == garbage ? "request is not a valid hourglass.v1."
                                             : "(field 1 of hourglass.v1."))
          << method;
    }
  }
}

TEST_F(AuthServerTest, OnlyTheBearerSchemeIsAccepted) {
  for (const std::string& value :
       {"Basic " + kOps, kOps, std::string("Bearer"), "Bearer  " + kOps + "x"}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kRealTimeout));
    context.AddMetadata("authorization", value);
    v1::GetStatusRequest request;
    request.set_task_id("t");
    v1::GetStatusResponse response;
    EXPECT_EQ(scheduler_->GetStatus(&context, request, &response).error_code(),
              StatusCode::UNAUTHENTICATED)
        << value;
  }
  // The scheme is case-insensitive (RFC 7235).
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kRealTimeout));
  context.AddMetadata("authorization", "bearer " + kOps);
  v1::GetStatusRequest request;
  request.set_task_id("t");
  v1::GetStatusResponse response;
  EXPECT_EQ(scheduler_->GetStatus(&context, request, &response).error_code(),
            StatusCode::NOT_FOUND);
}

// Health checks need no token.
TEST_F(AuthServerTest, HealthNeedsNoToken) {
  std::unique_ptr<Health::Stub> health = Health::NewStub(channel_);
  for (const std::string service : {"", "hourglass.v1.SchedulerService"}) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kRealTimeout));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  }
}

// Schedule needs `schedule` on the queue ("default" when the request names none).
TEST_F(AuthServerTest, ScheduleNeedsScheduleOnTheQueue) {
  const struct {
    const std::string& token;
    std::string queue;
    StatusCode code;
  } cases[] = {
      {kProducer, "billing", StatusCode::OK},
      {kProducer, "other", StatusCode::PERMISSION_DENIED},
      {kProducer, "", StatusCode::PERMISSION_DENIED},
      {kWorker, "billing", StatusCode::PERMISSION_DENIED},
      {kAdmin, "billing", StatusCode::PERMISSION_DENIED},
      {kOther, "billing", StatusCode::PERMISSION_DENIED},
      {kOther, "other", StatusCode::OK},
      {kOps, "billing", StatusCode::OK},
      {kOps, "", StatusCode::OK},
  };
  int n = 0;
  for (const auto& c : cases) {
    const grpc::Status status = Schedule(c.token, c.queue, absl::StrCat("s", ++n));
    EXPECT_EQ(status.error_code(), c.code) << c.token << " " << c.queue;
  }
  EXPECT_EQ(Schedule(kProducer, "", "s-default").error_message(),
            "the token may not schedule in queue \"default\"");
  EXPECT_EQ(Schedule(kWorker, "billing", "s-w").error_message(),
            "the token may not schedule in queue \"billing\"");
  // A refused Schedule did not create its task.
  EXPECT_EQ(GetStatus(kOps, "s4").error_code(), StatusCode::NOT_FOUND);
  // Validation still comes after the token and before the permission.
  EXPECT_EQ(Schedule(kWorker, "bad queue!", "s-bad").error_code(), StatusCode::INVALID_ARGUMENT);
}

// ScheduleBatch is checked item by item: the items of permitted queues are scheduled.
TEST_F(AuthServerTest, ScheduleBatchIsCheckedPerItem) {
  const struct {
    const std::string& token;
    std::vector<StatusCode> codes;  // of the items billing, other
  } cases[] = {
      {kProducer, {StatusCode::OK, StatusCode::PERMISSION_DENIED}},
      {kOther, {StatusCode::PERMISSION_DENIED, StatusCode::OK}},
      {kWorker, {StatusCode::PERMISSION_DENIED, StatusCode::PERMISSION_DENIED}},
      {kOps, {StatusCode::OK, StatusCode::OK}},
  };
  int n = 0;
  for (const auto& c : cases) {
    v1::ScheduleBatchRequest request;
    for (const char* queue : {"billing", "other"}) {
      v1::ScheduleRequest* item = request.add_requests();
      item->set_queue(queue);
      item->set_task_id(absl::StrCat("b", ++n));
      *item->mutable_delay() = ToProto(absl::Seconds(1));
    }
    v1::ScheduleBatchResponse response;
    const grpc::Status status =
        scheduler_->ScheduleBatch(Context(c.token).get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.results_size(), 2);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(static_cast<StatusCode>(response.results(i).code()), c.codes[i])
          << c.token << " item " << i;
      const bool created = GetStatus(kOps, request.requests(i).task_id()).ok();
      EXPECT_EQ(created, c.codes[i] == StatusCode::OK) << c.token << " item " << i;
    }
  }
}

// Lease needs `consume` on its queue.
TEST_F(AuthServerTest, LeaseNeedsConsumeOnTheQueue) {
  ScheduledTask("billing", "l1");
  clock_.Advance(absl::Seconds(1));
  const struct {
    const std::string& token;
    std::string queue;
    StatusCode code;
  } refused[] = {
      {kProducer, "billing", StatusCode::PERMISSION_DENIED},
      {kAdmin, "billing", StatusCode::PERMISSION_DENIED},
      {kOther, "billing", StatusCode::PERMISSION_DENIED},
      {kWorker, "other", StatusCode::PERMISSION_DENIED},
      {kWorker, "", StatusCode::PERMISSION_DENIED},
  };
  for (const auto& c : refused) {
    const grpc::Status status = Lease(c.token, c.queue);
    EXPECT_EQ(status.error_code(), c.code) << c.token << " " << c.queue;
  }
  EXPECT_EQ(Lease(kProducer, "billing").error_message(),
            "the token may not consume in queue \"billing\"");
  // Nothing was handed out to them: the worker gets the task.
  v1::LeasedTask leased;
  ASSERT_TRUE(Eventually([&] {
    v1::LeaseResponse response;
    if (!Lease(kWorker, "billing", &response).ok() || response.tasks_size() == 0) return false;
    leased = response.tasks(0);
    return true;
  }));
  EXPECT_EQ(leased.task_id(), "l1");
  EXPECT_EQ(leased.attempt(), 1);
}

// GetStatus needs any permission on the task's queue; another tenant's task is NOT_FOUND with
// the very message of an unknown id.
TEST_F(AuthServerTest, GetStatusOfAnotherTenantsTaskIsNotFound) {
  ScheduledTask("billing", "g1");
  for (const std::string& token : {kProducer, kWorker, kAdmin, kOps}) {
    v1::GetStatusResponse response;
    const grpc::Status status = GetStatus(token, "g1", &response);
    ASSERT_TRUE(status.ok()) << token << ": " << status.error_message();
    EXPECT_EQ(response.task().queue(), "billing");
  }
  const grpc::Status hidden = GetStatus(kOther, "g1");
  const grpc::Status unknown = GetStatus(kOther, "g-unknown");
  EXPECT_EQ(hidden.error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(hidden.error_message(), "no task with task_id \"g1\"");
  EXPECT_EQ(unknown.error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.error_message(), "no task with task_id \"g-unknown\"");
}

// Cancel and Reschedule need `schedule`; another tenant gets NOT_FOUND and changes nothing.
TEST_F(AuthServerTest, CancelAndRescheduleNeedSchedule) {
  const struct {
    const std::string& token;
    StatusCode code;
  } cases[] = {
      {kWorker, StatusCode::PERMISSION_DENIED},
      {kAdmin, StatusCode::PERMISSION_DENIED},
      {kOther, StatusCode::NOT_FOUND},
      {kProducer, StatusCode::OK},
      {kOps, StatusCode::OK},
  };
  int n = 0;
  for (const auto& c : cases) {
    const std::string id = absl::StrCat("c", ++n);
    ScheduledTask("billing", id);
    const grpc::Status rescheduled = Reschedule(c.token, id);
    EXPECT_EQ(rescheduled.error_code(), c.code) << c.token << " Reschedule";
    const grpc::Status cancelled = Cancel(c.token, id);
    EXPECT_EQ(cancelled.error_code(), c.code) << c.token << " Cancel";
    if (c.code == StatusCode::NOT_FOUND) {
      EXPECT_EQ(cancelled.error_message(), absl::StrCat("no task with task_id \"", id, "\""));
    }
    v1::GetStatusResponse status;
    ASSERT_TRUE(GetStatus(kOps, id, &status).ok());
    EXPECT_EQ(status.task().state(),
              c.code == StatusCode::OK ? v1::TASK_STATE_CANCELLED : v1::TASK_STATE_SCHEDULED)
        << c.token;
  }
  EXPECT_EQ(Cancel(kWorker, "c2").error_message(),
            "the token may not schedule in queue \"billing\"");
}

// Ack, Nack, ExtendLease and AckBatch items need `consume`; another tenant gets NOT_FOUND.
TEST_F(AuthServerTest, AckNackExtendNeedConsume) {
  const struct {
    const std::string& token;
    StatusCode code;
  } cases[] = {
      {kProducer, StatusCode::PERMISSION_DENIED},
      {kAdmin, StatusCode::PERMISSION_DENIED},
      {kOther, StatusCode::NOT_FOUND},
      {kWorker, StatusCode::OK},
      {kOps, StatusCode::OK},
  };
  int n = 0;
  for (const auto& c : cases) {
    const v1::LeasedTask first = LeasedTask("billing", absl::StrCat("a", ++n));
    EXPECT_EQ(ExtendLease(c.token, first).error_code(), c.code) << c.token << " ExtendLease";
    EXPECT_EQ(Ack(c.token, first).error_code(), c.code) << c.token << " Ack";
    // One attempt: a Nack makes it DEAD, so that it does not come back into the next Lease.
    const v1::LeasedTask second = LeasedTask("billing", absl::StrCat("a", ++n), 1);
    EXPECT_EQ(Nack(c.token, second).error_code(), c.code) << c.token << " Nack";
    const v1::LeasedTask third = LeasedTask("billing", absl::StrCat("a", ++n));
    EXPECT_EQ(AckBatchItem(c.token, third), c.code) << c.token << " AckBatch";
    // The refused calls left the leases alone.
    v1::GetStatusResponse status;
    ASSERT_TRUE(GetStatus(kOps, third.task_id(), &status).ok());
    EXPECT_EQ(status.task().state(),
              c.code == StatusCode::OK ? v1::TASK_STATE_SUCCEEDED : v1::TASK_STATE_LEASED);
    if (c.code != StatusCode::OK) {
      ASSERT_TRUE(Ack(kOps, first).ok());
      ASSERT_TRUE(Ack(kOps, second).ok());
      ASSERT_TRUE(Ack(kOps, third).ok());
    }
  }
}

// RetryTask needs `admin` on the task's queue.
TEST_F(AuthServerTest, RetryTaskNeedsAdmin) {
  const struct {
    const std::string& token;
    StatusCode code;
  } cases[] = {
      {kProducer, StatusCode::PERMISSION_DENIED},
      {kWorker, StatusCode::PERMISSION_DENIED},
      {kOther, StatusCode::NOT_FOUND},
      {kAdmin, StatusCode::OK},
      {kOps, StatusCode::OK},
  };
  int n = 0;
  for (const auto& c : cases) {
    const std::string id = absl::StrCat("r", ++n);
    DeadTask("billing", id);
    EXPECT_EQ(RetryTask(c.token, id).error_code(), c.code) << c.token;
    v1::GetStatusResponse status;
    ASSERT_TRUE(GetStatus(kOps, id, &status).ok());
    EXPECT_EQ(status.task().state() == v1::TASK_STATE_DEAD, c.code != StatusCode::OK) << c.token;
    // A retried task is due again: out of the way of the next case's Lease.
    if (c.code == StatusCode::OK) {
      ASSERT_TRUE(Cancel(kOps, id).ok());
    }
  }
  EXPECT_EQ(RetryTask(kWorker, "r2").error_message(),
            "the token may not admin in queue \"billing\"");
}

// ListTasks needs `admin` on its queue; without a queue, `admin` on every queue (*).
TEST_F(AuthServerTest, ListTasksNeedsAdmin) {
  ScheduledTask("billing", "k1");
  ScheduledTask("other", "k2");
  const struct {
    const std::string& token;
    std::string queue;
    StatusCode code;
  } cases[] = {
      {kProducer, "billing", StatusCode::PERMISSION_DENIED},
      {kWorker, "billing", StatusCode::PERMISSION_DENIED},
      {kOther, "billing", StatusCode::PERMISSION_DENIED},
      {kAdmin, "billing", StatusCode::OK},
      {kAdmin, "other", StatusCode::PERMISSION_DENIED},
      {kAdmin, "", StatusCode::PERMISSION_DENIED},
      {kOther, "", StatusCode::PERMISSION_DENIED},
      {kOps, "", StatusCode::OK},
  };
  for (const auto& c : cases) {
    v1::ListTasksResponse response;
    const grpc::Status status = ListTasks(c.token, c.queue, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.token << " " << c.queue;
    if (status.ok()) {
      std::vector<std::string> ids;
      for (const v1::Task& task : response.tasks()) ids.push_back(task.task_id());
      std::sort(ids.begin(), ids.end());
      const std::vector<std::string> expected =
          c.queue.empty() ? std::vector<std::string>{"k1", "k2"} : std::vector<std::string>{"k1"};
      EXPECT_EQ(ids, expected);
    }
  }
  EXPECT_EQ(ListTasks(kAdmin, "").error_message(),
            "the token may not admin in every queue (*); name a queue it may admin in");
}

// A change of the tokens file is picked up while serving; a malformed new version is ignored
// (the previous tokens stay in force).
TEST_F(AuthServerTest, TokensFileChangeIsPickedUp) {
  const std::string fresh = "fresh-0123456789abcdef";
  WriteTokens(absl::StrCat(fresh, " billing schedule\n", kOps, " * admin\n"));
  ASSERT_TRUE(Eventually([&] { return Schedule(fresh, "billing", "f1").ok(); }));
  EXPECT_EQ(Schedule(kProducer, "billing", "f2").error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Schedule(kOps, "billing", "f3").error_code(), StatusCode::PERMISSION_DENIED);

  WriteTokens(absl::StrCat(kProducer, " billing schedule\n", fresh, " billing nonsense\n"));
  // The reload thread looks every 10 ms: after 30 looks, nothing may have changed. (A negative
  // result needs a wait; no event marks "the bad file was read and ignored".)
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(Schedule(fresh, "billing", "f4").ok());
  EXPECT_EQ(Schedule(kProducer, "billing", "f5").error_code(), StatusCode::UNAUTHENTICATED);

  WriteTokens(absl::StrCat(kProducer, " billing schedule\n"));
  ASSERT_TRUE(Eventually([&] { return Schedule(kProducer, "billing", "f6").ok(); }));
  EXPECT_EQ(Schedule(fresh, "billing", "f7").error_code(), StatusCode::UNAUTHENTICATED);
}

// A malformed tokens file stops the start with its path and line; a missing one too.
TEST_F(AuthServerTest, MalformedTokensFileFailsTheStart) {
  ServerOptions options = options_;
  options.data_dir = dir_ + "/data2";
  WriteTokens(absl::StrCat(kOps, " * admin\n\n", kProducer, " billing,* schedule\n"));
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, clock_);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      server.status().message(),
      absl::StrCat(tokens_path_, ":3: queues must be either * alone or a list of queue names"));
  EXPECT_THAT(std::string(server.status().message()), Not(HasSubstr(kProducer)));

  options.auth_tokens_file = dir_ + "/missing";
  server = Server::Create(options, clock_);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr(dir_ + "/missing"));
}

// Without --auth_tokens_file every call is allowed, with or without a token.
TEST(AuthOffTest, WithoutTokensFileEveryCallIsAllowed) {
  std::string dir = (std::filesystem::temp_directory_path() / "hourglass_auth_off.XXXXXX");
  ASSERT_NE(::mkdtemp(dir.data()), nullptr) << std::strerror(errno);
  FakeClock clock;
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.metrics_address = "";
  options.data_dir = dir;
  options.shutdown_grace = absl::Milliseconds(50);
  {
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, clock);
    ASSERT_TRUE(server.ok()) << server.status();
    std::unique_ptr<v1::SchedulerService::Stub> scheduler =
        v1::SchedulerService::NewStub((*server)->InProcessChannel());
    for (const std::string& token : {std::string(), kUnknown}) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kRealTimeout));
      if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
      v1::ListTasksRequest request;
      v1::ListTasksResponse response;
      const grpc::Status status = scheduler->ListTasks(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    (*server)->Shutdown();
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace hourglass
