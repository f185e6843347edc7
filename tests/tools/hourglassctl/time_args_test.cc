// Tests of tools/hourglassctl/time_args.h: the durations and times hourglassctl reads (with
// the exact messages a user sees for bad ones) and prints, and the protobuf conversions.
#include "tools/hourglassctl/time_args.h"

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hourglass::ctl {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15T08:00:00Z

// Every unit absl knows, combinations, and whole days in front.
TEST(TimeArgsTest, ParsesDurationsWithUnitsAndDays) {
  EXPECT_EQ(*ParseDurationArg("delay", "500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDurationArg("delay", "90s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationArg("delay", "1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDurationArg("delay", "15m"), absl::Minutes(15));
  EXPECT_EQ(*ParseDurationArg("delay", "1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationArg("delay", "250us"), absl::Microseconds(250));
  EXPECT_EQ(*ParseDurationArg("delay", "0"), absl::ZeroDuration());
  EXPECT_EQ(*ParseDurationArg("delay", "0s"), absl::ZeroDuration());
  EXPECT_EQ(*ParseDurationArg("delay", "7d"), absl::Hours(168));
  EXPECT_EQ(*ParseDurationArg("delay", "1d12h"), absl::Hours(36));
  EXPECT_EQ(*ParseDurationArg("delay", "730d"), absl::Hours(730 * 24));
}

// A number without a unit, a negative or infinite duration, and junk are refused, naming the
// flag and saying what to write instead.
TEST(TimeArgsTest, RefusesBadDurationsNamingTheFlag) {
  EXPECT_EQ(ParseDurationArg("delay", "90").status(),
            absl::InvalidArgumentError("--delay: \"90\" is not a duration; use a number with a "
                                       "unit: 500ms, 90s, 15m, 2h, 1h30m, 7d"));
  EXPECT_EQ(ParseDurationArg("wait", "-5s").status(),
            absl::InvalidArgumentError("--wait: must be >= 0, got -5s"));
  EXPECT_EQ(ParseDurationArg("lease", "inf").status(),
            absl::InvalidArgumentError("--lease: must be finite, got \"inf\""));
  for (const char* bad : {"", "s", "5 s", "1d-2h", "1.5d", "d", "5x", "12345678d", "1dd"}) {
    EXPECT_EQ(ParseDurationArg("delay", bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

// RFC 3339 with Z or an offset, with or without fractions; no zone or no date is refused.
TEST(TimeArgsTest, ParsesRfc3339Times) {
  EXPECT_EQ(*ParseTimeArg("at", "2027-01-15T08:00:00Z"), kNow);
  EXPECT_EQ(*ParseTimeArg("at", "2027-01-15T09:00:00+01:00"), kNow);
  EXPECT_EQ(*ParseTimeArg("at", "2027-01-15T08:00:00.25Z"), kNow + absl::Milliseconds(250));
  EXPECT_EQ(ParseTimeArg("at", "2027-01-15 08:00:00").status(),
            absl::InvalidArgumentError(
                "--at: \"2027-01-15 08:00:00\" is not an RFC 3339 time; write it like "
                "2026-12-01T03:00:00Z or 2026-12-01T04:00:00+01:00"));
  for (const char* bad : {"", "2027-01-15T08:00:00", "2027-01-15", "tomorrow", "1800000000",
                          "2027-13-01T00:00:00Z", "infinite-future"}) {
    EXPECT_EQ(ParseTimeArg("at", bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// Durations and timestamps survive the trip to protobuf and back, to the nanosecond, also
// before the epoch (where nanos stay positive as the proto demands).
TEST(TimeArgsTest, ProtoConversionsRoundTrip) {
  const google::protobuf::Duration d = ToProtoDuration(absl::Milliseconds(90'250));
  EXPECT_EQ(d.seconds(), 90);
  EXPECT_EQ(d.nanos(), 250'000'000);
  EXPECT_EQ(FromProtoDuration(d), absl::Milliseconds(90'250));

  const absl::Time t = kNow + absl::Nanoseconds(123'456'789);
  const google::protobuf::Timestamp ts = ToProtoTimestamp(t);
  EXPECT_EQ(ts.seconds(), 1'800'000'000);
  EXPECT_EQ(ts.nanos(), 123'456'789);
  EXPECT_EQ(FromProtoTimestamp(ts), t);

  const absl::Time before_epoch = absl::UnixEpoch() - absl::Milliseconds(1500);
  const google::protobuf::Timestamp old = ToProtoTimestamp(before_epoch);
  EXPECT_EQ(old.seconds(), -2);
  EXPECT_EQ(old.nanos(), 500'000'000);
  EXPECT_EQ(FromProtoTimestamp(old), before_epoch);
}

// UTC, milliseconds, truncated: a printed due time is never later than the real one.
TEST(TimeArgsTest, FormatsTimestampsInUtcWithMilliseconds) {
  EXPECT_EQ(FormatTimestamp(kNow), "2027-01-15T08:00:00.000Z");
  EXPECT_EQ(FormatTimestamp(kNow + absl::Nanoseconds(123'999'999)), "2027-01-15T08:00:00.123Z");
}

// The printed form is short and reads back as the same duration.
TEST(TimeArgsTest, FormatsDurationsThatParseBack) {
  EXPECT_EQ(FormatDurationArg(absl::Seconds(90)), "1m30s");
  EXPECT_EQ(FormatDurationArg(absl::Milliseconds(250)), "250ms");
  EXPECT_EQ(FormatDurationArg(absl::ZeroDuration()), "0");
  EXPECT_EQ(FormatDurationArg(absl::Hours(48)), "2d");
  EXPECT_EQ(FormatDurationArg(absl::Hours(50)), "2d2h");
  for (absl::Duration d : {absl::Seconds(90), absl::Hours(50), absl::Milliseconds(1),
                           absl::Hours(24 * 730) + absl::Seconds(1)}) {
    EXPECT_EQ(*ParseDurationArg("delay", FormatDurationArg(d)), d);
  }
}

// Distances for people: whole seconds from 1 s on, milliseconds below, "now" at zero.
TEST(TimeArgsTest, FormatsRelativeTimes) {
  EXPECT_EQ(FormatRelative(kNow + absl::Milliseconds(90'900), kNow), "in 1m30s");
  EXPECT_EQ(FormatRelative(kNow - absl::Seconds(5), kNow), "5s ago");
  EXPECT_EQ(FormatRelative(kNow + absl::Milliseconds(250), kNow), "in 250ms");
  EXPECT_EQ(FormatRelative(kNow + absl::Microseconds(10), kNow), "now");
  EXPECT_EQ(FormatRelative(kNow + absl::Hours(49), kNow), "in 2d1h");
}

}  // namespace
}  // namespace hourglass::ctl
