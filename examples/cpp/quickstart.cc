// Hourglass quickstart for C++: schedules one task 1 s out, leases it when it is due (a long
// poll), acks it and prints its final status.
//
//   quickstart [--address=host:port] [--queue=name]
//
// The address defaults to $HOURGLASS_ADDRESS, else localhost:7070. Any failed call ends the
// program with a message on stderr and exit status 1.

#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"

namespace {

std::string DefaultAddress() {
  const char* address = std::getenv("HOURGLASS_ADDRESS");
  return address != nullptr && *address != '\0' ? address : "localhost:7070";
}

}  // namespace

ABSL_FLAG(std::string, address, DefaultAddress(),
          "the server's gRPC address (default: $HOURGLASS_ADDRESS, else localhost:7070)");
ABSL_FLAG(std::string, queue, "quickstart", "the queue to use");

namespace {

using google::protobuf::util::TimeUtil;
using hourglass::v1::ConsumerService;
using hourglass::v1::SchedulerService;

// Every call but Lease gets this deadline; Lease's covers its wait as well.
constexpr std::chrono::seconds kRpcTimeout(10);
constexpr std::chrono::seconds kLeaseWait(10);

// Sets the deadline of a call `timeout` from now: a call without one can wait forever.
void SetTimeout(grpc::ClientContext& context, std::chrono::seconds timeout) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

// Prints why `method` failed, with the address and the gRPC status code's name; returns 1.
int Fail(const std::string& method, const std::string& address, const grpc::Status& status) {
  // gRPC's codes are absl::StatusCode's numbers, so absl names them (UNAVAILABLE, ...).
  std::cerr << "quickstart: " << method << " on " << address << " failed: "
            << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())) << ": "
            << status.error_message() << "\n";
  return 1;
}

int Run(const std::string& address, const std::string& queue) {
  // Plaintext, as the server listens; use grpc::SslCredentials behind a TLS proxy.
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  std::unique_ptr<SchedulerService::Stub> scheduler = SchedulerService::NewStub(channel);
  std::unique_ptr<ConsumerService::Stub> consumer = ConsumerService::NewStub(channel);

  // Producer: deliver this payload to the queue's consumers in 1 second.
  hourglass::v1::ScheduleRequest schedule;
  schedule.set_queue(queue);
  schedule.set_payload("hello, hourglass");
  (*schedule.mutable_headers())["content-type"] = "text/plain";
  schedule.mutable_delay()->set_seconds(1);
  hourglass::v1::ScheduleResponse scheduled;
  {
    grpc::ClientContext context;
    SetTimeout(context, kRpcTimeout);
    grpc::Status status = scheduler->Schedule(&context, schedule, &scheduled);
    if (!status.ok()) return Fail("Schedule", address, status);
  }
  std::cout << "scheduled " << scheduled.task_id() << ", due "
            << TimeUtil::ToString(scheduled.due_time()) << std::endl;

  // Consumer: a long poll that returns as soon as a task is due (or empty after 10 s).
  hourglass::v1::LeaseRequest lease;
  lease.set_queue(queue);
  lease.set_max_tasks(1);
  lease.mutable_wait()->set_seconds(kLeaseWait.count());
  hourglass::v1::LeaseResponse leased;
  const auto start = std::chrono::steady_clock::now();
  {
    grpc::ClientContext context;
    SetTimeout(context, kLeaseWait + kRpcTimeout);
    grpc::Status status = consumer->Lease(&context, lease, &leased);
    if (!status.ok()) return Fail("Lease", address, status);
  }
  if (leased.tasks().empty()) {
    std::cerr << "quickstart: no task was leased within " << kLeaseWait.count() << " s\n";
    return 1;
  }
  const hourglass::v1::LeasedTask& task = leased.tasks(0);
  const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
  std::cout << absl::StrFormat("leased %s (attempt %d) after %.1f s: %s", task.task_id(),
                               task.attempt(), waited.count(), task.payload())
            << std::endl;

  // Do the work here, then Ack; delivery is at least once, so the work must be safe to repeat
  // for the same task id. (Nack instead has the task retried with backoff.)
  hourglass::v1::AckRequest ack;
  ack.set_task_id(task.task_id());
  ack.set_lease_token(task.lease_token());
  hourglass::v1::AckResponse acked;
  {
    grpc::ClientContext context;
    SetTimeout(context, kRpcTimeout);
    grpc::Status status = consumer->Ack(&context, ack, &acked);
    if (!status.ok()) return Fail("Ack", address, status);
  }
  std::cout << "acked" << std::endl;

  hourglass::v1::GetStatusRequest get_status;
  get_status.set_task_id(scheduled.task_id());
  hourglass::v1::GetStatusResponse got;
  {
    grpc::ClientContext context;
    SetTimeout(context, kRpcTimeout);
    grpc::Status status = scheduler->GetStatus(&context, get_status, &got);
    if (!status.ok()) return Fail("GetStatus", address, status);
  }
  const std::string& state = hourglass::v1::TaskState_Name(got.task().state());
  std::cout << "status: " << state << ", attempts " << got.task().attempts() << std::endl;
  if (got.task().state() != hourglass::v1::TASK_STATE_SUCCEEDED) {
    std::cerr << "quickstart: task " << scheduled.task_id() << " is " << state
              << ", not TASK_STATE_SUCCEEDED\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Schedules, leases and acks one hourglass task.");
  absl::ParseCommandLine(argc, argv);
  return Run(absl::GetFlag(FLAGS_address), absl::GetFlag(FLAGS_queue));
}
