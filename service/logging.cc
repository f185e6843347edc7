#include "service/logging.h"

#include <grpc/support/log.h>
#include <unistd.h>

#include <atomic>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace hourglass {

namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug") {
    *level = LogLevel::kDebug;
  } else if (lower == "info") {
    *level = LogLevel::kInfo;
  } else if (lower == "warning" || lower == "warn") {
    *level = LogLevel::kWarning;
  } else if (lower == "error") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

LogLine::LogLine(LogLevel level, absl::string_view event) : enabled_(LogEnabled(level)) {
  if (!enabled_) return;
  line_ = absl::StrCat("{\"ts\":\"",
                       absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                       "\",\"level\":\"", LevelName(level), "\",\"event\":", JsonQuote(event));
}

LogLine::~LogLine() {
  if (!enabled_) return;
  line_ += "}\n";
  // One write(2): lines of concurrent threads never interleave. Nothing to do if stderr is gone.
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line_.data(), line_.size());
}

LogLine& LogLine::Str(absl::string_view key, absl::string_view value) {
  if (enabled_) absl::StrAppend(&line_, ",", JsonQuote(key), ":", JsonQuote(value));
  return *this;
}

LogLine& LogLine::Int(absl::string_view key, int64_t value) {
  if (enabled_) absl::StrAppend(&line_, ",", JsonQuote(key), ":", value);
  return *this;
}

LogLine& LogLine::Dbl(absl::string_view key, double value) {
  // JSON has no NaN or infinity: those become null.
  if (enabled_) {
    absl::StrAppend(&line_, ",", JsonQuote(key), ":",
                    std::isfinite(value) ? absl::StrCat(value) : std::string("null"));
  }
  return *this;
}

LogLine& LogLine::Bool(absl::string_view key, bool value) {
  if (enabled_) absl::StrAppend(&line_, ",", JsonQuote(key), ":", value ? "true" : "false");
  return *this;
}

LogLine& LogLine::Dur(absl::string_view key, absl::Duration value) {
  return Dbl(key, absl::ToDoubleSeconds(value));
}

void RouteGrpcLogs() {
  gpr_set_log_function([](gpr_log_func_args* args) {
    const LogLevel level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LogLevel::kWarning
                           : args->severity == GPR_LOG_SEVERITY_INFO ? LogLevel::kInfo
                                                                     : LogLevel::kDebug;
    LogLine(level, "grpc_log")
        .Str("message", absl::StripTrailingAsciiWhitespace(args->message))
        .Str("file", args->file)
        .Int("line", args->line);
  });
}

}  // namespace hourglass
