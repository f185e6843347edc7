// Tests of tools/hourglassctl/output.h, exit_codes.h and the --help texts: the exact text
// people read, the JSON scripts parse, the exit code of every gRPC code, and help that covers
// every command, flag and exit code.
#include "tools/hourglassctl/output.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "tools/hourglassctl/command_line.h"
#include "tools/hourglassctl/exit_codes.h"
#include "tools/hourglassctl/time_args.h"

namespace hourglass::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15T08:00:00Z

template <typename Message>
Message FromText(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

// A scheduled task due in 90 s, created 10 s ago.
v1::Task ScheduledTask() {
  return FromText<v1::Task>(R"pb(
    task_id: "welcome-42"
    queue: "emails"
    state: TASK_STATE_SCHEDULED
    attempts: 0
    due_time { seconds: 1800000090 nanos: 123456789 }
    create_time { seconds: 1799999990 }
    retry_policy {
      max_attempts: 5
      min_backoff { seconds: 1 }
      max_backoff { seconds: 300 }
    }
    payload_size_bytes: 11
  )pb");
}

TEST(OutputTest, TaskAsAlignedKeyValueLines) {
  EXPECT_EQ(FormatTask(ScheduledTask(), kNow),
            "task_id       welcome-42\n"
            "queue         emails\n"
            "state         SCHEDULED\n"
            "attempts      0 of 5\n"
            "due_time      2027-01-15T08:01:30.123Z (in 1m30s)\n"
            "create_time   2027-01-15T07:59:50.000Z (10s ago)\n"
            "retry_policy  max_attempts 5, backoff 1s doubling to 5m\n"
            "payload_size  11 bytes\n");
}

// A dead push task shows its finish time, target, deadline and last error (escaped onto one
// line); a leased one its lease expiry.
TEST(OutputTest, TaskWithEveryOptionalField) {
  v1::Task task = ScheduledTask();
  task.set_state(v1::TASK_STATE_DEAD);
  task.set_attempts(5);
  *task.mutable_finish_time() = ToProtoTimestamp(kNow - absl::Hours(1));
  task.mutable_http_target()->set_url("https://example.com/hook");
  *task.mutable_dispatch_deadline() = ToProtoDuration(absl::Seconds(10));
  task.set_last_error("HTTP 500\nInternal Server Error");
  EXPECT_EQ(FormatTask(task, kNow),
            "task_id            welcome-42\n"
            "queue              emails\n"
            "state              DEAD\n"
            "attempts           5 of 5\n"
            "due_time           2027-01-15T08:01:30.123Z (in 1m30s)\n"
            "create_time        2027-01-15T07:59:50.000Z (10s ago)\n"
            "finish_time        2027-01-15T07:00:00.000Z (1h ago)\n"
            "retry_policy       max_attempts 5, backoff 1s doubling to 5m\n"
            "payload_size       11 bytes\n"
            "target             http POST https://example.com/hook\n"
            "dispatch_deadline  10s\n"
            "last_error         HTTP 500\\nInternal Server Error\n");

  v1::Task grpc = ScheduledTask();
  grpc.set_state(v1::TASK_STATE_LEASED);
  *grpc.mutable_lease_expire_time() = ToProtoTimestamp(kNow + absl::Seconds(30));
  grpc.mutable_grpc_target()->set_address("billing:443");
  grpc.mutable_grpc_target()->set_method("/billing.v1.Billing/Charge");
  grpc.mutable_grpc_target()->set_tls(true);
  const std::string text = FormatTask(grpc, kNow);
  EXPECT_THAT(text, HasSubstr("\nlease_expire_time  2027-01-15T08:00:30.000Z (in 30s)\n"));
  EXPECT_THAT(text, HasSubstr("\ntarget             grpc /billing.v1.Billing/Charge at "
                              "billing:443 (TLS)\n"));
}

TEST(OutputTest, ScheduledAndExtended) {
  v1::ScheduleResponse scheduled;
  scheduled.set_task_id("01M8GZB7W5SB0FKRYVV8A3MZR9");
  *scheduled.mutable_due_time() = ToProtoTimestamp(kNow + absl::Hours(2));
  EXPECT_EQ(FormatScheduled(scheduled, kNow),
            "task_id   01M8GZB7W5SB0FKRYVV8A3MZR9\n"
            "due_time  2027-01-15T10:00:00.000Z (in 2h)\n");
  v1::ExtendLeaseResponse extended;
  *extended.mutable_lease_expire_time() = ToProtoTimestamp(kNow + absl::Minutes(10));
  EXPECT_EQ(FormatExtended("t1", extended, kNow),
            "task_id            t1\n"
            "lease_expire_time  2027-01-15T08:10:00.000Z (in 10m)\n");
}

// Leased tasks: token, headers sorted by key, payload as text or escaped bytes.
TEST(OutputTest, LeasedTasks) {
  const v1::LeaseResponse response = FromText<v1::LeaseResponse>(R"pb(
    tasks {
      task_id: "t1"
      queue: "emails"
      payload: "hello, hourglass"
      headers { key: "z" value: "last" }
      headers { key: "a" value: "first" }
      attempt: 1
      due_time { seconds: 1799999999 }
      lease_token: "tok-1"
      lease_expire_time { seconds: 1800000030 }
    }
    tasks {
      task_id: "t2"
      queue: "emails"
      payload: "\x00\xff\xc3\xa9"
      attempt: 3
      due_time { seconds: 1800000000 }
      lease_token: "tok-2"
    }
  )pb");
  EXPECT_EQ(FormatLeasedTasks(response, kNow),
            "task_id            t1\n"
            "queue              emails\n"
            "attempt            1\n"
            "due_time           2027-01-15T07:59:59.000Z (1s ago)\n"
            "lease_token        tok-1\n"
            "lease_expire_time  2027-01-15T08:00:30.000Z (in 30s)\n"
            "header             a=first\n"
            "header             z=last\n"
            "payload_size       16 bytes\n"
            "payload            hello, hourglass\n"
            "\n"
            "task_id       t2\n"
            "queue         emails\n"
            "attempt       3\n"
            "due_time      2027-01-15T08:00:00.000Z (now)\n"
            "lease_token   tok-2\n"
            "payload_size  4 bytes\n"
            "payload       \\x00\\xff\xc3\xa9\n");
  EXPECT_EQ(FormatLeasedTasks(v1::LeaseResponse(), kNow), "no task ready\n");
}

// Columns aligned on the widest cell, no trailing spaces, "-" for what is missing.
TEST(OutputTest, TaskTable) {
  v1::ListTasksResponse response;
  v1::Task* first = response.add_tasks();
  *first = ScheduledTask();
  v1::Task* second = response.add_tasks();
  second->set_task_id("t2");
  second->set_queue("q");
  second->set_state(v1::TASK_STATE_DEAD);
  second->set_attempts(12);
  second->mutable_retry_policy()->set_max_attempts(12);
  *second->mutable_due_time() = ToProtoTimestamp(kNow);
  second->set_last_error("lease expired");
  EXPECT_EQ(FormatTaskTable(response.tasks()),
            "TASK_ID     QUEUE   STATE      ATTEMPTS  DUE_TIME                  LAST_ERROR\n"
            "welcome-42  emails  SCHEDULED  0/5       2027-01-15T08:01:30.123Z  -\n"
            "t2          q       DEAD       12/12     2027-01-15T08:00:00.000Z  lease expired\n");
  EXPECT_EQ(FormatTaskTable(v1::ListTasksResponse().tasks()), "no tasks\n");
}

// Printable UTF-8 stays; control characters, backslashes and invalid UTF-8 (overlong forms,
// surrogates, truncated sequences, code points above U+10FFFF) are escaped.
TEST(OutputTest, EscapeForTerminal) {
  EXPECT_EQ(EscapeForTerminal("plain {\"json\": 1}"), "plain {\"json\": 1}");
  EXPECT_EQ(EscapeForTerminal("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(EscapeForTerminal("a\nb\tc\rd\\e"), "a\\nb\\tc\\rd\\\\e");
  EXPECT_EQ(EscapeForTerminal(std::string("\x00\x1b[31m\x7f", 7)), "\\x00\\x1b[31m\\x7f");
  EXPECT_EQ(EscapeForTerminal("\xc0\xaf"), "\\xc0\\xaf");                    // Overlong "/".
  EXPECT_EQ(EscapeForTerminal("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // A surrogate.
  EXPECT_EQ(EscapeForTerminal("\xe2\x82"), "\\xe2\\x82");                    // Truncated.
  EXPECT_EQ(EscapeForTerminal("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // > U+10FFFF.
}

// JSON: one line, proto field names, defaults present, enums by name, bytes in base64; and it
// parses back into the same message.
TEST(OutputTest, JsonIsTheMessage) {
  const v1::Task task = ScheduledTask();
  v1::GetStatusResponse response;
  *response.mutable_task() = task;
  const std::string json = ToJson(response);
  EXPECT_EQ(json.back(), '\n');
  EXPECT_EQ(json.find('\n'), json.size() - 1);
  EXPECT_THAT(json, HasSubstr("\"task_id\":\"welcome-42\""));
  EXPECT_THAT(json, HasSubstr("\"state\":\"TASK_STATE_SCHEDULED\""));
  EXPECT_THAT(json, HasSubstr("\"attempts\":0"));
  EXPECT_THAT(json, HasSubstr("\"last_error\":\"\""));
  EXPECT_THAT(json, HasSubstr("\"due_time\":\"2027-01-15T08:01:30.123456789Z\""));
  EXPECT_THAT(json, Not(HasSubstr("taskId")));
  v1::GetStatusResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, response));

  v1::LeaseResponse lease;
  lease.add_tasks()->set_payload(std::string("\x00\xff", 2));
  EXPECT_THAT(ToJson(lease), HasSubstr("\"payload\":\"AP8=\""));
  EXPECT_EQ(ToJson(v1::LeaseResponse()), "{\"tasks\":[]}\n");
  EXPECT_EQ(ToJson(v1::AckResponse()), "{}\n");
}

// Every gRPC code has its exit code; the classes are the documented ones.
TEST(ExitCodeTest, EveryCodeMapsToItsClass) {
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OK), 0);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::NOT_FOUND), 3);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INVALID_ARGUMENT), 4);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OUT_OF_RANGE), 4);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::ALREADY_EXISTS), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::FAILED_PRECONDITION), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::ABORTED), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAVAILABLE), 6);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::DEADLINE_EXCEEDED), 6);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNIMPLEMENTED), 7);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAUTHENTICATED), 8);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::PERMISSION_DENIED), 9);
  for (grpc::StatusCode code : {grpc::StatusCode::CANCELLED, grpc::StatusCode::UNKNOWN,
                                grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::INTERNAL,
                                grpc::StatusCode::DATA_LOSS}) {
    EXPECT_EQ(ExitCodeFor(code), 1) << StatusCodeName(code);
  }
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::NOT_FOUND), "NOT_FOUND");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::FAILED_PRECONDITION), "FAILED_PRECONDITION");
  // A number that no gRPC code has, within the range of grpc::StatusCode (-32..31: a cast of a
  // value outside it, like 99, is undefined behaviour, which UBSan reports).
  EXPECT_EQ(StatusCodeName(static_cast<grpc::StatusCode>(20)), "CODE_20");
}

// The overview names every command and global flag and every exit code; each command's help
// names every flag it accepts (with its Abseil help text), its arguments, and an example.
TEST(HelpTest, CoversEveryCommandFlagAndExitCode) {
  const std::string overview = OverviewHelp();
  for (Command command : AllCommands()) {
    EXPECT_THAT(overview, HasSubstr(absl::StrCat("\n  ", CommandName(command), " ")));
    const std::string help = CommandHelp(command);
    EXPECT_THAT(
        help, HasSubstr(absl::StrCat("Usage: hourglassctl [global flags] ", CommandName(command))));
    EXPECT_THAT(help, HasSubstr(absl::StrCat("\n  hourglassctl ", CommandName(command))))
        << "no example for " << CommandName(command);
    for (const std::string& flag : CommandFlags(command)) {
      EXPECT_THAT(help, HasSubstr(absl::StrCat("\n  --", flag)))
          << CommandName(command) << " --" << flag;
    }
    for (const std::string& flag : GlobalFlags()) {
      EXPECT_THAT(help, HasSubstr(absl::StrCat("\n  --", flag)));
    }
    EXPECT_THAT(help, HasSubstr(ExitCodesHelp()));
  }
  for (int code = 0; code <= 7; ++code) {
    EXPECT_THAT(overview, HasSubstr(absl::StrCat("\n  ", code, "  ")));
  }
  EXPECT_THAT(CommandHelp(Command::kSchedule),
              HasSubstr("  --delay=D               due this long from now (0s: now)\n"));
  EXPECT_THAT(CommandHelp(Command::kLease), HasSubstr("(default 5s)"));
  // A flag that means something else per command is explained per command.
  EXPECT_THAT(CommandHelp(Command::kExtend),
              HasSubstr("  --lease=D               the new lease's length from now, 1s to 12h "
                        "(required)\n"));
  EXPECT_THAT(CommandHelp(Command::kLease),
              HasSubstr("how long the consumer holds the tasks, 1s to 12h (default 30s)\n"));
  EXPECT_THAT(CommandHelp(Command::kList),
              HasSubstr("only tasks of this queue (default: every queue)\n"));
  EXPECT_THAT(CommandHelp(Command::kAck), HasSubstr("\n  TOKEN "));
  // No line of help is wider than 100 columns.
  for (Command command : AllCommands()) {
    const std::string help = CommandHelp(command);
    size_t start = 0;
    while (start < help.size()) {
      const size_t end = help.find('\n', start);
      EXPECT_LE(end - start, 100u) << help.substr(start, end - start);
      start = end + 1;
    }
  }
}

}  // namespace
}  // namespace hourglass::ctl
