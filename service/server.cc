#include "service/server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "prometheus/exposer.h"
#include "service/auth.h"
#include "service/consumer_service.h"
#include "service/logging.h"
#include "service/metrics.h"
#include "service/parse_errors.h"
#include "service/scheduler_service.h"
#include "service/tls.h"
#include "store/file.h"
#include "store/wal.h"
#include "wheel/ticker.h"
#include "workers/address_policy.h"
#include "workers/bounded_queue.h"
#include "workers/grpc_pusher.h"
#include "workers/http_pusher.h"
#include "workers/pull_deliverer.h"
#include "workers/push_dispatcher.h"
#include "workers/worker_pool.h"

namespace hourglass {

static_assert(PullDeliverer::kCookieBit == TaskStore::kExternalCookieBit,
              "Lease wait timers and task timers share the wheel and must not share cookies");

namespace {

constexpr absl::Duration kLameDuck = absl::Seconds(1);

// A write or sync of the log failed: what was not made durable must never be acknowledged, and
// the log's end is unknown. Stop at once; the next start recovers up to the last durable record.
[[noreturn]] void ExitOnLogFailure(const absl::Status& status) {
  LogError("log_write_failed")
      .Str("error", status.ToString())
      .Str("action", "exiting; the next start recovers every acknowledged change");
  std::_Exit(1);
}
constexpr absl::Duration kFlushTime = absl::Milliseconds(200);

constexpr const char* kServiceNames[] = {"hourglass.v1.SchedulerService",
                                         "hourglass.v1.ConsumerService"};

// An exclusive lock on <data_dir>/LOCK, held for the server's life, so that two servers never
// share a data directory.
class DataDirLock {
 public:
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(const std::string& data_dir) {
    std::error_code error;
    std::filesystem::create_directories(data_dir, error);
    if (error) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create --data_dir \"", data_dir, "\": ", error.message()));
    }
    const std::string path = (std::filesystem::path(data_dir) / "LOCK").string();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      return absl::FailedPreconditionError(absl::StrCat(
          "--data_dir \"", data_dir, "\" is in use by another hourglass process (", path,
          " is locked: ", std::strerror(err), "); give each server its own data directory"));
    }
    return std::unique_ptr<DataDirLock>(new DataDirLock(fd));
  }
  ~DataDirLock() { ::close(fd_); }

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  const int fd_;
};

// Push tasks of the TaskStore, for the PushDispatcher: claims them, and records each outcome in
// the store, the metrics and the log.
class StorePushSource final : public PushSource {
 public:
  StorePushSource(TaskStore& store, Metrics& metrics) : store_(store), metrics_(metrics) {}

  std::optional<PushJob> Claim(const std::string& queue) override {
    std::optional<PushTask> task = store_.ClaimPush(queue);
    if (!task.has_value()) return std::nullopt;
    PushJob job;
    job.lease_token = std::move(task->lease_token);
    PushRequest& request = job.request;
    PushTarget& target = task->target;
    request.kind = target.kind == PushTarget::Kind::kHttp ? PushRequest::Kind::kHttp
                                                          : PushRequest::Kind::kGrpc;
    request.url = std::move(target.url);
    request.address = std::move(target.address);
    request.method = std::move(target.method);
    request.tls = target.tls;
    request.headers = std::move(target.http_headers);
    request.headers.insert(request.headers.end(), task->headers.begin(), task->headers.end());
    request.body = std::move(task->payload);
    request.deadline = target.dispatch_deadline;
    request.task_id = std::move(task->task_id);
    request.queue = std::move(task->queue);
    request.attempt = task->attempt;
    request.due_time = task->due_time;
    return job;
  }

  void Finish(const PushJob& job, const PushResult& result) override {
    const PushRequest& request = job.request;
    PushOutcome outcome;
    const char* label = "succeeded";
    switch (result.outcome) {
      case PushResult::Outcome::kSucceeded:
        outcome.kind = PushOutcome::Kind::kSucceeded;
        break;
      case PushResult::Outcome::kRetry:
        outcome.kind = PushOutcome::Kind::kRetry;
        label = "retried";
        break;
      case PushResult::Outcome::kPermanent:
        outcome.kind = PushOutcome::Kind::kDead;
        label = "dead";
        break;
      case PushResult::Outcome::kRefused:
        outcome.kind = PushOutcome::Kind::kDead;
        label = "refused";
        break;
      case PushResult::Outcome::kAborted:
        outcome.kind = PushOutcome::Kind::kReleased;
        label = "released";
        break;
    }
    outcome.error = result.error;
    outcome.retry_after = result.retry_after;
    absl::StatusOr<TaskInfo> info = store_.FinishPush(request.task_id, job.lease_token, outcome);
    if (!info.ok()) {
      // The claim ran out (its lease expired) and the task moved on: nothing to record.
      LogWarning("push_result_dropped")
          .Str("task_id", request.task_id)
          .Str("queue", request.queue)
          .Str("reason", std::string(info.status().message()));
      return;
    }
    if (outcome.kind == PushOutcome::Kind::kRetry && info->state == TaskState::kDead) {
      label = "dead";
    }
    const char* target = request.kind == PushRequest::Kind::kHttp ? "http" : "grpc";
    metrics_.PushAttempted(request.queue, target, label, result.elapsed);
    if (info->state == TaskState::kDead) {
      LogInfo("task_dead")
          .Str("task_id", request.task_id)
          .Str("queue", request.queue)
          .Int("attempts", info->attempts)
          .Str("reason", result.error);
    } else if (LogEnabled(LogLevel::kDebug)) {
      LogDebug("push_attempted")
          .Str("task_id", request.task_id)
          .Str("queue", request.queue)
          .Str("target", target)
          .Str("outcome", label)
          .Int("attempt", request.attempt)
          .Str("error", result.error)
          .Dur("seconds", result.elapsed);
    }
  }

 private:
  TaskStore& store_;
  Metrics& metrics_;
};

// The largest request gRPC receives: room for the largest valid payload plus headers, ids and
// framing.
int64_t MaxReceiveMessageBytes(const Limits& limits) {
  return std::min<int64_t>(std::max<int64_t>(4 << 20, limits.max_payload_bytes + (1 << 20)),
                           INT32_MAX);
}
// --max_grpc_threads: one thread polls for synchronous calls, one more runs them.
constexpr int kMinGrpcThreads = 2;
// --grpc_memory_bytes: room for a few of the largest requests at once.
int64_t MinGrpcMemoryBytes(const Limits& limits) {
  return std::max<int64_t>(int64_t{16} << 20, 4 * MaxReceiveMessageBytes(limits));
}

int QueueConcurrency(const ServerOptions& options) {
  return options.queue_concurrency > 0 ? options.queue_concurrency
                                       : std::max(1, options.push_workers / 4);
}

}  // namespace

absl::Status ValidateOptions(const ServerOptions& options) {
  if (absl::Status s = ValidateTlsFlags(options.tls, options.tls_reload_interval); !s.ok()) {
    return s;
  }
  if (options.workers < 1 || options.workers > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--workers must be between 1 and 1024, got ", options.workers));
  }
  if (options.queue_capacity < 1 || options.queue_capacity > (size_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--queue_capacity must be between 1 and 1073741824, got ", options.queue_capacity));
  }
  // The wheel covers 2^36 ms (about 795 days); every timer must fit inside it.
  const absl::Duration horizon = absl::Milliseconds(TimingWheel::kHorizonMs) - absl::Hours(24);
  if (options.limits.max_delay <= absl::ZeroDuration() || options.limits.max_delay > horizon) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_delay must be > 0 and <= ", absl::FormatDuration(horizon),
                     " (the timing wheel's horizon less a day), got ",
                     absl::FormatDuration(options.limits.max_delay)));
  }
  if (options.retention < absl::ZeroDuration() || options.retention > horizon) {
    return absl::InvalidArgumentError(
        absl::StrCat("--retention must be >= 0 and <= ", absl::FormatDuration(horizon), ", got ",
                     absl::FormatDuration(options.retention)));
  }
  if (options.limits.max_payload_bytes < 0 ||
      options.limits.max_payload_bytes > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_payload_bytes must be between 0 and 1073741824, got ",
                     options.limits.max_payload_bytes));
  }
  if (options.push_workers < 1 || options.push_workers > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--push_workers must be between 1 and 4096, got ", options.push_workers));
  }
  if (options.queue_concurrency < 0 || options.queue_concurrency > options.push_workers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--queue_concurrency must be between 0 (a quarter of --push_workers) and --push_workers (",
        options.push_workers, "), got ", options.queue_concurrency));
  }
  if (absl::StatusOr<AddressPolicy> policy = AddressPolicy::Create(options.push_allowlist);
      !policy.ok()) {
    return policy.status();
  }
  if (options.shutdown_grace < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--shutdown_grace must be >= 0, got ",
                                                   absl::FormatDuration(options.shutdown_grace)));
  }
  if (options.max_pending < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_pending must be >= 0 (0: no limit), got ", options.max_pending));
  }
  if (options.max_grpc_threads != 0 &&
      (options.max_grpc_threads < kMinGrpcThreads || options.max_grpc_threads > 100000)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_grpc_threads must be 0 (no bound) or between ", kMinGrpcThreads,
                     " and 100000, got ", options.max_grpc_threads));
  }
  if (const int64_t least = MinGrpcMemoryBytes(options.limits);
      options.grpc_memory_bytes != 0 &&
      (options.grpc_memory_bytes < least || options.grpc_memory_bytes > (int64_t{1} << 40))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--grpc_memory_bytes must be 0 (no bound) or between ", least,
        " (4 of the largest requests that --max_payload_bytes admits, at least 16 MiB) and "
        "1099511627776, got ",
        options.grpc_memory_bytes));
  }
  return absl::OkStatus();
}

// Members in construction order; destroyed in reverse.
struct Server::Parts {
  Parts(const ServerOptions& o, Clock& c, AddressPolicy address_policy)
      : options(o),
        clock(c),
        push_policy(std::move(address_policy)),
        http_pusher(push_policy),
        grpc_pusher(push_policy),
        context(c, metrics),
        dispatch_queue(o.queue_capacity),
        ticker(c, [this](std::vector<uint64_t> cookies) { Dispatch(std::move(cookies)); }),
        wal({.dir = o.data_dir,
             .fs = o.file_system != nullptr ? o.file_system : &PosixFileSystem::Get(),
             .sync = o.fsync,
             .segment_bytes = o.log_segment_bytes,
             .snapshot_bytes = o.snapshot_bytes,
             .skip_corruption = o.skip_corrupt_log,
             .on_fatal = [](const absl::Status& status) { ExitOnLogFailure(status); },
             .observer = &metrics}),
        store(c, ticker, {.retention = o.retention, .max_pending = o.max_pending}, &wal),
        pull(ticker),
        push_source(store, metrics),
        push(push_source, http_pusher, grpc_pusher,
             {.threads = o.push_workers, .queue_concurrency = QueueConcurrency(o)}),
        scheduler(context, store, LimitsWithPolicy(o.limits, push_policy)),
        consumer(context, store, pull, o.limits) {}

  static Limits LimitsWithPolicy(Limits limits, const AddressPolicy& policy) {
    limits.push_policy = &policy;
    return limits;
  }

  // Tick thread: hands fired timers to the workers. Blocks while the queue is full, so timers are
  // late, never dropped; returns early only when the queue is closed at shutdown.
  void Dispatch(std::vector<uint64_t> cookies) {
    for (uint64_t cookie : cookies) {
      if (!dispatch_queue.Push(cookie)) return;
    }
  }

  // Worker threads: applies one fired timer.
  void HandleTimer(uint64_t cookie) {
    if ((cookie & PullDeliverer::kCookieBit) != 0) {
      pull.OnTimer(cookie);
      return;
    }
    const TimerOutcome outcome = store.OnTimer(cookie);
    switch (outcome.kind) {
      case TimerOutcome::Kind::kReady:
        metrics.ObserveLateness(outcome.lateness);
        if (outcome.push) {
          push.Notify(outcome.queue);
        } else {
          pull.Deliver({.task_id = outcome.task_id, .queue = outcome.queue});
        }
        break;
      case TimerOutcome::Kind::kLeaseRetry:
        metrics.Delivered(outcome.queue, Metrics::Outcome::kRetried);
        if (LogEnabled(LogLevel::kDebug)) {
          LogDebug("lease_expired").Str("task_id", outcome.task_id).Str("queue", outcome.queue);
        }
        break;
      case TimerOutcome::Kind::kLeaseDead:
        metrics.Delivered(outcome.queue, Metrics::Outcome::kDead);
        LogInfo("task_dead")
            .Str("task_id", outcome.task_id)
            .Str("queue", outcome.queue)
            .Str("reason", "lease expired on the last attempt");
        break;
      case TimerOutcome::Kind::kForgotten:
      case TimerOutcome::Kind::kStale:
        break;
    }
  }

  void AddGauges() {
    metrics.AddGaugeSource([this](std::vector<prometheus::MetricFamily>* out) {
      prometheus::MetricFamily tasks =
          GaugeFamily("hourglass_tasks",
                      "Tasks the server holds, by queue and state (finished ones while retained).");
      for (const QueueCounts& counts : store.Counts()) {
        for (int s = 1; s < kTaskStateCount; ++s) {
          std::string state(TaskStateName(static_cast<TaskState>(s)));
          for (char& ch : state)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          AddGauge(&tasks, static_cast<double>(counts.by_state[s]),
                   {{"queue", counts.queue}, {"state", state}});
        }
      }
      out->push_back(std::move(tasks));
      prometheus::MetricFamily depth =
          GaugeFamily("hourglass_dispatch_queue_depth",
                      "Fired timers waiting in the dispatch queue for a worker.");
      AddGauge(&depth, static_cast<double>(dispatch_queue.size()));
      out->push_back(std::move(depth));
      prometheus::MetricFamily capacity =
          GaugeFamily("hourglass_dispatch_queue_capacity",
                      "Capacity of the dispatch queue (--queue_capacity).");
      AddGauge(&capacity, static_cast<double>(dispatch_queue.capacity()));
      out->push_back(std::move(capacity));
      prometheus::MetricFamily timers =
          GaugeFamily("hourglass_timers", "Timers armed in the timing wheel.");
      AddGauge(&timers, static_cast<double>(ticker.size()));
      out->push_back(std::move(timers));
      prometheus::MetricFamily waiters =
          GaugeFamily("hourglass_lease_waiters", "Lease calls parked waiting for a ready task.");
      AddGauge(&waiters, static_cast<double>(pull.parked()));
      out->push_back(std::move(waiters));
      prometheus::MetricFamily push_in_flight =
          GaugeFamily("hourglass_push_in_flight",
                      "Push deliveries in progress, by queue (at most "
                      "--queue_concurrency each).");
      for (const auto& [queue, n] : push.InFlight()) {
        AddGauge(&push_in_flight, static_cast<double>(n), {{"queue", queue}});
      }
      out->push_back(std::move(push_in_flight));
      prometheus::MetricFamily wakeups;
      wakeups.name = "hourglass_ticker_wakeups_total";
      wakeups.help = "Times the tick thread woke up (it sleeps while nothing is due).";
      wakeups.type = prometheus::MetricType::Counter;
      wakeups.metric.emplace_back().counter.value = static_cast<double>(ticker.wakeups());
      out->push_back(std::move(wakeups));
    });
  }

  const ServerOptions options;
  Clock& clock;
  const AddressPolicy push_policy;
  HttpPusher http_pusher;
  GrpcPusher grpc_pusher;
  std::unique_ptr<DataDirLock> data_dir_lock;
  std::unique_ptr<TokenFile> tokens;     // null: no authentication
  std::unique_ptr<TlsCertificates> tls;  // null: plaintext; outlives grpc_server
  Metrics metrics;
  RpcContext context;
  BoundedQueue<uint64_t> dispatch_queue;
  Ticker ticker;
  Wal wal;
  TaskStore store;
  PullDeliverer pull;
  StorePushSource push_source;
  PushDispatcher push;
  SchedulerServiceImpl scheduler;
  ConsumerServiceImpl consumer;
  std::unique_ptr<WorkerPool<uint64_t>> workers;
  std::unique_ptr<grpc::Server> grpc_server;
  int grpc_port = 0;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string metrics_address;
  bool shut_down = false;
};

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options, Clock& clock) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  CaptureProtobufParseErrors();  // before any thread starts: protobuf's handler is not atomic
  std::unique_ptr<TokenFile> tokens;
  if (!options.auth_tokens_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenFile>> file =
        TokenFile::Create(options.auth_tokens_file, options.auth_reload_interval);
    if (!file.ok()) return file.status();  // names the file and line, never a token
    tokens = *std::move(file);
    LogInfo("auth_enabled")
        .Str("auth_tokens_file", options.auth_tokens_file)
        .Int("tokens", static_cast<int64_t>(tokens->Current()->size()));
  } else {
    LogWarning("auth_disabled")
        .Str("reason",
             "--auth_tokens_file is not set: any client may schedule, consume and read the tasks "
             "of every queue (see docs/security.md)");
  }
  std::unique_ptr<TlsCertificates> tls;
  if (options.tls.enabled()) {
    absl::StatusOr<std::unique_ptr<TlsCertificates>> loaded =
        TlsCertificates::Create(options.tls, options.tls_reload_interval);
    if (!loaded.ok()) return loaded.status();  // names the file, never the key
    tls = *std::move(loaded);
    LogTlsEnabled(*tls);
  }
  absl::StatusOr<std::unique_ptr<DataDirLock>> lock = DataDirLock::Acquire(options.data_dir);
  if (!lock.ok()) return lock.status();

  auto parts =
      std::make_unique<Parts>(options, clock, *AddressPolicy::Create(options.push_allowlist));
  Parts& p = *parts;
  p.data_dir_lock = *std::move(lock);
  p.tokens = std::move(tokens);
  p.tls = std::move(tls);
  p.context.tokens = p.tokens.get();
  p.context.wal = &p.wal;
  p.AddGauges();
  // Recovery comes first: the port opens only once the state is back (a startup probe can tell).
  absl::StatusOr<RecoveryStats> recovered = p.wal.Recover(p.store);
  if (!recovered.ok()) return recovered.status();
  p.metrics.Recovered(*recovered);
  LogInfo("recovered")
      .Int("records", static_cast<int64_t>(recovered->records))
      .Int("segments", static_cast<int64_t>(recovered->segments))
      .Int("tasks", static_cast<int64_t>(p.store.size()))
      .Int("snapshot_lsn", static_cast<int64_t>(recovered->snapshot_lsn))
      .Int("snapshot_tasks", static_cast<int64_t>(recovered->snapshot_tasks))
      .Int("torn_tails_truncated", static_cast<int64_t>(recovered->torn_tails))
      .Int("torn_bytes", static_cast<int64_t>(recovered->torn_bytes))
      .Int("skipped_bytes", static_cast<int64_t>(recovered->skipped_bytes))
      .Int("missing_records", static_cast<int64_t>(recovered->missing_records))
      .Dur("seconds", recovered->duration);
  for (const std::string& damaged : recovered->damaged_snapshots) {
    LogWarning("snapshot_skipped").Str("reason", damaged).Str("action", "used an older one");
  }
  if (absl::Status s = p.wal.StartWriting(); !s.ok()) return s;
  p.store.FinishRecovery();
  p.workers =
      std::make_unique<WorkerPool<uint64_t>>("hg-worker", options.workers, p.dispatch_queue,
                                             [&p](uint64_t cookie) { p.HandleTimer(cookie); });
  p.ticker.Start();
  // From here on, a failure must stop the threads: the Server's destructor does.
  auto server = std::unique_ptr<Server>(new Server(std::move(parts)));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      options.grpc_address,
      p.tls != nullptr ? p.tls->ServerCredentials() : grpc::InsecureServerCredentials(),
      &p.grpc_port);
  if (p.tls != nullptr) {
    p.metrics.AddGaugeSource(
        [&p](std::vector<prometheus::MetricFamily>* out) { p.tls->CollectMetrics(out); });
  }
  builder.RegisterService(&p.scheduler);
  builder.RegisterService(&p.consumer);
  // A request that does not parse as its method's message: INVALID_ARGUMENT, not UNIMPLEMENTED.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<ParseErrorInterceptorFactory>(p.context));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Room for the largest valid request: the payload plus headers, ids and framing.
  builder.SetMaxReceiveMessageSize(static_cast<int>(MaxReceiveMessageBytes(options.limits)));
  // What gRPC itself may take. Threads: only synchronous handlers (server reflection) use them;
  // hourglass's services use the callback API and hold no thread while they wait. Memory:
  // connections, read buffers and calls in flight; under pressure gRPC shrinks its read buffers,
  // then reclaims memory by closing idle connections and, last, cancelling calls.
  grpc::ResourceQuota quota("hourglass");
  if (options.max_grpc_threads > 0) quota.SetMaxThreads(options.max_grpc_threads);
  if (options.grpc_memory_bytes > 0) quota.Resize(static_cast<size_t>(options.grpc_memory_bytes));
  builder.SetResourceQuota(quota);
  p.metrics.SetPendingLimit(options.max_pending);
  p.grpc_server = builder.BuildAndStart();
  if (p.grpc_server == nullptr || p.grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --grpc_address \"", options.grpc_address,
                     "\": the address is malformed or the port is in use"));
  }
  grpc::HealthCheckServiceInterface* health = p.grpc_server->GetHealthCheckService();
  health->SetServingStatus("", true);
  for (const char* name : kServiceNames) health->SetServingStatus(name, true);

  if (!options.metrics_address.empty()) {
    // prometheus-cpp reports a bind failure by throwing; hourglass code does not throw, so the
    // exception stops here.
    try {
      p.exposer = std::make_unique<prometheus::Exposer>(options.metrics_address);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("cannot serve metrics on --metrics_address \"",
                                                 options.metrics_address, "\": ", e.what()));
    }
    for (const auto& collectable : p.metrics.collectables()) {
      p.exposer->RegisterCollectable(collectable);
    }
    const std::vector<int> ports = p.exposer->GetListeningPorts();
    const std::string host(options.metrics_address.substr(0, options.metrics_address.rfind(':')));
    p.metrics_address = absl::StrCat(host, ":", ports.empty() ? 0 : ports.front());
  }
  return server;
}

Server::Server(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Server::~Server() { Shutdown(); }

int Server::grpc_port() const { return parts_->grpc_port; }
std::string Server::metrics_address() const { return parts_->metrics_address; }
TaskStore& Server::store() { return parts_->store; }

std::shared_ptr<grpc::Channel> Server::InProcessChannel() {
  return parts_->grpc_server->InProcessChannel(grpc::ChannelArguments());
}

void Server::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  Parts& p = *parts_;
  if (p.shut_down) return;
  p.shut_down = true;
  p.context.shutting_down.store(true);
  if (p.grpc_server != nullptr) {
    // NOT_SERVING for every service, from now on.
    p.grpc_server->GetHealthCheckService()->Shutdown();
  }
  // Stopping the metrics endpoint takes civetweb a second or two; let it overlap the drain, so
  // that the whole shutdown stays within the grace period.
  std::thread metrics_stopper([&p] { p.exposer.reset(); });
  const absl::Time deadline = absl::Now() + p.options.shutdown_grace;
  p.pull.Shutdown();  // parked Lease calls: UNAVAILABLE
  // Lame duck: for up to a second of the grace period, keep the port open and answer new calls
  // UNAVAILABLE (which clients retry elsewhere) while health checkers and load balancers see
  // NOT_SERVING; gRPC's own shutdown would cancel them instead.
  absl::SleepFor(std::min(p.options.shutdown_grace, kLameDuck));
  // Drain: every hourglass call finishes on its own (handlers do not wait, and waiting Leases
  // were just answered); give them until the deadline. Then close gRPC with only a moment for the
  // last responses to go out: what is left is not ours (health Watch streams), and gRPC's
  // graceful close would otherwise wait seconds for idle client connections.
  if (!p.context.AwaitIdle(deadline)) {
    LogWarning("shutdown_grace_exceeded").Dur("grace_seconds", p.options.shutdown_grace);
  }
  if (p.grpc_server != nullptr) {
    p.grpc_server->Shutdown(absl::ToChronoTime(std::min(deadline, absl::Now() + kFlushTime)));
  }
  LogDebug("shutdown_grpc_drained");
  // Closing the queue first releases the tick thread if it waits for room.
  p.dispatch_queue.Close();
  p.ticker.Stop();
  if (p.workers != nullptr) p.workers->Join();
  // Deliveries in progress are aborted and their tasks released (due again at the next start).
  p.push.Shutdown();
  p.wal.Stop();  // the last records (lease expiries, forgets) are written and synced
  LogDebug("shutdown_threads_stopped");
  metrics_stopper.join();
  LogDebug("shutdown_metrics_stopped");
}

}  // namespace hourglass
