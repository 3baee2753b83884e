// Peak FLOP/s: the datasheet table under table and NVML names, the CPU sgemm probe, and
// every form of the --peak spec with its errors.
#include "peng/telemetry/peak.h"

#include <gtest/gtest.h>

#include <chrono>

#include "peng/core/error.h"

namespace peng {
namespace {

std::string lookup_name(std::string_view device) {
  std::optional<PeakEntry> e = lookup_peak(device);
  return e ? std::string(e->name) : "none";
}

TEST(Peak, NvmlNames) {
  const std::pair<const char*, const char*> cases[] = {
      {"NVIDIA H100 80GB HBM3", "H100 SXM"},
      {"NVIDIA H100 PCIe", "H100 PCIe"},
      {"NVIDIA H100 NVL", "H100 NVL"},
      {"NVIDIA A100-SXM4-80GB", "A100 SXM"},
      {"NVIDIA A100-SXM4-40GB", "A100 SXM"},
      {"NVIDIA A100 80GB PCIe", "A100 PCIe"},
      {"NVIDIA A100-PCIE-40GB", "A100 PCIe"},
      {"NVIDIA A800-SXM4-80GB", "A800 SXM"},
      {"NVIDIA A800 80GB PCIe", "A800 PCIe"},
      {"NVIDIA H800", "H800 SXM"},
      {"NVIDIA H800 PCIe", "H800 PCIe"},
      {"NVIDIA H200", "H200 SXM"},
      {"NVIDIA H200 NVL", "H200 NVL"},
      {"NVIDIA H20", "H20"},
      {"NVIDIA L40S", "L40S"},
      {"NVIDIA L4", "L4"},
      {"NVIDIA A10", "A10"},
      {"NVIDIA B200", "B200"},
      {"NVIDIA B100", "B100"},
      {"NVIDIA GH200 480GB", "GH200"},
      {"Ascend910B", "Ascend 910B"},
  };
  for (const auto& [device, name] : cases) EXPECT_EQ(lookup_name(device), name) << device;
  EXPECT_EQ(lookup_peak("NVIDIA H20")->tflops, 148);
  EXPECT_EQ(lookup_peak("NVIDIA H200")->tflops, 989);
  EXPECT_EQ(lookup_peak("NVIDIA H100 PCIe")->tflops, 756);
}

TEST(Peak, TableNamesFindThemselvesCaseInsensitively) {
  for (const PeakEntry& e : peak_table()) {
    EXPECT_GT(e.tflops, 0) << e.name;
    EXPECT_FALSE(e.note.empty()) << e.name;
    EXPECT_EQ(lookup_name(e.name), e.name);
    std::string lower(e.name);
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(lookup_name(lower), e.name);
  }
  EXPECT_EQ(lookup_name("H100"), "H100 SXM");  // a bare model means its SXM form
}

TEST(Peak, UnknownDevices) {
  for (const char* device : {"", "NVIDIA", "NVIDIA L40", "NVIDIA A10G", "NVIDIA GeForce RTX 4090",
                             "Tesla V100-SXM2-16GB", "NVIDIA H2", "NVIDIA H2000", "NVIDIA H20 PCIe",
                             "AMD Instinct MI300X", "Ascend910B3"}) {
    EXPECT_EQ(lookup_name(device), "none") << device;
  }
}

TEST(Peak, ResolveNumber) {
  Peak p = resolve_peak("312.5", "whatever", true, 0);
  EXPECT_DOUBLE_EQ(p.flops, 312.5e12);
  EXPECT_EQ(p.source, "--peak");
  EXPECT_DOUBLE_EQ(resolve_peak("1e-3", "", false, 0).flops, 1e9);
  for (const char* bad : {"0", "-5", "inf", "nan"}) {
    try {
      resolve_peak(bad, "", true, 0);
      ADD_FAILURE() << bad << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("positive"), std::string::npos) << e.what();
    }
  }
}

TEST(Peak, ResolveTableName) {
  Peak p = resolve_peak("h100 sxm", "NVIDIA L4", true, 0);
  EXPECT_DOUBLE_EQ(p.flops, 989e12);
  EXPECT_EQ(p.source, "table: H100 SXM (bf16 dense)");
  EXPECT_EQ(resolve_peak("NVIDIA H20", "", false, 0).source, "table: H20 (bf16 dense)");
}

TEST(Peak, ResolveBadSpecListsNames) {
  for (const char* bad : {"", "fast", "12x", "H300"}) {
    try {
      resolve_peak(bad, "NVIDIA H100 80GB HBM3", true, 0);
      ADD_FAILURE() << bad << " accepted";
    } catch (const InputError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("unknown --peak '" + std::string(bad) + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("H100 SXM, H100 PCIe"), std::string::npos) << msg;
      EXPECT_NE(msg.find("Ascend 910B"), std::string::npos) << msg;
    }
  }
}

TEST(Peak, ResolveAutoGpu) {
  Peak p = resolve_peak("auto", "NVIDIA H100 80GB HBM3", true, 0);
  EXPECT_DOUBLE_EQ(p.flops, 989e12);
  EXPECT_EQ(p.source, "table: H100 SXM (bf16 dense)");
  try {
    resolve_peak("auto", "NVIDIA GeForce RTX 4090", true, 0);
    ADD_FAILURE() << "unknown GPU accepted";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("no peak FLOP/s known for device 'NVIDIA GeForce RTX 4090': pass --peak "
                        "TFLOPS or one of: A100 SXM, ",
                        0),
              0u)
        << msg;
  }
}

TEST(Peak, ResolveAutoCpuProbes) {
  auto t0 = std::chrono::steady_clock::now();
  Peak p = resolve_peak("auto", "", false, 0.2);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(p.flops, 1e8);
  EXPECT_LT(p.flops, 1e14);  // no CPU does 100 fp32 TFLOP/s
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(p.source.rfind("sgemm probe (fp32, ", 0), 0u) << p.source;
  EXPECT_NE(p.source.find(" threads)"), std::string::npos) << p.source;
}

TEST(Peak, CpuModelName) { EXPECT_FALSE(cpu_model_name().empty()); }

}  // namespace
}  // namespace peng
