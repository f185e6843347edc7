// Tests of tools/hourglassctl/client.h against an in-process fake server on 127.0.0.1:0: what
// Run sends, prints and returns for paged listings (--all, the next-page hint, a server that
// repeats a token), for RetryTask, for errors (exit code and message) and for the deadline of
// a long-polling lease. The real server is the subject of hourglassctl_e2e; the fake lets these
// paths run whatever the server implements today.
#include "tools/hourglassctl/client.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "tools/hourglassctl/command_line.h"
#include "tools/hourglassctl/time_args.h"

namespace hourglass::ctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15T08:00:00Z

// ListTasks pages through `tasks` page_size at a time (tokens "p1", "p2", ...), or repeats one
// token forever with `repeat_token`; GetStatus answers NOT_FOUND; RetryTask returns the task;
// Cancel is left unimplemented. Thread-safe: gRPC calls it from its own threads.
class FakeScheduler : public v1::SchedulerService::Service {
 public:
  explicit FakeScheduler(int task_count) {
    for (int i = 0; i < task_count; ++i) {
      v1::Task task;
      task.set_task_id(absl::StrCat("t", i));
      task.set_queue("q");
      task.set_state(v1::TASK_STATE_DEAD);
      *task.mutable_due_time() = ToProtoTimestamp(kNow);
      task.set_last_error(absl::StrCat("error ", i));
      tasks_.push_back(task);
    }
  }

  grpc::Status ListTasks(grpc::ServerContext*, const v1::ListTasksRequest* request,
                         v1::ListTasksResponse* response) override {
    absl::MutexLock lock(&mu_);
    tokens_.push_back(request->page_token());
    if (repeat_token_) {
      response->set_next_page_token("again");
      return grpc::Status::OK;
    }
    size_t start = 0;
    if (!request->page_token().empty()) start = std::stoul(request->page_token().substr(1));
    const size_t size = request->page_size() == 0 ? 100 : request->page_size();
    for (size_t i = start; i < tasks_.size() && i < start + size; ++i) {
      *response->add_tasks() = tasks_[i];
    }
    if (start + size < tasks_.size())
      response->set_next_page_token(absl::StrCat("p", start + size));
    return grpc::Status::OK;
  }

  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::GetStatusResponse*) override {
    {
      absl::MutexLock lock(&mu_);
      authorizations_.clear();
      const auto range = context->client_metadata().equal_range("authorization");
      for (auto it = range.first; it != range.second; ++it) {
        authorizations_.emplace_back(it->second.data(), it->second.size());
      }
    }
    // What an authenticating server answers: the ids name the refusal.
    if (request->task_id() == "unauthenticated") {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the token is not valid");
    }
    if (request->task_id() == "denied") {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          "the token may not schedule in queue \"billing\"");
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no task with task_id \"", request->task_id(), "\""));
  }

  grpc::Status RetryTask(grpc::ServerContext*, const v1::RetryTaskRequest* request,
                         v1::RetryTaskResponse* response) override {
    v1::Task* task = response->mutable_task();
    task->set_task_id(request->task_id());
    task->set_queue("q");
    task->set_state(v1::TASK_STATE_READY);
    *task->mutable_due_time() = ToProtoTimestamp(kNow);
    return grpc::Status::OK;
  }

  void RepeatToken() {
    absl::MutexLock lock(&mu_);
    repeat_token_ = true;
  }
  std::vector<std::string> Tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }
  // The authorization metadata values of the last GetStatus call.
  std::vector<std::string> Authorizations() {
    absl::MutexLock lock(&mu_);
    return authorizations_;
  }

 private:
  std::vector<v1::Task> tasks_;  // Constant after construction.
  absl::Mutex mu_;
  std::vector<std::string> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);
  bool repeat_token_ ABSL_GUARDED_BY(mu_) = false;
};

// Lease records how far away the call's deadline was when it arrived, and answers at once.
class FakeConsumer : public v1::ConsumerService::Service {
 public:
  grpc::Status Lease(grpc::ServerContext* context, const v1::LeaseRequest*,
                     v1::LeaseResponse*) override {
    absl::MutexLock lock(&mu_);
    deadline_in_ = absl::FromChrono(context->deadline()) - absl::Now();
    authorization_.clear();
    const auto found = context->client_metadata().find("authorization");
    if (found != context->client_metadata().end()) {
      authorization_.assign(found->second.data(), found->second.size());
    }
    return grpc::Status::OK;
  }
  std::string Authorization() {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }
  absl::Duration DeadlineIn() {
    absl::MutexLock lock(&mu_);
    return deadline_in_;
  }

 private:
  absl::Mutex mu_;
  absl::Duration deadline_in_ ABSL_GUARDED_BY(mu_);
  std::string authorization_ ABSL_GUARDED_BY(mu_);
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);  // for `health`
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&scheduler_);
    builder.RegisterService(&consumer_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }
  void TearDown() override { server_->Shutdown(); }

  // Runs hourglassctl with `args` against the fake; fills out_ and err_, returns the exit code.
  int Ctl(std::vector<std::string> args, absl::string_view token_from_env = "") {
    args.insert(args.begin(), absl::StrCat("--address=127.0.0.1:", port_));
    absl::StatusOr<Invocation> invocation = ParseCommandLine(args, "", token_from_env);
    EXPECT_TRUE(invocation.ok()) << invocation.status();
    if (!invocation.ok()) return -1;
    std::istringstream in;
    std::ostringstream out, err;
    const int code = ctl::Run(*invocation, MakeChannel(invocation->options.address), in, out, err,
                              [] { return kNow; });
    out_ = out.str();
    err_ = err.str();
    return code;
  }

  FakeScheduler scheduler_{5};
  FakeConsumer consumer_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::string out_;
  std::string err_;
};

// --all follows next_page_token to the end and prints one table.
TEST_F(ClientTest, ListAllFollowsEveryPage) {
  EXPECT_EQ(Ctl({"list", "--page_size=2", "--all"}), 0) << err_;
  EXPECT_THAT(scheduler_.Tokens(), ElementsAre("", "p2", "p4"));
  EXPECT_EQ(out_,
            "TASK_ID  QUEUE  STATE  ATTEMPTS  DUE_TIME                  LAST_ERROR\n"
            "t0       q      DEAD   0         2027-01-15T08:00:00.000Z  error 0\n"
            "t1       q      DEAD   0         2027-01-15T08:00:00.000Z  error 1\n"
            "t2       q      DEAD   0         2027-01-15T08:00:00.000Z  error 2\n"
            "t3       q      DEAD   0         2027-01-15T08:00:00.000Z  error 3\n"
            "t4       q      DEAD   0         2027-01-15T08:00:00.000Z  error 4\n");
  EXPECT_EQ(err_, "");
}

// JSON of --all: one ListTasksResponse with every task and no next_page_token.
TEST_F(ClientTest, ListAllAsJsonIsOneResponse) {
  EXPECT_EQ(Ctl({"--output=json", "list", "--page_size=2", "--all"}), 0) << err_;
  EXPECT_THAT(out_, HasSubstr("\"task_id\":\"t4\""));
  EXPECT_THAT(out_, HasSubstr("\"next_page_token\":\"\"}\n"));
  EXPECT_EQ(out_.find('\n'), out_.size() - 1);
}

// Without --all: one page, and stderr says how to get the next one (JSON: next_page_token).
TEST_F(ClientTest, ListOnePageHintsAtTheNext) {
  EXPECT_EQ(Ctl({"list", "--page_size=2", "--page_token=p2"}), 0) << err_;
  EXPECT_THAT(scheduler_.Tokens(), ElementsAre("p2"));
  EXPECT_THAT(out_, HasSubstr("\nt2 "));
  EXPECT_THAT(out_, HasSubstr("\nt3 "));
  EXPECT_EQ(err_,
            "more tasks follow: add --page_token=p4 for the next page, or --all for every page\n");
  EXPECT_EQ(Ctl({"--output=json", "list", "--page_size=2"}), 0) << err_;
  EXPECT_THAT(out_, HasSubstr("\"next_page_token\":\"p2\""));
  EXPECT_EQ(err_, "");
}

// A server that hands out the same token again cannot make --all loop forever.
TEST_F(ClientTest, ListAllStopsWhenATokenRepeats) {
  scheduler_.RepeatToken();
  EXPECT_EQ(Ctl({"list", "--all"}), 1);
  EXPECT_EQ(out_, "");
  EXPECT_EQ(err_,
            "hourglassctl: INTERNAL: the server repeated the page token \"again\"; stopping\n");
  EXPECT_EQ(scheduler_.Tokens().size(), 2u);
}

TEST_F(ClientTest, RetryPrintsTheTask) {
  EXPECT_EQ(Ctl({"retry", "t3"}), 0) << err_;
  EXPECT_EQ(out_,
            "task_id       t3\n"
            "queue         q\n"
            "state         READY\n"
            "attempts      0\n"
            "due_time      2027-01-15T08:00:00.000Z (now)\n"
            "payload_size  0 bytes\n");
}

// The server's code picks the exit code; its message goes to stderr, and a status without one
// (UNIMPLEMENTED from a server that lacks the method) names the method instead.
TEST_F(ClientTest, ErrorsGoToStderrWithTheirExitCode) {
  EXPECT_EQ(Ctl({"status", "nope"}), 3);
  EXPECT_EQ(out_, "");
  EXPECT_EQ(err_, "hourglassctl: NOT_FOUND: no task with task_id \"nope\"\n");
  EXPECT_EQ(Ctl({"cancel", "t1"}), 7);
  EXPECT_EQ(err_,
            "hourglassctl: UNIMPLEMENTED: the server does not implement "
            "hourglass.v1.SchedulerService/Cancel\n");
}

// A lease's deadline is --timeout plus --wait, so a long poll is never cut short.
TEST_F(ClientTest, LeaseDeadlineCoversTheWait) {
  EXPECT_EQ(Ctl({"--timeout=2s", "lease", "--wait=40s"}), 0) << err_;
  EXPECT_EQ(out_, "no task ready\n");
  EXPECT_GT(consumer_.DeadlineIn(), absl::Seconds(40));
  EXPECT_LE(consumer_.DeadlineIn(), absl::Seconds(43));  // gRPC rounds timeouts up.
  EXPECT_EQ(Ctl({"--timeout=2s", "lease", "--wait=0s"}), 0) << err_;
  EXPECT_GT(consumer_.DeadlineIn(), absl::Seconds(1));
  EXPECT_LE(consumer_.DeadlineIn(), absl::Seconds(3));
}

// The token goes out as exactly one "authorization: Bearer <token>" on every call (the flag
// wins over $HOURGLASS_TOKEN); without one, no authorization metadata at all.
TEST_F(ClientTest, SendsTheTokenAsBearerMetadata) {
  EXPECT_EQ(Ctl({"status", "t1"}), 3);
  EXPECT_THAT(scheduler_.Authorizations(), ElementsAre());
  EXPECT_EQ(Ctl({"--token=flag-token-0123456789", "status", "t1"}), 3);
  EXPECT_THAT(scheduler_.Authorizations(), ElementsAre("Bearer flag-token-0123456789"));
  EXPECT_EQ(Ctl({"status", "t1"}, "env-token-0123456789"), 3);
  EXPECT_THAT(scheduler_.Authorizations(), ElementsAre("Bearer env-token-0123456789"));
  EXPECT_EQ(Ctl({"status", "t1", "--token", "flag-token-0123456789"}, "env-token-0123456789"), 3);
  EXPECT_THAT(scheduler_.Authorizations(), ElementsAre("Bearer flag-token-0123456789"));
  // The lease has its own context (its deadline covers the wait): it carries the token too.
  EXPECT_EQ(Ctl({"lease", "--wait=0s"}, "env-token-0123456789"), 0) << err_;
  EXPECT_EQ(consumer_.Authorization(), "Bearer env-token-0123456789");
}

// UNAUTHENTICATED and PERMISSION_DENIED have their own exit codes, and the error line never
// carries the token.
TEST_F(ClientTest, AuthRefusalsHaveTheirExitCodes) {
  EXPECT_EQ(Ctl({"status", "unauthenticated"}, "env-token-0123456789"), 8);
  EXPECT_EQ(out_, "");
  EXPECT_EQ(err_, "hourglassctl: UNAUTHENTICATED: the token is not valid\n");
  EXPECT_EQ(Ctl({"--token=flag-token-0123456789", "status", "denied"}), 9);
  EXPECT_EQ(err_,
            "hourglassctl: PERMISSION_DENIED: the token may not schedule in queue \"billing\"\n");
}

// health asks grpc.health.v1: SERVING is exit 0, NOT_SERVING exit 6, an unknown service the
// health service's NOT_FOUND (exit 3); --service goes into the request; JSON output too.
TEST_F(ClientTest, HealthPrintsTheStatusAndExitsByIt) {
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  ASSERT_NE(health, nullptr);
  health->SetServingStatus("hourglass.v1.SchedulerService", true);
  health->SetServingStatus(std::string(200, 's'), false);  // a length of two varint bytes
  EXPECT_EQ(Ctl({"health"}), 0) << err_;
  EXPECT_EQ(out_, "SERVING\n");
  EXPECT_EQ(Ctl({"--output=json", "health", "--service=hourglass.v1.SchedulerService"}), 0);
  EXPECT_EQ(out_, "{\"status\":\"SERVING\"}\n");
  EXPECT_EQ(Ctl({"health", "--service", std::string(200, 's')}), 6);
  EXPECT_EQ(out_, "NOT_SERVING\n");
  EXPECT_EQ(Ctl({"health", "--service=no.such.Service"}), 3);
  EXPECT_EQ(out_, "");
  EXPECT_THAT(err_, HasSubstr("hourglassctl: NOT_FOUND: "));
}

// The TLS flags build a TLS channel; files that cannot be read or are not PEM are errors that
// name the flag and the file.
TEST(MakeChannelTest, TlsFilesAreReadAndChecked) {
  Options options;
  options.address = "127.0.0.1:1";
  options.tls = true;
  EXPECT_TRUE(MakeChannel(options).ok());  // gRPC's default roots
  options.tls_ca = "/nonexistent/ca.crt";
  EXPECT_EQ(MakeChannel(options).status().message(),
            "--tls_ca: cannot open \"/nonexistent/ca.crt\": No such file or directory");
  char path[] = "/tmp/hourglassctl-tls-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "not pem\n", 8), 8);
  close(fd);
  options.tls_ca = path;
  EXPECT_EQ(MakeChannel(options).status().message(),
            absl::StrCat("--tls_ca: \"", path, "\" is not a PEM file (no -----BEGIN line)"));
  options.tls_ca = "";
  options.tls_cert = path;
  options.tls_key = "/nonexistent/tls.key";
  EXPECT_THAT(MakeChannel(options).status().message(), HasSubstr("--tls_cert: \""));
  unlink(path);
}

}  // namespace
}  // namespace hourglass::ctl
