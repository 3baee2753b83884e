// NVML through dlopen: the few types and entry points used here are declared from NVML's
// public API (nvml.h), whose ABI is stable across driver versions.
#include "peng/telemetry/nvml.h"

#include <dlfcn.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "peng/core/error.h"

namespace peng {
namespace {

using nvmlReturn_t = int;  // enum; NVML_SUCCESS = 0
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu, memory;  // percent
};
struct nvmlMemory_t {
  unsigned long long total, free, used;  // bytes
};
constexpr int kNvmlTemperatureGpu = 0;        // nvmlTemperatureSensors_t NVML_TEMPERATURE_GPU
constexpr unsigned kNvmlNameBufferSize = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

struct NvmlLib {
  void* handle = nullptr;
  bool initialized = false;
  nvmlDevice_t device = nullptr;
  bool has_energy_counter = false;

  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*get_count)(unsigned int*) = nullptr;
  nvmlReturn_t (*get_handle)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*get_name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*get_power)(nvmlDevice_t, unsigned int*) = nullptr;         // mW
  nvmlReturn_t (*get_energy)(nvmlDevice_t, unsigned long long*) = nullptr;  // mJ
  nvmlReturn_t (*get_utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*get_memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*get_temperature)(nvmlDevice_t, int, unsigned int*) = nullptr;  // °C

  ~NvmlLib() {
    if (initialized) shutdown();
    if (handle) dlclose(handle);
  }

  std::string error(nvmlReturn_t rc) const {
    const char* s = error_string ? error_string(rc) : nullptr;
    return s ? s : "NVML error " + std::to_string(rc);
  }
};

namespace {

// Loads `library` and resolves every entry point; the reason on failure.
std::unique_ptr<NvmlLib> load(const std::string& library, std::string& why) {
  auto lib = std::make_unique<NvmlLib>();
  lib->handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib->handle) {
    const char* err = dlerror();
    std::string detail = err ? err : "";
    why = detail.find("No such file") != std::string::npos || detail.empty()
              ? library + " not found"
              : "cannot load " + library + ": " + detail;
    return nullptr;
  }
  auto resolve = [&](auto& fn, const char* symbol) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib->handle, symbol));
    if (!fn && why.empty())
      why = library + " has no " + symbol + " (not NVML, or a too old driver)";
  };
  resolve(lib->init, "nvmlInit_v2");
  resolve(lib->shutdown, "nvmlShutdown");
  resolve(lib->error_string, "nvmlErrorString");
  resolve(lib->get_count, "nvmlDeviceGetCount_v2");
  resolve(lib->get_handle, "nvmlDeviceGetHandleByIndex_v2");
  resolve(lib->get_name, "nvmlDeviceGetName");
  resolve(lib->get_power, "nvmlDeviceGetPowerUsage");
  resolve(lib->get_energy, "nvmlDeviceGetTotalEnergyConsumption");
  resolve(lib->get_utilization, "nvmlDeviceGetUtilizationRates");
  resolve(lib->get_memory, "nvmlDeviceGetMemoryInfo");
  resolve(lib->get_temperature, "nvmlDeviceGetTemperature");
  if (!why.empty()) return nullptr;
  return lib;
}

}  // namespace

std::unique_ptr<NvmlSampler> NvmlSampler::open(int device_index, double period_s,
                                               std::string* why_not, const std::string& library) {
  PENG_CHECK(period_s > 0, "NVML sampling period must be > 0 s, got ", period_s);
  std::string why;
  auto fail = [&](std::string reason) {
    if (why_not) *why_not = std::move(reason);
    return nullptr;
  };
  std::unique_ptr<NvmlLib> lib = load(library, why);
  if (!lib) return fail(why);
  if (nvmlReturn_t rc = lib->init(); rc != 0) return fail("nvmlInit failed: " + lib->error(rc));
  lib->initialized = true;
  unsigned int count = 0;
  if (nvmlReturn_t rc = lib->get_count(&count); rc != 0) {
    return fail("nvmlDeviceGetCount failed: " + lib->error(rc));
  }
  if (device_index < 0 || unsigned(device_index) >= count) {
    return fail("no GPU at index " + std::to_string(device_index) + " (" + std::to_string(count) +
                " visible)");
  }
  if (nvmlReturn_t rc = lib->get_handle(unsigned(device_index), &lib->device); rc != 0) {
    return fail("nvmlDeviceGetHandleByIndex(" + std::to_string(device_index) +
                ") failed: " + lib->error(rc));
  }
  if (why_not) why_not->clear();
  return std::unique_ptr<NvmlSampler>(new NvmlSampler(std::move(lib), device_index, period_s));
}

NvmlSampler::NvmlSampler(std::unique_ptr<NvmlLib> lib, int index, double period_s)
    : lib_(std::move(lib)), index_(index), period_s_(period_s) {
  start_ = std::chrono::steady_clock::now();
  char name[kNvmlNameBufferSize] = {};
  latest_.index = index_;
  latest_.name = lib_->get_name(lib_->device, name, sizeof(name)) == 0 ? name : "unknown GPU";
  unsigned long long mj = 0;
  lib_->has_energy_counter = lib_->get_energy(lib_->device, &mj) == 0;
  counter_start_mj_ = double(mj);
  latest_.power_w = kNaN;  // no previous sample to integrate from
  sample();
  if (!lib_->has_energy_counter && std::isnan(latest_.power_w)) latest_.energy_j = kNaN;
  take_interval_mean_power();  // the first interval starts at the first sample
  thread_ = std::thread([this] { run(); });
}

NvmlSampler::~NvmlSampler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NvmlSampler::sample() {
  // NVML calls outside the lock: they may take milliseconds.
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  nvmlDevice_t dev = lib_->device;
  unsigned int mw = 0, temp = 0;
  unsigned long long mj = 0;
  nvmlUtilization_t util{};
  nvmlMemory_t mem{};
  double power = lib_->get_power(dev, &mw) == 0 ? mw / 1e3 : kNaN;
  bool have_mj = lib_->has_energy_counter && lib_->get_energy(dev, &mj) == 0;
  bool have_util = lib_->get_utilization(dev, &util) == 0;
  bool have_mem = lib_->get_memory(dev, &mem) == 0;
  bool have_temp = lib_->get_temperature(dev, kNvmlTemperatureGpu, &temp) == 0;

  std::lock_guard<std::mutex> lock(mu_);
  GpuSample& s = latest_;
  if (lib_->has_energy_counter) {
    if (have_mj) s.energy_j = (double(mj) - counter_start_mj_) / 1e3;
  } else if (std::isfinite(power) && std::isfinite(s.power_w)) {
    s.energy_j += 0.5 * (power + s.power_w) * (t - last_t_);  // trapezoid between samples
  }
  s.power_w = power;
  s.sm_util = have_util ? util.gpu / 100.0 : kNaN;
  s.mem_used_bytes = have_mem ? double(mem.used) : kNaN;
  s.mem_total_bytes = have_mem ? double(mem.total) : kNaN;
  s.temperature_c = have_temp ? double(temp) : kNaN;
  last_t_ = t;
  s.mean_power_w = last_t_ > mark_t_ ? (s.energy_j - mark_j_) / (last_t_ - mark_t_) : s.power_w;
}

void NvmlSampler::run() {
  std::unique_lock<std::mutex> lock(mu_);
  auto period = std::chrono::duration<double>(period_s_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    sample();
    lock.lock();
  }
}

GpuSample NvmlSampler::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

double NvmlSampler::take_interval_mean_power() {
  std::lock_guard<std::mutex> lock(mu_);
  double mean = latest_.mean_power_w;
  mark_t_ = last_t_;
  mark_j_ = latest_.energy_j;
  latest_.mean_power_w = latest_.power_w;
  return mean;
}

}  // namespace peng
