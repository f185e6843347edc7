#include "service/metrics.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/gauge.h"
#include "service/logging.h"
#include "service/process_metrics.h"

namespace hourglass {

namespace {

// The canonical name of a grpc::StatusCode, as clients and dashboards print them: gRPC's codes
// are absl's, number for number.
std::string CodeName(int code) {
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

}  // namespace

// Gauges computed at scrape time from the sources given to AddGaugeSource.
class Metrics::GaugeCollectable final : public prometheus::Collectable {
 public:
  void Add(GaugeSource source) {
    absl::MutexLock lock(&mu_);
    sources_.push_back(std::move(source));
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<GaugeSource> sources;
    {
      absl::MutexLock lock(&mu_);
      sources = sources_;
    }
    std::vector<prometheus::MetricFamily> families;
    for (const GaugeSource& source : sources) source(&families);
    return families;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<GaugeSource> sources_ ABSL_GUARDED_BY(mu_);
};

std::vector<double> Metrics::PushBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

std::vector<double> Metrics::LatenessBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      gauges_(std::make_shared<GaugeCollectable>()),
      process_(std::make_shared<ProcessMetricsCollector>()),
      scheduled_(prometheus::BuildCounter()
                     .Name("hourglass_tasks_scheduled_total")
                     .Help("Tasks accepted by Schedule (idempotent repeats not counted).")
                     .Register(*registry_)),
      cancelled_(prometheus::BuildCounter()
                     .Name("hourglass_tasks_cancelled_total")
                     .Help("Tasks cancelled before they were handed out.")
                     .Register(*registry_)),
      leased_(prometheus::BuildCounter()
                  .Name("hourglass_task_leases_total")
                  .Help("Hand-outs of tasks to pull consumers (Lease), retries included.")
                  .Register(*registry_)),
      deliveries_(prometheus::BuildCounter()
                      .Name("hourglass_task_deliveries_total")
                      .Help("Finished delivery attempts by outcome: succeeded (acknowledged), "
                            "retried (Nack or lease expiry with attempts left), dead (attempts "
                            "used up).")
                      .Register(*registry_)),
      push_deliveries_(
          prometheus::BuildCounter()
              .Name("hourglass_push_deliveries_total")
              .Help("Push delivery attempts by target kind (http, grpc) and outcome: succeeded, "
                    "retried, dead (permanent failure or attempts used up), refused (address "
                    "refused by the SSRF guard: nothing was sent), released (shutdown).")
              .Register(*registry_)),
      push_seconds_(prometheus::BuildHistogram()
                        .Name("hourglass_push_delivery_duration_seconds")
                        .Help("Time of one push delivery attempt, from connect to answer.")
                        .Register(*registry_)),
      rpc_handled_(prometheus::BuildCounter()
                       .Name("hourglass_grpc_server_handled_total")
                       .Help("RPCs completed by the server, by service, method and status code.")
                       .Register(*registry_)),
      rpc_seconds_(prometheus::BuildHistogram()
                       .Name("hourglass_grpc_server_handling_seconds")
                       .Help("Time from receiving an RPC to its completion (Lease includes its "
                             "wait).")
                       .Register(*registry_)),
      lateness_(prometheus::BuildHistogram()
                    .Name("hourglass_dispatch_lateness_seconds")
                    .Help("How late tasks became ready: time made READY minus due time.")
                    .Register(*registry_)
                    .Add({}, LatenessBuckets())),
      log_bytes_(prometheus::BuildCounter()
                     .Name("hourglass_log_written_bytes_total")
                     .Help("Bytes of records written to the write-ahead log (before framing).")
                     .Register(*registry_)
                     .Add({})),
      log_records_(prometheus::BuildCounter()
                       .Name("hourglass_log_written_records_total")
                       .Help("Records written to the write-ahead log.")
                       .Register(*registry_)
                       .Add({})),
      log_fsync_seconds_(
          prometheus::BuildHistogram()
              .Name("hourglass_log_fsync_seconds")
              .Help("Time of one fdatasync of the write-ahead log (--fsync=always).")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001,
                                                               0.0025, 0.005, 0.01, 0.025, 0.05,
                                                               0.1, 0.25, 0.5, 1, 2.5})),
      log_batch_records_(
          prometheus::BuildHistogram()
              .Name("hourglass_log_commit_batch_records")
              .Help("Records made durable by one group commit.")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                               512, 1024, 4096})),
      recovery_seconds_(prometheus::BuildGauge()
                            .Name("hourglass_recovery_duration_seconds")
                            .Help("How long the last start took to replay the write-ahead log.")
                            .Register(*registry_)
                            .Add({})),
      recovery_records_(prometheus::BuildGauge()
                            .Name("hourglass_recovery_records")
                            .Help("Records replayed from the write-ahead log at the last start.")
                            .Register(*registry_)
                            .Add({})),
      torn_tails_(prometheus::BuildCounter()
                      .Name("hourglass_log_torn_tails_truncated_total")
                      .Help("Torn records (left by a crash mid-write) cut off the log's end at "
                            "start.")
                      .Register(*registry_)
                      .Add({})),
      snapshots_(prometheus::BuildCounter()
                     .Name("hourglass_snapshots_total")
                     .Help("Snapshots of the task store written, by result (ok, failed).")
                     .Register(*registry_)),
      snapshot_seconds_(prometheus::BuildGauge()
                            .Name("hourglass_snapshot_duration_seconds")
                            .Help("How long the last snapshot took to write.")
                            .Register(*registry_)
                            .Add({})),
      snapshot_bytes_(prometheus::BuildGauge()
                          .Name("hourglass_snapshot_size_bytes")
                          .Help("Size of the last snapshot.")
                          .Register(*registry_)
                          .Add({})),
      snapshot_tasks_(prometheus::BuildGauge()
                          .Name("hourglass_snapshot_tasks")
                          .Help("Tasks in the last snapshot.")
                          .Register(*registry_)
                          .Add({})),
      rejected_(prometheus::BuildCounter()
                    .Name("hourglass_tasks_rejected_total")
                    .Help("Schedule requests and ScheduleBatch items refused with "
                          "RESOURCE_EXHAUSTED, by reason: max_pending (the server holds "
                          "--max_pending unfinished tasks).")
                    .Register(*registry_)),
      rejected_max_pending_(rejected_.Add({{"reason", "max_pending"}})),
      pending_limit_(prometheus::BuildGauge()
                         .Name("hourglass_pending_limit")
                         .Help("Most unfinished (scheduled, ready or leased) tasks the server "
                               "accepts (--max_pending); 0: no limit.")
                         .Register(*registry_)
                         .Add({})) {
  snapshots_.Add({{"result", "ok"}});
  snapshots_.Add({{"result", "failed"}});
  // Every push series exists from the start at 0, so that rate() and increase() see the first
  // attempt of each (a series born at its first event loses that event to them).
  for (const char* target : {"http", "grpc"}) {
    for (const char* outcome : {"succeeded", "retried", "dead", "refused", "released"}) {
      push_deliveries_.Add({{"target", target}, {"outcome", outcome}});
    }
    push_seconds_.Add({{"target", target}}, PushBuckets());
  }
  RegisterBuildInfo(*registry_, HOURGLASS_VERSION);
}

std::vector<std::shared_ptr<prometheus::Collectable>> Metrics::collectables() const {
  return {registry_, gauges_, process_};
}

Metrics::QueueMetrics& Metrics::ForQueue(absl::string_view queue) {
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(queue);
  if (it != queues_.end()) return *it->second;
  const std::string q(queue);
  auto m = std::make_unique<QueueMetrics>();
  m->scheduled = &scheduled_.Add({{"queue", q}});
  m->cancelled = &cancelled_.Add({{"queue", q}});
  m->leased = &leased_.Add({{"queue", q}});
  m->succeeded = &deliveries_.Add({{"queue", q}, {"outcome", "succeeded"}});
  m->retried = &deliveries_.Add({{"queue", q}, {"outcome", "retried"}});
  m->dead = &deliveries_.Add({{"queue", q}, {"outcome", "dead"}});
  return *queues_.emplace(q, std::move(m)).first->second;
}

void Metrics::Scheduled(absl::string_view queue, int64_t n) {
  ForQueue(queue).scheduled->Increment(static_cast<double>(n));
}

void Metrics::Cancelled(absl::string_view queue) { ForQueue(queue).cancelled->Increment(); }

void Metrics::Leased(absl::string_view queue, int64_t n) {
  ForQueue(queue).leased->Increment(static_cast<double>(n));
}

void Metrics::Delivered(absl::string_view queue, Outcome outcome) {
  QueueMetrics& m = ForQueue(queue);
  switch (outcome) {
    case Outcome::kSucceeded:
      m.succeeded->Increment();
      break;
    case Outcome::kRetried:
      m.retried->Increment();
      break;
    case Outcome::kDead:
      m.dead->Increment();
      break;
  }
}

void Metrics::PushAttempted(absl::string_view queue, absl::string_view target,
                            absl::string_view outcome, absl::Duration elapsed) {
  push_deliveries_.Add({{"target", std::string(target)}, {"outcome", std::string(outcome)}})
      .Increment();
  push_seconds_.Add({{"target", std::string(target)}}, PushBuckets())
      .Observe(absl::ToDoubleSeconds(elapsed));
  if (outcome == "succeeded") {
    Delivered(queue, Outcome::kSucceeded);
  } else if (outcome == "retried") {
    Delivered(queue, Outcome::kRetried);
  } else if (outcome == "dead" || outcome == "refused") {
    Delivered(queue, Outcome::kDead);
  }
}

void Metrics::ObserveLateness(absl::Duration lateness) {
  lateness_.Observe(absl::ToDoubleSeconds(lateness));
}

void Metrics::RpcHandled(absl::string_view service, absl::string_view method, int code,
                         absl::Duration elapsed) {
  prometheus::Histogram* histogram;
  prometheus::Counter* counter;
  {
    absl::MutexLock lock(&mu_);
    const std::string key = absl::StrCat(service, "/", method);
    std::unique_ptr<RpcMetrics>& rpc = rpcs_[key];
    if (rpc == nullptr) {
      rpc = std::make_unique<RpcMetrics>();
      rpc->handling_seconds = &rpc_seconds_.Add(
          {{"grpc_service", std::string(service)}, {"grpc_method", std::string(method)}},
          prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                                  30, 60});
    }
    histogram = rpc->handling_seconds;
    prometheus::Counter*& by_code = rpc->handled_by_code[code];
    if (by_code == nullptr) {
      by_code = &rpc_handled_.Add({{"grpc_service", std::string(service)},
                                   {"grpc_method", std::string(method)},
                                   {"grpc_code", std::string(CodeName(code))}});
    }
    counter = by_code;
  }
  counter->Increment();
  histogram->Observe(absl::ToDoubleSeconds(elapsed));
}

void Metrics::Rejected(absl::string_view reason) {
  if (reason == "max_pending") {
    rejected_max_pending_.Increment();
    return;
  }
  rejected_.Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::SetPendingLimit(int64_t limit) { pending_limit_.Set(static_cast<double>(limit)); }

void Metrics::AddGaugeSource(GaugeSource source) { gauges_->Add(std::move(source)); }

void Metrics::OnCommit(size_t records, uint64_t bytes, absl::Duration sync_time) {
  log_records_.Increment(static_cast<double>(records));
  log_bytes_.Increment(static_cast<double>(bytes));
  log_batch_records_.Observe(static_cast<double>(records));
  if (sync_time > absl::ZeroDuration())
    log_fsync_seconds_.Observe(absl::ToDoubleSeconds(sync_time));
}

void Metrics::OnSnapshot(uint64_t tasks, uint64_t bytes, absl::Duration duration) {
  snapshots_.Add({{"result", "ok"}}).Increment();
  snapshot_seconds_.Set(absl::ToDoubleSeconds(duration));
  snapshot_bytes_.Set(static_cast<double>(bytes));
  snapshot_tasks_.Set(static_cast<double>(tasks));
  LogInfo("snapshot_written")
      .Int("tasks", static_cast<int64_t>(tasks))
      .Int("bytes", static_cast<int64_t>(bytes))
      .Dur("seconds", duration);
}

void Metrics::OnSnapshotFailed(const absl::Status& status) {
  snapshots_.Add({{"result", "failed"}}).Increment();
  LogWarning("snapshot_failed")
      .Str("error", status.ToString())
      .Str("impact", "none yet: the log keeps every record; retried later");
}

void Metrics::Recovered(const RecoveryStats& stats) {
  recovery_seconds_.Set(absl::ToDoubleSeconds(stats.duration));
  recovery_records_.Set(static_cast<double>(stats.records));
  torn_tails_.Increment(static_cast<double>(stats.torn_tails));
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddGauge(prometheus::MetricFamily* family, double value,
              std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric& metric = family->metric.emplace_back();
  metric.label = std::move(labels);
  metric.gauge.value = value;
}

}  // namespace hourglass
