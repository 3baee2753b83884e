#include "peng/telemetry/peak.h"

#include <cblas.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>

#include "peng/core/error.h"

namespace peng {

const std::vector<PeakEntry>& peak_table() {
  // Dense BF16 tensor-core TFLOP/s per GPU: half the "with sparsity" datasheet figure.
  static const std::vector<PeakEntry> table = {
      // NVIDIA A100 Tensor Core GPU datasheet: BF16 312 (624 with sparsity), SXM and PCIe.
      {"A100 SXM", 312, "bf16 dense"},
      {"A100 PCIe", 312, "bf16 dense"},
      // NVIDIA A800 40GB/80GB datasheet (A100 with reduced NVLink): BF16 312, both forms.
      {"A800 SXM", 312, "bf16 dense"},
      {"A800 PCIe", 312, "bf16 dense"},
      // NVIDIA H100 Tensor Core GPU datasheet: BF16 1,979 / 1,513 / 1,671 with sparsity
      // (SXM / PCIe / NVL per GPU).
      {"H100 SXM", 989, "bf16 dense"},
      {"H100 PCIe", 756, "bf16 dense"},
      {"H100 NVL", 835, "bf16 dense"},
      // NVIDIA H800 Tensor Core GPU datasheet (H100 with reduced NVLink): as the H100.
      {"H800 SXM", 989, "bf16 dense"},
      {"H800 PCIe", 756, "bf16 dense"},
      // NVIDIA H200 Tensor Core GPU datasheet: BF16 1,979 (SXM) / 1,671 (NVL) with sparsity.
      {"H200 SXM", 989, "bf16 dense"},
      {"H200 NVL", 835, "bf16 dense"},
      // NVIDIA H20 product brief (China export part): BF16 148 dense, 296 with sparsity.
      {"H20", 148, "bf16 dense"},
      // NVIDIA GH200 Grace Hopper Superchip datasheet: BF16 1,979 with sparsity.
      {"GH200", 989, "bf16 dense"},
      // NVIDIA L40S datasheet: BF16 362.05 (733 with sparsity).
      {"L40S", 362, "bf16 dense"},
      // NVIDIA L4 Tensor Core GPU datasheet: BF16 242 with sparsity.
      {"L4", 121, "bf16 dense"},
      // NVIDIA A10 Tensor Core GPU datasheet: BF16 125 (250 with sparsity).
      {"A10", 125, "bf16 dense"},
      // NVIDIA HGX B100 specifications: FP16/BF16 3.5 PFLOP/s per GPU with sparsity.
      {"B100", 1750, "bf16 dense"},
      // NVIDIA HGX B200 / DGX B200 datasheet: FP16/BF16 4.5 PFLOP/s per GPU with sparsity.
      {"B200", 2250, "bf16 dense"},
      // Huawei Ascend 910B specification: FP16 about 320 (910B3: 313).
      {"Ascend 910B", 320, "fp16 dense, for the record: peng has no Ascend backend"},
  };
  return table;
}

namespace {

// A device name reduced to what identifies its peak: the model token ("h100", "910b") and
// the form ("pcie", "nvl", or "" for SXM and single-form parts).
struct Model {
  std::string family;
  std::string form;
  bool operator==(const Model&) const = default;
};

Model parse_model(std::string_view name) {
  std::vector<std::string> tokens;
  std::string cur;
  for (char ch : name) {
    if (std::isalnum(static_cast<unsigned char>(ch))) {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    } else if (!cur.empty()) {
      tokens.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) tokens.push_back(std::move(cur));
  Model m;
  for (const std::string& t : tokens) {
    // "Ascend910B" (npu-smi's spelling) names model 910b.
    std::string_view model = t.starts_with("ascend") ? std::string_view(t).substr(6) : t;
    bool has_digit = std::any_of(model.begin(), model.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c));
    });
    if (m.family.empty() && has_digit) m.family = model;
    if (t == "pcie" || t == "nvl") m.form = t;
  }
  return m;
}

std::string table_names() {
  std::string out;
  for (const PeakEntry& e : peak_table()) {
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

Peak from_entry(const PeakEntry& e) {
  return {e.tflops * 1e12, "table: " + std::string(e.name) + " (" + std::string(e.note) + ")"};
}

}  // namespace

std::optional<PeakEntry> lookup_peak(std::string_view device_name) {
  Model want = parse_model(device_name);
  if (want.family.empty()) return std::nullopt;
  for (const PeakEntry& e : peak_table()) {
    if (parse_model(e.name) == want) return e;
  }
  return std::nullopt;
}

double measure_cpu_sgemm_flops(double seconds) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::vector<float> a, b, c;
  int n = 1024;
  auto one_call = [&] {  // seconds taken by one n×n×n sgemm
    auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  double best = 0;
  int calls = 0;
  auto record = [&](double t) {
    best = std::max(best, 2.0 * n * n * double(n) / std::max(t, 1e-9));
    ++calls;
  };
  for (;;) {
    a.assign(size_t(n) * n, 0.5f);
    b.assign(size_t(n) * n, 0.25f);
    c.assign(size_t(n) * n, 0.0f);
    double t = one_call();
    if (t <= seconds / 3 || n <= 128) {
      record(t);
      break;
    }
    n /= 2;
  }
  while (calls < 3 || std::chrono::duration<double>(Clock::now() - start).count() < seconds) {
    record(one_call());
  }
  return best;
}

Peak resolve_peak(const std::string& spec, const std::string& device_name, bool device_is_gpu,
                  double probe_seconds) {
  if (spec == "auto") {
    if (!device_is_gpu) {
      return {measure_cpu_sgemm_flops(probe_seconds),
              "sgemm probe (fp32, " + std::to_string(openblas_get_num_threads()) + " threads)"};
    }
    std::optional<PeakEntry> e = lookup_peak(device_name);
    PENG_INPUT_CHECK(e, "no peak FLOP/s known for device '", device_name,
                     "': pass --peak TFLOPS or one of: ", table_names());
    return from_entry(*e);
  }
  double tflops = 0;
  auto [end, ec] = std::from_chars(spec.data(), spec.data() + spec.size(), tflops);
  if (!spec.empty() && ec == std::errc() && end == spec.data() + spec.size()) {
    PENG_INPUT_CHECK(std::isfinite(tflops) && tflops > 0,
                     "--peak must be a positive number of TFLOP/s per device, got '", spec, "'");
    return {tflops * 1e12, "--peak"};
  }
  std::optional<PeakEntry> e = lookup_peak(spec);
  PENG_INPUT_CHECK(e, "unknown --peak '", spec,
                   "': expected auto, TFLOP/s per device, or one of: ", table_names());
  return from_entry(*e);
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("model name")) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    size_t begin = line.find_first_not_of(" \t", colon + 1);
    size_t last = line.find_last_not_of(" \t\r");
    if (begin != std::string::npos && last >= begin) return line.substr(begin, last - begin + 1);
  }
  return "unknown cpu";
}

}  // namespace peng
