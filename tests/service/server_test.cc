// In-process tests of every hourglass RPC through the real Server: the services, the TaskStore,
// the tick thread, the workers, the PullDeliverer, health, shutdown, the data directory lock and
// the /metrics endpoint, driven with generated stubs over Server::InProcessChannel() (and over
// the bound TCP port where a test talks to the server while or after it shuts down).
//
// Time is simulated: the server runs on a FakeClock. A test moves the clock, then waits for the
// effect (which worker threads apply asynchronously) with Eventually(), a bounded poll in real
// time; nothing sleeps for a duration. Where a test checks that something did NOT happen, it
// first waits for the tick thread to have looked at the new time (Settle()).
//
// The /metrics endpoint is off unless a test needs it (EnableMetrics()): stopping prometheus-cpp's
// HTTP server takes about 2 s of real time, which would dominate the run.
#include "service/server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpc_health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "service/validation.h"
#include "store/file.h"
#include "tests/testing/fake_clock.h"
#include "wheel/timing_wheel.h"

namespace hourglass::v1 {
// gtest prints states by name in failure messages (found by ADL).
void PrintTo(TaskState state, std::ostream* os) { *os << TaskState_Name(state); }
}  // namespace hourglass::v1

namespace grpc {
// gtest prints status codes by number otherwise.
void PrintTo(StatusCode code, std::ostream* os) {
  *os << absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}
}  // namespace grpc

namespace hourglass {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// FakeClock's default start: every exact time below is relative to it.
const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);
// Safety net for waits in real time; a correct server answers in milliseconds.
constexpr absl::Duration kRealTimeout = absl::Seconds(10);

constexpr const char* kSchedulerServiceName = "hourglass.v1.SchedulerService";
constexpr const char* kConsumerServiceName = "hourglass.v1.ConsumerService";

// Polls `done` until it holds or kRealTimeout of real time has passed; returns whether it holds.
// For effects that worker threads apply after the fake clock moved. Yields, never sleeps.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time give_up = absl::Now() + kRealTimeout;
  while (!done()) {
    if (absl::Now() > give_up) return done();
    std::this_thread::yield();
  }
  return true;
}

std::string MakeTempDir() {
  std::string path =
      (std::filesystem::temp_directory_path() / "hourglass_server_test.XXXXXX").string();
  return ::mkdtemp(path.data()) == nullptr ? std::string() : path;
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(kRealTimeout));
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) { return FromProto(t, "t").value(); }

// A minimal HTTP/1.0 GET over a plain socket: the body, or "" with a failed expectation.
std::string HttpGet(const std::string& host_port, const std::string& path) {
  const size_t colon = host_port.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    ADD_FAILURE() << "bad address " << host_port;
    return "";
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ADD_FAILURE() << "socket: " << std::strerror(errno);
    return "";
  }
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ADD_FAILURE() << "connect " << host_port << ": " << std::strerror(errno);
  } else {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host_port, "\r\n\r\n");
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      ADD_FAILURE() << "send: " << std::strerror(errno);
    }
    char buffer[16384];
    ssize_t n;
    while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.") || response.find(" 200 ") > 12 ||
      body == std::string::npos) {
    ADD_FAILURE() << "bad HTTP response: " << response.substr(0, 200);
    return "";
  }
  return response.substr(body + 4);
}

// The value of one series (`name{labels}` exactly as exposed) in a Prometheus text exposition.
std::optional<double> SeriesValue(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
    double value;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return std::nullopt;
}

// The real file system, except that WritableFile::Sync() waits while the gate is closed: the
// log's group commit stalls, as on a slow disk.
class GatedFileSystem final : public FileSystem {
 public:
  ~GatedFileSystem() override { OpenGate(); }

  void CloseGate() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void OpenGate() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  // Syncs waiting at the closed gate.
  int waiting() const {
    absl::MutexLock lock(&mu_);
    return waiting_;
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return Gated(real_.NewAppendableFile(path));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return Gated(real_.NewWritableFile(path));
  }
  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(
      const std::string& path) override {
    return real_.NewSequentialFile(path);
  }
  absl::StatusOr<std::string> ReadFileToString(const std::string& path) override {
    return real_.ReadFileToString(path);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    return real_.ListDir(dir);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    return real_.Rename(from, to);
  }
  absl::Status Remove(const std::string& path) override { return real_.Remove(path); }
  absl::Status CreateDir(const std::string& path) override { return real_.CreateDir(path); }
  absl::Status SyncDir(const std::string& dir) override { return real_.SyncDir(dir); }
  absl::Status Truncate(const std::string& path, uint64_t size) override {
    return real_.Truncate(path, size);
  }
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override {
    return real_.FileSize(path);
  }
  bool Exists(const std::string& path) override { return real_.Exists(path); }

 private:
  class File final : public WritableFile {
   public:
    File(GatedFileSystem& fs, std::unique_ptr<WritableFile> real)
        : fs_(fs), real_(std::move(real)) {}
    absl::Status Append(absl::string_view data) override { return real_->Append(data); }
    absl::Status Flush() override { return real_->Flush(); }
    absl::Status Sync() override {
      fs_.PassGate();
      return real_->Sync();
    }
    absl::Status Close() override { return real_->Close(); }

   private:
    GatedFileSystem& fs_;
    std::unique_ptr<WritableFile> real_;
  };

  absl::StatusOr<std::unique_ptr<WritableFile>> Gated(
      absl::StatusOr<std::unique_ptr<WritableFile>> file) {
    if (!file.ok()) return file.status();
    return std::make_unique<File>(*this, *std::move(file));
  }
  void PassGate() {
    absl::MutexLock lock(&mu_);
    ++waiting_;
    mu_.Await(absl::Condition(&open_));
    --waiting_;
  }

  FileSystem& real_ = PosixFileSystem::Get();
  mutable absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

// A Lease in flight (long-poll), made with the callback stub so that the test thread stays free.
class PendingLease {
 public:
  PendingLease(v1::ConsumerService::Stub& stub, v1::LeaseRequest request)
      : request_(std::move(request)) {
    SetDeadline(&context_);
    stub.async()->Lease(&context_, &request_, &response_, [this](grpc::Status status) {
      status_ = std::move(status);
      done_.Notify();
    });
  }
  // A test that failed early must not leave gRPC writing into a destroyed object.
  ~PendingLease() {
    if (!done_.HasBeenNotified()) {
      context_.TryCancel();
      done_.WaitForNotificationWithTimeout(kRealTimeout);
    }
  }

  bool done() const { return done_.HasBeenNotified(); }
  // Waits (in real time, bounded) for the answer.
  bool Wait() { return done_.WaitForNotificationWithTimeout(kRealTimeout); }
  // Valid once done.
  const grpc::Status& status() const { return status_; }
  const v1::LeaseResponse& response() const { return response_; }

 private:
  grpc::ClientContext context_;
  const v1::LeaseRequest request_;
  v1::LeaseResponse response_;
  grpc::Status status_;
  absl::Notification done_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = MakeTempDir();
    ASSERT_FALSE(data_dir_.empty()) << std::strerror(errno);
    options_.grpc_address = "127.0.0.1:0";
    options_.metrics_address = "";
    options_.data_dir = data_dir_;
    options_.workers = 2;
    // Shutdown() keeps answering UNAVAILABLE for a lame-duck moment of min(grace, 1 s) of real
    // time; tests that do not look at it keep it short.
    options_.shutdown_grace = absl::Milliseconds(50);
    StartServer();
  }

  void TearDown() override {
    StopServer();
    std::error_code ignored;
    std::filesystem::remove_all(data_dir_, ignored);
  }

  void StartServer() {
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options_, clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = server_->InProcessChannel();
    scheduler_ = v1::SchedulerService::NewStub(channel_);
    consumer_ = v1::ConsumerService::NewStub(channel_);
    health_ = Health::NewStub(channel_);
  }

  void StopServer() {
    if (server_ != nullptr) server_->Shutdown();
    scheduler_.reset();
    consumer_.reset();
    health_.reset();
    channel_.reset();
    server_.reset();
  }

  // Restarts the server with options_ changed by the test (same data directory and clock).
  void RestartServer() {
    StopServer();
    StartServer();
  }

  // Restarts the server with a /metrics endpoint on a free port.
  void EnableMetrics() {
    options_.metrics_address = "127.0.0.1:0";
    RestartServer();
  }

  // A channel over TCP to the bound port. Calls after Shutdown() go through one: the in-process
  // channel must not be used once the server is shut down (gRPC 1.51 crashes creating a call on
  // it); a real client's TCP channel may.
  std::shared_ptr<grpc::Channel> TcpChannel() {
    grpc::ChannelArguments arguments;
    // A refused reconnect after shutdown fails the call at once instead of after 1 s of backoff.
    arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
    arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->grpc_port()),
                                     grpc::InsecureChannelCredentials(), arguments);
  }

  // Sends `bytes` as the request of `method` ("/hourglass.v1.SchedulerService/Schedule") as they
  // are, unparsed: what a broken or hostile client can send.
  grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(channel_);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    SetDeadline(&context);
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    if (!done.WaitForNotificationWithTimeout(kRealTimeout + absl::Seconds(5))) {
      ADD_FAILURE() << method << " got no answer";
    }
    return status;
  }

  // --- RPCs, each with a real-time deadline ---------------------------------------------------

  grpc::Status Schedule(const v1::ScheduleRequest& request, v1::ScheduleResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return scheduler_->Schedule(&context, request, response);
  }
  grpc::Status Cancel(const std::string& task_id, v1::CancelResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::CancelRequest request;
    request.set_task_id(task_id);
    return scheduler_->Cancel(&context, request, response);
  }
  grpc::Status GetStatus(const std::string& task_id, v1::GetStatusResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetStatusRequest request;
    request.set_task_id(task_id);
    return scheduler_->GetStatus(&context, request, response);
  }
  grpc::Status Reschedule(const v1::RescheduleRequest& request, v1::RescheduleResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return scheduler_->Reschedule(&context, request, response);
  }
  grpc::Status Lease(const v1::LeaseRequest& request, v1::LeaseResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return consumer_->Lease(&context, request, response);
  }
  grpc::Status Ack(const std::string& task_id, const std::string& lease_token) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::AckRequest request;
    request.set_task_id(task_id);
    request.set_lease_token(lease_token);
    v1::AckResponse response;
    return consumer_->Ack(&context, request, &response);
  }
  grpc::Status Nack(const v1::NackRequest& request, v1::NackResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return consumer_->Nack(&context, request, response);
  }
  grpc::Status ExtendLease(const v1::ExtendLeaseRequest& request,
                           v1::ExtendLeaseResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return consumer_->ExtendLease(&context, request, response);
  }
  grpc::Status HealthCheck(const std::string& service, HealthCheckResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    HealthCheckRequest request;
    request.set_service(service);
    return health_->Check(&context, request, response);
  }

  // --- Shorthands that must succeed ----------------------------------------------------------

  // Schedules `task_id` on queue "q", due `delay` from now, with `policy` when given.
  v1::ScheduleResponse ScheduleIn(const std::string& task_id, absl::Duration delay,
                                  const v1::RetryPolicy* policy = nullptr) {
    v1::ScheduleRequest request;
    request.set_queue("q");
    request.set_task_id(task_id);
    request.set_payload("payload of " + task_id);
    *request.mutable_delay() = ToProto(delay);
    if (policy != nullptr) *request.mutable_retry_policy() = *policy;
    v1::ScheduleResponse response;
    const grpc::Status status = Schedule(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  v1::Task Status(const std::string& task_id) {
    v1::GetStatusResponse response;
    const grpc::Status status = GetStatus(task_id, &response);
    EXPECT_TRUE(status.ok()) << task_id << ": " << status.error_message();
    return response.task();
  }

  // Leases from queue "q" without waiting.
  std::vector<v1::LeasedTask> LeaseNow(int max_tasks = 1,
                                       absl::Duration lease_duration = absl::Seconds(30),
                                       const std::string& queue = "q") {
    v1::LeaseRequest request;
    request.set_queue(queue);
    request.set_max_tasks(max_tasks);
    *request.mutable_lease_duration() = ToProto(lease_duration);
    v1::LeaseResponse response;
    const grpc::Status status = Lease(request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.tasks().begin(), response.tasks().end()};
  }

  // Leases exactly one task (which must be `task_id`) from queue "q".
  v1::LeasedTask LeaseOne(const std::string& task_id,
                          absl::Duration lease_duration = absl::Seconds(30)) {
    std::vector<v1::LeasedTask> leased = LeaseNow(1, lease_duration);
    EXPECT_EQ(leased.size(), 1u);
    if (leased.empty()) return {};
    EXPECT_EQ(leased[0].task_id(), task_id);
    return leased[0];
  }

  // Starts a long-poll Lease of queue "q" waiting up to `wait` of fake time.
  std::unique_ptr<PendingLease> StartLease(absl::Duration wait,
                                           absl::Duration lease_duration = absl::Seconds(30)) {
    v1::LeaseRequest request;
    request.set_queue("q");
    *request.mutable_wait() = ToProto(wait);
    *request.mutable_lease_duration() = ToProto(lease_duration);
    return std::make_unique<PendingLease>(*consumer_, std::move(request));
  }

  // Starts a long-poll Lease on a server with no timer armed and waits until it is parked. Parking
  // arms the Lease's wait deadline in the timing wheel, which wakes the idle tick thread; it then
  // blocks on the FakeClock again, with a finite deadline now: that is the signal. A task made
  // READY after this reaches the parked call (pull delivery takes the lock held while parking).
  std::unique_ptr<PendingLease> StartParkedLease(
      absl::Duration wait, absl::Duration lease_duration = absl::Seconds(30)) {
    EXPECT_TRUE(clock_.BlockUntilWaiters(1));
    const std::vector<absl::Duration> idle = clock_.WaiterDeadlinesForTest();
    EXPECT_EQ(idle, std::vector<absl::Duration>{absl::InfiniteDuration()})
        << "the wheel must be empty before the Lease";
    const uint64_t parks = clock_.ParksForTest();
    std::unique_ptr<PendingLease> pending = StartLease(wait, lease_duration);
    EXPECT_TRUE(Eventually([&] {
      const std::vector<absl::Duration> deadlines = clock_.WaiterDeadlinesForTest();
      return clock_.ParksForTest() > parks && deadlines.size() == 1 &&
             deadlines[0] <= clock_.Monotonic() + wait;
    })) << "the Lease did not park";
    EXPECT_FALSE(pending->done());
    return pending;
  }

  bool EventuallyState(const std::string& task_id, v1::TaskState state) {
    return Eventually([&] {
      v1::GetStatusResponse response;
      return GetStatus(task_id, &response).ok() && response.task().state() == state;
    });
  }

  // Moves fake time and waits until the tick thread has fired what became due and parked again:
  // after this, anything not yet fired will not fire before the clock moves again.
  void Settle(absl::Duration delta) {
    clock_.Advance(delta);
    ASSERT_TRUE(clock_.BlockUntilWaiters(1));
  }

  std::string Metrics() { return HttpGet(server_->metrics_address(), "/metrics"); }
  std::optional<double> Metric(const std::string& series) { return SeriesValue(Metrics(), series); }
  // Waits until `n` Lease calls are parked in the server.
  bool EventuallyParked(int n) {
    return Eventually([&] { return Metric("hourglass_lease_waiters") == n; });
  }

  FakeClock clock_;  // outlives the server
  std::string data_dir_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::SchedulerService::Stub> scheduler_;
  std::unique_ptr<v1::ConsumerService::Stub> consumer_;
  std::unique_ptr<Health::Stub> health_;
};

// --- The life cycle --------------------------------------------------------------------------

// Schedule -> (due) READY -> Lease -> LEASED -> Ack -> SUCCEEDED, with every field exact.
TEST_F(ServerTest, ScheduleLeaseAckLifecycle) {
  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("order-1");
  request.set_payload(std::string("bytes\0here", 10));
  (*request.mutable_headers())["trace"] = "abc";
  (*request.mutable_headers())["kind"] = "email";
  *request.mutable_delay() = ToProto(absl::Seconds(10));
  v1::ScheduleResponse scheduled;
  ASSERT_TRUE(Schedule(request, &scheduled).ok());
  EXPECT_EQ(scheduled.task_id(), "order-1");
  EXPECT_EQ(TimeOf(scheduled.due_time()), kStart + absl::Seconds(10));

  v1::Task task = Status("order-1");
  EXPECT_EQ(task.task_id(), "order-1");
  EXPECT_EQ(task.queue(), "q");
  EXPECT_EQ(task.state(), v1::TASK_STATE_SCHEDULED);
  EXPECT_EQ(task.attempts(), 0);
  EXPECT_EQ(TimeOf(task.due_time()), kStart + absl::Seconds(10));
  EXPECT_EQ(TimeOf(task.create_time()), kStart);
  EXPECT_EQ(task.last_error(), "");
  EXPECT_EQ(task.payload_size_bytes(), 10);
  EXPECT_EQ(task.retry_policy().max_attempts(), 5);
  EXPECT_EQ(FromProto(task.retry_policy().min_backoff(), "").value(), absl::Seconds(1));
  EXPECT_EQ(FromProto(task.retry_policy().max_backoff(), "").value(), absl::Seconds(300));
  EXPECT_FALSE(task.has_lease_expire_time());
  EXPECT_FALSE(task.has_finish_time());

  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(EventuallyState("order-1", v1::TASK_STATE_READY));
  EXPECT_EQ(Status("order-1").attempts(), 0);

  clock_.Advance(absl::Seconds(1));
  const v1::LeasedTask leased = LeaseOne("order-1", absl::Seconds(20));
  EXPECT_EQ(leased.queue(), "q");
  EXPECT_EQ(leased.payload(), std::string("bytes\0here", 10));
  EXPECT_EQ(leased.headers().size(), 2u);
  EXPECT_EQ(leased.headers().at("trace"), "abc");
  EXPECT_EQ(leased.headers().at("kind"), "email");
  EXPECT_EQ(leased.attempt(), 1);
  EXPECT_EQ(TimeOf(leased.due_time()), kStart + absl::Seconds(10));
  EXPECT_EQ(TimeOf(leased.lease_expire_time()), kStart + absl::Seconds(31));
  EXPECT_FALSE(leased.lease_token().empty());

  task = Status("order-1");
  EXPECT_EQ(task.state(), v1::TASK_STATE_LEASED);
  EXPECT_EQ(task.attempts(), 1);
  EXPECT_EQ(TimeOf(task.lease_expire_time()), kStart + absl::Seconds(31));
  EXPECT_FALSE(task.has_finish_time());

  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(Ack("order-1", leased.lease_token()).ok());
  task = Status("order-1");
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(task.attempts(), 1);
  EXPECT_EQ(TimeOf(task.due_time()), kStart + absl::Seconds(10));
  EXPECT_EQ(TimeOf(task.create_time()), kStart);
  EXPECT_EQ(TimeOf(task.finish_time()), kStart + absl::Seconds(13));
  EXPECT_FALSE(task.has_lease_expire_time());
  EXPECT_EQ(task.last_error(), "");

  // Acknowledged once, never delivered again.
  EXPECT_EQ(Ack("order-1", leased.lease_token()).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  Settle(absl::Seconds(60));
  EXPECT_THAT(LeaseNow(), IsEmpty());
}

// A task is never handed out before its due time: 1 ms before, Lease finds nothing; at it, it is
// there.
TEST_F(ServerTest, NeverLeasedBeforeDueTime) {
  ScheduleIn("t", absl::Seconds(5));
  Settle(absl::Seconds(5) - absl::Milliseconds(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_SCHEDULED);

  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask leased = LeaseOne("t");
  EXPECT_EQ(TimeOf(leased.due_time()), kStart + absl::Seconds(5));
}

// `at` sets the due time exactly (to the nanosecond); a time in the past means now; no `when` at
// all means now.
TEST_F(ServerTest, ScheduleAtTimestamp) {
  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("at-future");
  *request.mutable_at() = ToProto(kStart + absl::Seconds(90) + absl::Nanoseconds(500));
  v1::ScheduleResponse response;
  ASSERT_TRUE(Schedule(request, &response).ok());
  EXPECT_EQ(TimeOf(response.due_time()), kStart + absl::Seconds(90) + absl::Nanoseconds(500));

  request.set_task_id("at-past");
  *request.mutable_at() = ToProto(kStart - absl::Hours(1));
  ASSERT_TRUE(Schedule(request, &response).ok());
  EXPECT_EQ(TimeOf(response.due_time()), kStart);

  request.set_task_id("now");
  request.clear_at();
  ASSERT_TRUE(Schedule(request, &response).ok());
  EXPECT_EQ(TimeOf(response.due_time()), kStart);

  ASSERT_TRUE(EventuallyState("at-past", v1::TASK_STATE_READY));
  ASSERT_TRUE(EventuallyState("now", v1::TASK_STATE_READY));
  EXPECT_EQ(Status("at-future").state(), v1::TASK_STATE_SCHEDULED);
}

// An empty task_id gets a server-made 26-character id, a new one each time.
TEST_F(ServerTest, ScheduleWithoutIdMakesDistinctIds) {
  v1::ScheduleRequest request;
  request.set_payload("same");
  v1::ScheduleResponse first;
  v1::ScheduleResponse second;
  ASSERT_TRUE(Schedule(request, &first).ok());
  ASSERT_TRUE(Schedule(request, &second).ok());
  EXPECT_EQ(first.task_id().size(), 26u);
  EXPECT_EQ(second.task_id().size(), 26u);
  EXPECT_NE(first.task_id(), second.task_id());
  EXPECT_EQ(Status(first.task_id()).queue(), "default");
}

// Lease takes at most max_tasks, oldest due first, only from its own queue; "" is "default".
TEST_F(ServerTest, LeaseHonoursMaxTasksAndQueues) {
  ScheduleIn("b", absl::Seconds(1));
  ScheduleIn("c", absl::Seconds(2));
  ScheduleIn("a", absl::Seconds(3));
  v1::ScheduleRequest other;
  other.set_task_id("in-default");
  v1::ScheduleResponse other_response;
  ASSERT_TRUE(Schedule(other, &other_response).ok());
  for (const char* id : {"b", "c", "a"}) {
    clock_.Advance(absl::Seconds(1));
    ASSERT_TRUE(EventuallyState(id, v1::TASK_STATE_READY)) << id;
  }
  std::vector<v1::LeasedTask> leased = LeaseNow(2);
  ASSERT_EQ(leased.size(), 2u);
  EXPECT_EQ(leased[0].task_id(), "b");
  EXPECT_EQ(leased[1].task_id(), "c");
  leased = LeaseNow(1000);
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].task_id(), "a");
  EXPECT_THAT(LeaseNow(1000), IsEmpty());

  EXPECT_THAT(LeaseNow(1, absl::Seconds(30), "elsewhere"), IsEmpty());
  leased = LeaseNow(0, absl::Seconds(30), "");  // max_tasks 0 means 1
  ASSERT_EQ(leased.size(), 1u);
  EXPECT_EQ(leased[0].task_id(), "in-default");
  EXPECT_EQ(leased[0].queue(), "default");
}

// A Lease is answered without waiting for the sync of its log record (docs/durability.md): a
// slow disk adds nothing to a task's lateness. An Ack waits for the sync of its own record.
TEST_F(ServerTest, LeaseAnswersBeforeItsSyncAndAckAfterIt) {
  GatedFileSystem fs;
  options_.file_system = &fs;
  RestartServer();
  ScheduleIn("t", absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));

  fs.CloseGate();
  const v1::LeasedTask leased = LeaseOne("t");  // would time out if it waited for the sync
  ASSERT_TRUE(Eventually([&] { return fs.waiting() >= 1; })) << "the log writer did not sync";

  absl::Notification acked;
  grpc::Status ack_status;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::AckRequest request;
  request.set_task_id("t");
  request.set_lease_token(leased.lease_token());
  v1::AckResponse response;
  consumer_->async()->Ack(&context, &request, &response, [&](grpc::Status status) {
    ack_status = std::move(status);
    acked.Notify();
  });
  EXPECT_FALSE(acked.WaitForNotificationWithTimeout(absl::Milliseconds(300)))
      << "the Ack was answered before its record was synced";
  fs.OpenGate();
  ASSERT_TRUE(acked.WaitForNotificationWithTimeout(kRealTimeout));
  EXPECT_TRUE(ack_status.ok()) << ack_status.error_message();
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_SUCCEEDED);
  StopServer();  // before `fs` goes
}

// --- Long-poll Lease -------------------------------------------------------------------------

// A parked Lease is answered as soon as a task of its queue becomes READY, long before its wait
// ends, and a Lease with a wait finds an already READY task at once.
TEST_F(ServerTest, LongPollIsWokenByATaskBecomingReady) {
  std::unique_ptr<PendingLease> pending = StartParkedLease(absl::Seconds(30), absl::Seconds(20));

  ScheduleIn("t", absl::Seconds(10));
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(pending->Wait());
  ASSERT_TRUE(pending->status().ok()) << pending->status().error_message();
  ASSERT_EQ(pending->response().tasks_size(), 1);
  const v1::LeasedTask& task = pending->response().tasks(0);
  EXPECT_EQ(task.task_id(), "t");
  EXPECT_EQ(task.attempt(), 1);
  EXPECT_EQ(TimeOf(task.due_time()), kStart + absl::Seconds(10));
  // Answered at due time: the fake clock never reached the end of the wait.
  EXPECT_EQ(clock_.Now(), kStart + absl::Seconds(10));
  EXPECT_EQ(TimeOf(task.lease_expire_time()), kStart + absl::Seconds(30));
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_LEASED);

  // Already READY: a Lease with a wait answers at once.
  ScheduleIn("u", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("u", v1::TASK_STATE_READY));
  std::unique_ptr<PendingLease> immediate = StartLease(absl::Seconds(30));
  ASSERT_TRUE(immediate->Wait());
  ASSERT_TRUE(immediate->status().ok());
  ASSERT_EQ(immediate->response().tasks_size(), 1);
  EXPECT_EQ(immediate->response().tasks(0).task_id(), "u");
}

// Two parked Leases are served oldest first, one task each.
TEST_F(ServerTest, LongPollsAreServedInArrivalOrder) {
  EnableMetrics();
  std::unique_ptr<PendingLease> first = StartLease(absl::Seconds(30));
  ASSERT_TRUE(EventuallyParked(1));
  std::unique_ptr<PendingLease> second = StartLease(absl::Seconds(30));
  ASSERT_TRUE(EventuallyParked(2));

  ScheduleIn("t1", absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(first->Wait());
  ASSERT_EQ(first->response().tasks_size(), 1);
  EXPECT_EQ(first->response().tasks(0).task_id(), "t1");
  EXPECT_FALSE(second->done());

  ScheduleIn("t2", absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(second->Wait());
  ASSERT_EQ(second->response().tasks_size(), 1);
  EXPECT_EQ(second->response().tasks(0).task_id(), "t2");
}

// A parked Lease with nothing to take ends at its wait deadline with no tasks and OK, not before.
TEST_F(ServerTest, LongPollEndsEmptyAtItsWaitDeadline) {
  std::unique_ptr<PendingLease> pending = StartParkedLease(absl::Seconds(30));

  Settle(absl::Seconds(30) - absl::Milliseconds(1));
  EXPECT_FALSE(pending->done());

  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(pending->Wait());
  EXPECT_TRUE(pending->status().ok()) << pending->status().error_message();
  EXPECT_EQ(pending->response().tasks_size(), 0);
  EXPECT_EQ(clock_.Now(), kStart + absl::Seconds(30));
}

// A client that gives up on a parked Lease frees its place; a later task goes to the next caller.
TEST_F(ServerTest, CancelledLongPollIsUnparked) {
  EnableMetrics();
  {
    std::unique_ptr<PendingLease> pending = StartLease(absl::Seconds(30));
    ASSERT_TRUE(EventuallyParked(1));
  }  // ~PendingLease cancels the call
  ASSERT_TRUE(EventuallyParked(0));
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  LeaseOne("t");
}

// --- Lease expiry, stale tokens, retries -----------------------------------------------------

// A lease that runs out makes the task SCHEDULED for a retry after the backoff, then READY again;
// the next hand-out is attempt 2 and last_error says the lease expired.
TEST_F(ServerTest, ExpiredLeaseIsRetriedAfterBackoff) {
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask first = LeaseOne("t", absl::Seconds(10));

  Settle(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_LEASED);

  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_SCHEDULED));
  v1::Task task = Status("t");
  EXPECT_EQ(task.attempts(), 1);
  EXPECT_THAT(task.last_error(), HasSubstr("lease expired"));
  // The first failure waits min_backoff (1 s by default).
  EXPECT_EQ(TimeOf(task.due_time()), kStart + absl::Seconds(11));
  EXPECT_FALSE(task.has_lease_expire_time());

  Settle(absl::Seconds(1) - absl::Milliseconds(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask second = LeaseOne("t");
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_EQ(TimeOf(second.due_time()), kStart + absl::Seconds(11));
  EXPECT_NE(second.lease_token(), first.lease_token());
  EXPECT_EQ(Status("t").attempts(), 2);
}

// The backoff doubles per failure up to max_backoff.
TEST_F(ServerTest, BackoffDoublesUpToMaxBackoff) {
  v1::RetryPolicy policy;
  policy.set_max_attempts(10);
  *policy.mutable_min_backoff() = ToProto(absl::Seconds(2));
  *policy.mutable_max_backoff() = ToProto(absl::Seconds(5));
  ScheduleIn("t", absl::ZeroDuration(), &policy);
  const absl::Duration expected_backoffs[] = {absl::Seconds(2), absl::Seconds(4), absl::Seconds(5),
                                              absl::Seconds(5)};
  for (absl::Duration backoff : expected_backoffs) {
    ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
    const v1::LeasedTask leased = LeaseOne("t");
    v1::NackRequest nack;
    nack.set_task_id("t");
    nack.set_lease_token(leased.lease_token());
    v1::NackResponse response;
    ASSERT_TRUE(Nack(nack, &response).ok());
    EXPECT_EQ(response.task().state(), v1::TASK_STATE_SCHEDULED);
    EXPECT_EQ(TimeOf(response.task().due_time()), clock_.Now() + backoff) << backoff;
    clock_.Advance(backoff);
  }
}

// A token from an expired lease is refused (FAILED_PRECONDITION) for Ack, Nack and ExtendLease,
// both while the task waits for its retry and after it was handed out again; the current token
// works.
TEST_F(ServerTest, StaleLeaseTokenIsRefused) {
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask first = LeaseOne("t", absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_SCHEDULED));

  grpc::Status status = Ack("t", first.lease_token());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("not LEASED"));

  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask second = LeaseOne("t");
  ASSERT_EQ(second.attempt(), 2);

  status = Ack("t", first.lease_token());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("lease_token"));
  v1::NackRequest nack;
  nack.set_task_id("t");
  nack.set_lease_token(first.lease_token());
  v1::NackResponse nack_response;
  EXPECT_EQ(Nack(nack, &nack_response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::ExtendLeaseRequest extend;
  extend.set_task_id("t");
  extend.set_lease_token(first.lease_token());
  v1::ExtendLeaseResponse extend_response;
  EXPECT_EQ(ExtendLease(extend, &extend_response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Ack("t", "").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_LEASED);

  ASSERT_TRUE(Ack("t", second.lease_token()).ok());
  const v1::Task task = Status("t");
  EXPECT_EQ(task.state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(task.attempts(), 2);
}

// Ack, Nack and ExtendLease of an unknown id: NOT_FOUND.
TEST_F(ServerTest, LeaseOperationsOnUnknownTaskAreNotFound) {
  EXPECT_EQ(Ack("nope", "token").error_code(), grpc::StatusCode::NOT_FOUND);
  v1::NackRequest nack;
  nack.set_task_id("nope");
  nack.set_lease_token("token");
  v1::NackResponse nack_response;
  EXPECT_EQ(Nack(nack, &nack_response).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ExtendLeaseRequest extend;
  extend.set_task_id("nope");
  extend.set_lease_token("token");
  v1::ExtendLeaseResponse extend_response;
  EXPECT_EQ(ExtendLease(extend, &extend_response).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Nack with a retry_delay reschedules exactly that far ahead and keeps the error as last_error.
TEST_F(ServerTest, NackWithRetryDelay) {
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask leased = LeaseOne("t");

  v1::NackRequest nack;
  nack.set_task_id("t");
  nack.set_lease_token(leased.lease_token());
  *nack.mutable_retry_delay() = ToProto(absl::Seconds(7));
  nack.set_error("smtp: 451 try later");
  v1::NackResponse response;
  ASSERT_TRUE(Nack(nack, &response).ok());
  EXPECT_EQ(response.task().task_id(), "t");
  EXPECT_EQ(response.task().state(), v1::TASK_STATE_SCHEDULED);
  EXPECT_EQ(response.task().attempts(), 1);
  EXPECT_EQ(response.task().last_error(), "smtp: 451 try later");
  EXPECT_EQ(TimeOf(response.task().due_time()), kStart + absl::Seconds(7));
  EXPECT_EQ(Status("t").last_error(), "smtp: 451 try later");

  Settle(absl::Seconds(7) - absl::Milliseconds(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask again = LeaseOne("t");
  EXPECT_EQ(again.attempt(), 2);

  // retry_delay 0 retries at once.
  nack.set_lease_token(again.lease_token());
  *nack.mutable_retry_delay() = ToProto(absl::ZeroDuration());
  ASSERT_TRUE(Nack(nack, &response).ok());
  EXPECT_EQ(TimeOf(response.task().due_time()), kStart + absl::Seconds(7));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
}

// After max_attempts hand-outs a Nack makes the task DEAD: kept, never delivered again.
TEST_F(ServerTest, NackOnLastAttemptMakesTaskDead) {
  v1::RetryPolicy policy;
  policy.set_max_attempts(2);
  ScheduleIn("t", absl::ZeroDuration(), &policy);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
    const v1::LeasedTask leased = LeaseOne("t");
    EXPECT_EQ(leased.attempt(), attempt);
    v1::NackRequest nack;
    nack.set_task_id("t");
    nack.set_lease_token(leased.lease_token());
    nack.set_error(absl::StrCat("failure ", attempt));
    v1::NackResponse response;
    ASSERT_TRUE(Nack(nack, &response).ok());
    EXPECT_EQ(response.task().state(),
              attempt == 1 ? v1::TASK_STATE_SCHEDULED : v1::TASK_STATE_DEAD);
    if (attempt == 1) clock_.Advance(absl::Seconds(1));
  }
  const v1::Task task = Status("t");
  EXPECT_EQ(task.state(), v1::TASK_STATE_DEAD);
  EXPECT_EQ(task.attempts(), 2);
  EXPECT_EQ(task.last_error(), "failure 2");
  EXPECT_EQ(TimeOf(task.finish_time()), kStart + absl::Seconds(1));
  Settle(absl::Hours(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_DEAD);
}

// A lease that runs out on the last attempt makes the task DEAD.
TEST_F(ServerTest, LeaseExpiryOnLastAttemptMakesTaskDead) {
  v1::RetryPolicy policy;
  policy.set_max_attempts(1);
  ScheduleIn("t", absl::ZeroDuration(), &policy);
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  LeaseOne("t", absl::Seconds(5));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_DEAD));
  const v1::Task task = Status("t");
  EXPECT_EQ(task.attempts(), 1);
  EXPECT_THAT(task.last_error(), HasSubstr("lease expired"));
  EXPECT_EQ(TimeOf(task.finish_time()), kStart + absl::Seconds(5));
  Settle(absl::Hours(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
}

// ExtendLease moves the expiry to lease_duration from now: the old expiry passes harmlessly, the
// new one expires the lease. Unset lease_duration means 30 s.
TEST_F(ServerTest, ExtendLeasePostponesExpiry) {
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask leased = LeaseOne("t", absl::Seconds(10));

  clock_.Advance(absl::Seconds(8));
  v1::ExtendLeaseRequest extend;
  extend.set_task_id("t");
  extend.set_lease_token(leased.lease_token());
  *extend.mutable_lease_duration() = ToProto(absl::Seconds(10));
  v1::ExtendLeaseResponse response;
  ASSERT_TRUE(ExtendLease(extend, &response).ok());
  EXPECT_EQ(TimeOf(response.lease_expire_time()), kStart + absl::Seconds(18));
  EXPECT_EQ(TimeOf(Status("t").lease_expire_time()), kStart + absl::Seconds(18));

  Settle(absl::Seconds(10) - absl::Milliseconds(1));  // now 17.999 s: past the old expiry
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_LEASED);

  extend.clear_lease_duration();
  ASSERT_TRUE(ExtendLease(extend, &response).ok());
  EXPECT_EQ(TimeOf(response.lease_expire_time()),
            kStart + absl::Seconds(18) - absl::Milliseconds(1) + absl::Seconds(30));

  Settle(absl::Seconds(30) - absl::Milliseconds(1));
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_LEASED);
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_SCHEDULED));
  EXPECT_EQ(ExtendLease(extend, &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// --- Reschedule and Cancel -------------------------------------------------------------------

// Reschedule moves a SCHEDULED task (earlier or later) and a READY one (back to SCHEDULED).
TEST_F(ServerTest, RescheduleScheduledAndReadyTasks) {
  ScheduleIn("t", absl::Seconds(100));
  v1::RescheduleRequest request;
  request.set_task_id("t");
  *request.mutable_delay() = ToProto(absl::Seconds(5));
  v1::RescheduleResponse response;
  ASSERT_TRUE(Reschedule(request, &response).ok());
  EXPECT_EQ(response.task().state(), v1::TASK_STATE_SCHEDULED);
  EXPECT_EQ(TimeOf(response.task().due_time()), kStart + absl::Seconds(5));
  EXPECT_EQ(response.task().attempts(), 0);
  EXPECT_EQ(TimeOf(response.task().create_time()), kStart);

  Settle(absl::Seconds(5) - absl::Milliseconds(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));

  // READY moved into the future: SCHEDULED again, not leasable until then.
  *request.mutable_delay() = ToProto(absl::Seconds(10));
  ASSERT_TRUE(Reschedule(request, &response).ok());
  EXPECT_EQ(response.task().state(), v1::TASK_STATE_SCHEDULED);
  EXPECT_EQ(TimeOf(response.task().due_time()), kStart + absl::Seconds(15));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  Settle(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_THAT(LeaseNow(), IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));

  // `at` in the past: due now.
  ScheduleIn("u", absl::Hours(1));
  request.set_task_id("u");
  *request.mutable_at() = ToProto(kStart);
  ASSERT_TRUE(Reschedule(request, &response).ok());
  EXPECT_EQ(TimeOf(response.task().due_time()), clock_.Now());
  ASSERT_TRUE(EventuallyState("u", v1::TASK_STATE_READY));

  std::vector<v1::LeasedTask> leased = LeaseNow(10);
  ASSERT_EQ(leased.size(), 2u);
  EXPECT_EQ(leased[0].payload(), "payload of t");
  EXPECT_EQ(leased[1].payload(), "payload of u");
}

// Reschedule: FAILED_PRECONDITION for LEASED and finished tasks, NOT_FOUND for unknown ids.
TEST_F(ServerTest, RescheduleRefusesLeasedFinishedAndUnknown) {
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask leased = LeaseOne("t");
  v1::RescheduleRequest request;
  request.set_task_id("t");
  *request.mutable_delay() = ToProto(absl::Seconds(5));
  v1::RescheduleResponse response;
  grpc::Status status = Reschedule(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("LEASED"));
  ASSERT_TRUE(Ack("t", leased.lease_token()).ok());
  EXPECT_EQ(Reschedule(request, &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  request.set_task_id("unknown");
  EXPECT_EQ(Reschedule(request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Cancel ends SCHEDULED and READY tasks as CANCELLED; they are never handed out, not even to a
// Lease parked for their queue.
TEST_F(ServerTest, CancelScheduledAndReadyTasks) {
  std::unique_ptr<PendingLease> pending = StartParkedLease(absl::Seconds(30));

  ScheduleIn("scheduled", absl::Seconds(5));
  clock_.Advance(absl::Seconds(1));
  v1::CancelResponse response;
  ASSERT_TRUE(Cancel("scheduled", &response).ok());
  EXPECT_EQ(response.task().task_id(), "scheduled");
  EXPECT_EQ(response.task().state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(TimeOf(response.task().finish_time()), kStart + absl::Seconds(1));
  Settle(absl::Seconds(10));  // past its due time
  EXPECT_EQ(Status("scheduled").state(), v1::TASK_STATE_CANCELLED);
  EXPECT_FALSE(pending->done());

  clock_.Advance(absl::Seconds(19));  // the parked Lease's wait ends
  ASSERT_TRUE(pending->Wait());
  EXPECT_TRUE(pending->status().ok());
  EXPECT_EQ(pending->response().tasks_size(), 0);

  ScheduleIn("ready", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("ready", v1::TASK_STATE_READY));
  ASSERT_TRUE(Cancel("ready", &response).ok());
  EXPECT_EQ(response.task().state(), v1::TASK_STATE_CANCELLED);
  EXPECT_THAT(LeaseNow(), IsEmpty());
  EXPECT_EQ(Status("ready").state(), v1::TASK_STATE_CANCELLED);
}

// Cancel: FAILED_PRECONDITION for LEASED, SUCCEEDED and CANCELLED tasks; NOT_FOUND for unknown.
TEST_F(ServerTest, CancelRefusesLeasedFinishedAndUnknown) {
  ScheduleIn("t", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  const v1::LeasedTask leased = LeaseOne("t");
  v1::CancelResponse response;
  grpc::Status status = Cancel("t", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("LEASED"));
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_LEASED);

  ASSERT_TRUE(Ack("t", leased.lease_token()).ok());
  status = Cancel("t", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("SUCCEEDED"));

  ScheduleIn("c", absl::Seconds(5));
  ASSERT_TRUE(Cancel("c", &response).ok());
  EXPECT_EQ(Cancel("c", &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  status = Cancel("unknown", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("unknown"));
  v1::GetStatusResponse get;
  EXPECT_EQ(GetStatus("unknown", &get).error_code(), grpc::StatusCode::NOT_FOUND);
}

// --- Idempotency and retention ---------------------------------------------------------------

// The same task_id with the same queue and payload returns the original response (due time
// included, even when repeated later); a different payload or queue is ALREADY_EXISTS.
TEST_F(ServerTest, ScheduleIsIdempotent) {
  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("idem");
  request.set_payload("p");
  *request.mutable_delay() = ToProto(absl::Seconds(60));
  v1::ScheduleResponse first;
  ASSERT_TRUE(Schedule(request, &first).ok());

  clock_.Advance(absl::Seconds(5));
  v1::ScheduleResponse again;
  ASSERT_TRUE(Schedule(request, &again).ok());
  EXPECT_EQ(again.task_id(), "idem");
  EXPECT_EQ(TimeOf(again.due_time()), kStart + absl::Seconds(60));
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());

  v1::ScheduleRequest different = request;
  different.set_payload("other");
  v1::ScheduleResponse response;
  grpc::Status status = Schedule(different, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("idem"));

  different = request;
  different.set_queue("other-queue");
  status = Schedule(different, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("queue"));

  // Still idempotent once the task finished (while it is retained).
  v1::CancelResponse cancelled;
  ASSERT_TRUE(Cancel("idem", &cancelled).ok());
  ASSERT_TRUE(Schedule(request, &again).ok());
  EXPECT_EQ(TimeOf(again.due_time()), kStart + absl::Seconds(60));
  EXPECT_EQ(Status("idem").state(), v1::TASK_STATE_CANCELLED);
}

// A finished task is forgotten one retention period after it finished (NOT_FOUND), and its id
// can then be used again.
TEST_F(ServerTest, FinishedTasksAreForgottenAfterRetention) {
  options_.retention = absl::Hours(1);
  RestartServer();
  ScheduleIn("t", absl::Seconds(30));
  clock_.Advance(absl::Seconds(10));
  v1::CancelResponse cancelled;
  ASSERT_TRUE(Cancel("t", &cancelled).ok());

  Settle(absl::Hours(1) - absl::Milliseconds(1));
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_CANCELLED);

  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(Eventually([&] {
    v1::GetStatusResponse response;
    return GetStatus("t", &response).error_code() == grpc::StatusCode::NOT_FOUND;
  }));
  v1::CancelResponse response;
  EXPECT_EQ(Cancel("t", &response).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("t");
  request.set_payload("a different payload");
  *request.mutable_delay() = ToProto(absl::Seconds(30));
  v1::ScheduleResponse scheduled;
  ASSERT_TRUE(Schedule(request, &scheduled).ok());
  EXPECT_EQ(Status("t").state(), v1::TASK_STATE_SCHEDULED);
}

// --- Validation through the RPCs -------------------------------------------------------------

// Every bad input is INVALID_ARGUMENT with a message that starts with the field's name.
TEST_F(ServerTest, InvalidArgumentsNameTheField) {
  struct Case {
    std::string field;
    std::function<grpc::Status()> call;
  };
  auto schedule = [this](std::function<void(v1::ScheduleRequest*)> edit) {
    return [this, edit] {
      v1::ScheduleRequest request;
      request.set_queue("q");
      edit(&request);
      v1::ScheduleResponse response;
      return Schedule(request, &response);
    };
  };
  auto lease = [this](std::function<void(v1::LeaseRequest*)> edit) {
    return [this, edit] {
      v1::LeaseRequest request;
      edit(&request);
      v1::LeaseResponse response;
      return Lease(request, &response);
    };
  };
  const std::vector<Case> cases = {
      {"queue", schedule([](auto* r) { r->set_queue("bad queue"); })},
      {"queue", schedule([](auto* r) { r->set_queue(std::string(201, 'q')); })},
      {"task_id", schedule([](auto* r) { r->set_task_id("has space"); })},
      {"task_id", schedule([](auto* r) { r->set_task_id(std::string(201, 'x')); })},
      {"payload", schedule([](auto* r) { r->set_payload(std::string((1 << 20) + 1, 'p')); })},
      {"headers", schedule([](auto* r) {
         for (int i = 0; i < 65; ++i) (*r->mutable_headers())[absl::StrCat("h", i)] = "v";
       })},
      {"headers", schedule([](auto* r) { (*r->mutable_headers())[""] = "v"; })},
      {"headers", schedule([](auto* r) { (*r->mutable_headers())["k"] = std::string(4097, 'v'); })},
      {"delay", schedule([](auto* r) { *r->mutable_delay() = ToProto(absl::Seconds(-5)); })},
      {"delay", schedule([](auto* r) { *r->mutable_delay() = ToProto(absl::Hours(24 * 731)); })},
      {"at", schedule([](auto* r) { *r->mutable_at() = ToProto(kStart + absl::Hours(24 * 731)); })},
      {"at", schedule([](auto* r) { r->mutable_at()->set_nanos(-1); })},
      {"retry_policy.max_attempts",
       schedule([](auto* r) { r->mutable_retry_policy()->set_max_attempts(1001); })},
      {"retry_policy.min_backoff", schedule([](auto* r) {
         *r->mutable_retry_policy()->mutable_min_backoff() = ToProto(absl::Seconds(-1));
       })},
      {"retry_policy.max_backoff", schedule([](auto* r) {
         *r->mutable_retry_policy()->mutable_max_backoff() = ToProto(absl::Hours(24 * 31));
       })},
      {"retry_policy.max_backoff", schedule([](auto* r) {
         *r->mutable_retry_policy()->mutable_min_backoff() = ToProto(absl::Seconds(10));
         *r->mutable_retry_policy()->mutable_max_backoff() = ToProto(absl::Seconds(5));
       })},
      {"queue", lease([](auto* r) { r->set_queue("q/1"); })},
      {"max_tasks", lease([](auto* r) { r->set_max_tasks(1001); })},
      {"max_tasks", lease([](auto* r) { r->set_max_tasks(-1); })},
      {"lease_duration",
       lease([](auto* r) { *r->mutable_lease_duration() = ToProto(absl::Milliseconds(999)); })},
      {"lease_duration",
       lease([](auto* r) { *r->mutable_lease_duration() = ToProto(absl::Hours(13)); })},
      {"wait", lease([](auto* r) { *r->mutable_wait() = ToProto(absl::Seconds(61)); })},
      {"wait", lease([](auto* r) { *r->mutable_wait() = ToProto(absl::Seconds(-1)); })},
      {"retry_delay",
       [this] {
         v1::NackRequest request;
         request.set_task_id("t");
         *request.mutable_retry_delay() = ToProto(absl::Seconds(-1));
         v1::NackResponse response;
         return Nack(request, &response);
       }},
      {"task_id",
       [this] {
         v1::NackRequest request;
         v1::NackResponse response;
         return Nack(request, &response);
       }},
      {"lease_duration",
       [this] {
         v1::ExtendLeaseRequest request;
         request.set_task_id("t");
         *request.mutable_lease_duration() = ToProto(absl::Hours(13));
         v1::ExtendLeaseResponse response;
         return ExtendLease(request, &response);
       }},
      {"task_id", [this] { return Ack("", "token"); }},
      {"task_id",
       [this] {
         v1::CancelResponse response;
         return Cancel("bad\x01id", &response);
       }},
      {"task_id",
       [this] {
         v1::GetStatusResponse response;
         return GetStatus("", &response);
       }},
      {"task_id",
       [this] {
         v1::RescheduleRequest request;
         v1::RescheduleResponse response;
         return Reschedule(request, &response);
       }},
      {"delay",
       [this] {
         v1::RescheduleRequest request;
         request.set_task_id("t");
         *request.mutable_delay() = ToProto(absl::Seconds(-1));
         v1::RescheduleResponse response;
         return Reschedule(request, &response);
       }},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const grpc::Status status = cases[i].call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << "case " << i << " (" << cases[i].field << "): " << status.error_message();
    EXPECT_THAT(status.error_message(), StartsWith(cases[i].field)) << "case " << i;
  }
  // Nothing was created by the refused requests.
  EXPECT_EQ(server_->store().size(), 0u);
}

// --- Health, shutdown, the data directory ----------------------------------------------------

// Health reports SERVING for the server ("") and both services, over the in-process channel and
// the bound TCP port; NOT_FOUND for an unknown service.
TEST_F(ServerTest, HealthReportsServing) {
  for (const std::string service : {"", kSchedulerServiceName, kConsumerServiceName}) {
    HealthCheckResponse response;
    const grpc::Status status = HealthCheck(service, &response);
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_message();
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING) << service;
  }
  HealthCheckResponse response;
  EXPECT_EQ(HealthCheck("no.such.Service", &response).error_code(), grpc::StatusCode::NOT_FOUND);

  ASSERT_GT(server_->grpc_port(), 0);
  auto tcp = Health::NewStub(TcpChannel());
  grpc::ClientContext context;
  SetDeadline(&context);
  HealthCheckRequest request;
  ASSERT_TRUE(tcp->Check(&context, request, &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
}

// Shutdown turns health NOT_SERVING for the server and both services, seen by Check during the
// lame-duck moment in which the port still answers, while other calls are refused UNAVAILABLE.
// Watch streams opened before end without another SERVING (gRPC 1.51's health service finishes
// them at its Shutdown() instead of sending NOT_SERVING). Afterwards every call fails UNAVAILABLE.
TEST_F(ServerTest, HealthIsNotServingAtShutdown) {
  options_.shutdown_grace = absl::Seconds(2);  // the lame duck lasts min(grace, 1 s)
  RestartServer();
  struct Watch {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader;
  };
  std::vector<std::unique_ptr<Watch>> watches;
  for (const std::string service : {"", kSchedulerServiceName, kConsumerServiceName}) {
    auto watch = std::make_unique<Watch>();
    SetDeadline(&watch->context);
    HealthCheckRequest request;
    request.set_service(service);
    watch->reader = health_->Watch(&watch->context, request);
    HealthCheckResponse response;
    ASSERT_TRUE(watch->reader->Read(&response)) << service;
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING) << service;
    watches.push_back(std::move(watch));
  }
  // During and after shutdown the test talks over TCP (see TcpChannel()).
  const std::shared_ptr<grpc::Channel> channel = TcpChannel();
  auto health = Health::NewStub(channel);
  auto scheduler = v1::SchedulerService::NewStub(channel);
  auto check = [&health](const std::string& service, HealthCheckResponse* response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    HealthCheckRequest request;
    request.set_service(service);
    return health->Check(&context, request, response);
  };
  HealthCheckResponse response;
  ASSERT_TRUE(check("", &response).ok());
  ASSERT_EQ(response.status(), HealthCheckResponse::SERVING);

  absl::Notification shut_down;
  std::thread shutdown([&] {
    server_->Shutdown();
    shut_down.Notify();
  });
  // Polls until health says NOT_SERVING, or the shutdown is over (the lame duck was missed).
  grpc::Status status;
  while (!shut_down.HasBeenNotified()) {
    status = check("", &response);
    if (status.ok() && response.status() == HealthCheckResponse::NOT_SERVING) break;
    std::this_thread::yield();
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  for (const std::string service : {kSchedulerServiceName, kConsumerServiceName}) {
    ASSERT_TRUE(check(service, &response).ok()) << service;
    EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING) << service;
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetStatusRequest request;
    request.set_task_id("t");
    v1::GetStatusResponse get;
    status = scheduler->GetStatus(&context, request, &get);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  }
  for (auto& watch : watches) {
    while (watch->reader->Read(&response)) {
      EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
    }
    EXPECT_FALSE(watch->reader->Finish().ok());
  }

  shutdown.join();
  EXPECT_EQ(check("", &response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// After Shutdown every call fails UNAVAILABLE.
TEST_F(ServerTest, CallsAfterShutdownAreUnavailable) {
  ScheduleIn("t", absl::Seconds(5));
  const std::shared_ptr<grpc::Channel> channel = TcpChannel();
  auto scheduler = v1::SchedulerService::NewStub(channel);
  auto consumer = v1::ConsumerService::NewStub(channel);
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetStatusRequest request;
    request.set_task_id("t");
    v1::GetStatusResponse response;
    ASSERT_TRUE(scheduler->GetStatus(&context, request, &response).ok());
  }
  server_->Shutdown();
  server_->Shutdown();  // idempotent
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::GetStatusRequest request;
    request.set_task_id("t");
    v1::GetStatusResponse response;
    EXPECT_EQ(scheduler->GetStatus(&context, request, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::ScheduleRequest request;
    v1::ScheduleResponse response;
    EXPECT_EQ(scheduler->Schedule(&context, request, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::LeaseRequest request;
    v1::LeaseResponse response;
    EXPECT_EQ(consumer->Lease(&context, request, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
}

// A Lease parked at shutdown is answered UNAVAILABLE at once, without waiting for its wait.
TEST_F(ServerTest, ParkedLeaseIsAnsweredUnavailableAtShutdown) {
  std::unique_ptr<PendingLease> pending = StartParkedLease(absl::Seconds(60));
  server_->Shutdown();
  ASSERT_TRUE(pending->Wait());
  EXPECT_EQ(pending->status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(pending->status().error_message(), HasSubstr("shutting down"));
  EXPECT_EQ(clock_.Now(), kStart);
}

// A second server on the same data directory fails FAILED_PRECONDITION naming the lock file; the
// directory is free again once the first server is gone.
TEST_F(ServerTest, SecondServerOnSameDataDirFails) {
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Create(options_, clock_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr((std::filesystem::path(data_dir_) / "LOCK").string()));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--data_dir"));

  StopServer();
  second = Server::Create(options_, clock_);
  ASSERT_TRUE(second.ok()) << second.status();
  (*second)->Shutdown();
}

// An address that cannot be served fails Create with UNAVAILABLE naming the flag, and releases the
// data directory.
TEST_F(ServerTest, CreateFailsOnBadAddresses) {
  StopServer();
  ServerOptions options = options_;
  options.grpc_address = "256.1.2.3:0";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, clock_);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--grpc_address"));

  options = options_;
  options.metrics_address = "256.1.2.3:0";
  server = Server::Create(options, clock_);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--metrics_address"));

  StartServer();  // the data directory was released
}

// --- Metrics ---------------------------------------------------------------------------------

// /metrics counts the scheduled task and shows it by queue and state.
TEST_F(ServerTest, MetricsEndpoint) {
  EnableMetrics();
  EXPECT_THAT(server_->metrics_address(), StartsWith("127.0.0.1:"));
  ScheduleIn("t", absl::Seconds(5));
  ScheduleIn("t", absl::Seconds(5));  // an idempotent repeat is not counted
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("\nhourglass_tasks_scheduled_total{queue=\"q\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\nhourglass_tasks{queue=\"q\",state=\"scheduled\"} 1\n"));
  EXPECT_EQ(SeriesValue(metrics, "hourglass_tasks{queue=\"q\",state=\"ready\"}"), 0);

  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(EventuallyState("t", v1::TASK_STATE_READY));
  LeaseOne("t");
  const std::string after = Metrics();
  EXPECT_EQ(SeriesValue(after, "hourglass_tasks{queue=\"q\",state=\"scheduled\"}"), 0);
  EXPECT_EQ(SeriesValue(after, "hourglass_tasks{queue=\"q\",state=\"leased\"}"), 1);
  EXPECT_EQ(SeriesValue(after, "hourglass_task_leases_total{queue=\"q\"}"), 1);
}

// --- Requests that do not parse ------------------------------------------------------------

// Bytes that are not the method's message are INVALID_ARGUMENT naming the message (gRPC alone
// answers UNIMPLEMENTED with no message), for every method; a string field with invalid UTF-8 is
// named; nesting far beyond protobuf's limit is refused the same way; and the server serves on.
TEST_F(ServerTest, UnparsableRequestsAreInvalidArgument) {
  for (const google::protobuf::FileDescriptor* file :
       {v1::ScheduleRequest::descriptor()->file(), v1::LeaseRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s) {
      for (int m = 0; m < file->service(s)->method_count(); ++m) {
        const google::protobuf::MethodDescriptor* method = file->service(s)->method(m);
        const std::string name =
            absl::StrCat("/", file->service(s)->full_name(), "/", method->name());
        // A varint that never ends.
        const grpc::Status status = RawCall(name, std::string(12, '\xff'));
        EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
        EXPECT_THAT(
            status.error_message(),
            StartsWith(absl::StrCat("request is not a valid ", method->input_type()->full_name(),
                                    ": its bytes do not parse as that protobuf message")))
            << name;
      }
    }
  }
  // queue (field 1) = "\xff\xfe"; http_target (8) { url (1) = "http://\xc3" }
  grpc::Status status =
      RawCall("/hourglass.v1.SchedulerService/Schedule", std::string("\x0a\x02\xff\xfe", 4));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("string field hourglass.v1.ScheduleRequest.queue is not valid UTF-8"));
  status = RawCall("/hourglass.v1.SchedulerService/Schedule",
                   std::string("\x42\x0a\x0a\x08http://\xc3", 12));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("string field hourglass.v1.HttpTarget.url is not valid UTF-8"));
  // 10,000 nested groups of the unknown field 100 (start tag 0xa3 0x06, end tag 0xa4 0x06).
  std::string nested;
  for (int i = 0; i < 10'000; ++i) nested += "\xa3\x06";
  for (int i = 0; i < 10'000; ++i) nested += "\xa4\x06";
  status = RawCall("/hourglass.v1.ConsumerService/Ack", nested);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("hourglass.v1.AckRequest"));
  // An unknown method stays UNIMPLEMENTED.
  EXPECT_EQ(RawCall("/hourglass.v1.SchedulerService/NoSuchMethod", "").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(server_->store().size(), 0u);
  ScheduleIn("after", absl::Seconds(5));
}

// A known field sent with another wire type (protobuf would leave it unset: a task in the
// "default" queue) is INVALID_ARGUMENT naming it, and nothing is scheduled.
TEST_F(ServerTest, FieldOfTheWrongWireTypeIsInvalidArgument) {
  // queue (field 1) as the varint 5.
  grpc::Status status =
      RawCall("/hourglass.v1.SchedulerService/Schedule", std::string("\x08\x05", 2));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              StartsWith("queue (field 1 of hourglass.v1.ScheduleRequest) was sent as a varint"));
  // Lease: wait (field 4) { seconds (1) as length-delimited }
  status = RawCall("/hourglass.v1.ConsumerService/Lease", std::string("\x22\x03\x0a\x01\x31", 5));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), StartsWith("wait.seconds (field 1 of google.protobuf."));
  EXPECT_EQ(server_->store().size(), 0u);
}

// --- Options ---------------------------------------------------------------------------------

// ValidateOptions accepts the defaults and the limits, and names the flag of a bad value.
TEST(ValidateOptionsTest, NamesTheFlag) {
  EXPECT_TRUE(ValidateOptions(ServerOptions()).ok());
  const absl::Duration horizon = absl::Milliseconds(TimingWheel::kHorizonMs) - absl::Hours(24);
  auto with = [](std::function<void(ServerOptions*)> edit) {
    ServerOptions options;
    edit(&options);
    return ValidateOptions(options);
  };
  EXPECT_TRUE(with([](ServerOptions* o) { o->workers = 1; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->workers = 1024; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->queue_capacity = 1; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->queue_capacity = size_t{1} << 30; }).ok());
  EXPECT_TRUE(with([&](ServerOptions* o) { o->limits.max_delay = horizon; }).ok());
  EXPECT_TRUE(with([&](ServerOptions* o) { o->retention = absl::ZeroDuration(); }).ok());

  struct Case {
    std::function<void(ServerOptions*)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](ServerOptions* o) { o->workers = 0; }, "--workers must be between 1 and 1024, got 0"},
      {[](ServerOptions* o) { o->workers = 1025; },
       "--workers must be between 1 and 1024, got 1025"},
      {[](ServerOptions* o) { o->queue_capacity = 0; },
       "--queue_capacity must be between 1 and 1073741824, got 0"},
      {[](ServerOptions* o) { o->queue_capacity = (size_t{1} << 30) + 1; },
       "--queue_capacity must be between 1 and 1073741824, got 1073741825"},
      {[&](ServerOptions* o) { o->limits.max_delay = horizon + absl::Nanoseconds(1); },
       absl::StrCat("--max_delay must be > 0 and <= ", absl::FormatDuration(horizon),
                    " (the timing wheel's horizon less a day), got ",
                    absl::FormatDuration(horizon + absl::Nanoseconds(1)))},
      {[](ServerOptions* o) { o->limits.max_delay = absl::ZeroDuration(); },
       absl::StrCat("--max_delay must be > 0 and <= ", absl::FormatDuration(horizon),
                    " (the timing wheel's horizon less a day), got 0")},
      {[](ServerOptions* o) { o->retention = absl::Seconds(-1); },
       absl::StrCat("--retention must be >= 0 and <= ", absl::FormatDuration(horizon),
                    ", got -1s")},
      {[](ServerOptions* o) { o->limits.max_payload_bytes = -1; },
       "--max_payload_bytes must be between 0 and 1073741824, got -1"},
      {[](ServerOptions* o) { o->shutdown_grace = absl::Seconds(-1); },
       "--shutdown_grace must be >= 0, got -1s"},
  };
  for (const Case& c : cases) {
    const absl::Status status = with(c.edit);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
}

// Create refuses invalid options with ValidateOptions' error, before touching the data directory.
TEST(ServerCreateTest, RejectsInvalidOptions) {
  FakeClock clock;
  ServerOptions options;
  options.grpc_address = "127.0.0.1:0";
  options.metrics_address = "";
  const std::string parent = MakeTempDir();
  ASSERT_FALSE(parent.empty());
  options.data_dir = parent + "/never_created";
  options.workers = 0;
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, clock);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()), StartsWith("--workers"));
  EXPECT_FALSE(std::filesystem::exists(options.data_dir));
  std::error_code ignored;
  std::filesystem::remove_all(parent, ignored);
}

// --- Crash safety (each case runs in a child process, so a crash fails only that case) -------

// A Schedule with the largest allowed delay, after the server sat idle with no timers for more
// than a day, is accepted; it must not crash the server ("nothing the client sends can crash the
// server"). The idle tick thread does not advance the wheel's time, so the wheel's horizon check
// must not be measured from that stale time.
TEST(ServerDeathTest, MaxDelayScheduleAfterLongIdleDoesNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        FakeClock clock;
        ServerOptions options;
        options.grpc_address = "127.0.0.1:0";
        options.metrics_address = "";
        options.data_dir = MakeTempDir();
        options.workers = 1;
        options.limits.max_delay =
            absl::Milliseconds(TimingWheel::kHorizonMs) - absl::Hours(24);  // the largest allowed
        absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, clock);
        if (!server.ok()) std::_Exit(3);
        // Idle: nothing is scheduled and the tick thread sleeps without a deadline, so moving
        // the clock does not wake it.
        if (!clock.BlockUntilWaiters(1)) std::_Exit(5);
        clock.Advance(absl::Hours(48));
        auto stub = v1::SchedulerService::NewStub((*server)->InProcessChannel());
        grpc::ClientContext context;
        SetDeadline(&context);
        v1::ScheduleRequest request;
        *request.mutable_delay() = ToProto(options.limits.max_delay);
        v1::ScheduleResponse response;
        const grpc::Status status = stub->Schedule(&context, request, &response);
        std::error_code ignored;
        std::filesystem::remove_all(options.data_dir, ignored);
        std::_Exit(status.ok() ? 0 : 4);
      },
      ::testing::ExitedWithCode(0), "");
}

// ScheduleBatch answers each item like its own Schedule, in order: good items are scheduled,
// a bad or conflicting item gets its own code and message, and the batch itself succeeds.
TEST_F(ServerTest, ScheduleBatchAnswersEveryItemInOrder) {
  ScheduleIn("taken", absl::Seconds(5));
  v1::ScheduleBatchRequest batch;
  for (const char* id : {"b-1", "b-2"}) {
    v1::ScheduleRequest* item = batch.add_requests();
    item->set_queue("q");
    item->set_task_id(id);
    item->set_payload(id);
    *item->mutable_delay() = ToProto(absl::Seconds(5));
  }
  batch.add_requests()->set_queue("bad queue");  // INVALID_ARGUMENT
  v1::ScheduleRequest* conflict = batch.add_requests();
  conflict->set_queue("q");
  conflict->set_task_id("taken");
  conflict->set_payload("another payload");  // ALREADY_EXISTS
  v1::ScheduleRequest* repeat = batch.add_requests();
  *repeat = batch.requests(0);  // an idempotent repeat inside the batch

  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ScheduleBatchResponse response;
  ASSERT_TRUE(scheduler_->ScheduleBatch(&context, batch, &response).ok());
  ASSERT_EQ(response.results_size(), 5);
  EXPECT_EQ(response.results(0).code(), 0);
  EXPECT_EQ(response.results(0).response().task_id(), "b-1");
  EXPECT_EQ(TimeOf(response.results(0).response().due_time()), kStart + absl::Seconds(5));
  EXPECT_EQ(response.results(1).code(), 0);
  EXPECT_EQ(response.results(1).response().task_id(), "b-2");
  EXPECT_EQ(response.results(2).code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(response.results(2).message(), HasSubstr("queue"));
  EXPECT_FALSE(response.results(2).has_response());
  EXPECT_EQ(response.results(3).code(), static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));
  EXPECT_EQ(response.results(4).code(), 0);
  EXPECT_EQ(response.results(4).response().task_id(), "b-1");
  EXPECT_EQ(Status("b-1").state(), v1::TASK_STATE_SCHEDULED);
  EXPECT_EQ(Status("b-2").state(), v1::TASK_STATE_SCHEDULED);
}

// An empty batch, or one over 1000 items, is INVALID_ARGUMENT naming the field and the limit.
TEST_F(ServerTest, BatchesOutsideTheirLimitsAreInvalid) {
  v1::ScheduleBatchRequest empty;
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ScheduleBatchResponse response;
  grpc::Status status = scheduler_->ScheduleBatch(&context, empty, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("requests must have 1 to 1000 entries, got 0"));

  v1::AckBatchRequest too_long;
  for (int i = 0; i < 1001; ++i) too_long.add_acks()->set_task_id("x");
  grpc::ClientContext ack_context;
  SetDeadline(&ack_context);
  v1::AckBatchResponse ack_response;
  status = consumer_->AckBatch(&ack_context, too_long, &ack_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("acks must have 1 to 1000 entries, got 1001"));
}

// AckBatch acknowledges what it leased in one call; a stale token or unknown id gets its own code.
TEST_F(ServerTest, AckBatchAcknowledgesEachItem) {
  ScheduleIn("a-1", absl::ZeroDuration());
  ScheduleIn("a-2", absl::ZeroDuration());
  ASSERT_TRUE(EventuallyState("a-1", v1::TASK_STATE_READY));
  ASSERT_TRUE(EventuallyState("a-2", v1::TASK_STATE_READY));
  v1::LeaseRequest lease;
  lease.set_queue("q");
  lease.set_max_tasks(10);
  v1::LeaseResponse leased;
  ASSERT_TRUE(Lease(lease, &leased).ok());
  ASSERT_EQ(leased.tasks_size(), 2);

  v1::AckBatchRequest batch;
  for (const v1::LeasedTask& task : leased.tasks()) {
    v1::AckRequest* ack = batch.add_acks();
    ack->set_task_id(task.task_id());
    ack->set_lease_token(task.lease_token());
  }
  v1::AckRequest* stale = batch.add_acks();
  stale->set_task_id(leased.tasks(0).task_id());
  stale->set_lease_token("not-the-token");
  batch.add_acks()->set_task_id("nobody");

  grpc::ClientContext context;
  SetDeadline(&context);
  v1::AckBatchResponse response;
  ASSERT_TRUE(consumer_->AckBatch(&context, batch, &response).ok());
  ASSERT_EQ(response.results_size(), 4);
  EXPECT_EQ(response.results(0).code(), 0);
  EXPECT_EQ(response.results(1).code(), 0);
  EXPECT_EQ(response.results(2).code(), static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_EQ(response.results(3).code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_THAT(response.results(3).message(), HasSubstr("nobody"));
  EXPECT_EQ(Status("a-1").state(), v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(Status("a-2").state(), v1::TASK_STATE_SUCCEEDED);
}

// --- Overload: --max_pending, the retry hint, the gRPC resource quota ------------------------

// The fields of a serialized message by number, decoded generically (the test has no C++ code of
// googleapis' google.rpc protos, like the server): varints and length-delimited fields.
struct Fields {
  std::multimap<int, uint64_t> varints;
  std::multimap<int, std::string> bytes;

  std::vector<std::string> All(int number) const {
    std::vector<std::string> values;
    for (auto [it, end] = bytes.equal_range(number); it != end; ++it) values.push_back(it->second);
    return values;
  }
};
Fields FieldsOf(const std::string& serialized) {
  google::protobuf::UnknownFieldSet set;
  EXPECT_TRUE(set.ParseFromString(serialized)) << "not a protobuf message";
  Fields fields;
  for (int i = 0; i < set.field_count(); ++i) {
    const google::protobuf::UnknownField& field = set.field(i);
    if (field.type() == google::protobuf::UnknownField::TYPE_VARINT) {
      fields.varints.emplace(field.number(), field.varint());
    } else if (field.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      fields.bytes.emplace(field.number(), field.length_delimited());
    } else {
      ADD_FAILURE() << "unexpected wire type of field " << field.number();
    }
  }
  return fields;
}

// The values of trailing metadata `key`.
std::vector<std::string> Trailers(const grpc::ClientContext& context, const std::string& key) {
  std::vector<std::string> values;
  const auto [begin, end] = context.GetServerTrailingMetadata().equal_range(key);
  for (auto it = begin; it != end; ++it) values.emplace_back(it->second.data(), it->second.size());
  return values;
}

// A new task beyond --max_pending is RESOURCE_EXHAUSTED with a message saying what is full and
// what to do, a retry-after-ms trailer and a google.rpc.Status (RetryInfo of 1 s, QuotaFailure) in
// grpc-status-details-bin; a repeat of an accepted task is answered OK; a finished task frees its
// place; the refusals are counted and the limit is exposed.
TEST_F(ServerTest, MaxPendingRefusesWithRetryHint) {
  options_.max_pending = 2;
  EnableMetrics();
  ScheduleIn("a", absl::Seconds(5));
  ScheduleIn("b", absl::Seconds(5));

  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("c");
  request.set_payload("payload of c");
  *request.mutable_delay() = ToProto(absl::Seconds(5));
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ScheduleResponse response;
  const grpc::Status refused = scheduler_->Schedule(&context, request, &response);
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  EXPECT_EQ(refused.error_message(),
            "the server is full: it holds 2 unfinished (scheduled, ready or leased) tasks, its "
            "limit (--max_pending=2); retry later, once consumers have finished tasks, or ask "
            "the operator to add consumers or raise --max_pending");
  EXPECT_EQ(Trailers(context, "retry-after-ms"), std::vector<std::string>{"1000"});

  // grpc-status-details-bin: google.rpc.Status{code 8, the message, details [Any, Any]}.
  ASSERT_FALSE(refused.error_details().empty()) << "no grpc-status-details-bin";
  const Fields status = FieldsOf(refused.error_details());
  ASSERT_EQ(status.varints.count(1), 1u);
  EXPECT_EQ(status.varints.find(1)->second, 8u);  // RESOURCE_EXHAUSTED
  EXPECT_EQ(status.All(2), std::vector<std::string>{refused.error_message()});
  std::vector<google::protobuf::Any> details;
  for (const std::string& any : status.All(3)) {
    ASSERT_TRUE(details.emplace_back().ParseFromString(any));
  }
  ASSERT_EQ(details.size(), 2u);
  EXPECT_EQ(details[0].type_url(), "type.googleapis.com/google.rpc.RetryInfo");
  const std::vector<std::string> retry_delays = FieldsOf(details[0].value()).All(1);
  ASSERT_EQ(retry_delays.size(), 1u);
  google::protobuf::Duration retry_delay;
  ASSERT_TRUE(retry_delay.ParseFromString(retry_delays[0]));
  EXPECT_EQ(retry_delay.seconds(), 1);
  EXPECT_EQ(retry_delay.nanos(), 0);
  EXPECT_EQ(details[1].type_url(), "type.googleapis.com/google.rpc.QuotaFailure");
  const std::vector<std::string> violations = FieldsOf(details[1].value()).All(1);
  ASSERT_EQ(violations.size(), 1u);
  const Fields violation = FieldsOf(violations[0]);
  EXPECT_EQ(violation.All(1), std::vector<std::string>{"max_pending"});
  EXPECT_EQ(violation.All(2), std::vector<std::string>{refused.error_message()});

  // Nothing was stored for the refused task; a repeat of an accepted one is still answered OK.
  v1::GetStatusResponse unknown;
  EXPECT_EQ(GetStatus("c", &unknown).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(TimeOf(ScheduleIn("a", absl::Seconds(5)).due_time()), kStart + absl::Seconds(5));

  // Calls that are not refused carry no hint.
  grpc::ClientContext ok_context;
  SetDeadline(&ok_context);
  v1::GetStatusRequest get;
  get.set_task_id("a");
  v1::GetStatusResponse got;
  ASSERT_TRUE(scheduler_->GetStatus(&ok_context, get, &got).ok());
  EXPECT_THAT(Trailers(ok_context, "retry-after-ms"), IsEmpty());

  // A cancelled task frees its place: one more is accepted, then the server is full again.
  v1::CancelResponse cancelled;
  ASSERT_TRUE(Cancel("a", &cancelled).ok());
  ScheduleIn("c", absl::Seconds(5));
  v1::ScheduleResponse again;
  request.set_task_id("d");
  EXPECT_EQ(Schedule(request, &again).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  const std::string metrics = Metrics();
  EXPECT_EQ(SeriesValue(metrics, "hourglass_pending_limit"), 2);
  EXPECT_EQ(SeriesValue(metrics, "hourglass_tasks_rejected_total{reason=\"max_pending\"}"), 2);
  EXPECT_EQ(SeriesValue(metrics, "hourglass_tasks_scheduled_total{queue=\"q\"}"), 3);
  EXPECT_EQ(SeriesValue(metrics,
                        "hourglass_grpc_server_handled_total{grpc_code="
                        "\"RESOURCE_EXHAUSTED\",grpc_method=\"Schedule\",grpc_service="
                        "\"hourglass.v1.SchedulerService\"}"),
            2);
}

// In a ScheduleBatch the items beyond --max_pending are RESOURCE_EXHAUSTED one by one while the
// others are accepted; the batch carries retry-after-ms (once) and, since it succeeds, no status
// details.
TEST_F(ServerTest, MaxPendingRefusesBatchItemsBeyondTheLimit) {
  options_.max_pending = 3;
  RestartServer();
  ScheduleIn("taken", absl::Seconds(5));
  v1::ScheduleBatchRequest batch;
  for (const char* id : {"b-1", "taken", "b-2", "b-3", "b-4"}) {
    v1::ScheduleRequest* item = batch.add_requests();
    item->set_queue("q");
    item->set_task_id(id);
    item->set_payload(absl::StrCat("payload of ", id));
    *item->mutable_delay() = ToProto(absl::Seconds(5));
  }
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::ScheduleBatchResponse response;
  const grpc::Status status = scheduler_->ScheduleBatch(&context, batch, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 5);
  EXPECT_EQ(response.results(0).code(), 0);
  EXPECT_EQ(response.results(1).code(), 0);  // an idempotent repeat: answered although full
  EXPECT_EQ(response.results(1).response().task_id(), "taken");
  EXPECT_EQ(response.results(2).code(), 0);
  for (int i : {3, 4}) {
    EXPECT_EQ(response.results(i).code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
    EXPECT_THAT(response.results(i).message(), HasSubstr("--max_pending=3"));
    EXPECT_FALSE(response.results(i).has_response());
  }
  EXPECT_EQ(Trailers(context, "retry-after-ms"), std::vector<std::string>{"1000"});
  EXPECT_THAT(Trailers(context, "grpc-status-details-bin"), IsEmpty());
  EXPECT_EQ(Status("b-2").state(), v1::TASK_STATE_SCHEDULED);
  v1::GetStatusResponse unknown;
  EXPECT_EQ(GetStatus("b-3", &unknown).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Tasks recovered at start count against --max_pending; consumers keep leasing and acking while
// Schedule is refused, and each ack frees a place.
TEST_F(ServerTest, MaxPendingCountsRecoveredTasksAndAcksFreeRoom) {
  ScheduleIn("r-1", absl::ZeroDuration());
  ScheduleIn("r-2", absl::ZeroDuration());
  options_.max_pending = 2;
  RestartServer();
  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("n-1");
  request.set_payload("payload of n-1");
  v1::ScheduleResponse response;
  EXPECT_EQ(Schedule(request, &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(EventuallyState("r-1", v1::TASK_STATE_READY));
  ASSERT_TRUE(EventuallyState("r-2", v1::TASK_STATE_READY));
  std::vector<v1::LeasedTask> leased = LeaseNow(2);
  ASSERT_EQ(leased.size(), 2u);
  EXPECT_EQ(Schedule(request, &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(Ack(leased[0].task_id(), leased[0].lease_token()).ok());
  EXPECT_TRUE(Schedule(request, &response).ok());
  request.set_task_id("n-2");
  EXPECT_EQ(Schedule(request, &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// A server with the tightest resource quota that --max_grpc_threads and --grpc_memory_bytes
// admit still serves the largest valid request (a payload of --max_payload_bytes), repeatedly.
// (The e2e test test_overload checks server reflection, a synchronous handler, under it.)
TEST_F(ServerTest, TightResourceQuotaStillServes) {
  options_.max_grpc_threads = 2;
  options_.grpc_memory_bytes = int64_t{16} << 20;
  RestartServer();
  v1::ScheduleRequest request;
  request.set_queue("q");
  request.set_task_id("big");
  request.set_payload(std::string(options_.limits.max_payload_bytes, 'x'));
  v1::ScheduleResponse response;
  for (int i = 0; i < 3; ++i) {
    const grpc::Status status = Schedule(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(Status("big").payload_size_bytes(), options_.limits.max_payload_bytes);
}

// --max_pending, --max_grpc_threads and --grpc_memory_bytes: 0 turns each off; bad values name the
// flag and the limit.
TEST(ValidateOptionsTest, OverloadFlags) {
  auto with = [](std::function<void(ServerOptions*)> edit) {
    ServerOptions options;
    edit(&options);
    return ValidateOptions(options);
  };
  const ServerOptions defaults;
  EXPECT_EQ(defaults.max_pending, 5'000'000);
  EXPECT_EQ(defaults.max_grpc_threads, 64);
  EXPECT_EQ(defaults.grpc_memory_bytes, int64_t{256} << 20);
  EXPECT_TRUE(with([](ServerOptions* o) { o->max_pending = 0; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->max_pending = 1; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->max_grpc_threads = 0; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->max_grpc_threads = 2; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->grpc_memory_bytes = 0; }).ok());
  EXPECT_TRUE(with([](ServerOptions* o) { o->grpc_memory_bytes = int64_t{16} << 20; }).ok());
  const std::string memory_limit =
      "--grpc_memory_bytes must be 0 (no bound) or between 16777216 (4 of the largest requests "
      "that --max_payload_bytes admits, at least 16 MiB) and 1099511627776, got ";
  const std::string big_memory_limit =
      "--grpc_memory_bytes must be 0 (no bound) or between 33554432 (4 of the largest requests "
      "that --max_payload_bytes admits, at least 16 MiB) and 1099511627776, got 16777216";
  struct Case {
    std::function<void(ServerOptions*)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](ServerOptions* o) { o->max_pending = -1; },
       "--max_pending must be >= 0 (0: no limit), got -1"},
      {[](ServerOptions* o) { o->max_grpc_threads = 1; },
       "--max_grpc_threads must be 0 (no bound) or between 2 and 100000, got 1"},
      {[](ServerOptions* o) { o->max_grpc_threads = -1; },
       "--max_grpc_threads must be 0 (no bound) or between 2 and 100000, got -1"},
      {[](ServerOptions* o) { o->grpc_memory_bytes = (int64_t{16} << 20) - 1; },
       memory_limit + "16777215"},
      {[](ServerOptions* o) { o->grpc_memory_bytes = -1; }, memory_limit + "-1"},
      {[](ServerOptions* o) { o->grpc_memory_bytes = (int64_t{1} << 40) + 1; },
       memory_limit + "1099511627777"},
      // 7 MiB payloads make 8 MiB requests: at least 32 MiB.
      {[](ServerOptions* o) {
         o->limits.max_payload_bytes = 7 << 20;
         o->grpc_memory_bytes = int64_t{16} << 20;
       },
       big_memory_limit},
  };
  for (const Case& c : cases) {
    const absl::Status status = with(c.edit);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(status.message(), c.message);
  }
}

}  // namespace
}  // namespace hourglass
