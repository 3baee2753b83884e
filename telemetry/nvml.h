// GPU power, energy, utilization, memory and temperature from NVML, sampled in the
// background.
//
// NVML is opened at run time with dlopen (no link-time dependency, no NVML header), so
// the same binary runs on machines without an NVIDIA driver: open() then returns nullptr
// and a reason, which the caller reports once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace peng {

// One reading. Fields the device does not support are NaN.
struct GpuSample {
  int index = 0;  // NVML device index
  std::string name;
  double power_w = 0;   // board power draw, W (NVML: averaged over up to 1 s)
  double energy_j = 0;  // since the sampler opened (NaN without counter and power)
  double sm_util = 0;   // 0..1: share of NVML's last window (1/6..1 s) a kernel ran in
  double mem_used_bytes = 0;
  double mem_total_bytes = 0;
  double temperature_c = 0;  // GPU die
  double mean_power_w = 0;   // since the previous take_interval_mean_power() (or open)
};

struct NvmlLib;  // the dlopen'ed library and its entry points (nvml.cc)

class NvmlSampler {
 public:
  // Opens NVML from `library`, takes a first sample of device `device_index` (NVML's
  // numbering, which follows PCI bus order, not CUDA_VISIBLE_DEVICES) and starts a thread
  // that samples every `period_s` seconds (> 0) until destruction. When NVML or the device
  // is unavailable: nullptr and `*why_not` set ("libnvidia-ml.so.1 not found", "nvmlInit
  // failed: ...", "no GPU at index 3 (2 visible)"); never throws for that.
  static std::unique_ptr<NvmlSampler> open(int device_index, double period_s, std::string* why_not,
                                           const std::string& library = "libnvidia-ml.so.1");
  // Stops the thread without waiting out the current period, then shuts NVML down.
  ~NvmlSampler();
  NvmlSampler(const NvmlSampler&) = delete;
  NvmlSampler& operator=(const NvmlSampler&) = delete;

  // The most recent sample. Thread-safe.
  GpuSample latest() const;
  // Mean power over the samples since the previous call (or open), from the energy counter
  // where the device has one, else from power integrated between samples; with no new
  // sample since then, the latest instantaneous power. Thread-safe.
  double take_interval_mean_power();

 private:
  NvmlSampler(std::unique_ptr<NvmlLib> lib, int index, double period_s);
  void sample();  // reads the device and updates latest_ (takes mu_)
  void run();     // the sampling thread

  std::unique_ptr<NvmlLib> lib_;
  int index_;
  double period_s_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  GpuSample latest_;
  std::chrono::steady_clock::time_point start_;
  double counter_start_mj_ = 0;     // energy counter at open (when supported)
  double last_t_ = 0;               // seconds since open of latest_
  double mark_t_ = 0, mark_j_ = 0;  // time and energy at the last take_interval_mean_power()
  std::thread thread_;
};

}  // namespace peng
