#include "service/process_metrics.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace hourglass {
namespace {

using prometheus::MetricFamily;
using prometheus::MetricType;

const MetricFamily* FindFamily(const std::vector<MetricFamily>& families, const std::string& name) {
  for (const MetricFamily& family : families) {
    if (family.name == name) return &family;
  }
  return nullptr;
}

// The value of the family's only sample, read from the field its type uses.
std::optional<double> SingleValue(const std::vector<MetricFamily>& families,
                                  const std::string& name) {
  const MetricFamily* family = FindFamily(families, name);
  if (family == nullptr || family->metric.size() != 1) return std::nullopt;
  return family->type == MetricType::Counter ? family->metric[0].counter.value
                                             : family->metric[0].gauge.value;
}

std::set<std::string> FamilyNames(const std::vector<MetricFamily>& families) {
  std::set<std::string> names;
  for (const MetricFamily& family : families) names.insert(family.name);
  return names;
}

const std::map<std::string, MetricType>& StandardFamilies() {
  static const auto* const kFamilies = new std::map<std::string, MetricType>{
      {"process_cpu_seconds_total", MetricType::Counter},
      {"process_resident_memory_bytes", MetricType::Gauge},
      {"process_virtual_memory_bytes", MetricType::Gauge},
      {"process_open_fds", MetricType::Gauge},
      {"process_max_fds", MetricType::Gauge},
      {"process_start_time_seconds", MetricType::Gauge},
  };
  return *kFamilies;
}

// --- The real process ----------------------------------------------------------------------

// Every standard family is there once, with its official name and type, a HELP text and exactly
// one unlabelled sample.
TEST(ProcessMetricsTest, ExportsEveryStandardFamilyWithItsType) {
  const std::vector<MetricFamily> families = ProcessMetricsCollector().Collect();
  EXPECT_EQ(families.size(), StandardFamilies().size());
  for (const auto& [name, type] : StandardFamilies()) {
    SCOPED_TRACE(name);
    const MetricFamily* family = FindFamily(families, name);
    ASSERT_NE(family, nullptr);
    EXPECT_EQ(family->type, type);
    EXPECT_FALSE(family->help.empty());
    ASSERT_EQ(family->metric.size(), 1u);
    EXPECT_TRUE(family->metric[0].label.empty());
  }
}

// Memory gauges hold plausible values: a running process has resident pages, and its virtual
// size is at least its resident size.
TEST(ProcessMetricsTest, ResidentMemoryIsPositive) {
  const std::vector<MetricFamily> families = ProcessMetricsCollector().Collect();
  const std::optional<double> resident = SingleValue(families, "process_resident_memory_bytes");
  const std::optional<double> virtual_size = SingleValue(families, "process_virtual_memory_bytes");
  ASSERT_TRUE(resident.has_value());
  ASSERT_TRUE(virtual_size.has_value());
  EXPECT_GT(*resident, 0);
  EXPECT_GE(*virtual_size, *resident);
  EXPECT_GE(SingleValue(families, "process_cpu_seconds_total").value_or(-1), 0);
}

// Each scrape counts descriptors afresh: opening a file adds exactly one, closing it removes it.
TEST(ProcessMetricsTest, OpenFdsFollowsOpenAndClose) {
  const ProcessMetricsCollector collector;
  const std::optional<double> before = SingleValue(collector.Collect(), "process_open_fds");
  ASSERT_TRUE(before.has_value());

  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(SingleValue(collector.Collect(), "process_open_fds"), *before + 1);
  close(fd);
  EXPECT_EQ(SingleValue(collector.Collect(), "process_open_fds"), *before);
}

// process_max_fds is the soft RLIMIT_NOFILE, the limit open() actually enforces.
TEST(ProcessMetricsTest, MaxFdsIsTheSoftLimit) {
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  const double expected =
      limit.rlim_cur == RLIM_INFINITY ? INFINITY : static_cast<double>(limit.rlim_cur);
  EXPECT_EQ(SingleValue(ProcessMetricsCollector().Collect(), "process_max_fds"), expected);
}

// The start time is an absolute Unix time, and this test process started within the last hour.
TEST(ProcessMetricsTest, StartTimeIsWithinTheLastHour) {
  const std::optional<double> start_time =
      SingleValue(ProcessMetricsCollector().Collect(), "process_start_time_seconds");
  ASSERT_TRUE(start_time.has_value());
  const double now_seconds =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(*start_time, now_seconds + 1);  // btime is whole seconds: allow for its rounding
  EXPECT_GT(*start_time, now_seconds - 3600);
}

// The families serialize to valid Prometheus text: HELP and TYPE lines with the official texts
// and types, and one "<name> <number>" sample line per family.
TEST(ProcessMetricsTest, SerializesAsPrometheusText) {
  std::ostringstream text;
  prometheus::TextSerializer().Serialize(text, ProcessMetricsCollector().Collect());
  const std::string exposition = text.str();

  EXPECT_NE(exposition.find("# HELP process_cpu_seconds_total Total user and system CPU time "
                            "spent in seconds.\n"),
            std::string::npos);
  EXPECT_NE(exposition.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
  for (const auto& [name, type] : StandardFamilies()) {
    const std::string type_line =
        "# TYPE " + name + (type == MetricType::Counter ? " counter\n" : " gauge\n");
    EXPECT_NE(exposition.find(type_line), std::string::npos) << type_line;
  }

  std::set<std::string> sampled;
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string name, value, rest;
    ASSERT_TRUE(fields >> name >> value) << line;
    EXPECT_FALSE(fields >> rest) << "trailing text (a timestamp?) in: " << line;
    char* end = nullptr;
    std::strtod(value.c_str(), &end);
    EXPECT_EQ(*end, '\0') << "not a number in: " << line;
    EXPECT_TRUE(sampled.insert(name).second) << "second sample for " << name;
  }
  std::set<std::string> expected;
  for (const auto& [name, type] : StandardFamilies()) expected.insert(name);
  EXPECT_EQ(sampled, expected);
}

// The build info gauge carries the version and compiler as labels and the value 1.
TEST(ProcessMetricsTest, RegisterBuildInfoAddsOneLabelledGauge) {
  prometheus::Registry registry;
  RegisterBuildInfo(registry, "1.2.3");
  const std::vector<MetricFamily> families = registry.Collect();
  const MetricFamily* build_info = FindFamily(families, "hourglass_build_info");
  ASSERT_NE(build_info, nullptr);
  EXPECT_EQ(build_info->type, MetricType::Gauge);
  EXPECT_FALSE(build_info->help.empty());
  ASSERT_EQ(build_info->metric.size(), 1u);
  EXPECT_EQ(build_info->metric[0].gauge.value, 1);
  std::map<std::string, std::string> labels;
  for (const auto& label : build_info->metric[0].label) labels[label.name] = label.value;
  EXPECT_EQ(labels,
            (std::map<std::string, std::string>{{"version", "1.2.3"}, {"compiler", __VERSION__}}));
}

// --- A fake /proc tree, for exact values -------------------------------------------------------

constexpr int64_t kTicksPerSecond = 100;
constexpr int64_t kPageSizeBytes = 4096;

class FakeProcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::path(::testing::TempDir()) /
            ("fake_proc_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "self" / "fd");
  }

  void TearDown() override { std::filesystem::remove_all(root_); }

  void WriteFile(const std::string& relative_path, const std::string& content) {
    std::ofstream out(root_ / relative_path, std::ios::binary | std::ios::trunc);
    out << content;
    ASSERT_TRUE(out.good()) << relative_path;
  }

  // A complete tree: a command name with spaces and parentheses, 250 + 150 ticks of CPU, started
  // 12345 ticks after a boot at 1700000000, 1000000 bytes virtual, 300 pages resident, three
  // descriptors and a soft limit of 4096.
  void WriteCompleteTree() {
    WriteFile("self/stat",
              "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 150 0 0 20 0 3 0 "
              "12345 1000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 2 0 0 0 0 0\n");
    WriteFile("stat", "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 6\n");
    WriteFile("self/limits",
              "Limit                     Soft Limit           Hard Limit           Units     \n"
              "Max processes             63000                63000                processes \n"
              "Max open files            4096                 8192                 files     \n");
    for (const char* fd : {"0", "1", "2"}) WriteFile(std::string("self/fd/") + fd, "");
  }

  std::vector<MetricFamily> Collect() const {
    return ProcessMetricsCollector(root_.string(), kTicksPerSecond, kPageSizeBytes).Collect();
  }

  std::filesystem::path root_;
};

// Each value is computed from its /proc source exactly as proc(5) defines it.
TEST_F(FakeProcTest, ReadsExactValues) {
  WriteCompleteTree();
  const std::vector<MetricFamily> families = Collect();
  EXPECT_EQ(families.size(), StandardFamilies().size());
  EXPECT_EQ(SingleValue(families, "process_cpu_seconds_total"), 4.0);
  EXPECT_EQ(SingleValue(families, "process_resident_memory_bytes"), 300.0 * 4096);
  EXPECT_EQ(SingleValue(families, "process_virtual_memory_bytes"), 1000000.0);
  EXPECT_EQ(SingleValue(families, "process_open_fds"), 3.0);
  EXPECT_EQ(SingleValue(families, "process_max_fds"), 4096.0);
  EXPECT_EQ(SingleValue(families, "process_start_time_seconds"), 1700000000.0 + 123.45);
}

// An unlimited descriptor limit is reported as +Inf, not as a parse failure.
TEST_F(FakeProcTest, UnlimitedOpenFilesIsInfinity) {
  WriteCompleteTree();
  WriteFile("self/limits",
            "Limit                     Soft Limit           Hard Limit           Units     \n"
            "Max open files            unlimited            unlimited            files     \n");
  const std::optional<double> max_fds = SingleValue(Collect(), "process_max_fds");
  ASSERT_TRUE(max_fds.has_value());
  EXPECT_TRUE(std::isinf(*max_fds) && *max_fds > 0);
}

// A missing source drops only the families computed from it; the scrape still succeeds.
TEST_F(FakeProcTest, OmitsOnlyFamiliesWhoseSourceIsMissing) {
  WriteCompleteTree();
  std::filesystem::remove(root_ / "stat");
  std::filesystem::remove(root_ / "self" / "limits");
  EXPECT_EQ(FamilyNames(Collect()),
            (std::set<std::string>{"process_cpu_seconds_total", "process_resident_memory_bytes",
                                   "process_virtual_memory_bytes", "process_open_fds"}));
}

// A truncated or garbled stat line yields no stat-based families instead of wrong numbers.
TEST_F(FakeProcTest, IgnoresMalformedStat) {
  WriteCompleteTree();
  WriteFile("self/stat", "4242 (my proc) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 1x0\n");
  EXPECT_EQ(FamilyNames(Collect()), (std::set<std::string>{"process_open_fds", "process_max_fds"}));
}

// With no /proc at all the collector returns nothing rather than failing.
TEST_F(FakeProcTest, ReturnsNothingWithoutProc) {
  std::filesystem::remove_all(root_);
  EXPECT_TRUE(Collect().empty());
}

}  // namespace
}  // namespace hourglass
