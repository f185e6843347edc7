#include "tools/hourglassctl/client.h"

#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "tools/hourglassctl/exit_codes.h"
#include "tools/hourglassctl/output.h"
#include "tools/hourglassctl/time_args.h"

namespace hourglass::ctl {
namespace {

namespace v1 = ::hourglass::v1;

// The whole file `path` named by --`flag`; more than `max_bytes` is an error.
absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path,
                                         size_t max_bytes) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot open \"", path, "\": ", std::strerror(errno)));
  }
  std::string contents;
  char buffer[65536];
  while (true) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": cannot read \"", path, "\": ", std::strerror(error)));
    }
    if (n == 0) break;
    contents.append(buffer, static_cast<size_t>(n));
    if (contents.size() > max_bytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": \"", path, "\" is larger than ", max_bytes, " bytes"));
    }
  }
  close(fd);
  return contents;
}

absl::StatusOr<std::string> ReadPayloadFile(const std::string& path, std::istream& stdin_stream) {
  if (path == "-") {
    std::string payload((std::istreambuf_iterator<char>(stdin_stream)),
                        std::istreambuf_iterator<char>());
    if (stdin_stream.bad())
      return absl::InvalidArgumentError("--payload_file -: cannot read stdin");
    return payload;
  }
  // The server refuses what is over its --max_payload_bytes, with a message saying so.
  return ReadFlagFile("payload_file", path, std::numeric_limits<size_t>::max());
}

// Prints the failure of a call of `method` ("SchedulerService/ListTasks") and returns its exit
// code. A status without a message (UNIMPLEMENTED from an older server) names the method.
int RpcFailed(const grpc::Status& status, absl::string_view method, std::ostream& err,
              bool api = true) {
  const absl::string_view package = api ? "hourglass.v1." : "";
  err << "hourglassctl: " << StatusCodeName(status.error_code()) << ": ";
  if (!status.error_message().empty()) {
    err << status.error_message();
  } else if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    err << "the server does not implement " << package << method;
  } else {
    err << package << method << " failed";
  }
  err << "\n";
  return ExitCodeFor(status.error_code());
}

// Prepares the context of every call: the deadline, --timeout from now plus `extra` (a lease's
// wait), and the token, if any, as "authorization: Bearer <token>".
void PrepareContext(grpc::ClientContext& context, const Options& options,
                    absl::Duration extra = absl::ZeroDuration()) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout + extra));
  if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
}

// Prints a response that carries a Task (status, cancel, reschedule, nack, retry).
template <typename Response>
int PrintTaskResponse(const Options& options, const Response& response, std::ostream& out,
                      absl::Time now) {
  if (options.output == OutputFormat::kJson) {
    out << ToJson(response);
  } else {
    out << FormatTask(response.task(), now);
  }
  return kExitOk;
}

int RunList(const Invocation& invocation, v1::SchedulerService::Stub& scheduler, std::ostream& out,
            std::ostream& err) {
  const Options& options = invocation.options;
  v1::ListTasksRequest request = BuildListTasksRequest(invocation);
  v1::ListTasksResponse all;
  absl::btree_set<std::string> seen_tokens;
  while (true) {
    grpc::ClientContext context;
    PrepareContext(context, options);
    v1::ListTasksResponse page;
    const grpc::Status status = scheduler.ListTasks(&context, request, &page);
    if (!status.ok()) return RpcFailed(status, "SchedulerService/ListTasks", err);
    for (v1::Task& task : *page.mutable_tasks()) *all.add_tasks() = std::move(task);
    all.set_next_page_token(page.next_page_token());
    if (!options.all || page.next_page_token().empty()) break;
    // A server that hands out a token twice would make --all loop forever.
    if (!seen_tokens.insert(page.next_page_token()).second) {
      err << "hourglassctl: INTERNAL: the server repeated the page token \""
          << page.next_page_token() << "\"; stopping\n";
      return kExitRpcFailed;
    }
    request.set_page_token(page.next_page_token());
  }
  if (options.output == OutputFormat::kJson) {
    out << ToJson(all);
  } else {
    out << FormatTaskTable(all.tasks());
    if (!all.next_page_token().empty()) {
      err << "more tasks follow: add --page_token=" << all.next_page_token()
          << " for the next page, or --all for every page\n";
    }
  }
  return kExitOk;
}

}  // namespace

absl::StatusOr<v1::ScheduleRequest> BuildScheduleRequest(const Invocation& invocation,
                                                         std::istream& stdin_stream) {
  const Options& options = invocation.options;
  v1::ScheduleRequest request;
  request.set_queue(options.queue);
  request.set_task_id(options.id);
  if (invocation.Given("delay")) {
    *request.mutable_delay() = ToProtoDuration(options.delay);
  } else if (invocation.Given("at")) {
    *request.mutable_at() = ToProtoTimestamp(options.at);
  }
  if (invocation.Given("payload_file")) {
    absl::StatusOr<std::string> payload = ReadPayloadFile(options.payload_file, stdin_stream);
    if (!payload.ok()) return payload.status();
    request.set_payload(*std::move(payload));
  } else {
    request.set_payload(options.payload);
  }
  for (const auto& [key, value] : options.headers) (*request.mutable_headers())[key] = value;
  if (invocation.Given("max_attempts")) {
    request.mutable_retry_policy()->set_max_attempts(options.max_attempts);
  }
  if (invocation.Given("min_backoff")) {
    *request.mutable_retry_policy()->mutable_min_backoff() = ToProtoDuration(options.min_backoff);
  }
  if (invocation.Given("max_backoff")) {
    *request.mutable_retry_policy()->mutable_max_backoff() = ToProtoDuration(options.max_backoff);
  }
  if (invocation.Given("http_url")) {
    v1::HttpTarget* target = request.mutable_http_target();
    target->set_url(options.http_url);
    for (const auto& [key, value] : options.http_headers) (*target->mutable_headers())[key] = value;
  } else if (invocation.Given("grpc_address")) {
    v1::GrpcTarget* target = request.mutable_grpc_target();
    target->set_address(options.grpc_address);
    target->set_method(options.grpc_method);
    target->set_tls(options.grpc_tls);
  }
  if (invocation.Given("dispatch_deadline")) {
    *request.mutable_dispatch_deadline() = ToProtoDuration(options.dispatch_deadline);
  }
  return request;
}

v1::RescheduleRequest BuildRescheduleRequest(const Invocation& invocation) {
  v1::RescheduleRequest request;
  request.set_task_id(invocation.args.at(0));
  if (invocation.Given("delay")) {
    *request.mutable_delay() = ToProtoDuration(invocation.options.delay);
  } else if (invocation.Given("at")) {
    *request.mutable_at() = ToProtoTimestamp(invocation.options.at);
  }
  return request;
}

v1::LeaseRequest BuildLeaseRequest(const Invocation& invocation) {
  const Options& options = invocation.options;
  v1::LeaseRequest request;
  request.set_queue(options.queue);
  request.set_max_tasks(options.max);
  *request.mutable_lease_duration() = ToProtoDuration(options.lease);
  *request.mutable_wait() = ToProtoDuration(options.wait);
  return request;
}

v1::NackRequest BuildNackRequest(const Invocation& invocation) {
  v1::NackRequest request;
  request.set_task_id(invocation.args.at(0));
  request.set_lease_token(invocation.args.at(1));
  request.set_error(invocation.options.error);
  if (invocation.Given("retry_delay")) {
    *request.mutable_retry_delay() = ToProtoDuration(invocation.options.retry_delay);
  }
  return request;
}

v1::ExtendLeaseRequest BuildExtendLeaseRequest(const Invocation& invocation) {
  v1::ExtendLeaseRequest request;
  request.set_task_id(invocation.args.at(0));
  request.set_lease_token(invocation.args.at(1));
  *request.mutable_lease_duration() = ToProtoDuration(invocation.options.lease);
  return request;
}

v1::ListTasksRequest BuildListTasksRequest(const Invocation& invocation) {
  const Options& options = invocation.options;
  v1::ListTasksRequest request;
  request.set_queue(options.queue);
  request.set_state(options.state);
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  return request;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments);
}

namespace {

// A PEM file of a --tls_* flag, whole. The contents are checked by gRPC when it connects.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> contents = ReadFlagFile(flag, path, size_t{1} << 20);
  if (!contents.ok()) return contents.status();
  if (contents->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": \"", path, "\" is not a PEM file (no -----BEGIN line)"));
  }
  return contents;
}

// grpc.health.v1.Health/Check through a generic stub (Debian's gRPC ships no health stubs):
// the request is HealthCheckRequest{service = 1}, the response HealthCheckResponse{status = 1}.
int RunHealth(const std::shared_ptr<grpc::Channel>& channel, const Options& options,
              std::ostream& out, std::ostream& err) {
  std::string request;
  if (!options.service.empty()) {
    request.push_back(0x0a);  // field 1, length-delimited; the length as a varint
    for (size_t n = options.service.size(); true; n >>= 7) {
      if (n < 0x80) {
        request.push_back(static_cast<char>(n));
        break;
      }
      request.push_back(static_cast<char>((n & 0x7f) | 0x80));
    }
    request += options.service;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::ClientContext context;
  PrepareContext(context, options);
  grpc::GenericStub stub(channel);
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buffer,
                 &response_buffer, [&](grpc::Status s) {
                   absl::MutexLock lock(&mu);
                   status = std::move(s);
                   done = true;
                 });
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&done));
  }
  if (!status.ok()) return RpcFailed(status, "grpc.health.v1.Health/Check", err, /*api=*/false);
  std::vector<grpc::Slice> slices;
  std::string response;
  if (response_buffer.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      response.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  // One varint field 1 (or nothing: UNKNOWN); the values fit in one byte.
  int value = 0;
  if (response.size() >= 2 && response[0] == 0x08) value = static_cast<unsigned char>(response[1]);
  static constexpr const char* kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  const std::string name = value >= 0 && value < 4 ? kNames[value] : absl::StrCat("STATUS_", value);
  if (options.output == OutputFormat::kJson) {
    out << "{\"status\":\"" << name << "\"}\n";
  } else {
    out << name << "\n";
  }
  return value == 1 ? kExitOk : kExitUnavailable;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const Options& options) {
  if (!options.tls) return MakeChannel(options.address);
  grpc::SslCredentialsOptions ssl;
  const std::pair<absl::string_view, std::pair<const std::string*, std::string*>> files[] = {
      {"tls_ca", {&options.tls_ca, &ssl.pem_root_certs}},
      {"tls_cert", {&options.tls_cert, &ssl.pem_cert_chain}},
      {"tls_key", {&options.tls_key, &ssl.pem_private_key}}};
  for (const auto& [flag, paths] : files) {
    if (paths.first->empty()) continue;
    absl::StatusOr<std::string> contents = ReadPemFile(flag, *paths.first);
    if (!contents.ok()) return contents.status();
    *paths.second = *std::move(contents);
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(-1);
  if (!options.tls_server_name.empty()) {
    arguments.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials(ssl), arguments);
}

int Run(const Invocation& invocation, const std::shared_ptr<grpc::Channel>& channel,
        std::istream& in, std::ostream& out, std::ostream& err,
        const std::function<absl::Time()>& now) {
  const Options& options = invocation.options;
  const bool json = options.output == OutputFormat::kJson;
  auto scheduler = v1::SchedulerService::NewStub(channel);
  auto consumer = v1::ConsumerService::NewStub(channel);
  grpc::ClientContext context;
  PrepareContext(context, options);
  grpc::Status status;
  switch (*invocation.command) {
    case Command::kSchedule: {
      absl::StatusOr<v1::ScheduleRequest> request = BuildScheduleRequest(invocation, in);
      if (!request.ok()) {
        err << "hourglassctl: " << request.status().message() << "\n";
        return kExitUsage;
      }
      v1::ScheduleResponse response;
      status = scheduler->Schedule(&context, *request, &response);
      if (!status.ok()) return RpcFailed(status, "SchedulerService/Schedule", err);
      out << (json ? ToJson(response) : FormatScheduled(response, now()));
      return kExitOk;
    }
    case Command::kCancel: {
      v1::CancelRequest request;
      request.set_task_id(invocation.args.at(0));
      v1::CancelResponse response;
      status = scheduler->Cancel(&context, request, &response);
      if (!status.ok()) return RpcFailed(status, "SchedulerService/Cancel", err);
      return PrintTaskResponse(options, response, out, now());
    }
    case Command::kStatus: {
      v1::GetStatusRequest request;
      request.set_task_id(invocation.args.at(0));
      v1::GetStatusResponse response;
      status = scheduler->GetStatus(&context, request, &response);
      if (!status.ok()) return RpcFailed(status, "SchedulerService/GetStatus", err);
      return PrintTaskResponse(options, response, out, now());
    }
    case Command::kReschedule: {
      v1::RescheduleResponse response;
      status = scheduler->Reschedule(&context, BuildRescheduleRequest(invocation), &response);
      if (!status.ok()) return RpcFailed(status, "SchedulerService/Reschedule", err);
      return PrintTaskResponse(options, response, out, now());
    }
    case Command::kLease: {
      grpc::ClientContext lease_context;  // Its deadline includes the wait.
      PrepareContext(lease_context, options, options.wait);
      v1::LeaseResponse response;
      status = consumer->Lease(&lease_context, BuildLeaseRequest(invocation), &response);
      if (!status.ok()) return RpcFailed(status, "ConsumerService/Lease", err);
      out << (json ? ToJson(response) : FormatLeasedTasks(response, now()));
      return kExitOk;
    }
    case Command::kAck: {
      v1::AckRequest request;
      request.set_task_id(invocation.args.at(0));
      request.set_lease_token(invocation.args.at(1));
      v1::AckResponse response;
      status = consumer->Ack(&context, request, &response);
      if (!status.ok()) return RpcFailed(status, "ConsumerService/Ack", err);
      out << (json ? ToJson(response) : absl::StrCat("acked ", request.task_id(), "\n"));
      return kExitOk;
    }
    case Command::kNack: {
      v1::NackResponse response;
      status = consumer->Nack(&context, BuildNackRequest(invocation), &response);
      if (!status.ok()) return RpcFailed(status, "ConsumerService/Nack", err);
      return PrintTaskResponse(options, response, out, now());
    }
    case Command::kExtend: {
      v1::ExtendLeaseResponse response;
      status = consumer->ExtendLease(&context, BuildExtendLeaseRequest(invocation), &response);
      if (!status.ok()) return RpcFailed(status, "ConsumerService/ExtendLease", err);
      out << (json ? ToJson(response) : FormatExtended(invocation.args.at(0), response, now()));
      return kExitOk;
    }
    case Command::kList:
      return RunList(invocation, *scheduler, out, err);
    case Command::kHealth:
      return RunHealth(channel, options, out, err);
    case Command::kRetry: {
      v1::RetryTaskRequest request;
      request.set_task_id(invocation.args.at(0));
      v1::RetryTaskResponse response;
      status = scheduler->RetryTask(&context, request, &response);
      if (!status.ok()) return RpcFailed(status, "SchedulerService/RetryTask", err);
      return PrintTaskResponse(options, response, out, now());
    }
  }
  err << "hourglassctl: unknown command\n";
  return kExitUsage;
}

}  // namespace hourglass::ctl
