#include "tools/hourglassctl/command_line.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/hourglassctl/exit_codes.h"
#include "tools/hourglassctl/time_args.h"

using hourglass::ctl::DurationValue;
using hourglass::ctl::KeyValue;
using hourglass::ctl::OutputFormat;
using hourglass::ctl::StateValue;
using hourglass::ctl::TimeValue;

// The help texts below are what `hourglassctl <command> --help` prints for each flag.
// Global flags.
ABSL_FLAG(std::string, address, "localhost:7070",
          "host:port of the hourglass server; $HOURGLASS_ADDRESS, when set, replaces the default");
ABSL_FLAG(std::string, token, "",
          "the bearer token sent as \"authorization: Bearer <token>\" on every call, for a "
          "server started with --auth_tokens_file; $HOURGLASS_TOKEN is used when this flag is not "
          "given (prefer it: a command line is visible to other users in ps)");
ABSL_FLAG(bool, tls, false,
          "connect with TLS (implied by the other --tls_* flags); without --tls_ca the server's "
          "certificate is verified against gRPC's default roots");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CA certificates the server's certificate must chain to; turns TLS on");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM file of a client certificate (chain), for a server started with --tls_client_ca; "
          "needs --tls_key");
ABSL_FLAG(std::string, tls_key, "", "PEM file of the private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "the name the server's certificate must carry, when it differs from the host of "
          "--address (e.g. connecting to localhost or an IP)");
ABSL_FLAG(DurationValue, timeout, DurationValue{absl::Seconds(10)},
          "deadline of each RPC (lease adds its --wait to it)");
ABSL_FLAG(OutputFormat, output, OutputFormat::kText,
          "text: for people (list prints aligned columns); json: the response message as one line "
          "of JSON with the proto's field names, for scripts");
// Command flags.
ABSL_FLAG(std::string, queue, "",
          "queue name, [A-Za-z0-9._-]{1,200}; schedule and lease use the queue \"default\" "
          "without it, list lists every queue");  // Each command explains it: kCommandFlagHelp.
ABSL_FLAG(std::string, id, "",
          "the task's id and idempotency key (printable ASCII, at most 200 bytes); without it the "
          "server makes one");
ABSL_FLAG(DurationValue, delay, DurationValue{absl::ZeroDuration()},
          "due this long from now (0s: now)");
ABSL_FLAG(TimeValue, at, TimeValue{},
          "due at this RFC 3339 time, e.g. 2026-12-01T03:00:00Z (a past time means now)");
ABSL_FLAG(std::string, payload, "", "the payload, taken as it is");
ABSL_FLAG(std::string, payload_file, "",
          "read the payload from this file, byte for byte; - reads standard input");
ABSL_FLAG(KeyValue, header, KeyValue{},
          "key=value: a header handed to the consumer with the payload; repeat for more");
ABSL_FLAG(int32_t, max_attempts, 0, "hand-outs before the task is DEAD (server default 5)");
ABSL_FLAG(DurationValue, min_backoff, DurationValue{absl::ZeroDuration()},
          "wait after the first failed attempt, doubling after each further one (server default "
          "1s)");
ABSL_FLAG(DurationValue, max_backoff, DurationValue{absl::ZeroDuration()},
          "upper bound of the wait between attempts (server default 5m)");
ABSL_FLAG(std::string, http_url, "",
          "push delivery: POST the payload to this http:// or https:// URL when the task is due");
ABSL_FLAG(KeyValue, http_header, KeyValue{},
          "Name=value: a header of the push request (with --http_url); repeat for more");
ABSL_FLAG(std::string, grpc_address, "",
          "push delivery: host:port of a gRPC service to call with the payload when the task is "
          "due (needs --grpc_method)");
ABSL_FLAG(std::string, grpc_method, "",
          "the method --grpc_address is called with: /package.Service/Method");
ABSL_FLAG(bool, grpc_tls, false, "connect to --grpc_address with TLS instead of plaintext");
ABSL_FLAG(DurationValue, dispatch_deadline, DurationValue{absl::ZeroDuration()},
          "push tasks: how long one delivery attempt may take (server default 30s)");
ABSL_FLAG(int32_t, max, 1, "the most tasks to lease, 1 to 1000");
ABSL_FLAG(DurationValue, lease, DurationValue{absl::Seconds(30)},
          "how long the consumer holds the task: lease: 1s to 12h; extend: the new lease, from "
          "now (required)");
ABSL_FLAG(DurationValue, wait, DurationValue{absl::Seconds(5)},
          "how long to wait for a task when none is ready, 0s to 60s");
ABSL_FLAG(std::string, error, "", "why the attempt failed; kept as the task's last_error");
ABSL_FLAG(DurationValue, retry_delay, DurationValue{absl::ZeroDuration()},
          "retry after this delay instead of the backoff of the task's retry policy");
ABSL_FLAG(StateValue, state, StateValue{},
          "only tasks in this state: scheduled, ready, leased, succeeded, cancelled or dead");
ABSL_FLAG(int32_t, page_size, 0, "the most tasks per page, 1 to 1000 (server default 100)");
ABSL_FLAG(std::string, service, "",
          "the service to ask about, e.g. hourglass.v1.ConsumerService (default: the server as "
          "a whole)");
ABSL_FLAG(std::string, page_token, "",
          "continue a listing where the previous page ended (its next_page_token)");
ABSL_FLAG(bool, all, false,
          "follow next_page_token to the end: every page in one table (or one JSON object)");

namespace hourglass::ctl {

// --- flag types --------------------------------------------------------------------------

bool AbslParseFlag(absl::string_view text, DurationValue* duration, std::string* error) {
  absl::StatusOr<absl::Duration> parsed = ParseDurationArg("", text);
  if (!parsed.ok()) {
    *error = std::string(parsed.status().message());  // The caller names the flag.
    return false;
  }
  duration->value = *parsed;
  return true;
}

std::string AbslUnparseFlag(const DurationValue& duration) {
  return FormatDurationArg(duration.value);
}

bool AbslParseFlag(absl::string_view text, TimeValue* time, std::string* error) {
  if (text.empty()) {  // The default: unset.
    time->value = absl::InfinitePast();
    return true;
  }
  absl::StatusOr<absl::Time> parsed = ParseTimeArg("", text);
  if (!parsed.ok()) {
    *error = std::string(parsed.status().message());  // The caller names the flag.
    return false;
  }
  time->value = *parsed;
  return true;
}

std::string AbslUnparseFlag(const TimeValue& time) {
  if (time.value == absl::InfinitePast()) return "";
  return absl::FormatTime(absl::RFC3339_full, time.value, absl::UTCTimeZone());
}

bool AbslParseFlag(absl::string_view text, OutputFormat* format, std::string* error) {
  if (text == "text") {
    *format = OutputFormat::kText;
  } else if (text == "json") {
    *format = OutputFormat::kJson;
  } else {
    *error = absl::StrCat("\"", text, "\" is not an output format; use text or json");
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(OutputFormat format) {
  return format == OutputFormat::kJson ? "json" : "text";
}

bool AbslParseFlag(absl::string_view text, StateValue* state, std::string* error) {
  if (text.empty()) {
    state->value = hourglass::v1::TASK_STATE_UNSPECIFIED;
    return true;
  }
  std::string name = absl::AsciiStrToUpper(text);
  if (!absl::StartsWith(name, "TASK_STATE_")) name = absl::StrCat("TASK_STATE_", name);
  hourglass::v1::TaskState parsed;
  if (!hourglass::v1::TaskState_Parse(name, &parsed) ||
      parsed == hourglass::v1::TASK_STATE_UNSPECIFIED) {
    *error = absl::StrCat("\"", text,
                          "\" is not a task state; use scheduled, ready, leased, succeeded, "
                          "cancelled or dead");
    return false;
  }
  state->value = parsed;
  return true;
}

std::string AbslUnparseFlag(const StateValue& state) {
  if (state.value == hourglass::v1::TASK_STATE_UNSPECIFIED) return "";
  return absl::AsciiStrToLower(
      absl::StripPrefix(hourglass::v1::TaskState_Name(state.value), "TASK_STATE_"));
}

bool AbslParseFlag(absl::string_view text, KeyValue* pair, std::string* error) {
  if (text.empty()) {  // The default: no pair. ParseCommandLine refuses it on the command line.
    *pair = KeyValue{};
    return true;
  }
  const size_t equals = text.find('=');
  if (equals == absl::string_view::npos || equals == 0) {
    *error = absl::StrCat("\"", text, "\" is not key=value");
    return false;
  }
  pair->key = std::string(text.substr(0, equals));
  pair->value = std::string(text.substr(equals + 1));
  return true;
}

std::string AbslUnparseFlag(const KeyValue& pair) {
  if (pair.key.empty()) return "";
  return absl::StrCat(pair.key, "=", pair.value);
}

// --- commands ----------------------------------------------------------------------------

namespace {

struct CommandSpec {
  Command command;
  absl::string_view name;
  // The arguments after the command, in order ("ID", "TOKEN").
  std::vector<absl::string_view> args;
  // Usage line after "hourglassctl ".
  absl::string_view synopsis;
  // One line for the overview.
  absl::string_view summary;
  // What the command does, what it prints, how it fails.
  absl::string_view description;
  std::vector<std::string> flags;
  std::vector<absl::string_view> examples;
};

const std::vector<CommandSpec>& Specs() {
  static const auto* specs = new std::vector<CommandSpec>{
      {Command::kSchedule,
       "schedule",
       {},
       "schedule [--queue Q] [--id ID] (--delay D | --at T)\n"
       "           [--payload STR | --payload_file F] [--header k=v]...\n"
       "           [--max_attempts N] [--min_backoff D] [--max_backoff D]\n"
       "           [--http_url URL [--http_header k=v]... |\n"
       "            --grpc_address H:P --grpc_method /pkg.Svc/M [--grpc_tls]]\n"
       "           [--dispatch_deadline D]",
       "schedule a task after a delay or at a time",
       "Schedules a task in a queue, due after --delay or at --at (one of them is required).\n"
       "Without --http_url or --grpc_address it is a pull task that consumers take with\n"
       "`lease`; with one, the server delivers it itself when it is due. With --id, schedule is\n"
       "idempotent: the same id with the same queue and payload answers with the original\n"
       "task, with different content it fails with ALREADY_EXISTS (exit 5).\n"
       "Prints the task's id and due time.",
       {"queue", "id", "delay", "at", "payload", "payload_file", "header", "max_attempts",
        "min_backoff", "max_backoff", "http_url", "http_header", "grpc_address", "grpc_method",
        "grpc_tls", "dispatch_deadline"},
       {"hourglassctl schedule --queue emails --delay 90s --payload 'hello'",
        "hourglassctl schedule --queue reports --id report-2026-12 --at 2026-12-01T03:00:00Z \\\n"
        "      --payload_file report.json --header content-type=application/json",
        "echo -n '{\"user\":42}' | hourglassctl schedule --queue emails --delay 10m \\\n"
        "      --payload_file - --max_attempts 10 --min_backoff 5s --max_backoff 1h",
        "hourglassctl schedule --queue hooks --delay 1h --payload '{}' \\\n"
        "      --http_url https://example.com/hook --http_header 'Authorization=Bearer s3cret'",
        "hourglassctl schedule --queue billing --delay 5m --payload_file request.bin \\\n"
        "      --grpc_address billing.example.com:443 --grpc_method /billing.v1.Billing/Charge \\\n"
        "      --grpc_tls --dispatch_deadline 10s",
        "id=$(hourglassctl --output=json schedule --delay 1m | jq -r .task_id)"}},
      {Command::kCancel,
       "cancel",
       {"ID"},
       "cancel ID",
       "cancel a SCHEDULED or READY task",
       "Cancels a task that has not been handed out: it is CANCELLED and never delivered.\n"
       "Fails with NOT_FOUND (exit 3) for an unknown id and FAILED_PRECONDITION (exit 5) for\n"
       "a leased or finished task. Prints the cancelled task.",
       {},
       {"hourglassctl cancel 01M8GZB7W5SB0FKRYVV8A3MZR9"}},
      {Command::kStatus,
       "status",
       {"ID"},
       "status ID",
       "show a task: state, attempts, due time, last error",
       "Prints what the server knows of a task: queue, state, attempts, due and creation time,\n"
       "retry policy, payload size, last error, lease expiry, push target. Fails with\n"
       "NOT_FOUND (exit 3) for an unknown id or one past its retention.",
       {},
       {"hourglassctl status 01M8GZB7W5SB0FKRYVV8A3MZR9",
        "hourglassctl --output=json status report-2026-12 | jq -r .state"}},
      {Command::kReschedule,
       "reschedule",
       {"ID"},
       "reschedule ID (--delay D | --at T)",
       "move a SCHEDULED or READY task to a new due time",
       "Changes the due time of a task that has not been handed out, keeping its id, payload\n"
       "and attempts. Fails with NOT_FOUND (exit 3), or FAILED_PRECONDITION (exit 5) for a\n"
       "leased or finished task. Prints the task with its new due time.",
       {"delay", "at"},
       {"hourglassctl reschedule 01M8GZB7W5SB0FKRYVV8A3MZR9 --delay 2h",
        "hourglassctl reschedule report-2026-12 --at 2026-12-02T03:00:00Z"}},
      {Command::kLease,
       "lease",
       {},
       "lease [--queue Q] [--max N] [--lease D] [--wait D]",
       "take due tasks of a queue, with payload and lease token",
       "Leases up to --max READY tasks of a queue, oldest due first, waiting up to --wait for\n"
       "one. Prints each task with its payload, headers and lease token; ack (or nack) it with\n"
       "the token before the lease ends, or it is handed out again. When no task became ready\n"
       "within the wait it prints \"no task ready\" (JSON: {\"tasks\":[]}) and exits 0.\n"
       "Payloads print as text; bytes that are not printable UTF-8 print as \\xNN escapes\n"
       "(--output=json gives the exact bytes, base64).",
       {"queue", "max", "lease", "wait"},
       {"hourglassctl lease --queue emails",
        "hourglassctl lease --queue emails --max 10 --lease 5m --wait 0s"}},
      {Command::kAck,
       "ack",
       {"ID", "TOKEN"},
       "ack ID TOKEN",
       "acknowledge a leased task: it is SUCCEEDED",
       "Acknowledges a task leased with `lease`, using the lease token it printed: the task is\n"
       "SUCCEEDED and never delivered again. Fails with NOT_FOUND (exit 3) for an unknown id\n"
       "and FAILED_PRECONDITION (exit 5) when the task is not leased or the token is stale\n"
       "(the lease ran out and the task was handed out again).",
       {},
       {"hourglassctl ack 01M8GZB7W5SB0FKRYVV8A3MZR9 7c1d0e4a9b"}},
      {Command::kNack,
       "nack",
       {"ID", "TOKEN"},
       "nack ID TOKEN [--error MSG] [--retry_delay D]",
       "give a leased task back to be retried (or DEAD)",
       "Gives a leased task back: it is retried after --retry_delay or its retry policy's\n"
       "backoff, or is DEAD when it has had max_attempts hand-outs. --error is kept as the\n"
       "task's last_error. Errors as for ack. Prints the task after the nack.",
       {"error", "retry_delay"},
       {"hourglassctl nack 01M8GZB7W5SB0FKRYVV8A3MZR9 7c1d0e4a9b --error 'SMTP 451' "
        "--retry_delay 1m"}},
      {Command::kExtend,
       "extend",
       {"ID", "TOKEN"},
       "extend ID TOKEN --lease D",
       "extend a lease to D from now",
       "Extends the lease of a leased task so that it runs out --lease from now (required).\n"
       "Errors as for ack. Prints the new expiry time.",
       {"lease"},
       {"hourglassctl extend 01M8GZB7W5SB0FKRYVV8A3MZR9 7c1d0e4a9b --lease 10m"}},
      {Command::kList,
       "list",
       {},
       "list [--queue Q] [--state S] [--page_size N]\n"
       "           [--page_token T] [--all]",
       "list tasks, e.g. the DEAD ones with their last error",
       "Lists tasks, of one queue and one state when given, a page at a time, as a table:\n"
       "TASK_ID QUEUE STATE ATTEMPTS DUE_TIME LAST_ERROR. When more pages follow, the text\n"
       "output ends with the --page_token that continues the listing (JSON: next_page_token).\n"
       "--all follows the pages to the end.",
       {"queue", "state", "page_size", "page_token", "all"},
       {"hourglassctl list --state dead --all", "hourglassctl list --queue emails --page_size 50",
        "hourglassctl --output=json list --state dead --all | jq -r '.tasks[].task_id'"}},
      {Command::kRetry,
       "retry",
       {"ID"},
       "retry ID",
       "send a DEAD task back for delivery",
       "Sends a DEAD task back: it is due at once, with its payload and target and a fresh\n"
       "set of max_attempts. Fails with NOT_FOUND (exit 3), or FAILED_PRECONDITION (exit 5)\n"
       "when the task is not DEAD. Prints the task.",
       {},
       {"hourglassctl retry 01M8GZB7W5SB0FKRYVV8A3MZR9",
        "hourglassctl --output=json list --state dead --all | jq -r '.tasks[].task_id' |\n"
        "      xargs -n1 hourglassctl retry"}},
      {Command::kHealth,
       "health",
       {},
       "health [--service NAME]",
       "ask the server whether it is serving (grpc.health.v1)",
       "Asks the server's health service (grpc.health.v1.Health/Check, which needs no token)\n"
       "whether it serves: the server as a whole, or --service. Prints the status (SERVING,\n"
       "NOT_SERVING, ...) and exits 0 only for SERVING; NOT_SERVING (shutting down) is exit 6,\n"
       "like an unreachable server. A probe for a TLS port, which the kubelet's gRPC probe\n"
       "cannot check (docs/security.md).",
       {"service"},
       {"hourglassctl health",
        "hourglassctl --address=localhost:7070 --tls_ca=/etc/hourglass-tls/ca.crt \\\n"
        "      --tls_server_name=hourglass --timeout=2s health"}},
  };
  return *specs;
}

const CommandSpec& SpecOf(Command command) {
  for (const CommandSpec& spec : Specs()) {
    if (spec.command == command) return spec;
  }
  return Specs().front();  // Unreachable: every Command has a spec.
}

const CommandSpec* FindSpec(absl::string_view name) {
  for (const CommandSpec& spec : Specs()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool IsGlobalFlag(absl::string_view name) {
  return name == "address" || name == "token" || name == "timeout" || name == "output" ||
         absl::StartsWith(name, "tls");
}

bool IsRepeatableFlag(absl::string_view name) { return name == "header" || name == "http_header"; }

// The flags hourglassctl reads: the global ones and those of any command. Other Abseil flags
// linked into the binary (there are none today) are not part of its command line.
bool IsKnownFlag(absl::string_view name) {
  if (IsGlobalFlag(name)) return true;
  for (const CommandSpec& spec : Specs()) {
    if (std::find(spec.flags.begin(), spec.flags.end(), name) != spec.flags.end()) return true;
  }
  return false;
}

// The value placeholder of a flag in help texts.
std::string Placeholder(absl::string_view name) {
  static const auto* placeholders =
      new std::vector<std::pair<absl::string_view, absl::string_view>>{
          {"address", "HOST:PORT"},
          {"token", "SECRET"},
          {"tls_ca", "F"},
          {"tls_cert", "F"},
          {"tls_key", "F"},
          {"tls_server_name", "NAME"},
          {"timeout", "D"},
          {"output", "text|json"},
          {"queue", "Q"},
          {"id", "ID"},
          {"delay", "D"},
          {"at", "T"},
          {"payload", "STR"},
          {"payload_file", "F"},
          {"header", "k=v"},
          {"max_attempts", "N"},
          {"min_backoff", "D"},
          {"max_backoff", "D"},
          {"http_url", "URL"},
          {"http_header", "k=v"},
          {"grpc_address", "H:P"},
          {"grpc_method", "/pkg.Svc/M"},
          {"dispatch_deadline", "D"},
          {"max", "N"},
          {"lease", "D"},
          {"wait", "D"},
          {"error", "MSG"},
          {"retry_delay", "D"},
          {"state", "S"},
          {"page_size", "N"},
          {"page_token", "T"},
          {"service", "NAME"},
      };
  for (const auto& [flag, placeholder] : *placeholders) {
    if (flag == name) return std::string(placeholder);
  }
  return "";
}

// The flag's Abseil message ("Illegal value 'x' specified for flag 'delay'; <why>") reduced to
// "--delay: <why>".
std::string FlagError(absl::string_view name, absl::string_view value, absl::string_view error) {
  absl::string_view why = error;
  const size_t separator = why.find("'; ");
  if (absl::StartsWith(why, "Illegal value") && separator != absl::string_view::npos) {
    why = why.substr(separator + 3);
  }
  if (why.empty()) why = absl::StrCat("bad value \"", value, "\"");
  return absl::StrCat("--", name, ": ", why);
}

// Reads every flag into Options; `given` holds the names set on this command line.
Options ReadOptions(absl::string_view address_from_env, absl::string_view token_from_env,
                    const absl::btree_set<std::string>& given) {
  Options options;
  options.address = absl::GetFlag(FLAGS_address);
  if (!given.contains("address") && !address_from_env.empty()) {
    options.address = std::string(address_from_env);
  }
  options.token = absl::GetFlag(FLAGS_token);
  if (!given.contains("token")) options.token = std::string(token_from_env);
  options.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.tls = absl::GetFlag(FLAGS_tls) || !options.tls_ca.empty() || !options.tls_cert.empty() ||
                !options.tls_key.empty() || !options.tls_server_name.empty();
  options.timeout = absl::GetFlag(FLAGS_timeout).value;
  options.output = absl::GetFlag(FLAGS_output);
  options.queue = absl::GetFlag(FLAGS_queue);
  options.id = absl::GetFlag(FLAGS_id);
  options.delay = absl::GetFlag(FLAGS_delay).value;
  options.at = absl::GetFlag(FLAGS_at).value;
  options.payload = absl::GetFlag(FLAGS_payload);
  options.payload_file = absl::GetFlag(FLAGS_payload_file);
  options.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  options.min_backoff = absl::GetFlag(FLAGS_min_backoff).value;
  options.max_backoff = absl::GetFlag(FLAGS_max_backoff).value;
  options.http_url = absl::GetFlag(FLAGS_http_url);
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.grpc_method = absl::GetFlag(FLAGS_grpc_method);
  options.grpc_tls = absl::GetFlag(FLAGS_grpc_tls);
  options.dispatch_deadline = absl::GetFlag(FLAGS_dispatch_deadline).value;
  options.max = absl::GetFlag(FLAGS_max);
  options.lease = absl::GetFlag(FLAGS_lease).value;
  options.wait = absl::GetFlag(FLAGS_wait).value;
  options.error = absl::GetFlag(FLAGS_error);
  options.retry_delay = absl::GetFlag(FLAGS_retry_delay).value;
  options.state = absl::GetFlag(FLAGS_state).value;
  options.page_size = absl::GetFlag(FLAGS_page_size);
  options.page_token = absl::GetFlag(FLAGS_page_token);
  options.all = absl::GetFlag(FLAGS_all);
  options.service = absl::GetFlag(FLAGS_service);
  return options;
}

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

// The token goes into a gRPC metadata value: RFC 6750's b64token, the characters the server
// accepts in its tokens file. The errors name where the token came from and the position of a
// bad character, never the token itself (it may be a real one with a typo).
absl::Status CheckToken(const Invocation& invocation) {
  const std::string& token = invocation.options.token;
  const absl::string_view source = invocation.Given("token") ? "--token" : "$HOURGLASS_TOKEN";
  if (invocation.Given("token") && token.empty()) {
    return Usage("--token must not be empty (leave it out to send no token)");
  }
  for (size_t i = 0; i < token.size(); ++i) {
    const char c = token[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("-._~+/=").find(c) == std::string_view::npos) {
      return Usage(absl::StrCat(
          source, ": character ", i + 1,
          " of the token is not one of A-Z a-z 0-9 - . _ ~ + / = (the token is not shown)"));
    }
  }
  return absl::OkStatus();
}

// The TLS flags that make sense together; the files are read when the channel is made.
absl::Status CheckTls(const Invocation& invocation) {
  const Options& options = invocation.options;
  const std::pair<absl::string_view, const std::string*> files[] = {
      {"tls_ca", &options.tls_ca},
      {"tls_cert", &options.tls_cert},
      {"tls_key", &options.tls_key},
      {"tls_server_name", &options.tls_server_name}};
  for (const auto& [flag, value] : files) {
    if (invocation.Given(flag) && value->empty()) {
      return Usage(absl::StrCat("--", flag, " must not be empty"));
    }
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return Usage("a client certificate needs both --tls_cert and --tls_key");
  }
  return absl::OkStatus();
}

// Every flag of hourglassctl back to its default, so that a parse never sees the values of an
// earlier one (tests parse many command lines in one process).
void ResetFlags() {
  std::vector<std::string> names = GlobalFlags();
  for (const CommandSpec& spec : Specs()) {
    names.insert(names.end(), spec.flags.begin(), spec.flags.end());
  }
  for (const std::string& name : names) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (!flag->ParseFrom(flag->DefaultValue(), &error)) {
      // A default that does not parse back is a bug in this file, caught by every test.
      std::fprintf(stderr, "hourglassctl: default of --%s does not parse: %s\n", name.c_str(),
                   error.c_str());
      std::abort();
    }
  }
}

// The combinations of flags each command needs; the values themselves were checked by their
// flag types.
absl::Status CheckCombinations(const Invocation& invocation) {
  const Options& options = invocation.options;
  const std::string command = CommandName(*invocation.command);
  if (invocation.command == Command::kSchedule || invocation.command == Command::kReschedule) {
    if (invocation.Given("delay") == invocation.Given("at")) {
      return Usage(
          absl::StrCat(command, " needs exactly one of --delay and --at (--delay 0s for now)"));
    }
  }
  if (invocation.command == Command::kSchedule) {
    if (invocation.Given("payload") && invocation.Given("payload_file")) {
      return Usage("give either --payload or --payload_file, not both");
    }
    for (const auto* list : {&options.headers, &options.http_headers}) {
      absl::btree_set<std::string> keys;
      for (const auto& [key, value] : *list) {
        if (!keys.insert(key).second) {
          return Usage(absl::StrCat("--", list == &options.headers ? "header" : "http_header",
                                    ": \"", key, "\" is given twice"));
        }
      }
    }
    const bool http = invocation.Given("http_url");
    const bool grpc = invocation.Given("grpc_address") || invocation.Given("grpc_method") ||
                      invocation.Given("grpc_tls");
    if (http && grpc) {
      return Usage("a task has one push target: --http_url or --grpc_address, not both");
    }
    if (invocation.Given("http_header") && !http) {
      return Usage("--http_header needs --http_url");
    }
    if (grpc && (options.grpc_address.empty() || options.grpc_method.empty())) {
      return Usage("gRPC push delivery needs both --grpc_address and --grpc_method");
    }
    if (http && options.http_url.empty()) return Usage("--http_url must not be empty");
    if (invocation.Given("dispatch_deadline") && !http && !grpc) {
      return Usage("--dispatch_deadline applies to push tasks (--http_url or --grpc_address)");
    }
  }
  if (invocation.command == Command::kExtend && !invocation.Given("lease")) {
    return Usage("extend needs --lease, the new lease's length from now");
  }
  if (invocation.command == Command::kList && invocation.Given("page_token") &&
      options.page_token.empty()) {
    return Usage("--page_token must not be empty");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Invocation> ParseCommandLine(const std::vector<std::string>& args,
                                            absl::string_view address_from_env,
                                            absl::string_view token_from_env) {
  ResetFlags();
  Invocation invocation;
  std::vector<std::string> positional;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    absl::string_view body = absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
    std::string name(body.substr(0, body.find('=')));
    std::optional<std::string> value;
    if (body.find('=') != absl::string_view::npos) {
      value = std::string(body.substr(body.find('=') + 1));
    }
    absl::StrReplaceAll({{"-", "_"}}, &name);  // --page-size is --page_size.
    if (name == "help" || name == "h") {
      invocation.help = true;
      continue;
    }
    if (!IsKnownFlag(name) && absl::StartsWith(name, "no") && !value.has_value()) {
      // --noall is --all=false, as with Abseil's own parser.
      const std::string negated = name.substr(2);
      absl::CommandLineFlag* flag = absl::FindCommandLineFlag(negated);
      if (IsKnownFlag(negated) && flag != nullptr && flag->IsOfType<bool>()) {
        name = negated;
        value = "false";
      }
    }
    absl::CommandLineFlag* flag = IsKnownFlag(name) ? absl::FindCommandLineFlag(name) : nullptr;
    if (flag == nullptr) {
      return Usage(absl::StrCat("unknown flag ", arg));
    }
    if (!value.has_value()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "--")) {
        value = args[++i];
      } else {
        return Usage(
            absl::StrCat("--", name, " needs a value (--", name, "=", Placeholder(name), ")"));
      }
    }
    if (invocation.given.contains(name) && !IsRepeatableFlag(name)) {
      return Usage(absl::StrCat("--", name, " is given more than once"));
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return Usage(FlagError(name, *value, error));
    }
    if (IsRepeatableFlag(name)) {
      const KeyValue pair =
          name == "header" ? absl::GetFlag(FLAGS_header) : absl::GetFlag(FLAGS_http_header);
      if (pair.key.empty()) return Usage(absl::StrCat("--", name, ": \"\" is not key=value"));
      (name == "header" ? invocation.options.headers : invocation.options.http_headers)
          .emplace_back(pair.key, pair.value);
    }
    invocation.given.insert(name);
  }

  size_t next = 0;
  if (next < positional.size() && positional[next] == "help") {
    invocation.help = true;
    ++next;
  }
  if (next < positional.size()) {
    const CommandSpec* spec = FindSpec(positional[next]);
    if (spec == nullptr) {
      return Usage(absl::StrCat("unknown command \"", positional[next], "\""));
    }
    invocation.command = spec->command;
    ++next;
  }
  invocation.args.assign(positional.begin() + next, positional.end());

  auto headers = std::move(invocation.options.headers);
  auto http_headers = std::move(invocation.options.http_headers);
  invocation.options = ReadOptions(address_from_env, token_from_env, invocation.given);
  // Checked before help, so that a bad token is never sent; the messages never quote it.
  if (absl::Status status = CheckToken(invocation); !status.ok()) return status;
  if (absl::Status status = CheckTls(invocation); !status.ok()) return status;
  invocation.options.headers = std::move(headers);
  invocation.options.http_headers = std::move(http_headers);
  if (invocation.help) return invocation;

  if (!invocation.command.has_value()) return Usage("no command given");
  const CommandSpec& spec = SpecOf(*invocation.command);
  for (const std::string& name : invocation.given) {
    if (!IsGlobalFlag(name) &&
        std::find(spec.flags.begin(), spec.flags.end(), name) == spec.flags.end()) {
      return Usage(absl::StrCat("--", name, " does not apply to ", spec.name));
    }
  }
  if (invocation.args.size() != spec.args.size()) {
    std::string expected =
        spec.args.empty()
            ? "no arguments"
            : absl::StrCat(spec.args.size(), spec.args.size() == 1 ? " argument (" : " arguments (",
                           absl::StrJoin(spec.args, " "), ")");
    return Usage(absl::StrCat(
        spec.name, " takes ", expected, ", got ", invocation.args.size(),
        invocation.args.empty() ? "" : absl::StrCat(": ", absl::StrJoin(invocation.args, " "))));
  }
  for (size_t a = 0; a < invocation.args.size(); ++a) {
    if (invocation.args[a].empty()) {
      return Usage(absl::StrCat(spec.name, ": ", spec.args[a], " must not be empty"));
    }
  }
  if (absl::Status status = CheckCombinations(invocation); !status.ok()) return status;
  return invocation;
}

// --- help --------------------------------------------------------------------------------

std::string CommandName(Command command) { return std::string(SpecOf(command).name); }

std::vector<Command> AllCommands() {
  std::vector<Command> commands;
  for (const CommandSpec& spec : Specs()) commands.push_back(spec.command);
  return commands;
}

std::vector<std::string> CommandFlags(Command command) { return SpecOf(command).flags; }

std::vector<std::string> GlobalFlags() {
  return {"address", "token",           "tls",     "tls_ca", "tls_cert",
          "tls_key", "tls_server_name", "timeout", "output"};
}

namespace {

// "  --delay=D          due this long from now (0s: now)" with the default when it says
// something, wrapped at 100 columns.
// A flag whose meaning depends on the command is explained for that command.
struct CommandFlagHelp {
  Command command;
  absl::string_view flag;
  absl::string_view help;
  bool show_default;
};
constexpr CommandFlagHelp kCommandFlagHelp[] = {
    {Command::kSchedule, "queue", "queue name, [A-Za-z0-9._-]{1,200} (default \"default\")", false},
    {Command::kLease, "queue", "queue name, [A-Za-z0-9._-]{1,200} (default \"default\")", false},
    {Command::kList, "queue", "only tasks of this queue (default: every queue)", false},
    {Command::kLease, "lease", "how long the consumer holds the tasks, 1s to 12h", true},
    {Command::kExtend, "lease", "the new lease's length from now, 1s to 12h (required)", false},
};

std::string FlagHelp(absl::string_view name, std::optional<Command> command = std::nullopt) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  std::string head = absl::StrCat("  --", name);
  const std::string placeholder = Placeholder(name);
  if (!placeholder.empty()) absl::StrAppend(&head, "=", placeholder);
  std::string text = flag->Help();
  const std::string default_value = flag->DefaultValue();
  bool says_something = !default_value.empty() && default_value != "0" &&
                        default_value != "false" && name != "max_attempts";
  for (const CommandFlagHelp& special : kCommandFlagHelp) {
    if (special.command == command && special.flag == name) {
      text = std::string(special.help);
      says_something = special.show_default;
    }
  }
  if (says_something) absl::StrAppend(&text, " (default ", default_value, ")");
  if (IsRepeatableFlag(name)) absl::StrAppend(&text, " [repeatable]");
  constexpr size_t kHelpColumn = 26;
  constexpr size_t kWidth = 100;
  std::string out = head;
  if (out.size() + 2 > kHelpColumn) {
    out += "\n";
    out += std::string(kHelpColumn, ' ');
  } else {
    out += std::string(kHelpColumn - out.size(), ' ');
  }
  size_t column = kHelpColumn;
  bool first = true;
  for (absl::string_view word : absl::StrSplit(text, ' ')) {
    if (!first && column + 1 + word.size() > kWidth) {
      out += "\n";
      out += std::string(kHelpColumn, ' ');
      column = kHelpColumn;
      first = true;
    }
    if (!first) {
      out += " ";
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
    first = false;
  }
  return out + "\n";
}

constexpr absl::string_view kFormats =
    "Durations: a number with a unit: 500ms, 90s, 15m, 2h, 1h30m, 7d, 1d12h.\n"
    "Times: RFC 3339 with an offset: 2026-12-01T03:00:00Z, 2026-12-01T04:00:00.5+01:00.\n"
    "Flags take --flag=value or --flag value; -- ends the flags (for an ID starting with -).\n";

}  // namespace

std::string OverviewHelp() {
  std::string out =
      "hourglassctl: the command-line client of hourglass, the delayed-task service.\n"
      "\n"
      "Usage: hourglassctl [--address=HOST:PORT] [--token=SECRET] [--timeout=D] "
      "[--output=text|json]\n"
      "                    [--tls] [--tls_ca=F] [--tls_cert=F --tls_key=F] "
      "[--tls_server_name=NAME]\n"
      "                    <command> [args] [flags]\n"
      "\n"
      "Commands:\n";
  for (const CommandSpec& spec : Specs()) {
    absl::StrAppend(&out, "  ", spec.name, std::string(12 - spec.name.size(), ' '), spec.summary,
                    "\n");
  }
  absl::StrAppend(&out, "\nGlobal flags (before or after the command):\n");
  for (const std::string& name : GlobalFlags()) absl::StrAppend(&out, FlagHelp(name));
  absl::StrAppend(&out, "\n", kFormats, "\nExit codes:\n", ExitCodesHelp(),
                  "\nExamples:\n"
                  "  hourglassctl schedule --queue emails --delay 90s --payload hello\n"
                  "  hourglassctl lease --queue emails --wait 10s\n"
                  "  hourglassctl ack 01M8GZB7W5SB0FKRYVV8A3MZR9 7c1d0e4a9b\n"
                  "  hourglassctl --address=hourglass.example.com:7070 list --state dead --all\n"
                  "\n"
                  "Run \"hourglassctl <command> --help\" for a command's arguments, flags and "
                  "examples.\n");
  return out;
}

std::string CommandHelp(Command command) {
  const CommandSpec& spec = SpecOf(command);
  std::string out = absl::StrCat("hourglassctl ", spec.name, ": ", spec.summary,
                                 "\n\nUsage: hourglassctl [global flags] ", spec.synopsis, "\n\n",
                                 spec.description, "\n");
  if (!spec.args.empty()) {
    absl::StrAppend(&out, "\nArguments:\n");
    for (absl::string_view arg : spec.args) {
      absl::StrAppend(&out, "  ", arg, std::string(24 - arg.size(), ' '),
                      arg == "ID" ? "the task's id" : "the lease_token printed by lease", "\n");
    }
  }
  if (!spec.flags.empty()) {
    absl::StrAppend(&out, "\nFlags:\n");
    for (const std::string& name : spec.flags) absl::StrAppend(&out, FlagHelp(name, command));
  }
  absl::StrAppend(&out, "\nGlobal flags:\n");
  for (const std::string& name : GlobalFlags()) absl::StrAppend(&out, FlagHelp(name));
  absl::StrAppend(&out, "\nExamples:\n");
  for (absl::string_view example : spec.examples) absl::StrAppend(&out, "  ", example, "\n");
  absl::StrAppend(&out, "\n", kFormats, "\nExit codes:\n", ExitCodesHelp());
  return out;
}

}  // namespace hourglass::ctl
