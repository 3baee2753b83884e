#include "peng/launch/device.h"

#include "peng/core/cuda/memory.h"
#include "peng/core/error.h"
#include "peng/launch/config.h"

namespace peng {

DeviceFacts detect_device_facts() {
  return {.compiled_with_cuda = cuda::compiled_with_cuda(), .device_count = cuda::device_count()};
}

Device choose_device(const std::string& setting, const LaunchEnv& env, const DeviceFacts& facts) {
  if (setting == "cpu") return Device::cpu();
  const bool explicit_cuda = setting == "cuda";
  if (!explicit_cuda) {
    PENG_INPUT_CHECK(setting == "auto",
                     "training.device (--device) must be cpu, cuda or auto, got \"", setting, "\"");
    if (!facts.compiled_with_cuda || facts.device_count == 0) return Device::cpu();
  }
  const std::string flag = "--device " + setting;
  PENG_INPUT_CHECK(facts.compiled_with_cuda, flag,
                   ": this peng build has no CUDA backend (it was configured without the CUDA "
                   "toolkit; rebuild with -DPENG_CUDA=ON where /usr/local/cuda exists), so it "
                   "trains on the CPU only (--device cpu)");
  PENG_INPUT_CHECK(facts.device_count > 0, flag, ": no CUDA device is visible to rank ", env.rank,
                   " (the CUDA driver reports none: no GPU, no driver, or CUDA_VISIBLE_DEVICES "
                   "hides them); train on the CPU with --device cpu or auto");
  // More ranks than GPUs on a node share them round-robin; their tensors then go over the
  // staged path (parallel.comm auto; nccl refuses, make_communicator.h).
  return Device::cuda(env.local_rank % facts.device_count);
}

Device resolve_device(const proto::TrainConfig& config, const LaunchEnv& env) {
  const std::string setting = device_setting(config);
  // No CUDA calls for the CPU (the default): a CPU run never touches the driver.
  if (setting == "cpu") return Device::cpu();
  return choose_device(setting, env, detect_device_facts());
}

Device agree_on_device(Device mine, Communicator* world) {
  if (!world) return mine;
  Tensor cpu = Tensor::from_vector<int32_t>({mine.is_cpu() ? 1 : 0}, {1});
  world->all_reduce(cpu, ReduceOp::kMax)->wait();
  return cpu.data<int32_t>()[0] != 0 ? Device::cpu() : mine;
}

std::string describe_device(Device device) {
  if (device.is_cpu()) return "cpu";
  return device.str() + " (" + cuda::device_name(device.index) + ")";
}

}  // namespace peng
