#include "tools/hourglassctl/time_args.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hourglass::ctl {
namespace {

constexpr absl::string_view kDurationHint =
    "use a number with a unit: 500ms, 90s, 15m, 2h, 1h30m, 7d";

// Splits a leading "<digits>d" off `text` into `days`; leaves `text` alone when there is none.
bool ConsumeDays(absl::string_view& text, int64_t& days) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  if (digits == 0 || digits >= text.size() || text[digits] != 'd') return false;
  // 7 digits of days (27000 years) is more than any deadline; more would overflow.
  if (digits > 7 || !absl::SimpleAtoi(text.substr(0, digits), &days)) return false;
  text.remove_prefix(digits + 1);
  return true;
}

// "--delay: " before a message, or nothing for a value without a flag (AbslParseFlag, whose
// caller names the flag).
std::string Prefix(absl::string_view flag) {
  return flag.empty() ? "" : absl::StrCat("--", flag, ": ");
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDurationArg(absl::string_view flag, absl::string_view text) {
  absl::string_view rest = text;
  int64_t days = 0;
  const bool has_days = ConsumeDays(rest, days);
  absl::Duration duration = absl::Hours(24 * days);
  if (!rest.empty() || !has_days) {
    absl::Duration tail;
    // absl reads "-5s" and "inf" too; a sign after the days ("1d-2h") is not a duration.
    if (!absl::ParseDuration(rest, &tail) || (has_days && (rest[0] == '-' || rest[0] == '+'))) {
      return absl::InvalidArgumentError(
          absl::StrCat(Prefix(flag), "\"", text, "\" is not a duration; ", kDurationHint));
    }
    duration += tail;
  }
  if (duration == absl::InfiniteDuration() || duration == -absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(flag), "must be finite, got \"", text, "\""));
  }
  if (duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(flag), "must be >= 0, got ", text));
  }
  return duration;
}

absl::StatusOr<absl::Time> ParseTimeArg(absl::string_view flag, absl::string_view text) {
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, text, &time, &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(flag), "\"", text,
                     "\" is not an RFC 3339 time; write it like 2026-12-01T03:00:00Z or "
                     "2026-12-01T04:00:00+01:00"));
  }
  if (time == absl::InfiniteFuture() || time == absl::InfinitePast()) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(flag), "must be finite, got ", text));
  }
  return time;
}

google::protobuf::Duration ToProtoDuration(absl::Duration duration) {
  google::protobuf::Duration proto;
  const int64_t seconds = absl::IDivDuration(duration, absl::Seconds(1), &duration);
  proto.set_seconds(seconds);
  proto.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(duration)));
  return proto;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& duration) {
  return absl::Seconds(duration.seconds()) + absl::Nanoseconds(duration.nanos());
}

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time) {
  google::protobuf::Timestamp proto;
  const absl::Duration since_epoch = time - absl::UnixEpoch();
  const absl::Duration whole = absl::Floor(since_epoch, absl::Seconds(1));
  proto.set_seconds(absl::ToInt64Seconds(whole));
  proto.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(since_epoch - whole)));
  return proto;
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

std::string FormatTimestamp(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

std::string FormatDurationArg(absl::Duration duration) {
  if (duration < absl::ZeroDuration()) return absl::StrCat("-", FormatDurationArg(-duration));
  const absl::Duration day = absl::Hours(24);
  const int64_t days = absl::IDivDuration(duration, day, &duration);
  if (days == 0) return absl::FormatDuration(duration);
  if (duration == absl::ZeroDuration()) return absl::StrCat(days, "d");
  return absl::StrCat(days, "d", absl::FormatDuration(duration));
}

std::string FormatRelative(absl::Time time, absl::Time now) {
  absl::Duration distance = time - now;
  const bool past = distance < absl::ZeroDuration();
  if (past) distance = -distance;
  distance = distance < absl::Seconds(1) ? absl::Trunc(distance, absl::Milliseconds(1))
                                         : absl::Trunc(distance, absl::Seconds(1));
  if (distance == absl::ZeroDuration()) return "now";
  const std::string text = FormatDurationArg(distance);
  return past ? absl::StrCat(text, " ago") : absl::StrCat("in ", text);
}

}  // namespace hourglass::ctl
