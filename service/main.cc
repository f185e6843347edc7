// hourglass: the delayed-task server. main() only parses flags, starts the Server and waits for
// SIGTERM/SIGINT; everything else lives in the hourglass::service library, which the tests share.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/logging.h"
#include "service/server.h"
#include "wheel/clock.h"

ABSL_FLAG(std::string, grpc_address, "0.0.0.0:7070",
          "Address (host:port) of the gRPC API: SchedulerService, ConsumerService, grpc.health.v1 "
          "and server reflection. Port 0 picks a free port; the chosen one is logged in the "
          "server_started line.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9464",
          "Address (host:port) where Prometheus scrapes /metrics. Port 0 picks a free port. Empty "
          "turns the metrics endpoint off.");
ABSL_FLAG(std::string, data_dir, "./data",
          "Directory of the write-ahead log (log-*.wal), created if missing and locked so that "
          "no second server uses it. Every acknowledged change is in it; a start replays it "
          "before the gRPC port opens.");
ABSL_FLAG(std::string, fsync, "always",
          "always: answer a change only after its log record is fdatasync()ed (one sync per "
          "group of concurrent changes); survives a machine crash. never: leave writing back to "
          "the operating system; survives a crash of the process, but a machine crash loses the "
          "last seconds. For benchmarks and caches.");
ABSL_FLAG(int64_t, snapshot_bytes, int64_t{64} << 20,
          "Write a snapshot of the tasks to --data_dir after this many bytes of log records (or "
          "twice the last snapshot's size, if larger), then delete the log it covers, so that the "
          "directory grows with the live tasks, not with their history. 0: never.");
ABSL_FLAG(bool, skip_corrupt_log, false,
          "Start even when the log is corrupt before its end, dropping the damaged records (and "
          "the changes in them) instead of refusing to start. For an operator who has read the "
          "error and accepts the loss.");
ABSL_FLAG(int, workers, 4,
          "Worker threads that apply fired timers (a task becoming due, a lease expiring, a wait "
          "ending) and hand ready tasks to waiting consumers. 1 to 1024.");
ABSL_FLAG(
    int64_t, queue_capacity, 10000,
    "Capacity of the dispatch queue between the tick thread and the workers. When it is "
    "full the tick thread waits: tasks become late (see hourglass_dispatch_lateness_seconds), "
    "never lost.");
ABSL_FLAG(
    std::string, log_level, "info",
    "Lowest level logged to stderr, one JSON object per line: debug (every task event), info, "
    "warning or error.");
ABSL_FLAG(absl::Duration, retention, absl::Hours(24),
          "How long finished tasks (SUCCEEDED, CANCELLED, DEAD) stay visible to GetStatus and keep "
          "their task_id reserved for idempotent Schedule. A duration such as 90m, 24h or 0s.");
ABSL_FLAG(int64_t, max_payload_bytes, 1 << 20,
          "Largest payload Schedule accepts, in bytes; larger ones are INVALID_ARGUMENT.");
ABSL_FLAG(absl::Duration, max_delay, absl::Hours(24 * 730),
          "Furthest in the future a task may be due (delay or at), as a duration in hours or "
          "smaller units (17520h is 730 days). Further is INVALID_ARGUMENT, never clamped. At most "
          "the timing wheel's horizon (about 794 days).");
ABSL_FLAG(int64_t, max_pending, 5'000'000,
          "Most unfinished tasks (scheduled, ready or leased, across all queues) the server "
          "holds. Schedule beyond it is RESOURCE_EXHAUSTED with a retry hint (retry-after-ms, "
          "google.rpc.RetryInfo); repeats of accepted tasks are still answered. Size it to the "
          "memory: a task costs about 600 bytes plus its payload. 0: no limit.");
ABSL_FLAG(int, max_grpc_threads, 64,
          "Most threads gRPC may start for synchronous handlers (server reflection); hourglass's "
          "own services never hold a thread while they wait. 0: no bound, else at least 2.");
ABSL_FLAG(int64_t, grpc_memory_bytes, int64_t{256} << 20,
          "Memory gRPC may take for connections, buffers and calls in flight (a "
          "grpc::ResourceQuota). Under pressure gRPC shrinks its read buffers, then closes idle "
          "connections and, last, cancels calls. At least 16 MiB and 4 of the largest requests; "
          "0: no bound.");
ABSL_FLAG(int, push_workers, 16,
          "Threads that deliver push tasks (http_target, grpc_target): each makes one HTTP or "
          "gRPC call at a time and waits for it, at most the task's dispatch_deadline. 1 to 4096.");
ABSL_FLAG(int, queue_concurrency, 0,
          "Push deliveries in progress per queue, at most; the rest wait READY. A slow or dead "
          "endpoint then holds up only its own queue. 0 means a quarter of --push_workers (at "
          "least 1).");
ABSL_FLAG(std::string, push_allowlist, "",
          "Comma-separated CIDRs (10.2.0.0/16,fd00::/8,127.0.0.1/32) that push targets may "
          "connect to although they are loopback, private, shared, link-local (169.254.0.0/16, "
          "cloud metadata included) or unique-local addresses, which are refused by default. "
          "Every address actually connected to is checked; redirects are never followed.");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM or SIGINT: how long shutdown may take. Health turns NOT_SERVING, waiting "
          "Lease calls and new calls get UNAVAILABLE at once; after a second (or the grace, if "
          "shorter) the port closes and calls still in flight are cancelled when the grace ends.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of bearer tokens, one a line: <token> <queues> <permissions>, queues * or a comma "
          "list, permissions a comma list of schedule, consume, admin; # comments. Clients send "
          "\"authorization: Bearer <token>\". Re-read within a second when it changes (a bad "
          "new version is logged and the old tokens kept). Empty: no authentication, anyone may "
          "call (a warning is logged). See docs/security.md.");

ABSL_FLAG(std::string, tls_cert, "",
          "PEM file of the certificate chain (leaf first) the gRPC port serves; with --tls_key, "
          "the port speaks TLS only (health and reflection too; /metrics stays plain HTTP). "
          "Checked at start (a bad file stops the server) and re-read when it changes, see "
          "--tls_reload_interval. Empty: plaintext. See docs/security.md.");
ABSL_FLAG(std::string, tls_key, "",
          "PEM file of the unencrypted private key of --tls_cert. Never logged.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM file of the CA certificates that client certificates must chain to (mTLS): a "
          "client without a valid certificate of one of them is refused in the handshake. Needs "
          "--tls_cert and --tls_key. Empty: no client certificates are asked for.");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Minutes(1),
          "How often the TLS files are checked for changes (stat). A changed set is checked and "
          "served to new connections (open ones keep theirs); a bad one is logged "
          "(tls_reload_failed) and the previous certificate kept. 100ms to 24h.");

namespace {

constexpr const char* kFlagNames[] = {
    "grpc_address",     "metrics_address",   "data_dir",          "fsync",
    "snapshot_bytes",   "skip_corrupt_log",  "workers",           "queue_capacity",
    "log_level",        "retention",         "max_payload_bytes", "max_delay",
    "push_workers",     "queue_concurrency", "push_allowlist",    "shutdown_grace",
    "auth_tokens_file", "max_pending",       "max_grpc_threads",  "grpc_memory_bytes",
    "tls_cert",         "tls_key",           "tls_client_ca",     "tls_reload_interval"};

constexpr const char* kUsage =
    "hourglass: a delayed-task service. Clients Schedule a payload to be delivered after a delay "
    "or at a time, may Cancel, Reschedule or GetStatus it, and consumers Lease, Ack and Nack due "
    "tasks, or hourglass calls the task's HTTP or gRPC endpoint when it is due (push delivery), "
    "all over gRPC (package hourglass.v1). Metrics for Prometheus are served at "
    "/metrics.\n\nUsage: hourglass [--flag=value ...]";

std::string WrapText(const std::string& text, size_t indent, size_t width) {
  std::string out;
  size_t column = 0;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > 0 && column + 1 + word.size() > width) {
      absl::StrAppend(&out, "\n", std::string(indent, ' '));
      column = 0;
    } else if (column > 0) {
      out += ' ';
      ++column;
    }
    absl::StrAppend(&out, word);
    column += word.size();
  }
  return out;
}

void PrintHelp() {
  std::string text;
  for (absl::string_view paragraph : absl::StrSplit(kUsage, "\n\n")) {
    absl::StrAppend(&text, WrapText(std::string(paragraph), 0, 94), "\n\n");
  }
  absl::StrAppend(&text, "Flags:\n");
  for (const char* name : kFlagNames) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    absl::StrAppend(&text, "  --", name, " (default: ", flag->DefaultValue(), ")\n      ",
                    WrapText(flag->Help(), 6, 88), "\n");
  }
  absl::StrAppend(&text,
                  "\nDurations take units: 500ms, 10s, 90m, 24h. Logs go to stderr as JSON lines; "
                  "payloads are never logged.\n");
  std::fputs(text.c_str(), stdout);
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-help" || arg == "-h" || arg == "--helpshort") return true;
  }
  return false;
}

int Fail(absl::string_view event, absl::string_view message) {
  hourglass::LogError(event).Str("error", message);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil is built with its debug checks, so every absl::Mutex acquisition (ours and
  // gRPC's) also maintains a global lock-order graph for deadlock detection: 680 ns instead of
  // 110 ns for a pair of nested locks on the benchmark machine. The tests keep the detection.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(kUsage);
  if (WantsHelp(argc, argv)) {
    PrintHelp();
    return 0;
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    return Fail("bad_flags", absl::StrCat("unexpected argument \"", positional[1],
                                          "\"; flags take the form --name=value (see --help)"));
  }

  hourglass::LogLevel level;
  if (!hourglass::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    return Fail("bad_flags",
                absl::StrCat("--log_level must be debug, info, warning or error, got \"",
                             absl::GetFlag(FLAGS_log_level), "\""));
  }
  hourglass::SetLogLevel(level);
  hourglass::RouteGrpcLogs();

  hourglass::ServerOptions options;
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  const std::string fsync = absl::GetFlag(FLAGS_fsync);
  if (fsync != "always" && fsync != "never") {
    return Fail("bad_flags", absl::StrCat("--fsync must be always or never, got \"", fsync, "\""));
  }
  options.fsync = fsync == "always";
  options.skip_corrupt_log = absl::GetFlag(FLAGS_skip_corrupt_log);
  if (absl::GetFlag(FLAGS_snapshot_bytes) < 0) {
    return Fail("bad_flags", absl::StrCat("--snapshot_bytes must be >= 0, got ",
                                          absl::GetFlag(FLAGS_snapshot_bytes)));
  }
  options.snapshot_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_snapshot_bytes));
  options.workers = absl::GetFlag(FLAGS_workers);
  const int64_t capacity = absl::GetFlag(FLAGS_queue_capacity);
  if (capacity < 1) {
    return Fail("bad_flags", absl::StrCat("--queue_capacity must be >= 1, got ", capacity));
  }
  options.queue_capacity = static_cast<size_t>(capacity);
  options.retention = absl::GetFlag(FLAGS_retention);
  options.limits.max_payload_bytes = absl::GetFlag(FLAGS_max_payload_bytes);
  options.limits.max_delay = absl::GetFlag(FLAGS_max_delay);
  options.max_pending = absl::GetFlag(FLAGS_max_pending);
  options.max_grpc_threads = absl::GetFlag(FLAGS_max_grpc_threads);
  options.grpc_memory_bytes = absl::GetFlag(FLAGS_grpc_memory_bytes);
  options.shutdown_grace = absl::GetFlag(FLAGS_shutdown_grace);
  options.push_workers = absl::GetFlag(FLAGS_push_workers);
  options.queue_concurrency = absl::GetFlag(FLAGS_queue_concurrency);
  options.push_allowlist = absl::GetFlag(FLAGS_push_allowlist);
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.tls = {.cert_file = absl::GetFlag(FLAGS_tls_cert),
                 .key_file = absl::GetFlag(FLAGS_tls_key),
                 .client_ca_file = absl::GetFlag(FLAGS_tls_client_ca)};
  options.tls_reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);

  // SIGTERM and SIGINT are taken by sigwait() below: block them before any thread starts, so
  // that every thread inherits the mask and none is interrupted.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<hourglass::Server>> server =
      hourglass::Server::Create(options, hourglass::SystemClock::Get());
  if (!server.ok()) return Fail("start_failed", server.status().message());

  const std::string host = options.grpc_address.substr(0, options.grpc_address.rfind(':'));
  hourglass::LogInfo("server_started")
      .Str("version", HOURGLASS_VERSION)
      .Str("grpc_address", absl::StrCat(host, ":", (*server)->grpc_port()))
      .Str("metrics_address", (*server)->metrics_address())
      .Str("data_dir", options.data_dir)
      .Str("fsync", fsync)
      .Int("workers", options.workers)
      .Int("queue_capacity", capacity)
      .Bool("auth", !options.auth_tokens_file.empty())
      .Str("tls", !options.tls.enabled() ? "off"
                  : options.tls.mutual() ? "mutual"
                                         : "server")
      .Dur("retention_seconds", options.retention);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  hourglass::LogInfo("shutdown_started")
      .Str("signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT")
      .Dur("grace_seconds", options.shutdown_grace);
  const absl::Time start = absl::Now();
  (*server)->Shutdown();
  hourglass::LogInfo("shutdown_complete").Dur("seconds", absl::Now() - start);
  return 0;
}
