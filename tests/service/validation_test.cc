// Tests of service/validation.h: every limit at its boundary (the last valid value and the first
// invalid one), the defaults filled in, the exact text of the messages clients see, and the
// protobuf <-> absl conversions. Pure functions: no server, no threads.
#include "service/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace hourglass {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

google::protobuf::Duration DurationProto(int64_t seconds, int32_t nanos = 0) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  d.set_nanos(nanos);
  return d;
}

google::protobuf::Timestamp TimestampProto(int64_t seconds, int32_t nanos = 0) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  t.set_nanos(nanos);
  return t;
}

// The InvalidArgument message of `status`, or a marker that makes the comparison fail loudly.
template <typename T>
std::string InvalidMessage(const absl::StatusOr<T>& result) {
  if (result.ok()) return "<OK>";
  if (result.status().code() != absl::StatusCode::kInvalidArgument) {
    return "<not INVALID_ARGUMENT: " + result.status().ToString() + ">";
  }
  return std::string(result.status().message());
}
std::string InvalidMessage(const absl::Status& status) {
  if (status.ok()) return "<OK>";
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return "<not INVALID_ARGUMENT: " + status.ToString() + ">";
  }
  return std::string(status.message());
}

// A short description of a long error text (its size and last bytes), for readable failures.
std::string Summary(const std::string& text) {
  const size_t tail = std::min<size_t>(text.size(), 8);
  return absl::StrCat(text.size(), " bytes ending \"",
                      absl::CHexEscape(text.substr(text.size() - tail)), "\"");
}

// The error kept by ValidateNack for `error`.
std::string KeptError(const std::string& error) {
  v1::NackRequest request;
  request.set_task_id("t");
  request.set_error(error);
  absl::StatusOr<NackParams> params = ValidateNack(request, Limits());
  EXPECT_TRUE(params.ok()) << params.status();
  return params.ok() ? params->error : "";
}

v1::ScheduleRequest MinimalSchedule() {
  v1::ScheduleRequest request;
  request.set_queue("q");
  return request;
}

// --- Queue names -------------------------------------------------------------------------------

// An empty queue name means "default"; 200 bytes is the longest name, 201 is refused.
TEST(ValidateQueueTest, EmptyIsDefaultAndLengthLimitIs200) {
  EXPECT_EQ(ValidateQueue("").value(), "default");
  EXPECT_EQ(ValidateQueue(std::string(200, 'a')).value(), std::string(200, 'a'));
  EXPECT_EQ(InvalidMessage(ValidateQueue(std::string(201, 'a'))),
            "queue must be at most 200 bytes, got 201");
}

// Every allowed character passes; anything else is refused with the pattern and the name shown.
TEST(ValidateQueueTest, AllowsOnlyLettersDigitsDotUnderscoreDash) {
  const std::string all = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
  EXPECT_EQ(ValidateQueue(all).value(), all);
  EXPECT_EQ(InvalidMessage(ValidateQueue("a b")),
            "queue must match [A-Za-z0-9._-]{1,200}, got \"a b\"");
  EXPECT_EQ(InvalidMessage(ValidateQueue("a\nb")),
            "queue must match [A-Za-z0-9._-]{1,200}, got \"a\\nb\"");
  for (const char* bad : {"a/b", "a:b", "é", "a*", "q\x01"}) {
    EXPECT_THAT(InvalidMessage(ValidateQueue(bad)), StartsWith("queue must match")) << bad;
  }
}

// --- Task ids ----------------------------------------------------------------------------------

// A task id is 1 to 200 bytes of printable ASCII without spaces.
TEST(ValidateTaskIdTest, LengthAndCharacterLimits) {
  EXPECT_TRUE(ValidateTaskId("a").ok());
  EXPECT_TRUE(ValidateTaskId(std::string(200, 'x')).ok());
  EXPECT_TRUE(ValidateTaskId("!~{}[]<>\"'`#$%&()*+,-./:;=?@\\^_|").ok());
  EXPECT_EQ(InvalidMessage(ValidateTaskId("")), "task_id must not be empty");
  EXPECT_EQ(InvalidMessage(ValidateTaskId(std::string(201, 'x'))),
            "task_id must be at most 200 bytes, got 201");
  EXPECT_EQ(InvalidMessage(ValidateTaskId("a b")),
            "task_id must be printable ASCII without spaces (bytes 0x21 to 0x7e), got a byte 0x20");
  EXPECT_EQ(InvalidMessage(ValidateTaskId(std::string("a\x01", 2))),
            "task_id must be printable ASCII without spaces (bytes 0x21 to 0x7e), got a byte 0x01");
  EXPECT_EQ(InvalidMessage(ValidateTaskId(std::string("a\0b", 3))),
            "task_id must be printable ASCII without spaces (bytes 0x21 to 0x7e), got a byte 0x00");
  EXPECT_EQ(InvalidMessage(ValidateTaskId("a\x7f")),
            "task_id must be printable ASCII without spaces (bytes 0x21 to 0x7e), got a byte 0x7f");
  EXPECT_EQ(InvalidMessage(ValidateTaskId("\xc3\xa9")),
            "task_id must be printable ASCII without spaces (bytes 0x21 to 0x7e), got a byte 0xc3");
}

// --- Schedule ----------------------------------------------------------------------------------

// A minimal request: queue as given, no id (the store makes one), due now, the default policy.
TEST(ValidateScheduleTest, MinimalRequestTakesDefaults) {
  v1::ScheduleRequest request;
  absl::StatusOr<NewTask> task = ValidateSchedule(request, Limits(), kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->queue, "default");
  EXPECT_EQ(task->task_id, "");
  EXPECT_EQ(task->payload, "");
  EXPECT_TRUE(task->headers.empty());
  EXPECT_EQ(task->due_time, kNow);
  EXPECT_EQ(task->retry_policy.max_attempts, 5);
  EXPECT_EQ(task->retry_policy.min_backoff, absl::Seconds(1));
  EXPECT_EQ(task->retry_policy.max_backoff, absl::Seconds(300));
}

// Every field is carried over; headers come out sorted by key.
TEST(ValidateScheduleTest, CarriesFieldsAndSortsHeaders) {
  v1::ScheduleRequest request = MinimalSchedule();
  request.set_task_id("order-42");
  request.set_payload(std::string("p\0q", 3));
  (*request.mutable_headers())["zeta"] = "1";
  (*request.mutable_headers())["alpha"] = "2";
  (*request.mutable_headers())["mid"] = "";
  *request.mutable_delay() = DurationProto(90, 5);
  absl::StatusOr<NewTask> task = ValidateSchedule(request, Limits(), kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->queue, "q");
  EXPECT_EQ(task->task_id, "order-42");
  EXPECT_EQ(task->payload, std::string("p\0q", 3));
  EXPECT_EQ(task->headers, (Headers{{"alpha", "2"}, {"mid", ""}, {"zeta", "1"}}));
  EXPECT_EQ(task->due_time, kNow + absl::Seconds(90) + absl::Nanoseconds(5));
}

// The queue and task id of a Schedule are checked like everywhere else.
TEST(ValidateScheduleTest, ChecksQueueAndTaskId) {
  v1::ScheduleRequest request = MinimalSchedule();
  request.set_queue(std::string(201, 'q'));
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "queue must be at most 200 bytes, got 201");
  request = MinimalSchedule();
  request.set_task_id(std::string(201, 'x'));
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "task_id must be at most 200 bytes, got 201");
  request.set_task_id(std::string(200, 'x'));
  EXPECT_TRUE(ValidateSchedule(request, Limits(), kNow).ok());
}

// The payload may be exactly --max_payload_bytes long, not one byte more.
TEST(ValidateScheduleTest, PayloadLimitIsInclusive) {
  Limits limits;
  limits.max_payload_bytes = 16;
  v1::ScheduleRequest request = MinimalSchedule();
  request.set_payload(std::string(16, 'p'));
  EXPECT_TRUE(ValidateSchedule(request, limits, kNow).ok());
  request.set_payload(std::string(17, 'p'));
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)),
            "payload must be at most 16 bytes (--max_payload_bytes), got 17");

  // The default limit is 1 MiB.
  request.set_payload(std::string(1 << 20, 'p'));
  EXPECT_TRUE(ValidateSchedule(request, Limits(), kNow).ok());
  request.set_payload(std::string((1 << 20) + 1, 'p'));
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "payload must be at most 1048576 bytes (--max_payload_bytes), got 1048577");
}

// At most 64 headers; keys 1 to 256 bytes; values at most 4096 bytes.
TEST(ValidateScheduleTest, HeaderLimits) {
  v1::ScheduleRequest request = MinimalSchedule();
  for (int i = 0; i < 64; ++i) (*request.mutable_headers())[absl::StrCat("k", i)] = "v";
  EXPECT_TRUE(ValidateSchedule(request, Limits(), kNow).ok());
  (*request.mutable_headers())["k64"] = "v";
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "headers must have at most 64 entries, got 65");

  request = MinimalSchedule();
  (*request.mutable_headers())[std::string(256, 'k')] = std::string(4096, 'v');
  EXPECT_TRUE(ValidateSchedule(request, Limits(), kNow).ok());

  request = MinimalSchedule();
  (*request.mutable_headers())[""] = "v";
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "headers keys must be 1 to 256 bytes, got one of 0");

  request = MinimalSchedule();
  (*request.mutable_headers())[std::string(257, 'k')] = "v";
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "headers keys must be 1 to 256 bytes, got one of 257");

  request = MinimalSchedule();
  (*request.mutable_headers())["trace"] = std::string(4097, 'v');
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "headers[\"trace\"] must be at most 4096 bytes, got 4097");
}

// A delay of 0 is due now; --max_delay is allowed, one nanosecond more is not; negative never.
TEST(ValidateScheduleTest, DelayBoundaries) {
  Limits limits;
  limits.max_delay = absl::Hours(10);
  v1::ScheduleRequest request = MinimalSchedule();

  *request.mutable_delay() = DurationProto(0);
  EXPECT_EQ(ValidateSchedule(request, limits, kNow)->due_time, kNow);

  *request.mutable_delay() = DurationProto(36000);
  EXPECT_EQ(ValidateSchedule(request, limits, kNow)->due_time, kNow + absl::Hours(10));

  *request.mutable_delay() = DurationProto(36000, 1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)),
            "delay must be <= 10h, got 10h0.000000001s (the limit is the server's --max_delay)");

  *request.mutable_delay() = DurationProto(-5);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)), "delay must be >= 0, got -5s");

  *request.mutable_delay() = DurationProto(0, -1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)),
            "delay must be >= 0, got -1ns");
  // Not a Duration: no word of --max_delay either.
  *request.mutable_delay() = DurationProto(-5, 5);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)),
            "delay is not a valid google.protobuf.Duration (seconds -5, nanos 5)");

  // The default --max_delay is 730 days.
  *request.mutable_delay() = DurationProto(730 * 86400);
  EXPECT_TRUE(ValidateSchedule(request, Limits(), kNow).ok());
  *request.mutable_delay() = DurationProto(730 * 86400, 1);
  EXPECT_THAT(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
              StartsWith("delay must be <= 17520h, got "));
}

// Durations outside google.protobuf.Duration's documented range, or with nanos of the wrong sign,
// are refused naming the field.
TEST(ValidateScheduleTest, MalformedDelayIsRefused) {
  v1::ScheduleRequest request = MinimalSchedule();
  *request.mutable_delay() = DurationProto(315576000001);
  EXPECT_THAT(
      InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
      StartsWith("delay is not a valid google.protobuf.Duration (seconds 315576000001, nanos 0)"));
  *request.mutable_delay() = DurationProto(1, -1);
  EXPECT_THAT(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
              StartsWith("delay is not a valid google.protobuf.Duration (seconds 1, nanos -1)"));
  *request.mutable_delay() = DurationProto(0, 1000000000);
  EXPECT_THAT(
      InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
      StartsWith("delay is not a valid google.protobuf.Duration (seconds 0, nanos 1000000000)"));
}

// `at` in the past means now; at most --max_delay ahead; a malformed Timestamp is refused.
TEST(ValidateScheduleTest, AtBoundaries) {
  Limits limits;
  limits.max_delay = absl::Hours(10);
  v1::ScheduleRequest request = MinimalSchedule();

  *request.mutable_at() = TimestampProto(1'800'000'000 - 3600);
  EXPECT_EQ(ValidateSchedule(request, limits, kNow)->due_time, kNow);

  *request.mutable_at() = TimestampProto(0);
  EXPECT_EQ(ValidateSchedule(request, limits, kNow)->due_time, kNow);

  *request.mutable_at() = TimestampProto(1'800'000'000 + 60, 250);
  EXPECT_EQ(ValidateSchedule(request, limits, kNow)->due_time,
            kNow + absl::Seconds(60) + absl::Nanoseconds(250));

  *request.mutable_at() = TimestampProto(1'800'000'000 + 36000);
  EXPECT_EQ(ValidateSchedule(request, limits, kNow)->due_time, kNow + absl::Hours(10));

  *request.mutable_at() = TimestampProto(1'800'000'000 + 36000, 1);
  EXPECT_EQ(
      InvalidMessage(ValidateSchedule(request, limits, kNow)),
      "at must be at most 10h (--max_delay) from now, got 2027-01-15T18:00:00.000000001+00:00, "
      "10h0.000000001s from now");

  *request.mutable_at() = TimestampProto(253402300800);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)),
            "at is not a valid google.protobuf.Timestamp (seconds 253402300800, nanos 0)");
  *request.mutable_at() = TimestampProto(1'800'000'000, -1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, limits, kNow)),
            "at is not a valid google.protobuf.Timestamp (seconds 1800000000, nanos -1)");
}

// Unset retry fields take the defaults: 5 attempts, 1 s, 300 s (or min_backoff when larger).
TEST(ValidateScheduleTest, RetryPolicyDefaults) {
  v1::ScheduleRequest request = MinimalSchedule();
  request.mutable_retry_policy();  // present, every field unset
  absl::StatusOr<NewTask> task = ValidateSchedule(request, Limits(), kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->retry_policy.max_attempts, 5);
  EXPECT_EQ(task->retry_policy.min_backoff, absl::Seconds(1));
  EXPECT_EQ(task->retry_policy.max_backoff, absl::Seconds(300));

  *request.mutable_retry_policy()->mutable_min_backoff() = DurationProto(600);
  task = ValidateSchedule(request, Limits(), kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->retry_policy.min_backoff, absl::Seconds(600));
  EXPECT_EQ(task->retry_policy.max_backoff, absl::Seconds(600));

  request = MinimalSchedule();
  request.mutable_retry_policy()->set_max_attempts(7);
  *request.mutable_retry_policy()->mutable_min_backoff() = DurationProto(0);
  *request.mutable_retry_policy()->mutable_max_backoff() = DurationProto(0, 500000000);
  task = ValidateSchedule(request, Limits(), kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->retry_policy.max_attempts, 7);
  EXPECT_EQ(task->retry_policy.min_backoff, absl::ZeroDuration());
  EXPECT_EQ(task->retry_policy.max_backoff, absl::Milliseconds(500));
}

// max_attempts is 0 (default) to 1000; backoffs are 0 to 30 days with max >= min.
TEST(ValidateScheduleTest, RetryPolicyLimits) {
  v1::ScheduleRequest request = MinimalSchedule();
  request.mutable_retry_policy()->set_max_attempts(1000);
  EXPECT_EQ(ValidateSchedule(request, Limits(), kNow)->retry_policy.max_attempts, 1000);
  request.mutable_retry_policy()->set_max_attempts(1001);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.max_attempts must be between 0 (the default, 5) and 1000, got 1001");
  request.mutable_retry_policy()->set_max_attempts(-1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.max_attempts must be between 0 (the default, 5) and 1000, got -1");

  request = MinimalSchedule();
  *request.mutable_retry_policy()->mutable_min_backoff() = DurationProto(-1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.min_backoff must be >= 0, got -1s");

  request = MinimalSchedule();
  *request.mutable_retry_policy()->mutable_max_backoff() = DurationProto(30 * 86400);
  EXPECT_EQ(ValidateSchedule(request, Limits(), kNow)->retry_policy.max_backoff, absl::Hours(720));
  *request.mutable_retry_policy()->mutable_max_backoff() = DurationProto(30 * 86400 + 1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.max_backoff must be <= 720h, got 720h1s");

  request = MinimalSchedule();
  *request.mutable_retry_policy()->mutable_min_backoff() = DurationProto(2);
  *request.mutable_retry_policy()->mutable_max_backoff() = DurationProto(1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.max_backoff (1s) must be >= retry_policy.min_backoff (2s)");

  // An unset min_backoff is 1 s, so a smaller max_backoff is refused too.
  request = MinimalSchedule();
  *request.mutable_retry_policy()->mutable_max_backoff() = DurationProto(0, 500000000);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.max_backoff (500ms) must be >= retry_policy.min_backoff (1s)");

  request = MinimalSchedule();
  *request.mutable_retry_policy()->mutable_min_backoff() = DurationProto(5, -1);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits(), kNow)),
            "retry_policy.min_backoff is not a valid google.protobuf.Duration (seconds 5, nanos "
            "-1)");
}

// --- Reschedule --------------------------------------------------------------------------------

// Reschedule needs a task id and takes the same `when` as Schedule.
TEST(ValidateRescheduleTest, TaskIdAndWhen) {
  v1::RescheduleRequest request;
  EXPECT_EQ(InvalidMessage(ValidateReschedule(request, Limits(), kNow)),
            "task_id must not be empty");
  request.set_task_id("t");
  EXPECT_EQ(ValidateReschedule(request, Limits(), kNow).value(), kNow);
  *request.mutable_delay() = DurationProto(30);
  EXPECT_EQ(ValidateReschedule(request, Limits(), kNow).value(), kNow + absl::Seconds(30));
  *request.mutable_at() = TimestampProto(1);
  EXPECT_EQ(ValidateReschedule(request, Limits(), kNow).value(), kNow);
  *request.mutable_delay() = DurationProto(-1);
  EXPECT_THAT(InvalidMessage(ValidateReschedule(request, Limits(), kNow)),
              StartsWith("delay must be >= 0, got -1s"));
}

// --- Lease -------------------------------------------------------------------------------------

// max_tasks 0 means 1; unset lease_duration means 30 s; unset wait means 0.
TEST(ValidateLeaseTest, Defaults) {
  v1::LeaseRequest request;
  absl::StatusOr<LeaseParams> params = ValidateLease(request);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->queue, "default");
  EXPECT_EQ(params->max_tasks, 1);
  EXPECT_EQ(params->lease_duration, absl::Seconds(30));
  EXPECT_EQ(params->wait, absl::ZeroDuration());
}

// max_tasks 0..1000, lease_duration 1 s..12 h, wait 0..60 s, each inclusive.
TEST(ValidateLeaseTest, Boundaries) {
  v1::LeaseRequest request;
  request.set_queue("q");
  request.set_max_tasks(1000);
  *request.mutable_lease_duration() = DurationProto(1);
  *request.mutable_wait() = DurationProto(60);
  absl::StatusOr<LeaseParams> params = ValidateLease(request);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->queue, "q");
  EXPECT_EQ(params->max_tasks, 1000);
  EXPECT_EQ(params->lease_duration, absl::Seconds(1));
  EXPECT_EQ(params->wait, absl::Seconds(60));

  *request.mutable_lease_duration() = DurationProto(12 * 3600);
  EXPECT_EQ(ValidateLease(request)->lease_duration, absl::Hours(12));

  v1::LeaseRequest bad = request;
  bad.set_max_tasks(1001);
  EXPECT_EQ(InvalidMessage(ValidateLease(bad)),
            "max_tasks must be between 0 (meaning 1) and 1000, got 1001");
  bad.set_max_tasks(-1);
  EXPECT_EQ(InvalidMessage(ValidateLease(bad)),
            "max_tasks must be between 0 (meaning 1) and 1000, got -1");

  bad = request;
  *bad.mutable_lease_duration() = DurationProto(0, 999000000);
  EXPECT_EQ(InvalidMessage(ValidateLease(bad)), "lease_duration must be >= 1s, got 999ms");
  *bad.mutable_lease_duration() = DurationProto(12 * 3600 + 1);
  EXPECT_EQ(InvalidMessage(ValidateLease(bad)), "lease_duration must be <= 12h, got 12h1s");

  bad = request;
  *bad.mutable_wait() = DurationProto(61);
  EXPECT_EQ(InvalidMessage(ValidateLease(bad)), "wait must be <= 1m, got 1m1s");
  *bad.mutable_wait() = DurationProto(-1);
  EXPECT_EQ(InvalidMessage(ValidateLease(bad)), "wait must be >= 0, got -1s");

  bad = request;
  bad.set_queue("no spaces");
  EXPECT_THAT(InvalidMessage(ValidateLease(bad)), StartsWith("queue must match"));
}

// --- Nack and ExtendLease ----------------------------------------------------------------------

// retry_delay is optional, >= 0 and at most --max_delay.
TEST(ValidateNackTest, RetryDelay) {
  Limits limits;
  limits.max_delay = absl::Hours(1);
  v1::NackRequest request;
  EXPECT_EQ(InvalidMessage(ValidateNack(request, limits)), "task_id must not be empty");
  request.set_task_id("t");
  EXPECT_EQ(ValidateNack(request, limits)->retry_delay, std::nullopt);

  *request.mutable_retry_delay() = DurationProto(0);
  EXPECT_EQ(ValidateNack(request, limits)->retry_delay, absl::ZeroDuration());
  *request.mutable_retry_delay() = DurationProto(3600);
  EXPECT_EQ(ValidateNack(request, limits)->retry_delay, absl::Hours(1));
  *request.mutable_retry_delay() = DurationProto(3600, 1);
  EXPECT_EQ(InvalidMessage(ValidateNack(request, limits)),
            "retry_delay must be <= 1h, got 1h0.000000001s");
  *request.mutable_retry_delay() = DurationProto(-1);
  EXPECT_EQ(InvalidMessage(ValidateNack(request, limits)), "retry_delay must be >= 0, got -1s");
}

// The error is kept whole up to 4096 bytes, and cut there otherwise.
TEST(ValidateNackTest, ErrorIsCutAt4096Bytes) {
  for (const std::string& error : {std::string(), std::string(4096, 'e')}) {
    const std::string kept = KeptError(error);
    EXPECT_EQ(Summary(kept), Summary(error));
    EXPECT_TRUE(kept == error);
  }
  for (size_t size : {4097, 100000}) {
    const std::string kept = KeptError(std::string(size, 'e'));
    EXPECT_EQ(Summary(kept), Summary(std::string(4096, 'e'))) << size;
    EXPECT_TRUE(kept == std::string(4096, 'e')) << size;
  }
}

// A multi-byte UTF-8 character that the 4096-byte limit would split is dropped whole.
TEST(ValidateNackTest, ErrorCutNeverSplitsAUtf8Character) {
  // "é" is 2 bytes, "€" 3 bytes, U+1F600 4 bytes; each straddles byte 4096.
  const struct {
    std::string error;
    std::string kept;
  } cases[] = {
      {std::string(4095, 'a') + "\xc3\xa9" + "tail", std::string(4095, 'a')},
      {std::string(4094, 'a') + "\xe2\x82\xac" + "tail", std::string(4094, 'a')},
      {std::string(4095, 'a') + "\xe2\x82\xac" + "tail", std::string(4095, 'a')},
      {std::string(4093, 'a') + "\xf0\x9f\x98\x80" + "tail", std::string(4093, 'a')},
      {std::string(4094, 'a') + "\xf0\x9f\x98\x80" + "tail", std::string(4094, 'a')},
  };
  for (const auto& c : cases) {
    const std::string kept = KeptError(c.error);
    EXPECT_EQ(Summary(kept), Summary(c.kept)) << Summary(c.error);
    EXPECT_TRUE(kept == c.kept) << Summary(c.error);
  }
}

// A character that ends exactly at byte 4096 is complete: the cut keeps it.
TEST(ValidateNackTest, ErrorCutKeepsACharacterEndingAtTheLimit) {
  for (const std::string& character :
       {std::string("\xc3\xa9"), std::string("\xe2\x82\xac"), std::string("\xf0\x9f\x98\x80")}) {
    const std::string expected = std::string(4096 - character.size(), 'a') + character;
    const std::string kept = KeptError(expected + "tail");
    EXPECT_EQ(Summary(kept), Summary(expected));
    EXPECT_TRUE(kept == expected) << Summary(expected);
  }
}

// ExtendLease: a task id, and a lease_duration of 1 s to 12 h (unset: 30 s).
TEST(ValidateExtendLeaseTest, LeaseDuration) {
  v1::ExtendLeaseRequest request;
  EXPECT_EQ(InvalidMessage(ValidateExtendLease(request)), "task_id must not be empty");
  request.set_task_id("t");
  EXPECT_EQ(ValidateExtendLease(request).value(), absl::Seconds(30));
  *request.mutable_lease_duration() = DurationProto(1);
  EXPECT_EQ(ValidateExtendLease(request).value(), absl::Seconds(1));
  *request.mutable_lease_duration() = DurationProto(0, 999999999);
  EXPECT_EQ(InvalidMessage(ValidateExtendLease(request)),
            "lease_duration must be >= 1s, got 999.999999ms");
  *request.mutable_lease_duration() = DurationProto(43200);
  EXPECT_EQ(ValidateExtendLease(request).value(), absl::Hours(12));
  *request.mutable_lease_duration() = DurationProto(43201);
  EXPECT_EQ(InvalidMessage(ValidateExtendLease(request)),
            "lease_duration must be <= 12h, got 12h1s");
}

// --- Conversions -------------------------------------------------------------------------------

// Durations survive absl -> proto -> absl exactly, negative ones too (seconds and nanos then share
// the sign, as google.protobuf.Duration requires).
TEST(ConversionTest, DurationRoundTrip) {
  struct Case {
    absl::Duration d;
    int64_t seconds;
    int32_t nanos;
  };
  const Case cases[] = {
      {absl::ZeroDuration(), 0, 0},
      {absl::Nanoseconds(1), 0, 1},
      {absl::Nanoseconds(-1), 0, -1},
      {absl::Milliseconds(1500), 1, 500000000},
      {absl::Milliseconds(-1500), -1, -500000000},
      {absl::Seconds(-5), -5, 0},
      {absl::Seconds(315576000000) + absl::Nanoseconds(999999999), 315576000000, 999999999},
      {-absl::Seconds(315576000000) - absl::Nanoseconds(999999999), -315576000000, -999999999},
  };
  for (const Case& c : cases) {
    const google::protobuf::Duration proto = ToProto(c.d);
    EXPECT_EQ(proto.seconds(), c.seconds) << c.d;
    EXPECT_EQ(proto.nanos(), c.nanos) << c.d;
    absl::StatusOr<absl::Duration> back = FromProto(proto, "d");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, c.d);
  }
}

// Out-of-range Durations are refused naming the field.
TEST(ConversionTest, DurationRange) {
  EXPECT_TRUE(FromProto(DurationProto(315576000000), "d").ok());
  EXPECT_TRUE(FromProto(DurationProto(-315576000000), "d").ok());
  EXPECT_EQ(InvalidMessage(FromProto(DurationProto(315576000001), "some.field")),
            "some.field is not a valid google.protobuf.Duration (seconds 315576000001, nanos 0)");
  EXPECT_EQ(InvalidMessage(FromProto(DurationProto(-315576000001), "d")),
            "d is not a valid google.protobuf.Duration (seconds -315576000001, nanos 0)");
  EXPECT_FALSE(FromProto(DurationProto(0, 1000000000), "d").ok());
  EXPECT_FALSE(FromProto(DurationProto(0, -1000000000), "d").ok());
  EXPECT_FALSE(FromProto(DurationProto(1, -1), "d").ok());
  EXPECT_FALSE(FromProto(DurationProto(-1, 1), "d").ok());
  EXPECT_EQ(FromProto(DurationProto(-1, -1), "d").value(),
            -absl::Seconds(1) - absl::Nanoseconds(1));
}

// Timestamps survive the round trip, before 1970 too (nanos are always >= 0 in the proto).
TEST(ConversionTest, TimestampRoundTrip) {
  struct Case {
    absl::Time t;
    int64_t seconds;
    int32_t nanos;
  };
  const Case cases[] = {
      {absl::UnixEpoch(), 0, 0},
      {absl::FromUnixSeconds(1'800'000'000) + absl::Nanoseconds(123456789), 1'800'000'000,
       123456789},
      {absl::UnixEpoch() - absl::Milliseconds(750), -1, 250000000},
      {absl::UnixEpoch() - absl::Nanoseconds(1), -1, 999999999},
      {absl::FromUnixSeconds(-62135596800), -62135596800, 0},
      {absl::FromUnixSeconds(253402300799) + absl::Nanoseconds(999999999), 253402300799, 999999999},
  };
  for (const Case& c : cases) {
    const google::protobuf::Timestamp proto = ToProto(c.t);
    EXPECT_EQ(proto.seconds(), c.seconds) << c.t;
    EXPECT_EQ(proto.nanos(), c.nanos) << c.t;
    absl::StatusOr<absl::Time> back = FromProto(proto, "t");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, c.t);
  }
}

// Timestamps outside 0001-01-01..9999-12-31 or with nanos outside [0, 1e9) are refused.
TEST(ConversionTest, TimestampRange) {
  EXPECT_EQ(InvalidMessage(FromProto(TimestampProto(-62135596801), "at")),
            "at is not a valid google.protobuf.Timestamp (seconds -62135596801, nanos 0)");
  EXPECT_EQ(InvalidMessage(FromProto(TimestampProto(253402300800), "at")),
            "at is not a valid google.protobuf.Timestamp (seconds 253402300800, nanos 0)");
  EXPECT_FALSE(FromProto(TimestampProto(0, -1), "at").ok());
  EXPECT_FALSE(FromProto(TimestampProto(0, 1000000000), "at").ok());
  EXPECT_EQ(FromProto(TimestampProto(-1, 999999999), "at").value(),
            absl::UnixEpoch() - absl::Nanoseconds(1));
}

// ---------------------------------------------------------------------------------------------
// Push targets and ListTasks.

v1::ScheduleRequest HttpRequest(const std::string& url) {
  v1::ScheduleRequest request;
  request.mutable_http_target()->set_url(url);
  return request;
}

// A valid HTTP target is carried with its sorted headers and the default dispatch deadline; a
// gRPC target with its address, method and TLS flag.
TEST(ValidatePushTargetTest, CarriesTargetsWithDefaults) {
  v1::ScheduleRequest request = HttpRequest("https://hooks.example.com:8443/orders?x=1");
  (*request.mutable_http_target()->mutable_headers())["X-B"] = "2";
  (*request.mutable_http_target()->mutable_headers())["Authorization"] = "Bearer t";
  absl::StatusOr<NewTask> task = ValidateSchedule(request, Limits{}, kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_TRUE(task->target.has_value());
  EXPECT_EQ(task->target->kind, PushTarget::Kind::kHttp);
  EXPECT_EQ(task->target->url, "https://hooks.example.com:8443/orders?x=1");
  EXPECT_EQ(task->target->http_headers, (Headers{{"Authorization", "Bearer t"}, {"X-B", "2"}}));
  EXPECT_EQ(task->target->dispatch_deadline, absl::Seconds(30));

  v1::ScheduleRequest grpc;
  grpc.mutable_grpc_target()->set_address("billing.internal:443");
  grpc.mutable_grpc_target()->set_method("/billing.v1.Invoices/Close");
  grpc.mutable_grpc_target()->set_tls(true);
  *grpc.mutable_dispatch_deadline() = DurationProto(5);
  (*grpc.mutable_headers())["trace-id"] = "abc";
  task = ValidateSchedule(grpc, Limits{}, kNow);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->target->kind, PushTarget::Kind::kGrpc);
  EXPECT_EQ(task->target->address, "billing.internal:443");
  EXPECT_EQ(task->target->method, "/billing.v1.Invoices/Close");
  EXPECT_TRUE(task->target->tls);
  EXPECT_EQ(task->target->dispatch_deadline, absl::Seconds(5));
  grpc.mutable_grpc_target()->set_address("[2001:db8::1]:50051");
  EXPECT_TRUE(ValidateSchedule(grpc, Limits{}, kNow).ok());
}

// Every malformed target is INVALID_ARGUMENT naming the field.
TEST(ValidatePushTargetTest, MalformedTargetsNameTheField) {
  const std::pair<std::string, std::string> bad_urls[] = {
      {"", "http_target.url is required"},
      {"ftp://example.com/x", "http_target.url must be an http:// or https:// URL"},
      {"example.com/x", "http_target.url"},
      {"https://", "http_target.url"},
      {"https://example.com/" + std::string(2100, 'a'), "http_target.url must be at most 2048"},
  };
  for (const auto& [url, message] : bad_urls) {
    EXPECT_THAT(InvalidMessage(ValidateSchedule(HttpRequest(url), Limits{}, kNow)),
                HasSubstr(message))
        << url;
  }
  v1::ScheduleRequest request = HttpRequest("https://example.com/");
  for (const char* reserved : {"Host", "content-length", "Hourglass-Task-Id", "grpc-timeout"}) {
    v1::ScheduleRequest r = request;
    (*r.mutable_http_target()->mutable_headers())[reserved] = "x";
    EXPECT_THAT(InvalidMessage(ValidateSchedule(r, Limits{}, kNow)), HasSubstr("is reserved"))
        << reserved;
  }
  v1::ScheduleRequest injected = request;
  (*injected.mutable_http_target()->mutable_headers())["X-A"] = "a\r\nX-Evil: 1";
  EXPECT_THAT(InvalidMessage(ValidateSchedule(injected, Limits{}, kNow)),
              HasSubstr("must not contain control characters"));
  v1::ScheduleRequest twice = request;
  (*twice.mutable_http_target()->mutable_headers())["Content-Type"] = "application/json";
  (*twice.mutable_headers())["content-type"] = "text/plain";
  EXPECT_THAT(InvalidMessage(ValidateSchedule(twice, Limits{}, kNow)),
              HasSubstr("header \"content-type\" is given twice"));
  v1::ScheduleRequest two_spellings = request;
  (*two_spellings.mutable_http_target()->mutable_headers())["X-A"] = "1";
  (*two_spellings.mutable_http_target()->mutable_headers())["x-a"] = "2";
  EXPECT_THAT(InvalidMessage(ValidateSchedule(two_spellings, Limits{}, kNow)),
              HasSubstr("is given twice"));
  v1::ScheduleRequest bad_name = request;
  (*bad_name.mutable_headers())["bad name"] = "x";
  EXPECT_THAT(InvalidMessage(ValidateSchedule(bad_name, Limits{}, kNow)),
              HasSubstr("is not a valid HTTP header name"));

  v1::ScheduleRequest grpc;
  grpc.mutable_grpc_target()->set_address("billing:443");
  for (const char* method : {"", "Close", "/x", "/svc/", "//Close", "/a b/C"}) {
    grpc.mutable_grpc_target()->set_method(method);
    EXPECT_THAT(InvalidMessage(ValidateSchedule(grpc, Limits{}, kNow)),
                HasSubstr("grpc_target.method must be a full method name"))
        << method;
  }
  grpc.mutable_grpc_target()->set_method("/billing.v1.Invoices/Close");
  for (const char* address : {"billing", "billing:0", "billing:70000", ":443", "::1:443", ""}) {
    grpc.mutable_grpc_target()->set_address(address);
    EXPECT_THAT(InvalidMessage(ValidateSchedule(grpc, Limits{}, kNow)),
                HasSubstr("grpc_target.address"))
        << address;
  }
  grpc.mutable_grpc_target()->set_address("billing:443");
  // gRPC metadata values are printable ASCII (gRPC ends the process on others), except -bin keys.
  (*grpc.mutable_headers())["trace"] = "caf\xc3\xa9";
  EXPECT_THAT(InvalidMessage(ValidateSchedule(grpc, Limits{}, kNow)),
              HasSubstr("headers[\"trace\"] must be printable ASCII to be gRPC metadata"));
  grpc.mutable_headers()->clear();
  (*grpc.mutable_headers())["trace-bin"] = std::string("\x00\xff", 2);
  EXPECT_TRUE(ValidateSchedule(grpc, Limits{}, kNow).ok());
  grpc.mutable_headers()->clear();
  (*grpc.mutable_headers())["Upper"] = "x";
  EXPECT_THAT(InvalidMessage(ValidateSchedule(grpc, Limits{}, kNow)),
              HasSubstr("is not a valid gRPC metadata key"));
}

// dispatch_deadline: 100 ms to 30 min, and only with a target.
TEST(ValidatePushTargetTest, DispatchDeadlineBoundaries) {
  v1::ScheduleRequest request = HttpRequest("https://example.com/");
  *request.mutable_dispatch_deadline() = DurationProto(0, 100'000'000);
  EXPECT_TRUE(ValidateSchedule(request, Limits{}, kNow).ok());
  *request.mutable_dispatch_deadline() = DurationProto(0, 99'999'999);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits{}, kNow)),
            "dispatch_deadline must be >= 100ms, got 99.999999ms");
  *request.mutable_dispatch_deadline() = DurationProto(1800);
  EXPECT_TRUE(ValidateSchedule(request, Limits{}, kNow).ok());
  *request.mutable_dispatch_deadline() = DurationProto(1801);
  EXPECT_EQ(InvalidMessage(ValidateSchedule(request, Limits{}, kNow)),
            "dispatch_deadline must be <= 30m, got 30m1s");
  v1::ScheduleRequest pull;
  *pull.mutable_dispatch_deadline() = DurationProto(5);
  EXPECT_THAT(InvalidMessage(ValidateSchedule(pull, Limits{}, kNow)),
              StartsWith("dispatch_deadline applies to push tasks only"));
}

// With a policy, literal addresses and localhost in refused ranges are refused at Schedule;
// host names are left to delivery time; the allowlist admits.
TEST(ValidatePushTargetTest, RefusedLiteralTargetsAreInvalidAtSchedule) {
  absl::StatusOr<AddressPolicy> policy = AddressPolicy::Create("");
  ASSERT_TRUE(policy.ok());
  Limits limits;
  limits.push_policy = &*policy;
  EXPECT_THAT(
      InvalidMessage(
          ValidateSchedule(HttpRequest("http://169.254.169.254/latest/meta-data"), limits, kNow)),
      HasSubstr("http_target.url is refused: 169.254.169.254 is the cloud metadata address"));
  EXPECT_THAT(InvalidMessage(ValidateSchedule(HttpRequest("http://[::1]:8080/"), limits, kNow)),
              HasSubstr("loopback"));
  EXPECT_THAT(InvalidMessage(ValidateSchedule(HttpRequest("http://localhost:8080/"), limits, kNow)),
              HasSubstr("loopback"));
  EXPECT_TRUE(ValidateSchedule(HttpRequest("https://example.com/"), limits, kNow).ok());
  v1::ScheduleRequest grpc;
  grpc.mutable_grpc_target()->set_address("10.0.0.7:50051");
  grpc.mutable_grpc_target()->set_method("/a.B/C");
  EXPECT_THAT(InvalidMessage(ValidateSchedule(grpc, limits, kNow)),
              HasSubstr("grpc_target.address is refused: 10.0.0.7 is a private address"));
  absl::StatusOr<AddressPolicy> allow = AddressPolicy::Create("10.0.0.0/24");
  limits.push_policy = &*allow;
  EXPECT_TRUE(ValidateSchedule(grpc, limits, kNow).ok());
}

// ListTasks: defaults, limits, and page tokens bound to their filter.
TEST(ValidateListTest, DefaultsLimitsAndTokens) {
  v1::ListTasksRequest request;
  absl::StatusOr<ListParams> params = ValidateList(request);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->queue, "");
  EXPECT_EQ(params->state, std::nullopt);
  EXPECT_EQ(params->page_size, 100u);
  EXPECT_EQ(params->cursor, 0u);
  request.set_page_size(1001);
  EXPECT_EQ(InvalidMessage(ValidateList(request)),
            "page_size must be between 0 (meaning 100) and 1000, got 1001");
  request.set_page_size(1000);
  request.set_queue("emails");
  request.set_state(v1::TASK_STATE_DEAD);
  params = ValidateList(request);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->state, TaskState::kDead);
  const std::string token = ListPageToken(*params, 4242);
  EXPECT_EQ(ListPageToken(*params, 0), "");
  request.set_page_token(token);
  params = ValidateList(request);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->cursor, 4242u);
  request.set_state(v1::TASK_STATE_READY);
  EXPECT_THAT(InvalidMessage(ValidateList(request)),
              HasSubstr("page_token belongs to a listing with another queue or state"));
  request.set_page_token("garbage!");
  EXPECT_EQ(InvalidMessage(ValidateList(request)),
            "page_token is not a next_page_token of ListTasks");
  request.set_page_token("");
  request.set_queue("bad queue");
  EXPECT_THAT(InvalidMessage(ValidateList(request)), StartsWith("queue must match"));
  request.set_queue("");
  request.set_state(static_cast<v1::TaskState>(42));
  EXPECT_THAT(InvalidMessage(ValidateList(request)), StartsWith("state must be a TaskState"));
}

// A field of a known number sent with another wire type (protobuf keeps it as an unknown field
// and leaves the field unset) is INVALID_ARGUMENT naming it, at any depth; unknown numbers (a
// newer client's fields) are ignored.
TEST(ValidationTest, FieldsOfTheWrongWireTypeAreInvalid) {
  v1::ScheduleRequest request;
  // queue (field 1, a string) as the varint 5: parses, and the queue would be "default".
  ASSERT_TRUE(request.ParseFromString(std::string("\x08\x05", 2)));
  EXPECT_EQ(request.queue(), "");
  EXPECT_EQ(InvalidMessage(CheckFieldWireTypes(request)),
            "queue (field 1 of hourglass.v1.ScheduleRequest) was sent as a varint, but its type "
            "is string; encode it as its .proto type");

  // delay (field 5) { seconds (field 1, an int64) as length-delimited bytes }
  ASSERT_TRUE(request.ParseFromString(std::string("\x2a\x03\x0a\x01\x78", 5)));
  EXPECT_EQ(InvalidMessage(CheckFieldWireTypes(request)),
            "delay.seconds (field 1 of google.protobuf.Duration) was sent as length-delimited "
            "bytes, but its type is int64; encode it as its .proto type");

  // ScheduleBatch requests[1] { retry_policy (7) { max_attempts (1, an int32) as a fixed32 } }
  v1::ScheduleBatchRequest batch;
  ASSERT_TRUE(
      batch.ParseFromString(std::string("\x0a\x00\x0a\x07\x3a\x05\x0d\x01\x00\x00\x00", 11)));
  ASSERT_EQ(batch.requests_size(), 2);
  EXPECT_EQ(InvalidMessage(CheckFieldWireTypes(batch)),
            "requests[1].retry_policy.max_attempts (field 1 of hourglass.v1.RetryPolicy) was sent "
            "as a fixed32, but its type is int32; encode it as its .proto type");

  // AckBatch acks (field 1, repeated messages) as a varint.
  v1::AckBatchRequest acks;
  ASSERT_TRUE(acks.ParseFromString(std::string("\x08\x01", 2)));
  EXPECT_THAT(InvalidMessage(CheckFieldWireTypes(acks)),
              StartsWith("acks (field 1 of hourglass.v1.AckBatchRequest) was sent as a varint, "
                         "but its type is repeated hourglass.v1.AckRequest; encode"));

  // Unknown field numbers (99 as a varint, 100 as bytes) at the top and nested: accepted.
  ASSERT_TRUE(
      request.ParseFromString(std::string("\x98\x06\x01\xa2\x06\x01x\x0a\x01q"
                                          "\x2a\x03\x98\x06\x01",
                                          15)));
  EXPECT_EQ(request.queue(), "q");
  EXPECT_TRUE(CheckFieldWireTypes(request).ok());
  // A well-formed request with every kind of field: accepted.
  v1::ScheduleRequest full;
  full.set_queue("q");
  full.set_task_id("t");
  full.set_payload("\xff\x00", 2);
  (*full.mutable_headers())["k"] = "v";
  full.mutable_delay()->set_seconds(5);
  full.mutable_retry_policy()->mutable_min_backoff()->set_nanos(5);
  full.mutable_http_target()->set_url("http://example.com/");
  (*full.mutable_http_target()->mutable_headers())["Authorization"] = "x";
  full.mutable_dispatch_deadline()->set_seconds(1);
  ASSERT_TRUE(full.ParseFromString(full.SerializeAsString()));
  EXPECT_TRUE(CheckFieldWireTypes(full).ok());
}

// The batch methods' item count, without parsing: the length of the repeated field whenever the
// bytes parse; nullopt for bytes that are not wire format.
TEST(ValidationTest, CountTopLevelFieldCountsWithoutParsing) {
  auto count = [](const std::string& bytes) {
    google::protobuf::io::ArrayInputStream input(bytes.data(), static_cast<int>(bytes.size()));
    return CountTopLevelField(&input, 1);
  };
  EXPECT_EQ(count(""), 0);
  v1::ScheduleBatchRequest batch;
  for (int i = 0; i < 3; ++i) batch.add_requests()->set_queue("q");
  EXPECT_EQ(count(batch.SerializeAsString()), 3);
  // Field 1 as a varint is not an item; other fields (known or not, groups too) are skipped.
  EXPECT_EQ(count(std::string("\x08\x05\x0a\x00\x98\x06\x01\xa3\x06\xa4\x06\x0a\x00", 13)), 2);
  // An item that would not parse (invalid UTF-8 inside) is still counted.
  EXPECT_EQ(count(std::string("\x0a\x03\x0a\x01\xff", 5)), 1);
  EXPECT_EQ(count(std::string("\x0a\x05\x0a", 3)), std::nullopt);  // a length past the end
  EXPECT_EQ(count(std::string(12, '\xff')), std::nullopt);         // a tag that never ends
  EXPECT_EQ(count(std::string("\x00", 1)), std::nullopt);          // field number 0
  EXPECT_EQ(count(std::string("\x0c", 1)), std::nullopt);          // an end of group at the top
  std::string deep;
  for (int i = 0; i < 101; ++i) deep += "\xa3\x06";
  for (int i = 0; i < 101; ++i) deep += "\xa4\x06";
  EXPECT_EQ(count(deep), std::nullopt);  // deeper than protobuf's limit, as the parser says
  EXPECT_FALSE(batch.ParseFromString(deep));
}

}  // namespace
}  // namespace hourglass
