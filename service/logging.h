// Structured logging: one JSON object per line on stderr, the form Kubernetes log collectors
// (Fluent Bit, Vector, Loki's promtail) parse without configuration.
//
//   LogInfo("server_started").Str("grpc_address", address).Int("workers", 4);
//   // {"ts":"2026-11-28T11:00:00.123Z","level":"info","event":"server_started",
//   //  "grpc_address":"0.0.0.0:7070","workers":4}
//
// The line is written when the LogLine goes out of scope, in one write(2), so lines from several
// threads never interleave. Payloads are never logged. Thread-safe.
#ifndef HOURGLASS_SERVICE_LOGGING_H_
#define HOURGLASS_SERVICE_LOGGING_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace hourglass {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Parses "debug", "info", "warning" (or "warn"), "error".
bool ParseLogLevel(absl::string_view text, LogLevel* level);
// Lines below this level are dropped. Default: kInfo.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

class LogLine {
 public:
  LogLine(LogLevel level, absl::string_view event);
  ~LogLine();  // writes the line
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  LogLine& Str(absl::string_view key, absl::string_view value);
  LogLine& Int(absl::string_view key, int64_t value);
  LogLine& Dbl(absl::string_view key, double value);
  LogLine& Bool(absl::string_view key, bool value);
  LogLine& Dur(absl::string_view key, absl::Duration value);  // seconds, as a number

 private:
  bool enabled_;
  std::string line_;
};

inline LogLine LogDebug(absl::string_view event) { return LogLine(LogLevel::kDebug, event); }
inline LogLine LogInfo(absl::string_view event) { return LogLine(LogLevel::kInfo, event); }
inline LogLine LogWarning(absl::string_view event) { return LogLine(LogLevel::kWarning, event); }
inline LogLine LogError(absl::string_view event) { return LogLine(LogLevel::kError, event); }

// gRPC's own log lines (gpr_log: a client's failed TLS handshake, say) become JSON lines too,
// event "grpc_log", so that stderr stays one JSON object per line. gRPC's errors are logged as
// warnings (they are mostly about one client or connection), its info and debug lines (only with
// GRPC_VERBOSITY) as info and debug.
void RouteGrpcLogs();

// `text` as a JSON string literal, with quotes.
std::string JsonQuote(absl::string_view text);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_LOGGING_H_
