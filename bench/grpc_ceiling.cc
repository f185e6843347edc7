// grpc_ceiling: the ceiling for one-RPC-per-task scheduling (issue 6). A bare gRPC C++ server that
// implements hourglass.v1.SchedulerService's Schedule and ScheduleBatch with the callback API as
// hourglass does, parses every request and answers at once without storing anything: each task
// gets an id of the same length as hourglass's (the caller's task_id when it gave one) and its
// due time, so the responses are as large as the real ones. `hourglass_load --mode=schedule` and
// `--mode=batch` run against it unchanged; what they measure is gRPC's own cost per call on this
// machine, which hourglass cannot beat.
//
//   grpc_ceiling --grpc_address=127.0.0.1:0
//
// Prints {"event":"server_started","grpc_address":"127.0.0.1:<port>"} on stderr once it listens
// (the shape of hourglass's own event, so the same scripts start both), and exits 0 on SIGTERM or
// SIGINT. Every other method answers UNIMPLEMENTED.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"

ABSL_FLAG(std::string, grpc_address, "127.0.0.1:7071",
          "host:port to listen on; port 0 picks a free port (printed in server_started).");

namespace {

namespace hv1 = hourglass::v1;

// Answers Schedule and ScheduleBatch without storing. Thread-safe: the only shared state is an
// atomic counter.
class CeilingService final : public hv1::SchedulerService::CallbackService {
 public:
  grpc::ServerUnaryReactor* Schedule(grpc::CallbackServerContext* ctx,
                                     const hv1::ScheduleRequest* request,
                                     hv1::ScheduleResponse* response) override {
    Answer(*request, absl::Now(), response);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* ScheduleBatch(grpc::CallbackServerContext* ctx,
                                          const hv1::ScheduleBatchRequest* request,
                                          hv1::ScheduleBatchResponse* response) override {
    const absl::Time now = absl::Now();
    response->mutable_results()->Reserve(request->requests_size());
    for (const hv1::ScheduleRequest& item : request->requests()) {
      hv1::ScheduleResult* result = response->add_results();
      result->set_code(0);
      Answer(item, now, result->mutable_response());
    }
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // Echoes the caller's id, or makes a 26-character one (the length of hourglass's time-ordered
  // ids), and the due time the request asks for.
  void Answer(const hv1::ScheduleRequest& request, absl::Time now,
              hv1::ScheduleResponse* response) {
    if (!request.task_id().empty()) {
      response->set_task_id(request.task_id());
    } else {
      const uint64_t n = next_id_.fetch_add(1, std::memory_order_relaxed);
      response->set_task_id(
          absl::StrFormat("%011X%015X", absl::ToUnixMillis(now), n & 0xFFFFFFFFFFFFFFF));
    }
    absl::Time due = now;
    if (request.has_at()) {
      due = absl::FromUnixSeconds(request.at().seconds()) + absl::Nanoseconds(request.at().nanos());
    } else if (request.has_delay()) {
      due = now + absl::Seconds(request.delay().seconds()) +
            absl::Nanoseconds(request.delay().nanos());
    }
    const int64_t due_ns = absl::ToUnixNanos(due);
    response->mutable_due_time()->set_seconds(due_ns / 1'000'000'000);
    response->mutable_due_time()->set_nanos(static_cast<int32_t>(due_ns % 1'000'000'000));
  }

  std::atomic<uint64_t> next_id_{0};
};

std::atomic<bool> stop_requested{false};

void OnSignal(int) { stop_requested.store(true); }

}  // namespace

int main(int argc, char** argv) {
  // As in the server (service/main.cc): no deadlock detection of Debian's debug-built Abseil.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "A gRPC server that answers SchedulerService.Schedule and ScheduleBatch without storing: "
      "the ceiling for hourglass_load.\n  grpc_ceiling --grpc_address=127.0.0.1:0");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "grpc_ceiling: unexpected argument \"%s\"\n", rest[1]);
    return 2;
  }
  const std::string address = absl::GetFlag(FLAGS_grpc_address);
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "grpc_ceiling: --grpc_address wants host:port, got \"%s\"\n",
                 address.c_str());
    return 2;
  }
  CeilingService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "grpc_ceiling: cannot listen on %s\n", address.c_str());
    return 1;
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::fprintf(stderr, "{\"event\":\"server_started\",\"grpc_address\":\"%s:%d\"}\n",
               address.substr(0, colon).c_str(), port);
  std::fflush(stderr);
  while (!stop_requested.load()) absl::SleepFor(absl::Milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
