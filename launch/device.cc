#include "launch/device.h"

#include "core/cuda/memory.h"
#include "core/error.h"
#include "launch/config.h"

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
  PENG_INPUT_CHECK(env.local_rank < facts.device_count, flag, ": rank ", env.rank,
                   " is local rank ", env.local_rank, " on its node, which has only ",
                   facts.device_count, " visible GPU", facts.device_count == 1 ? "" : "s",
                   " (one rank per GPU: start at most ", facts.device_count, " ranks per node)");
  PENG_INPUT_CHECK(env.world_size == 1, flag, ": training on GPUs with ", env.world_size,
                   " ranks is not available yet (multi-GPU training comes with the NCCL "
                   "communicators of a later issue); run one rank per job on a GPU, or these ",
                   env.world_size, " ranks with --device cpu");
  return Device::cuda(env.local_rank);
}

Device resolve_device(const proto::TrainConfig& config, const LaunchEnv& env) {
  const std::string setting = device_setting(config);
  // No CUDA calls for the CPU (the default): a CPU run never touches the driver.
  if (setting == "cpu") return Device::cpu();
  return choose_device(setting, env, detect_device_facts());
}

std::string describe_device(Device device) {
  if (device.is_cpu()) return "cpu";
  return device.str() + " (" + cuda::device_name(device.index) + ")";
}

}  // namespace peng
