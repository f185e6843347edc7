#include "tools/hourglassctl/output.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "tools/hourglassctl/time_args.h"

namespace hourglass::ctl {
namespace {

using Rows = std::vector<std::pair<std::string, std::string>>;

// "key  value" lines, the values aligned two spaces after the longest key.
std::string Block(const Rows& rows) {
  size_t width = 0;
  for (const auto& [key, value] : rows) width = std::max(width, key.size());
  std::string out;
  for (const auto& [key, value] : rows) {
    absl::StrAppend(&out, key, std::string(width + 2 - key.size(), ' '), value, "\n");
  }
  return out;
}

std::string TimeWithDistance(const google::protobuf::Timestamp& timestamp, absl::Time now) {
  const absl::Time time = FromProtoTimestamp(timestamp);
  return absl::StrCat(FormatTimestamp(time), " (", FormatRelative(time, now), ")");
}

// The length of the UTF-8 sequence that starts `bytes` at `i` if it is a valid one of 2 to 4
// bytes, else 0.
size_t Utf8SequenceLength(absl::string_view bytes, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(bytes[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // No overlong forms.
    if (lead == 0xED) high = 0x9F;  // No surrogates.
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;  // Nothing above U+10FFFF.
  } else {
    return 0;
  }
  if (i + length > bytes.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return length;
}

std::string Policy(const hourglass::v1::RetryPolicy& policy) {
  return absl::StrCat("max_attempts ", policy.max_attempts(), ", backoff ",
                      FormatDurationArg(FromProtoDuration(policy.min_backoff())), " doubling to ",
                      FormatDurationArg(FromProtoDuration(policy.max_backoff())));
}

}  // namespace

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    // Only a message with an unresolvable Any fails; ours have none.
    return absl::StrCat("{\"error\":\"", EscapeForTerminal(status.ToString()), "\"}\n");
  }
  return json + "\n";
}

std::string StateName(hourglass::v1::TaskState state) {
  const std::string& name = hourglass::v1::TaskState_Name(state);
  if (name.empty()) return absl::StrCat("STATE_", static_cast<int>(state));
  return std::string(absl::StripPrefix(name, "TASK_STATE_"));
}

std::string EscapeForTerminal(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
    } else if (size_t length = Utf8SequenceLength(bytes, i); length > 0) {
      out.append(bytes.data() + i, length);
      i += length;
      continue;
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
    ++i;
  }
  return out;
}

std::string FormatScheduled(const hourglass::v1::ScheduleResponse& response, absl::Time now) {
  return Block(
      {{"task_id", response.task_id()}, {"due_time", TimeWithDistance(response.due_time(), now)}});
}

std::string FormatTask(const hourglass::v1::Task& task, absl::Time now) {
  Rows rows = {
      {"task_id", task.task_id()}, {"queue", task.queue()}, {"state", StateName(task.state())}};
  std::string attempts = absl::StrCat(task.attempts());
  if (task.retry_policy().max_attempts() > 0) {
    absl::StrAppend(&attempts, " of ", task.retry_policy().max_attempts());
  }
  rows.emplace_back("attempts", attempts);
  if (task.has_due_time()) rows.emplace_back("due_time", TimeWithDistance(task.due_time(), now));
  if (task.has_create_time()) {
    rows.emplace_back("create_time", TimeWithDistance(task.create_time(), now));
  }
  if (task.has_lease_expire_time()) {
    rows.emplace_back("lease_expire_time", TimeWithDistance(task.lease_expire_time(), now));
  }
  if (task.has_finish_time()) {
    rows.emplace_back("finish_time", TimeWithDistance(task.finish_time(), now));
  }
  if (task.has_retry_policy()) rows.emplace_back("retry_policy", Policy(task.retry_policy()));
  rows.emplace_back("payload_size", absl::StrCat(task.payload_size_bytes(), " bytes"));
  if (task.has_http_target()) {
    rows.emplace_back("target", absl::StrCat("http POST ", task.http_target().url()));
  } else if (task.has_grpc_target()) {
    rows.emplace_back("target", absl::StrCat("grpc ", task.grpc_target().method(), " at ",
                                             task.grpc_target().address(),
                                             task.grpc_target().tls() ? " (TLS)" : " (plaintext)"));
  }
  if (task.has_dispatch_deadline()) {
    rows.emplace_back("dispatch_deadline",
                      FormatDurationArg(FromProtoDuration(task.dispatch_deadline())));
  }
  if (!task.last_error().empty()) {
    rows.emplace_back("last_error", EscapeForTerminal(task.last_error()));
  }
  return Block(rows);
}

std::string FormatLeasedTasks(const hourglass::v1::LeaseResponse& response, absl::Time now) {
  if (response.tasks().empty()) return "no task ready\n";
  std::string out;
  for (const hourglass::v1::LeasedTask& task : response.tasks()) {
    if (!out.empty()) out += "\n";
    Rows rows = {{"task_id", task.task_id()},
                 {"queue", task.queue()},
                 {"attempt", absl::StrCat(task.attempt())},
                 {"due_time", TimeWithDistance(task.due_time(), now)},
                 {"lease_token", task.lease_token()}};
    if (task.has_lease_expire_time()) {
      rows.emplace_back("lease_expire_time", TimeWithDistance(task.lease_expire_time(), now));
    }
    // A map's order is unspecified: sort the headers for a stable output.
    const std::map<std::string, std::string> headers(task.headers().begin(), task.headers().end());
    for (const auto& [key, value] : headers) {
      rows.emplace_back("header",
                        absl::StrCat(EscapeForTerminal(key), "=", EscapeForTerminal(value)));
    }
    rows.emplace_back("payload_size", absl::StrCat(task.payload().size(), " bytes"));
    rows.emplace_back("payload", EscapeForTerminal(task.payload()));
    out += Block(rows);
  }
  return out;
}

std::string FormatExtended(absl::string_view task_id,
                           const hourglass::v1::ExtendLeaseResponse& response, absl::Time now) {
  return Block({{"task_id", std::string(task_id)},
                {"lease_expire_time", TimeWithDistance(response.lease_expire_time(), now)}});
}

std::string FormatTaskTable(const google::protobuf::RepeatedPtrField<hourglass::v1::Task>& tasks) {
  if (tasks.empty()) return "no tasks\n";
  std::vector<std::vector<std::string>> table = {
      {"TASK_ID", "QUEUE", "STATE", "ATTEMPTS", "DUE_TIME", "LAST_ERROR"}};
  for (const hourglass::v1::Task& task : tasks) {
    std::string attempts = absl::StrCat(task.attempts());
    if (task.retry_policy().max_attempts() > 0) {
      absl::StrAppend(&attempts, "/", task.retry_policy().max_attempts());
    }
    table.push_back(
        {EscapeForTerminal(task.task_id()), task.queue(), StateName(task.state()), attempts,
         task.has_due_time() ? FormatTimestamp(FromProtoTimestamp(task.due_time())) : "-",
         task.last_error().empty() ? "-" : EscapeForTerminal(task.last_error())});
  }
  std::vector<size_t> widths(table.front().size(), 0);
  for (const auto& row : table) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : table) {
    for (size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      // The last column is not padded: no trailing spaces.
      if (c + 1 < row.size()) out += std::string(widths[c] + 2 - row[c].size(), ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace hourglass::ctl
