// Metrics: hourglass's Prometheus metrics (prometheus-cpp), named by the Prometheus conventions:
// `hourglass_` prefix, base units (seconds, bytes), `_total` counters, no task ids as labels.
//
//   Metrics metrics;                                   // owns the registry
//   metrics.Scheduled("emails");                       // event counters: O(1), lock-free after the
//   metrics.ObserveLateness(absl::Milliseconds(3));    // first use of a queue
//   metrics.AddGaugeSource(...);                       // gauges read at scrape time
//   exposer.RegisterCollectable(metrics.registry());
//
// Thread-safe.
#ifndef HOURGLASS_SERVICE_METRICS_H_
#define HOURGLASS_SERVICE_METRICS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "store/wal.h"

namespace hourglass {

class Metrics final : public WalObserver {
 public:
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The registry to expose. Shared because prometheus::Exposer holds collectables by weak_ptr.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Every collectable to expose: the registry, the gauges read at scrape time, process metrics.
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables() const;

  enum class Outcome { kSucceeded, kRetried, kDead };

  void Scheduled(absl::string_view queue, int64_t n = 1);
  void Cancelled(absl::string_view queue);
  void Leased(absl::string_view queue, int64_t n);
  void Delivered(absl::string_view queue, Outcome outcome);
  void ObserveLateness(absl::Duration lateness);
  // One push delivery attempt: target "http" or "grpc"; outcome "succeeded", "retried", "dead"
  // (a permanent failure, or the last attempt), "refused" (the SSRF guard) or "released"
  // (shutdown). Also counts the task's queue in hourglass_task_deliveries_total.
  void PushAttempted(absl::string_view queue, absl::string_view target, absl::string_view outcome,
                     absl::Duration elapsed);
  // One finished RPC: grpc_service "hourglass.v1.SchedulerService", method "Schedule", code name
  // "OK" (grpc::StatusCode as its canonical upper-case name).
  void RpcHandled(absl::string_view service, absl::string_view method, int code,
                  absl::Duration elapsed);

  // Schedule requests (or ScheduleBatch items) refused for lack of room, by reason:
  // "max_pending" (the store holds --max_pending unfinished tasks).
  void Rejected(absl::string_view reason);
  // --max_pending, exposed as hourglass_pending_limit (0: no limit).
  void SetPendingLimit(int64_t limit);

  // A source of gauges, called at every scrape (from the exposer's thread).
  using GaugeSource = std::function<void(std::vector<prometheus::MetricFamily>* out)>;
  void AddGaugeSource(GaugeSource source);

  // The write-ahead log: one group commit (WalObserver), and what recovery did at start.
  void OnCommit(size_t records, uint64_t bytes, absl::Duration sync_time) override;
  void OnSnapshot(uint64_t tasks, uint64_t bytes, absl::Duration duration) override;
  void OnSnapshotFailed(const absl::Status& status) override;
  void Recovered(const RecoveryStats& stats);

  // Lateness histogram buckets, seconds: 0.5 ms to 60 s.
  static std::vector<double> LatenessBuckets();
  // Push delivery duration buckets, seconds: 1 ms to 5 min.
  static std::vector<double> PushBuckets();

 private:
  struct QueueMetrics {
    prometheus::Counter* scheduled;
    prometheus::Counter* cancelled;
    prometheus::Counter* leased;
    prometheus::Counter* succeeded;
    prometheus::Counter* retried;
    prometheus::Counter* dead;
  };
  struct RpcMetrics {
    prometheus::Histogram* handling_seconds;
    absl::flat_hash_map<int, prometheus::Counter*> handled_by_code;
  };
  class GaugeCollectable;

  QueueMetrics& ForQueue(absl::string_view queue) ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<GaugeCollectable> gauges_;
  std::shared_ptr<prometheus::Collectable> process_;
  prometheus::Family<prometheus::Counter>& scheduled_;
  prometheus::Family<prometheus::Counter>& cancelled_;
  prometheus::Family<prometheus::Counter>& leased_;
  prometheus::Family<prometheus::Counter>& deliveries_;
  prometheus::Family<prometheus::Counter>& push_deliveries_;
  prometheus::Family<prometheus::Histogram>& push_seconds_;
  prometheus::Family<prometheus::Counter>& rpc_handled_;
  prometheus::Family<prometheus::Histogram>& rpc_seconds_;
  prometheus::Histogram& lateness_;
  prometheus::Counter& log_bytes_;
  prometheus::Counter& log_records_;
  prometheus::Histogram& log_fsync_seconds_;
  prometheus::Histogram& log_batch_records_;
  prometheus::Gauge& recovery_seconds_;
  prometheus::Gauge& recovery_records_;
  prometheus::Counter& torn_tails_;
  prometheus::Family<prometheus::Counter>& snapshots_;
  prometheus::Gauge& snapshot_seconds_;
  prometheus::Gauge& snapshot_bytes_;
  prometheus::Gauge& snapshot_tasks_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Counter& rejected_max_pending_;
  prometheus::Gauge& pending_limit_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<QueueMetrics>> queues_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<RpcMetrics>> rpcs_ ABSL_GUARDED_BY(mu_);
};

// Helpers for gauge sources.
prometheus::MetricFamily GaugeFamily(std::string name, std::string help);
void AddGauge(prometheus::MetricFamily* family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {});

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_METRICS_H_
