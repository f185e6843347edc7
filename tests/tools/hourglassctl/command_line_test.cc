// Tests of tools/hourglassctl/command_line.h and the request builders of client.h: what each
// command line turns into (the exact request proto), and the exact usage error for each
// mistake an operator can make.
#include "tools/hourglassctl/command_line.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tools/hourglassctl/client.h"

namespace hourglass::ctl {
namespace {

using ::testing::HasSubstr;

class CommandLineTest : public ::testing::Test {
 protected:
  absl::StatusOr<Invocation> Parse(const std::vector<std::string>& args,
                                   absl::string_view env_address = "",
                                   absl::string_view env_token = "") {
    return ParseCommandLine(args, env_address, env_token);
  }
  // The usage error of `args` (fails the test when they parse).
  std::string UsageError(const std::vector<std::string>& args, absl::string_view env_token = "") {
    absl::StatusOr<Invocation> invocation = Parse(args, "", env_token);
    EXPECT_FALSE(invocation.ok()) << "parsed: " << ::testing::PrintToString(args);
    if (invocation.ok()) return "";
    EXPECT_EQ(invocation.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(invocation.status().message());
  }
};

template <typename Message>
Message FromText(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

MATCHER_P(EqualsProto, expected, "") {
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(arg, expected)) return true;
  *result_listener << "differences:\n" << diff << "actual:\n" << arg.DebugString();
  return false;
}

// The defaults: localhost:7070, 10 s, text; a command and its arguments.
TEST_F(CommandLineTest, DefaultsOfTheGlobalFlags) {
  absl::StatusOr<Invocation> invocation = Parse({"status", "task-1"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->command, Command::kStatus);
  EXPECT_EQ(invocation->args, std::vector<std::string>({"task-1"}));
  EXPECT_EQ(invocation->options.address, "localhost:7070");
  EXPECT_EQ(invocation->options.timeout, absl::Seconds(10));
  EXPECT_EQ(invocation->options.output, OutputFormat::kText);
  EXPECT_FALSE(invocation->help);
  EXPECT_TRUE(invocation->given.empty());
}

// TLS is off by default and on with --tls or any --tls_* flag; a client certificate needs both
// files; an empty file name is refused.
TEST_F(CommandLineTest, TlsFlags) {
  absl::StatusOr<Invocation> invocation = Parse({"status", "t1"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_FALSE(invocation->options.tls);
  invocation = Parse({"--tls", "status", "t1"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_TRUE(invocation->options.tls);
  EXPECT_EQ(invocation->options.tls_ca, "");
  invocation = Parse({"status", "t1", "--tls_ca=ca.crt", "--tls_cert", "c.crt", "--tls_key=c.key",
                      "--tls_server_name=hourglass"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_TRUE(invocation->options.tls);
  EXPECT_EQ(invocation->options.tls_ca, "ca.crt");
  EXPECT_EQ(invocation->options.tls_cert, "c.crt");
  EXPECT_EQ(invocation->options.tls_key, "c.key");
  EXPECT_EQ(invocation->options.tls_server_name, "hourglass");
  invocation = Parse({"--tls_server_name=h", "status", "t1"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_TRUE(invocation->options.tls);
  EXPECT_EQ(UsageError({"--tls_cert=c.crt", "status", "t1"}),
            "a client certificate needs both --tls_cert and --tls_key");
  EXPECT_EQ(UsageError({"--tls_key=c.key", "status", "t1"}),
            "a client certificate needs both --tls_cert and --tls_key");
  EXPECT_EQ(UsageError({"--tls_ca=", "status", "t1"}), "--tls_ca must not be empty");
  // A later parse starts from the defaults again.
  invocation = Parse({"health"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_FALSE(invocation->options.tls);
  EXPECT_EQ(invocation->options.service, "");
}

// Global flags go before or after the command, as --f=v or --f v; $HOURGLASS_ADDRESS replaces
// the default address but not an explicit --address.
TEST_F(CommandLineTest, GlobalFlagsAnywhereAndTheEnvironment) {
  absl::StatusOr<Invocation> invocation =
      Parse({"--address", "h:1", "status", "--output=json", "task-1", "--timeout=2s"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.address, "h:1");
  EXPECT_EQ(invocation->options.output, OutputFormat::kJson);
  EXPECT_EQ(invocation->options.timeout, absl::Seconds(2));
  EXPECT_EQ(invocation->args, std::vector<std::string>({"task-1"}));

  invocation = Parse({"status", "task-1"}, "env-host:7");
  ASSERT_TRUE(invocation.ok());
  EXPECT_EQ(invocation->options.address, "env-host:7");
}

TEST_F(CommandLineTest, EnvironmentDoesNotOverrideAnExplicitAddress) {
  absl::StatusOr<Invocation> invocation =
      Parse({"--address=flag-host:1", "status", "task-1"}, "env-host:7");
  ASSERT_TRUE(invocation.ok());
  EXPECT_EQ(invocation->options.address, "flag-host:1");
}

// Every flag of schedule lands in the request, headers in order and all of them.
TEST_F(CommandLineTest, ScheduleWithEveryPullFlag) {
  absl::StatusOr<Invocation> invocation =
      Parse({"schedule", "--queue", "emails", "--id=welcome-42", "--delay", "1h30m", "--payload",
             "hello", "--header", "a=1", "--header=b=x=y", "--header", "empty=", "--max_attempts",
             "7", "--min_backoff=2s", "--max_backoff", "1d"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  std::istringstream no_stdin;
  absl::StatusOr<v1::ScheduleRequest> request = BuildScheduleRequest(*invocation, no_stdin);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_THAT(*request, EqualsProto(FromText<v1::ScheduleRequest>(R"pb(
    queue: "emails"
    task_id: "welcome-42"
    delay { seconds: 5400 }
    payload: "hello"
    headers { key: "a" value: "1" }
    headers { key: "b" value: "x=y" }
    headers { key: "empty" value: "" }
    retry_policy {
      max_attempts: 7
      min_backoff { seconds: 2 }
      max_backoff { seconds: 86400 }
    }
  )pb")));
}

// --at sends a timestamp; no payload flag sends an empty payload; no queue lets the server
// pick "default"; an unset retry policy stays unset.
TEST_F(CommandLineTest, ScheduleAtATime) {
  absl::StatusOr<Invocation> invocation =
      Parse({"schedule", "--at", "2027-01-15T09:00:00.5+01:00"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  std::istringstream no_stdin;
  absl::StatusOr<v1::ScheduleRequest> request = BuildScheduleRequest(*invocation, no_stdin);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_THAT(*request, EqualsProto(FromText<v1::ScheduleRequest>(
                            R"pb(at { seconds: 1800000000 nanos: 500000000 })pb")));
}

// --payload_file reads a file byte for byte (NULs and all), - reads stdin, and a missing file
// is a usage error naming it.
TEST_F(CommandLineTest, SchedulePayloadFromFileAndStdin) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/hourglassctl_payload_", getpid(), ".bin");
  const std::string bytes("\x00\x01\xff binary\n", 11);
  std::ofstream(path, std::ios::binary) << bytes;
  absl::StatusOr<Invocation> invocation = Parse({"schedule", "--delay=0s", "--payload_file", path});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  std::istringstream no_stdin;
  absl::StatusOr<v1::ScheduleRequest> request = BuildScheduleRequest(*invocation, no_stdin);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->payload(), bytes);
  std::remove(path.c_str());

  request = BuildScheduleRequest(*invocation, no_stdin);
  EXPECT_EQ(request.status(),
            absl::InvalidArgumentError(absl::StrCat("--payload_file: cannot open \"", path,
                                                    "\": No such file or directory")));

  invocation = Parse({"schedule", "--delay=0s", "--payload_file", "-"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  std::istringstream stdin_stream(std::string("from\0stdin", 10));
  request = BuildScheduleRequest(*invocation, stdin_stream);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->payload(), std::string("from\0stdin", 10));
}

// Push targets: HTTP with its headers, gRPC with TLS, and the dispatch deadline.
TEST_F(CommandLineTest, SchedulePushTargets) {
  absl::StatusOr<Invocation> invocation =
      Parse({"schedule", "--delay=1m", "--http_url", "https://example.com/hook", "--http_header",
             "Authorization=Bearer x", "--http_header", "Content-Type=application/json",
             "--dispatch_deadline", "10s"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  std::istringstream no_stdin;
  EXPECT_THAT(*BuildScheduleRequest(*invocation, no_stdin),
              EqualsProto(FromText<v1::ScheduleRequest>(R"pb(
                delay { seconds: 60 }
                http_target {
                  url: "https://example.com/hook"
                  headers { key: "Authorization" value: "Bearer x" }
                  headers { key: "Content-Type" value: "application/json" }
                }
                dispatch_deadline { seconds: 10 }
              )pb")));

  invocation = Parse({"schedule", "--delay=1m", "--grpc_address=billing:443",
                      "--grpc_method=/billing.v1.Billing/Charge", "--grpc_tls"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_THAT(
      *BuildScheduleRequest(*invocation, no_stdin), EqualsProto(FromText<v1::ScheduleRequest>(R"pb(
        delay { seconds: 60 }
        grpc_target { address: "billing:443" method: "/billing.v1.Billing/Charge" tls: true }
      )pb")));
}

// The consumer commands and their defaults (--max 1, --lease 30s, --wait 5s).
TEST_F(CommandLineTest, ConsumerRequests) {
  absl::StatusOr<Invocation> invocation = Parse({"lease", "--queue=q"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_THAT(BuildLeaseRequest(*invocation), EqualsProto(FromText<v1::LeaseRequest>(R"pb(
                queue: "q"
                max_tasks: 1
                lease_duration { seconds: 30 }
                wait { seconds: 5 }
              )pb")));
  {
    invocation = Parse({"lease", "--max", "10", "--lease=5m", "--wait=0s"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_THAT(BuildLeaseRequest(*invocation), EqualsProto(FromText<v1::LeaseRequest>(R"pb(
                  max_tasks: 10
                  lease_duration { seconds: 300 }
                  wait {}
                )pb")));
  }
  {
    invocation = Parse({"nack", "t1", "tok", "--error", "SMTP 451", "--retry_delay=90s"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_THAT(BuildNackRequest(*invocation), EqualsProto(FromText<v1::NackRequest>(R"pb(
                  task_id: "t1"
                  lease_token: "tok"
                  retry_delay { seconds: 90 }
                  error: "SMTP 451"
                )pb")));
  }
  {
    invocation = Parse({"nack", "t1", "tok"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_THAT(BuildNackRequest(*invocation),
                EqualsProto(FromText<v1::NackRequest>(R"pb(task_id: "t1" lease_token: "tok")pb")));
  }
  {
    invocation = Parse({"extend", "t1", "tok", "--lease", "10m"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_THAT(
        BuildExtendLeaseRequest(*invocation),
        EqualsProto(FromText<v1::ExtendLeaseRequest>(R"pb(task_id: "t1"
                                                          lease_token: "tok"
                                                          lease_duration { seconds: 600 })pb")));
  }
}

TEST_F(CommandLineTest, RescheduleAndListRequests) {
  absl::StatusOr<Invocation> invocation = Parse({"reschedule", "t1", "--delay", "2h"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_THAT(BuildRescheduleRequest(*invocation),
              EqualsProto(FromText<v1::RescheduleRequest>(R"pb(task_id: "t1"
                                                               delay { seconds: 7200 })pb")));
  {
    invocation = Parse({"reschedule", "t1", "--at=2027-01-15T08:00:00Z"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_THAT(BuildRescheduleRequest(*invocation),
                EqualsProto(FromText<v1::RescheduleRequest>(R"pb(task_id: "t1"
                                                                 at { seconds: 1800000000 })pb")));
  }
  {
    invocation =
        Parse({"list", "--queue=q", "--state", "dead", "--page_size=50", "--page_token", "p2"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_FALSE(invocation->options.all);
    EXPECT_THAT(BuildListTasksRequest(*invocation), EqualsProto(FromText<v1::ListTasksRequest>(R"pb(
                  queue: "q"
                  state: TASK_STATE_DEAD
                  page_size: 50
                  page_token: "p2"
                )pb")));
  }
  {
    invocation = Parse({"list", "--all"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_TRUE(invocation->options.all);
    EXPECT_THAT(BuildListTasksRequest(*invocation), EqualsProto(v1::ListTasksRequest()));
  }
}

// States are accepted in any case, with or without the TASK_STATE_ prefix.
TEST_F(CommandLineTest, StatesInAnySpelling) {
  for (const char* spelling : {"dead", "DEAD", "Dead", "task_state_dead", "TASK_STATE_DEAD"}) {
    absl::StatusOr<Invocation> invocation = Parse({"list", "--state", spelling});
    ASSERT_TRUE(invocation.ok()) << spelling << ": " << invocation.status();
    EXPECT_EQ(invocation->options.state, v1::TASK_STATE_DEAD) << spelling;
  }
  EXPECT_EQ(UsageError({"list", "--state=zombie"}),
            "--state: \"zombie\" is not a task state; use scheduled, ready, leased, succeeded, "
            "cancelled or dead");
  EXPECT_EQ(UsageError({"list", "--state=unspecified"}),
            "--state: \"unspecified\" is not a task state; use scheduled, ready, leased, "
            "succeeded, cancelled or dead");
}

// --help, -h and "help" anywhere ask for help, of the command when there is one; flags that
// would be wrong for the command do not matter then.
TEST_F(CommandLineTest, HelpForms) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"-h"}, {"help"}, {"--output=json", "--help"}}) {
    absl::StatusOr<Invocation> invocation = Parse(args);
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_TRUE(invocation->help);
    EXPECT_FALSE(invocation->command.has_value());
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"schedule", "--help"}, {"help", "schedule"}, {"--help", "schedule", "--max=3"}}) {
    absl::StatusOr<Invocation> invocation = Parse(args);
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_TRUE(invocation->help);
    EXPECT_EQ(invocation->command, Command::kSchedule);
  }
}

// The other spellings Abseil users expect: -flag, --no<bool>, --flag=true, dashes for
// underscores; and -- before an id that starts with a dash.
TEST_F(CommandLineTest, FlagSpellings) {
  absl::StatusOr<Invocation> invocation = Parse({"list", "-page-size=5", "--noall"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.page_size, 5);
  EXPECT_FALSE(invocation->options.all);
  {
    invocation = Parse({"list", "--all=true"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_TRUE(invocation->options.all);
  }
  {
    invocation = Parse({"cancel", "--", "-odd-id"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_EQ(invocation->args, std::vector<std::string>({"-odd-id"}));
  }
  {
    // A lone "-" is an argument (stdin for --payload_file), as are values starting with "-".
    invocation = Parse({"nack", "t1", "tok", "--error", "-1 is not a port"});
    ASSERT_TRUE(invocation.ok()) << invocation.status();
    EXPECT_EQ(invocation->options.error, "-1 is not a port");
  }
}

// Each mistake is refused before anything is sent, with a message that says what to fix.
TEST_F(CommandLineTest, UsageErrors) {
  EXPECT_EQ(UsageError({}), "no command given");
  EXPECT_EQ(UsageError({"frobnicate"}), "unknown command \"frobnicate\"");
  EXPECT_EQ(UsageError({"status", "t1", "--bogus"}), "unknown flag --bogus");
  EXPECT_EQ(UsageError({"status"}), "status takes 1 argument (ID), got 0");
  EXPECT_EQ(UsageError({"status", "a", "b"}), "status takes 1 argument (ID), got 2: a b");
  EXPECT_EQ(UsageError({"ack", "a"}), "ack takes 2 arguments (ID TOKEN), got 1: a");
  EXPECT_EQ(UsageError({"list", "extra"}), "list takes no arguments, got 1: extra");
  EXPECT_EQ(UsageError({"cancel", ""}), "cancel: ID must not be empty");
  EXPECT_EQ(UsageError({"status", "t1", "--max=3"}), "--max does not apply to status");
  EXPECT_EQ(UsageError({"lease", "--delay=1s"}), "--delay does not apply to lease");
  EXPECT_EQ(UsageError({"schedule", "--queue"}), "--queue needs a value (--queue=Q)");
  EXPECT_EQ(UsageError({"schedule", "--payload", "--delay=1s"}),
            "--payload needs a value (--payload=STR)");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--delay=2s"}),
            "--delay is given more than once");
  EXPECT_EQ(UsageError({"schedule", "--delay=90"}),
            "--delay: \"90\" is not a duration; use a number with a unit: 500ms, 90s, 15m, 2h, "
            "1h30m, 7d");
  EXPECT_EQ(UsageError({"schedule", "--delay=-5s"}), "--delay: must be >= 0, got -5s");
  EXPECT_EQ(UsageError({"schedule", "--at=tomorrow"}),
            "--at: \"tomorrow\" is not an RFC 3339 time; write it like 2026-12-01T03:00:00Z or "
            "2026-12-01T04:00:00+01:00");
  EXPECT_THAT(UsageError({"lease", "--max=lots"}), HasSubstr("--max: "));
  EXPECT_EQ(UsageError({"--output=yaml", "status", "t1"}),
            "--output: \"yaml\" is not an output format; use text or json");
  EXPECT_EQ(UsageError({"--timeout=0.5", "status", "t1"}),
            "--timeout: \"0.5\" is not a duration; use a number with a unit: 500ms, 90s, 15m, "
            "2h, 1h30m, 7d");
  EXPECT_EQ(UsageError({"schedule"}),
            "schedule needs exactly one of --delay and --at (--delay 0s for now)");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--at=2027-01-15T08:00:00Z"}),
            "schedule needs exactly one of --delay and --at (--delay 0s for now)");
  EXPECT_EQ(UsageError({"reschedule", "t1"}),
            "reschedule needs exactly one of --delay and --at (--delay 0s for now)");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--payload=x", "--payload_file=f"}),
            "give either --payload or --payload_file, not both");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--header=novalue"}),
            "--header: \"novalue\" is not key=value");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--header==v"}),
            "--header: \"=v\" is not key=value");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--header=k=1", "--header=k=2"}),
            "--header: \"k\" is given twice");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--http_url=https://x", "--grpc_address=h:1",
                        "--grpc_method=/a.B/C"}),
            "a task has one push target: --http_url or --grpc_address, not both");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--http_header=a=b"}),
            "--http_header needs --http_url");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--grpc_address=h:1"}),
            "gRPC push delivery needs both --grpc_address and --grpc_method");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--grpc_tls"}),
            "gRPC push delivery needs both --grpc_address and --grpc_method");
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--dispatch_deadline=5s"}),
            "--dispatch_deadline applies to push tasks (--http_url or --grpc_address)");
  EXPECT_EQ(UsageError({"extend", "t1", "tok"}),
            "extend needs --lease, the new lease's length from now");
  EXPECT_EQ(UsageError({"list", "--page_token="}), "--page_token must not be empty");
}

// Repeated flags collect every occurrence instead of keeping the last.
TEST_F(CommandLineTest, RepeatedHeadersAreCollectedNotOverwritten) {
  absl::StatusOr<Invocation> invocation =
      Parse({"schedule", "--delay=1s", "--header=a=1", "--header=b=2", "--header=c=3"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.headers.size(), 3u);
  EXPECT_EQ(invocation->options.headers[2], (std::pair<std::string, std::string>("c", "3")));
}

// A parse starts from the defaults: nothing of an earlier command line leaks into the next.
TEST_F(CommandLineTest, EachParseStartsFromTheDefaults) {
  ASSERT_TRUE(Parse({"--address=h:1", "--output=json", "lease", "--queue=q", "--max=9"}).ok());
  absl::StatusOr<Invocation> invocation = Parse({"lease"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.address, "localhost:7070");
  EXPECT_EQ(invocation->options.output, OutputFormat::kText);
  EXPECT_EQ(invocation->options.queue, "");
  EXPECT_EQ(invocation->options.max, 1);
  EXPECT_TRUE(invocation->given.empty());
  EXPECT_EQ(UsageError({"schedule", "--delay=1s", "--header="}), "--header: \"\" is not key=value");
}

// --token is global; $HOURGLASS_TOKEN is the token when the flag is not given; neither is
// needed.
TEST_F(CommandLineTest, TokenFromFlagOrEnvironment) {
  absl::StatusOr<Invocation> invocation = Parse({"status", "task-1"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.token, "");
  invocation = Parse({"status", "task-1"}, "", "env-token_0123456789");
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.token, "env-token_0123456789");
  invocation =
      Parse({"status", "--token", "flag+token/0123456789=", "task-1"}, "", "env-token_0123456789");
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.token, "flag+token/0123456789=");
  invocation = Parse({"--token=a.b~c", "lease"});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_EQ(invocation->options.token, "a.b~c");
}

// A token that cannot be a bearer token is a usage error that names where it came from and the
// position of the bad character, never the token.
TEST_F(CommandLineTest, BadTokensAreRefusedWithoutShowingThem) {
  std::string error = UsageError({"--token=secret value", "status", "t"});
  EXPECT_EQ(error,
            "--token: character 7 of the token is not one of A-Z a-z 0-9 - . _ ~ + / = (the token "
            "is not shown)");
  error = UsageError({"status", "t"}, "secret\nvalue");
  EXPECT_EQ(
      error,
      "$HOURGLASS_TOKEN: character 7 of the token is not one of A-Z a-z 0-9 - . _ ~ + / = (the "
      "token is not shown)");
  EXPECT_THAT(error, ::testing::Not(HasSubstr("secret")));
  EXPECT_EQ(UsageError({"--token=", "status", "t"}),
            "--token must not be empty (leave it out to send no token)");
  EXPECT_EQ(UsageError({"--token=one-0123456789", "--token=two-0123456789", "status", "t"}),
            "--token is given more than once");
}

// Help documents --token and never shows a token: not the flag's, not the environment's.
TEST_F(CommandLineTest, HelpNeverShowsTheToken) {
  absl::StatusOr<Invocation> invocation =
      Parse({"--token=flag-secret-0123456789", "status", "--help"}, "", "env-secret-0123456789");
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  ASSERT_TRUE(invocation->help);
  for (const std::string& help : {OverviewHelp(), CommandHelp(Command::kStatus)}) {
    EXPECT_THAT(help, HasSubstr("--token=SECRET"));
    EXPECT_THAT(help, HasSubstr("$HOURGLASS_TOKEN"));
    EXPECT_THAT(help, HasSubstr("  8  UNAUTHENTICATED"));
    EXPECT_THAT(help, HasSubstr("  9  PERMISSION_DENIED"));
    EXPECT_THAT(help, ::testing::Not(HasSubstr("secret-0123456789")));
  }
}

}  // namespace
}  // namespace hourglass::ctl
