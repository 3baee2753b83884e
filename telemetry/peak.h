// Peak FLOP/s per device: the denominator of MFU.
//
// GPUs: a table of vendor datasheet figures, dense (no 2:4 sparsity) BF16 tensor-core
// TFLOP/s — what mixed-precision training runs on. CPUs: a short fp32 cblas_sgemm probe,
// since fp32 is what the CPU backend trains in and no datasheet knows the machine's clocks,
// core count and OpenBLAS kernels.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace peng {

struct PeakEntry {
  std::string_view name;  // "H100 SXM"
  double tflops;          // per device
  std::string_view note;  // precision and caveats: "bf16 dense"
};

// Every known device, in a fixed order (also the order error messages list them in).
const std::vector<PeakEntry>& peak_table();

// The entry for a table name ("H100 SXM", case-insensitive) or an NVML device name
// ("NVIDIA H100 80GB HBM3" → H100 SXM, "NVIDIA H20" → H20, never H200). The model
// (H100, A800, …) must match exactly; a PCIe or NVL token picks that form, otherwise the
// SXM form is meant (so a bare "H100" is the H100 SXM). Unknown devices → nullopt.
std::optional<PeakEntry> lookup_peak(std::string_view device_name);

// Best fp32 FLOP/s (2 n^3 per call) of cblas_sgemm on square n×n matrices (n = 1024, or
// smaller when one call would take over a third of `seconds`), repeated for about
// `seconds` of wall time and at least 3 calls. Runs on the threads OpenBLAS is set to use.
double measure_cpu_sgemm_flops(double seconds);

struct Peak {
  double flops = 0;    // per device, FLOP/s
  std::string source;  // how it was obtained, for logs and reports
};

// The peak per device for `spec` (the --peak flag):
//  - "auto": GPU → the table entry of `device_name`; CPU → measure_cpu_sgemm_flops(
//    probe_seconds), source "sgemm probe (fp32, N threads)";
//  - a number: that many TFLOP/s per device (> 0), source "--peak";
//  - a table name: source "table: H100 SXM (bf16 dense)".
// Throws InputError for an unknown GPU under "auto", a number <= 0 and any other spec; the
// message lists the table names.
Peak resolve_peak(const std::string& spec, const std::string& device_name, bool device_is_gpu,
                  double probe_seconds);

// The "model name" line of /proc/cpuinfo ("unknown cpu" when there is none).
std::string cpu_model_name();

}  // namespace peng
