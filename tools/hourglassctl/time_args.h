// Durations and times as hourglassctl reads and prints them.
//
// Durations are absl's ("500ms", "90s", "15m", "1h30m") plus a leading whole number of days
// ("7d", "1d12h"); they must be finite and >= 0. Times are RFC 3339 with an offset
// ("2026-12-01T03:00:00Z", "2026-12-01T04:00:00.5+01:00"). Output is always UTC with
// millisecond precision, so that it sorts as text.
//
//   absl::StatusOr<absl::Duration> delay = ParseDurationArg("delay", "1h30m");
//   request.mutable_delay()->CopyFrom(ToProtoDuration(*delay));
//
// Every function is pure and thread-safe.
#ifndef HOURGLASS_TOOLS_HOURGLASSCTL_TIME_ARGS_H_
#define HOURGLASS_TOOLS_HOURGLASSCTL_TIME_ARGS_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hourglass::ctl {

// Parses the value of the flag `flag` as a duration >= 0. Error messages start with "--flag: "
// (nothing for an empty `flag`).
absl::StatusOr<absl::Duration> ParseDurationArg(absl::string_view flag, absl::string_view text);

// Parses the value of the flag `flag` as an RFC 3339 time with a UTC offset.
absl::StatusOr<absl::Time> ParseTimeArg(absl::string_view flag, absl::string_view text);

google::protobuf::Duration ToProtoDuration(absl::Duration duration);
absl::Duration FromProtoDuration(const google::protobuf::Duration& duration);
google::protobuf::Timestamp ToProtoTimestamp(absl::Time time);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp);

// "2026-12-01T03:00:00.000Z": UTC, milliseconds (truncated, so never later than `time`).
std::string FormatTimestamp(absl::Time time);

// "90s", "1m30s", "250ms", "7d" for whole days, "1d2h": the shortest form that
// ParseDurationArg reads back.
std::string FormatDurationArg(absl::Duration duration);

// Where `time` lies from `now`, for people: "in 1m30s", "5s ago", "now". Whole seconds from
// 1 s on, milliseconds below.
std::string FormatRelative(absl::Time time, absl::Time now);

}  // namespace hourglass::ctl

#endif  // HOURGLASS_TOOLS_HOURGLASSCTL_TIME_ARGS_H_
