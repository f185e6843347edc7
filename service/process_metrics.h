// Process metrics for Prometheus: the standard process_* families, named, typed and described as
// the official Prometheus client libraries export them, so that stock dashboards and alerts work
// unchanged. They are read from /proc afresh on every scrape (nothing is cached or polled):
//
//   process_cpu_seconds_total      counter  user + system CPU time, seconds
//   process_resident_memory_bytes  gauge    resident set size
//   process_virtual_memory_bytes   gauge    virtual memory size
//   process_open_fds               gauge    open file descriptors
//   process_max_fds                gauge    soft limit on open file descriptors (+Inf if unlimited)
//   process_start_time_seconds     gauge    start time, seconds since the Unix epoch
//
// Plus RegisterBuildInfo(), which adds hourglass_build_info{version, compiler} 1 to a registry.
//
//   prometheus::Exposer exposer("0.0.0.0:9464");
//   auto registry = std::make_shared<prometheus::Registry>();
//   RegisterBuildInfo(*registry, "0.1.0");
//   exposer.RegisterCollectable(registry);
//   // shared_ptr because the Exposer holds its collectables by weak_ptr.
//   exposer.RegisterCollectable(std::make_shared<ProcessMetricsCollector>());
//
// Linux only. A family whose source file is missing or unparsable is left out of that scrape; a
// scrape never fails and never ends the process because of /proc.
#ifndef HOURGLASS_SERVICE_PROCESS_METRICS_H_
#define HOURGLASS_SERVICE_PROCESS_METRICS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace hourglass {

// Thread-safe: Collect() may run concurrently from any number of scrape threads; the collector
// holds only state that is constant after construction.
class ProcessMetricsCollector : public prometheus::Collectable {
 public:
  // Reads this process's /proc entries, with the kernel's clock tick and page size.
  ProcessMetricsCollector();

  // Reads <proc_root>/self/stat, <proc_root>/self/fd, <proc_root>/self/limits and
  // <proc_root>/stat instead, and converts with the given clock tick (_SC_CLK_TCK) and page size,
  // so that tests can use a fake tree with exact expected values.
  ProcessMetricsCollector(std::string proc_root, int64_t clock_ticks_per_second,
                          int64_t page_size_bytes);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  // Constant after construction.
  const std::string proc_root_;
  const int64_t clock_ticks_per_second_;
  const int64_t page_size_bytes_;
};

// Adds the gauge hourglass_build_info{version="<version>", compiler="<__VERSION__>"} with value 1
// to `registry`. Call once per registry: a second call with another version adds a second series.
void RegisterBuildInfo(prometheus::Registry& registry, std::string_view version);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_PROCESS_METRICS_H_
