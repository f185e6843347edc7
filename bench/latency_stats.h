// Latency statistics shared by the load tools (hourglass_load, peer_load), so that both report
// percentiles the same way and their figures compare.
#ifndef HOURGLASS_BENCH_LATENCY_STATS_H_
#define HOURGLASS_BENCH_LATENCY_STATS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace hourglass::bench {

// q-quantile (nearest rank) of sorted microseconds, in milliseconds; 0 for no samples.
inline double PctMs(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  double rank = std::ceil(q * static_cast<double>(sorted.size()));
  size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  i = std::min(i, sorted.size() - 1);
  return static_cast<double>(sorted[i]) / 1000.0;
}

// The samples of every thread in one sorted vector.
inline std::vector<int64_t> Merge(const std::vector<std::vector<int64_t>>& parts) {
  std::vector<int64_t> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace hourglass::bench

#endif  // HOURGLASS_BENCH_LATENCY_STATS_H_
