// The command line of hourglassctl: its flags (Abseil flags), its commands, and the --help text.
//
//   hourglassctl [--address=localhost:7070] [--token=SECRET] [--timeout=10s] [--output=text|json]
//   <command> [args]
//
// Flags are Abseil flags (ABSL_FLAG in command_line.cc): each flag's type parses and checks its
// value (durations, RFC 3339 times, task states, k=v pairs) and its help text is the one --help
// prints. The argument list itself is read by ParseCommandLine, not by absl::ParseCommandLine,
// because hourglassctl needs what Abseil's parser does not do: flags that belong to a command
// (and are refused for the others), flags that may be repeated (--header k=v --header k2=v2),
// and usage errors that return exit code 2 instead of ending the process.
//
//   absl::StatusOr<Invocation> invocation = ParseCommandLine({"cancel", "01M8GZB7W5"}, "");
//   if (!invocation.ok()) { ... exit code 2 ... }
//
// ParseCommandLine sets the Abseil flags, so it is not thread-safe; everything else here is.
#ifndef HOURGLASS_TOOLS_HOURGLASSCTL_COMMAND_LINE_H_
#define HOURGLASS_TOOLS_HOURGLASSCTL_COMMAND_LINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "hourglass/v1/task.pb.h"

namespace hourglass::ctl {

// --- the types of the flags (parsed by Abseil through AbslParseFlag) ---------------------

// A duration >= 0, with units ("90s", "1h30m", "7d").
struct DurationValue {
  absl::Duration value;
};
bool AbslParseFlag(absl::string_view text, DurationValue* duration, std::string* error);
std::string AbslUnparseFlag(const DurationValue& duration);

// An RFC 3339 time ("2026-12-01T03:00:00Z"); the default, unset, prints as "".
struct TimeValue {
  absl::Time value = absl::InfinitePast();
};
bool AbslParseFlag(absl::string_view text, TimeValue* time, std::string* error);
std::string AbslUnparseFlag(const TimeValue& time);

// How results are printed.
enum class OutputFormat { kText, kJson };
bool AbslParseFlag(absl::string_view text, OutputFormat* format, std::string* error);
std::string AbslUnparseFlag(OutputFormat format);

// A task state: "dead", "DEAD" or "TASK_STATE_DEAD"; the default "" is every state.
struct StateValue {
  hourglass::v1::TaskState value = hourglass::v1::TASK_STATE_UNSPECIFIED;
};
bool AbslParseFlag(absl::string_view text, StateValue* state, std::string* error);
std::string AbslUnparseFlag(const StateValue& state);

// One "key=value" of a repeatable flag; the key is not empty, the value may be.
struct KeyValue {
  std::string key;
  std::string value;
};
bool AbslParseFlag(absl::string_view text, KeyValue* pair, std::string* error);
std::string AbslUnparseFlag(const KeyValue& pair);

// --- a parsed command line ---------------------------------------------------------------

enum class Command {
  kSchedule,
  kCancel,
  kStatus,
  kReschedule,
  kLease,
  kAck,
  kNack,
  kExtend,
  kList,
  kRetry,
  kHealth,
};

// The values of every flag after parsing: the given value or the default. Whether a flag was
// given at all is in Invocation::given.
struct Options {
  // Global.
  std::string address;
  // The bearer token (--token, else $HOURGLASS_TOKEN); empty: no authorization metadata.
  std::string token;
  // TLS (--tls, implied by the others): the CAs to verify the server with (empty: gRPC's default
  // roots), a client certificate and its key (both or neither), and the name the server's
  // certificate must carry (empty: the host of `address`).
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  absl::Duration timeout;
  OutputFormat output = OutputFormat::kText;
  // Commands.
  std::string queue;
  std::string id;
  absl::Duration delay;
  absl::Time at;
  std::string payload;
  std::string payload_file;
  std::vector<std::pair<std::string, std::string>> headers;  // In command-line order.
  int32_t max_attempts = 0;
  absl::Duration min_backoff;
  absl::Duration max_backoff;
  std::string http_url;
  std::vector<std::pair<std::string, std::string>> http_headers;  // In command-line order.
  std::string grpc_address;
  std::string grpc_method;
  bool grpc_tls = false;
  absl::Duration dispatch_deadline;
  int32_t max = 1;
  absl::Duration lease;
  absl::Duration wait;
  std::string error;
  absl::Duration retry_delay;
  hourglass::v1::TaskState state = hourglass::v1::TASK_STATE_UNSPECIFIED;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
  std::string service;  // health: the service asked about; empty: the server as a whole
};

struct Invocation {
  // Unset only with help and no command ("hourglassctl --help").
  std::optional<Command> command;
  // --help, -h, or "help [command]": print the help of `command` (or the overview), exit 0.
  bool help = false;
  // The arguments after the command (ID, TOKEN), checked against the command's count.
  std::vector<std::string> args;
  // The flags given on the command line, by name ("delay", "header", ...).
  absl::btree_set<std::string> given;
  Options options;

  bool Given(absl::string_view flag) const { return given.contains(flag); }
};

// Parses the arguments after the program name. `address_from_env` (the environment's
// HOURGLASS_ADDRESS, or "") replaces the default of --address when not empty;
// `token_from_env` (HOURGLASS_TOKEN, or "") is the token when --token is not given. Errors are
// usage errors (exit code 2) with a message that names the flag or argument, never the token.
absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args,
                                            absl::string_view address_from_env,
                                            absl::string_view token_from_env = "");

// --- help --------------------------------------------------------------------------------

// "schedule", "cancel", ...
std::string CommandName(Command command);
// Every command, in the order --help lists them.
std::vector<Command> AllCommands();
// The flags a command accepts besides the global ones, in the order its help lists them.
std::vector<std::string> CommandFlags(Command command);
// The global flags: address, token, the tls ones, timeout, output.
std::vector<std::string> GlobalFlags();

// `hourglassctl --help`: the commands, the global flags, durations and times, exit codes.
std::string OverviewHelp();
// `hourglassctl <command> --help`: synopsis, what it does, arguments, flags, examples.
std::string CommandHelp(Command command);

}  // namespace hourglass::ctl

#endif  // HOURGLASS_TOOLS_HOURGLASSCTL_COMMAND_LINE_H_
