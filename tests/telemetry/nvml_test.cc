// NvmlSampler without a usable NVML: open() reports why and returns nullptr, never throws
// or crashes. (Readings on a real GPU: tests/gpu/nvml_sampler_test.cc.)
#include "peng/telemetry/nvml.h"

#include <gtest/gtest.h>

#include "peng/core/error.h"

namespace peng {
namespace {

TEST(Nvml, MissingLibraryIsReported) {
  std::string why;
  EXPECT_EQ(NvmlSampler::open(0, 1.0, &why, "libpeng-no-such-nvml.so.1"), nullptr);
  EXPECT_EQ(why, "libpeng-no-such-nvml.so.1 not found");
}

TEST(Nvml, LibraryWithoutNvmlIsReported) {
  std::string why;
  EXPECT_EQ(NvmlSampler::open(0, 1.0, &why, "libc.so.6"), nullptr);
  EXPECT_EQ(why.rfind("libc.so.6 has no nvmlInit_v2", 0), 0u) << why;
}

// The system's NVML: on a machine without the driver (or without a GPU) a reason; with
// one, a sampler that can be destroyed right away.
TEST(Nvml, SystemLibraryOpensOrExplains) {
  std::string why = "stale";
  std::unique_ptr<NvmlSampler> s = NvmlSampler::open(0, 1.0, &why);
  if (s) {
    EXPECT_EQ(why, "");
    EXPECT_EQ(s->latest().index, 0);
  } else {
    EXPECT_FALSE(why.empty());
    EXPECT_NE(why, "stale");
  }
}

TEST(Nvml, DeviceOutOfRangeIsReported) {
  std::string why;
  EXPECT_EQ(NvmlSampler::open(1000, 1.0, &why), nullptr);
  bool no_nvml = why == "libnvidia-ml.so.1 not found" || why.starts_with("nvmlInit failed: ");
  bool no_device = why.starts_with("no GPU at index 1000 (") && why.ends_with(" visible)");
  EXPECT_TRUE(no_nvml || no_device) << why;
  EXPECT_EQ(NvmlSampler::open(-1, 1.0, nullptr), nullptr);  // no reason wanted: still safe
}

TEST(Nvml, NonPositivePeriodIsAProgrammingError) {
  std::string why;
  EXPECT_THROW(NvmlSampler::open(0, 0.0, &why), Error);
}

}  // namespace
}  // namespace peng
