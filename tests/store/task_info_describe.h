// Test helpers shared by the store's tests: a TaskInfo as one string naming every field, so that
// EXPECT_EQ on two of them is exact and shows the difference.
#ifndef HOURGLASS_TESTS_STORE_TASK_INFO_DESCRIBE_H_
#define HOURGLASS_TESTS_STORE_TASK_INFO_DESCRIBE_H_

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "store/task_store.h"

namespace hourglass {

inline std::string TimeString(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}
inline std::string TimeString(std::optional<absl::Time> t) {
  return t.has_value() ? TimeString(*t) : std::string("none");
}

inline std::string Describe(const std::optional<PushTarget>& target) {
  if (!target.has_value()) return "pull";
  std::string headers;
  for (const auto& [key, value] : target->http_headers)
    absl::StrAppend(&headers, key, ":", value, ";");
  return absl::StrCat(target->kind == PushTarget::Kind::kHttp ? "http " : "grpc ", target->url,
                      target->address, target->method, target->tls ? " tls" : "", " [", headers,
                      "] deadline=", absl::FormatDuration(target->dispatch_deadline));
}

inline std::string Describe(const TaskInfo& info) {
  return absl::StrCat(info.task_id, " {queue=", info.queue, " state=", TaskStateName(info.state),
                      " attempts=", info.attempts, " due=", TimeString(info.due_time),
                      " create=", TimeString(info.create_time),
                      " lease_expire=", TimeString(info.lease_expire_time),
                      " finish=", TimeString(info.finish_time), " last_error=\"", info.last_error,
                      "\" retry=", info.retry_policy.max_attempts, "/",
                      absl::FormatDuration(info.retry_policy.min_backoff), "/",
                      absl::FormatDuration(info.retry_policy.max_backoff),
                      " payload_size=", info.payload_size_bytes, " target=", Describe(info.target),
                      "}");
}

}  // namespace hourglass

#endif  // HOURGLASS_TESTS_STORE_TASK_INFO_DESCRIBE_H_
