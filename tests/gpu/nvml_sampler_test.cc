// NvmlSampler on a real GPU: plausible readings, energy that only grows, interval power.
// Skips where NVML or the GPU is unavailable.
#include "peng/telemetry/nvml.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace peng {
namespace {

TEST(NvmlGpu, PlausibleReadings) {
  std::string why;
  const double period = 0.2;
  std::unique_ptr<NvmlSampler> s = NvmlSampler::open(0, period, &why);
  if (!s) GTEST_SKIP() << "NVML unavailable: " << why;
  GpuSample first = s->latest();
  EXPECT_EQ(first.index, 0);
  EXPECT_FALSE(first.name.empty());
  EXPECT_GT(first.power_w, 0);
  EXPECT_LT(first.power_w, 5000);
  EXPECT_GT(first.mem_total_bytes, 0);
  EXPECT_LE(first.mem_used_bytes, first.mem_total_bytes);
  EXPECT_GE(first.sm_util, 0);
  EXPECT_LE(first.sm_util, 1);
  EXPECT_GT(first.temperature_c, 0);
  EXPECT_LT(first.temperature_c, 130);

  std::this_thread::sleep_for(std::chrono::duration<double>(2.5 * period));
  GpuSample later = s->latest();
  EXPECT_GE(later.energy_j, first.energy_j);
  EXPECT_GT(later.energy_j, 0);  // an idle H100 still draws tens of watts
  double mean = s->take_interval_mean_power();
  EXPECT_GT(mean, 0);
  EXPECT_LT(mean, 5000);
  std::printf("%s: %.1f W, %.1f J since open, mean %.1f W, %.0f%% SM, %.1f/%.1f GiB, %.0f C\n",
              later.name.c_str(), later.power_w, later.energy_j, mean, 100 * later.sm_util,
              later.mem_used_bytes / (1 << 30), later.mem_total_bytes / (1 << 30),
              later.temperature_c);
}

TEST(NvmlGpu, DestroyRightAfterOpenIsQuick) {
  std::string why;
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<NvmlSampler> s = NvmlSampler::open(0, 10.0, &why);
  if (!s) GTEST_SKIP() << "NVML unavailable: " << why;
  s.reset();  // must not wait out the 10 s period
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
}

}  // namespace
}  // namespace peng
