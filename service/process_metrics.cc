#include "service/process_metrics.h"

#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/gauge.h"
#include "prometheus/metric_type.h"

namespace hourglass {
namespace {

// What the collector needs from /proc/<pid>/stat (see proc(5)).
struct SelfStat {
  int64_t user_ticks = 0;      // field 14, utime
  int64_t system_ticks = 0;    // field 15, stime
  int64_t start_ticks = 0;     // field 22, starttime: since boot
  int64_t virtual_bytes = 0;   // field 23, vsize
  int64_t resident_pages = 0;  // field 24, rss
};

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) return std::nullopt;
  // /proc files report a size of 0, so read until EOF rather than by size.
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return std::move(content).str();
}

std::optional<int64_t> ParseInt(std::string_view text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// Splits on runs of spaces, tabs and newlines.
std::vector<std::string_view> SplitFields(std::string_view text) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (true) {
    pos = text.find_first_not_of(" \t\n", pos);
    if (pos == std::string_view::npos) break;
    const size_t end = text.find_first_of(" \t\n", pos);
    fields.push_back(text.substr(pos, end == std::string_view::npos ? end : end - pos));
    if (end == std::string_view::npos) break;
    pos = end;
  }
  return fields;
}

std::optional<SelfStat> ParseSelfStat(std::string_view content) {
  // Field 2 is the command name in parentheses, which may itself hold spaces and ')': the
  // fields after it start after the last ')'.
  const size_t comm_end = content.rfind(')');
  if (comm_end == std::string_view::npos) return std::nullopt;
  const std::vector<std::string_view> fields = SplitFields(content.substr(comm_end + 1));
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  constexpr size_t kFirstField = 3;
  auto field = [&](size_t n) -> std::optional<int64_t> {
    if (n - kFirstField >= fields.size()) return std::nullopt;
    return ParseInt(fields[n - kFirstField]);
  };
  const std::optional<int64_t> utime = field(14), stime = field(15), starttime = field(22),
                               vsize = field(23), rss = field(24);
  if (!utime || !stime || !starttime || !vsize || !rss) return std::nullopt;
  return SelfStat{*utime, *stime, *starttime, *vsize, *rss};
}

// The "btime" line of /proc/stat: boot time, seconds since the Unix epoch.
std::optional<int64_t> ParseBootTimeSeconds(std::string_view content) {
  std::istringstream lines{std::string(content)};
  std::string line;
  while (std::getline(lines, line)) {
    const std::vector<std::string_view> fields = SplitFields(line);
    if (fields.size() == 2 && fields[0] == "btime") return ParseInt(fields[1]);
  }
  return std::nullopt;
}

// The soft limit of the "Max open files" line of /proc/<pid>/limits; +Inf for "unlimited".
std::optional<double> ParseMaxOpenFiles(std::string_view content) {
  constexpr std::string_view kPrefix = "Max open files";
  std::istringstream lines{std::string(content)};
  std::string line;
  while (std::getline(lines, line)) {
    if (std::string_view(line).substr(0, kPrefix.size()) != kPrefix) continue;
    const std::vector<std::string_view> fields =
        SplitFields(std::string_view(line).substr(kPrefix.size()));
    if (fields.empty()) return std::nullopt;
    if (fields[0] == "unlimited") return std::numeric_limits<double>::infinity();
    const std::optional<int64_t> soft_limit = ParseInt(fields[0]);
    if (!soft_limit) return std::nullopt;
    return static_cast<double>(*soft_limit);
  }
  return std::nullopt;
}

// Counts the entries of /proc/<pid>/fd. Like the official clients, the count includes the
// descriptor used to list the directory.
std::optional<int64_t> CountOpenFds(const std::string& fd_dir) {
  std::error_code error;
  std::filesystem::directory_iterator it(fd_dir, error);
  if (error) return std::nullopt;
  int64_t count = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    if (error) return std::nullopt;
    ++count;
  }
  if (error) return std::nullopt;
  return count;
}

prometheus::MetricFamily SingleSampleFamily(std::string name, std::string help,
                                            prometheus::MetricType type, double value) {
  prometheus::ClientMetric sample;
  if (type == prometheus::MetricType::Counter) {
    sample.counter.value = value;
  } else {
    sample.gauge.value = value;
  }
  return prometheus::MetricFamily{std::move(name), std::move(help), type, {std::move(sample)}};
}

}  // namespace

ProcessMetricsCollector::ProcessMetricsCollector()
    : ProcessMetricsCollector("/proc", sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE)) {}

ProcessMetricsCollector::ProcessMetricsCollector(std::string proc_root,
                                                 int64_t clock_ticks_per_second,
                                                 int64_t page_size_bytes)
    : proc_root_(std::move(proc_root)),
      clock_ticks_per_second_(clock_ticks_per_second),
      page_size_bytes_(page_size_bytes) {}

std::vector<prometheus::MetricFamily> ProcessMetricsCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  const double ticks_per_second = static_cast<double>(clock_ticks_per_second_);

  std::optional<SelfStat> self_stat;
  if (std::optional<std::string> content = ReadFile(proc_root_ + "/self/stat")) {
    self_stat = ParseSelfStat(*content);
  }
  if (self_stat && ticks_per_second > 0) {
    families.push_back(SingleSampleFamily(
        "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
        MetricType::Counter,
        static_cast<double>(self_stat->user_ticks + self_stat->system_ticks) / ticks_per_second));
  }

  if (std::optional<int64_t> open_fds = CountOpenFds(proc_root_ + "/self/fd")) {
    families.push_back(SingleSampleFamily("process_open_fds", "Number of open file descriptors.",
                                          MetricType::Gauge, static_cast<double>(*open_fds)));
  }

  std::optional<double> max_fds;
  if (std::optional<std::string> content = ReadFile(proc_root_ + "/self/limits")) {
    max_fds = ParseMaxOpenFiles(*content);
  }
  if (max_fds) {
    families.push_back(SingleSampleFamily("process_max_fds",
                                          "Maximum number of open file descriptors.",
                                          MetricType::Gauge, *max_fds));
  }

  if (self_stat) {
    families.push_back(SingleSampleFamily("process_virtual_memory_bytes",
                                          "Virtual memory size in bytes.", MetricType::Gauge,
                                          static_cast<double>(self_stat->virtual_bytes)));
    families.push_back(SingleSampleFamily(
        "process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
        static_cast<double>(self_stat->resident_pages) * static_cast<double>(page_size_bytes_)));
  }

  std::optional<int64_t> boot_time_seconds;
  if (std::optional<std::string> content = ReadFile(proc_root_ + "/stat")) {
    boot_time_seconds = ParseBootTimeSeconds(*content);
  }
  if (self_stat && boot_time_seconds && ticks_per_second > 0) {
    families.push_back(SingleSampleFamily(
        "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
        MetricType::Gauge,
        static_cast<double>(*boot_time_seconds) +
            static_cast<double>(self_stat->start_ticks) / ticks_per_second));
  }
  return families;
}

void RegisterBuildInfo(prometheus::Registry& registry, std::string_view version) {
  prometheus::BuildGauge()
      .Name("hourglass_build_info")
      .Help("Build information about the running hourglass binary; the value is always 1.")
      .Register(registry)
      .Add({{"version", std::string(version)}, {"compiler", __VERSION__}})
      .Set(1);
}

}  // namespace hourglass
